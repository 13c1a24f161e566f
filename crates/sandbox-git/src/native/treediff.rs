//! What differs between two trees, reading only the subtrees whose ids differ: the cost follows
//! what changed, not the size of the tree (libgit2's tree diff reads every tree of both).
//! Changes come as that diff gives them without rename or type-change detection: a path whose
//! type changes (file, symlink, submodule) is removed and added; a file that becomes a directory
//! is removed, and the directory's files added.

use std::cmp::Ordering;

use git2::{ObjectType, Oid, Repository, Tree, TreeEntry};

/// One side of a change: the object and its mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Side {
    pub id: Oid,
    pub mode: i32,
}

/// One path that differs. `old` only: removed; `new` only: added; both: modified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// Slash-separated, relative to the trees' root.
    pub path: Vec<u8>,
    pub old: Option<Side>,
    pub new: Option<Side>,
}

/// The changes that turn `old` (none: the empty tree) into `new`, in path order.
pub fn changes(
    repo: &Repository,
    old: Option<&Tree<'_>>,
    new: &Tree<'_>,
) -> Result<Vec<Change>, git2::Error> {
    let mut out = Vec::new();
    match old {
        Some(old) => compare(repo, old, new, b"", &mut out)?,
        None => {
            for e in new.iter() {
                one_side(repo, &e, b"", false, &mut out)?;
            }
        }
    }
    Ok(out)
}

/// Tree order: a subtree sorts as its name followed by '/'.
fn key(e: &TreeEntry<'_>) -> Vec<u8> {
    let mut k = e.name_bytes().to_vec();
    if e.kind() == Some(ObjectType::Tree) {
        k.push(b'/');
    }
    k
}

/// The type bits of a mode: a regular file is one type, executable or not.
fn mode_type(mode: i32) -> i32 {
    mode & 0o170000
}

fn path_of(prefix: &[u8], name: &[u8]) -> Vec<u8> {
    if prefix.is_empty() {
        name.to_vec()
    } else {
        [prefix, b"/", name].concat()
    }
}

fn side(e: &TreeEntry<'_>) -> Side {
    Side {
        id: e.id(),
        mode: e.filemode(),
    }
}

/// An entry present on one side only: itself, or every file under it.
fn one_side(
    repo: &Repository,
    e: &TreeEntry<'_>,
    prefix: &[u8],
    removed: bool,
    out: &mut Vec<Change>,
) -> Result<(), git2::Error> {
    let path = path_of(prefix, e.name_bytes());
    if e.kind() == Some(ObjectType::Tree) {
        let tree = repo.find_tree(e.id())?;
        for child in tree.iter() {
            one_side(repo, &child, &path, removed, out)?;
        }
        return Ok(());
    }
    let s = Some(side(e));
    out.push(Change {
        path,
        old: if removed { s } else { None },
        new: if removed { None } else { s },
    });
    Ok(())
}

fn compare(
    repo: &Repository,
    a: &Tree<'_>,
    b: &Tree<'_>,
    prefix: &[u8],
    out: &mut Vec<Change>,
) -> Result<(), git2::Error> {
    let (mut ia, mut ib) = (a.iter().peekable(), b.iter().peekable());
    loop {
        let order = match (ia.peek(), ib.peek()) {
            (None, None) => return Ok(()),
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (Some(x), Some(y)) => key(x).cmp(&key(y)),
        };
        match order {
            Ordering::Less => one_side(repo, &ia.next().expect("peeked"), prefix, true, out)?,
            Ordering::Greater => one_side(repo, &ib.next().expect("peeked"), prefix, false, out)?,
            Ordering::Equal => {
                let (x, y) = (ia.next().expect("peeked"), ib.next().expect("peeked"));
                if x.id() == y.id() && x.filemode() == y.filemode() {
                    continue;
                }
                if x.kind() == Some(ObjectType::Tree) {
                    let sub = path_of(prefix, x.name_bytes());
                    let (tx, ty) = (repo.find_tree(x.id())?, repo.find_tree(y.id())?);
                    compare(repo, &tx, &ty, &sub, out)?;
                } else if mode_type(x.filemode()) == mode_type(y.filemode()) {
                    out.push(Change {
                        path: path_of(prefix, x.name_bytes()),
                        old: Some(side(&x)),
                        new: Some(side(&y)),
                    });
                } else {
                    one_side(repo, &x, prefix, true, out)?;
                    one_side(repo, &y, prefix, false, out)?;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The tree of the work tree of `repo` as it is now.
    fn tree_now(repo: &Repository) -> Oid {
        let mut index = repo.index().unwrap();
        index.clear().unwrap();
        index
            .add_all(["*"], git2::IndexAddOption::DEFAULT, None)
            .unwrap();
        index.write_tree().unwrap()
    }

    /// libgit2's tree diff, as (path, old, new) with zero ids for a missing side.
    fn libgit2(repo: &Repository, a: Option<&Tree<'_>>, b: &Tree<'_>) -> Vec<Change> {
        let diff = repo.diff_tree_to_tree(a, Some(b), None).unwrap();
        diff.deltas()
            .map(|d| {
                let (o, n) = (d.old_file(), d.new_file());
                let s = |f: &git2::DiffFile<'_>| {
                    (!f.id().is_zero()).then(|| Side {
                        id: f.id(),
                        mode: i32::from(f.mode()),
                    })
                };
                let path = n.path().or(o.path()).unwrap();
                Change {
                    path: path.as_os_str().as_encoded_bytes().to_vec(),
                    old: s(&o),
                    new: s(&n),
                }
            })
            .collect()
    }

    #[test]
    fn the_changes_are_libgit2s_tree_diff() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path();
        let repo = Repository::init(d).unwrap();
        let w = |p: &str, t: &str| {
            std::fs::create_dir_all(d.join(p).parent().unwrap()).unwrap();
            std::fs::write(d.join(p), t).unwrap();
        };
        use std::os::unix::fs::PermissionsExt;
        let mut trees = Vec::new();
        w("a.txt", "a");
        w("a-b.txt", "ab");
        w("dir/b.txt", "b");
        w("dir/sub/c.txt", "c");
        w("keep/k.txt", "k");
        trees.push(tree_now(&repo));
        w("dir/b.txt", "b2"); // modified, deep
        std::fs::set_permissions(d.join("a.txt"), std::fs::Permissions::from_mode(0o755)).unwrap(); // mode only
        trees.push(tree_now(&repo));
        std::fs::remove_dir_all(d.join("dir/sub")).unwrap(); // a subtree gone
        w("new/x/y.txt", "y"); // a subtree added
        trees.push(tree_now(&repo));
        std::fs::remove_file(d.join("a.txt")).unwrap();
        std::os::unix::fs::symlink("keep/k.txt", d.join("a.txt")).unwrap(); // file -> symlink
        std::fs::remove_dir_all(d.join("keep")).unwrap();
        w("keep", "now a file"); // directory -> file
        std::fs::remove_file(d.join("a-b.txt")).unwrap();
        w("a-b.txt/inner", "file -> directory");
        trees.push(tree_now(&repo));
        let trees: Vec<Tree<'_>> = trees.iter().map(|t| repo.find_tree(*t).unwrap()).collect();
        for b in &trees {
            assert_eq!(changes(&repo, None, b).unwrap(), libgit2(&repo, None, b));
            for a in &trees {
                let mut ours = changes(&repo, Some(a), b).unwrap();
                let mut theirs = libgit2(&repo, Some(a), b);
                // Same changes; libgit2 orders a removed file before an added directory of
                // the same name by full path, as this does.
                ours.sort_by(|x, y| x.path.cmp(&y.path));
                theirs.sort_by(|x, y| x.path.cmp(&y.path));
                assert_eq!(ours, theirs, "{} -> {}", a.id(), b.id());
            }
        }
    }
}
