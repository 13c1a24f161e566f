//! Checkpoints as bundles, for keeping them off this machine (the server's checkpoint store)
//! and taking them back on any machine with a clone of the repository.
//!
//! [`export`] writes one checkpoint's commits (its tip, the sandbox HEAD under it, and the
//! snapshot and index commits last pushed) as a bundle that leaves out what the reader is sure
//! to have: the objects of `base` (another exported checkpoint, read first), and the
//! repository's public history (every remote-tracking branch). [`import`] reads a chain of such
//! bundles, oldest first, and records the checkpoint as if it had been taken here.

use std::path::{Path, PathBuf};

use git2::{Oid, Repository};

use super::bundle::{self, BundleRef, Written};
use super::checkpoint::{self, Checkpoint};
use super::{SyncError, SyncProgress, open_repo, parse_oid};

/// The commits of `cp` that exist in `repo`, as bundle refs.
fn refs_of(repo: &Repository, cp: &Checkpoint) -> Vec<BundleRef> {
    let mut out = Vec::new();
    let mut add = |name: &str, oid: Option<&str>| {
        if let Some(oid) = oid.and_then(|o| parse_oid(o).ok())
            && repo.find_commit(oid).is_ok()
        {
            out.push(BundleRef {
                name: format!("refs/rclaude/checkpoint/{name}"),
                oid,
            });
        }
    };
    add("tip", Some(&cp.tip));
    add("head", cp.sandbox_head.as_deref());
    if let Some((snap, index)) = &cp.pushed {
        add("snapshot", Some(snap));
        add("index", Some(index));
    }
    out
}

/// Tips of every remote-tracking branch: history any clone of the repository has.
fn public_tips(repo: &Repository) -> Vec<Oid> {
    let mut out = Vec::new();
    if let Ok(refs) = repo.references_glob("refs/remotes/*") {
        for r in refs.flatten() {
            if let Ok(c) = r.peel_to_commit() {
                out.push(c.id());
            }
        }
    }
    out
}

fn reachable_from(repo: &Repository, refs: &[BundleRef], hidden: &[Oid]) -> bool {
    refs.iter().all(|r| bundle::reachable(repo, hidden, r.oid))
}

/// A writer that hashes what passes through it.
struct Hashing<W> {
    inner: W,
    hash: sha2::Sha256,
}

impl<W: std::io::Write> std::io::Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        sha2::Digest::update(&mut self.hash, &buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Write checkpoint `cp` (which must be recorded here) as a bundle at `out`, leaving out the
/// objects of `base` and of the public history. Returns what was written and the bundle's
/// SHA-256 (hexadecimal), computed as it was written.
pub fn export(
    repo_path: &Path,
    cp: &Checkpoint,
    base: Option<&Checkpoint>,
    out: &Path,
    progress: &dyn SyncProgress,
) -> Result<(Written, String), SyncError> {
    let repo = open_repo(repo_path)?;
    let refs = refs_of(&repo, cp);
    if refs.is_empty() {
        return Err(SyncError::Internal(format!(
            "checkpoint {} has no commits in this repository",
            cp.id
        )));
    }
    let base_tips: Vec<Oid> = base
        .map(|b| refs_of(&repo, b).into_iter().map(|r| r.oid).collect())
        .unwrap_or_default();
    let mut hidden = base_tips.clone();
    hidden.extend(public_tips(&repo));
    // Everything already in what the reader has (a sandbox at a published commit): a bundle
    // must carry something, so leave out less.
    if reachable_from(&repo, &refs, &hidden) {
        hidden = base_tips;
        if reachable_from(&repo, &refs, &hidden) {
            hidden.clear();
        }
    }
    let file =
        std::fs::File::create(out).map_err(SyncError::io(format!("creating {}", out.display())))?;
    let mut w = Hashing {
        inner: std::io::BufWriter::new(&file),
        hash: sha2::Digest::new(),
    };
    let written = bundle::write(&repo, &refs, &hidden, &mut w, progress)?;
    std::io::Write::flush(&mut w).map_err(SyncError::io(format!("writing {}", out.display())))?;
    let Hashing { inner, hash } = w;
    drop(inner);
    let sha = hex::encode(sha2::Digest::finalize(hash));
    file.sync_all()
        .map_err(SyncError::io(format!("writing {}", out.display())))?;
    Ok((written, sha))
}

/// Read `bundles` (a checkpoint's chain, oldest first) into the repository and record `cp` as
/// a checkpoint of `session` here. A bundle whose prerequisites are missing names the commit
/// (fetch the repository's remote first).
pub fn import(
    repo_path: &Path,
    session: &str,
    cp: &Checkpoint,
    bundles: &[PathBuf],
    progress: &dyn SyncProgress,
) -> Result<Checkpoint, SyncError> {
    let repo = open_repo(repo_path)?;
    for b in bundles {
        bundle::read(&repo, b, progress)?;
    }
    let tip = parse_oid(&cp.tip)?;
    repo.find_commit(tip).map_err(|_| SyncError::BadBundle {
        path: bundles.last().cloned().unwrap_or_default(),
        reason: format!("it does not hold the checkpoint's commit {tip}"),
    })?;
    let mut cp = cp.clone();
    // Commits this machine never had (another laptop's snapshot) are not needed to pull.
    let have = |o: &str| parse_oid(o).is_ok_and(|o| repo.find_commit(o).is_ok());
    if cp
        .pushed
        .as_ref()
        .is_some_and(|(a, b)| !have(a) || !have(b))
    {
        cp.pushed = None;
    }
    if cp.sandbox_head.as_deref().is_some_and(|h| !have(h)) {
        return Err(SyncError::BadBundle {
            path: bundles.last().cloned().unwrap_or_default(),
            reason: "it does not hold the sandbox HEAD the checkpoint names".into(),
        });
    }
    checkpoint::adopt(&repo, session, &cp)?;
    Ok(cp)
}
