//! Quoting for POSIX shells: the one place rclaude turns words into a command line.

/// Quote `s` as one word for a POSIX shell: unchanged when it holds only characters no shell
/// treats specially, else in single quotes.
///
/// ```
/// use rclaude_sandbox::shell::quote;
/// assert_eq!(quote("cargo"), "cargo");
/// assert_eq!(quote("it's here"), r"'it'\''s here'");
/// assert_eq!(quote(""), "''");
/// ```
pub fn quote(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,+@%".contains(&b))
    {
        return s.to_string();
    }
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// Quote every word and join them with spaces.
///
/// ```
/// assert_eq!(rclaude_sandbox::shell::quote_all(&["npm", "run", "a b"]), "npm run 'a b'");
/// ```
pub fn quote_all<S: AsRef<str>>(words: &[S]) -> String {
    words
        .iter()
        .map(|w| quote(w.as_ref()))
        .collect::<Vec<_>>()
        .join(" ")
}
