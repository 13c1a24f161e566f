//! The query step ([`crate::scripts::QUERY`]) as one process: the sandbox repository's
//! identity, HEAD, refs and sync records, the script's answer line for line. Read only, but for
//! the same clean-up of leftovers in `.git/rclaude/tmp` (older than two hours) as the script.

use std::time::{Duration, SystemTime};

use git2::Repository;
use rclaude_sandbox::agent::query::QueryJob;

use super::{Answer, identity, peeled};

/// Leftovers in `.git/rclaude/tmp` older than this go (the script's `find -mmin +120`).
const STALE: Duration = Duration::from_secs(120 * 60);

/// Do the query of `job`: the answer lines, or why it is left to the script.
pub(super) fn query(job: &QueryJob) -> Result<String, String> {
    let mut out = Answer::default();
    let git_dir = job.work.join(".git");
    let r = git_dir.join("rclaude");
    if !job.work.is_dir() {
        out.say("state", "missing");
        out.say("done", "1");
        return Ok(out.0);
    }
    let id = identity(&r);
    if !git_dir.is_dir() || id.is_empty() {
        out.say("state", "uninitialized");
        out.say("done", "1");
        return Ok(out.0);
    }
    let repo = Repository::open(&job.work).map_err(|e| e.message().to_string())?;
    if repo
        .workdir()
        .is_none_or(|w| w.canonicalize().ok() != job.work.canonicalize().ok())
    {
        return Err("the repository or its work tree is elsewhere".into());
    }
    out.say("state", "ready");
    out.say("identity", &id);
    clean_tmp(&r.join("tmp"));
    let head = repo.find_reference("HEAD").ok();
    let head_ref = head
        .as_ref()
        .and_then(|h| h.symbolic_target().ok().flatten().map(str::to_string))
        .unwrap_or_default();
    out.say("head_ref", &head_ref);
    out.say(
        "head_oid",
        &peeled(&repo, "HEAD")
            .map(|c| c.to_string())
            .unwrap_or_default(),
    );
    // `git for-each-ref refs/heads refs/rclaude`: sorted by name, the object each points at.
    let mut refs = Vec::new();
    for glob in ["refs/heads/*", "refs/rclaude/*"] {
        for r in repo
            .references_glob(glob)
            .map_err(|e| e.message().to_string())?
            .flatten()
        {
            if let (Ok(name), Some(oid)) = (r.name(), r.target()) {
                refs.push((name.to_string(), oid));
            }
        }
    }
    refs.sort();
    refs.dedup();
    for (name, oid) in refs {
        out.say("ref", &format!("{oid} {name}"));
    }
    out.say(
        "marker",
        if r.join("applying").exists() {
            "1"
        } else {
            "0"
        },
    );
    if let Ok(text) = std::fs::read_to_string(r.join("synced")) {
        for line in text.lines() {
            if let Some((key, value)) = line.split_once('=')
                && key.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
            {
                out.say(&format!("synced_{key}"), value);
            }
        }
    }
    out.say("done", "1");
    Ok(out.0)
}

/// Remove what in `tmp` was last modified over [`STALE`] ago; create `tmp` when missing.
fn clean_tmp(tmp: &std::path::Path) {
    let _ = std::fs::create_dir_all(tmp);
    let Ok(entries) = std::fs::read_dir(tmp) else {
        return;
    };
    let now = SystemTime::now();
    for e in entries.flatten() {
        let Ok(meta) = std::fs::symlink_metadata(e.path()) else {
            continue;
        };
        let old = meta
            .modified()
            .ok()
            .and_then(|m| now.duration_since(m).ok())
            .is_some_and(|age| age > STALE);
        if old {
            let _ = if meta.is_dir() {
                std::fs::remove_dir_all(e.path())
            } else {
                std::fs::remove_file(e.path())
            };
        }
    }
}
