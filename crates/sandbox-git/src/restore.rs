//! The restore step: lay a checkpoint over a (new) sandbox.

use std::collections::BTreeMap;

use git2::Oid;
use rclaude_sandbox::provider::Sandbox;

use crate::StepError;
use crate::scripts::RESTORE;
use crate::step::run_step;

/// Parameters of the restore step.
#[derive(Debug, Clone)]
pub struct RestoreParams {
    pub identity: String,
    /// Path of the uploaded bundle in the sandbox, if objects were sent.
    pub bundle: Option<String>,
    /// The checkpoint's tip: its tree becomes the work tree.
    pub tip: Oid,
    /// The sandbox HEAD under it (`None`: no commits yet).
    pub head: Option<Oid>,
    /// Branch HEAD is on (short name); `None` = detached at `head`.
    pub branch: Option<String>,
}

/// Fetch a checkpoint's commits and make the work tree, HEAD and branch what the checkpoint
/// recorded, leaving what the last sync installed as it is (so the checkpoint's edits count as
/// sandbox work). Answers the tree the work tree has afterwards.
pub async fn restore(sandbox: &dyn Sandbox, p: &RestoreParams) -> Result<Oid, StepError> {
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
    a.oid(STEP, "tree")?.ok_or(StepError::Protocol {
        step: STEP,
        detail: "no tree in the answer".into(),
    })
}
