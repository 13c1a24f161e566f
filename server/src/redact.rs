//! Redaction of API token secrets from text the server writes (request logs, error bodies).
//!
//! A token is `rcl_<8 id chars>_<32 secret chars>`; its first 12 characters are its public
//! prefix. Wherever a whole token shows up — pasted into a path by mistake, echoed in a message —
//! the secret part is replaced with `***`, keeping the prefix so the token can still be named.

use std::borrow::Cow;

use crate::token::PREFIX_LEN;

/// `text` with the secret part of every token-shaped substring replaced by `***`.
///
/// ```
/// use rclaude_server::redact::tokens;
/// let t = "DELETE /v1/tokens/rcl_abcd1234_0123456789abcdefghijABCDEFGHIJKL";
/// assert_eq!(tokens(t), "DELETE /v1/tokens/rcl_abcd1234_***");
/// assert_eq!(tokens("prefix rcl_abcd1234 only"), "prefix rcl_abcd1234 only");
/// ```
pub fn tokens(text: &str) -> Cow<'_, str> {
    if !text.contains("rcl_") {
        return Cow::Borrowed(text);
    }
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    let mut i = 0;
    while let Some(found) = text[i..].find("rcl_") {
        let start = i + found;
        let id_end = start + PREFIX_LEN;
        let is_id = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
        if bytes.len() > id_end + 1
            && bytes[start + 4..id_end].iter().all(is_id)
            && bytes[id_end] == b'_'
            && bytes[id_end + 1].is_ascii_alphanumeric()
        {
            let mut end = id_end + 1;
            while end < bytes.len() && bytes[end].is_ascii_alphanumeric() {
                end += 1;
            }
            out.push_str(&text[copied..=id_end]);
            out.push_str("***");
            copied = end;
            i = end;
        } else {
            i = start + 4;
        }
    }
    if copied == 0 {
        return Cow::Borrowed(text);
    }
    out.push_str(&text[copied..]);
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_token_in_a_text_is_redacted_and_nothing_else() {
        let a = crate::auth::generate().secret;
        let b = crate::auth::generate().secret;
        let text = format!("x {a}/y?{b}&z rcl_ rcl_short_ rcl_abcd1234");
        let got = tokens(&text);
        assert!(!got.contains(&a[PREFIX_LEN + 1..]), "{got}");
        assert!(!got.contains(&b[PREFIX_LEN + 1..]), "{got}");
        assert!(
            got.contains(&format!("{}_***/y?", &a[..PREFIX_LEN])),
            "{got}"
        );
        assert!(got.ends_with("rcl_ rcl_short_ rcl_abcd1234"), "{got}");
        assert!(matches!(tokens("no tokens here"), Cow::Borrowed(_)));
    }
}
