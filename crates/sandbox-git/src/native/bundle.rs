//! A v2 bundle of one ref, as `git bundle create REF --not BASES` writes it, from libgit2's
//! pack builder. Small bundles only (what a checkpoint or pull of recent work sends): longer
//! histories and big files are declined, and the script's `git bundle create` packs them with
//! git's delta search and streaming.

use std::collections::HashSet;
use std::io::{BufRead, Read as _, Write};
use std::path::Path;

use git2::{Oid, Repository};

/// More new commits than this: left to git.
const MAX_COMMITS: usize = 100;
/// A new blob larger than this: left to git (libgit2's pack builder holds it in memory twice).
const MAX_BLOB: usize = 16 * 1024 * 1024;

/// A v2 bundle header: the prerequisites (each with its commit's subject, as git writes it)
/// and the refs, then the blank line before the pack.
pub fn header(repo: &Repository, prereqs: &[Oid], refs: &[(Oid, &str)]) -> String {
    let mut header = String::from("# v2 git bundle\n");
    for p in prereqs {
        let subject = repo
            .find_commit(*p)
            .ok()
            .and_then(|c| c.summary().ok().flatten().map(one_line))
            .unwrap_or_default();
        header.push_str(&format!("-{p} {subject}\n"));
    }
    for (oid, name) in refs {
        header.push_str(&format!("{oid} {name}\n"));
    }
    header.push('\n');
    header
}

/// A commit subject on one header line (control characters blanked, at most 200 characters).
fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(200)
        .collect()
}

/// Write the bundle of `tip` (as `name`) without what `hidden` reaches to `path`; its size, or
/// `None` when `hidden` already reaches `tip`.
pub(crate) fn write(
    repo: &Repository,
    tip: Oid,
    name: &str,
    hidden: &[Oid],
    path: &Path,
) -> Result<Option<u64>, String> {
    let git = |e: git2::Error| e.message().to_string();
    let walk = || -> Result<git2::Revwalk<'_>, String> {
        let mut w = repo.revwalk().map_err(git)?;
        w.push(tip).map_err(git)?;
        for h in hidden {
            w.hide(*h).map_err(git)?;
        }
        Ok(w)
    };
    let sent: HashSet<Oid> = walk()?.collect::<Result<_, _>>().map_err(git)?;
    if sent.is_empty() {
        return Ok(None);
    }
    if sent.len() > MAX_COMMITS {
        return Err(format!("{} new commits: git packs them", sent.len()));
    }
    let odb = repo.odb().map_err(git)?;
    let mut prereqs = Vec::new();
    for oid in &sent {
        let c = repo.find_commit(*oid).map_err(git)?;
        for p in c.parent_ids() {
            if !sent.contains(&p) && !prereqs.contains(&p) {
                prereqs.push(p);
            }
        }
        let old = c.parents().next().and_then(|p| p.tree().ok());
        let new = c.tree().map_err(git)?;
        let diff = repo
            .diff_tree_to_tree(old.as_ref(), Some(&new), None)
            .map_err(git)?;
        for d in diff.deltas() {
            let f = d.new_file();
            if f.id().is_zero() || f.mode() == git2::FileMode::Commit {
                continue;
            }
            let (size, _) = odb.read_header(f.id()).map_err(git)?;
            if size > MAX_BLOB {
                return Err("a new file is large: git packs it".into());
            }
        }
    }
    prereqs.sort();
    let header = header(repo, &prereqs, &[(tip, name)]);

    let mut pb = repo.packbuilder().map_err(git)?;
    pb.insert_walk(&mut walk()?).map_err(git)?;
    let mut file = std::io::BufWriter::new(
        std::fs::File::create(path).map_err(|e| format!("creating {}: {e}", path.display()))?,
    );
    let mut io_err = None;
    file.write_all(header.as_bytes())
        .map_err(|e| format!("writing {}: {e}", path.display()))?;
    let mut size = header.len() as u64;
    pb.foreach(|chunk| match file.write_all(chunk) {
        Ok(()) => {
            size += chunk.len() as u64;
            true
        }
        Err(e) => {
            io_err = Some(e);
            false
        }
    })
    .map_err(git)?;
    if let Some(e) = io_err {
        return Err(format!("writing {}: {e}", path.display()));
    }
    file.flush()
        .map_err(|e| format!("writing {}: {e}", path.display()))?;
    Ok(Some(size))
}

/// A parsed bundle header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// 2 or 3.
    pub version: u32,
    pub prerequisites: Vec<Oid>,
    /// `(refname, oid)` in file order.
    pub refs: Vec<(String, Oid)>,
    /// Length of the header in bytes (the pack starts here).
    pub len: u64,
}

impl Header {
    /// The oid of `name` in the bundle.
    pub fn get(&self, name: &str) -> Option<Oid> {
        self.refs.iter().find(|(n, _)| n == name).map(|(_, o)| *o)
    }
}

/// Why a bundle could not be read; nothing from it was applied.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{context}: {source}")]
    Git {
        context: String,
        #[source]
        source: git2::Error,
    },
    /// Malformed, truncated or corrupt.
    #[error("{0}")]
    Bad(String),
    /// It builds on a commit the repository lacks.
    #[error("it builds on commit {0}, which the repository does not have")]
    MissingPrerequisite(Oid),
}

/// Progress of [`read()`].
#[derive(Debug, Clone, Copy)]
pub enum Read {
    /// Objects indexed out of the pack's total.
    Objects(u64, u64),
    /// Bytes read out of the file's size, when known.
    Bytes(u64, Option<u64>),
}

const MAX_LINE: u64 = 64 * 1024;
const MAX_LINES: usize = 1_000_000;

/// Parse and validate a bundle header (v2, or v3 with only `@object-format=sha1`) from the start
/// of `r`.
pub fn parse_header(r: &mut impl BufRead) -> Result<Header, ReadError> {
    let bad = ReadError::Bad;
    let mut len = 0u64;
    let mut read_line = |r: &mut dyn BufRead| -> Result<Option<String>, ReadError> {
        let mut buf = Vec::new();
        let n = r
            .take(MAX_LINE)
            .read_until(b'\n', &mut buf)
            .map_err(|source| ReadError::Io {
                context: "reading the bundle".into(),
                source,
            })?;
        if n == 0 {
            return Ok(None);
        }
        len += n as u64;
        if len == n as u64
            && !(buf.starts_with(b"# v2 git bundle") || buf.starts_with(b"# v3 git bundle"))
        {
            let shown: String = String::from_utf8_lossy(&buf).chars().take(40).collect();
            return Err(bad(format!("not a git bundle (it starts with {shown:?})")));
        }
        if buf.last() != Some(&b'\n') {
            return Err(bad("the header is truncated or has an overlong line".into()));
        }
        buf.pop();
        String::from_utf8(buf)
            .map(Some)
            .map_err(|_| bad("the header is not valid UTF-8".into()))
    };

    let first = read_line(r)?.ok_or_else(|| bad("the file is empty".into()))?;
    let version = match first.as_str() {
        "# v2 git bundle" => 2,
        "# v3 git bundle" => 3,
        other => {
            let shown: String = other.chars().take(40).collect();
            return Err(bad(format!("not a git bundle (first line {shown:?})")));
        }
    };
    let mut prerequisites = Vec::new();
    let mut refs = Vec::new();
    let mut in_caps = version == 3;
    let mut lines = 0usize;
    loop {
        lines += 1;
        if lines > MAX_LINES {
            return Err(bad("the header has too many lines".into()));
        }
        let line = read_line(r)?.ok_or_else(|| bad("the header ends before the pack".into()))?;
        if line.is_empty() {
            break;
        }
        let cap = if in_caps {
            line.strip_prefix('@')
        } else {
            None
        };
        if let Some(cap) = cap {
            match cap {
                "object-format=sha1" => continue,
                c if c.starts_with("object-format=") => {
                    return Err(bad(format!(
                        "it uses {c}; rclaude supports SHA-1 repositories only"
                    )));
                }
                c => return Err(bad(format!("unsupported bundle capability @{c}"))),
            }
        }
        in_caps = false;
        if let Some(rest) = line.strip_prefix('-') {
            let hex = rest.split(' ').next().unwrap_or("");
            let oid = oid_of(hex).ok_or_else(|| bad(format!("bad prerequisite line {line:?}")))?;
            prerequisites.push(oid);
        } else {
            let (hex, name) = line
                .split_once(' ')
                .ok_or_else(|| bad(format!("bad ref line {line:?}")))?;
            let oid =
                oid_of(hex).ok_or_else(|| bad(format!("bad object id in ref line {line:?}")))?;
            if name != "HEAD" && !git2::Reference::is_valid_name(name) {
                return Err(bad(format!("bad ref name {name:?}")));
            }
            refs.push((name.to_string(), oid));
        }
    }
    if refs.is_empty() {
        return Err(bad("it names no refs".into()));
    }
    Ok(Header {
        version,
        prerequisites,
        refs,
        len,
    })
}

fn oid_of(hex: &str) -> Option<Oid> {
    (hex.len() == 40 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| Oid::from_str(hex).ok())
        .flatten()
}

/// Read the bundle at `path` into `repo`'s object store: validate the header, check that every
/// prerequisite is there, stream the pack through libgit2's indexer (which checks every
/// object's checksum and completes thin packs, as git's own bundles are), and check that every
/// ref's object arrived. With `connectivity`, the indexer also checks that every object the
/// pack's objects name is there (all of them: about as long again as the indexing); without,
/// the caller checks what it uses. Returns the header; refs are for the caller to update.
pub fn read(
    repo: &Repository,
    path: &Path,
    connectivity: bool,
    progress: &dyn Fn(Read),
) -> Result<Header, ReadError> {
    let io = |context: String| move |source| ReadError::Io { context, source };
    let git = |context: &str| {
        let context = context.to_string();
        move |source| ReadError::Git { context, source }
    };
    let file = std::fs::File::open(path).map_err(io(format!("opening {}", path.display())))?;
    let total = file.metadata().map(|m| m.len()).ok();
    let mut reader = std::io::BufReader::with_capacity(256 * 1024, file);
    let header = parse_header(&mut reader)?;
    let odb = repo.odb().map_err(git("opening the object database"))?;
    if let Some(p) = header.prerequisites.iter().find(|p| !odb.exists(**p)) {
        return Err(ReadError::MissingPrerequisite(*p));
    }
    let pack_dir = repo.commondir().join("objects").join("pack");
    std::fs::create_dir_all(&pack_dir).map_err(io(format!("creating {}", pack_dir.display())))?;
    {
        let mut indexer = git2::Indexer::new(Some(&odb), &pack_dir, 0, connectivity)
            .map_err(git("starting the pack indexer"))?;
        indexer.progress(|p| {
            progress(Read::Objects(
                p.indexed_objects() as u64,
                p.total_objects() as u64,
            ));
            true
        });
        let mut done = header.len;
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = reader
                .read(&mut buf)
                .map_err(io(format!("reading {}", path.display())))?;
            if n == 0 {
                break;
            }
            indexer
                .write_all(&buf[..n])
                .map_err(|e| ReadError::Bad(format!("its pack is corrupt ({e})")))?;
            done += n as u64;
            progress(Read::Bytes(done, total));
        }
        indexer.commit().map_err(|e| {
            ReadError::Bad(format!(
                "its pack is truncated or corrupt ({})",
                e.message()
            ))
        })?;
    }
    odb.refresh()
        .map_err(git("refreshing the object database"))?;
    if let Some((name, oid)) = header.refs.iter().find(|(_, o)| !odb.exists(*o)) {
        return Err(ReadError::Bad(format!(
            "its ref {name} points at {oid}, which is not in the bundle"
        )));
    }
    Ok(header)
}
