//! `rclaude hooks install|uninstall|status`, and the hidden `hooks run HOOK` the installed
//! scripts call.

use std::path::{Path, PathBuf};

use clap::Subcommand;

use super::GlobalArgs;
use crate::config::GIT_HOOKS;
use crate::error::{CliError, CliResult};
use crate::hooks::{self, Action, HookError};
use crate::ops::context::Ctx;
use crate::ops::tasks::{OnFailure, RunLog, TaskRunner, plan};
use crate::ops::up::{UpOptions, bring_up};
use crate::session::Repo;
use crate::ui::{Mode, Ui};

/// Variable that makes installed hooks skip their tasks (`1`, `true` or `yes`).
pub const SKIP_VAR: &str = "RCLAUDE_SKIP_HOOKS";

/// Git hooks that run tasks in the sandbox, as `[hooks]` in .rclaude.toml says.
///
/// `install` writes a small script for each hook in `[hooks]` into the directory git runs hooks
/// from (`core.hooksPath` when set). A hook already there is kept as `<hook>.rclaude-orig` and
/// runs first; `uninstall` puts it back. Each hook syncs your work tree, runs its tasks in the
/// sandbox with their output shown, and fails when a task fails, which stops the commit or push
/// (pre-* hooks). Skip once with `RCLAUDE_SKIP_HOOKS=1`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  rclaude hooks install\n  RCLAUDE_SKIP_HOOKS=1 git push     # skip the tasks once\n  rclaude hooks uninstall"
)]
pub struct Args {
    #[command(subcommand)]
    pub command: HooksCommand,
}

#[derive(Debug, Subcommand)]
pub enum HooksCommand {
    /// Install the hooks listed in [hooks] (again: updates them, removes ones no longer listed).
    Install,
    /// Remove rclaude's hooks and restore the hooks that were there before.
    Uninstall,
    /// Show which [hooks] are installed.
    Status,
    /// Run a hook's tasks (what the installed hook scripts call).
    #[command(hide = true)]
    Run(RunArgs),
}

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The git hook, e.g. pre-push.
    pub hook: String,
    /// The arguments git gave the hook.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub args: Vec<String>,
}

pub async fn run(g: &GlobalArgs, args: Args) -> CliResult {
    match args.command {
        HooksCommand::Install => install(g),
        HooksCommand::Uninstall => uninstall(g),
        HooksCommand::Status => status(g),
        HooksCommand::Run(a) => run_hook(g, a).await,
    }
}

fn install(g: &GlobalArgs) -> CliResult {
    let ctx = g.checkout_ctx()?;
    let dir = hooks::hooks_dir(&ctx.repo.root).map_err(hook_error)?;
    let exe = current_exe()?;
    let wanted: Vec<&str> = ctx.config.hooks.keys().map(String::as_str).collect();
    let changes = hooks::install(&dir, &wanted, &exe).map_err(hook_error)?;
    let shown = display_dir(&ctx.repo.root, &dir);
    for c in &changes {
        let tasks = ctx
            .config
            .hooks
            .get(&c.hook)
            .map(|t| {
                t.iter()
                    .map(|s| s.get_ref().as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default();
        let kept = format!("{}{}", c.hook, hooks::ORIG_SUFFIX);
        match c.action {
            Action::Installed | Action::Chained | Action::Updated | Action::Unchanged => {
                let what = match c.action {
                    Action::Installed | Action::Chained => "installed",
                    Action::Updated => "updated",
                    _ => "already installed",
                };
                ctx.ui
                    .info(format!("✓ {}: {what}, runs {tasks} in the sandbox", c.hook));
                if c.action == Action::Chained {
                    ctx.ui.info(format!(
                        "  the hook that was there is kept as {shown}/{kept} and runs first"
                    ));
                } else if c.chained {
                    ctx.ui.info(format!("  {shown}/{kept} runs first"));
                }
            }
            Action::Removed => ctx
                .ui
                .info(format!("- {}: removed (no longer in [hooks])", c.hook)),
            Action::Restored => ctx.ui.info(format!(
                "- {}: removed (no longer in [hooks]); the earlier hook is back",
                c.hook
            )),
            Action::OrigLeft => ctx.ui.warn(orig_left(&shown, &c.hook)),
        }
    }
    if wanted.is_empty() {
        ctx.ui.info(format!(
            "No [hooks] in {}; add e.g. `pre-push = [\"test\"]` under [hooks], then run this again.",
            crate::config::CONFIG_FILE
        ));
    } else {
        ctx.ui.info(format!(
            "Hooks are in {shown}. Skip them once with {SKIP_VAR}=1 (e.g. `{SKIP_VAR}=1 git push`)."
        ));
    }
    if !dir.starts_with(&ctx.repo.root) && !dir.starts_with(git_common_dir(&ctx.repo.root)) {
        ctx.ui.warn(format!(
            "core.hooksPath points outside this repository ({}); other repositories using it run \
             these hooks too (they do nothing where there is no {})",
            dir.display(),
            crate::config::CONFIG_FILE
        ));
    }
    Ok(0)
}

fn uninstall(g: &GlobalArgs) -> CliResult {
    let ui = Ui::detect(g.quiet);
    let repo = Repo::discover(&g.start_dir()?)?;
    let dir = hooks::hooks_dir(&repo.root).map_err(hook_error)?;
    let shown = display_dir(&repo.root, &dir);
    let changes = hooks::uninstall(&dir, &[]).map_err(hook_error)?;
    if changes.is_empty() {
        ui.info(format!("No rclaude hooks in {shown}; nothing to do."));
    }
    for c in &changes {
        match c.action {
            Action::Restored => ui.info(format!(
                "- {}: removed; the hook that was there before is back",
                c.hook
            )),
            Action::OrigLeft => ui.warn(orig_left(&shown, &c.hook)),
            _ => ui.info(format!("- {}: removed", c.hook)),
        }
    }
    Ok(0)
}

fn status(g: &GlobalArgs) -> CliResult {
    let ctx = g.checkout_ctx()?;
    let dir = hooks::hooks_dir(&ctx.repo.root).map_err(hook_error)?;
    let wanted: Vec<&str> = ctx.config.hooks.keys().map(String::as_str).collect();
    let hooks::Status { configured, stale } =
        hooks::status(&dir, &wanted, &current_exe()?).map_err(hook_error)?;
    println!("Hooks directory: {}", display_dir(&ctx.repo.root, &dir));
    if configured.is_empty() {
        println!("No [hooks] in {}.", crate::config::CONFIG_FILE);
    }
    let width = configured.iter().map(|(h, _)| h.len()).max().unwrap_or(0);
    for (hook, current) in &configured {
        let tasks: Vec<&str> = ctx.config.hooks[hook]
            .iter()
            .map(|t| t.get_ref().as_str())
            .collect();
        let state = if *current {
            "installed"
        } else {
            "not installed (or outdated)"
        };
        println!("  {hook:<width$}  {state}; runs {}", tasks.join(", "));
    }
    for hook in &stale {
        println!("  {hook}  installed, but no longer in [hooks]");
    }
    let missing = configured.iter().any(|(_, c)| !c) || !stale.is_empty();
    if missing {
        println!("`rclaude hooks install` brings them up to date.");
    }
    Ok(0)
}

/// What an installed hook script runs: the hook's tasks, in the sandbox, after a sync.
async fn run_hook(g: &GlobalArgs, args: RunArgs) -> CliResult {
    let hook = args.hook.as_str();
    if skip_requested() {
        eprintln!("rclaude {hook}: {SKIP_VAR} is set; skipping the sandbox tasks");
        return Ok(0);
    }
    if !GIT_HOOKS.contains(&hook) {
        return Err(CliError::usage(format!(
            "{hook:?} is not a git hook rclaude runs; valid hooks: {}",
            GIT_HOOKS.join(", ")
        )));
    }
    // A shared core.hooksPath can run this hook in repositories rclaude doesn't manage.
    let repo = Repo::discover(&g.start_dir()?)?;
    if !repo.config_path().exists() {
        return Ok(0);
    }
    let mut ctx = g.ctx().await?;
    // Never spinners or prompts inside git.
    ctx.ui = Ui {
        mode: if g.quiet { Mode::Quiet } else { Mode::Plain },
    }
    .out();
    let names: Vec<String> = ctx
        .config
        .hooks
        .get(hook)
        .map(|t| t.iter().map(|s| s.get_ref().clone()).collect())
        .unwrap_or_default();
    if names.is_empty() {
        ctx.ui.info(format!(
            "rclaude {hook}: [hooks] no longer lists {hook}; `rclaude hooks install` removes this hook"
        ));
        return Ok(0);
    }
    let blocks = !hook.starts_with("post-");
    let result = run_hook_tasks(&ctx, hook, &names).await;
    let code = match &result {
        Ok(code) => *code,
        Err(e) => e.code(),
    };
    if code == 0 {
        ctx.ui
            .info(format!("rclaude {hook}: ✓ {} passed", names.join(", ")));
        return Ok(0);
    }
    let consequence = if blocks {
        format!("git stops here. Skip once with {SKIP_VAR}=1 (or git's --no-verify).")
    } else {
        "git carries on regardless (post-* hooks cannot stop it).".to_string()
    };
    match result {
        Ok(code) => {
            eprintln!("rclaude {hook}: failed (exit code {code}); {consequence}");
            Ok(code)
        }
        Err(e) => {
            eprintln!("rclaude {hook}: could not run the tasks; {consequence}");
            Err(e)
        }
    }
}

async fn run_hook_tasks(ctx: &Ctx, hook: &str, names: &[String]) -> CliResult {
    let plan = plan(&ctx.config, names)?;
    ctx.ui.info(format!(
        "rclaude {hook}: running {} in the sandbox ({SKIP_VAR}=1 skips)",
        names.join(", ")
    ));
    let live = bring_up(
        ctx,
        UpOptions {
            sync: true,
            setup: true,
            create_if_gone: true,
            other_provider: crate::ops::up::OtherProvider::Use,
        },
    )
    .await?;
    let runner = TaskRunner::new(ctx, &live.record, &*live.sandbox)?.with_env("RCLAUDE_HOOK", hook);
    let mut log = RunLog::default();
    runner
        .run_plan(&plan, OnFailure::Stop, None, &mut log)
        .await?;
    Ok(log
        .first_failure()
        .map(|o| o.exit_code.unwrap_or(1))
        .unwrap_or(0))
}

/// `RCLAUDE_SKIP_HOOKS` is `1`, `true` or `yes`.
fn skip_requested() -> bool {
    std::env::var(SKIP_VAR)
        .map(|v| matches!(v.trim().to_ascii_lowercase().as_str(), "1" | "true" | "yes"))
        .unwrap_or(false)
}

/// The binary the installed scripts call: this one.
fn current_exe() -> CliResult<PathBuf> {
    let exe =
        std::env::current_exe().map_err(|e| CliError::io("locating the rclaude executable", e))?;
    Ok(exe.canonicalize().unwrap_or(exe))
}

/// The hooks directory relative to the work tree when inside it.
fn display_dir(root: &Path, dir: &Path) -> String {
    dir.strip_prefix(root)
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| dir.display().to_string())
}

/// The repository's common git directory (where `.git/hooks` lives), best effort.
fn git_common_dir(root: &Path) -> PathBuf {
    crate::gitsync::open_work_tree(root)
        .map(|r| r.commondir().to_path_buf())
        .unwrap_or_else(|_| root.join(".git"))
}

fn orig_left(shown: &str, hook: &str) -> String {
    format!(
        "{hook}: {shown}/{hook}{} was left in place because {shown}/{hook} is not rclaude's; \
         put back the one you want by hand",
        hooks::ORIG_SUFFIX
    )
}

fn hook_error(e: HookError) -> CliError {
    match e {
        HookError::HooksDir { .. } => CliError::config(e.to_string()),
        HookError::Io { .. } => CliError::new(crate::error::ErrorKind::Io, e.to_string()),
        HookError::Conflict { .. } => CliError::config(e.to_string()).hint(
            "another tool replaced rclaude's hook; move one of the two files away, then run \
             `rclaude hooks install` again",
        ),
    }
}
