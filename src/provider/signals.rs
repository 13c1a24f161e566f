//! Signal names as envd reports them (Go's `ProcessState.String()`: `signal: segmentation
//! fault`), both ways: the agent writes them, the CLI turns them back into `128 + N` exit codes.

/// Linux signal numbers and Go's names for them.
const NAMES: &[(i32, &str)] = &[
    (1, "hangup"),
    (2, "interrupt"),
    (3, "quit"),
    (4, "illegal instruction"),
    (5, "trace/breakpoint trap"),
    (6, "aborted"),
    (7, "bus error"),
    (8, "floating point exception"),
    (9, "killed"),
    (10, "user defined signal 1"),
    (11, "segmentation fault"),
    (12, "user defined signal 2"),
    (13, "broken pipe"),
    (14, "alarm clock"),
    (15, "terminated"),
    (16, "stack fault"),
    (17, "child exited"),
    (18, "continued"),
    (19, "stopped (signal)"),
    (20, "stopped"),
    (21, "stopped (tty input)"),
    (22, "stopped (tty output)"),
    (23, "urgent I/O condition"),
    (24, "CPU time limit exceeded"),
    (25, "file size limit exceeded"),
    (26, "virtual timer expired"),
    (27, "profiling timer expired"),
    (28, "window changed"),
    (29, "I/O possible"),
    (30, "power failure"),
    (31, "bad system call"),
];

/// Go's name of signal `sig` (`signal 40` for one without a name).
pub fn name(sig: i32) -> String {
    NAMES
        .iter()
        .find(|(n, _)| *n == sig)
        .map(|(_, name)| (*name).to_string())
        .unwrap_or_else(|| format!("signal {sig}"))
}

/// The signal number in a status text after `signal: `: Go's name (`segmentation fault`), a
/// `SIGSEGV`-style name, `signal 40` or a bare number; ` (core dumped)` is ignored.
///
/// ```
/// use rclaude::provider::signals::number;
/// assert_eq!(number("segmentation fault (core dumped)"), Some(11));
/// assert_eq!(number("SIGUSR1"), Some(10));
/// assert_eq!(number("signal 40"), Some(40));
/// assert_eq!(number("no such thing"), None);
/// ```
pub fn number(text: &str) -> Option<i32> {
    let t = text.trim().trim_end_matches("(core dumped)").trim();
    if let Some((n, _)) = NAMES.iter().find(|(_, name)| *name == t) {
        return Some(*n);
    }
    let bare = t.strip_prefix("signal ").unwrap_or(t);
    if let Ok(n) = bare.parse::<i32>() {
        return (1..=64).contains(&n).then_some(n);
    }
    let upper = t.to_ascii_uppercase();
    let short = upper.strip_prefix("SIG").unwrap_or(&upper);
    const SHORT: &[(&str, i32)] = &[
        ("HUP", 1),
        ("INT", 2),
        ("QUIT", 3),
        ("ILL", 4),
        ("TRAP", 5),
        ("ABRT", 6),
        ("BUS", 7),
        ("FPE", 8),
        ("KILL", 9),
        ("USR1", 10),
        ("SEGV", 11),
        ("USR2", 12),
        ("PIPE", 13),
        ("ALRM", 14),
        ("TERM", 15),
        ("XCPU", 24),
        ("XFSZ", 25),
        ("SYS", 31),
    ];
    SHORT.iter().find(|(s, _)| *s == short).map(|(_, n)| *n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_maps_back_to_its_number() {
        for (n, _) in NAMES {
            assert_eq!(number(&name(*n)), Some(*n));
        }
        assert_eq!(name(40), "signal 40");
        assert_eq!(number(&name(40)), Some(40));
    }
}
