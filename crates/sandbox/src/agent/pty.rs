//! Pseudo-terminals for `Start` with `pty`: openpty, window size, and the child-side setup
//! (new session, controlling terminal).

use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

use crate::envd::proto::PtySize;

fn winsize(size: PtySize) -> libc::winsize {
    let clamp = |v: u32, default: u16| {
        if v == 0 {
            default
        } else {
            v.min(u16::MAX as u32) as u16
        }
    };
    libc::winsize {
        ws_row: clamp(size.rows, 24),
        ws_col: clamp(size.cols, 80),
        ws_xpixel: 0,
        ws_ypixel: 0,
    }
}

/// Open a PTY pair of the given size: `(master, slave)`, both close-on-exec.
pub fn open(size: PtySize) -> io::Result<(OwnedFd, OwnedFd)> {
    let mut master: libc::c_int = -1;
    let mut slave: libc::c_int = -1;
    let ws = winsize(size);
    // SAFETY: openpty writes two fds; name and termios may be null.
    let rc = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            &ws,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both fds were just created and are owned by us alone.
    let (m, s) = unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
    for fd in [master, slave] {
        // SAFETY: fcntl on fds we own.
        unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    }
    Ok((m, s))
}

/// Change the window size of the terminal behind `master` (the foreground job gets SIGWINCH).
pub fn resize(master: RawFd, size: PtySize) -> io::Result<()> {
    let ws = winsize(size);
    // SAFETY: TIOCSWINSZ reads a winsize struct.
    if unsafe { libc::ioctl(master, libc::TIOCSWINSZ, &ws) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Child-side setup, run between fork and exec: become a session leader and take stdin (the
/// slave) as the controlling terminal. Only async-signal-safe calls.
pub fn child_setup() -> io::Result<()> {
    // SAFETY: setsid and ioctl are async-signal-safe.
    unsafe {
        if libc::setsid() < 0 {
            return Err(io::Error::last_os_error());
        }
        if libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}
