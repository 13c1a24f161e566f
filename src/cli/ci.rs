//! `rclaude ci TASK...`: run tasks in a new, throwaway sandbox, destroyed at the end whatever
//! happens, with a summary (`--json` for machines) and an exit code for the CI system.

use std::fs::File;
use std::future::Future;
use std::io::Write;
use std::os::fd::FromRawFd;
use std::pin::{Pin, pin};
use std::time::{Duration, Instant};

use futures::FutureExt;
use serde_json::{Value, json};
use tokio::signal::unix::{SignalKind, signal};

use super::GlobalArgs;
use crate::error::{CliError, CliResult, ErrorKind};
use crate::ops::context::Ctx;
use crate::ops::tasks::{OnFailure, RunLog, TaskOutcome, TaskRunner, TaskStatus, plan};
use crate::ops::up::{UpOptions, bring_up};
use crate::session::{SessionRecord, SessionStore};
use crate::ui::{Mode, Ui, format_elapsed};

/// Exit code when `--timeout` expires (as `timeout(1)`); also a task's code when its own
/// `timeout` killed it.
pub const EXIT_TIMEOUT: i32 = 124;
/// Longest wait for the provider to destroy the sandbox.
const CLEANUP_TIMEOUT: Duration = Duration::from_secs(120);

/// Run tasks in a new sandbox made for this run, then destroy it (for CI).
///
/// Creates a new sandbox on the provider in .rclaude.toml (the repository's own sandbox, if
/// any, is neither used nor touched), syncs the work tree, runs `[setup]` and `[start]`, then
/// the tasks in the order given, each one's dependencies first and every task once. After a
/// failing task the remaining tasks are skipped, unless `--keep-going`, which runs every task
/// whose dependencies passed. The sandbox is destroyed at the end: after success, failure,
/// `--timeout`, Ctrl-C or SIGTERM. Output is plain (no spinners); `CI=true` is set for the
/// tasks unless `[env]` sets CI.
///
/// Exit code: 0 when every task passed; otherwise the exit code of the first task that did not
/// pass (124 when its own `timeout` stopped it); 124 when `--timeout` expired; 130 on SIGINT,
/// 143 on SIGTERM; the usual codes (65 sync, 69 sandbox, ...) when the run could not start,
/// and 69 when everything passed but the sandbox could not be destroyed.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  rclaude ci test\n  rclaude ci lint test --keep-going --json > rclaude-ci.json\n  rclaude ci test --timeout 30m"
)]
pub struct Args {
    /// Tasks to run, in order (their dependencies run first).
    #[arg(
        required = true,
        value_name = "TASK",
        add = clap_complete::ArgValueCompleter::new(super::args::task_names)
    )]
    pub tasks: Vec<String>,
    /// Print a JSON summary on stdout (task output then goes to stderr).
    #[arg(long)]
    pub json: bool,
    /// After a failure, still run the tasks that don't depend on the failed one.
    #[arg(short = 'k', long)]
    pub keep_going: bool,
    /// Stop everything after this long (e.g. 30m, 1h), counted from the start.
    #[arg(long, value_name = "DURATION")]
    pub timeout: Option<String>,
    /// Lines of each task's output kept in the summary's `log_tail`.
    #[arg(long, value_name = "N", default_value_t = 50)]
    pub tail: usize,
    /// When every task passed, commit what the tasks changed in the sandbox and propose it:
    /// push `rclaude/<session>` and open a pull request (like `rclaude pr`).
    #[arg(long)]
    pub pr: bool,
}

pub async fn run(g: &GlobalArgs, args: Args) -> CliResult {
    let started = Instant::now();
    // First of all: from here on a signal can no longer kill us before the sandbox is gone.
    let mut signals = Signals::install()?;
    // Tasks' remote processes see the signals too (see `signals`); ci handles them itself.
    let _attached =
        crate::ops::signals::attach().map_err(|e| CliError::io("installing signal handlers", e))?;
    let timeout = args
        .timeout
        .as_deref()
        .map(super::args::parse_duration)
        .transpose()?;
    // With --json, stdout is the summary's alone: everything else printed goes to stderr.
    let mut json_out = if args.json {
        Some(stdout_to_stderr()?)
    } else {
        None
    };

    let mut ctx = g.ctx().await?;
    ctx.ui = Ui {
        mode: if g.quiet { Mode::Quiet } else { Mode::Plain },
    }
    .out();
    let plan = plan(&ctx.config, &args.tasks)?;
    // A throwaway session record, apart from the repository's own.
    let run_id = uuid::Uuid::new_v4().simple().to_string()[..12].to_string();
    // Sandboxes of earlier runs that were killed (SIGKILL) before they could clean up.
    crate::ops::leftovers::reap(&ctx.ui).await;
    // Recorded with our pid, so that a later run can clean up after this one if it is killed.
    let scratch = crate::ops::leftovers::start_run(&run_id)?;
    ctx.store = SessionStore::in_dir(&scratch, "session");
    let provider_name = ctx.config.sandbox.provider.as_str().to_string();
    let deadline = timeout.map(|t| started + t);
    let on_failure = if args.keep_going {
        OnFailure::KeepGoing
    } else {
        OnFailure::Stop
    };

    let mut log = RunLog::default();
    let mut delivered = None;
    let ending = if let Some(sig) = signals.pending() {
        Ending::Stopped(Stop::Signal(sig))
    } else {
        let ctx = &ctx;
        let log = &mut log;
        let plan = &plan;
        let delivered = &mut delivered;
        let want_pr = args.pr;
        let work = pin!(async move {
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
            let mut runner =
                TaskRunner::new(ctx, &live.record, &*live.sandbox)?.tail_lines(args.tail);
            if !ctx.config.env.contains_key("CI") {
                runner = runner.with_env("CI", "true");
            }
            runner = runner.with_env("RCLAUDE_CI", "1");
            runner.run_plan(plan, on_failure, None, log).await?;
            if want_pr && log.first_failure().is_none() {
                let message = format!("rclaude ci: {}", plan.join(", "));
                let opts = crate::ops::pr::PrOptions {
                    summary: Some(format!("Changes made by `rclaude ci {}`.", plan.join(" "))),
                    ..Default::default()
                };
                *delivered = Some(
                    crate::ops::pr::deliver_run(ctx, &live.record, &*live.sandbox, &opts, &message)
                        .await?,
                );
            }
            Ok(())
        });
        drive(work, &mut signals, deadline, &ctx.store).await
    };

    // Always destroy what was created.
    let record = ctx.store.load().ok().flatten();
    let destroyed = match &record {
        Some(r) => destroy(&ctx, r, &mut signals).await,
        None => true,
    };
    if destroyed {
        crate::ops::leftovers::finish_run(&scratch);
    }

    // A signal that raced with the end of the work still counts as an interruption.
    let stop = match ending {
        Ending::Stopped(s) => Some(s),
        Ending::Done(_) => signals
            .first
            .or_else(|| signals.pending())
            .map(Stop::Signal),
    };
    let error = match &ending {
        Ending::Done(Err(e)) if stop.is_none() => Some(e),
        _ => None,
    };
    let tasks = outcomes(&plan, log, stop);
    let mut code = match (stop, error) {
        (Some(Stop::Signal(s)), _) => 128 + s,
        (Some(Stop::Timeout), _) => EXIT_TIMEOUT,
        (None, Some(e)) => e.code(),
        (None, None) => tasks
            .iter()
            .find(|t| matches!(t.status, TaskStatus::Failed | TaskStatus::TimedOut))
            .map(|t| t.exit_code.unwrap_or(1))
            .unwrap_or(0),
    };
    if !destroyed && code == 0 {
        code = ErrorKind::Unavailable.exit_code();
    }
    let summary = Summary {
        ok: code == 0,
        exit_code: code,
        sandbox: record.as_ref().map(|r| r.sandbox_id.clone()),
        provider: provider_name,
        destroyed,
        duration: started.elapsed(),
        stopped_by: stop,
        timeout,
        error,
        tasks,
        pull_request: delivered,
    };
    match json_out.as_mut() {
        Some(out) => {
            let text = serde_json::to_string_pretty(&summary.to_json())
                .map_err(|e| CliError::internal(e.to_string()))?;
            // Log tails are redacted as they stream; error messages are taken care of here.
            let mut text = crate::redact::text(&text).into_owned();
            text.push('\n');
            out.write_all(text.as_bytes())
                .and_then(|_| out.flush())
                .map_err(|e| CliError::io("writing the JSON summary", e))?;
            if let Some(e) = summary.error {
                report(e);
            }
        }
        None => summary.print(g.quiet),
    }
    Ok(code)
}

/// Why the run was cut short.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// SIGINT (2), SIGTERM (15) or SIGHUP (1).
    Signal(i32),
    /// `--timeout` expired.
    Timeout,
}

enum Ending {
    Done(CliResult<()>),
    Stopped(Stop),
}

/// Run `work` until it ends, a signal arrives or the deadline passes. A run cut short while
/// the sandbox is being created goes on until its record exists, so the sandbox can be found
/// and destroyed.
async fn drive<F: Future<Output = CliResult<()>>>(
    mut work: Pin<&mut F>,
    signals: &mut Signals,
    deadline: Option<Instant>,
    store: &SessionStore,
) -> Ending {
    let expired = async {
        match deadline {
            Some(d) => tokio::time::sleep_until(d.into()).await,
            None => std::future::pending().await,
        }
    };
    let stop = tokio::select! {
        r = &mut work => return Ending::Done(r),
        s = signals.recv() => {
            eprintln!("\nci: received {}; stopping and destroying the sandbox…", stop_name(Stop::Signal(s)));
            Stop::Signal(s)
        }
        _ = expired => Stop::Timeout,
    };
    if stop == Stop::Timeout {
        eprintln!("\nci: --timeout expired; stopping and destroying the sandbox…");
    }
    loop {
        if !matches!(store.load(), Ok(None)) {
            return Ending::Stopped(stop);
        }
        tokio::select! {
            _ = &mut work => return Ending::Stopped(stop),
            _ = tokio::time::sleep(Duration::from_millis(20)) => {}
        }
    }
}

/// Destroy the run's sandbox; `false` (after saying so) when it could not be.
async fn destroy(ctx: &Ctx, record: &SessionRecord, signals: &mut Signals) -> bool {
    let step = ctx.ui.step("Destroying sandbox");
    let result = match ctx.provider_for(record) {
        Ok(p) => {
            let kill = tokio::time::timeout(CLEANUP_TIMEOUT, p.kill(&record.sandbox_id));
            let mut kill = pin!(kill);
            // Signals now only get a note: stopping the cleanup would leave the sandbox behind.
            let outcome = loop {
                tokio::select! {
                    r = &mut kill => break r,
                    _ = signals.recv() => eprintln!("ci: still destroying sandbox {}; this ends soon", record.sandbox_id),
                }
            };
            match outcome {
                Ok(Ok(())) | Ok(Err(crate::provider::ProviderError::NotFound(_))) => Ok(()),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err(format!("no answer within {}s", CLEANUP_TIMEOUT.as_secs())),
            }
        }
        Err(e) => Err(e.message),
    };
    if let Err(e) = result {
        step.fail(None);
        ctx.ui.warn(format!(
            "could not destroy sandbox {} ({}): {e}; remove it with your provider's console \
             or tools (session record kept in {})",
            record.sandbox_id,
            record.provider,
            ctx.store.path().display()
        ));
        return false;
    }
    step.done(Some(&record.sandbox_id));
    ctx.reporter.event(record, "stopped", json!({ "ci": true }));
    ctx.reporter.flush().await;
    true
}

/// Every planned task's outcome, including those cut short or never started.
fn outcomes(plan: &[String], mut log: RunLog, stop: Option<Stop>) -> Vec<TaskOutcome> {
    let current = log.current.take();
    plan.iter()
        .map(|name| {
            if let Some(o) = log.outcomes.iter().find(|o| &o.name == name) {
                let mut o = o.clone();
                if o.status == TaskStatus::TimedOut {
                    o.exit_code = Some(EXIT_TIMEOUT);
                }
                return o;
            }
            if let Some(cur) = current.as_ref().filter(|c| &c.name == name) {
                let (status, exit_code) = match stop {
                    Some(Stop::Timeout) => (TaskStatus::TimedOut, Some(EXIT_TIMEOUT)),
                    _ => (TaskStatus::Interrupted, None),
                };
                return TaskOutcome {
                    name: name.clone(),
                    status,
                    exit_code,
                    duration: cur.started.elapsed(),
                    log_tail: cur.tail.text(),
                };
            }
            TaskOutcome {
                name: name.clone(),
                status: TaskStatus::Skipped,
                exit_code: None,
                duration: Duration::ZERO,
                log_tail: String::new(),
            }
        })
        .collect()
}

struct Summary<'a> {
    ok: bool,
    exit_code: i32,
    sandbox: Option<String>,
    provider: String,
    destroyed: bool,
    duration: Duration,
    stopped_by: Option<Stop>,
    timeout: Option<Duration>,
    error: Option<&'a CliError>,
    tasks: Vec<TaskOutcome>,
    /// `--pr`: the branch and pull request the tasks' changes were proposed as.
    pull_request: Option<crate::ops::pr::PrOutcome>,
}

impl Summary<'_> {
    fn to_json(&self) -> Value {
        let tasks: Vec<Value> = self
            .tasks
            .iter()
            .map(|t| {
                json!({
                    "name": t.name,
                    "status": t.status.as_str(),
                    "exit_code": t.exit_code,
                    "duration_ms": t.duration.as_millis() as u64,
                    "log_tail": t.log_tail,
                })
            })
            .collect();
        json!({
            "ok": self.ok,
            "exit_code": self.exit_code,
            "sandbox": self.sandbox,
            "provider": self.provider,
            "destroyed": self.destroyed,
            "duration_ms": self.duration.as_millis() as u64,
            "stopped_by": self.stopped_by.map(stop_name),
            "error": self.error.map(|e| json!({
                "kind": e.kind.as_str(),
                "message": e.message,
                "causes": e.causes(),
                "hint": e.hint,
            })),
            "tasks": tasks,
            "pull_request": self.pull_request,
        })
    }

    /// The human summary, on stderr.
    fn print(&self, quiet: bool) {
        if let Some(e) = self.error {
            report(e);
        }
        if quiet && self.ok {
            return;
        }
        let sandbox = match (&self.sandbox, self.destroyed) {
            (Some(id), true) => format!("{} sandbox {id}, destroyed", self.provider),
            (Some(id), false) => format!("{} sandbox {id}, NOT destroyed", self.provider),
            (None, _) => format!("{}, no sandbox created", self.provider),
        };
        eprintln!("\nci summary ({sandbox}):");
        let width = self.tasks.iter().map(|t| t.name.len()).max().unwrap_or(0);
        for t in &self.tasks {
            let mark = match t.status {
                TaskStatus::Passed => "✓",
                TaskStatus::Skipped => "-",
                _ => "✗",
            };
            let mut line = format!("  {mark} {:<width$}  {}", t.name, t.status.as_str());
            if t.status != TaskStatus::Skipped {
                line.push_str(&format!("  {}", format_elapsed(t.duration)));
            }
            if let Some(c) = t.exit_code.filter(|c| *c != 0) {
                line.push_str(&format!("  exit code {c}"));
            }
            eprintln!("{line}");
        }
        if let Some(o) = &self.pull_request {
            match &o.pull_request {
                Some(pr) => eprintln!(
                    "  proposed: {} → pull request #{} {}",
                    o.branch, pr.number, pr.url
                ),
                None => eprintln!("  proposed: {} pushed to {}", o.branch, o.upstream),
            }
        }
        let how = match self.stopped_by {
            Some(Stop::Timeout) => format!(
                "timed out after {}",
                format_elapsed(self.timeout.unwrap_or_default())
            ),
            Some(s) => format!("interrupted by {}", stop_name(s)),
            None if self.ok => "passed".to_string(),
            None => "failed".to_string(),
        };
        eprintln!(
            "ci: {how} in {} (exit code {})",
            format_elapsed(self.duration),
            self.exit_code
        );
    }
}

fn stop_name(s: Stop) -> &'static str {
    match s {
        Stop::Timeout => "timeout",
        Stop::Signal(libc::SIGTERM) => "SIGTERM",
        Stop::Signal(libc::SIGHUP) => "SIGHUP",
        Stop::Signal(_) => "SIGINT",
    }
}

fn report(e: &CliError) {
    eprint!("{}", crate::redact::text(&e.render()));
}

/// SIGINT, SIGTERM and SIGHUP, caught for the rest of the process's life.
///
/// Polled directly by the code that reacts to them (no listener task), so a signal is seen in
/// the same wake-up that delivers it to the remote-process streaming below.
struct Signals {
    int: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
    /// The first signal received.
    first: Option<i32>,
}

impl Signals {
    fn install() -> CliResult<Signals> {
        let err = |e| CliError::io("installing signal handlers", e);
        Ok(Signals {
            int: signal(SignalKind::interrupt()).map_err(err)?,
            term: signal(SignalKind::terminate()).map_err(err)?,
            hup: signal(SignalKind::hangup()).map_err(err)?,
            first: None,
        })
    }

    /// Wait for the next signal.
    async fn recv(&mut self) -> i32 {
        let sig = tokio::select! {
            Some(()) = self.int.recv() => libc::SIGINT,
            Some(()) = self.term.recv() => libc::SIGTERM,
            Some(()) = self.hup.recv() => libc::SIGHUP,
            else => std::future::pending().await,
        };
        self.first.get_or_insert(sig);
        sig
    }

    /// A signal that has arrived and not been waited for yet (also recorded in `first`).
    fn pending(&mut self) -> Option<i32> {
        self.recv().now_or_never()
    }
}

/// Point fd 1 at stderr; return a handle on the original stdout (not inherited by children).
fn stdout_to_stderr() -> CliResult<File> {
    let _ = std::io::stdout().flush();
    // SAFETY: plain fd duplication on the process's standard descriptors.
    let saved = unsafe { libc::fcntl(1, libc::F_DUPFD_CLOEXEC, 3) };
    if saved < 0 {
        return Err(CliError::io(
            "duplicating stdout",
            std::io::Error::last_os_error(),
        ));
    }
    // SAFETY: as above; fd 2 is open for the whole process.
    if unsafe { libc::dup2(2, 1) } < 0 {
        return Err(CliError::io(
            "redirecting stdout",
            std::io::Error::last_os_error(),
        ));
    }
    // SAFETY: `saved` is a fresh descriptor owned by nothing else.
    Ok(unsafe { File::from_raw_fd(saved) })
}
