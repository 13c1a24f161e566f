//! Running `[tasks]` in a live sandbox, shared by `run`, git hooks and `ci`: dependency order,
//! per-task timeouts, streamed output, an optional log tail, and what happens after a failure.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use serde_json::json;

use super::context::Ctx;
use super::stream::{Sink, run_streamed};
use crate::config::Config;
use crate::error::{CliError, CliResult, ErrorKind};
use crate::format::format_elapsed;
use crate::provider::{ExecRequest, Sandbox};
use crate::session::SessionRecord;
use crate::shell::quote;

/// Tasks to run for `names`, in order: each one's dependencies first, every task once.
pub fn plan(config: &Config, names: &[String]) -> CliResult<Vec<String>> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for name in names {
        let one = config
            .task_plan(name)
            .map_err(|e| CliError::usage(e.to_string()))?;
        for t in one {
            if seen.insert(t.clone()) {
                out.push(t);
            }
        }
    }
    Ok(out)
}

/// How a task ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskStatus {
    Passed,
    Failed,
    /// Not run: an earlier failure stopped the run, or a dependency did not pass.
    Skipped,
    /// Killed by its own `timeout`, or cut off by a whole-run deadline.
    TimedOut,
    /// Stopped by a signal (Ctrl-C, SIGTERM).
    Interrupted,
}

impl TaskStatus {
    /// Name used in `--json` output.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskStatus::Passed => "passed",
            TaskStatus::Failed => "failed",
            TaskStatus::Skipped => "skipped",
            TaskStatus::TimedOut => "timed_out",
            TaskStatus::Interrupted => "interrupted",
        }
    }
}

/// One task's result.
#[derive(Debug, Clone)]
pub struct TaskOutcome {
    pub name: String,
    pub status: TaskStatus,
    /// The failing command's exit code (0 when passed); `None` when the task did not finish.
    pub exit_code: Option<i32>,
    pub duration: Duration,
    /// The last lines of the task's output (empty unless a tail was asked for).
    pub log_tail: String,
}

/// What to do after a task fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnFailure {
    /// Skip every remaining task.
    Stop,
    /// Run the remaining tasks whose dependencies all passed.
    KeepGoing,
}

/// A run's progress, kept outside the running future so that a run cut short (signal,
/// deadline) can still be reported: finished tasks and the one in flight.
#[derive(Debug, Default)]
pub struct RunLog {
    pub outcomes: Vec<TaskOutcome>,
    pub current: Option<CurrentTask>,
}

/// The task running right now.
#[derive(Debug)]
pub struct CurrentTask {
    pub name: String,
    pub started: Instant,
    pub tail: LogTail,
    /// The last lines, for the `task_finished` event (what the dashboard and `logs` show).
    pub recent: LogTail,
}

/// Lines of output a `task_finished` event carries, and at most this many bytes of them.
const EVENT_TAIL_LINES: usize = 10;
const EVENT_TAIL_BYTES: usize = 2048;

impl RunLog {
    /// The first task that did not pass, if any.
    pub fn first_failure(&self) -> Option<&TaskOutcome> {
        self.outcomes
            .iter()
            .find(|o| !matches!(o.status, TaskStatus::Passed | TaskStatus::Skipped))
    }
}

/// Runs tasks from `.rclaude.toml` in one sandbox.
pub struct TaskRunner<'a> {
    ctx: &'a Ctx,
    record: &'a SessionRecord,
    sandbox: &'a dyn Sandbox,
    env: BTreeMap<String, String>,
    tail_lines: usize,
}

impl<'a> TaskRunner<'a> {
    /// A runner with the session's environment and no log tail; output streams to the terminal.
    pub fn new(
        ctx: &'a Ctx,
        record: &'a SessionRecord,
        sandbox: &'a dyn Sandbox,
    ) -> CliResult<TaskRunner<'a>> {
        Ok(TaskRunner {
            ctx,
            record,
            sandbox,
            env: ctx.exec_env(record, crate::config::SecretPhase::Run)?,
            tail_lines: 0,
        })
    }

    /// Set an extra variable for every task.
    pub fn with_env(mut self, key: &str, value: &str) -> Self {
        self.env.insert(key.into(), value.into());
        self
    }

    /// Keep the last `lines` lines of each task's output in its outcome.
    pub fn tail_lines(mut self, lines: usize) -> Self {
        self.tail_lines = lines;
        self
    }

    /// Run `plan` in order (as made by [`plan`]), recording into `log`. `extra_args`, for the
    /// named task, are appended to its last command. An error (sandbox unreachable,
    /// interrupted) ends the run at once, with the task in flight recorded as failed or
    /// interrupted.
    pub async fn run_plan(
        &self,
        plan: &[String],
        on_failure: OnFailure,
        extra_args: Option<(&str, &[String])>,
        log: &mut RunLog,
    ) -> CliResult<()> {
        let started = Instant::now();
        for name in plan {
            if let Some(reason) = self.skip_reason(name, on_failure, log) {
                if on_failure == OnFailure::KeepGoing {
                    self.ctx
                        .ui
                        .info(format!("- skipping task {name}: {reason}"));
                }
                log.outcomes.push(TaskOutcome {
                    name: name.clone(),
                    status: TaskStatus::Skipped,
                    exit_code: None,
                    duration: Duration::ZERO,
                    log_tail: String::new(),
                });
                continue;
            }
            let args = match extra_args {
                Some((task, args)) if task == name => args,
                _ => &[],
            };
            let outcome = self.run_task(name, args, log).await;
            let outcome = match outcome {
                Ok(o) => o,
                Err(e) => {
                    if let Some(cur) = log.current.take() {
                        let status = if e.kind == ErrorKind::Interrupted {
                            TaskStatus::Interrupted
                        } else {
                            TaskStatus::Failed
                        };
                        log.outcomes.push(TaskOutcome {
                            name: cur.name,
                            status,
                            exit_code: None,
                            duration: cur.started.elapsed(),
                            log_tail: cur.tail.text(),
                        });
                    }
                    return Err(e);
                }
            };
            let failed = outcome.status != TaskStatus::Passed;
            log.outcomes.push(outcome);
            if failed {
                let o = log.outcomes.last().expect("just pushed");
                let why = match o.status {
                    TaskStatus::TimedOut => {
                        let limit = self.ctx.config.tasks[name].timeout;
                        format!(
                            "timed out after {}",
                            limit.map(|d| d.to_string()).unwrap_or_default()
                        )
                    }
                    _ => format!("exit code {}", o.exit_code.unwrap_or(1)),
                };
                let next = match on_failure {
                    OnFailure::Stop => "stopping",
                    OnFailure::KeepGoing => "continuing with the tasks that don't need it",
                };
                self.ctx
                    .ui
                    .warn(format!("task {name} failed ({why}); {next}"));
            }
        }
        let ran = log
            .outcomes
            .iter()
            .filter(|o| o.status == TaskStatus::Passed)
            .count();
        if plan.len() > 1 && ran == plan.len() {
            self.ctx.ui.info(format!(
                "✓ {} tasks in {}",
                plan.len(),
                format_elapsed(started.elapsed())
            ));
        }
        Ok(())
    }

    /// Why `name` must not run, given what happened so far.
    fn skip_reason(&self, name: &str, on_failure: OnFailure, log: &RunLog) -> Option<String> {
        let failed = log.first_failure()?;
        if on_failure == OnFailure::Stop {
            return Some(format!("task {} failed", failed.name));
        }
        let task = &self.ctx.config.tasks[name];
        task.depends.iter().find_map(|d| {
            let d = d.get_ref();
            log.outcomes
                .iter()
                .find(|o| &o.name == d && o.status != TaskStatus::Passed)
                .map(|o| {
                    format!(
                        "it needs {d}, which {}",
                        o.status.as_str().replace('_', " ")
                    )
                })
        })
    }

    /// Run one task's commands in order; the first failing command fails the task.
    async fn run_task(
        &self,
        name: &str,
        extra_args: &[String],
        log: &mut RunLog,
    ) -> CliResult<TaskOutcome> {
        let t = &self.ctx.config.tasks[name];
        let mut lines = t.run.lines();
        if !extra_args.is_empty()
            && let Some(last) = lines.last_mut()
        {
            let extra: Vec<String> = extra_args.iter().map(|a| quote(a)).collect();
            last.push(' ');
            last.push_str(&extra.join(" "));
        }
        let cwd = match &t.cwd {
            Some(c) => format!("{}/{}", self.record.workdir, c.trim_end_matches('/')),
            None => self.record.workdir.clone(),
        };
        let mut env = self.env.clone();
        env.extend(t.env.clone());
        env.insert("RCLAUDE_TASK".into(), name.to_string());
        let task_start = Instant::now();
        log.current = Some(CurrentTask {
            name: name.to_string(),
            started: task_start,
            tail: LogTail::new(self.tail_lines),
            recent: LogTail::new(EVENT_TAIL_LINES),
        });
        self.ctx
            .reporter
            .event(self.record, "task_started", json!({ "task": name }));
        let deadline = t.timeout.map(|d| task_start + d.0);
        for line in &lines {
            let step = self.ctx.ui.streaming_step(format!("{name}: {line}"));
            let remaining = deadline.map(|d| {
                d.saturating_duration_since(Instant::now())
                    .max(Duration::from_millis(1))
            });
            let req = ExecRequest::shell(line.clone())
                .cwd(cwd.clone())
                .env(env.clone())
                .timeout(remaining);
            let status = {
                let cur = log.current.as_mut().expect("set above");
                // Output arrives here already redacted (see `stream`).
                let mut tap = |b: &[u8]| {
                    cur.tail.push(b);
                    cur.recent.push(b);
                };
                run_streamed(self.sandbox, req, Sink::Tee { tap: &mut tap }).await?
            };
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
                let cur = log.current.take().expect("set above");
                self.finished(name, status.shell_code(), task_start, &cur.recent)
                    .await;
                return Ok(TaskOutcome {
                    name: name.to_string(),
                    status: if timed_out {
                        TaskStatus::TimedOut
                    } else {
                        TaskStatus::Failed
                    },
                    exit_code: Some(status.shell_code()),
                    duration: task_start.elapsed(),
                    log_tail: cur.tail.text(),
                });
            }
            step.done(None);
        }
        let cur = log.current.take().expect("set above");
        self.finished(name, 0, task_start, &cur.recent).await;
        if lines.len() > 1 {
            self.ctx.ui.info(format!(
                "✓ task {name} ({})",
                format_elapsed(task_start.elapsed())
            ));
        }
        Ok(TaskOutcome {
            name: name.to_string(),
            status: TaskStatus::Passed,
            exit_code: Some(0),
            duration: task_start.elapsed(),
            log_tail: cur.tail.text(),
        })
    }

    /// Report a finished task to the server (queued; delivered now if possible).
    async fn finished(&self, task: &str, code: i32, started: Instant, recent: &LogTail) {
        let ms = started.elapsed().as_millis() as u64;
        let text = recent.text();
        let mut cut = text.len().saturating_sub(EVENT_TAIL_BYTES);
        while !text.is_char_boundary(cut) {
            cut += 1;
        }
        self.ctx.reporter.event(
            self.record,
            "task_finished",
            json!({
                "task": task,
                "exit_code": code,
                "duration_ms": ms,
                "output_tail": &text[cut..],
            }),
        );
        self.ctx.reporter.flush().await;
    }
}

/// The last lines of a stream of output, in bounded memory.
#[derive(Debug)]
pub struct LogTail {
    max_lines: usize,
    lines: VecDeque<Vec<u8>>,
    partial: Vec<u8>,
}

/// Longest line kept whole; the rest of a longer line is dropped.
const MAX_LINE: usize = 4096;

impl LogTail {
    /// Keep at most `max_lines` lines (0 keeps nothing).
    pub fn new(max_lines: usize) -> LogTail {
        LogTail {
            max_lines,
            lines: VecDeque::new(),
            partial: Vec::new(),
        }
    }

    /// Add a chunk of output.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.max_lines == 0 {
            return;
        }
        let mut rest = bytes;
        while let Some(pos) = rest.iter().position(|&b| b == b'\n') {
            self.extend_partial(&rest[..pos]);
            let line = std::mem::take(&mut self.partial);
            self.lines.push_back(line);
            if self.lines.len() > self.max_lines {
                self.lines.pop_front();
            }
            rest = &rest[pos + 1..];
        }
        self.extend_partial(rest);
    }

    fn extend_partial(&mut self, b: &[u8]) {
        let room = MAX_LINE.saturating_sub(self.partial.len());
        self.partial.extend_from_slice(&b[..b.len().min(room)]);
    }

    /// The kept lines as text (lossy UTF-8), each ending with a newline.
    pub fn text(&self) -> String {
        let skip = usize::from(!self.partial.is_empty() && self.lines.len() == self.max_lines);
        let mut out = Vec::new();
        for l in self.lines.iter().skip(skip) {
            out.extend_from_slice(l);
            out.push(b'\n');
        }
        if !self.partial.is_empty() {
            out.extend_from_slice(&self.partial);
            out.push(b'\n');
        }
        String::from_utf8_lossy(&out).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::LogTail;

    #[test]
    fn tail_keeps_the_last_lines_across_chunks() {
        let mut t = LogTail::new(3);
        t.push(b"one\ntw");
        t.push(b"o\nthree\nfour\nfi");
        assert_eq!(t.text(), "three\nfour\nfi\n");
        t.push(b"ve\n");
        assert_eq!(t.text(), "three\nfour\nfive\n");
        let mut none = LogTail::new(0);
        none.push(b"x\n");
        assert_eq!(none.text(), "");
    }

    #[test]
    fn tail_bounds_long_lines() {
        let mut t = LogTail::new(2);
        t.push(&vec![b'x'; 10_000]);
        t.push(b"\nend\n");
        let text = t.text();
        assert_eq!(text.lines().next().unwrap().len(), super::MAX_LINE);
        assert!(text.ends_with("end\n"));
    }
}
