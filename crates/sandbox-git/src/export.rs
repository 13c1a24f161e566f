//! The export step: snapshot the sandbox's work (or take refs) and bundle what the receiver
//! lacks.

use std::collections::BTreeMap;

use git2::Oid;
use rclaude_sandbox::provider::{Sandbox, WorktreeExportRequest};

use crate::StepError;
use crate::scripts::EXPORT;
use crate::step::{Answer, check_identity, helper_answer, parse_oid, run_step};

/// What the export step bundles.
#[derive(Debug, Clone)]
pub enum ExportMode {
    /// The sandbox's HEAD plus, when its work tree differs, a WIP commit on top.
    Worktree,
    /// These refs as they are.
    Refs(Vec<String>),
}

/// The export step's answer.
#[derive(Debug, Clone, Default)]
pub struct Exported {
    pub identity: String,
    /// Worktree mode: the sandbox HEAD commit and branch.
    pub head: Option<Oid>,
    pub branch: Option<String>,
    /// Worktree mode: the exported commit (HEAD or the WIP commit on it); `None` when the
    /// sandbox has no commits and an empty work tree.
    pub tip: Option<Oid>,
    pub wip: bool,
    /// Refs mode: `(name, oid)`.
    pub refs: Vec<(String, Oid)>,
    /// Path and size of the bundle in the sandbox; `None` when the laptop has everything.
    pub bundle: Option<(String, u64)>,
    /// The bases (given or found under `base_refs`) the sandbox has: the bundle's `--not` list.
    pub bases_found: Vec<Oid>,
    /// Worktree mode: the (snapshot, index) commits the last sync installed, when there was one.
    pub synced: Option<(Oid, Oid)>,
}

/// The work-tree export done by the sandbox itself, when it offers to
/// ([`Sandbox::export_worktree`]); `None`: run the script.
async fn native(
    sandbox: &dyn Sandbox,
    bases: &[String],
    base_refs: &[&str],
    out: &str,
) -> Option<Answer> {
    let req = WorktreeExportRequest {
        workdir: sandbox.workdir().to_string(),
        out: out.to_string(),
        bases: bases.to_vec(),
        base_refs: base_refs.iter().map(|s| s.to_string()).collect(),
    };
    helper_answer(sandbox, "export", sandbox.export_worktree(&req).await)
}

/// Snapshot the sandbox (or take refs) and bundle what the receiver lacks (`bases` = commits it
/// has, and the sandbox's refs under `base_refs`, e.g. `refs/remotes`, when it has the
/// published history; those the sandbox has become the bundle's `--not` bases).
pub async fn export(
    sandbox: &dyn Sandbox,
    mode: &ExportMode,
    bases: &[Oid],
    base_refs: &[&str],
    out: &str,
) -> Result<Exported, StepError> {
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
                    return Err(StepError::invalid(
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
    for r in base_refs {
        if !r.starts_with("refs/") || r.contains(|c: char| c.is_whitespace() || c == '*') {
            return Err(StepError::invalid(
                "base refs",
                format!("{r:?} is not a ref prefix (refs/...)"),
            ));
        }
    }
    env.insert("RC_BASE_REFS".into(), base_refs.join(" "));
    env.insert("RC_OUT".into(), out.to_string());
    let native = match mode {
        ExportMode::Worktree => native(sandbox, &bases, base_refs, out).await,
        ExportMode::Refs(_) => None,
    };
    let a = match native {
        Some(a) => a,
        None => run_step(sandbox, STEP, EXPORT, env).await?,
    };
    let mut e = Exported {
        identity: check_identity(STEP, a.get("identity").unwrap_or(""))?,
        head: a.oid(STEP, "head")?,
        branch: a
            .get("branch")
            .filter(|s| !s.is_empty())
            .map(str::to_string),
        tip: a.oid(STEP, "tip")?,
        wip: a.get("wip") == Some("1"),
        synced: a
            .oid(STEP, "synced_snapshot")?
            .zip(a.oid(STEP, "synced_index")?),
        ..Exported::default()
    };
    for b in a.get("bases").unwrap_or("").split_whitespace() {
        e.bases_found
            .push(parse_oid(b).ok_or_else(|| StepError::Protocol {
                step: STEP,
                detail: format!("bad base {b:?}"),
            })?);
    }
    e.refs = a.refs(STEP)?;
    match a.get("bundle") {
        None | Some("none") => {}
        Some(path) => {
            if path != out {
                return Err(StepError::Protocol {
                    step: STEP,
                    detail: format!("bundle written to {path:?}, not {out:?}"),
                });
            }
            let size = a
                .get("size")
                .and_then(|s| s.trim().parse().ok())
                .ok_or_else(|| StepError::Protocol {
                    step: STEP,
                    detail: "bundle size missing".into(),
                })?;
            e.bundle = Some((path.to_string(), size));
        }
    }
    Ok(e)
}
