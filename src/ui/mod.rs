//! Terminal output: steps with spinners and elapsed time, plain lines in CI, nothing with `--quiet`.
//!
//! Everything here writes to stderr; stdout is reserved for command output and `--json`.

mod prompt;
mod step;

use std::io::IsTerminal;

pub use prompt::confirm;

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
}

/// `1.2s`, `340ms`, `2m05s`.
pub fn format_elapsed(d: std::time::Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms < 60_000 {
        format!("{:.1}s", d.as_secs_f64())
    } else {
        let s = d.as_secs();
        format!("{}m{:02}s", s / 60, s % 60)
    }
}

/// `512 B`, `1.5 KiB`, `3.2 MiB`.
pub fn format_bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

/// Micro-dollars as `$1.23` (cents, rounded half up).
pub fn format_usd(micros: i64) -> String {
    let cents = (micros + 5_000) / 10_000;
    format!("${}.{:02}", cents / 100, cents % 100)
}

/// Whole seconds as `1h 2m 3s` (`0s` for none).
pub fn format_hms(secs: u64) -> String {
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    match (h, m) {
        (0, 0) => format!("{s}s"),
        (0, _) => format!("{m}m {s}s"),
        _ => format!("{h}h {m}m {s}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn formats_sizes_and_durations() {
        assert_eq!(format_bytes(10), "10 B");
        assert_eq!(format_bytes(1536), "1.5 KiB");
        assert_eq!(format_bytes(3 * 1024 * 1024), "3.0 MiB");
        assert_eq!(format_elapsed(Duration::from_millis(340)), "340ms");
        assert_eq!(format_elapsed(Duration::from_millis(1250)), "1.2s");
        assert_eq!(format_elapsed(Duration::from_secs(125)), "2m05s");
    }
}
