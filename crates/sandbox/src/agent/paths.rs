//! Path confinement: every path a client names is mapped into the sandbox root or refused.
//!
//! Resolution rules (close to envd, plus confinement):
//! - `~` and `~/x` expand to the sandbox home;
//! - relative paths resolve against the *workdir* (envd resolves against its default workdir
//!   too, falling back to home; here the workdir defaults to home);
//! - `.` and `..` are applied lexically; a path that leaves the root is refused;
//! - symlinks are then resolved component by component with the real file system, and a path
//!   whose resolution leaves the root is refused. Callers that act on an entry itself (remove,
//!   move, lstat) resolve with [`Follow::No`], so a link that points outside may be removed or
//!   renamed, but never read or written through.
//!
//! The returned path is the fully resolved one, so the syscall acts on exactly what was checked.
//! (A process inside the sandbox could still race a component swap between check and use; the
//! agent does not defend against its own sandbox's processes beyond this.)

use std::collections::VecDeque;
use std::ffi::OsString;
use std::io;
use std::path::{Component, Path, PathBuf};

/// Why a client path was refused.
#[derive(Debug, thiserror::Error)]
pub enum PathError {
    #[error("path {path} escapes the sandbox root {root}")]
    Escapes { path: String, root: String },
    #[error("path {path} resolves through a symlink to {target}, outside the sandbox root {root}")]
    SymlinkEscapes {
        path: String,
        target: String,
        root: String,
    },
    #[error("invalid path {path:?}: {reason}")]
    Invalid { path: String, reason: String },
    #[error("cannot resolve {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: io::Error,
    },
}

/// Whether the last component is followed when it is a symlink.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Follow {
    /// Read, write, stat, chdir: act on the link's target.
    Yes,
    /// Remove, rename, lstat: act on the link itself.
    No,
}

/// Maximum symlinks followed while resolving one path (Linux's limit).
const MAX_SYMLINKS: usize = 40;

/// The sandbox's root, home and working directory, all canonical absolute paths.
#[derive(Debug, Clone)]
pub struct Confinement {
    root: PathBuf,
    /// The root as the caller spelled it (lexically normalized), when that differs from `root`.
    alias: Option<PathBuf>,
    home: PathBuf,
    workdir: PathBuf,
}

impl Confinement {
    /// `root` must exist; `home` and `workdir` (absolute, or relative to `root`) must lie inside it.
    pub fn new(
        root: &Path,
        home: Option<&Path>,
        workdir: Option<&Path>,
    ) -> Result<Self, PathError> {
        let canonical = std::fs::canonicalize(root).map_err(|source| PathError::Io {
            path: root.display().to_string(),
            source,
        })?;
        if !canonical.is_dir() {
            return Err(PathError::Invalid {
                path: root.display().to_string(),
                reason: "the sandbox root is not a directory".into(),
            });
        }
        let spelled = if root.is_absolute() {
            normalize(root)
        } else {
            normalize(&std::env::current_dir().unwrap_or_default().join(root))
        };
        let alias = spelled.filter(|s| *s != canonical);
        let mut c = Confinement {
            root: canonical.clone(),
            alias,
            home: canonical.clone(),
            workdir: canonical,
        };
        if let Some(h) = home {
            c.home = c.resolve_under_root(h)?;
        }
        c.workdir = match workdir {
            Some(w) => c.resolve_under_root(w)?,
            None => c.home.clone(),
        };
        Ok(c)
    }

    fn resolve_under_root(&self, p: &Path) -> Result<PathBuf, PathError> {
        let joined = if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.root.join(p)
        };
        self.resolve(&joined.to_string_lossy(), Follow::Yes)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn home(&self) -> &Path {
        &self.home
    }

    pub fn workdir(&self) -> &Path {
        &self.workdir
    }

    /// Expand `~`, anchor relative paths at the workdir, apply `.`/`..` lexically and check
    /// that the result stays inside the root. Does not touch the file system.
    pub fn lexical(&self, path: &str) -> Result<PathBuf, PathError> {
        if path.contains('\0') {
            return Err(PathError::Invalid {
                path: path.escape_debug().to_string(),
                reason: "contains a NUL byte".into(),
            });
        }
        let expanded: PathBuf = if path == "~" {
            self.home.clone()
        } else if let Some(rest) = path.strip_prefix("~/") {
            self.home.join(rest)
        } else if path.starts_with('~') {
            return Err(PathError::Invalid {
                path: path.into(),
                reason: "cannot expand another user's home directory".into(),
            });
        } else if path.is_empty() {
            self.workdir.clone()
        } else if Path::new(path).is_absolute() {
            PathBuf::from(path)
        } else {
            self.workdir.join(path)
        };
        let normalized = normalize(&expanded).ok_or_else(|| self.escapes(path))?;
        if normalized.starts_with(&self.root) {
            return Ok(normalized);
        }
        if let Some(rest) = self
            .alias
            .as_ref()
            .and_then(|a| normalized.strip_prefix(a).ok())
        {
            return Ok(self.root.join(rest));
        }
        Err(self.escapes(&normalized.display().to_string()))
    }

    /// [`lexical`](Self::lexical), then resolve symlinks against the real file system and check
    /// the result again. Missing trailing components are allowed (for creating files).
    pub fn resolve(&self, path: &str, follow: Follow) -> Result<PathBuf, PathError> {
        let lexical = self.lexical(path)?;
        let resolved = resolve_symlinks(&lexical, follow).map_err(|source| PathError::Io {
            path: lexical.display().to_string(),
            source,
        })?;
        if resolved.starts_with(&self.root) {
            Ok(resolved)
        } else {
            Err(PathError::SymlinkEscapes {
                path: lexical.display().to_string(),
                target: resolved.display().to_string(),
                root: self.root.display().to_string(),
            })
        }
    }

    /// True when `path` (absolute, resolved) is inside the root.
    pub fn contains(&self, path: &Path) -> bool {
        path.starts_with(&self.root)
    }

    fn escapes(&self, path: &str) -> PathError {
        PathError::Escapes {
            path: path.into(),
            root: self.root.display().to_string(),
        }
    }
}

/// Lexically normalize an absolute path; `None` when `..` climbs above `/`.
pub fn normalize(path: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::from("/");
    for c in path.components() {
        match c {
            Component::RootDir | Component::Prefix(_) | Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    return None;
                }
            }
            Component::Normal(n) => out.push(n),
        }
    }
    Some(out)
}

/// Resolve symlinks in an absolute, normalized path. Components that do not exist are kept
/// as written; `..` inside link targets is applied to the physical path.
fn resolve_symlinks(path: &Path, follow: Follow) -> io::Result<PathBuf> {
    let mut queue: VecDeque<OsString> = path
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_os_string()),
            _ => None,
        })
        .collect();
    let mut resolved = PathBuf::from("/");
    let mut hops = 0;
    let mut missing = false;
    while let Some(name) = queue.pop_front() {
        if name == ".." {
            resolved.pop();
            continue;
        }
        if name == "." {
            continue;
        }
        let candidate = resolved.join(&name);
        if missing {
            resolved = candidate;
            continue;
        }
        let last = queue.is_empty();
        match std::fs::symlink_metadata(&candidate) {
            Ok(m) if m.file_type().is_symlink() && (!last || follow == Follow::Yes) => {
                hops += 1;
                if hops > MAX_SYMLINKS {
                    return Err(io::Error::other(format!(
                        "too many levels of symbolic links at {}",
                        candidate.display()
                    )));
                }
                let target = std::fs::read_link(&candidate)?;
                if target.is_absolute() {
                    resolved = PathBuf::from("/");
                }
                for c in target.components().rev() {
                    match c {
                        Component::Normal(n) => queue.push_front(n.to_os_string()),
                        Component::ParentDir => queue.push_front("..".into()),
                        _ => {}
                    }
                }
            }
            Ok(_) => resolved = candidate,
            Err(e)
                if e.kind() == io::ErrorKind::NotFound
                    || e.raw_os_error() == Some(libc::ENOTDIR) =>
            {
                missing = true;
                resolved = candidate;
            }
            Err(e) => return Err(e),
        }
    }
    Ok(resolved)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    struct Fixture {
        _dir: tempfile::TempDir,
        outside: PathBuf,
        c: Confinement,
    }

    fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let base = std::fs::canonicalize(dir.path()).unwrap();
        let root = base.join("root");
        let outside = base.join("outside");
        std::fs::create_dir_all(root.join("home/work")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(outside.join("secret"), "s").unwrap();
        let c =
            Confinement::new(&root, Some(Path::new("home")), Some(Path::new("home/work"))).unwrap();
        Fixture {
            _dir: dir,
            outside,
            c,
        }
    }

    #[test]
    fn relative_paths_resolve_against_workdir_and_tilde_against_home() {
        let f = fixture();
        let root = f.c.root().to_path_buf();
        assert_eq!(f.c.lexical("a/b").unwrap(), root.join("home/work/a/b"));
        assert_eq!(f.c.lexical("").unwrap(), root.join("home/work"));
        assert_eq!(f.c.lexical("~").unwrap(), root.join("home"));
        assert_eq!(f.c.lexical("~/x").unwrap(), root.join("home/x"));
        assert_eq!(f.c.lexical("./a/../b").unwrap(), root.join("home/work/b"));
        assert_eq!(
            f.c.lexical(&format!("{}/x", root.display())).unwrap(),
            root.join("x")
        );
        assert!(matches!(
            f.c.lexical("~bob/x"),
            Err(PathError::Invalid { .. })
        ));
    }

    #[test]
    fn dotdot_and_absolute_paths_outside_root_are_refused() {
        let f = fixture();
        for p in [
            "../../..",
            "../../../etc/passwd",
            "/etc/passwd",
            "/",
            "~/../../x",
            "/../../..",
        ] {
            let err = f.c.lexical(p).unwrap_err();
            assert!(matches!(err, PathError::Escapes { .. }), "{p}: {err}");
            assert!(
                err.to_string().contains("escapes the sandbox root"),
                "{err}"
            );
        }
        // Climbing out and back in is fine: only the result matters.
        let root = f.c.root().to_path_buf();
        let back_in = "../../../root/home/x";
        assert_eq!(f.c.lexical(back_in).unwrap(), root.join("home/x"));
    }

    #[test]
    fn root_spelled_through_a_symlink_is_accepted() {
        let f = fixture();
        let base = f.c.root().parent().unwrap().to_path_buf();
        symlink(f.c.root(), base.join("alias")).unwrap();
        let c = Confinement::new(&base.join("alias"), None, None).unwrap();
        assert_eq!(c.root(), f.c.root());
        assert_eq!(
            c.lexical(&format!("{}/alias/f", base.display())).unwrap(),
            f.c.root().join("f")
        );
    }

    #[test]
    fn symlinks_that_escape_are_refused_when_followed_but_not_for_the_link_itself() {
        let f = fixture();
        let root = f.c.root().to_path_buf();
        symlink(f.outside.join("secret"), root.join("home/work/evil")).unwrap();
        symlink(&f.outside, root.join("home/work/evildir")).unwrap();
        symlink(
            "../../../outside/nothing-yet",
            root.join("home/work/dangling"),
        )
        .unwrap();

        let err = f.c.resolve("evil", Follow::Yes).unwrap_err();
        assert!(matches!(err, PathError::SymlinkEscapes { .. }), "{err}");
        assert!(
            err.to_string().contains("outside the sandbox root"),
            "{err}"
        );
        assert!(f.c.resolve("evildir/secret", Follow::Yes).is_err());
        assert!(
            f.c.resolve("evildir/secret", Follow::No).is_err(),
            "intermediate links are always followed"
        );
        assert!(f.c.resolve("evildir/new-file", Follow::Yes).is_err());
        assert!(
            f.c.resolve("dangling", Follow::Yes).is_err(),
            "a dangling link must not let writes out"
        );

        assert_eq!(
            f.c.resolve("evil", Follow::No).unwrap(),
            root.join("home/work/evil")
        );
        assert_eq!(
            f.c.resolve("dangling", Follow::No).unwrap(),
            root.join("home/work/dangling")
        );
    }

    #[test]
    fn symlinks_inside_root_are_followed() {
        let f = fixture();
        let root = f.c.root().to_path_buf();
        std::fs::create_dir_all(root.join("data")).unwrap();
        std::fs::write(root.join("data/f"), "x").unwrap();
        symlink("../../data", root.join("home/work/d")).unwrap();
        symlink(root.join("data/f"), root.join("abs-link")).unwrap();
        assert_eq!(
            f.c.resolve("d/f", Follow::Yes).unwrap(),
            root.join("data/f")
        );
        assert_eq!(
            f.c.resolve("d/new/deeper", Follow::Yes).unwrap(),
            root.join("data/new/deeper")
        );
        assert_eq!(
            f.c.resolve(&format!("{}/abs-link", root.display()), Follow::Yes)
                .unwrap(),
            root.join("data/f")
        );
        assert_eq!(
            f.c.resolve("missing/x/../y", Follow::Yes).unwrap(),
            root.join("home/work/missing/y")
        );
    }

    #[test]
    fn symlink_loops_are_an_error_not_a_hang() {
        let f = fixture();
        let root = f.c.root().to_path_buf();
        symlink("b", root.join("a")).unwrap();
        symlink("a", root.join("b")).unwrap();
        assert!(matches!(
            f.c.resolve(&format!("{}/a", root.display()), Follow::Yes),
            Err(PathError::Io { .. })
        ));
    }

    #[test]
    fn home_and_workdir_must_be_inside_root() {
        let f = fixture();
        let root = f.c.root().to_path_buf();
        assert!(Confinement::new(&root, Some(&f.outside), None).is_err());
        assert!(Confinement::new(&root, None, Some(Path::new("../outside"))).is_err());
        let c = Confinement::new(&root, None, None).unwrap();
        assert_eq!(c.home(), root);
        assert_eq!(c.workdir(), root);
    }
}
