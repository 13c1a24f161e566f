//! The apply step: verify and fetch the laptop's bundle, save sandbox work, install the
//! laptop's state.

use std::collections::BTreeMap;

use git2::Oid;
use rclaude_sandbox::provider::{ApplySyncRequest, Sandbox};

use crate::StepError;
use crate::scripts::APPLY;
use crate::step::{Answer, helper_answer, parse_oid, run_step};

/// Parameters of the apply step.
#[derive(Debug, Clone)]
pub struct ApplyParams {
    pub identity: String,
    /// Path of the uploaded bundle in the sandbox, if objects were sent.
    pub bundle: Option<String>,
    pub snapshot: Oid,
    pub index: Oid,
    pub head: Option<Oid>,
    /// Branch to check out (short name); `None` = detached at `head`.
    pub branch: Option<String>,
    /// Commits the laptop has (its new state and the sandbox tips it knows).
    pub known: Vec<Oid>,
    /// Content of the sandbox's `.git/info/exclude`.
    pub excludes: String,
    pub excludes_id: String,
    /// The laptop repository's shallow boundary (`.git/shallow`), when it is shallow.
    pub shallow: Vec<Oid>,
    /// How many commits the bundle carries (0 without one): past
    /// [`crate::native::MAX_NEW_COMMITS`] the script's `git fetch` reads it, and the step
    /// helper is not asked.
    pub bundle_commits: u64,
}

/// A ref the apply step created to keep sandbox work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavedInSandbox {
    pub name: String,
    pub oid: Oid,
    /// `worktree`, `commits`, `index`, `branch`.
    pub kinds: Vec<String>,
}

/// The apply step's answer.
#[derive(Debug, Clone)]
pub struct Applied {
    pub saved: Vec<SavedInSandbox>,
    pub recovered: bool,
}

/// The apply done by the sandbox itself ([`Sandbox::apply_sync`]); `None`: run the script (as
/// for a shallow repository or a long history, which it never does).
async fn native(sandbox: &dyn Sandbox, p: &ApplyParams) -> Option<Answer> {
    if !p.shallow.is_empty() || p.bundle_commits > crate::native::MAX_NEW_COMMITS as u64 {
        return None;
    }
    let req = ApplySyncRequest {
        workdir: sandbox.workdir().to_string(),
        identity: p.identity.clone(),
        bundle: p.bundle.clone(),
        snapshot: p.snapshot.to_string(),
        index: p.index.to_string(),
        head: p.head.map(|o| o.to_string()),
        branch: p.branch.clone(),
        known: p.known.iter().map(|o| o.to_string()).collect(),
        excludes: p.excludes.clone(),
        excludes_id: p.excludes_id.clone(),
    };
    helper_answer(sandbox, "apply", sandbox.apply_sync(&req).await)
}

/// Verify and fetch the bundle, save sandbox work, install the laptop's state.
pub async fn apply(sandbox: &dyn Sandbox, p: &ApplyParams) -> Result<Applied, StepError> {
    if let Some(a) = native(sandbox, p).await {
        return answered(&a);
    }
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
    answered(&run_step(sandbox, "apply", APPLY, env).await?)
}

/// What the step's answer says.
fn answered(a: &Answer) -> Result<Applied, StepError> {
    const STEP: &str = "apply";
    let mut saved = Vec::new();
    for line in a.all("saved") {
        let mut parts = line.split(' ');
        let (Some(name), Some(oid)) = (parts.next(), parts.next()) else {
            return Err(StepError::Protocol {
                step: STEP,
                detail: format!("bad saved line {line:?}"),
            });
        };
        let oid = parse_oid(oid).ok_or_else(|| StepError::Protocol {
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
