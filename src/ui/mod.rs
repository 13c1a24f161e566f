//! Terminal output: steps with spinners and elapsed time, plain lines in CI, nothing with `--quiet`.
//!
//! Everything here writes to stderr; stdout is reserved for command output and `--json`.

mod prompt;
mod status;
mod step;

use std::io::IsTerminal;

use crate::ops::progress::{Out, Progress, StatusSink, StepSink};

pub use prompt::confirm;

pub use crate::format::{format_bytes, format_elapsed, format_hms, format_usd};
pub use status::TermStatus;
pub use step::Step;

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Spinners and bars on a terminal.
    Fancy,
    /// One line per finished step (not a terminal, or `CI=true`).
    Plain,
    /// Only warnings and errors.
    Quiet,
}

/// The output sink every command uses.
#[derive(Debug, Clone, Copy)]
pub struct Ui {
    pub mode: Mode,
}

impl Ui {
    /// Pick the mode from `--quiet`, the terminal and the `CI` variable.
    pub fn detect(quiet: bool) -> Ui {
        let ci = std::env::var("CI")
            .map(|v| !v.is_empty() && v != "false" && v != "0")
            .unwrap_or(false);
        let mode = if quiet {
            Mode::Quiet
        } else if ci || !std::io::stderr().is_terminal() {
            Mode::Plain
        } else {
            Mode::Fancy
        };
        Ui { mode }
    }

    /// Start a step; finish it with [`Step::done`] or [`Step::fail`].
    pub fn step(&self, message: impl Into<String>) -> Step {
        Step::start(self.mode, message.into())
    }

    /// Start a step whose own output streams below it: a `▶` header line instead of a spinner.
    pub fn streaming_step(&self, message: impl Into<String>) -> Step {
        let message = message.into();
        if self.mode != Mode::Quiet {
            eprintln!("▶ {message}");
        }
        Step::start(
            if self.mode == Mode::Fancy {
                Mode::Plain
            } else {
                self.mode
            },
            message,
        )
    }

    /// An informational line (hidden with `--quiet`).
    pub fn info(&self, message: impl AsRef<str>) {
        if self.mode != Mode::Quiet {
            eprintln!("{}", message.as_ref());
        }
    }

    /// A warning, shown even with `--quiet`.
    pub fn warn(&self, message: impl AsRef<str>) {
        eprintln!("warning: {}", message.as_ref());
    }

    /// True when spinners/bars are drawn.
    pub fn is_fancy(&self) -> bool {
        self.mode == Mode::Fancy
    }

    /// This terminal as the operations layer's progress sink.
    pub fn out(self) -> Out {
        Out::new(self)
    }
}

impl Progress for Ui {
    fn step(&self, message: String, streaming: bool) -> Box<dyn StepSink> {
        Box::new(if streaming {
            Ui::streaming_step(self, message)
        } else {
            Ui::step(self, message)
        })
    }

    fn info(&self, message: &str) {
        Ui::info(self, message);
    }

    fn warn(&self, message: &str) {
        Ui::warn(self, message);
    }

    fn interactive(&self) -> bool {
        self.is_fancy()
    }

    fn quiet(&self) -> bool {
        self.mode == Mode::Quiet
    }

    fn confirm(&self, question: &str) -> std::io::Result<bool> {
        confirm(question).map_err(|e| std::io::Error::other(e.to_string()))
    }

    fn status(&self, message: String) -> Box<dyn StatusSink> {
        Box::new(TermStatus::new(self.mode, &message))
    }
}
