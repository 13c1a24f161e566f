//! The init step, and the checks and paths every step shares.

use std::collections::BTreeMap;

use rclaude_sandbox::provider::Sandbox;

use crate::StepError;
use crate::scripts::INIT;
use crate::step::{check_identity, run_step};

/// Create the sandbox repository (`git init` in the workdir) and its identity when missing;
/// return the identity. Safe to call on an existing sandbox (nothing is changed then).
pub async fn init_sandbox(sandbox: &dyn Sandbox) -> Result<String, StepError> {
    check_workdir(sandbox)?;
    let mut env = BTreeMap::new();
    env.insert("RC_NEW_IDENTITY".into(), uuid::Uuid::new_v4().to_string());
    sandbox
        .make_dir(sandbox.workdir())
        .await
        .map_err(StepError::sandbox(format!(
            "creating {}",
            sandbox.workdir()
        )))?;
    let answer = run_step(sandbox, "init", INIT, env).await?;
    check_identity("init", answer.get("identity").unwrap_or(""))
}

pub fn check_workdir(sandbox: &dyn Sandbox) -> Result<(), StepError> {
    let w = sandbox.workdir();
    if !w.starts_with('/')
        || w.contains('\n')
        || w.contains('\0')
        || w.trim_end_matches('/').is_empty()
    {
        return Err(StepError::invalid(
            "sandbox workdir",
            format!("{w:?} must be an absolute path other than /"),
        ));
    }
    Ok(())
}

/// The repository path inside the sandbox's `.git/rclaude/tmp` for a file named `name`.
pub fn remote_tmp_path(sandbox: &dyn Sandbox, name: &str) -> String {
    format!(
        "{}/.git/rclaude/tmp/{name}",
        sandbox.workdir().trim_end_matches('/')
    )
}
