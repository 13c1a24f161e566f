//! Turn a batch of changed paths into sandbox operations and carry them out: batched uploads
//! through `/files`, removals through the filesystem RPC, exec bits and symlinks in one shell
//! step. Sandbox edits are never overwritten silently: a remote file changed since rclaude last
//! wrote it is moved aside as a conflict copy first, and a remote file changed since then is not
//! deleted.
//!
//! Length: planning and applying share the conflict rules, so they stay together.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use bytes::Bytes;
use futures::StreamExt;

use super::filter::PathFilter;
use super::local::{LocalState, state_of, walk};
use crate::provider::{Entry, ExecRequest, FileUpload, Sandbox, SandboxError};

/// How many RPCs run at once.
const CONCURRENCY: usize = 32;
/// Upload request limits (one multipart request per chunk).
const CHUNK_BYTES: usize = 8 * 1024 * 1024;
const CHUNK_FILES: usize = 256;
/// Upload requests in flight at once.
const UPLOADS_IN_FLIGHT: usize = 3;
/// Files larger than this are streamed one by one.
const STREAM_ABOVE: u64 = 16 * 1024 * 1024;

/// One thing to do in the sandbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    Write {
        rel: String,
        exec: bool,
    },
    Link {
        rel: String,
        target: String,
    },
    Delete {
        rel: String,
    },
    /// A directory gone here: remove it there if it is empty once the deletions are done.
    PruneDir {
        rel: String,
    },
}

impl Op {
    pub fn rel(&self) -> &str {
        match self {
            Op::Write { rel, .. }
            | Op::Link { rel, .. }
            | Op::Delete { rel }
            | Op::PruneDir { rel } => rel,
        }
    }
}

/// What rclaude last left in the sandbox, per path.
#[derive(Debug, Clone, Default)]
pub struct RemoteState {
    /// Path → the remote mtime (ns) right after rclaude wrote it; `None` = placed by the last
    /// bundle sync, so compare with `epoch`.
    known: BTreeMap<String, Option<i128>>,
    /// Directories that held files rclaude put there.
    dirs: BTreeSet<String>,
    /// Sandbox clock (ns) right after the last bundle sync.
    epoch: i128,
}

impl RemoteState {
    /// After a bundle sync: `paths` are in the sandbox as of `epoch`.
    pub fn new(paths: impl IntoIterator<Item = String>, epoch: i128) -> RemoteState {
        let mut r = RemoteState {
            known: BTreeMap::new(),
            dirs: BTreeSet::new(),
            epoch,
        };
        for p in paths {
            r.add_dirs(&p);
            r.known.insert(p, None);
        }
        r
    }

    fn add_dirs(&mut self, rel: &str) {
        let mut cur = rel;
        while let Some((parent, _)) = cur.rsplit_once('/') {
            if !self.dirs.insert(parent.to_string()) {
                break;
            }
            cur = parent;
        }
    }

    /// Number of files rclaude manages in the sandbox.
    pub fn len(&self) -> usize {
        self.known.len()
    }

    /// True when rclaude manages no file there.
    pub fn is_empty(&self) -> bool {
        self.known.is_empty()
    }

    fn contains(&self, rel: &str) -> bool {
        self.known.contains_key(rel)
    }

    fn known_under<'a>(&'a self, dir: &str) -> impl Iterator<Item = &'a String> + 'a {
        let prefix = format!("{dir}/");
        self.known
            .range(prefix.clone()..)
            .map(|(k, _)| k)
            .take_while(move |k| k.starts_with(&prefix))
    }

    /// True when the remote entry changed after rclaude last wrote (or synced) it.
    fn changed_remotely(&self, rel: &str, remote: &Entry) -> bool {
        let Some(mtime) = remote.modified_time.as_deref().and_then(parse_ns) else {
            return false;
        };
        let baseline = match self.known.get(rel) {
            Some(Some(t)) => *t,
            Some(None) => self.epoch,
            None => return true, // not ours at all: something in the sandbox made it
        };
        mtime > baseline
    }
}

/// What one batch did.
#[derive(Debug, Default)]
pub struct BatchOutcome {
    pub written: usize,
    pub bytes: u64,
    pub deleted: usize,
    pub links: usize,
    /// Sandbox edits moved aside before a local change replaced them (messages).
    pub conflicts: Vec<String>,
    /// Sandbox edits kept although the file was deleted locally (messages).
    pub kept: Vec<String>,
    /// Local stamps of the files uploaded, taken before their bytes were read.
    pub uploaded: Vec<(String, super::local::Stamp)>,
}

/// Plan the operations for a set of changed paths.
pub fn plan(
    root: &Path,
    dirty: &BTreeSet<String>,
    filter: &PathFilter,
    remote: &RemoteState,
) -> Vec<Op> {
    let mut ops: BTreeMap<String, Op> = BTreeMap::new();
    for rel in dirty {
        match state_of(root, rel) {
            LocalState::File { exec } => {
                if filter.is_synced(rel, false) {
                    ops.insert(
                        rel.clone(),
                        Op::Write {
                            rel: rel.clone(),
                            exec,
                        },
                    );
                }
            }
            LocalState::Symlink { target } => {
                if filter.is_synced(rel, false) {
                    ops.insert(
                        rel.clone(),
                        Op::Link {
                            rel: rel.clone(),
                            target,
                        },
                    );
                }
            }
            LocalState::Dir => {
                if filter.is_synced(rel, true) {
                    walk(root, rel, filter, &mut |child, _| {
                        if let Some(op) = op_for(root, child) {
                            ops.insert(child.to_string(), op);
                        }
                    });
                }
            }
            LocalState::Missing => {
                if remote.contains(rel) && filter.is_synced(rel, false) {
                    ops.insert(rel.clone(), Op::Delete { rel: rel.clone() });
                }
                // A directory that went away: everything rclaude put under it, then the directory.
                for child in remote.known_under(rel) {
                    if !root.join(child).exists() && filter.is_synced(child, false) {
                        ops.insert(child.clone(), Op::Delete { rel: child.clone() });
                    }
                }
                if remote.dirs.contains(rel) {
                    ops.entry(rel.clone())
                        .or_insert(Op::PruneDir { rel: rel.clone() });
                }
            }
        }
    }
    ops.into_values().collect()
}

fn op_for(root: &Path, rel: &str) -> Option<Op> {
    match state_of(root, rel) {
        LocalState::File { exec } => Some(Op::Write {
            rel: rel.to_string(),
            exec,
        }),
        LocalState::Symlink { target } => Some(Op::Link {
            rel: rel.to_string(),
            target,
        }),
        _ => None,
    }
}

/// A free name for the conflict copy of `rel`: `<rel>.rclaude-conflict-<stamp>`, with `-2`,
/// `-3`… when a copy of that name exists already (two conflicts within one stamp must not
/// replace each other's copy).
async fn conflict_name(
    sandbox: &dyn Sandbox,
    workdir: &str,
    rel: &str,
    stamp: &str,
) -> Result<String, SandboxError> {
    let base = format!("{rel}.rclaude-conflict-{stamp}");
    let mut name = base.clone();
    for n in 2.. {
        if stat_entry(sandbox, workdir, &name).await?.is_none() {
            break;
        }
        name = format!("{base}-{n}");
    }
    Ok(name)
}

/// Paths rclaude put in the sandbox as a file or symlink that are now directories here (a
/// symlinked directory replaced by a real one): writing beneath them would go through the old
/// link into its target. The sandbox's entry is removed first — or, when it is a file changed
/// there, moved aside as a conflict copy.
async fn replaced_by_dirs(
    sandbox: &dyn Sandbox,
    workdir: &str,
    root: &Path,
    ops: &[Op],
    remote: &mut RemoteState,
    stamp: &str,
    out: &mut BatchOutcome,
) -> Result<(), SandboxError> {
    let mut found: BTreeSet<String> = BTreeSet::new();
    for op in ops {
        let mut cur = op.rel();
        while let Some((parent, _)) = cur.rsplit_once('/') {
            if remote.contains(parent) && matches!(state_of(root, parent), LocalState::Dir) {
                found.insert(parent.to_string());
            }
            cur = parent;
        }
    }
    for rel in found {
        let path = format!("{workdir}/{rel}");
        match stat_entry(sandbox, workdir, &rel).await? {
            None => {}
            Some(e) if !e.is_dir() || e.is_symlink() => {
                let is_link = e.is_symlink();
                if !is_link && remote.changed_remotely(&rel, &e) {
                    let aside = conflict_name(sandbox, workdir, &rel, stamp).await?;
                    sandbox.rename(&path, &format!("{workdir}/{aside}")).await?;
                    out.conflicts.push(format!(
                        "{rel}: the sandbox's version was changed there, and it is a directory \
                         here now; kept as {aside}"
                    ));
                } else {
                    sandbox.remove(&path).await?;
                }
            }
            Some(_) => {}
        }
        remote.known.remove(&rel);
    }
    Ok(())
}

/// Carry out `ops` in the sandbox whose repository is at `workdir`.
pub async fn apply(
    sandbox: &dyn Sandbox,
    workdir: &str,
    root: &Path,
    ops: Vec<Op>,
    remote: &mut RemoteState,
) -> Result<BatchOutcome, SandboxError> {
    let mut out = BatchOutcome::default();
    if ops.is_empty() {
        return Ok(out);
    }
    let abs = |rel: &str| format!("{workdir}/{rel}");
    let t0 = std::time::Instant::now();
    let stamp = crate::time::now_rfc3339().replace([':', '-'], "");
    replaced_by_dirs(sandbox, workdir, root, &ops, remote, &stamp, &mut out).await?;
    let stats = stat_many(
        sandbox,
        workdir,
        ops.iter().map(|o| o.rel().to_string()).collect(),
    )
    .await?;

    let mut writes: Vec<(String, bool, bool)> = Vec::new(); // rel, exec, remote_was_exec
    let mut links: Vec<(String, String)> = Vec::new();
    let mut deletes: Vec<String> = Vec::new();
    let mut moves: Vec<(String, String)> = Vec::new();
    let mut prune: Vec<String> = Vec::new();
    for (op, st) in ops.iter().zip(&stats) {
        let rel = op.rel();
        let remote_dir = st.as_ref().is_some_and(|e| e.is_dir());
        let edited_there = st
            .as_ref()
            .is_some_and(|e| !remote_dir && remote.changed_remotely(rel, e));
        match op {
            Op::Write { .. } | Op::Link { .. } => {
                if edited_there || remote_dir {
                    let aside = conflict_name(sandbox, workdir, rel, &stamp).await?;
                    moves.push((abs(rel), abs(&aside)));
                    out.conflicts.push(if remote_dir {
                        format!(
                            "{rel}: a directory in the sandbox is now a file here; kept as {aside}"
                        )
                    } else {
                        format!(
                            "{rel}: the sandbox's version was changed there too; kept as {aside}"
                        )
                    });
                }
                match op {
                    Op::Write { exec, .. } => {
                        let was_exec = !edited_there
                            && !remote_dir
                            && st.as_ref().is_some_and(|e| e.mode & 0o111 != 0);
                        writes.push((rel.to_string(), *exec, was_exec));
                    }
                    Op::Link { target, .. } => links.push((rel.to_string(), target.clone())),
                    Op::Delete { .. } | Op::PruneDir { .. } => unreachable!("matched above"),
                }
            }
            Op::Delete { .. } => match st {
                None => {
                    remote.known.remove(rel);
                }
                Some(_) if edited_there => {
                    out.kept.push(format!(
                        "{rel}: deleted here but changed in the sandbox; kept there"
                    ));
                    remote.known.remove(rel);
                }
                Some(_) if remote_dir => {}
                Some(_) => deletes.push(rel.to_string()),
            },
            Op::PruneDir { .. } => prune.push(rel.to_string()),
        }
    }

    // Conflict copies first, so the writes below cannot replace sandbox edits.
    for (from, to) in &moves {
        sandbox.rename(from, to).await?;
    }

    let t_stat = t0.elapsed();
    // Uploads: sizes and stamps read in one blocking step, small files sent in multipart
    // chunks (a few in flight, each read when it is sent), very large files streamed.
    let sizes = {
        let paths: Vec<std::path::PathBuf> = writes.iter().map(|w| root.join(&w.0)).collect();
        tokio::task::spawn_blocking(move || {
            paths
                .iter()
                .map(|p| super::local::file_stamp(p))
                .collect::<Vec<_>>()
        })
        .await
        .map_err(|e| SandboxError::Protocol(format!("reading local files: {e}")))?
    };
    let mut chunks: Vec<Vec<usize>> = Vec::new();
    let mut chunk_bytes = 0u64;
    let mut streamed: Vec<usize> = Vec::new();
    for (i, st) in sizes.iter().enumerate() {
        let Some(st) = st else { continue }; // gone (or no longer a file) since planning
        out.uploaded.push((writes[i].0.clone(), *st));
        if st.0 > STREAM_ABOVE {
            streamed.push(i);
            continue;
        }
        let full = chunks
            .last()
            .is_none_or(|c| c.len() >= CHUNK_FILES || chunk_bytes + st.0 > CHUNK_BYTES as u64);
        if full {
            chunks.push(Vec::new());
            chunk_bytes = 0;
        }
        chunks.last_mut().unwrap().push(i);
        chunk_bytes += st.0;
    }
    let sent = futures::stream::iter(chunks.into_iter().map(|idx| {
        let files: Vec<(usize, std::path::PathBuf, String)> = idx
            .iter()
            .map(|&i| (i, root.join(&writes[i].0), abs(&writes[i].0)))
            .collect();
        async move {
            let read = tokio::task::spawn_blocking(move || {
                files
                    .into_iter()
                    .filter_map(|(i, local, remote)| {
                        std::fs::read(&local).ok().map(|data| (i, remote, data))
                    })
                    .collect::<Vec<_>>()
            })
            .await
            .map_err(|e| SandboxError::Protocol(format!("reading local files: {e}")))?;
            let idx: Vec<usize> = read.iter().map(|r| r.0).collect();
            let bytes: u64 = read.iter().map(|r| r.2.len() as u64).sum();
            let uploads = read
                .into_iter()
                .map(|(_, path, data)| FileUpload {
                    path,
                    contents: Bytes::from(data),
                })
                .collect::<Vec<_>>();
            if !uploads.is_empty() {
                sandbox.write_files(uploads).await?;
            }
            Ok::<_, SandboxError>((idx, bytes))
        }
    }))
    .buffer_unordered(UPLOADS_IN_FLIGHT)
    .collect::<Vec<_>>()
    .await;
    let mut done: Vec<usize> = Vec::new();
    for r in sent {
        let (idx, bytes) = r?;
        out.bytes += bytes;
        done.extend(idx);
    }
    for i in streamed {
        out.bytes += sandbox
            .upload(&root.join(&writes[i].0), &abs(&writes[i].0), None)
            .await?;
        done.push(i);
    }
    done.sort_unstable();
    let written: Vec<&(String, bool, bool)> = done.into_iter().map(|i| &writes[i]).collect();
    out.written = written.len();

    // Exec bits, symlinks and emptied directories: one shell step when needed.
    let mut script = String::new();
    let plus: Vec<&str> = written
        .iter()
        .filter(|w| w.1 && !w.2)
        .map(|w| w.0.as_str())
        .collect();
    let minus: Vec<&str> = written
        .iter()
        .filter(|w| !w.1 && w.2)
        .map(|w| w.0.as_str())
        .collect();
    if !plus.is_empty() {
        script.push_str(&format!("chmod +x -- {}\n", quote_all(&plus)));
    }
    if !minus.is_empty() {
        script.push_str(&format!("chmod -x -- {}\n", quote_all(&minus)));
    }
    for (rel, target) in &links {
        if let Some((dir, _)) = rel.rsplit_once('/') {
            script.push_str(&format!("mkdir -p -- {}\n", quote(dir)));
        }
        script.push_str(&format!("ln -sfn -- {} {}\n", quote(target), quote(rel)));
    }
    out.links = links.len();

    // Removals through the filesystem RPC.
    let removed = futures::stream::iter(deletes.iter().map(|rel| {
        let path = abs(rel);
        async move { sandbox.remove(&path).await }
    }))
    .buffer_unordered(CONCURRENCY)
    .collect::<Vec<_>>()
    .await;
    for r in removed {
        r?;
    }
    out.deleted = deletes.len();
    let gone_dirs: BTreeSet<&str> = deletes
        .iter()
        .filter_map(|rel| rel.rsplit_once('/').map(|(d, _)| d))
        .chain(prune.iter().map(String::as_str))
        .filter(|d| !root.join(d).exists())
        .collect();
    for d in &gone_dirs {
        remote.dirs.remove(*d);
    }
    for d in gone_dirs {
        script.push_str(&format!("rmdir -p -- {} 2>/dev/null || true\n", quote(d)));
    }
    if !script.is_empty() {
        let req = ExecRequest::shell(format!("set -e\n{script}")).cwd(workdir.to_string());
        let res = crate::provider::run(sandbox, req).await?;
        if !res.status.success() {
            return Err(SandboxError::Remote {
                code: "live_sync".into(),
                message: format!("setting modes/links failed: {}", res.stderr_str().trim()),
            });
        }
    }

    // New baselines: the sandbox's mtimes right after our writes.
    let touched: Vec<String> = written
        .iter()
        .map(|w| w.0.clone())
        .chain(links.iter().map(|l| l.0.clone()))
        .collect();
    let t_up = t0.elapsed();
    let after = stat_many(sandbox, workdir, touched.clone()).await?;
    tracing::debug!(
        ops = stats.len(),
        stat_ms = t_stat.as_secs_f64() * 1e3,
        upload_ms = (t_up - t_stat).as_secs_f64() * 1e3,
        after_ms = (t0.elapsed() - t_up).as_secs_f64() * 1e3,
        "live-sync batch applied"
    );
    for (rel, st) in touched.into_iter().zip(after) {
        let t = st.and_then(|e| e.modified_time.as_deref().and_then(parse_ns));
        remote.add_dirs(&rel);
        remote.known.insert(rel, Some(t.unwrap_or(i128::MAX)));
    }
    for rel in &deletes {
        remote.known.remove(rel);
    }
    Ok(out)
}

/// Directories with at least this many paths in a batch are read with one ListDir.
const LIST_DIR_FROM: usize = 3;

/// Metadata of many paths (relative to `workdir`), in order: one ListDir per directory that
/// holds several of them, single Stats for the rest.
async fn stat_many(
    sandbox: &dyn Sandbox,
    workdir: &str,
    rels: Vec<String>,
) -> Result<Vec<Option<Entry>>, SandboxError> {
    let mut by_dir: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, rel) in rels.iter().enumerate() {
        let dir = rel.rsplit_once('/').map(|(d, _)| d).unwrap_or("");
        by_dir.entry(dir).or_default().push(i);
    }
    let mut out: Vec<Option<Entry>> = vec![None; rels.len()];
    let mut singles: Vec<usize> = Vec::new();
    let listings = futures::stream::iter(by_dir.into_iter().map(|(dir, idx)| async move {
        if idx.len() < LIST_DIR_FROM {
            return (idx, None);
        }
        let path = if dir.is_empty() {
            workdir.to_string()
        } else {
            format!("{workdir}/{dir}")
        };
        (idx, Some(sandbox.list_dir(&path).await))
    }))
    .buffer_unordered(CONCURRENCY)
    .collect::<Vec<_>>()
    .await;
    for (idx, listing) in listings {
        match listing {
            Some(Ok(entries)) => {
                let by_name: std::collections::HashMap<&str, &Entry> =
                    entries.iter().map(|e| (e.name.as_str(), e)).collect();
                for i in idx {
                    let name = rels[i].rsplit('/').next().unwrap_or(&rels[i]);
                    out[i] = by_name.get(name).map(|e| (*e).clone());
                }
            }
            Some(Err(SandboxError::NotFound(_))) => {} // the directory is not there: none of them is
            Some(Err(SandboxError::Unsupported(_))) | None => singles.extend(idx),
            Some(Err(e)) => return Err(e),
        }
    }
    let stats = futures::stream::iter(
        singles
            .iter()
            .map(|&i| stat_entry(sandbox, workdir, &rels[i])),
    )
    .buffered(CONCURRENCY)
    .collect::<Vec<_>>()
    .await;
    for (i, st) in singles.into_iter().zip(stats) {
        out[i] = st?;
    }
    Ok(out)
}

/// The sandbox's entry at `rel` (not following a final symlink). The agent refuses to stat a
/// symlink whose target lies outside the sandbox (its confinement), yet such a link is synced
/// like any other: its entry comes from a listing of its directory then.
async fn stat_entry(
    sandbox: &dyn Sandbox,
    workdir: &str,
    rel: &str,
) -> Result<Option<Entry>, SandboxError> {
    match sandbox.stat(&format!("{workdir}/{rel}")).await {
        Err(SandboxError::InvalidArgument(why)) => {
            let (dir, name) = rel.rsplit_once('/').unwrap_or(("", rel));
            let path = if dir.is_empty() {
                workdir.to_string()
            } else {
                format!("{workdir}/{dir}")
            };
            match sandbox.list_dir(&path).await {
                Ok(entries) => Ok(entries.into_iter().find(|e| e.name == name)),
                Err(_) => Err(SandboxError::InvalidArgument(why)),
            }
        }
        other => other,
    }
}

/// RFC 3339 → nanoseconds since the epoch.
pub fn parse_ns(s: &str) -> Option<i128> {
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .ok()
        .map(|t| t.unix_timestamp_nanos())
}

use crate::shell::quote;

fn quote_all(v: &[&str]) -> String {
    v.iter().map(|s| quote(s)).collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_changes_are_judged_against_our_last_write_or_the_sync_epoch() {
        let mut r = RemoteState::new(["a".to_string()], 1_000);
        let entry = |t: &str| Entry {
            modified_time: Some(t.to_string()),
            ..Default::default()
        };
        let before = "1970-01-01T00:00:00.000000500Z";
        let after = "1970-01-01T00:00:00.000002000Z";
        assert!(!r.changed_remotely("a", &entry(before)));
        assert!(r.changed_remotely("a", &entry(after)));
        r.known.insert("a".into(), Some(5_000));
        assert!(!r.changed_remotely("a", &entry(after)));
        assert!(
            r.changed_remotely("new", &entry(before)),
            "a file rclaude never wrote is the sandbox's"
        );
    }

    #[test]
    fn known_under_lists_only_that_directory() {
        let r = RemoteState::new(["a/x".into(), "a/y/z".into(), "ab".into(), "b".into()], 0);
        let v: Vec<&String> = r.known_under("a").collect();
        assert_eq!(v, ["a/x", "a/y/z"]);
    }
}
