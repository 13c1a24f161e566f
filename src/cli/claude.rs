//! `rclaude claude [PROMPT]`: Claude Code working on this repository in the sandbox.

use std::collections::BTreeMap;

use super::GlobalArgs;
use crate::claude::install::{self, Installed};
use crate::claude::run::{self, ClaudeArgs, Conversation, Launch, RunFiles};
use crate::claude::{self as cc, ClaudeError};
use crate::error::{CliError, CliResult};
use crate::ops::claude_run::{Interrupt, finish, follow, remember_conversation};
use crate::ops::context::Ctx;
use crate::ops::up::{UpOptions, bring_up};
use crate::provider::{PtyRequest, Sandbox};
use crate::session::SessionRecord;

/// Run Claude Code on this repository in the sandbox, with a live transcript.
///
/// The sandbox is brought up and your work tree synced first; Claude Code is installed with npm
/// when missing (`[claude] version` pins it). `ANTHROPIC_API_KEY` or `CLAUDE_CODE_OAUTH_TOKEN`
/// (and `ANTHROPIC_BASE_URL`) from your environment, plus `[secrets]`, are passed to it for
/// this run only. It runs headless with the permission mode from `[claude] permission_mode`
/// (default `bypassPermissions`: the sandbox is the safety boundary).
///
/// The run does not depend on this command: with `--detach`, or when your laptop goes away,
/// it keeps working; `rclaude attach` follows it again. Its edits stay in the sandbox's work
/// tree until `rclaude pull` (or `--pull`) brings them back as a local branch. Without a
/// PROMPT, an interactive Claude Code session opens in your terminal.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  rclaude claude \"make the failing tests pass\" --pull\n  rclaude claude --detach \"port the parser to nom\"\n  rclaude attach\n  rclaude claude --continue \"now add docs for it\"\n  rclaude claude                 # interactive session"
)]
pub struct Args {
    /// What Claude Code should do (several words are joined). Without it: interactive session.
    #[arg(value_name = "PROMPT")]
    pub prompt: Vec<String>,
    /// Start the run and return; it keeps working in the sandbox (follow with `rclaude attach`).
    #[arg(short, long)]
    pub detach: bool,
    /// Continue this sandbox's last Claude Code conversation.
    #[arg(short = 'c', long = "continue")]
    pub continue_: bool,
    /// When the run ends, bring its edits back as the local branch (like `rclaude pull`).
    #[arg(long, conflicts_with = "detach")]
    pub pull: bool,
    /// When the run succeeds, commit its changes in the sandbox and propose them: push
    /// `rclaude/<session>` and open a pull request (like `rclaude pr`).
    #[arg(long, conflicts_with = "detach")]
    pub pr: bool,
    /// Print Claude Code's raw stream-json events instead of the transcript.
    #[arg(long)]
    pub json: bool,
    /// Don't sync the work tree first.
    #[arg(long)]
    pub no_sync: bool,
    /// Model for this run (default: `[claude] model`, else Claude Code's default).
    #[arg(long, value_name = "MODEL")]
    pub model: Option<String>,
    /// Permission mode for this run (default: `[claude] permission_mode`).
    #[arg(long, value_name = "MODE")]
    pub permission_mode: Option<String>,
    /// Run in a new session of this repository (named NAME, else after the prompt), beside the
    /// others: several prompts can work on one repository at once. Its work comes back with
    /// `rclaude pull -s NAME` as `rclaude/NAME/<branch>`.
    #[arg(long, value_name = "NAME", num_args = 0..=1, default_missing_value = "")]
    pub new: Option<String>,
}

pub async fn run(g: &GlobalArgs, args: Args) -> CliResult {
    let prompt = args.prompt.join(" ");
    let ctx = match &args.new {
        None => g.ctx().await?,
        Some(_) if g.session.is_some() => {
            return Err(CliError::usage(
                "--new makes a new session: leave out --session (or use --new NAME)",
            ));
        }
        Some(name) => {
            let name = if name.is_empty() {
                name_from_prompt(&prompt)
            } else {
                name.clone()
            };
            crate::session::validate_session_name(&name).map_err(CliError::usage)?;
            let ctx = g.local_named_ctx(&name)?;
            if ctx.store.load()?.is_some() {
                return Err(
                    CliError::usage(format!("session \"{name}\" already exists")).hint(format!(
                        "`rclaude claude -s {name} \"PROMPT\"` runs in it, or pick another name"
                    )),
                );
            }
            ctx.ui.info(format!(
                "New session \"{name}\" (`-s {name}` reaches it; `rclaude pull -s {name}` brings its work back)"
            ));
            ctx
        }
    };
    let interactive = args.prompt.is_empty();
    if interactive && (args.detach || args.pull || args.pr || args.json) {
        return Err(CliError::usage(
            "--detach, --pull, --pr and --json need a PROMPT (without one, an interactive session opens)",
        ));
    }
    if !interactive && prompt.trim().is_empty() {
        return Err(CliError::usage("the prompt is empty"));
    }
    let mode = args
        .permission_mode
        .clone()
        .unwrap_or_else(|| ctx.config.claude.permission_mode.clone());
    cc::validate_permission_mode(&mode)?;
    if let Some(v) = &ctx.config.claude.version {
        install::validate_version(v)?;
    }
    let model = args
        .model
        .clone()
        .or_else(|| ctx.config.claude.model.clone());
    if model
        .as_deref()
        .is_some_and(|m| m.trim().is_empty() || m.starts_with('-'))
    {
        return Err(CliError::usage(format!(
            "invalid model {:?}",
            model.unwrap_or_default()
        )));
    }

    let live = bring_up(
        &ctx,
        UpOptions {
            sync: !args.no_sync,
            setup: true,
            create_if_gone: !args.continue_,
            other_provider: crate::ops::up::OtherProvider::Use,
        },
    )
    .await?;
    let sandbox = &*live.sandbox;
    let record = &live.record;
    let env = claude_env(&ctx, record)?;
    let claude = ensure_claude(&ctx, sandbox, &env).await?;

    let conversation = if args.continue_ {
        let id = run::conversation(sandbox, &record.workdir)
            .await?
            .or_else(|| record.claude_session.clone())
            .ok_or_else(|| {
                CliError::usage(
                    "there is no earlier Claude Code conversation in this sandbox to continue",
                )
                .hint("start one with `rclaude claude \"PROMPT\"`")
            })?;
        Conversation::Resume(id)
    } else {
        Conversation::fresh()
    };
    if let Some(current) = run::current(sandbox, &record.workdir).await? {
        let files = RunFiles::new(&record.workdir, current.clone());
        if run::is_running(sandbox, &files).await? {
            return Err(ClaudeError::Busy(current.to_string()).into());
        }
    }
    let cargs = ClaudeArgs {
        permission_mode: mode,
        model,
        conversation,
        extra: ctx.config.claude.args.clone(),
    };

    if interactive {
        return interactive_session(&ctx, sandbox, record, &claude, &cargs, env).await;
    }

    let started = run::start(
        sandbox,
        Launch {
            claude: claude.path.clone(),
            claude_version: claude.version.clone(),
            prompt,
            args: cargs,
            env,
            workdir: record.workdir.clone(),
        },
    )
    .await?;
    remember_conversation(&ctx, &started.meta.session_id);
    let id = &started.files.id;
    // Reported as the task `claude` (the server's event types).
    let run_started = std::time::Instant::now();
    ctx.reporter.event(
        record,
        "task_started",
        serde_json::json!({ "task": "claude", "run": id.as_str(), "detached": args.detach }),
    );

    if args.detach {
        extend_lifetime(&ctx, record).await;
        println!("{id}");
        ctx.ui.info(format!(
            "Claude Code is working in the sandbox (run {id}); it keeps going after this command exits."
        ));
        ctx.ui.info("  follow it: `rclaude attach` or `rclaude logs -f` · bring its edits back: `rclaude pull`");
        ctx.ui
            .info("  `rclaude pause` stops it on the local provider");
        if let Some(how) = watch_in_background(&ctx, g, id.as_str()) {
            ctx.ui.info(how);
        }
        ctx.reporter.flush().await;
        return Ok(0);
    }

    ctx.ui
        .info(format!("▶ Claude Code (run {id}); Ctrl-C stops it"));
    let followed = follow(
        &ctx,
        sandbox,
        &started.files,
        crate::ops::claude_run::Show::json_or_transcript(args.json),
        true,
        Interrupt::StopRun { pid: started.pid },
    )
    .await?;
    let code = followed.exit_code();
    ctx.reporter.event(
        record,
        "task_finished",
        serde_json::json!({
            "task": "claude",
            "run": id.as_str(),
            "exit_code": code,
            "duration_ms": run_started.elapsed().as_millis() as u64,
        }),
    );
    ctx.reporter.flush().await;
    // The run's edits are copied off the sandbox before anything else can lose them.
    if followed.end.is_some() {
        crate::ops::checkpoint::take(&ctx, record, sandbox, "claude").await;
    }
    let code = finish(&ctx, &started.files, &followed, args.pull).await?;
    if args.pr && code == 0 {
        let summary = followed.result.as_ref().and_then(|r| r.text.clone());
        let opts = crate::ops::pr::PrOptions {
            summary: summary.clone(),
            ..Default::default()
        };
        let message = summary
            .as_deref()
            .and_then(|s| s.lines().map(str::trim).find(|l| !l.is_empty()))
            .map(|l| {
                l.trim_start_matches('#')
                    .trim()
                    .chars()
                    .take(72)
                    .collect::<String>()
            })
            .filter(|l| !l.is_empty())
            .unwrap_or_else(|| "Claude Code's changes".to_string());
        let outcome = crate::ops::pr::deliver_run(&ctx, record, sandbox, &opts, &message).await?;
        if args.json {
            // stdout carries Claude Code's stream-json lines: the outcome goes to stderr.
            ctx.ui.info(format!(
                "pull request: {}",
                outcome
                    .pull_request
                    .as_ref()
                    .map_or(outcome.branch.as_str(), |p| p.url.as_str())
            ));
        } else {
            super::pr::print(&ctx.ui, &outcome, false)?;
        }
    }
    Ok(code)
}

/// A short, readable session name from the prompt's first words and a random suffix:
/// `"fix the failing tests"` → `fix-the-failing-3f2a`.
fn name_from_prompt(prompt: &str) -> String {
    let words: Vec<String> = prompt
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .take(3)
        .map(|w| w.to_ascii_lowercase().chars().take(10).collect())
        .collect();
    let suffix = &uuid::Uuid::new_v4().simple().to_string()[..4];
    if words.is_empty() {
        format!("run-{suffix}")
    } else {
        format!("{}-{suffix}", words.join("-"))
    }
}

/// Environment of Claude Code in the sandbox: quiet defaults, credentials from this machine's
/// environment, then `[env]`, `[secrets]` and rclaude's own variables (which win).
fn claude_env(ctx: &Ctx, record: &SessionRecord) -> CliResult<BTreeMap<String, String>> {
    let mut env: BTreeMap<String, String> = cc::QUIET_ENV
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    for name in cc::CREDENTIAL_VARS {
        if let Ok(v) = std::env::var(name)
            && !v.is_empty()
        {
            crate::redact::register(name, &v);
            env.insert(name.to_string(), v);
        }
    }
    env.extend(ctx.exec_env(record, crate::config::SecretPhase::Run)?);
    // Where the run's end is announced (the run's wrapper posts to it; Claude Code never sees it).
    if let Ok(url) = std::env::var("RCLAUDE_NOTIFY_WEBHOOK")
        && !url.trim().is_empty()
    {
        if !(url.starts_with("https://") || url.starts_with("http://")) {
            return Err(CliError::usage(
                "RCLAUDE_NOTIFY_WEBHOOK must be an http:// or https:// URL",
            ));
        }
        env.insert("RCLAUDE_NOTIFY_WEBHOOK".into(), url);
    }
    let has_credentials = [
        "ANTHROPIC_API_KEY",
        "CLAUDE_CODE_OAUTH_TOKEN",
        "ANTHROPIC_AUTH_TOKEN",
    ]
    .iter()
    .any(|k| env.contains_key(*k));
    if !has_credentials {
        ctx.ui.warn(
            "neither ANTHROPIC_API_KEY nor CLAUDE_CODE_OAUTH_TOKEN is set here (nor in [secrets]); \
             Claude Code will only work if it is logged in inside the sandbox (`claude setup-token` makes a token)",
        );
    }
    Ok(env)
}

/// Find Claude Code in the sandbox, installing it when missing (or not the pinned version).
async fn ensure_claude(
    ctx: &Ctx,
    sandbox: &dyn Sandbox,
    env: &BTreeMap<String, String>,
) -> CliResult<Installed> {
    let pinned = ctx.config.claude.version.as_deref();
    let found = install::probe(sandbox, env).await?;
    let Some(version) = install::version_to_install(found.as_ref(), pinned) else {
        return Ok(found.expect("a working install needs nothing"));
    };
    let step = ctx.ui.step(format!(
        "Installing Claude Code {version} ({}) with npm",
        cc::PACKAGE
    ));
    if let Err(e) = install::install(sandbox, env, &version).await {
        step.fail(None);
        return Err(e.into());
    }
    match install::probe(sandbox, env).await? {
        Some(i) if i.version.is_some() => {
            step.done(i.version.as_deref());
            Ok(i)
        }
        _ => {
            step.fail(None);
            Err(ClaudeError::BrokenInstall {
                version,
                output: "`claude` is not on PATH, or `claude --version` fails".into(),
            }
            .into())
        }
    }
}

/// E2B pauses idle sandboxes: give a detached run the configured lifetime from now.
async fn extend_lifetime(ctx: &Ctx, record: &SessionRecord) {
    if let Ok(p) = ctx.provider_for(record)
        && p.capabilities().auto_pause
        && let Err(e) = p
            .keep_alive(&record.sandbox_id, ctx.config.sandbox.timeout.0)
            .await
    {
        ctx.ui
            .warn(format!("could not extend the sandbox's timeout: {e}"));
    }
}

/// `rclaude claude` without a prompt: Claude Code's own interface on a terminal in the sandbox.
async fn interactive_session(
    ctx: &Ctx,
    sandbox: &dyn Sandbox,
    record: &SessionRecord,
    claude: &Installed,
    args: &ClaudeArgs,
    mut env: BTreeMap<String, String>,
) -> CliResult {
    env.extend(args.env());
    let id = args.conversation.id().to_string();
    // Record the conversation first: `--continue` finds it even if this terminal dies.
    let dir = run::runs_dir(&record.workdir);
    sandbox.make_dir(&dir).await?;
    sandbox
        .write_files(vec![crate::provider::FileUpload {
            path: format!("{dir}/session"),
            contents: format!("{id}\n").into(),
        }])
        .await?;
    remember_conversation(ctx, &id);
    let req = PtyRequest {
        command: Some(run::interactive_command(&claude.path, &args.interactive())),
        cwd: Some(record.workdir.clone()),
        env,
        cols: 0,
        rows: 0,
        tag: Some(format!("{}interactive", run::TAG_PREFIX)),
    };
    let code = crate::ops::terminal::interactive(sandbox, req).await?;
    ctx.ui.info(
        "Claude's edits are in the sandbox work tree; `rclaude pull` brings them back · `rclaude claude --continue` resumes this conversation",
    );
    Ok(code)
}

/// Start `rclaude wait --notify RUN` in the background, in its own session, when something
/// here wants the end of a detached run: a desktop to notify, or a server to tell. Says what
/// will happen, or `None` when nothing was started.
fn watch_in_background(ctx: &Ctx, g: &GlobalArgs, run: &str) -> Option<String> {
    let desktop = crate::notify::available().is_some();
    if !desktop && !ctx.reporter.enabled() {
        return None;
    }
    let exe = std::env::current_exe().ok()?;
    let mut cmd = std::process::Command::new(exe);
    // `--new NAME` made a session that `g` does not name.
    if let Some(s) = g.session.as_ref().or(ctx.session_name.as_ref()) {
        cmd.args(["--session", s]);
    }
    cmd.args(["wait", "--notify", run])
        .current_dir(&ctx.repo.root)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    crate::host::detach(&mut cmd);
    match cmd.spawn() {
        // Reaped by whoever inherits it once this command exits.
        Ok(child) => {
            std::mem::forget(child);
            Some(if desktop {
                "  a desktop notification shows when it ends (RCLAUDE_NOTIFY_DESKTOP=0 turns that off)".into()
            } else {
                "  its end is reported to the server by a background `rclaude wait`".into()
            })
        }
        Err(e) => {
            tracing::warn!("could not start the background wait for run {run}: {e}");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::name_from_prompt;

    #[test]
    fn names_from_prompts_are_valid_session_names() {
        for p in [
            "fix the failing tests",
            "",
            "¿Qué? /etc/passwd ../..",
            "Refactor   THE parser!!",
        ] {
            let n = name_from_prompt(p);
            assert!(
                crate::session::validate_session_name(&n).is_ok(),
                "{p:?} → {n:?}"
            );
        }
        assert!(name_from_prompt("fix the failing tests").starts_with("fix-the-failing-"));
        assert!(name_from_prompt("").starts_with("run-"));
    }
}
