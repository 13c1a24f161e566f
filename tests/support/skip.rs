//! Explicit opt-outs for tests whose tool a machine lacks (PostgreSQL, Chromium, npm, the E2B
//! SDK). Without the opt-out such a test fails and names what is missing; with it, the test
//! returns early and records what was not run in `$RCLAUDE_TEST_SKIP_LOG`, which
//! `scripts/test` prints as a summary at the end of the run.

/// Whether `var` (e.g. `RCLAUDE_SKIP_PG`) is set to `1`. If it is, `what` (the test and the
/// missing tool) is printed and appended to the skip log.
pub fn opted_out(var: &str, what: &str) -> bool {
    if std::env::var(var).as_deref() != Ok("1") {
        return false;
    }
    eprintln!("NOT RUN ({var}=1): {what}");
    if let Some(log) = std::env::var_os("RCLAUDE_TEST_SKIP_LOG") {
        use std::io::Write;
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
        {
            let _ = writeln!(f, "{var}=1: {what}");
        }
    }
    true
}
