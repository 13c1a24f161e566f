//! `rclaude run [TASK] [-- ARGS]`: run a task and its dependencies in the sandbox.

use super::GlobalArgs;
use crate::error::{CliError, CliResult};
use crate::ops::context::Ctx;
use crate::ops::tasks::{OnFailure, RunLog, TaskRunner};
use crate::ops::up::{UpOptions, bring_up};

/// Run a task from .rclaude.toml in the sandbox, dependencies first; without TASK, list tasks.
///
/// Each dependency runs once, in order; the first failure stops the run and rclaude exits with
/// that command's exit code. Arguments after `--` are appended to the task's last command.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  rclaude run                 # list tasks\n  rclaude run test\n  rclaude run test -- --nocapture\n  rclaude run lint --no-sync"
)]
pub struct Args {
    /// The task to run.
    #[arg(add = clap_complete::ArgValueCompleter::new(super::args::task_names))]
    pub task: Option<String>,
    /// Don't sync the work tree first.
    #[arg(long)]
    pub no_sync: bool,
    /// Extra arguments for the task's last command.
    #[arg(last = true, value_name = "ARGS")]
    pub args: Vec<String>,
}

pub async fn run(g: &GlobalArgs, args: Args) -> CliResult {
    let ctx = g.ctx().await?;
    let Some(task) = args.task else {
        list_tasks(&ctx);
        return Ok(0);
    };
    let plan = ctx
        .config
        .task_plan(&task)
        .map_err(|e| CliError::usage(e.to_string()))?;
    let live = bring_up(
        &ctx,
        UpOptions {
            sync: !args.no_sync,
            setup: true,
            create_if_gone: false,
            other_provider: crate::ops::up::OtherProvider::Use,
        },
    )
    .await?;
    let runner = TaskRunner::new(&ctx, &live.record, &*live.sandbox)?;
    let mut log = RunLog::default();
    runner
        .run_plan(
            &plan,
            OnFailure::Stop,
            Some((task.as_str(), args.args.as_slice())),
            &mut log,
        )
        .await?;
    // What the tasks wrote (build output, generated files) is copied off the sandbox.
    crate::ops::checkpoint::take(&ctx, &live.record, &*live.sandbox, "run").await;
    Ok(log
        .first_failure()
        .map(|o| o.exit_code.unwrap_or(1))
        .unwrap_or(0))
}

fn list_tasks(ctx: &Ctx) {
    if ctx.config.tasks.is_empty() {
        println!(
            "No tasks in {}. Add one, e.g.:\n\n[tasks.test]\nrun = \"cargo test\"",
            ctx.repo.config_path().display()
        );
        return;
    }
    let width = ctx.config.tasks.keys().map(|k| k.len()).max().unwrap_or(0);
    println!("Tasks in {}:", crate::config::CONFIG_FILE);
    for (name, t) in &ctx.config.tasks {
        let what = t
            .description
            .clone()
            .unwrap_or_else(|| t.run.lines().join(" && "));
        let deps: Vec<&str> = t.depends.iter().map(|d| d.get_ref().as_str()).collect();
        let deps = if deps.is_empty() {
            String::new()
        } else {
            format!("  (after {})", deps.join(", "))
        };
        println!("  {name:<width$}  {what}{deps}");
    }
    println!("\nRun one with `rclaude run NAME`.");
}
