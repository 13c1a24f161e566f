//! Sync steps as one process: the step helper rclaude's agent runs inside the sandbox
//! (`rclaude_sandbox::agent::helper`) for the export step's work-tree mode (`POST
//! /rclaude/export`), the apply step ([`apply`], `POST /rclaude/apply`) and the query step
//! ([`query`], `POST /rclaude/query`). The same answers as
//! the scripts ([`crate::scripts::EXPORT`], [`crate::scripts::APPLY`]), made with libgit2
//! instead of a shell and some twenty to forty git processes, and from the paths the agent saw
//! change instead of a walk of the whole tree ([`worktree`]). The helper runs where the scripts
//! would (inside bubblewrap for a local sandbox), so it sees only what the sandbox's own
//! processes see.
//!
//! The scripts stay the reference: whatever this does not reproduce exactly (a busy lock,
//! conflicts, submodules, sparse checkouts, filter drivers, large histories or files, an
//! interrupted apply, a shallow repository, any error) is declined, and the client runs the
//! script, which also gives the errors their wording.

mod apply;
pub mod bundle;
mod query;
pub mod treediff;
mod worktree;

use std::fmt::Write as _;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use git2::{ConfigLevel, Oid, Repository, Signature, Time};
use rclaude_sandbox::agent::export::ExportJob;
use rclaude_sandbox::agent::helper::Job;

pub use worktree::Made;

/// New commits in a bundle past which the apply is left to the script's `git fetch`: libgit2's
/// pack indexer resolves deltas on one thread, so a long history is slow to read (git.git's 82k
/// commits: 37 s, where the script's whole fetch and checkout take 22 s with git's
/// `index-pack` on every core). The client, which knows how many commits it bundled, does not
/// ask the helper past this; the helper checks it again.
pub const MAX_NEW_COMMITS: usize = 1000;

/// The empty tree's id.
const EMPTY_TREE: &str = "4b825dc642cb6eb9a060e54bf8d69288fbee4904";

/// The helper's work (`rclaude __rclaude-sandbox-step`, a fresh process per step): the step's
/// answer, or why it is left to the script. Reads the git configuration of the sandbox's
/// `HOME`, as the sandbox's git does.
pub fn run(job: &Job) -> Result<String, String> {
    let home = job.home();
    // SAFETY: called once, before this process uses libgit2 for anything else.
    unsafe {
        git2::opts::set_search_path(ConfigLevel::Global, home)
            .and_then(|()| git2::opts::set_search_path(ConfigLevel::XDG, home.join(".config")))
            .map_err(|e| e.message().to_string())?;
    }
    match job {
        Job::Export(j) => export(j).map(|(answer, _)| answer),
        Job::Apply(j) => apply::apply(j).map(|(answer, _)| answer),
        Job::Query(j) => query::query(j),
    }
}

/// Do the export of `job`: the answer lines and how the tree was made.
pub fn export(job: &ExportJob) -> Result<(String, Made), String> {
    let git_dir = job.work.join(".git");
    let r = git_dir.join("rclaude");
    let identity = identity(&r);
    if !git_dir.is_dir() || identity.is_empty() {
        return Err("the sandbox repository is not initialised".into());
    }
    std::fs::create_dir_all(r.join("tmp"))
        .map_err(|e| format!("creating {}/tmp: {e}", r.display()))?;
    let _lock = Lock::try_take(&r.join("lock"))?;
    let (repo, config) = open(&job.work, &git_dir)?;
    let git = |e: git2::Error| e.message().to_string();

    let mut out = Answer::default();
    out.say("identity", &identity);
    let head = peeled(&repo, "HEAD");
    out.say("head", &head.map(|c| c.to_string()).unwrap_or_default());
    let branch = repo
        .find_reference("HEAD")
        .ok()
        .and_then(|h| h.symbolic_target().ok().flatten().map(str::to_string))
        .map(|t| t.strip_prefix("refs/heads/").unwrap_or(&t).to_string())
        .unwrap_or_default();
    out.say("branch", &branch);

    let fingerprint = fingerprint(&job.home, &config);
    let real = worktree::real_index(&repo)?;
    let (wt, made, _) =
        worktree::tree(&repo, &real, &job.work, job.changed.as_ref(), &fingerprint)?;
    let Some((tip, wip)) = tip(&repo, head, wt).map_err(git)? else {
        out.say("empty", "1");
        out.say("done", "1");
        return Ok((out.0, made));
    };
    out.say("wip", if wip { "1" } else { "0" });
    repo.reference("refs/rclaude/pull/tip", tip, true, "rclaude: pull")
        .map_err(git)?;
    out.say("tip", &tip.to_string());

    let found = bases(&repo, job).map_err(git)?;
    let list: String = found.iter().map(|o| format!(" {o}")).collect();
    out.say("bases", &list);
    let synced = |name| {
        peeled(&repo, name)
            .map(|c| c.to_string())
            .unwrap_or_default()
    };
    out.say("synced_snapshot", &synced("refs/rclaude/snapshot"));
    out.say("synced_index", &synced("refs/rclaude/index"));

    let tmp = r
        .join("tmp")
        .join(format!("native-{}.bundle", uuid::Uuid::new_v4()));
    match bundle::write(&repo, tip, "refs/rclaude/pull/tip", &found, &tmp) {
        Ok(None) => out.say("bundle", "none"),
        Ok(Some(size)) => {
            std::fs::rename(&tmp, &job.out).map_err(|e| {
                let _ = std::fs::remove_file(&tmp);
                format!("moving the bundle to {}: {e}", job.out.display())
            })?;
            out.say("bundle", &job.out_name);
            out.say("size", &size.to_string());
        }
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
    }
    out.say("done", "1");
    Ok((out.0, made))
}

/// The sandbox identity in `.git/rclaude` (`r`); empty when there is none.
fn identity(r: &Path) -> String {
    std::fs::read_to_string(r.join("identity"))
        .ok()
        .and_then(|s| s.lines().next().map(str::to_string))
        .unwrap_or_default()
}

/// The repository at `work` and a snapshot of its configuration, when a step can be done here:
/// the repository and its work tree where the job says (not moved elsewhere by a `.git` file
/// or `core.worktree`), and no filter driver that `git add` would run.
fn open(work: &Path, git_dir: &Path) -> Result<(Repository, git2::Config), String> {
    let repo = Repository::open(work).map_err(|e| e.message().to_string())?;
    let same = |a: &Path, b: &Path| a.canonicalize().ok() == b.canonicalize().ok();
    if !repo.workdir().is_some_and(|w| same(w, work)) || !same(repo.path(), git_dir) {
        return Err("the repository or its work tree is elsewhere".into());
    }
    let config = repo
        .config()
        .and_then(|mut c| c.snapshot())
        .map_err(|e| e.message().to_string())?;
    let filters = config
        .entries(Some("filter\\..*\\.(clean|process)"))
        .map_err(|e| e.message().to_string())?
        .next()
        .is_some();
    if filters {
        return Err("a filter driver is configured".into());
    }
    Ok((repo, config))
}

/// The commit `spec` names, if any (`git rev-parse --verify SPEC^{commit}`).
fn peeled(repo: &Repository, spec: &str) -> Option<Oid> {
    let o = repo.revparse_single(spec).ok()?;
    o.peel_to_commit().ok().map(|c| c.id())
}

/// What the export takes: HEAD when the work tree's tree `wt` is HEAD's, else a WIP commit of
/// it on HEAD (dated as HEAD, so the same edits make the same commit); with whether it is a
/// WIP commit. `None`: no commits and an empty work tree.
fn tip(repo: &Repository, head: Option<Oid>, wt: Oid) -> Result<Option<(Oid, bool)>, git2::Error> {
    let head = head.map(|h| repo.find_commit(h)).transpose()?;
    let empty = Oid::from_str(EMPTY_TREE)?;
    if wt == head.as_ref().map(|c| c.tree_id()).unwrap_or(empty) {
        return Ok(head.map(|c| (c.id(), false)));
    }
    let when = head
        .as_ref()
        .map(|c| c.committer().when().seconds())
        .unwrap_or(0);
    let sig = Signature::new("rclaude (sandbox)", "rclaude@sandbox", &Time::new(when, 0))?;
    let tree = repo.find_tree(wt)?;
    let parents: Vec<&git2::Commit> = head.iter().collect();
    let tip = repo.commit(
        None,
        &sig,
        &sig,
        "rclaude: uncommitted sandbox edits\n",
        &tree,
        &parents,
    )?;
    Ok(Some((tip, true)))
}

/// The commits of `job.bases`, and of the refs under `job.base_refs`, that the sandbox has:
/// what the bundle leaves out.
fn bases(repo: &Repository, job: &ExportJob) -> Result<Vec<Oid>, git2::Error> {
    let mut candidates: Vec<Oid> = job
        .bases
        .iter()
        .filter(|b| b.len() == 40)
        .filter_map(|b| Oid::from_str(b).ok())
        .collect();
    if !job.base_refs.is_empty() {
        for r in repo.references()?.flatten() {
            let Ok(name) = r.name() else { continue };
            let under = job.base_refs.iter().any(|p| {
                name.strip_prefix(p.trim_end_matches('/'))
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
            });
            if let (true, Ok(resolved)) = (under, r.resolve())
                && let Some(o) = resolved.target()
            {
                candidates.push(o);
            }
        }
    }
    Ok(candidates
        .into_iter()
        .filter_map(|o| repo.find_object(o, None).ok()?.peel_to_commit().ok())
        .map(|c| c.id())
        .collect())
}

/// `RCLAUDE:key=value` lines.
#[derive(Default)]
struct Answer(String);

impl Answer {
    fn say(&mut self, key: &str, value: &str) {
        let _ = writeln!(self.0, "RCLAUDE:{key}={value}");
    }
}

/// The sandbox's git configuration outside the work tree (which the agent does not watch), by
/// file size and modification time: when it changes, the export index is rebuilt.
fn fingerprint(home: &Path, config: &git2::Config) -> String {
    let mut files: Vec<PathBuf> = vec![
        home.join(".gitconfig"),
        home.join(".config/git/config"),
        home.join(".config/git/ignore"),
        home.join(".config/git/attributes"),
        PathBuf::from("/etc/gitconfig"),
    ];
    if let Ok(p) = config.get_path("core.excludesFile") {
        files.push(p);
    }
    if let Ok(p) = config.get_path("core.attributesFile") {
        files.push(p);
    }
    let mut s = String::new();
    for f in files {
        let stamp = std::fs::metadata(&f)
            .ok()
            .map(|m| {
                use std::os::unix::fs::MetadataExt;
                format!("{}.{}:{}", m.mtime(), m.mtime_nsec(), m.size())
            })
            .unwrap_or_else(|| "-".into());
        let _ = write!(s, "{}={stamp};", f.display());
    }
    s
}

/// Tries, 10 ms apart, before a busy lock is left to the script.
const BUSY_TRIES: u32 = 20;

/// The sandbox's sync lock (`.git/rclaude/lock`, what the scripts take with `flock`), taken
/// without waiting long: a busy lock leaves the export to the script, which waits and says so.
struct Lock {
    _file: std::fs::File,
}

impl Lock {
    fn try_take(path: &Path) -> Result<Lock, String> {
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| format!("opening {}: {e}", path.display()))?;
        // Briefly: a process forked elsewhere shares the descriptor of a lock just released
        // until it executes.
        for _ in 0..BUSY_TRIES {
            // SAFETY: a valid descriptor, owned by `f` for the lock's lifetime.
            if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
                return Ok(Lock { _file: f });
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        Err("another sync holds the sandbox's lock".into())
    }
}

#[cfg(test)]
mod apply_tests;
#[cfg(test)]
mod tests;
