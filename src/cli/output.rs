//! Writing a command's output to stdout, where a closed pipe (`rclaude schema | head -1`) ends
//! the command quietly instead of panicking.

use std::io::Write;

use crate::error::{CliError, CliResult};

/// Write `bytes` to stdout and flush; a broken pipe is success (the reader has all it wanted).
pub fn write_stdout(bytes: &[u8]) -> CliResult {
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Ok(()) => Ok(0),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(0),
        Err(e) => Err(CliError::io("writing to standard output", e)),
    }
}
