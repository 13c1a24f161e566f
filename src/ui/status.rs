//! A long-lived status line on the terminal (live sync): a spinner line that other lines print
//! above, plain lines in CI, nothing but warnings with `--quiet`.

use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

use super::Mode;
use crate::ops::progress::StatusSink;

/// The terminal's [`StatusSink`].
pub struct TermStatus {
    mode: Mode,
    bar: Option<ProgressBar>,
}

impl TermStatus {
    /// Start the line with `message`.
    pub fn new(mode: Mode, message: &str) -> TermStatus {
        let bar = (mode == Mode::Fancy).then(|| {
            let pb = ProgressBar::new_spinner();
            pb.set_style(ProgressStyle::with_template("{spinner:.green} {msg}").expect("template"));
            pb.enable_steady_tick(Duration::from_millis(250));
            pb.set_message(message.to_string());
            pb
        });
        TermStatus { mode, bar }
    }
}

impl StatusSink for TermStatus {
    fn set(&self, line: &str, plain: Option<&str>) {
        match &self.bar {
            Some(pb) => pb.set_message(line.to_string()),
            None if self.mode == Mode::Plain => {
                if let Some(p) = plain {
                    eprintln!("{p}");
                }
            }
            None => {}
        }
    }

    fn line(&self, message: &str) {
        match &self.bar {
            Some(pb) => pb.println(message),
            None if self.mode != Mode::Quiet => eprintln!("{message}"),
            None => {}
        }
    }

    fn warn(&self, message: &str) {
        match &self.bar {
            Some(pb) => pb.println(format!("warning: {message}")),
            None => eprintln!("warning: {message}"),
        }
    }

    fn suspend(&self, f: &mut dyn FnMut()) {
        match &self.bar {
            Some(pb) => pb.suspend(f),
            None => f(),
        }
    }

    fn finish(&self) {
        if let Some(pb) = &self.bar {
            pb.finish_and_clear();
        }
    }
}
