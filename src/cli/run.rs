//! `rclaude run [TASK] [-- ARGS]`: run a task and its dependencies in the sandbox.

use std::time::{Duration, Instant};

use serde_json::json;

use super::GlobalArgs;
use super::context::Ctx;
use super::exec::shell_quote;
use super::stream::{Sink, run_streamed};
use super::up::{UpOptions, bring_up};
use crate::error::{CliError, CliResult};
use crate::provider::ExecRequest;
use crate::ui::format_elapsed;

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
    pub task: Option<String>,
    /// Don't sync the work tree first.
    #[arg(long)]
    pub no_sync: bool,
    /// Extra arguments for the task's last command.
    #[arg(last = true, value_name = "ARGS")]
    pub args: Vec<String>,
}

pub async fn run(g: &GlobalArgs, args: Args) -> CliResult {
    let ctx = Ctx::load(g)?;
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
        },
    )
    .await?;
    let base_env = ctx.exec_env(&live.record)?;

    let started = Instant::now();
    for name in &plan {
        let t = &ctx.config.tasks[name];
        let mut lines = t.run.lines();
        if name == &task
            && !args.args.is_empty()
            && let Some(last) = lines.last_mut()
        {
            let extra: Vec<String> = args.args.iter().map(|a| shell_quote(a)).collect();
            last.push(' ');
            last.push_str(&extra.join(" "));
        }
        let cwd = match &t.cwd {
            Some(c) => format!("{}/{}", live.record.workdir, c.trim_end_matches('/')),
            None => live.record.workdir.clone(),
        };
        let mut env = base_env.clone();
        env.extend(t.env.clone());
        env.insert("RCLAUDE_TASK".into(), name.clone());
        let task_start = Instant::now();
        ctx.reporter.event(&live.record, "task_started", json!({ "task": name }));
        let deadline = t.timeout.map(|d| task_start + d.0);
        for line in &lines {
            let step = ctx.ui.streaming_step(format!("{name}: {line}"));
            let remaining = match deadline {
                Some(d) => Some(
                    d.saturating_duration_since(Instant::now())
                        .max(Duration::from_millis(1)),
                ),
                None => None,
            };
            let req = ExecRequest::shell(line.clone())
                .cwd(cwd.clone())
                .env(env.clone())
                .timeout(remaining);
            let status = run_streamed(&*live.sandbox, req, Sink::Terminal).await?;
            if !status.success() {
                let timed_out = deadline.is_some_and(|d| Instant::now() >= d);
                let why = if timed_out {
                    format!(
                        "timed out after {}",
                        t.timeout.map(|d| d.to_string()).unwrap_or_default()
                    )
                } else {
                    format!("exit code {}", status.shell_code())
                };
                step.fail(Some(&why));
                ctx.ui.warn(format!("task {name} failed ({why}); stopping"));
                finished(&ctx, &live.record, name, status.shell_code(), task_start).await;
                return Ok(status.shell_code());
            }
            step.done(None);
        }
        finished(&ctx, &live.record, name, 0, task_start).await;
        if lines.len() > 1 {
            ctx.ui.info(format!(
                "✓ task {name} ({})",
                format_elapsed(task_start.elapsed())
            ));
        }
    }
    if plan.len() > 1 {
        ctx.ui.info(format!(
            "✓ {} tasks in {}",
            plan.len(),
            format_elapsed(started.elapsed())
        ));
    }
    Ok(0)
}

/// Report a finished task to the server (queued; delivered now if possible).
async fn finished(ctx: &Ctx, record: &crate::session::SessionRecord, task: &str, code: i32, started: Instant) {
    let ms = started.elapsed().as_millis() as u64;
    ctx.reporter.event(record, "task_finished", json!({ "task": task, "exit_code": code, "duration_ms": ms }));
    ctx.reporter.flush().await;
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
