//! A process the agent started, leading its own process group, signalled only while it is
//! provably still the same process.
//!
//! A process id (and so the group id of the group it leads) can be handed to a new process as
//! soon as the old one has been reaped; with `pid_max` as low as 32768 a busy machine wraps it
//! in seconds. A `kill(-pid)` sent after the reap may then hit another sandbox's command. So the
//! leader is reaped only under the same lock every signal takes: a signal sent while the leader
//! is unreaped (running or a zombie) reaches its group or nobody, and once it is reaped no signal
//! is sent through its id at all.
//!
//! The exit is noticed through a pidfd (readable when the process exits), without reaping; on
//! kernels without pidfds a thread waits with `waitid(WNOWAIT)` instead.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd};
use std::process::{Child, ExitStatus};
use std::sync::Mutex;

use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

/// A spawned group leader; see the module documentation.
pub struct Leader {
    pid: u32,
    /// The unreaped child; `None` once reaped (its id may then belong to anyone).
    child: Mutex<Option<Child>>,
    /// Readable once the process has exited; `None` when pidfds are unavailable.
    pidfd: Option<AsyncFd<OwnedFd>>,
}

impl Leader {
    /// Take over a child just spawned (and not yet reaped by anyone).
    pub fn new(child: Child) -> Leader {
        let pid = child.id();
        // The child is ours and unreaped, so this pidfd names it and nothing else.
        let pidfd = pidfd_open(pid).and_then(|fd| {
            // SAFETY: the OwnedFd moves into the AsyncFd, so it stays open and unchanged for the
            // AsyncFd's whole lifetime.
            unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }
                .map_err(|e| e.into_parts().1)
        });
        if let Err(e) = &pidfd {
            tracing::debug!(
                pid,
                "no pidfd ({e}); a thread waits for the process instead"
            );
        }
        Leader {
            pid,
            child: Mutex::new(Some(child)),
            pidfd: pidfd.ok(),
        }
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Send `sig` to the leader's process group. `Ok(false)`: the leader has already been reaped,
    /// so nothing was sent (its id may now name someone else).
    pub fn signal_group(&self, sig: libc::c_int) -> io::Result<bool> {
        let guard = self.child.lock().unwrap();
        if guard.is_none() {
            return Ok(false);
        }
        // Unreaped under the lock: the id is still this process's and its group's.
        signal_group(self.pid, sig)?;
        Ok(true)
    }

    /// Wait until the process exits, then reap it and return how it ended.
    pub async fn wait(&self) -> io::Result<ExitStatus> {
        loop {
            match &self.pidfd {
                Some(fd) => {
                    let mut ready = fd.readable().await?;
                    if let Some(status) = self.try_reap()? {
                        return Ok(status);
                    }
                    ready.clear_ready();
                }
                None => {
                    let pid = self.pid;
                    tokio::task::spawn_blocking(move || wait_exited(pid))
                        .await
                        .map_err(io::Error::other)??;
                    if let Some(status) = self.try_reap()? {
                        return Ok(status);
                    }
                }
            }
        }
    }

    /// Reap the process if it has exited (under the lock signals take).
    fn try_reap(&self) -> io::Result<Option<ExitStatus>> {
        let mut guard = self.child.lock().unwrap();
        let Some(child) = guard.as_mut() else {
            return Err(io::Error::other("the process was already reaped"));
        };
        let status = child.try_wait()?;
        if status.is_some() {
            *guard = None;
        }
        Ok(status)
    }
}

/// `pidfd_open(2)`.
fn pidfd_open(pid: u32) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Block until `pid` (our child) has exited, leaving it unreaped.
fn wait_exited(pid: u32) -> io::Result<()> {
    loop {
        // SAFETY: waitid fills `info`; WNOWAIT leaves the child to be reaped later.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        let r = unsafe {
            libc::waitid(
                libc::P_PID,
                pid as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOWAIT,
            )
        };
        if r == 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// True when `pid` runs bubblewrap.
fn is_bwrap(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "bwrap")
}

/// Processes of group `pgid` other than its leader (Linux `/proc`).
fn group_members(pgid: u32) -> Vec<u32> {
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    rd.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&p| p != pgid)
        .filter(|&p| {
            std::fs::read_to_string(format!("/proc/{p}/stat"))
                .ok()
                .and_then(|s| {
                    // Fields after the `(comm)`: state, ppid, pgrp, ...
                    let rest = s.rsplit_once(')')?.1;
                    rest.split_whitespace().nth(2)?.parse::<u32>().ok()
                })
                == Some(pgid)
        })
        .collect()
}

/// Signal process group `pgid`. The caller guarantees the id is still the group's: its leader
/// is unreaped, or a member was just seen carrying the sandbox's marker. A group that is gone is
/// not an error; the id is never signalled as a single process (it may be anyone's now).
pub fn signal_group(pgid: u32, sig: libc::c_int) -> io::Result<()> {
    // Under bubblewrap the group leader is bwrap itself, which dies of a SIGTERM without passing
    // it on: deliver gentle signals to the command (and the rest of its group) instead, so it
    // can shut down cleanly.
    if sig != libc::SIGKILL && is_bwrap(pgid) {
        let members = group_members(pgid);
        if !members.is_empty() {
            for m in members {
                // SAFETY: kill has no memory-safety preconditions.
                unsafe { libc::kill(m as libc::pid_t, sig) };
            }
            return Ok(());
        }
    }
    // SAFETY: kill has no memory-safety preconditions.
    if unsafe { libc::kill(-(pgid as libc::pid_t), sig) } == 0 {
        return Ok(());
    }
    let e = io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::ESRCH) {
        return Ok(()); // already gone
    }
    Err(e)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::{CommandExt, ExitStatusExt};

    fn leader(script: &str) -> Leader {
        let child = std::process::Command::new("sh")
            .args(["-c", script])
            .process_group(0)
            .spawn()
            .unwrap();
        Leader::new(child)
    }

    #[tokio::test]
    async fn wait_reports_the_exit_and_later_signals_send_nothing() {
        let l = leader("exit 3");
        let status = l.wait().await.unwrap();
        assert_eq!(status.code(), Some(3));
        // Reaped: the id may be anyone's now, so nothing is sent through it.
        assert!(!l.signal_group(libc::SIGKILL).unwrap());
    }

    #[tokio::test]
    async fn a_signal_before_the_reap_reaches_the_group() {
        let l = leader("sleep 30 & wait");
        assert!(l.signal_group(libc::SIGKILL).unwrap());
        let status = l.wait().await.unwrap();
        assert_eq!(status.signal(), Some(libc::SIGKILL));
    }

    #[tokio::test]
    async fn without_a_pidfd_a_thread_waits_for_the_exit() {
        let mut l = leader("exit 5");
        l.pidfd = None;
        assert_eq!(l.wait().await.unwrap().code(), Some(5));
    }

    #[tokio::test]
    async fn an_exited_leader_stays_signallable_until_it_is_reaped() {
        let l = leader("exit 0");
        // A zombie still holds its id: signalling it is safe (and harmless).
        wait_exited(l.pid()).unwrap();
        assert!(l.signal_group(libc::SIGTERM).unwrap());
        assert!(l.try_reap().unwrap().is_some());
        assert!(!l.signal_group(libc::SIGTERM).unwrap());
    }
}
