//! Following a Claude Code run in the sandbox (transcript so far, then live until it ends) and
//! what happens when it ended (conversation recorded, work pulled, exit code): shared by
//! `claude`, `attach` and `logs --claude`.

use std::io::{IsTerminal, Write};

use super::context::Ctx;
use crate::claude::ClaudeError;
use crate::claude::render::{Renderer, RunResult};
use crate::claude::run::{self, Follower, RunEnd, RunFiles, RunId};
use crate::error::{CliError, CliResult, ErrorKind};
use crate::provider::Sandbox;
use crate::session::SessionRecord;

/// The run named by the user, or the latest one.
pub async fn resolve_run(
    sandbox: &dyn Sandbox,
    record: &SessionRecord,
    run: Option<&str>,
) -> CliResult<RunFiles> {
    let id = match run {
        Some(r) => RunId::parse(r)?,
        None => run::current(sandbox, &record.workdir)
            .await?
            .ok_or(ClaudeError::NoRun)?,
    };
    let files = RunFiles::new(&record.workdir, id.clone());
    if run::meta(sandbox, &files).await?.is_none() {
        return Err(ClaudeError::UnknownRun(id.to_string()).into());
    }
    Ok(files)
}

/// Say which run is followed and how it was started.
pub async fn describe(ctx: &Ctx, sandbox: &dyn Sandbox, files: &RunFiles) {
    if let Ok(Some(m)) = run::meta(sandbox, files).await {
        ctx.ui.info(format!(
            "Following Claude Code run {} (started {}): {}",
            m.id, m.started_at, m.title
        ));
    }
}

/// What Ctrl-C does while following.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Interrupt {
    /// Stop the run (SIGTERM to this pid, SIGKILL on the second Ctrl-C) and show how it ended.
    StopRun { pid: u32 },
    /// Stop following; the run goes on.
    Detach,
}

/// The outcome of following a run.
#[derive(Debug, Default)]
pub(crate) struct Followed {
    /// How the run ended; `None` when we stopped following first (detached, or not `follow`).
    pub end: Option<RunEnd>,
    pub session_id: Option<String>,
    pub result: Option<RunResult>,
}

impl Followed {
    /// The exit code for this command: Claude Code's, or 1 when its result was an error.
    pub fn exit_code(&self) -> i32 {
        match self.end {
            Some(RunEnd::Exited(c)) if c != 0 => c,
            Some(RunEnd::Exited(_)) if self.result.as_ref().is_some_and(|r| r.is_error) => 1,
            Some(RunEnd::Exited(_)) | None => 0,
            Some(RunEnd::Lost) => ErrorKind::Unavailable.exit_code(),
        }
    }
}

/// Colors on a terminal, not in CI, not with `NO_COLOR`.
fn use_color() -> bool {
    let set = |k: &str| std::env::var(k).is_ok_and(|v| !v.is_empty() && v != "0" && v != "false");
    std::io::stdout().is_terminal() && !set("CI") && !set("NO_COLOR")
}

/// What [`follow`] prints of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Show {
    /// The rendered transcript.
    Transcript,
    /// Claude Code's raw stream-json lines.
    Json,
    /// Nothing (`wait`).
    Nothing,
}

impl Show {
    /// `Json` when `json`, else `Transcript`.
    pub fn json_or_transcript(json: bool) -> Show {
        if json { Show::Json } else { Show::Transcript }
    }
}

/// Print a run's transcript from the start (as `show` says); with `follow`, keep going until
/// the run ends. Ctrl-C does what `interrupt` says.
pub(crate) async fn follow(
    ctx: &Ctx,
    sandbox: &dyn Sandbox,
    files: &RunFiles,
    show: Show,
    follow: bool,
    interrupt: Interrupt,
) -> CliResult<Followed> {
    let mut renderer = Renderer::new(use_color());
    let mut follower = Follower::new(sandbox, files.clone());
    let mut out = Followed::default();
    let mut interrupts = 0u32;
    // A signal stream (not `ctrl_c()` per wait): a Ctrl-C during a poll is not lost.
    let mut sigint = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        .map_err(|e| CliError::internal(format!("cannot watch for Ctrl-C: {e}")))?;
    let stdout = std::io::stdout();
    loop {
        let poll = follower.poll().await?;
        {
            let mut o = stdout.lock();
            for line in &poll.lines {
                // Lines are whole: redacting each one catches every value.
                let line = crate::redact::text(line);
                let line = line.as_ref();
                let text = renderer.line(line);
                match show {
                    Show::Json => {
                        let _ = writeln!(o, "{line}");
                    }
                    Show::Transcript => {
                        let _ = o.write_all(text.as_bytes());
                    }
                    Show::Nothing => {}
                }
            }
            let _ = o.flush();
        }
        out.session_id = renderer.session_id().map(str::to_string);
        out.result = renderer.result().cloned();
        if let Some(end) = poll.end {
            out.end = Some(end);
            if end != RunEnd::Exited(0) {
                show_stderr(ctx, sandbox, files, end).await;
            }
            return Ok(out);
        }
        if !follow && poll.lines.is_empty() {
            return Ok(out);
        }
        if !poll.lines.is_empty() {
            continue;
        }
        tokio::select! {
            _ = tokio::time::sleep(follower.delay()) => {}
            _ = sigint.recv() => {
                interrupts += 1;
                match interrupt {
                    Interrupt::Detach => {
                        ctx.ui.info(format!(
                            "\nDetached; Claude Code keeps working in the sandbox (run {}). `rclaude attach` follows it again.",
                            files.id
                        ));
                        return Ok(out);
                    }
                    Interrupt::StopRun { pid } => {
                        let force = interrupts > 1;
                        if !matches!(run::stop(sandbox, files, force).await, Ok(true)) {
                            // No pid file (yet): signal the wrapper's process group instead.
                            let _ = sandbox.kill_process(pid, force).await;
                        }
                        if interrupts > 1 {
                            return Err(CliError::new(ErrorKind::Interrupted, "interrupted; Claude Code was killed"));
                        }
                        ctx.ui.info("\ninterrupt: stopping Claude Code (Ctrl-C again to force)…");
                    }
                }
            }
        }
    }
}

/// After a failed or lost run: what Claude Code said on stderr (the last lines).
async fn show_stderr(ctx: &Ctx, sandbox: &dyn Sandbox, files: &RunFiles, end: RunEnd) {
    if let Ok(b) = sandbox.read_file(&files.stderr()).await {
        let text = String::from_utf8_lossy(&b);
        let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        for l in &lines[lines.len().saturating_sub(15)..] {
            ctx.ui.info(format!("  claude: {l}"));
        }
    }
    if end == RunEnd::Lost {
        ctx.ui.warn(format!(
            "Claude Code run {} stopped without finishing (the sandbox was paused or restarted, or the run was killed)",
            files.id
        ));
    }
}

/// Keep the conversation id in this machine's session record.
pub(crate) fn remember(ctx: &Ctx, followed: &Followed) {
    let Some(id) = &followed.session_id else {
        return;
    };
    remember_conversation(ctx, id);
}

/// Record `id` as this sandbox's Claude Code conversation (`rclaude claude --continue`).
pub(crate) fn remember_conversation(ctx: &Ctx, id: &str) {
    let Ok(_lock) = ctx.store.lock() else { return };
    if let Ok(Some(mut rec)) = ctx.store.load()
        && rec.claude_session.as_deref() != Some(id)
    {
        rec.claude_session = Some(id.to_string());
        if let Err(e) = ctx.store.save(&rec) {
            ctx.ui.warn(format!(
                "could not record the conversation id: {}",
                e.message
            ));
        }
    }
}

/// After a run ended: record the conversation, pull or say how, and pick the exit code.
pub(crate) async fn finish(
    ctx: &Ctx,
    files: &RunFiles,
    followed: &Followed,
    pull: bool,
) -> CliResult {
    let Some(end) = followed.end else {
        return Ok(0);
    };
    remember(ctx, followed);
    if end == RunEnd::Lost {
        return Err(CliError::unavailable(format!(
            "Claude Code run {} did not finish",
            files.id
        ))
        .hint("its edits so far are in the sandbox: `rclaude pull`; `rclaude claude --continue \"PROMPT\"` picks the conversation up again"));
    }
    let code = followed.exit_code();
    if let (RunEnd::Exited(c), None) = (end, &followed.result)
        && c != 0
    {
        ctx.ui.warn(format!(
            "Claude Code ended with exit code {c} before it finished (run {})",
            files.id
        ));
    }
    if pull {
        let _lock = ctx.store.lock()?;
        let record = ctx.require_session()?;
        let report = super::pull::pull(
            ctx,
            &record,
            ctx.config.sync.pull_branch.clone(),
            false,
            None,
            "Pulling Claude's work",
        )
        .await?;
        for line in report.hint_lines() {
            ctx.ui.info(line);
        }
    } else {
        let record = ctx.require_session()?;
        let what = if code == 0 {
            "Claude's edits are"
        } else {
            "Whatever Claude changed before it stopped is"
        };
        ctx.ui.info(format!(
            "{what} in the sandbox work tree; `rclaude pull` brings it back as branch {}",
            pull_branch(ctx, &record)
        ));
    }
    Ok(code)
}

/// The local branch `rclaude pull` would write.
fn pull_branch(ctx: &Ctx, record: &SessionRecord) -> String {
    ctx.config
        .sync
        .pull_branch
        .replace(
            "{branch}",
            &ctx.repo.branch().unwrap_or_else(|| "HEAD".into()),
        )
        .replace("{session}", &record.session_id)
}

impl From<ClaudeError> for CliError {
    fn from(e: ClaudeError) -> Self {
        let msg = e.to_string();
        match e {
            ClaudeError::Sandbox(s) => s.into(),
            ClaudeError::NpmMissing => CliError::unavailable(msg).hint(
                "use a sandbox image with Node.js and npm, or install Claude Code in [setup]",
            ),
            ClaudeError::InstallFailed { .. } | ClaudeError::BrokenInstall { .. } => {
                CliError::unavailable(msg).hint(
                    "check the sandbox's access to the npm registry, or pin another version with [claude] version",
                )
            }
            ClaudeError::InvalidVersion(_) | ClaudeError::InvalidPermissionMode(_) => {
                CliError::config(msg)
            }
            ClaudeError::InvalidRunId(_) | ClaudeError::UnknownRun(_) => CliError::usage(msg),
            ClaudeError::NoRun => CliError::unavailable(msg)
                .hint("start one with `rclaude claude \"PROMPT\"` (add --detach to let it work on its own)"),
            ClaudeError::Busy(_) => CliError::unavailable(msg)
                .hint("`rclaude attach` follows it; wait for it to finish before starting another"),
            ClaudeError::Corrupt { .. } => CliError::internal(msg),
        }
    }
}
