//! Which paths live sync copies: not `.git`, not inside submodules or embedded repositories,
//! and either tracked or not ignored by `.gitignore` (nested ones too), `.git/info/exclude`,
//! the global excludes file, and `[sync] ignore`.

use std::collections::HashSet;
use std::path::Path;

/// The path filter, rebuilt when `.gitignore` files or the index change.
pub struct PathFilter {
    repo: git2::Repository,
    tracked: HashSet<String>,
    /// Directories that hold tracked files (so an ignored directory with tracked files is kept).
    tracked_dirs: HashSet<String>,
    /// Submodule paths (gitlinks): never descended into.
    gitlinks: Vec<String>,
}

impl PathFilter {
    /// A filter for the work tree at `root` with extra gitignore-style patterns.
    pub fn new(root: &Path, extra_ignores: &[String]) -> Result<PathFilter, git2::Error> {
        let repo = crate::gitsync::open_work_tree(root)?;
        for pattern in extra_ignores {
            repo.add_ignore_rule(pattern)?;
        }
        let mut f = PathFilter {
            repo,
            tracked: HashSet::new(),
            tracked_dirs: HashSet::new(),
            gitlinks: Vec::new(),
        };
        f.reload_index();
        Ok(f)
    }

    /// Re-read the index (after `git add`, `git rm`, a checkout...).
    pub fn reload_index(&mut self) {
        self.tracked.clear();
        self.tracked_dirs.clear();
        self.gitlinks.clear();
        let Ok(index) = self.repo.index() else { return };
        for e in index.iter() {
            let path = String::from_utf8_lossy(&e.path).into_owned();
            if e.mode == 0o160000 {
                self.gitlinks.push(path);
                continue;
            }
            let mut dir = path.as_str();
            while let Some((parent, _)) = dir.rsplit_once('/') {
                if !self.tracked_dirs.insert(parent.to_string()) {
                    break;
                }
                dir = parent;
            }
            self.tracked.insert(path);
        }
    }

    /// Paths of tracked files.
    pub fn tracked(&self) -> impl Iterator<Item = &str> {
        self.tracked.iter().map(String::as_str)
    }

    /// True when `rel` (relative, `/`-separated) is synced; `is_dir` for directories.
    pub fn is_synced(&self, rel: &str, is_dir: bool) -> bool {
        if rel.is_empty() {
            return true;
        }
        if rel == ".git"
            || rel.starts_with(".git/")
            || rel.ends_with("/.git")
            || rel.contains("/.git/")
        {
            return false;
        }
        if self.gitlinks.iter().any(|g| {
            rel == g
                || rel
                    .strip_prefix(g.as_str())
                    .is_some_and(|r| r.starts_with('/'))
        }) {
            return false;
        }
        if is_dir {
            if self.tracked_dirs.contains(rel) {
                return true;
            }
        } else if self.tracked.contains(rel) {
            return true;
        }
        let probe = if is_dir {
            format!("{rel}/")
        } else {
            rel.to_string()
        };
        !self
            .repo
            .is_path_ignored(Path::new(&probe))
            .unwrap_or(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn git(dir: &Path, args: &[&str]) {
        let st = std::process::Command::new("git")
            .args(args)
            .current_dir(dir)
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_AUTHOR_NAME", "t")
            .env("GIT_AUTHOR_EMAIL", "t@e")
            .env("GIT_COMMITTER_NAME", "t")
            .env("GIT_COMMITTER_EMAIL", "t@e")
            .output()
            .unwrap();
        assert!(
            st.status.success(),
            "{}",
            String::from_utf8_lossy(&st.stderr)
        );
    }

    #[test]
    fn honours_gitignore_nested_ignores_extra_rules_and_tracked_files() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        git(root, &["init", "-q"]);
        std::fs::write(root.join(".gitignore"), "*.log\nbuild/\n").unwrap();
        std::fs::create_dir_all(root.join("sub/deep")).unwrap();
        std::fs::write(root.join("sub/.gitignore"), "secret.txt\n").unwrap();
        std::fs::create_dir_all(root.join("build")).unwrap();
        std::fs::write(root.join("build/keep.log"), "x").unwrap();
        git(
            root,
            &[
                "add",
                "-f",
                "build/keep.log",
                ".gitignore",
                "sub/.gitignore",
            ],
        );
        let f = PathFilter::new(root, &["generated/".to_string(), "*.tmp".to_string()]).unwrap();
        assert!(f.is_synced("src/main.rs", false));
        assert!(!f.is_synced("debug.log", false));
        assert!(
            f.is_synced("build", true),
            "an ignored directory holding tracked files is walked"
        );
        assert!(!f.is_synced("build/other.o", false));
        assert!(
            f.is_synced("build/keep.log", false),
            "tracked files are synced even when ignored"
        );
        assert!(!f.is_synced("sub/secret.txt", false), "nested .gitignore");
        assert!(!f.is_synced("sub/deep/secret.txt", false));
        assert!(f.is_synced("sub/other.txt", false));
        assert!(!f.is_synced("generated", true), "[sync] ignore directory");
        assert!(!f.is_synced("generated/x.rs", false));
        assert!(!f.is_synced("a.tmp", false));
        assert!(!f.is_synced(".git/index", false));
        assert!(!f.is_synced(".git", true));
        assert!(!f.is_synced("vendor/lib/.git/config", false));
    }
}
