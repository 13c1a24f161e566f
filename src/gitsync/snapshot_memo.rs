//! A memo of the last work-tree snapshot: the tree it gave and the stat data of every file and
//! directory it was read from, so that the next snapshot of an unchanged work tree costs one
//! `lstat` per path (spread over threads) instead of libgit2's walk, diff and tree write.
//!
//! The memo is used only while everything its tree came from is unchanged: every file and
//! directory the walk saw (modification and change times, inode, size, type), the index's
//! tracked set (a hash of its paths, modes and flags), the ignore, attribute and config files
//! (stat data, or their absence), the `[sync] ignore` patterns and the environment that locates
//! git's global files. A file whose times are within two seconds of the walk ("racy", as git
//! calls it: an edit in the same clock tick leaves the same stat data) is checked by content; a
//! racy directory, or racy content that attributes could rewrite, makes the memo unusable. Any
//! doubt gives a full snapshot, never a stale one; the memo is a cache (`<gitdir>/rclaude/
//! snapshot-memo`, written by rename, never fsynced) and losing it costs one walk.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::ffi::OsStr;
use std::fs::Metadata;
use std::hash::{Hash, Hasher};
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use git2::{Index, ObjectType, Oid, Repository};

const MAGIC: &[u8; 8] = b"RCMEMO1\n";
const END: &[u8; 4] = b"END1";
/// Entries whose times are this close to the walk (or after it) are racy.
const RACY_NS: i128 = 2_000_000_000;
/// `GIT_INDEX_ENTRY_SKIP_WORKTREE` and `GIT_INDEX_ENTRY_INTENT_TO_ADD`, in the extended flags.
const SPARSE_OR_INTENT: u16 = (1 << 14) | (1 << 13);

/// The memo file of `repo`.
fn memo_path(repo: &Repository) -> PathBuf {
    repo.path().join("rclaude").join("snapshot-memo")
}

/// Nanoseconds since the epoch.
pub(super) fn now_ns() -> i128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i128)
        .unwrap_or(0)
}

/// The stat data compared for one path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stamp {
    mtime_s: i64,
    mtime_ns: u32,
    ctime_s: i64,
    ctime_ns: u32,
    ino: u64,
    size: u64,
}

impl Stamp {
    /// Full stat data (directories and side files).
    fn full(m: &Metadata) -> Stamp {
        Stamp {
            mtime_s: m.mtime(),
            mtime_ns: m.mtime_nsec() as u32,
            ctime_s: m.ctime(),
            ctime_ns: m.ctime_nsec() as u32,
            ino: m.ino(),
            size: m.size(),
        }
    }

    /// Stat data cut to the index's 32-bit fields (files, recorded from index entries).
    fn indexed(m: &Metadata) -> Stamp {
        Stamp {
            mtime_s: m.mtime() as i32 as i64,
            mtime_ns: m.mtime_nsec() as u32,
            ctime_s: m.ctime() as i32 as i64,
            ctime_ns: m.ctime_nsec() as u32,
            ino: m.ino() as u32 as u64,
            size: m.size() as u32 as u64,
        }
    }

    fn of_entry(e: &git2::IndexEntry) -> Stamp {
        Stamp {
            mtime_s: e.mtime.seconds() as i64,
            mtime_ns: e.mtime.nanoseconds(),
            ctime_s: e.ctime.seconds() as i64,
            ctime_ns: e.ctime.nanoseconds(),
            ino: e.ino as u64,
            size: e.file_size as u64,
        }
    }

    /// Changed (or changeable without a visible stat change) at or after `since - RACY_NS`.
    fn racy(&self, since: i128) -> bool {
        let t = |s: i64, ns: u32| s as i128 * 1_000_000_000 + ns as i128;
        t(self.mtime_s, self.mtime_ns).max(t(self.ctime_s, self.ctime_ns)) >= since - RACY_NS
    }
}

/// What identifies the index file's content without reading it: stat data and its trailing
/// checksum.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct IndexId {
    stamp: Stamp,
    trailer: [u8; 32],
}

impl IndexId {
    /// `None` without an index file, or when its checksum is not written (`index.skipHash`).
    pub(super) fn of(repo: &Repository) -> Option<IndexId> {
        let path = repo.path().join("index");
        let mut f = std::fs::File::open(&path).ok()?;
        let m = f.metadata().ok()?;
        if m.size() < 64 {
            return None;
        }
        let mut trailer = [0u8; 32];
        f.seek(SeekFrom::End(-32)).ok()?;
        f.read_exact(&mut trailer).ok()?;
        if trailer[12..].iter().all(|b| *b == 0) {
            return None;
        }
        Some(IndexId {
            stamp: Stamp::full(&m),
            trailer,
        })
    }
}

/// The index's tracked set: paths, modes, stages and flags (not object ids: the memo's tree
/// comes from the files' content).
pub(super) fn tracked_hash(index: &Index) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for e in index.iter() {
        e.path.hash(&mut h);
        e.mode.hash(&mut h);
        e.flags.hash(&mut h);
        e.flags_extended.hash(&mut h);
    }
    index.len().hash(&mut h);
    h.finish()
}

/// The `[sync] ignore` patterns and the environment that decides which global files git reads.
fn setting_hash(ignores: &[String]) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    ignores.hash(&mut h);
    for var in [
        "HOME",
        "XDG_CONFIG_HOME",
        "GIT_CONFIG_GLOBAL",
        "GIT_CONFIG_SYSTEM",
    ] {
        std::env::var_os(var).hash(&mut h);
    }
    // GIT_CONFIG_GLOBAL, GIT_CONFIG_SYSTEM, GIT_CONFIG_NOSYSTEM, GIT_CONFIG_COUNT...
    for (k, v) in std::env::vars_os() {
        if k.as_bytes().starts_with(b"GIT_CONFIG") {
            (k, v).hash(&mut h);
        }
    }
    h.finish()
}

/// A file of the snapshot.
struct FileRec {
    path: Vec<u8>,
    link: bool,
    stamp: Stamp,
    oid: Oid,
}

/// A memo read back.
pub(super) struct Memo {
    walk_ns: i128,
    index_id: Option<IndexId>,
    tracked: u64,
    pub(super) tree: Oid,
    pub(super) index_tree: Oid,
    plain: bool,
    pub(super) nested: Vec<String>,
    sides: Vec<(PathBuf, Option<Stamp>)>,
    dirs: Vec<(Vec<u8>, Stamp)>,
    files: Vec<FileRec>,
}

/// Files outside the work tree whose content decides ignores, attributes or config.
fn side_files(repo: &Repository) -> Vec<PathBuf> {
    let git = repo.path();
    let common = repo.commondir();
    let mut out = vec![
        git.join("config"),
        git.join("info").join("exclude"),
        git.join("info").join("attributes"),
        common.join("config"),
        common.join("info").join("exclude"),
        common.join("info").join("attributes"),
        PathBuf::from("/etc/gitconfig"),
    ];
    let home = std::env::var_os("HOME").map(PathBuf::from);
    let xdg = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| home.as_ref().map(|h| h.join(".config")));
    if let Some(h) = &home {
        out.push(h.join(".gitconfig"));
    }
    if let Some(x) = &xdg {
        for f in ["config", "ignore", "attributes"] {
            out.push(x.join("git").join(f));
        }
    }
    if let Ok(cfg) = repo.config() {
        for key in ["core.excludesFile", "core.attributesFile"] {
            if let Ok(p) = cfg.get_path(key) {
                out.push(p);
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

fn stamp_of(path: &Path) -> Option<Stamp> {
    std::fs::symlink_metadata(path)
        .ok()
        .map(|m| Stamp::full(&m))
}

/// Content changes cannot be rewritten by attributes or line-ending settings.
fn plain_config(repo: &Repository) -> bool {
    let Ok(cfg) = repo.config() else {
        return false;
    };
    let autocrlf = cfg.get_string("core.autocrlf").ok();
    autocrlf.is_none_or(|v| v.eq_ignore_ascii_case("false"))
        && cfg.get_string("core.eol").is_err()
        && cfg.get_path("core.attributesFile").is_err()
}

/// Read the memo and check what does not need the work tree: its format, the `[sync] ignore`
/// patterns, and the side files. `None` when there is none or it cannot be used.
pub(super) fn load(repo: &Repository, ignores: &[String]) -> Option<Memo> {
    let bytes = std::fs::read(memo_path(repo)).ok()?;
    let (memo, setting) = decode(&bytes)?;
    if setting != setting_hash(ignores) {
        return None;
    }
    if memo.sides.iter().any(|(p, s)| {
        let now = stamp_of(p);
        now != *s || now.is_some_and(|n| n.racy(memo.walk_ns))
    }) {
        return None;
    }
    Some(memo)
}

impl Memo {
    /// The index file is the one the memo was taken with (its tree is the memo's).
    pub(super) fn same_index(&self, now: Option<&IndexId>) -> bool {
        matches!((&self.index_id, now), (Some(a), Some(b)) if a == b)
    }

    /// The index tracks the same paths, with the same modes and flags.
    pub(super) fn same_tracked(&self, hash: u64) -> bool {
        self.tracked == hash
    }

    /// Remember that the index is now `index_id`, whose tree is `index_tree` (the tracked set
    /// and the work tree being as the memo has them).
    pub(super) fn renew_index(
        &mut self,
        repo: &Repository,
        ignores: &[String],
        index_id: Option<IndexId>,
        index_tree: Oid,
    ) {
        self.index_id = index_id;
        self.index_tree = index_tree;
        write(repo, &encode(self, setting_hash(ignores)));
    }

    /// Every directory and file the memo's tree was read from is as it was.
    pub(super) fn work_tree_unchanged(&self, workdir: &Path) -> bool {
        let dirs_ok = parallel_all(&self.dirs, |(path, stamp)| {
            let Ok(m) = std::fs::symlink_metadata(join(workdir, path)) else {
                return false;
            };
            m.is_dir() && Stamp::full(&m) == *stamp && !stamp.racy(self.walk_ns)
        });
        dirs_ok
            && parallel_all(&self.files, |f| {
                let full = join(workdir, &f.path);
                let Ok(m) = std::fs::symlink_metadata(&full) else {
                    return false;
                };
                let kind_ok = if f.link {
                    m.file_type().is_symlink()
                } else {
                    m.file_type().is_file()
                };
                if !kind_ok || Stamp::indexed(&m) != f.stamp {
                    return false;
                }
                !f.stamp.racy(self.walk_ns) || (self.plain && same_content(&full, f))
            })
    }
}

fn join(workdir: &Path, rel: &[u8]) -> PathBuf {
    if rel.is_empty() {
        workdir.to_path_buf()
    } else {
        workdir.join(OsStr::from_bytes(rel))
    }
}

/// A racy file still holds the blob recorded for it.
fn same_content(full: &Path, f: &FileRec) -> bool {
    let oid = if f.link {
        std::fs::read_link(full)
            .ok()
            .and_then(|t| Oid::hash_object(ObjectType::Blob, t.as_os_str().as_bytes()).ok())
    } else {
        Oid::hash_file(ObjectType::Blob, full).ok()
    };
    oid == Some(f.oid)
}

/// `check` holds for every item; large lists are split over a few threads.
fn parallel_all<T: Sync>(items: &[T], check: impl Fn(&T) -> bool + Sync) -> bool {
    let threads = std::thread::available_parallelism()
        .map(|n| n.get().min(4))
        .unwrap_or(1);
    if threads < 2 || items.len() < 2048 {
        return items.iter().all(&check);
    }
    let chunk = items.len().div_ceil(threads);
    let failed = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        for part in items.chunks(chunk) {
            let (check, failed) = (&check, &failed);
            s.spawn(move || {
                for (i, item) in part.iter().enumerate() {
                    if i % 256 == 0 && failed.load(std::sync::atomic::Ordering::Relaxed) {
                        return;
                    }
                    if !check(item) {
                        failed.store(true, std::sync::atomic::Ordering::Relaxed);
                        return;
                    }
                }
            });
        }
    });
    !failed.into_inner()
}

/// What a full snapshot computed, to remember.
pub(super) struct Taken<'a> {
    /// When its walk started ([`now_ns`]).
    pub walk_ns: i128,
    pub index_id: Option<IndexId>,
    /// [`tracked_hash`] of the index before the work tree went in.
    pub tracked: u64,
    pub ignores: &'a [String],
    pub tree: Oid,
    pub index_tree: Oid,
    pub nested: &'a [String],
    /// The temporary index after the work tree went in (its entries are the tree's files).
    pub index: &'a Index,
    /// The repository handle carrying the `[sync] ignore` rules.
    pub handle: &'a Repository,
}

/// Remember a full snapshot, or forget the last one when this one cannot be remembered safely
/// (submodules, sparse or intent-to-add entries, racy directories...). Errors only cost speed.
pub(super) fn record(repo: &Repository, workdir: &Path, taken: Taken<'_>) {
    match build(repo, workdir, &taken) {
        Some(bytes) => write(repo, &bytes),
        None => forget(repo),
    }
}

/// Drop the memo (the next snapshot walks the work tree).
pub(super) fn forget(repo: &Repository) {
    let _ = std::fs::remove_file(memo_path(repo));
}

/// Replace the memo file by rename; on failure there is none.
fn write(repo: &Repository, bytes: &[u8]) {
    let path = memo_path(repo);
    let written = super::local_tmp_dir(repo).ok().and_then(|tmp| {
        let mut f = tempfile::Builder::new()
            .prefix("memo-")
            .tempfile_in(tmp)
            .ok()?;
        std::io::Write::write_all(&mut f, bytes).ok()?;
        f.persist(&path).ok()
    });
    if written.is_none() {
        let _ = std::fs::remove_file(&path);
    }
}

fn build(repo: &Repository, workdir: &Path, t: &Taken<'_>) -> Option<Vec<u8>> {
    let mut files = Vec::with_capacity(t.index.len());
    for e in t.index.iter() {
        let stage = (e.flags >> 12) & 3;
        if stage != 0 || e.flags_extended & SPARSE_OR_INTENT != 0 {
            return None;
        }
        let link = match e.mode {
            0o100644 | 0o100755 => false,
            0o120000 => true,
            _ => return None,
        };
        files.push(FileRec {
            stamp: Stamp::of_entry(&e),
            path: e.path,
            link,
            oid: e.id,
        });
    }
    // Every directory the walk went through: the files' ancestors, and the directories that
    // hold no file of the tree but are not ignored (empty, or only ignored files in them).
    let mut dirs: BTreeSet<Vec<u8>> = BTreeSet::new();
    dirs.insert(Vec::new());
    let mut last_parent: &[u8] = b"";
    for f in &files {
        let parent = f
            .path
            .iter()
            .rposition(|b| *b == b'/')
            .map_or(&b""[..], |i| &f.path[..i]);
        if parent == last_parent {
            continue;
        }
        last_parent = parent;
        let mut p = parent;
        while !p.is_empty() && dirs.insert(p.to_vec()) {
            p = p
                .iter()
                .rposition(|b| *b == b'/')
                .map_or(&b""[..], |i| &p[..i]);
        }
    }
    // The index is sorted by path: so are the files.
    let is_file = |rel: &[u8]| {
        files
            .binary_search_by(|f| f.path.as_slice().cmp(rel))
            .is_ok()
    };
    let nested: HashSet<&[u8]> = t.nested.iter().map(|n| n.as_bytes()).collect();
    let mut plain = plain_config(repo);
    let mut extra_sides = Vec::new();
    let rel_of = |dir: &[u8], name: &[u8]| -> Vec<u8> {
        if dir.is_empty() {
            name.to_vec()
        } else {
            [dir, b"/", name].concat()
        }
    };
    let parent_of = |p: &[u8]| -> Vec<u8> {
        p.iter()
            .rposition(|b| *b == b'/')
            .map_or(Vec::new(), |i| p[..i].to_vec())
    };
    let mut subdirs: HashMap<Vec<u8>, u64> = HashMap::new();
    for d in dirs.iter().filter(|d| !d.is_empty()) {
        *subdirs.entry(parent_of(d)).or_default() += 1;
    }
    let mut dir_recs = Vec::with_capacity(dirs.len());
    let mut queue: Vec<Vec<u8>> = dirs.iter().cloned().collect();
    while let Some(dir) = queue.pop() {
        let full = join(workdir, &dir);
        let m = std::fs::symlink_metadata(&full).ok()?;
        let stamp = Stamp::full(&m);
        if stamp.racy(t.walk_ns) {
            return None;
        }
        // A directory's link count is 2 + its subdirectories (ext4, xfs, tmpfs; btrfs says 1):
        // only one with subdirectories the tree does not explain is read, for directories
        // that hold no file of the tree but are not ignored (empty, or only ignored files).
        let known = subdirs.get(&dir).copied().unwrap_or(0);
        if m.nlink() != 2 + known {
            for entry in std::fs::read_dir(&full).ok()? {
                let entry = entry.ok()?;
                let name = entry.file_name();
                let name = name.as_bytes();
                if !entry.file_type().ok()?.is_dir() || (dir.is_empty() && name == b".git") {
                    continue;
                }
                let rel = rel_of(&dir, name);
                if dirs.contains(&rel) || nested.contains(rel.as_slice()) {
                    continue;
                }
                let ignored = t
                    .handle
                    .is_path_ignored(Path::new(OsStr::from_bytes(&rel)))
                    .ok()?;
                if !ignored {
                    dirs.insert(rel.clone());
                    queue.push(rel);
                }
            }
        }
        if full.join(".gitattributes").symlink_metadata().is_ok() {
            plain = false;
        }
        let ignore_file = full.join(".gitignore");
        if ignore_file.symlink_metadata().is_ok() && !is_file(&rel_of(&dir, b".gitignore")) {
            extra_sides.push(ignore_file);
        }
        dir_recs.push((dir, stamp));
    }
    dir_recs.sort_by(|a, b| a.0.cmp(&b.0));
    let mut sides: Vec<(PathBuf, Option<Stamp>)> = side_files(repo)
        .into_iter()
        .chain(extra_sides)
        .map(|p| {
            let s = stamp_of(&p);
            (p, s)
        })
        .collect();
    sides.sort_by(|a, b| a.0.cmp(&b.0));
    sides.dedup_by(|a, b| a.0 == b.0);
    if sides
        .iter()
        .any(|(_, s)| s.is_some_and(|s| s.racy(t.walk_ns)))
    {
        return None;
    }
    let memo = Memo {
        walk_ns: t.walk_ns,
        index_id: t.index_id.clone(),
        tracked: t.tracked,
        tree: t.tree,
        index_tree: t.index_tree,
        plain,
        nested: t.nested.to_vec(),
        sides,
        dirs: dir_recs,
        files,
    };
    Some(encode(&memo, setting_hash(t.ignores)))
}

// ---- encoding: little-endian, length-prefixed, ending in a marker and the total length ----

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u32).to_le_bytes());
    out.extend_from_slice(b);
}

fn put_stamp(out: &mut Vec<u8>, s: &Stamp) {
    out.extend_from_slice(&s.mtime_s.to_le_bytes());
    out.extend_from_slice(&s.mtime_ns.to_le_bytes());
    out.extend_from_slice(&s.ctime_s.to_le_bytes());
    out.extend_from_slice(&s.ctime_ns.to_le_bytes());
    out.extend_from_slice(&s.ino.to_le_bytes());
    out.extend_from_slice(&s.size.to_le_bytes());
}

fn encode(m: &Memo, setting: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + m.files.len() * 96);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&m.walk_ns.to_le_bytes());
    out.extend_from_slice(&setting.to_le_bytes());
    match &m.index_id {
        Some(id) => {
            out.push(1);
            put_stamp(&mut out, &id.stamp);
            out.extend_from_slice(&id.trailer);
        }
        None => out.push(0),
    }
    out.extend_from_slice(&m.tracked.to_le_bytes());
    out.extend_from_slice(m.tree.as_bytes());
    out.extend_from_slice(m.index_tree.as_bytes());
    out.push(m.plain as u8);
    out.extend_from_slice(&(m.nested.len() as u32).to_le_bytes());
    for n in &m.nested {
        put_bytes(&mut out, n.as_bytes());
    }
    out.extend_from_slice(&(m.sides.len() as u32).to_le_bytes());
    for (p, s) in &m.sides {
        put_bytes(&mut out, p.as_os_str().as_bytes());
        match s {
            Some(s) => {
                out.push(1);
                put_stamp(&mut out, s);
            }
            None => out.push(0),
        }
    }
    out.extend_from_slice(&(m.dirs.len() as u32).to_le_bytes());
    for (p, s) in &m.dirs {
        put_bytes(&mut out, p);
        put_stamp(&mut out, s);
    }
    out.extend_from_slice(&(m.files.len() as u32).to_le_bytes());
    for f in &m.files {
        put_bytes(&mut out, &f.path);
        out.push(f.link as u8);
        put_stamp(&mut out, &f.stamp);
        out.extend_from_slice(f.oid.as_bytes());
    }
    out.extend_from_slice(END);
    let total = out.len() as u64 + 8;
    out.extend_from_slice(&total.to_le_bytes());
    out
}

struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let s = self.b.get(self.at..self.at.checked_add(n)?)?;
        self.at += n;
        Some(s)
    }
    fn arr<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }
    fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.arr()?))
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.arr()?))
    }
    fn i64(&mut self) -> Option<i64> {
        Some(i64::from_le_bytes(self.arr()?))
    }
    fn bytes(&mut self) -> Option<&'a [u8]> {
        let n = self.u32()? as usize;
        self.take(n)
    }
    fn oid(&mut self) -> Option<Oid> {
        Oid::from_bytes(self.take(20)?).ok()
    }
    fn stamp(&mut self) -> Option<Stamp> {
        Some(Stamp {
            mtime_s: self.i64()?,
            mtime_ns: self.u32()?,
            ctime_s: self.i64()?,
            ctime_ns: self.u32()?,
            ino: self.u64()?,
            size: self.u64()?,
        })
    }
    /// A count of items each at least `min` bytes long (bounded by what is left).
    fn count(&mut self, min: usize) -> Option<usize> {
        let n = self.u32()? as usize;
        (n.checked_mul(min)? <= self.b.len() - self.at).then_some(n)
    }
}

fn decode(b: &[u8]) -> Option<(Memo, u64)> {
    if b.len() < MAGIC.len() + 12 || !b.starts_with(MAGIC) {
        return None;
    }
    let (body, total) = b.split_at(b.len() - 8);
    if u64::from_le_bytes(total.try_into().ok()?) != b.len() as u64 || !body.ends_with(END) {
        return None;
    }
    let mut r = Reader {
        b: &body[..body.len() - END.len()],
        at: MAGIC.len(),
    };
    let walk_ns = i128::from_le_bytes(r.arr()?);
    let setting = r.u64()?;
    let index_id = match r.u8()? {
        1 => Some(IndexId {
            stamp: r.stamp()?,
            trailer: r.arr()?,
        }),
        _ => None,
    };
    let tracked = r.u64()?;
    let tree = r.oid()?;
    let index_tree = r.oid()?;
    let plain = r.u8()? == 1;
    let mut nested = Vec::new();
    for _ in 0..r.count(4)? {
        nested.push(String::from_utf8(r.bytes()?.to_vec()).ok()?);
    }
    let mut sides = Vec::new();
    for _ in 0..r.count(5)? {
        let p = PathBuf::from(OsStr::from_bytes(r.bytes()?));
        let s = match r.u8()? {
            1 => Some(r.stamp()?),
            _ => None,
        };
        sides.push((p, s));
    }
    let mut dirs = Vec::new();
    for _ in 0..r.count(44)? {
        dirs.push((r.bytes()?.to_vec(), r.stamp()?));
    }
    let mut files = Vec::new();
    for _ in 0..r.count(65)? {
        let path = r.bytes()?.to_vec();
        let link = r.u8()? == 1;
        let stamp = r.stamp()?;
        let oid = r.oid()?;
        files.push(FileRec {
            path,
            link,
            stamp,
            oid,
        });
    }
    (r.at == r.b.len()).then_some((
        Memo {
            walk_ns,
            index_id,
            tracked,
            tree,
            index_tree,
            plain,
            nested,
            sides,
            dirs,
            files,
        },
        setting,
    ))
}

#[cfg(test)]
#[path = "snapshot_memo_tests.rs"]
mod tests;
