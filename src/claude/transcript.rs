//! Taking a Claude Code conversation home: the sandbox's transcript of a conversation, rewritten
//! for this checkout and stored where the local Claude Code looks for it, so that
//! `claude --resume ID` run in the checkout continues it.
//!
//! Claude Code keeps a conversation as `<config>/projects/<project>/<id>.jsonl`, where
//! `<config>` is `$CLAUDE_CONFIG_DIR` or `~/.claude` and `<project>` is the working directory
//! with every character other than an ASCII letter or digit replaced by `-` (paths longer than
//! 200 such characters are cut and get a hash suffix). This is what Claude Code 2.1 does (read
//! from its code); the end-to-end test resumes a pulled conversation with the real CLI.

use std::path::{Path, PathBuf};

use crate::provider::{ExecRequest, Sandbox, SandboxError};

/// Longest project directory name Claude Code uses before cutting it and adding a hash.
const MAX_PROJECT_NAME: usize = 200;

/// Why a conversation could not be brought back.
#[derive(Debug, thiserror::Error)]
pub enum TranscriptError {
    #[error("conversation id {0:?} is not one Claude Code writes (letters, digits and dashes)")]
    BadId(String),
    #[error("no transcript of conversation {0} in the sandbox's Claude Code projects directory")]
    Missing(String),
    #[error(transparent)]
    Sandbox(#[from] SandboxError),
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Where one conversation was stored on this machine.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Stored {
    /// Claude Code's conversation id (`claude --resume` takes it).
    pub session_id: String,
    /// The transcript file written.
    pub path: PathBuf,
    /// A differing local transcript of the same conversation that was moved aside, if any.
    pub kept_aside: Option<PathBuf>,
}

/// Claude Code's project directory name for working directory `cwd`.
pub fn project_dir_name(cwd: &str) -> String {
    // Claude Code's replacement works on UTF-16 code units: a character outside the BMP
    // becomes two dashes. The result is ASCII, so bytes and code units count alike.
    let name: String = cwd
        .encode_utf16()
        .map(|u| match u8::try_from(u) {
            Ok(b) if b.is_ascii_alphanumeric() => char::from(b),
            _ => '-',
        })
        .collect();
    if name.len() <= MAX_PROJECT_NAME {
        return name;
    }
    format!("{}-{}", &name[..MAX_PROJECT_NAME], base36(java_hash(cwd)))
}

/// Java's `String.hashCode` over UTF-16 code units, made non-negative as `Math.abs` does.
fn java_hash(s: &str) -> u64 {
    let h = s
        .encode_utf16()
        .fold(0i32, |h, u| h.wrapping_mul(31).wrapping_add(i32::from(u)));
    i64::from(h).unsigned_abs()
}

fn base36(mut n: u64) -> String {
    const DIGITS: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    if n == 0 {
        return "0".into();
    }
    let mut out = Vec::new();
    while n > 0 {
        out.push(DIGITS[(n % 36) as usize]);
        n /= 36;
    }
    out.reverse();
    String::from_utf8(out).expect("ASCII digits")
}

/// The local Claude Code configuration directory: `$CLAUDE_CONFIG_DIR`, else `~/.claude`.
pub fn local_config_dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("CLAUDE_CONFIG_DIR").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(d));
    }
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(|h| PathBuf::from(h).join(".claude"))
}

/// Whether `id` looks like a conversation id (it becomes part of a path and a shell word).
fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 128 && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}

/// The transcript of conversation `id` in the sandbox (the newest, should several projects
/// hold one).
pub async fn fetch(sandbox: &dyn Sandbox, id: &str) -> Result<Vec<u8>, TranscriptError> {
    if !valid_id(id) {
        return Err(TranscriptError::BadId(id.to_string()));
    }
    let find = format!(
        "ls -t \"${{CLAUDE_CONFIG_DIR:-$HOME/.claude}}\"/projects/*/{id}.jsonl 2>/dev/null | head -n 1"
    );
    let out = crate::provider::run(
        sandbox,
        ExecRequest::shell(find).timeout(Some(std::time::Duration::from_secs(30))),
    )
    .await?;
    let path = out.stdout_str().trim().to_string();
    if path.is_empty() {
        return Err(TranscriptError::Missing(id.to_string()));
    }
    Ok(sandbox.read_file(&path).await?.to_vec())
}

/// The transcript with the sandbox's working directory replaced by `local` wherever a record
/// says where it ran (`"cwd"`), so that the local Claude Code sees its own checkout. Everything
/// else (messages, tool calls) stays as it happened.
pub fn rewrite_cwd(transcript: &[u8], sandbox_dir: &str, local: &str) -> Vec<u8> {
    let (Ok(from), Ok(to)) = (
        serde_json::to_string(sandbox_dir),
        serde_json::to_string(local),
    ) else {
        return transcript.to_vec();
    };
    // The JSON strings without their closing quote: a prefix of the cwd value.
    let from = format!("\"cwd\":{}", &from[..from.len() - 1]);
    let to = format!("\"cwd\":{}", &to[..to.len() - 1]);
    let text = String::from_utf8_lossy(transcript);
    let mut out = String::with_capacity(text.len());
    let mut rest: &str = &text;
    while let Some(i) = rest.find(&from) {
        let after = &rest[i + from.len()..];
        out.push_str(&rest[..i]);
        // Only the directory itself or a path below it, not `/repo2` for `/repo`.
        if after.starts_with('"') || after.starts_with('/') {
            out.push_str(&to);
        } else {
            out.push_str(&from);
        }
        rest = after;
    }
    out.push_str(rest);
    out.into_bytes()
}

/// Store `transcript` as conversation `id` of the project at `local_root` under `config_dir`.
/// A local transcript of the same conversation that is not a prefix of this one (it was
/// continued here) is kept aside first, never overwritten.
pub fn store(
    config_dir: &Path,
    local_root: &Path,
    id: &str,
    transcript: &[u8],
) -> Result<Stored, TranscriptError> {
    if !valid_id(id) {
        return Err(TranscriptError::BadId(id.to_string()));
    }
    let dir = config_dir
        .join("projects")
        .join(project_dir_name(&local_root.to_string_lossy()));
    let write_err = |path: &Path, source| TranscriptError::Write {
        path: path.to_path_buf(),
        source,
    };
    std::fs::create_dir_all(&dir).map_err(|e| write_err(&dir, e))?;
    let path = dir.join(format!("{id}.jsonl"));
    let mut kept_aside = None;
    if let Ok(existing) = std::fs::read(&path)
        && !transcript.starts_with(&existing)
    {
        let stamp = time::OffsetDateTime::now_utc().unix_timestamp();
        let aside = dir.join(format!("{id}.jsonl.before-pull-{stamp}"));
        std::fs::rename(&path, &aside).map_err(|e| write_err(&aside, e))?;
        kept_aside = Some(aside);
    }
    let tmp = dir.join(format!(".{id}.jsonl.rclaude-tmp"));
    std::fs::write(&tmp, transcript).map_err(|e| write_err(&tmp, e))?;
    std::fs::rename(&tmp, &path).map_err(|e| write_err(&path, e))?;
    Ok(Stored {
        session_id: id.to_string(),
        path,
        kept_aside,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn project_names_follow_claude_code() {
        assert_eq!(project_dir_name("/home/u/my.repo"), "-home-u-my-repo");
        assert_eq!(project_dir_name("/tmp/a_b c"), "-tmp-a-b-c");
        // Outside the BMP: two UTF-16 units, two dashes.
        assert_eq!(project_dir_name("/x/😀"), "-x---");
        assert_eq!(project_dir_name("/x/é"), "-x--");
        let long = format!("/{}", "a".repeat(250));
        let name = project_dir_name(&long);
        assert!(name.starts_with(&format!("-{}", "a".repeat(199))));
        // Claude Code's function, run in node, gives this suffix for that path.
        assert_eq!(&name[200..], "-feo44x");
    }

    #[test]
    fn java_hash_matches_string_hash_code() {
        // "hello".hashCode() == 99162322 in Java and in Claude Code's function.
        assert_eq!(java_hash("hello"), 99162322);
        // A negative hashCode is made positive: "polygenelubricants" is i32::MIN in Java.
        assert_eq!(java_hash("polygenelubricants"), 2147483648);
        // Values from node: `(99162322).toString(36)`, `Math.abs(-2147483648).toString(36)`.
        assert_eq!(base36(99162322), "1n1e4y");
        assert_eq!(base36(2147483648), "zik0zk");
    }

    #[test]
    fn only_cwd_values_under_the_sandbox_directory_change() {
        let t = br#"{"type":"user","cwd":"/home/user/repo","message":"in /home/user/repo"}
{"cwd":"/home/user/repo/sub","x":1}
{"cwd":"/home/user/repo2"}
"#;
        let out =
            String::from_utf8(rewrite_cwd(t, "/home/user/repo", "/Users/me/r \"q\"")).unwrap();
        assert_eq!(
            out,
            r#"{"type":"user","cwd":"/Users/me/r \"q\"","message":"in /home/user/repo"}
{"cwd":"/Users/me/r \"q\"/sub","x":1}
{"cwd":"/home/user/repo2"}
"#
        );
    }

    #[test]
    fn a_conversation_continued_here_is_kept_aside() {
        let d = tempfile::tempdir().unwrap();
        let root = Path::new("/w/repo");
        let first = store(d.path(), root, "abc-1", b"one\n").unwrap();
        assert!(first.kept_aside.is_none());
        assert_eq!(first.path, d.path().join("projects/-w-repo/abc-1.jsonl"));
        // The sandbox went on: the longer transcript replaces the local one.
        let grown = store(d.path(), root, "abc-1", b"one\ntwo\n").unwrap();
        assert!(grown.kept_aside.is_none());
        // Continued locally since: the local file is kept, not overwritten.
        std::fs::write(&grown.path, b"one\ntwo\nlocal\n").unwrap();
        let again = store(d.path(), root, "abc-1", b"one\ntwo\nthree\n").unwrap();
        let aside = again.kept_aside.unwrap();
        assert_eq!(std::fs::read(aside).unwrap(), b"one\ntwo\nlocal\n");
        assert_eq!(std::fs::read(&again.path).unwrap(), b"one\ntwo\nthree\n");
        assert!(matches!(
            store(d.path(), root, "../x", b""),
            Err(TranscriptError::BadId(_))
        ));
    }
}
