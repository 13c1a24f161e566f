//! Configuration errors: located diagnostics (`file:line:col: error in KEY: message`) and the
//! few errors that have no place in the file (missing file, missing secret, unknown task).

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Serialize;

/// What kind of problem a [`Diagnostic`] reports (stable names for `--json`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The file is not valid TOML.
    Syntax,
    /// A key the configuration does not know.
    UnknownKey,
    /// A required key is missing.
    MissingKey,
    /// A value of the wrong TOML type.
    WrongType,
    /// A value of the right type that is not allowed (bad duration, name, path, range...).
    InvalidValue,
    /// `depends` or `hooks` names a task that is not defined.
    UnknownTask,
    /// Tasks depend on each other in a circle.
    DependencyCycle,
    /// `[hooks]` names something that is not a git hook.
    UnknownHook,
}

impl ErrorKind {
    /// The snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Syntax => "syntax",
            ErrorKind::UnknownKey => "unknown_key",
            ErrorKind::MissingKey => "missing_key",
            ErrorKind::WrongType => "wrong_type",
            ErrorKind::InvalidValue => "invalid_value",
            ErrorKind::UnknownTask => "unknown_task",
            ErrorKind::DependencyCycle => "dependency_cycle",
            ErrorKind::UnknownHook => "unknown_hook",
        }
    }
}

/// One problem at one place in a configuration file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    /// The file, as given to [`crate::config::Config::parse`].
    pub path: PathBuf,
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
    /// Dotted key path such as `tasks.test.depends[0]`; empty for syntax errors.
    pub key_path: String,
    /// What kind of problem.
    pub kind: ErrorKind,
    /// What is wrong and what would be valid (no location, no key path).
    pub message: String,
    /// The offending source line with a caret under the span (rustc style), ready to print.
    #[serde(skip)]
    pub excerpt: String,
}

impl Diagnostic {
    /// Build a diagnostic for the byte range `span` of `text`.
    pub(crate) fn new(
        path: &Path,
        text: &str,
        span: Range<usize>,
        key_path: String,
        kind: ErrorKind,
        message: String,
    ) -> Self {
        let start = span.start.min(text.len());
        let start = floor_char_boundary(text, start);
        let line_start = text[..start].rfind('\n').map_or(0, |i| i + 1);
        let line_end = text[start..].find('\n').map_or(text.len(), |i| start + i);
        let line = text[..start].matches('\n').count() + 1;
        let before = &text[line_start..start];
        let column = before.chars().count() + 1;
        let content = text[line_start..line_end].trim_end_matches('\r');
        let end = floor_char_boundary(text, span.end.clamp(start, line_end));
        let width = text[start..end].chars().count().max(1);
        let gutter = " ".repeat(line.to_string().len());
        // Keep tabs so the caret lines up with the source line however tabs are rendered.
        let pad: String = before
            .chars()
            .map(|c| if c == '\t' { '\t' } else { ' ' })
            .collect();
        let excerpt = format!(
            "{gutter} |\n{line} | {content}\n{gutter} | {pad}{}",
            "^".repeat(width)
        );
        Diagnostic {
            path: path.to_path_buf(),
            line,
            column,
            key_path,
            kind,
            message,
            excerpt,
        }
    }
}

fn floor_char_boundary(text: &str, mut i: usize) -> usize {
    while i > 0 && !text.is_char_boundary(i) {
        i -= 1;
    }
    i
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: error",
            self.path.display(),
            self.line,
            self.column
        )?;
        if self.key_path.is_empty() {
            write!(f, ": {}", self.message)?;
        } else {
            write!(f, " in {}: {}", self.key_path, self.message)?;
        }
        if !self.excerpt.is_empty() {
            write!(f, "\n{}", self.excerpt)?;
        }
        Ok(())
    }
}

/// Everything that can go wrong with `.rclaude.toml`. Display is complete and user-facing.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// There is no configuration file.
    #[error("{}: no such file; run `rclaude init` to create a starter configuration", path.display())]
    NotFound {
        /// Where it was looked for.
        path: PathBuf,
    },
    /// The file exists but could not be read.
    #[error("{}: cannot read: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is larger than any configuration should be.
    #[error("{}: the file is over {} KiB; a .rclaude.toml is a few KiB (is it the right file?)", path.display(), limit / 1024)]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// The limit in bytes.
        limit: u64,
    },
    /// A problem at a place in the file (syntax, type, unknown key, validation).
    #[error("{0}")]
    Invalid(Box<Diagnostic>),
    /// A required secret's local environment variable is not set.
    #[error(
        "secret {name}: the local environment variable {var} is not set; export it, or mark the \
         secret optional with `{name} = {{ from_env = \"{var}\", required = false }}`"
    )]
    MissingSecret {
        /// The secret's name in the sandbox.
        name: String,
        /// The local variable it is read from.
        var: String,
    },
    /// A task name that is not defined.
    #[error("task \"{name}\" does not exist ({})", defined_list(defined))]
    UnknownTask {
        /// The requested name.
        name: String,
        /// The tasks that are defined.
        defined: Vec<String>,
    },
    /// Tasks that depend on each other in a circle (for configs built without `parse`).
    #[error("dependency cycle {}", cycle.join(" -> "))]
    DependencyCycle {
        /// The cycle, first task repeated at the end.
        cycle: Vec<String>,
    },
    /// `rclaude init` would overwrite an existing file.
    #[error("{} already exists; use --force to overwrite it", path.display())]
    AlreadyExists {
        /// The existing file.
        path: PathBuf,
    },
    /// Writing the configuration failed.
    #[error("{}: cannot write: {source}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

fn defined_list(defined: &[String]) -> String {
    if defined.is_empty() {
        "no tasks are defined; add a [tasks.NAME] table".to_string()
    } else {
        format!("defined tasks: {}", defined.join(", "))
    }
}

impl ConfigError {
    /// The located diagnostic, for errors that point into the file.
    pub fn diagnostic(&self) -> Option<&Diagnostic> {
        match self {
            ConfigError::Invalid(d) => Some(d),
            _ => None,
        }
    }

    /// The file this error is about, when there is one.
    pub fn path(&self) -> Option<&Path> {
        match self {
            ConfigError::NotFound { path }
            | ConfigError::TooLarge { path, .. }
            | ConfigError::Read { path, .. }
            | ConfigError::AlreadyExists { path }
            | ConfigError::Write { path, .. } => Some(path),
            ConfigError::Invalid(d) => Some(&d.path),
            _ => None,
        }
    }

    /// 1-based line, for errors located in the file.
    pub fn line(&self) -> Option<usize> {
        self.diagnostic().map(|d| d.line)
    }

    /// 1-based column (characters), for errors located in the file.
    pub fn column(&self) -> Option<usize> {
        self.diagnostic().map(|d| d.column)
    }

    /// Dotted key path (`tasks.test.depends[0]`), for errors located at a key.
    pub fn key_path(&self) -> Option<&str> {
        self.diagnostic()
            .map(|d| d.key_path.as_str())
            .filter(|k| !k.is_empty())
    }

    /// The kind of a located error.
    pub fn kind(&self) -> Option<ErrorKind> {
        self.diagnostic().map(|d| d.kind)
    }
}

impl From<Diagnostic> for ConfigError {
    fn from(d: Diagnostic) -> Self {
        ConfigError::Invalid(Box::new(d))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excerpt_puts_the_caret_under_the_span() {
        let text = "[sandbox]\ntimeout = \"5 parsecs\"\n";
        let start = text.find('"').unwrap();
        let d = Diagnostic::new(
            Path::new(".rclaude.toml"),
            text,
            start..start + 11,
            "sandbox.timeout".into(),
            ErrorKind::InvalidValue,
            "bad".into(),
        );
        assert_eq!((d.line, d.column), (2, 11));
        assert_eq!(
            d.to_string(),
            ".rclaude.toml:2:11: error in sandbox.timeout: bad\n  |\n2 | timeout = \"5 parsecs\"\n  |           ^^^^^^^^^^^"
        );
    }

    #[test]
    fn columns_count_characters_and_tabs_are_kept() {
        let text = "a = \"é\"\n\tb = 1\n";
        let start = text.find('b').unwrap();
        let d = Diagnostic::new(
            Path::new("f"),
            text,
            start..start + 1,
            "b".into(),
            ErrorKind::UnknownKey,
            "m".into(),
        );
        assert_eq!((d.line, d.column), (2, 2));
        assert!(d.excerpt.ends_with("| \t^"), "{:?}", d.excerpt);
        let e = text.find('"').unwrap() + 3; // after the two-byte é
        let d = Diagnostic::new(
            Path::new("f"),
            text,
            e..e + 1,
            "a".into(),
            ErrorKind::Syntax,
            "m".into(),
        );
        assert_eq!((d.line, d.column), (1, 7));
    }
}
