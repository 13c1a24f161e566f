//! Checkpoints kept off the sandbox: a session's work as git bundles the CLI uploads (see
//! docs/server.md, "Checkpoints"). The server checks each bundle's size and SHA-256 as it
//! streams in, stores it whole or not at all, records it, and keeps the newest few per session
//! together with the checkpoints they build on.

use std::collections::{HashMap, HashSet};

use crate::checkpoint_store::BlobStore;
use crate::clock::Now;
use crate::storage::{CheckpointRow, Store, StoreError};

pub use crate::config::{
    CheckpointSettings, DEFAULT_KEEP, DEFAULT_KEEP_AFTER_STOP, DEFAULT_MAX_BYTES,
};

/// Which checkpoints retention drops: all but the newest `keep` (by creation, then name), and
/// never one that a kept checkpoint builds on, directly or through others. `all` is oldest
/// first; returns ids.
pub fn to_drop(all: &[CheckpointRow], keep: usize) -> Vec<String> {
    let keep = keep.max(1);
    let by_name: HashMap<&str, &CheckpointRow> = all.iter().map(|c| (c.name.as_str(), c)).collect();
    let mut kept: HashSet<&str> = HashSet::new();
    for c in all.iter().rev().take(keep) {
        let mut at = Some(c);
        while let Some(c) = at {
            if !kept.insert(c.name.as_str()) {
                break;
            }
            at = c.base.as_deref().and_then(|b| by_name.get(b).copied());
        }
    }
    all.iter()
        .filter(|c| !kept.contains(c.name.as_str()))
        .map(|c| c.id.clone())
        .collect()
}

/// Where checkpoint `name`'s bundle is stored (unique per upload, so a lost race never
/// overwrites the winner's object).
pub fn object_key(account: &str, session: &str, name: &str) -> String {
    format!(
        "{account}/{session}/{name}-{}.bundle",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    )
}

/// Drop what retention no longer keeps: records first, then their objects (an object whose
/// delete fails is removed by the start-up sweep).
pub async fn retain(
    store: &Store,
    blobs: &BlobStore,
    account: &str,
    session: &str,
    keep: usize,
    now: Now,
) -> Result<(), StoreError> {
    let all = store.list_checkpoints(account, session).await?;
    let drop = to_drop(&all, keep);
    if drop.is_empty() {
        return Ok(());
    }
    store.mark_checkpoints_deleted(&drop, now.ms()).await?;
    for row in all.iter().filter(|r| drop.contains(&r.id)) {
        if let Err(e) = blobs.delete(&row.object_key).await {
            tracing::warn!(key = %row.object_key, error = %e, "deleting a dropped checkpoint failed");
        }
    }
    Ok(())
}

/// A checkpoint name: 1 to 64 of `A-Z a-z 0-9 - _ .`, not starting with `.`.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cp(name: &str, base: Option<&str>) -> CheckpointRow {
        CheckpointRow {
            id: format!("id-{name}"),
            session_id: "s".into(),
            name: name.into(),
            base: base.map(str::to_string),
            anchor: base.is_none(),
            object_key: format!("k/{name}"),
            size_bytes: 1,
            sha256: String::new(),
            info: "{}".into(),
            created_at_ms: 0,
        }
    }

    #[test]
    fn keeps_the_newest_and_what_they_build_on() {
        // a (self-contained) <- b <- c, and d builds on a; e builds on d.
        let all = vec![
            cp("a", None),
            cp("b", Some("a")),
            cp("c", Some("b")),
            cp("d", Some("a")),
            cp("e", Some("d")),
        ];
        assert_eq!(to_drop(&all, 1), vec!["id-b", "id-c"]);
        assert_eq!(to_drop(&all, 2), vec!["id-b", "id-c"]);
        // c builds on b: keeping c keeps b.
        assert!(to_drop(&all, 3).is_empty());
        let mut more = all.clone();
        more.push(cp("f", None));
        assert_eq!(
            to_drop(&more, 1),
            vec!["id-a", "id-b", "id-c", "id-d", "id-e"]
        );
        // keep 0 still keeps the newest.
        assert_eq!(to_drop(&all, 0), vec!["id-b", "id-c"]);
    }

    #[test]
    fn names() {
        assert!(valid_name("20261204T101500Z"));
        assert!(valid_name("20261204T101500Z-2"));
        for bad in ["", ".x", "a/b", "a b", "..", &"x".repeat(65)] {
            assert!(!valid_name(bad), "{bad:?}");
        }
    }
}
