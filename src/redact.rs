//! Secret values taken out of everything rclaude shows, stores or sends: streamed output,
//! transcripts, progress lines, errors, CI JSON, events for the server.
//!
//! The process keeps one set of the values it passes into sandboxes ([`register`]): the
//! `[secrets]` of the loaded config (every phase, as far as the local environment has them) and
//! the credentials a command hands over itself (`ANTHROPIC_API_KEY`, ...). A value is replaced by
//! `***NAME`. Streams are redacted across chunk boundaries ([`StreamRedactor`]). Values shorter
//! than [`MIN_LEN`] bytes are not redacted: they cannot be told apart from ordinary output.

use std::borrow::Cow;
use std::sync::{Arc, RwLock};

/// Shortest value that is redacted.
pub const MIN_LEN: usize = 4;

/// A set of secret values and their names.
#[derive(Debug, Default, Clone)]
pub struct Secrets {
    /// (value, replacement), longest value first so that a secret containing another wins.
    entries: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Secrets {
    /// Add `value` under `name` (ignored when shorter than [`MIN_LEN`] or already there).
    pub fn add(&mut self, name: &str, value: &str) {
        if value.len() < MIN_LEN || self.entries.iter().any(|(v, _)| v == value.as_bytes()) {
            return;
        }
        self.entries
            .push((value.as_bytes().to_vec(), format!("***{name}").into_bytes()));
        self.entries.sort_by_key(|e| std::cmp::Reverse(e.0.len()));
    }

    /// No values to redact.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// `bytes` with every whole occurrence of a value replaced.
    pub fn redact_bytes<'a>(&self, bytes: &'a [u8]) -> Cow<'a, [u8]> {
        if self.is_empty() {
            return Cow::Borrowed(bytes);
        }
        let (out, held) = self.scan(bytes, true);
        debug_assert_eq!(held, bytes.len());
        match out {
            None => Cow::Borrowed(bytes),
            Some(o) => Cow::Owned(o),
        }
    }

    /// `text` with every value replaced.
    pub fn redact<'a>(&self, text: &'a str) -> Cow<'a, str> {
        match self.redact_bytes(text.as_bytes()) {
            Cow::Borrowed(_) => Cow::Borrowed(text),
            Cow::Owned(o) => Cow::Owned(String::from_utf8_lossy(&o).into_owned()),
        }
    }

    /// Replace values left to right (longest first at each position). Unless `last`, stop where
    /// the rest of `bytes` could still grow into a value (or a longer one) with more input.
    /// Returns the output when anything was replaced (`None`: `bytes[..end]` as is) and `end`,
    /// the number of input bytes consumed.
    fn scan(&self, bytes: &[u8], last: bool) -> (Option<Vec<u8>>, usize) {
        let mut out: Option<Vec<u8>> = None;
        let (mut i, mut copied) = (0, 0);
        while i < bytes.len() {
            let rest = &bytes[i..];
            if !last
                && self
                    .entries
                    .iter()
                    .any(|(v, _)| v.len() > rest.len() && v.starts_with(rest))
            {
                break;
            }
            match self.entries.iter().find(|(v, _)| rest.starts_with(v)) {
                Some((v, r)) => {
                    let o = out.get_or_insert_with(|| Vec::with_capacity(bytes.len()));
                    o.extend_from_slice(&bytes[copied..i]);
                    o.extend_from_slice(r);
                    i += v.len();
                    copied = i;
                }
                None => i += 1,
            }
        }
        if let Some(o) = &mut out {
            o.extend_from_slice(&bytes[copied..i]);
        }
        (out, i)
    }
}

/// Redacts one stream chunk by chunk: a value split across chunks is still replaced, at the
/// cost of holding back at most the longest value's length minus one byte until the next chunk
/// (or [`StreamRedactor::finish`]).
pub struct StreamRedactor {
    secrets: Arc<Secrets>,
    held: Vec<u8>,
}

impl StreamRedactor {
    /// A redactor for `secrets`.
    pub fn new(secrets: Arc<Secrets>) -> StreamRedactor {
        StreamRedactor {
            secrets,
            held: Vec::new(),
        }
    }

    /// The redacted bytes that can be emitted after `chunk`.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<u8> {
        if self.secrets.is_empty() {
            return chunk.to_vec();
        }
        self.held.extend_from_slice(chunk);
        let (out, end) = self.secrets.scan(&self.held, false);
        let out = out.unwrap_or_else(|| self.held[..end].to_vec());
        self.held.drain(..end);
        out
    }

    /// What is still held back, redacted (the stream ended).
    pub fn finish(&mut self) -> Vec<u8> {
        let held = std::mem::take(&mut self.held);
        self.secrets.redact_bytes(&held).into_owned()
    }
}

static GLOBAL: RwLock<Option<Arc<Secrets>>> = RwLock::new(None);

/// Redact `value` (named `name`) from everything this process shows or sends from now on.
pub fn register(name: &str, value: &str) {
    let mut g = GLOBAL.write().unwrap_or_else(|e| e.into_inner());
    let mut s = g.as_deref().cloned().unwrap_or_default();
    s.add(name, value);
    *g = Some(Arc::new(s));
}

/// The values registered so far.
pub fn current() -> Arc<Secrets> {
    GLOBAL
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .clone()
        .unwrap_or_default()
}

/// `text` with every registered value replaced.
pub fn text(text: &str) -> Cow<'_, str> {
    let s = current();
    match s.redact(text) {
        Cow::Borrowed(_) => Cow::Borrowed(text),
        Cow::Owned(o) => Cow::Owned(o),
    }
}

/// A [`StreamRedactor`] over the values registered so far.
pub fn stream() -> StreamRedactor {
    StreamRedactor::new(current())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn secrets() -> Arc<Secrets> {
        let mut s = Secrets::default();
        s.add("TOKEN", "s3cr3t-value");
        s.add("SHORT", "abc");
        s.add("PIN", "s3cr3t");
        Arc::new(s)
    }

    #[test]
    fn whole_values_become_their_names_and_short_ones_stay() {
        let s = secrets();
        assert_eq!(
            s.redact("a s3cr3t-value b s3cr3t c abc"),
            "a ***TOKEN b ***PIN c abc"
        );
        assert!(matches!(s.redact("nothing here"), Cow::Borrowed(_)));
    }

    #[test]
    fn a_value_split_across_chunks_is_replaced() {
        let mut r = StreamRedactor::new(secrets());
        let mut out = r.push(b"key=s3cr");
        out.extend(r.push(b"3t-va"));
        out.extend(r.push(b"lue\ndone s3"));
        out.extend(r.finish());
        assert_eq!(String::from_utf8(out).unwrap(), "key=***TOKEN\ndone s3");
    }

    proptest! {
        /// However the output is cut into chunks, the stream gives what redacting it whole gives.
        #[test]
        fn chunking_never_changes_the_result(
            parts in proptest::collection::vec("(s3cr3t-value|s3cr3t|s3|x|\n| ){0,6}", 1..8)
        ) {
            let s = secrets();
            let whole: String = parts.concat();
            let mut r = StreamRedactor::new(s.clone());
            let mut out = Vec::new();
            for p in &parts {
                out.extend(r.push(p.as_bytes()));
            }
            out.extend(r.finish());
            prop_assert_eq!(String::from_utf8(out).unwrap(), s.redact(&whole).into_owned());
        }
    }
}
