//! Git bundles written and read with libgit2 (which has no bundle API).
//!
//! Writing: a v2 header (`# v2 git bundle`, `-<oid> <comment>` per prerequisite, `<oid> <ref>`
//! per ref, a blank line) then a pack streamed from `PackBuilder::foreach`. The pack holds what
//! a revision walk from the refs, with the known commits hidden, reaches; libgit2 also leaves out
//! the trees and blobs of the hidden tips, so an incremental bundle carries only new objects.
//! Prerequisites are the boundary commits (parents of sent commits that are not sent).
//!
//! Large histories: libgit2 enumerates and deltifies objects from scratch (it cannot reuse the
//! deltas already in the repository's packs), which took 6 minutes for git.git's 406k objects
//! where `git pack-objects` takes 20 s. So when a bundle carries more than
//! [`GIT_PACK_ABOVE_COMMITS`] commits and a `git` executable is installed, the pack part comes
//! from `git pack-objects --revs` (same objects, same walk: the refs minus the hidden commits);
//! the header is still ours. The same holds for a bundle that carries a blob of over
//! [`BIG_BLOB_BYTES`] (a large untracked file): git streams such blobs, libgit2 holds two copies
//! in memory. `RCLAUDE_PACK=libgit2` forces libgit2 for every bundle,
//! `RCLAUDE_PACK=git` forces `git pack-objects` (when installed).
//!
//! Reading: the header is parsed and validated (v2, or v3 with only `@object-format=sha1`),
//! every prerequisite must exist locally, and the pack is streamed into the repository's object
//! store through libgit2's indexer, which verifies it and completes thin packs (git's own bundles
//! are thin). Refs are not touched here: the caller updates them once the pack is in.

use std::collections::HashSet;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use git2::{Oid, Repository};

use super::{SyncError, SyncProgress};

/// A ref to put in a bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleRef {
    pub name: String,
    pub oid: Oid,
}

/// What [`write()`] produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    /// Objects in the pack.
    pub objects: u64,
    /// Bytes written (header + pack).
    pub bytes: u64,
    /// Commits in the pack.
    pub commits: u64,
    /// Commits the reader must already have.
    pub prerequisites: Vec<Oid>,
}

/// Whether commit `oid` is one of `hidden` or reachable from one: a receiver that has
/// `hidden` has it.
pub fn reachable(repo: &Repository, hidden: &[Oid], oid: Oid) -> bool {
    hidden
        .iter()
        .any(|h| *h == oid || repo.graph_descendant_of(*h, oid).unwrap_or(false))
}

/// Write a v2 bundle of `refs` to `out`, leaving out everything reachable from `hidden`
/// (commits the receiver has). Fails when there is nothing to send (every ref is reachable
/// from `hidden`): check that first.
pub fn write<'a>(
    repo: &'a Repository,
    refs: &[BundleRef],
    hidden: &[Oid],
    out: &mut dyn Write,
    progress: &'a dyn SyncProgress,
) -> Result<Written, SyncError> {
    if refs.is_empty() {
        return Err(SyncError::Internal(
            "a bundle needs at least one ref".into(),
        ));
    }
    for r in refs {
        if !git2::Reference::is_valid_name(&r.name) {
            return Err(SyncError::invalid(
                "bundle ref name",
                format!("{:?} is not a valid ref name", r.name),
            ));
        }
    }
    let new_walk = || -> Result<git2::Revwalk<'a>, SyncError> {
        let mut walk = repo
            .revwalk()
            .map_err(SyncError::git("starting a revision walk"))?;
        for r in refs {
            walk.push(r.oid).map_err(SyncError::git(format!(
                "walking from {} ({})",
                r.name, r.oid
            )))?;
        }
        for h in hidden {
            walk.hide(*h)
                .map_err(SyncError::git(format!("hiding known commit {h}")))?;
        }
        Ok(walk)
    };

    // Which commits go in, and which commits they build on (the prerequisites).
    let mut sent = HashSet::new();
    for oid in new_walk()? {
        sent.insert(oid.map_err(SyncError::git("walking the commits to send"))?);
    }
    if sent.is_empty() {
        return Err(SyncError::Internal(
            "nothing to bundle: every ref is already known".into(),
        ));
    }
    let mut prereqs: Vec<Oid> = Vec::new();
    for oid in &sent {
        let c = repo
            .find_commit(*oid)
            .map_err(SyncError::git("reading a commit to send"))?;
        for p in c.parent_ids() {
            if !sent.contains(&p) && !prereqs.contains(&p) {
                prereqs.push(p);
            }
        }
    }
    prereqs.sort();

    let named: Vec<(Oid, &str)> = refs.iter().map(|r| (r.oid, r.name.as_str())).collect();
    let header = rclaude_sandbox_git::native::bundle::header(repo, &prereqs, &named);
    out.write_all(header.as_bytes())
        .map_err(SyncError::io("writing the bundle header"))?;

    let choice = std::env::var("RCLAUDE_PACK").ok();
    let want_git = match choice.as_deref() {
        Some("libgit2") => false,
        Some("git") => true,
        _ => sent.len() > GIT_PACK_ABOVE_COMMITS || has_big_blob(repo, &sent, BIG_BLOB_BYTES),
    };
    if want_git && let Some(git) = find_git() {
        let (objects, pack_bytes) = pack_with_git(&git, repo, refs, hidden, out, progress)?;
        let written = header.len() as u64 + pack_bytes;
        progress.objects(objects, objects);
        progress.bytes(written, Some(written));
        return Ok(Written {
            objects,
            bytes: written,
            commits: sent.len() as u64,
            prerequisites: prereqs,
        });
    }

    let mut pb = repo
        .packbuilder()
        .map_err(SyncError::git("creating a pack builder"))?;
    pb.set_progress_callback(|_stage, done, total| {
        progress.objects(u64::from(done), u64::from(total));
        true
    })
    .map_err(SyncError::git("setting pack progress"))?;
    let mut walk = new_walk()?;
    pb.insert_walk(&mut walk)
        .map_err(SyncError::git("collecting the objects to send"))?;
    let objects = pb.object_count() as u64;
    progress.objects(0, objects);

    let mut written = header.len() as u64;
    let mut io_err: Option<std::io::Error> = None;
    let res = pb.foreach(|chunk| match out.write_all(chunk) {
        Ok(()) => {
            written += chunk.len() as u64;
            progress.bytes(written, None);
            true
        }
        Err(e) => {
            io_err = Some(e);
            false
        }
    });
    if let Some(e) = io_err {
        return Err(SyncError::Io {
            context: "writing the bundle's pack".into(),
            source: e,
        });
    }
    res.map_err(SyncError::git("writing the bundle's pack"))?;
    out.flush().map_err(SyncError::io("writing the bundle"))?;
    progress.objects(objects, objects);
    progress.bytes(written, Some(written));
    Ok(Written {
        objects,
        bytes: written,
        commits: sent.len() as u64,
        prerequisites: prereqs,
    })
}

/// Bundles with more commits than this get their pack from `git pack-objects` when available.
pub const GIT_PACK_ABOVE_COMMITS: usize = 100;

/// Blobs larger than this are streamed into the pack without delta compression: libgit2's pack
/// builder holds a blob and its compressed copy in memory (a 200 MB file cost 440 MB), where
/// `git pack-objects` with `core.bigFileThreshold` streams it. A bundle that carries such a blob
/// gets its pack from git.
pub const BIG_BLOB_BYTES: u64 = 16 * 1024 * 1024;

/// Whether a commit in `sent` adds or changes a blob of more than `limit` bytes (compared with
/// its first parent; only object headers are read, never contents).
fn has_big_blob(repo: &Repository, sent: &HashSet<Oid>, limit: u64) -> bool {
    let Ok(odb) = repo.odb() else { return false };
    sent.iter().any(|oid| {
        let Ok(commit) = repo.find_commit(*oid) else {
            return false;
        };
        let Ok(tree) = commit.tree() else {
            return false;
        };
        let parent = commit.parent(0).ok().and_then(|p| p.tree().ok());
        let Ok(diff) = repo.diff_tree_to_tree(parent.as_ref(), Some(&tree), None) else {
            return false;
        };
        diff.deltas().any(|d| {
            let f = d.new_file();
            f.exists()
                && f.mode() != git2::FileMode::Commit
                && odb
                    .read_header(f.id())
                    .is_ok_and(|(size, _)| size as u64 > limit)
        })
    })
}

/// `git` on PATH, if any.
fn find_git() -> Option<PathBuf> {
    crate::host::find_on_path("git")
}

/// Stream the pack of `refs` minus `hidden` from `git pack-objects`; returns (objects, bytes).
fn pack_with_git(
    git: &Path,
    repo: &Repository,
    refs: &[BundleRef],
    hidden: &[Oid],
    out: &mut dyn Write,
    progress: &dyn SyncProgress,
) -> Result<(u64, u64), SyncError> {
    use std::process::{Command, Stdio};
    let git_dir = repo.path();
    let mut child = Command::new(git)
        .arg("--git-dir")
        .arg(git_dir)
        // Blobs over the threshold are streamed from the object store instead of read whole.
        .arg("-c")
        .arg(format!("core.bigFileThreshold={BIG_BLOB_BYTES}"))
        .args([
            "pack-objects",
            "--stdout",
            "--revs",
            "--delta-base-offset",
            "-q",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(SyncError::io("starting git pack-objects"))?;
    let mut revs = String::new();
    for r in refs {
        revs.push_str(&format!("{}\n", r.oid));
    }
    for h in hidden {
        revs.push_str(&format!("^{h}\n"));
    }
    let mut stdin = child.stdin.take().expect("piped stdin");
    let feeder = std::thread::spawn(move || stdin.write_all(revs.as_bytes()));
    let mut stdout = child.stdout.take().expect("piped stdout");
    let mut stderr = child.stderr.take().expect("piped stderr");
    let errs = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let mut buf = vec![0u8; 256 * 1024];
    let mut total: u64 = 0;
    let mut objects: u64 = 0;
    let mut head = Vec::with_capacity(12);
    loop {
        let n = stdout
            .read(&mut buf)
            .map_err(SyncError::io("reading git pack-objects"))?;
        if n == 0 {
            break;
        }
        if head.len() < 12 {
            let take = (12 - head.len()).min(n);
            head.extend_from_slice(&buf[..take]);
            if head.len() == 12 {
                objects = u64::from(u32::from_be_bytes([head[8], head[9], head[10], head[11]]));
                progress.objects(0, objects);
            }
        }
        out.write_all(&buf[..n])
            .map_err(SyncError::io("writing the bundle's pack"))?;
        total += n as u64;
        progress.bytes(total, None);
    }
    let _ = feeder.join();
    let status = child
        .wait()
        .map_err(SyncError::io("waiting for git pack-objects"))?;
    if !status.success() {
        let msg = errs.join().unwrap_or_default();
        return Err(SyncError::Internal(format!(
            "git pack-objects failed ({status}): {}",
            msg.trim()
        )));
    }
    out.flush().map_err(SyncError::io("writing the bundle"))?;
    Ok((objects, total))
}

pub use rclaude_sandbox_git::native::bundle::Header;
use rclaude_sandbox_git::native::bundle::{self as shared, Read as Progress, ReadError};

/// Read the bundle at `path` into `repo`'s object store: validate the header, check the
/// prerequisites, index and verify the pack, and check that every ref's object arrived.
/// Returns the header; refs are for the caller to update.
pub fn read<'a>(
    repo: &'a Repository,
    path: &Path,
    progress: &'a dyn SyncProgress,
) -> Result<Header, SyncError> {
    let report = |p: Progress| match p {
        Progress::Objects(done, total) => progress.objects(done, total),
        Progress::Bytes(done, total) => progress.bytes(done, total),
    };
    shared::read(repo, path, true, &report).map_err(|e| match e {
        ReadError::Io { context, source } => SyncError::Io { context, source },
        ReadError::Git { context, source } => SyncError::Git { context, source },
        ReadError::Bad(reason) => SyncError::BadBundle {
            path: path.to_path_buf(),
            reason,
        },
        ReadError::MissingPrerequisite(oid) => SyncError::MissingPrerequisite {
            path: path.to_path_buf(),
            oid: oid.to_string(),
        },
    })
}
