//! Yes/no questions on the terminal.

use std::io::{BufRead, IsTerminal, Write};

use crate::error::{CliError, CliResult};

/// Ask a yes/no question on the terminal; refuse when not interactive.
pub fn confirm(question: &str) -> CliResult<bool> {
    if !std::io::stdin().is_terminal() {
        return Err(CliError::usage(format!(
            "{question} Refusing to answer for you in a non-interactive session"
        ))
        .hint("pass --yes to confirm"));
    }
    eprint!("{question} [y/N] ");
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| CliError::io("reading the answer", e))?;
    Ok(matches!(line.trim(), "y" | "Y" | "yes" | "YES" | "Yes"))
}
