//! The step helper: the agent's own executable run as [`HELPER`] (`rclaude` implements it with
//! `rclaude_sandbox_git::native`) to do one sync step in one process instead of a shell script
//! and tens of git processes. It is started like any sandbox process (inside bubblewrap when
//! the sandbox has it: it sees what the script would, and nothing of the host beyond its own
//! executable), given a [`Job`] on stdin, and prints the step's `RCLAUDE:key=value` answer; or
//! exits with [`HELPER_DECLINED`] and the reason on stderr, and the client runs the script.

use std::path::PathBuf;
use std::process::Stdio;

use axum::response::{IntoResponse, Response};
use tokio::io::AsyncWriteExt;

use super::AgentState;
use super::apply::ApplyJob;
use super::export::ExportJob;
use super::query::QueryJob;

/// First argument that makes the agent's executable the step helper.
pub const HELPER: &str = "__rclaude-sandbox-step";

/// The helper's exit code when it leaves the step to the script.
pub const HELPER_DECLINED: i32 = 3;

/// One step for the helper. Paths as the helper sees them (the sandbox's root is bound at its
/// own path).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(tag = "step", rename_all = "snake_case")]
pub enum Job {
    Export(ExportJob),
    Apply(ApplyJob),
    Query(QueryJob),
}

impl Job {
    /// The sandbox's `HOME` (its git configuration), as the job names it.
    pub fn home(&self) -> &std::path::Path {
        match self {
            Job::Export(j) => &j.home,
            Job::Apply(j) => &j.home,
            Job::Query(j) => &j.home,
        }
    }
}

/// Run the helper on `job` in `work`: its answer, or why there is none.
pub(super) async fn run(
    state: &AgentState,
    work: &std::path::Path,
    job: &Job,
) -> Result<String, String> {
    // The agent's own executable, even when the file was replaced since it started.
    let exe = PathBuf::from(format!("/proc/{}/exe", std::process::id()));
    let mut cmd = state
        .launcher
        .helper_command(state.conf.root(), work, &exe, &[HELPER.to_string()])
        .map_err(|e| format!("cannot start the step helper: {e}"))?;
    cmd.env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("HOME", state.conf.home())
        .env("LC_ALL", "C")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot start the step helper: {e}"))?;
    let input = serde_json::to_vec(job).map_err(|e| e.to_string())?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(&input)
            .await
            .map_err(|e| format!("writing to the step helper: {e}"))?;
    }
    let out = child
        .wait_with_output()
        .await
        .map_err(|e| format!("waiting for the step helper: {e}"))?;
    if out.status.success() {
        return String::from_utf8(out.stdout).map_err(|e| e.to_string());
    }
    Err(format!(
        "the step helper ended with {}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    ))
}

/// The helper's answer, or why the client should run the script.
pub(super) fn respond(step: &str, result: Result<String, String>) -> Response {
    match result {
        Ok(answer) => axum::Json(serde_json::json!({ "answer": answer })).into_response(),
        Err(reason) => declined(step, &reason),
    }
}

pub(super) fn declined(step: &str, reason: &str) -> Response {
    tracing::debug!("native {step} declined: {reason}");
    axum::Json(serde_json::json!({ "declined": reason })).into_response()
}
