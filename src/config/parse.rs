//! Text → [`Config`]: TOML syntax, then serde (with the key path tracked), then validation.
//! Every failure becomes a located [`Diagnostic`] with a message rewritten for people.

use std::ops::Range;
use std::path::Path;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::error::{ConfigError, Diagnostic, ErrorKind};
use super::model::Config;
use super::validate;

/// One step of a key path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Seg {
    Key(String),
    Index(usize),
}

impl From<&str> for Seg {
    fn from(k: &str) -> Self {
        Seg::Key(k.to_string())
    }
}

impl From<usize> for Seg {
    fn from(i: usize) -> Self {
        Seg::Index(i)
    }
}

/// `tasks.test.depends[0]`; keys that are not bare TOML keys are quoted (`tasks."a b"`).
pub(crate) fn format_key_path(segs: &[Seg]) -> String {
    let mut out = String::new();
    for seg in segs {
        match seg {
            Seg::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                let bare = !k.is_empty()
                    && k.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
                if bare {
                    out.push_str(k);
                } else {
                    out.push_str(&format!("{k:?}"));
                }
            }
            Seg::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

/// The parsed document with spans, for locating keys and values.
pub(crate) struct Source<'a> {
    pub path: &'a Path,
    pub text: &'a str,
    pub doc: Spanned<DeTable<'a>>,
}

/// Where a key path is in the document.
pub(crate) struct Located<'d, 'a> {
    /// The span of the last key (none when the path ends with an index).
    pub key: Option<Range<usize>>,
    /// The span of the value.
    pub value: Range<usize>,
    /// The value itself.
    pub node: &'d DeValue<'a>,
}

impl<'a> Source<'a> {
    /// Find a key path in the document.
    pub fn lookup(&self, segs: &[Seg]) -> Option<Located<'_, 'a>> {
        let (first, rest) = segs.split_first()?;
        let Seg::Key(k) = first else { return None };
        let (key, value) = table_entry(self.doc.get_ref(), k)?;
        let mut found = Located {
            key: Some(key.span()),
            value: value.span(),
            node: value.get_ref(),
        };
        for seg in rest {
            let (key, value) = match (seg, found.node) {
                (Seg::Key(k), DeValue::Table(t)) => {
                    let (key, value) = table_entry(t, k)?;
                    (Some(key.span()), value)
                }
                (Seg::Index(i), DeValue::Array(a)) => (None, a.get(*i)?),
                _ => return None,
            };
            found = Located {
                key,
                value: value.span(),
                node: value.get_ref(),
            };
        }
        Some(found)
    }

    /// A diagnostic at `span`.
    pub fn diagnostic(
        &self,
        span: Range<usize>,
        segs: &[Seg],
        kind: ErrorKind,
        message: String,
    ) -> Diagnostic {
        Diagnostic::new(
            self.path,
            self.text,
            span,
            format_key_path(segs),
            kind,
            message,
        )
    }
}

type Entry<'t, 'a> = (
    &'t Spanned<std::borrow::Cow<'a, str>>,
    &'t Spanned<DeValue<'a>>,
);

fn table_entry<'t, 'a>(t: &'t DeTable<'a>, k: &str) -> Option<Entry<'t, 'a>> {
    t.iter().find(|(key, _)| key.get_ref() == k)
}

/// Parse and validate a whole configuration file.
pub(crate) fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
    let doc = DeTable::parse(text).map_err(|e| {
        let span = e.span().unwrap_or(0..0);
        let message = format!("invalid TOML: {}", e.message().trim_end());
        Diagnostic::new(path, text, span, String::new(), ErrorKind::Syntax, message)
    })?;
    let source = Source { path, text, doc };
    let de = toml::Deserializer::from(source.doc.clone());
    let config: Config = serde_path_to_error::deserialize(de)
        .map_err(|e| ConfigError::from(serde_diagnostic(&source, &e)))?;
    validate::validate(&config, &source)?;
    Ok(config)
}

/// Turn a serde error into a diagnostic: key path from serde_path_to_error, position from the
/// toml error's span, message rewritten from serde's wording.
fn serde_diagnostic(
    source: &Source,
    e: &serde_path_to_error::Error<toml::de::Error>,
) -> Diagnostic {
    let mut segs: Vec<Seg> = Vec::new();
    for seg in e.path().iter() {
        match seg {
            serde_path_to_error::Segment::Map { key } if key.starts_with("$__") => {}
            serde_path_to_error::Segment::Map { key } => segs.push(Seg::Key(key.clone())),
            serde_path_to_error::Segment::Seq { index } => segs.push(Seg::Index(*index)),
            _ => {}
        }
    }
    let inner = e.inner();
    let raw = inner.message().trim_end();
    let located = source.lookup(&segs);
    let found = located.as_ref().map(|l| describe(l.node));
    let (kind, message) = rewrite(raw, found.as_deref());
    let mut span = inner.span();
    if kind == ErrorKind::MissingKey {
        // Point at the table's own key (e.g. `test` in `[tasks.test]`), not its whole body.
        span = located.as_ref().and_then(|l| l.key.clone()).or(span);
    }
    let span = span
        .or_else(|| located.as_ref().map(|l| l.value.clone()))
        .unwrap_or(0..0);
    source.diagnostic(span, &segs, kind, message)
}

/// Describe a TOML value for "found ..." in messages.
fn describe(v: &DeValue) -> String {
    match v {
        DeValue::String(s) => format!("string {s:?}"),
        DeValue::Integer(i) => format!("integer {i}"),
        DeValue::Float(f) => format!("float {f}"),
        DeValue::Boolean(b) => format!("boolean {b}"),
        DeValue::Datetime(d) => format!("datetime {d}"),
        DeValue::Array(_) => "an array".to_string(),
        DeValue::Table(_) => "a table".to_string(),
    }
}

/// Rewrite serde's standard messages (see `serde::de::Error`'s provided methods).
fn rewrite(raw: &str, found: Option<&str>) -> (ErrorKind, String) {
    if let Some(rest) = raw.strip_prefix("unknown field ") {
        let (name, expected) = split_name(rest);
        let valid = backticked(expected);
        let mut msg = if valid.is_empty() {
            "unknown key; this table takes no keys".to_string()
        } else {
            format!("unknown key; valid keys: {}", valid.join(", "))
        };
        if let Some(best) = did_you_mean(&name, &valid) {
            msg.push_str(&format!(" (did you mean `{best}`?)"));
        }
        return (ErrorKind::UnknownKey, msg);
    }
    if let Some(rest) = raw.strip_prefix("unknown variant ") {
        let (name, expected) = split_name(rest);
        let valid = backticked(expected);
        let mut msg = format!(
            "unknown value \"{name}\"; valid values: {}",
            valid.join(", ")
        );
        if let Some(best) = did_you_mean(&name, &valid) {
            msg.push_str(&format!(" (did you mean \"{best}\"?)"));
        }
        return (ErrorKind::InvalidValue, msg);
    }
    if let Some(rest) = raw.strip_prefix("missing field ") {
        let (name, _) = split_name(rest);
        let hint = match name.as_str() {
            "run" => ": the command(s) to run, e.g. run = \"cargo test\"",
            "from_env" => ": the local variable to read, e.g. { from_env = \"LOCAL_VAR\" }",
            _ => "",
        };
        return (
            ErrorKind::MissingKey,
            format!("missing required key `{name}`{hint}"),
        );
    }
    if let Some(rest) = raw.strip_prefix("duplicate field ") {
        let (name, _) = split_name(rest);
        return (
            ErrorKind::InvalidValue,
            format!("key `{name}` is given twice"),
        );
    }
    if let Some(rest) = raw.strip_prefix("invalid type: ")
        && let Some((unexpected, expected)) = rest.split_once(", expected ")
    {
        let found = found.map_or_else(|| plain_unexpected(unexpected), str::to_string);
        return (
            ErrorKind::WrongType,
            format!(
                "wrong type: expected {}, found {found}",
                plain_expected(expected)
            ),
        );
    }
    if let Some(rest) = raw.strip_prefix("invalid value: ")
        && let Some((unexpected, expected)) = rest.split_once(", expected ")
    {
        let found = found.map_or_else(|| plain_unexpected(unexpected), str::to_string);
        return (
            ErrorKind::InvalidValue,
            format!(
                "invalid value {found}: expected {}",
                plain_expected(expected)
            ),
        );
    }
    if raw == "wanted string or table" {
        let found = found.unwrap_or("another type");
        return (
            ErrorKind::WrongType,
            format!("wrong type: expected a string, found {found}"),
        );
    }
    // Our own visitors already write complete messages (e.g. invalid durations).
    (ErrorKind::InvalidValue, raw.to_string())
}

/// "`name`, expected ..." → (name, "expected ...").
fn split_name(rest: &str) -> (String, &str) {
    let rest = rest.strip_prefix('`').unwrap_or(rest);
    match rest.split_once('`') {
        Some((name, tail)) => (name.to_string(), tail.trim_start_matches(", ")),
        None => (rest.to_string(), ""),
    }
}

/// All `quoted` words of serde's "expected one of `a`, `b`".
fn backticked(s: &str) -> Vec<String> {
    s.split('`')
        .enumerate()
        .filter(|(i, _)| i % 2 == 1)
        .map(|(_, w)| w.to_string())
        .collect()
}

fn plain_expected(expected: &str) -> String {
    match expected {
        "u8" => "an integer from 0 to 255".to_string(),
        "u16" => "an integer from 0 to 65535".to_string(),
        "u32" => "an integer from 0 to 4294967295".to_string(),
        "u64" => "a non-negative integer".to_string(),
        "i32" | "i64" => "an integer".to_string(),
        "a sequence" => "an array".to_string(),
        "a map" => "a table".to_string(),
        "a borrowed string" => "a string".to_string(),
        e if e.starts_with("struct ") => "a table".to_string(),
        e => e.to_string(),
    }
}

fn plain_unexpected(unexpected: &str) -> String {
    match unexpected {
        "sequence" => "an array".to_string(),
        "map" => "a table".to_string(),
        u => u.replace('`', ""),
    }
}

/// The closest valid name, when it is close enough to be a likely typo.
pub(crate) fn did_you_mean(name: &str, valid: &[String]) -> Option<String> {
    valid
        .iter()
        .map(|v| (edit_distance(name, v), v))
        .filter(|(d, v)| *d <= (v.chars().count() / 3).max(1))
        .min_by_key(|(d, _)| *d)
        .map(|(_, v)| v.clone())
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_paths_quote_non_bare_keys() {
        let segs = vec![
            Seg::from("tasks"),
            Seg::from("a.b"),
            Seg::from("depends"),
            Seg::from(2),
        ];
        assert_eq!(format_key_path(&segs), "tasks.\"a.b\".depends[2]");
        assert_eq!(
            format_key_path(&[Seg::from("hooks"), Seg::from("pre-push")]),
            "hooks.pre-push"
        );
    }

    #[test]
    fn suggestions_only_for_near_misses() {
        let valid: Vec<String> = ["timeout", "image", "cpu"].map(String::from).to_vec();
        assert_eq!(did_you_mean("timout", &valid).as_deref(), Some("timeout"));
        assert_eq!(did_you_mean("colour", &valid), None);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }
}
