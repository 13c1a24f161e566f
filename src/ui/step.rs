//! One step of a command: a spinner (or bar) with elapsed time, finished with a ✓ or ✗ line.

use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

use super::{Mode, format_bytes, format_elapsed};

/// A running step. Dropping it without finishing clears the spinner silently.
#[derive(Debug)]
pub struct Step {
    mode: Mode,
    message: String,
    started: Instant,
    bar: Option<ProgressBar>,
}

impl Step {
    pub(super) fn start(mode: Mode, message: String) -> Step {
        let bar = (mode == Mode::Fancy).then(|| {
            let pb = ProgressBar::new_spinner();
            pb.set_style(
                ProgressStyle::with_template("{spinner:.cyan} {msg} {elapsed:.dim}")
                    .expect("valid template")
                    .tick_chars("⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏ "),
            );
            pb.set_message(message.clone());
            pb.enable_steady_tick(Duration::from_millis(100));
            pb
        });
        Step {
            mode,
            message,
            started: Instant::now(),
            bar,
        }
    }

    /// Replace the message shown next to the spinner.
    pub fn set_message(&self, message: impl Into<String>) {
        if let Some(pb) = &self.bar {
            pb.set_message(message.into());
        }
    }

    /// Show transfer progress in bytes (a bar when the total is known).
    pub fn set_bytes(&self, done: u64, total: Option<u64>) {
        if let Some(pb) = &self.bar {
            let detail = match total {
                Some(t) if t > 0 => format!("{} / {}", format_bytes(done), format_bytes(t)),
                _ => format_bytes(done),
            };
            pb.set_message(format!("{} {detail}", self.message));
        }
    }

    /// Show object progress.
    pub fn set_objects(&self, done: u64, total: u64) {
        if let Some(pb) = &self.bar {
            pb.set_message(format!("{} {done}/{total} objects", self.message));
        }
    }

    /// Suspend the spinner while printing other output (e.g. streamed command output).
    pub fn suspend<R>(&self, f: impl FnOnce() -> R) -> R {
        match &self.bar {
            Some(pb) => pb.suspend(f),
            None => f(),
        }
    }

    /// Elapsed time since the step started.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Finish with success, optionally with a detail ("3 files, 2.1 KiB").
    pub fn done(self, detail: Option<&str>) {
        self.finish("✓", detail);
    }

    /// Finish with failure.
    pub fn fail(self, detail: Option<&str>) {
        self.finish("✗", detail);
    }

    fn finish(mut self, mark: &str, detail: Option<&str>) {
        let elapsed = format_elapsed(self.started.elapsed());
        let line = match detail {
            Some(d) if !d.is_empty() => format!("{mark} {}: {d} ({elapsed})", self.message),
            _ => format!("{mark} {} ({elapsed})", self.message),
        };
        if let Some(pb) = self.bar.take() {
            pb.finish_and_clear();
        }
        if self.mode != Mode::Quiet || mark == "✗" {
            eprintln!("{line}");
        }
    }
}

impl Drop for Step {
    fn drop(&mut self) {
        if let Some(pb) = self.bar.take() {
            pb.finish_and_clear();
        }
    }
}

impl crate::ops::progress::StepSink for Step {
    fn set_message(&self, message: String) {
        Step::set_message(self, message);
    }

    fn set_bytes(&self, done: u64, total: Option<u64>) {
        Step::set_bytes(self, done, total);
    }

    fn set_objects(&self, done: u64, total: u64) {
        Step::set_objects(self, done, total);
    }

    fn suspend(&self, f: &mut dyn FnMut()) {
        Step::suspend(self, f);
    }

    fn finish(self: Box<Self>, ok: bool, detail: Option<&str>) {
        if ok {
            (*self).done(detail)
        } else {
            (*self).fail(detail)
        }
    }
}
