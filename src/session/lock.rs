//! An advisory per-repository lock (flock), released when dropped or when the process dies.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::Path;

use crate::error::{CliError, CliResult};

/// Held while a command changes a repository's sandbox or session record.
#[derive(Debug)]
pub struct RepoLock {
    _file: File,
}

impl RepoLock {
    /// Block until the lock at `path` is ours.
    pub fn acquire(path: &Path) -> CliResult<RepoLock> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| CliError::io(format!("creating {}", dir.display()), e))?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .map_err(|e| CliError::io(format!("opening lock {}", path.display()), e))?;
        // SAFETY: flock on a valid, owned file descriptor.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            eprintln!("waiting for another rclaude command in this repository to finish…");
            // SAFETY: as above.
            let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
            if rc != 0 {
                return Err(CliError::io(
                    format!("locking {}", path.display()),
                    std::io::Error::last_os_error(),
                ));
            }
        }
        Ok(RepoLock { _file: file })
    }
}
