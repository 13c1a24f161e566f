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
    /// Take the lock at `path` without waiting, writing this process's pid into it; when
    /// another process holds it, `Err(Some(pid))` names that process (`Err(None)`: unknown).
    pub fn try_acquire_owned(path: &Path) -> CliResult<Result<RepoLock, Option<u32>>> {
        use std::io::{Read, Seek, Write};
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| CliError::io(format!("creating {}", dir.display()), e))?;
        }
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(path)
            .map_err(|e| CliError::io(format!("opening lock {}", path.display()), e))?;
        // SAFETY: flock on a valid, owned file descriptor.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            let mut text = String::new();
            let _ = file.read_to_string(&mut text);
            return Ok(Err(text.trim().parse().ok()));
        }
        let _ = file.set_len(0);
        let _ = file.rewind();
        let _ = write!(file, "{}", std::process::id());
        let _ = file.flush();
        Ok(Ok(RepoLock { _file: file }))
    }

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
