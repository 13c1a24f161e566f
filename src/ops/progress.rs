//! How operations say what they are doing: through the [`Progress`] trait, never by printing.
//!
//! The CLI renders progress on the terminal (`ui::Ui`: spinners, plain CI lines, nothing with
//! `--quiet`); other front ends (the MCP server, the server acting for the dashboard) collect
//! it ([`Recorded`]) or forward it. Operations hold an [`Out`], a cheap handle with convenient
//! generic methods over the object-safe trait.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A sink for what an operation reports.
pub trait Progress: Send + Sync {
    /// Start a step (a spinner on a terminal); `streaming`: its own output follows below it.
    fn step(&self, message: String, streaming: bool) -> Box<dyn StepSink>;
    /// An informational line (hidden when quiet).
    fn info(&self, message: &str);
    /// A warning (always shown).
    fn warn(&self, message: &str);
    /// A person watches live output (spinners are drawn): interactive defaults apply.
    fn interactive(&self) -> bool;
    /// Only warnings and errors are shown.
    fn quiet(&self) -> bool;
    /// Ask a yes/no question; `Err` when nobody can answer (not a terminal).
    fn confirm(&self, question: &str) -> std::io::Result<bool>;
    /// A long-lived status line (live sync), starting with `message`.
    fn status(&self, message: String) -> Box<dyn StatusSink>;
}

/// One running step of a [`Progress`].
pub trait StepSink: Send + Sync {
    /// Replace the step's message.
    fn set_message(&self, message: String);
    /// Transfer progress in bytes (`total` when known).
    fn set_bytes(&self, done: u64, total: Option<u64>);
    /// Object progress.
    fn set_objects(&self, done: u64, total: u64);
    /// Run `f` with the step's drawing paused (to print other output or ask).
    fn suspend(&self, f: &mut dyn FnMut());
    /// Finish the step: `ok` or failed, with an optional detail ("3 files, 2.1 KiB").
    fn finish(self: Box<Self>, ok: bool, detail: Option<&str>);
}

/// A long-lived status line of a [`Progress`].
pub trait StatusSink: Send + Sync {
    /// Replace the line; `plain` is what a non-interactive sink prints instead (if anything).
    fn set(&self, line: &str, plain: Option<&str>);
    /// A line above the status.
    fn line(&self, message: &str);
    /// A warning above the status.
    fn warn(&self, message: &str);
    /// Run `f` with the status line paused.
    fn suspend(&self, f: &mut dyn FnMut());
    /// Remove the line.
    fn finish(&self);
}

/// The handle operations hold: a shared [`Progress`] with generic conveniences.
#[derive(Clone)]
pub struct Out(Arc<dyn Progress>);

impl Out {
    /// Report to `progress`.
    pub fn new(progress: impl Progress + 'static) -> Out {
        Out(Arc::new(progress))
    }

    /// Start a step; finish it with [`Step::done`] or [`Step::fail`].
    pub fn step(&self, message: impl Into<String>) -> Step {
        Step::new(self.0.step(redacted(message.into()), false))
    }

    /// Start a step whose own output streams below it.
    pub fn streaming_step(&self, message: impl Into<String>) -> Step {
        Step::new(self.0.step(redacted(message.into()), true))
    }

    /// An informational line.
    pub fn info(&self, message: impl AsRef<str>) {
        self.0.info(&crate::redact::text(message.as_ref()));
    }

    /// A warning.
    pub fn warn(&self, message: impl AsRef<str>) {
        self.0.warn(&crate::redact::text(message.as_ref()));
    }

    /// A person watches live output.
    pub fn is_fancy(&self) -> bool {
        self.0.interactive()
    }

    /// Only warnings and errors are shown.
    pub fn is_quiet(&self) -> bool {
        self.0.quiet()
    }

    /// Ask a yes/no question (`Err` when nobody can answer).
    pub fn confirm(&self, question: &str) -> std::io::Result<bool> {
        self.0.confirm(question)
    }

    /// A long-lived status line.
    pub fn status(&self, message: impl Into<String>) -> Box<dyn StatusSink> {
        self.0.status(message.into())
    }
}

/// `message` without secret values (see [`crate::redact`]).
fn redacted(message: String) -> String {
    match crate::redact::text(&message) {
        std::borrow::Cow::Borrowed(_) => message,
        std::borrow::Cow::Owned(o) => o,
    }
}

impl std::fmt::Debug for Out {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Out")
    }
}

/// A running step. Dropping it without finishing ends it silently.
pub struct Step {
    sink: Option<Box<dyn StepSink>>,
    started: Instant,
}

impl Step {
    fn new(sink: Box<dyn StepSink>) -> Step {
        Step {
            sink: Some(sink),
            started: Instant::now(),
        }
    }

    fn sink(&self) -> &dyn StepSink {
        self.sink.as_deref().expect("a step is finished only once")
    }

    /// Replace the message.
    pub fn set_message(&self, message: impl Into<String>) {
        self.sink().set_message(message.into());
    }

    /// Transfer progress in bytes.
    pub fn set_bytes(&self, done: u64, total: Option<u64>) {
        self.sink().set_bytes(done, total);
    }

    /// Object progress.
    pub fn set_objects(&self, done: u64, total: u64) {
        self.sink().set_objects(done, total);
    }

    /// Run `f` with the step's drawing paused.
    pub fn suspend<R>(&self, f: impl FnOnce() -> R) -> R {
        let mut f = Some(f);
        let mut out = None;
        self.sink().suspend(&mut || out = f.take().map(|f| f()));
        out.expect("suspend runs its closure")
    }

    /// Time since the step started.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Finish with success.
    pub fn done(mut self, detail: Option<&str>) {
        if let Some(s) = self.sink.take() {
            s.finish(true, detail);
        }
    }

    /// Finish with failure.
    pub fn fail(mut self, detail: Option<&str>) {
        if let Some(s) = self.sink.take() {
            s.finish(false, detail);
        }
    }
}

/// A [`Progress`] that keeps what it is told, for front ends that answer with it afterwards
/// (the MCP server, the server) and for tests. Never interactive; questions are refused.
#[derive(Debug, Clone, Default)]
pub struct Recorded {
    lines: Arc<Mutex<Vec<String>>>,
}

impl Recorded {
    /// Everything reported so far, one line per event: `info: …`, `warning: …`, `✓ step: detail`.
    pub fn lines(&self) -> Vec<String> {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<String>> {
        self.lines.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn push(&self, line: String) {
        self.lock().push(line);
    }
}

struct RecordedStep {
    to: Recorded,
    message: Mutex<String>,
}

impl StepSink for RecordedStep {
    fn set_message(&self, message: String) {
        *self.message.lock().unwrap_or_else(|e| e.into_inner()) = message;
    }
    fn set_bytes(&self, _done: u64, _total: Option<u64>) {}
    fn set_objects(&self, _done: u64, _total: u64) {}
    fn suspend(&self, f: &mut dyn FnMut()) {
        f();
    }
    fn finish(self: Box<Self>, ok: bool, detail: Option<&str>) {
        let message = self.message.into_inner().unwrap_or_else(|e| e.into_inner());
        let mark = if ok { "✓" } else { "✗" };
        self.to.push(match detail {
            Some(d) if !d.is_empty() => format!("{mark} {message}: {d}"),
            _ => format!("{mark} {message}"),
        });
    }
}

struct RecordedStatus(Recorded);

impl StatusSink for RecordedStatus {
    fn set(&self, _line: &str, plain: Option<&str>) {
        if let Some(p) = plain {
            self.0.push(format!("info: {p}"));
        }
    }
    fn line(&self, message: &str) {
        self.0.push(format!("info: {message}"));
    }
    fn warn(&self, message: &str) {
        self.0.push(format!("warning: {message}"));
    }
    fn suspend(&self, f: &mut dyn FnMut()) {
        f();
    }
    fn finish(&self) {}
}

impl Progress for Recorded {
    fn step(&self, message: String, _streaming: bool) -> Box<dyn StepSink> {
        Box::new(RecordedStep {
            to: self.clone(),
            message: Mutex::new(message),
        })
    }
    fn info(&self, message: &str) {
        self.push(format!("info: {message}"));
    }
    fn warn(&self, message: &str) {
        self.push(format!("warning: {message}"));
    }
    fn interactive(&self) -> bool {
        false
    }
    fn quiet(&self) -> bool {
        false
    }
    fn confirm(&self, _question: &str) -> std::io::Result<bool> {
        Err(std::io::Error::new(
            std::io::ErrorKind::Unsupported,
            "nobody can answer a question here",
        ))
    }
    fn status(&self, message: String) -> Box<dyn StatusSink> {
        self.push(format!("info: {message}"));
        Box::new(RecordedStatus(self.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recorded_progress_keeps_steps_lines_and_warnings_in_order() {
        let rec = Recorded::default();
        let out = Out::new(rec.clone());
        let step = out.step("Syncing work tree");
        step.set_message("Syncing work tree (upload)");
        assert_eq!(step.suspend(|| 7), 7);
        step.done(Some("3 files"));
        out.info("hello");
        out.warn("careful");
        out.step("Creating sandbox").fail(None);
        let dropped = out.step("never finished");
        drop(dropped);
        assert!(out.confirm("delete?").is_err());
        assert!(!out.is_fancy());
        assert_eq!(
            rec.lines(),
            [
                "✓ Syncing work tree (upload): 3 files",
                "info: hello",
                "warning: careful",
                "✗ Creating sandbox",
            ]
        );
    }
}
