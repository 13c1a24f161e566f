//! The sync steps that run inside the sandbox: POSIX shell scripts, one per step, run through
//! [`Sandbox::exec`] with their parameters in environment variables (never spliced into the
//! script text). Every git call disables hooks and auto-gc; paths only travel NUL-separated.
//! Scripts answer with `RCLAUDE:key=value` lines on stdout (anything else is ignored).
//!
//! Sandbox layout (all under the repository's `.git`):
//! * `rclaude/identity`: random id written once by [`init_sandbox`];
//! * `rclaude/synced`: what the last complete apply installed (snapshot, index, head, branch);
//! * `rclaude/applying`: marker present while an apply touches HEAD, index and work tree;
//! * `rclaude/lock`: `flock` lock serialising apply/export steps;
//! * `rclaude/tmp/`: uploads (`*.part` renamed when complete), bundles, temporary indexes;
//! * refs: `refs/rclaude/{snapshot,index,head}` (last applied), `refs/rclaude/push/*` (incoming),
//!   `refs/rclaude/saved/<UTC stamp>` (sandbox work saved before a sync),
//!   `refs/rclaude/pull/tip` (last pulled state).

use std::collections::BTreeMap;

use git2::Oid;

use super::scripts::{APPLY, EXPORT, INIT, PRELUDE, QUERY, RESTORE};
use super::{SyncError, parse_oid};
use crate::provider::{ExecRequest, Sandbox, run};

/// Parsed `RCLAUDE:key=value` lines, in order.
#[derive(Debug, Default, Clone)]
pub(crate) struct Answer {
    pub(crate) lines: Vec<(String, String)>,
}

impl Answer {
    fn parse(stdout: &[u8]) -> Answer {
        let text = String::from_utf8_lossy(stdout);
        let lines = text
            .lines()
            .filter_map(|l| l.strip_prefix("RCLAUDE:"))
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Answer { lines }
    }

    pub(crate) fn get(&self, key: &str) -> Option<&str> {
        self.lines
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub(crate) fn all<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.lines
            .iter()
            .filter(move |(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    fn oid(&self, step: &'static str, key: &str) -> Result<Option<Oid>, SyncError> {
        match self.get(key) {
            None | Some("") => Ok(None),
            Some(v) => parse_oid(v).map(Some).map_err(|_| SyncError::Protocol {
                step,
                detail: format!("{key}={v:?} is not an object id"),
            }),
        }
    }
}

/// Run one step's script in the sandbox and check that it finished.
async fn run_step(
    sandbox: &dyn Sandbox,
    step: &'static str,
    body: &str,
    mut env: BTreeMap<String, String>,
) -> Result<Answer, SyncError> {
    env.insert("RC_WORKDIR".into(), sandbox.workdir().to_string());
    let script = format!("{PRELUDE}{body}");
    // cwd: the provider's default (the workdir); scripts `cd` there themselves.
    let req = ExecRequest::shell(script).env(env);
    let out = run(sandbox, req)
        .await
        .map_err(SyncError::sandbox(format!("running the {step} step")))?;
    let answer = Answer::parse(&out.stdout);
    if !out.status.success() {
        let message = match answer.get("error") {
            Some(m) => m.to_string(),
            None if out.status.code < 0 => format!(
                "it was interrupted ({}); run the command again: the next sync completes or repairs the interrupted step",
                out.status.status
            ),
            None => {
                let err = out.stderr_str();
                let tail: Vec<&str> = err.lines().rev().take(4).collect();
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                format!("exit code {}: {}", out.status.code, tail.join(" | "))
            }
        };
        return Err(SyncError::Remote {
            step,
            code: out.status.code,
            message,
        });
    }
    if answer.get("done") != Some("1") {
        return Err(SyncError::Protocol {
            step,
            detail: format!(
                "the step ended without finishing; stderr: {}",
                out.stderr_str().trim()
            ),
        });
    }
    Ok(answer)
}

fn check_identity(step: &'static str, id: &str) -> Result<String, SyncError> {
    let id = id.trim();
    if id.is_empty()
        || id.len() > 100
        || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    {
        return Err(SyncError::Protocol {
            step,
            detail: format!("bad sandbox identity {id:?}"),
        });
    }
    Ok(id.to_string())
}

/// Create the sandbox repository (`git init` in the workdir) and its identity when missing;
/// return the identity. Safe to call on an existing sandbox (nothing is changed then).
pub async fn init_sandbox(sandbox: &dyn Sandbox) -> Result<String, SyncError> {
    check_workdir(sandbox)?;
    let mut env = BTreeMap::new();
    env.insert("RC_NEW_IDENTITY".into(), uuid::Uuid::new_v4().to_string());
    sandbox
        .make_dir(sandbox.workdir())
        .await
        .map_err(SyncError::sandbox(format!(
            "creating {}",
            sandbox.workdir()
        )))?;
    let answer = run_step(sandbox, "init", INIT, env).await?;
    check_identity("init", answer.get("identity").unwrap_or(""))
}

pub(crate) fn check_workdir(sandbox: &dyn Sandbox) -> Result<(), SyncError> {
    let w = sandbox.workdir();
    if !w.starts_with('/')
        || w.contains('\n')
        || w.contains('\0')
        || w.trim_end_matches('/').is_empty()
    {
        return Err(SyncError::invalid(
            "sandbox workdir",
            format!("{w:?} must be an absolute path other than /"),
        ));
    }
    Ok(())
}

/// The repository path inside the sandbox's `.git/rclaude/tmp` for a file named `name`.
pub(crate) fn remote_tmp_path(sandbox: &dyn Sandbox, name: &str) -> String {
    format!(
        "{}/.git/rclaude/tmp/{name}",
        sandbox.workdir().trim_end_matches('/')
    )
}

/// State of the sandbox repository as the query step reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RepoState {
    /// The workdir does not exist.
    Missing,
    /// No repository or no identity yet.
    Uninitialized,
    Ready,
}

/// What the last complete apply installed (`.git/rclaude/synced`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Synced {
    pub(crate) snapshot: Option<Oid>,
    pub(crate) index: Option<Oid>,
    pub(crate) head: Option<Oid>,
    pub(crate) branch: Option<String>,
    pub(crate) excludes: Option<String>,
}

/// The query step's answer.
#[derive(Debug, Clone)]
pub(crate) struct Query {
    pub(crate) state: RepoState,
    pub(crate) identity: String,
    /// `refs/heads/*` and `refs/rclaude/*` with their commits.
    pub(crate) refs: Vec<(String, Oid)>,
    /// An apply was interrupted.
    pub(crate) marker: bool,
    pub(crate) synced: Synced,
}

impl Query {
    pub(crate) fn get_ref(&self, name: &str) -> Option<Oid> {
        self.refs.iter().find(|(n, _)| n == name).map(|(_, o)| *o)
    }
}

/// Ask the sandbox for its identity, HEAD, refs and sync records (read only).
pub(crate) async fn query(sandbox: &dyn Sandbox) -> Result<Query, SyncError> {
    check_workdir(sandbox)?;
    const STEP: &str = "query";
    let a = match run_step(sandbox, STEP, QUERY, BTreeMap::new()).await {
        Ok(a) => a,
        // A process cannot start in a workdir that does not exist yet.
        Err(e @ SyncError::Sandbox { .. }) => match sandbox.stat(sandbox.workdir()).await {
            Ok(None) => {
                return Ok(Query {
                    state: RepoState::Missing,
                    identity: String::new(),
                    refs: Vec::new(),
                    marker: false,
                    synced: Synced::default(),
                });
            }
            _ => return Err(e),
        },
        Err(e) => return Err(e),
    };
    let state = match a.get("state") {
        Some("missing") => RepoState::Missing,
        Some("uninitialized") => RepoState::Uninitialized,
        Some("ready") => RepoState::Ready,
        other => {
            return Err(SyncError::Protocol {
                step: STEP,
                detail: format!("state={other:?}"),
            });
        }
    };
    if state != RepoState::Ready {
        return Ok(Query {
            state,
            identity: String::new(),
            refs: Vec::new(),
            marker: false,
            synced: Synced::default(),
        });
    }
    let identity = check_identity(STEP, a.get("identity").unwrap_or(""))?;
    let mut refs = Vec::new();
    for line in a.all("ref") {
        let (oid, name) = line.split_once(' ').ok_or_else(|| SyncError::Protocol {
            step: STEP,
            detail: format!("bad ref line {line:?}"),
        })?;
        let oid = parse_oid(oid).map_err(|_| SyncError::Protocol {
            step: STEP,
            detail: format!("bad ref line {line:?}"),
        })?;
        refs.push((name.to_string(), oid));
    }
    let synced = Synced {
        snapshot: a.oid(STEP, "synced_snapshot")?,
        index: a.oid(STEP, "synced_index")?,
        head: a.oid(STEP, "synced_head")?,
        branch: a
            .get("synced_branch")
            .filter(|s| !s.is_empty())
            .map(str::to_string),
        excludes: a
            .get("synced_excludes")
            .filter(|s| !s.is_empty())
            .map(str::to_string),
    };
    Ok(Query {
        state,
        identity,
        refs,
        marker: a.get("marker") == Some("1"),
        synced,
    })
}

/// Parameters of the apply step.
#[derive(Debug, Clone)]
pub(crate) struct ApplyParams {
    pub(crate) identity: String,
    /// Path of the uploaded bundle in the sandbox, if objects were sent.
    pub(crate) bundle: Option<String>,
    pub(crate) snapshot: Oid,
    pub(crate) index: Oid,
    pub(crate) head: Option<Oid>,
    /// Branch to check out (short name); `None` = detached at `head`.
    pub(crate) branch: Option<String>,
    /// Commits the laptop has (its new state and the sandbox tips it knows).
    pub(crate) known: Vec<Oid>,
    /// Content of the sandbox's `.git/info/exclude`.
    pub(crate) excludes: String,
    pub(crate) excludes_id: String,
    /// The laptop repository's shallow boundary (`.git/shallow`), when it is shallow.
    pub(crate) shallow: Vec<Oid>,
}

/// A ref the apply step created to keep sandbox work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SavedInSandbox {
    pub(crate) name: String,
    pub(crate) oid: Oid,
    /// `worktree`, `commits`, `index`, `branch`.
    pub(crate) kinds: Vec<String>,
}

/// The apply step's answer.
#[derive(Debug, Clone)]
pub(crate) struct Applied {
    pub(crate) saved: Vec<SavedInSandbox>,
    pub(crate) recovered: bool,
}

/// Verify and fetch the bundle, save sandbox work, install the laptop's state.
pub(crate) async fn apply(sandbox: &dyn Sandbox, p: &ApplyParams) -> Result<Applied, SyncError> {
    const STEP: &str = "apply";
    let mut env = BTreeMap::new();
    env.insert("RC_IDENTITY".into(), p.identity.clone());
    env.insert("RC_BUNDLE".into(), p.bundle.clone().unwrap_or_default());
    env.insert("RC_SNAPSHOT".into(), p.snapshot.to_string());
    env.insert("RC_INDEX".into(), p.index.to_string());
    env.insert(
        "RC_HEAD".into(),
        p.head.map(|o| o.to_string()).unwrap_or_default(),
    );
    env.insert("RC_BRANCH".into(), p.branch.clone().unwrap_or_default());
    let known: Vec<String> = p.known.iter().map(|o| o.to_string()).collect();
    env.insert("RC_KNOWN".into(), known.join(" "));
    env.insert("RC_EXCLUDES".into(), p.excludes.clone());
    env.insert("RC_EXCLUDES_ID".into(), p.excludes_id.clone());
    let shallow: Vec<String> = p.shallow.iter().map(|o| o.to_string()).collect();
    env.insert("RC_SHALLOW".into(), shallow.join(" "));
    let a = run_step(sandbox, STEP, APPLY, env).await?;
    let mut saved = Vec::new();
    for line in a.all("saved") {
        let mut parts = line.split(' ');
        let (Some(name), Some(oid)) = (parts.next(), parts.next()) else {
            return Err(SyncError::Protocol {
                step: STEP,
                detail: format!("bad saved line {line:?}"),
            });
        };
        let oid = parse_oid(oid).map_err(|_| SyncError::Protocol {
            step: STEP,
            detail: format!("bad saved line {line:?}"),
        })?;
        let kinds = parts
            .next()
            .unwrap_or("")
            .split(',')
            .filter(|k| !k.is_empty())
            .map(str::to_string)
            .collect();
        saved.push(SavedInSandbox {
            name: name.to_string(),
            oid,
            kinds,
        });
    }
    Ok(Applied {
        saved,
        recovered: a.get("recovered") == Some("1"),
    })
}

/// Parameters of the restore step.
#[derive(Debug, Clone)]
pub(crate) struct RestoreParams {
    pub(crate) identity: String,
    /// Path of the uploaded bundle in the sandbox, if objects were sent.
    pub(crate) bundle: Option<String>,
    /// The checkpoint's tip: its tree becomes the work tree.
    pub(crate) tip: Oid,
    /// The sandbox HEAD under it (`None`: no commits yet).
    pub(crate) head: Option<Oid>,
    /// Branch HEAD is on (short name); `None` = detached at `head`.
    pub(crate) branch: Option<String>,
}

/// Fetch a checkpoint's commits and make the work tree, HEAD and branch what the checkpoint
/// recorded, leaving what the last sync installed as it is (so the checkpoint's edits count as
/// sandbox work). Answers the tree the work tree has afterwards.
pub(crate) async fn restore(sandbox: &dyn Sandbox, p: &RestoreParams) -> Result<Oid, SyncError> {
    const STEP: &str = "restore";
    let mut env = BTreeMap::new();
    env.insert("RC_IDENTITY".into(), p.identity.clone());
    env.insert("RC_BUNDLE".into(), p.bundle.clone().unwrap_or_default());
    env.insert("RC_TIP".into(), p.tip.to_string());
    env.insert(
        "RC_HEAD".into(),
        p.head.map(|o| o.to_string()).unwrap_or_default(),
    );
    env.insert("RC_BRANCH".into(), p.branch.clone().unwrap_or_default());
    let a = run_step(sandbox, STEP, RESTORE, env).await?;
    a.oid(STEP, "tree")?.ok_or(SyncError::Protocol {
        step: STEP,
        detail: "no tree in the answer".into(),
    })
}

/// What the export step bundles.
#[derive(Debug, Clone)]
pub(crate) enum ExportMode {
    /// The sandbox's HEAD plus, when its work tree differs, a WIP commit on top.
    Worktree,
    /// These refs as they are.
    Refs(Vec<String>),
}

/// The export step's answer.
#[derive(Debug, Clone, Default)]
pub(crate) struct Exported {
    pub(crate) identity: String,
    /// Worktree mode: the sandbox HEAD commit and branch.
    pub(crate) head: Option<Oid>,
    pub(crate) branch: Option<String>,
    /// Worktree mode: the exported commit (HEAD or the WIP commit on it); `None` when the
    /// sandbox has no commits and an empty work tree.
    pub(crate) tip: Option<Oid>,
    pub(crate) wip: bool,
    /// Refs mode: `(name, oid)`.
    pub(crate) refs: Vec<(String, Oid)>,
    /// Path and size of the bundle in the sandbox; `None` when the laptop has everything.
    pub(crate) bundle: Option<(String, u64)>,
}

/// Snapshot the sandbox (or take refs) and bundle what the laptop lacks (`bases` = commits the
/// laptop has; those the sandbox also has become the bundle's `--not` bases).
pub(crate) async fn export(
    sandbox: &dyn Sandbox,
    mode: &ExportMode,
    bases: &[Oid],
    out: &str,
) -> Result<Exported, SyncError> {
    const STEP: &str = "export";
    let mut env = BTreeMap::new();
    match mode {
        ExportMode::Worktree => {
            env.insert("RC_MODE".into(), "worktree".into());
            env.insert("RC_REFS".into(), String::new());
        }
        ExportMode::Refs(refs) => {
            for r in refs {
                if !r.starts_with("refs/") || !git2::Reference::is_valid_name(r) {
                    return Err(SyncError::invalid(
                        "sandbox ref",
                        format!("{r:?} is not a full ref name (refs/...)"),
                    ));
                }
            }
            env.insert("RC_MODE".into(), "refs".into());
            env.insert("RC_REFS".into(), refs.join(" "));
        }
    }
    let bases: Vec<String> = bases.iter().map(|o| o.to_string()).collect();
    env.insert("RC_BASES".into(), bases.join(" "));
    env.insert("RC_OUT".into(), out.to_string());
    let a = run_step(sandbox, STEP, EXPORT, env).await?;
    let mut e = Exported {
        identity: check_identity(STEP, a.get("identity").unwrap_or(""))?,
        head: a.oid(STEP, "head")?,
        branch: a
            .get("branch")
            .filter(|s| !s.is_empty())
            .map(str::to_string),
        tip: a.oid(STEP, "tip")?,
        wip: a.get("wip") == Some("1"),
        ..Exported::default()
    };
    for line in a.all("ref") {
        let (oid, name) = line.split_once(' ').ok_or_else(|| SyncError::Protocol {
            step: STEP,
            detail: format!("bad ref line {line:?}"),
        })?;
        let oid = parse_oid(oid).map_err(|_| SyncError::Protocol {
            step: STEP,
            detail: format!("bad ref line {line:?}"),
        })?;
        e.refs.push((name.to_string(), oid));
    }
    match a.get("bundle") {
        None | Some("none") => {}
        Some(path) => {
            if path != out {
                return Err(SyncError::Protocol {
                    step: STEP,
                    detail: format!("bundle written to {path:?}, not {out:?}"),
                });
            }
            let size = a
                .get("size")
                .and_then(|s| s.trim().parse().ok())
                .ok_or_else(|| SyncError::Protocol {
                    step: STEP,
                    detail: "bundle size missing".into(),
                })?;
            e.bundle = Some((path.to_string(), size));
        }
    }
    Ok(e)
}
