//! Signal names as envd reports a signal death (`signal: NAME`, Go's `syscall.Signal.String()`
//! on Linux), both ways: the agent writes them, the client turns them back into 128+N.

/// Go's names for Linux signals 1..=31.
const NAMES: [&str; 31] = [
    "hangup",
    "interrupt",
    "quit",
    "illegal instruction",
    "trace/breakpoint trap",
    "aborted",
    "bus error",
    "floating point exception",
    "killed",
    "user defined signal 1",
    "segmentation fault",
    "user defined signal 2",
    "broken pipe",
    "alarm clock",
    "terminated",
    "stack fault",
    "child exited",
    "continued",
    "stopped (signal)",
    "stopped",
    "stopped (tty input)",
    "stopped (tty output)",
    "urgent I/O condition",
    "CPU time limit exceeded",
    "file size limit exceeded",
    "virtual timer expired",
    "profiling timer expired",
    "window changed",
    "I/O possible",
    "power failure",
    "bad system call",
];

/// The name of signal `sig` (`signal 34` for those without one, as Go prints them).
pub fn name(sig: i32) -> String {
    usize::try_from(sig)
        .ok()
        .and_then(|s| s.checked_sub(1))
        .and_then(|i| NAMES.get(i))
        .map(|n| n.to_string())
        .unwrap_or_else(|| format!("signal {sig}"))
}

/// The signal number in a process status such as `signal: segmentation fault (core dumped)`
/// or `signal: signal 34`; `None` when the status is not a signal death.
pub fn from_status(status: &str) -> Option<i32> {
    let rest = status.trim().strip_prefix("signal: ")?;
    let rest = rest.strip_suffix(" (core dumped)").unwrap_or(rest);
    if let Some(n) = rest.strip_prefix("signal ") {
        return n.trim().parse().ok().filter(|n| *n > 0);
    }
    NAMES.iter().position(|n| *n == rest).map(|i| i as i32 + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_for_every_signal() {
        for sig in 1..=64 {
            let status = format!("signal: {}", name(sig));
            assert_eq!(from_status(&status), Some(sig), "{status}");
            assert_eq!(
                from_status(&format!("{status} (core dumped)")),
                Some(sig),
                "{status}"
            );
        }
        assert_eq!(name(libc::SIGSEGV), "segmentation fault");
        assert_eq!(name(libc::SIGUSR1), "user defined signal 1");
        assert_eq!(from_status("exit status 1"), None);
        assert_eq!(from_status("signal: no such thing"), None);
    }
}
