//! The apply step ([`crate::scripts::APPLY`]) as one process: fetch the laptop's bundle, save
//! sandbox work the laptop lacks, install the laptop's state, writing only the paths that
//! differ. The work tree's tree comes from the persistent index the export keeps
//! ([`super::worktree`]), updated at the paths the agent saw change.
//!
//! Same guarantees as the script, in the same order: nothing is changed before sandbox work is
//! saved under `refs/rclaude/saved/*`, and the `applying` marker is in place while files are
//! written, so an apply killed half-way is recovered by the next (which the script does).
//! Declined, for the script: an interrupted apply to recover, a shallow repository, files in
//! the way of new paths, type changes, submodules, `.gitattributes` changes, checkout filters
//! or line-ending conversion, long histories (a first sync), any error before the marker. A
//! laptop `.gitignore` the work tree does not have yet joins the ignore rules, as the script
//! adds it to its excludes.

use std::ffi::OsStr;
use std::io::Write as _;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use git2::{FileMode, Index, Oid, Repository, Signature, Tree};
use rclaude_sandbox::agent::apply::ApplyJob;

use super::treediff;
use super::worktree::{self, Made};
use super::{Answer, EMPTY_TREE, Lock, bundle, fingerprint, identity, open, peeled};

use super::MAX_NEW_COMMITS;

/// Attributes that change what a checkout writes (besides `eol=crlf`).
const CONVERTING: [&str; 4] = ["filter", "ident", "working-tree-encoding", "crlf"];

/// Do the apply of `job`: the answer lines and how the work tree's tree was made. `Err`: left
/// to the script (which also recovers when the error came after the marker).
pub(super) fn apply(job: &ApplyJob) -> Result<(String, Made), String> {
    let req = &job.request;
    let git_dir = job.work.join(".git");
    let r = git_dir.join("rclaude");
    if !git_dir.is_dir() || identity(&r) != req.identity {
        return Err("the repository is not initialised or its identity changed".into());
    }
    let tmp = r.join("tmp");
    std::fs::create_dir_all(&tmp).map_err(|e| format!("creating {}: {e}", tmp.display()))?;
    let _lock = Lock::try_take(&r.join("lock"))?;
    if r.join("applying").exists() {
        return Err("an interrupted apply is to be recovered".into());
    }
    if git_dir.join("shallow").exists() {
        return Err("the repository is shallow".into());
    }
    let (repo, config) = open(&job.work, &git_dir)?;
    checkout_config(&config)?;
    let git = |e: git2::Error| e.message().to_string();

    // 1. The same extra ignore patterns as on the laptop.
    let exclude = git_dir.join("info").join("exclude");
    let excludes_changed = std::fs::read(&exclude).ok().as_deref() != Some(req.excludes.as_bytes());
    if excludes_changed {
        write_file(&exclude, req.excludes.as_bytes(), &tmp)?;
    }

    // 2. Objects.
    if let Some(b) = &job.bundle {
        // Connectivity: what the new commits bring is checked below (`check_new`), as git's
        // fetch does, not every object of the pack by the indexer (twice as long).
        let header =
            bundle::read(&repo, b, false, &|_| {}).map_err(|e| format!("the bundle: {e}"))?;
        check_new(&repo, &header)?;
    }
    let commit = |hex: &str| -> Result<git2::Commit<'_>, String> {
        Oid::from_str(hex)
            .ok()
            .filter(|_| hex.len() == 40)
            .and_then(|o| repo.find_commit(o).ok())
            .ok_or_else(|| format!("the sandbox lacks commit {hex}"))
    };
    let s = commit(&req.snapshot)?;
    let i = commit(&req.index)?;
    let h = req.head.as_deref().map(commit).transpose()?.map(|c| c.id());
    let branch = req.branch.as_deref().filter(|b| !b.is_empty());
    match branch {
        Some(b) if !git2::Reference::is_valid_name(&format!("refs/heads/{b}")) => {
            return Err(format!("{b:?} is not a branch name"));
        }
        None if h.is_none() => return Err("neither a HEAD nor a branch".into()),
        _ => {}
    }
    let known: Vec<Oid> = req
        .known
        .iter()
        .map(|k| Oid::from_str(k).map_err(git))
        .collect::<Result<_, _>>()?;
    let (st, it) = (s.tree_id(), i.tree_id());
    let empty = Oid::from_str(EMPTY_TREE).map_err(git)?;
    let tree_of = |spec: &str| {
        repo.revparse_single(spec)
            .ok()
            .and_then(|o| o.peel_to_tree().ok())
            .map(|t| t.id())
    };
    let ts = tree_of("refs/rclaude/snapshot").unwrap_or(empty);
    let xs = tree_of("refs/rclaude/index");
    let hs = peeled(&repo, "refs/rclaude/head");
    let c = peeled(&repo, "HEAD");
    let ct = c.and_then(|_| tree_of("HEAD")).unwrap_or(empty);
    let o = branch.and_then(|b| peeled(&repo, &format!("refs/heads/{b}")));

    // 4. The sandbox as it is now: its index's tree and its work tree's.
    let index_file = git_dir.join("index");
    // Read once, for its tree and for the work tree's (none: the empty tree).
    let mut real = worktree::real_index(&repo)?;
    let x = real.write_tree_to(&repo).map_err(git)?;
    // The work tree is read with the incoming root .gitignore added to the ignore rules (so
    // patterns the laptop just added leave matching sandbox files alone): nothing to add when
    // the work tree has that .gitignore already; otherwise the index is rebuilt with them.
    let st_tree = repo.find_tree(st).map_err(git)?;
    let incoming = st_tree.get_name(".gitignore").map(|e| e.id());
    let present = std::fs::read(job.work.join(".gitignore"))
        .ok()
        .and_then(|b| Oid::hash_object(git2::ObjectType::Blob, &b).ok());
    let extra = match incoming {
        Some(g) if present != Some(g) => {
            let blob = repo.find_blob(g).map_err(git)?;
            let rules = std::str::from_utf8(blob.content())
                .map_err(|_| "the laptop's .gitignore is not UTF-8")?;
            repo.add_ignore_rule(rules).map_err(git)?;
            true
        }
        _ => false,
    };
    let fp = fingerprint(&job.home, &config);
    let changed = job.changed.as_ref().filter(|_| !excludes_changed && !extra);
    let (wt, made, read) = worktree::tree(&repo, &real, &job.work, changed, &fp)?;
    let wt_tree = repo.find_tree(wt).map_err(git)?;
    let changes = plan(&repo, &job.work, &wt_tree, &st_tree)?;

    // 5. Anything the laptop does not have is committed to refs/rclaude/saved/<stamp> first.
    let known_tree = |t: Oid| {
        known
            .iter()
            .any(|k| repo.find_commit(*k).is_ok_and(|c| c.tree_id() == t))
    };
    let is_known = |c: Oid| {
        known.contains(&c)
            || known
                .iter()
                .any(|k| repo.graph_descendant_of(*k, c).unwrap_or(false))
    };
    let mut why = Vec::new();
    if wt != ts && wt != ct && !known_tree(wt) {
        why.push("worktree");
    }
    if let Some(c) = c
        && Some(c) != hs
        && !is_known(c)
    {
        why.push("commits");
    }
    let idx_save = x != wt && x != ct && Some(x) != xs && x != it && !known_tree(x);
    if idx_save {
        why.push("index");
    }
    let mut out = Answer::default();
    let stamp = std::cell::OnceCell::new();
    let stamp = || stamp.get_or_init(now_stamp).clone();
    let sig = Signature::now("rclaude (sandbox)", "rclaude@sandbox").map_err(git)?;
    let commit_tree = |tree: Oid, parent: Option<Oid>, msg: &str| -> Result<Oid, git2::Error> {
        let tree = repo.find_tree(tree)?;
        let parent = parent.map(|p| repo.find_commit(p)).transpose()?;
        let parents: Vec<&git2::Commit> = parent.iter().collect();
        repo.commit(None, &sig, &sig, &format!("{msg}\n"), &tree, &parents)
    };
    if !why.is_empty() {
        let stamp = stamp();
        let mut tip = c;
        if idx_save {
            let msg =
                format!("rclaude: changes staged in the sandbox, saved before a sync ({stamp})");
            tip = Some(commit_tree(x, tip, &msg).map_err(git)?);
        }
        let tipt = tip
            .map(|t| repo.find_commit(t).map(|c| c.tree_id()))
            .transpose()
            .map_err(git)?
            .unwrap_or(empty);
        if tip.is_none() || wt != tipt {
            let msg = format!(
                "rclaude: sandbox work saved before a sync ({stamp})\n\n\
                 The sandbox work tree had edits the laptop did not have (changed, new or\n\
                 deleted files). rclaude committed them here before making the sandbox\n\
                 match the laptop. Parent: the sandbox HEAD at that time."
            );
            tip = Some(commit_tree(wt, tip, &msg).map_err(git)?);
        }
        let tip = tip.ok_or("nothing to save")?;
        let name = save(&repo, &stamp, tip)?;
        out.say("saved", &format!("{name} {tip} {}", why.join(",")));
    }
    if let (Some(b), Some(o)) = (branch, o)
        && Some(o) != c
        && Some(o) != hs
        && !is_known(o)
    {
        let name = save(
            &repo,
            &format!("{}-branch-{}", stamp(), b.replace('/', "-")),
            o,
        )?;
        out.say("saved", &format!("{name} {o} branch"));
    }

    // 6. Install the laptop's state; the marker says an apply is under way.
    let hex = |o: Option<Oid>| o.map(|o| o.to_string()).unwrap_or_default();
    let marker = format!(
        "from_tree={wt}\nfrom_head={}\nfrom_index={x}\nsnapshot={}\nhead={}\nbranch={}\n",
        hex(c),
        s.id(),
        hex(h),
        branch.unwrap_or("")
    );
    write_file(&r.join("applying"), marker.as_bytes(), &tmp)?;
    checkout(&repo, &job.work, &tmp, &changes, &read)?;
    // Read again: the sandbox's own git may have changed it since (the lock is rclaude's).
    let mut real = Index::open(&index_file).map_err(git)?;
    // Entries that stay as they were keep their stat data (git's `read-tree --reset` does the
    // same); the others are hashed again by the next `git status`.
    real.read_tree(&i.tree().map_err(git)?).map_err(git)?;
    real.write().map_err(git)?;
    install_refs(&repo, s.id(), i.id(), h, branch).map_err(git)?;
    let synced = format!(
        "snapshot={}\nindex={}\nhead={}\nbranch={}\nexcludes={}\n",
        s.id(),
        i.id(),
        hex(h),
        branch.unwrap_or(""),
        req.excludes_id
    );
    write_file(&r.join("synced"), synced.as_bytes(), &tmp)?;
    std::fs::remove_file(r.join("applying")).map_err(|e| format!("removing the marker: {e}"))?;
    if let Some(b) = &job.bundle {
        let _ = std::fs::remove_file(b);
    }
    out.say("done", "1");
    Ok((out.0, made))
}

/// Checkout settings this apply does not reproduce: no symlinks, line-ending conversion,
/// smudge filters.
fn checkout_config(config: &git2::Config) -> Result<(), String> {
    let is = |key: &str, value: &str| {
        config
            .get_string(key)
            .is_ok_and(|v| v.eq_ignore_ascii_case(value))
    };
    if config.get_bool("core.symlinks").is_ok_and(|b| !b)
        || config.get_bool("core.autocrlf").unwrap_or(false)
        || is("core.eol", "crlf")
    {
        return Err("the checkout settings convert files".into());
    }
    let smudge = config
        .entries(Some("filter\\..*\\.(smudge|process)"))
        .map_err(|e| e.message().to_string())?
        .next()
        .is_some();
    if smudge {
        return Err("a smudge filter is configured".into());
    }
    Ok(())
}

/// One change to the work tree.
pub(super) enum Change {
    Remove(PathBuf),
    Write(PathBuf, Oid, FileMode),
}

/// The changes that make the work tree (tree `wt`) the laptop's (`st`), checked: nothing is in
/// the way of a new path, nothing converts on checkout.
fn plan(
    repo: &Repository,
    work: &Path,
    wt: &Tree<'_>,
    st: &Tree<'_>,
) -> Result<Vec<Change>, String> {
    let git = |e: git2::Error| e.message().to_string();
    let mut changes = Vec::new();
    for d in treediff::changes(repo, Some(wt), st).map_err(git)? {
        let path = path_of(&d.path);
        let gitlink = |s: Option<treediff::Side>| s.is_some_and(|s| s.mode == GITLINK);
        if gitlink(d.old) || gitlink(d.new) {
            return Err("a submodule changes".into());
        }
        if path.file_name() == Some(OsStr::new(".gitattributes")) {
            return Err("attributes change".into());
        }
        match (d.old, d.new) {
            (Some(_), None) => changes.push(Change::Remove(path)),
            (old, Some(new)) => {
                if old.is_none() {
                    in_the_way(work, &path)?;
                }
                converts(repo, &path)?;
                changes.push(Change::Write(path, new.id, file_mode(new.mode)?));
            }
            (None, None) => return Err("a change without a side".into()),
        }
    }
    Ok(changes)
}

/// `git2`'s name for a tree entry's mode.
fn file_mode(mode: i32) -> Result<FileMode, String> {
    match mode {
        0o100644 => Ok(FileMode::Blob),
        0o100755 => Ok(FileMode::BlobExecutable),
        0o120000 => Ok(FileMode::Link),
        other => Err(format!("a file of mode {other:o}")),
    }
}

/// A tree path as a file-system path.
fn path_of(bytes: &[u8]) -> PathBuf {
    PathBuf::from(OsStr::from_bytes(bytes))
}

/// A submodule's mode.
const GITLINK: i32 = 0o160000;

/// Whether anything (a file, even an ignored one, or a directory) is at new path `p`, or a
/// file or symlink where one of its directories goes: the script saves or refuses those.
fn in_the_way(work: &Path, p: &Path) -> Result<(), String> {
    if std::fs::symlink_metadata(work.join(p)).is_ok() {
        return Err(format!("something is in the way of {}", p.display()));
    }
    for dir in p.ancestors().skip(1).filter(|d| !d.as_os_str().is_empty()) {
        match std::fs::symlink_metadata(work.join(dir)) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => return Err(format!("a file is in the way of {}", dir.display())),
            Err(_) => {}
        }
    }
    Ok(())
}

/// Whether checking out `p` would convert its content (attributes).
fn converts(repo: &Repository, p: &Path) -> Result<(), String> {
    let flags = git2::AttrCheckFlags::INDEX_THEN_FILE;
    let set = |name: &str| {
        repo.get_attr(p, name, flags)
            .map(|v| v.is_some_and(|v| v != "unspecified"))
    };
    for name in CONVERTING {
        if set(name).map_err(|e| e.message().to_string())? {
            return Err(format!("attribute {name} is set on {}", p.display()));
        }
    }
    let eol = repo
        .get_attr(p, "eol", flags)
        .map_err(|e| e.message().to_string())?;
    if eol == Some("crlf") {
        return Err(format!("{} is checked out with CRLF", p.display()));
    }
    Ok(())
}

/// Bring the work tree to the laptop's state: removals first (and the directories they leave
/// empty), then each new or changed file written beside and renamed into place. Each file is
/// replaced only while it is still what `read` (the index the work tree's tree was made from)
/// says, and a new path only while nothing is there: a file changed in the sandbox since
/// stops the apply (as `git read-tree -u` stops on a file that is not up to date), and the
/// script's recovery saves it.
pub(super) fn checkout(
    repo: &Repository,
    work: &Path,
    tmp: &Path,
    changes: &[Change],
    read: &Index,
) -> Result<(), String> {
    let unchanged = |p: &Path| -> Result<(), String> {
        let meta = std::fs::symlink_metadata(work.join(p)).ok();
        let entry = read.get_path(p, 0);
        let same = match (&meta, &entry) {
            (None, None) => true,
            (Some(m), Some(e)) => {
                use std::os::unix::fs::MetadataExt;
                e.mtime.seconds() as i64 == m.mtime()
                    && e.mtime.nanoseconds() as i64 == m.mtime_nsec()
                    && u64::from(e.file_size) == m.size() & 0xffff_ffff
                    && u64::from(e.ino) == m.ino() & 0xffff_ffff
            }
            _ => false,
        };
        // A stat that differs (a file touched, or an entry with no stat data yet): what it
        // holds decides, as in git.
        let same = same
            || match (&meta, &entry) {
                (Some(m), Some(e)) => content_id(&work.join(p), m) == Some(e.id),
                _ => false,
            };
        if same {
            Ok(())
        } else {
            Err(format!(
                "{} changed in the sandbox during the sync",
                p.display()
            ))
        }
    };
    for c in changes {
        if let Change::Remove(p) = c {
            unchanged(p)?;
            match std::fs::remove_file(work.join(p)) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(format!("removing {}: {e}", p.display())),
            }
            for dir in p.ancestors().skip(1).filter(|d| !d.as_os_str().is_empty()) {
                if std::fs::remove_dir(work.join(dir)).is_err() {
                    break;
                }
            }
        }
    }
    let scratch = tmp.join(format!("apply.{}", std::process::id()));
    for c in changes {
        let Change::Write(p, oid, mode) = c else {
            continue;
        };
        unchanged(p)?;
        let dest = work.join(p);
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| format!("creating {}: {e}", parent.display()))?;
        }
        let blob = repo.find_blob(*oid).map_err(|e| e.message().to_string())?;
        let _ = std::fs::remove_file(&scratch);
        let made = match mode {
            FileMode::Link => {
                std::os::unix::fs::symlink(OsStr::from_bytes(blob.content()), &scratch)
            }
            _ => std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(if *mode == FileMode::BlobExecutable {
                    0o777
                } else {
                    0o666
                })
                .open(&scratch)
                .and_then(|mut f| f.write_all(blob.content())),
        };
        made.map_err(|e| format!("writing {}: {e}", p.display()))?;
        std::fs::rename(&scratch, &dest).map_err(|e| format!("writing {}: {e}", p.display()))?;
    }
    Ok(())
}

/// The blob id of what the file (or symlink) at `path` holds, unfiltered.
fn content_id(path: &Path, meta: &std::fs::Metadata) -> Option<Oid> {
    if meta.is_symlink() {
        let target = std::fs::read_link(path).ok()?;
        Oid::hash_object(git2::ObjectType::Blob, target.as_os_str().as_bytes()).ok()
    } else if meta.is_file() {
        Oid::hash_file(git2::ObjectType::Blob, path).ok()
    } else {
        None
    }
}

/// HEAD, the branch and the sync's own refs as the laptop's state says.
fn install_refs(
    repo: &Repository,
    s: Oid,
    i: Oid,
    h: Option<Oid>,
    branch: Option<&str>,
) -> Result<(), git2::Error> {
    const MSG: &str = "rclaude: sync from the laptop";
    match (h, branch) {
        (Some(h), Some(b)) => {
            repo.reference(&format!("refs/heads/{b}"), h, true, MSG)?;
            repo.reference_symbolic("HEAD", &format!("refs/heads/{b}"), true, MSG)?;
        }
        (Some(h), None) => {
            repo.reference("HEAD", h, true, MSG)?;
        }
        (None, b) => {
            let b = format!("refs/heads/{}", b.unwrap_or_default());
            if let Ok(mut r) = repo.find_reference(&b) {
                r.delete()?;
            }
            repo.reference_symbolic("HEAD", &b, true, MSG)?;
        }
    }
    repo.reference("refs/rclaude/snapshot", s, true, "")?;
    repo.reference("refs/rclaude/index", i, true, "")?;
    match h {
        Some(h) => {
            repo.reference("refs/rclaude/head", h, true, "")?;
        }
        None => {
            if let Ok(mut r) = repo.find_reference("refs/rclaude/head") {
                r.delete()?;
            }
        }
    }
    let pushed: Vec<String> = repo
        .references_glob("refs/rclaude/push/*")?
        .flatten()
        .filter_map(|r| r.name().ok().map(str::to_string))
        .collect();
    for name in pushed {
        repo.find_reference(&name)?.delete()?;
    }
    Ok(())
}

/// Create `refs/rclaude/saved/<name>` (or `<name>-2`, ...) at `oid`; its full name.
fn save(repo: &Repository, name: &str, oid: Oid) -> Result<String, String> {
    let mut full = format!("refs/rclaude/saved/{name}");
    let mut n = 2;
    while repo.find_reference(&full).is_ok() {
        full = format!("refs/rclaude/saved/{name}-{n}");
        n += 1;
    }
    repo.reference(&full, oid, false, "rclaude: saved before sync")
        .map_err(|e| format!("cannot create {full} in the sandbox: {}", e.message()))?;
    Ok(full)
}

/// Every object the bundle's new commits bring is there: the commits (a walk from its refs to
/// its prerequisites) and, per commit, the trees and blobs that differ from its first parent
/// (`git fetch`'s connectivity check does as much). Long histories are left to git.
fn check_new(repo: &Repository, header: &bundle::Header) -> Result<(), String> {
    let git = |e: git2::Error| e.message().to_string();
    let mut walk = repo.revwalk().map_err(git)?;
    for (_, oid) in &header.refs {
        walk.push(*oid).map_err(git)?;
    }
    for p in &header.prerequisites {
        walk.hide(*p).map_err(git)?;
    }
    let new: Vec<Oid> = walk
        .take(MAX_NEW_COMMITS + 1)
        .collect::<Result<_, _>>()
        .map_err(git)?;
    if new.len() > MAX_NEW_COMMITS {
        return Err("a long history: git fetches it".into());
    }
    let odb = repo.odb().map_err(git)?;
    for oid in new {
        let c = repo.find_commit(oid).map_err(git)?;
        let old = c
            .parents()
            .next()
            .map(|p| p.tree())
            .transpose()
            .map_err(git)?;
        let tree = c.tree().map_err(git)?;
        // Subtrees the parent has are skipped: what the parent reaches is in the repository.
        for d in treediff::changes(repo, old.as_ref(), &tree).map_err(git)? {
            match d.new {
                Some(n) if n.mode != GITLINK && !odb.exists(n.id) => {
                    return Err(format!("the bundle lacks object {}", n.id));
                }
                _ => {}
            }
        }
    }
    Ok(())
}

/// `path` holds `data`, written beside and renamed into place.
fn write_file(path: &Path, data: &[u8], tmp: &Path) -> Result<(), String> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    }
    let scratch = tmp.join(format!("write.{}", std::process::id()));
    std::fs::write(&scratch, data)
        .and_then(|()| std::fs::rename(&scratch, path))
        .map_err(|e| format!("writing {}: {e}", path.display()))
}

/// The time that names saved refs (`date -u +%Y%m%dT%H%M%SZ`).
fn now_stamp() -> String {
    let f = time::macros::format_description!("[year][month][day]T[hour][minute][second]Z");
    time::OffsetDateTime::now_utc()
        .format(&f)
        .unwrap_or_else(|_| "0".into())
}
