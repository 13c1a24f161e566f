//! A v2 bundle of one ref, as `git bundle create REF --not BASES` writes it, from libgit2's
//! pack builder. Small bundles only (what a checkpoint or pull of recent work sends): longer
//! histories and big files are declined, and the script's `git bundle create` packs them with
//! git's delta search and streaming.

use std::collections::HashSet;
use std::io::Write;
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
