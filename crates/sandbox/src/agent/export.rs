//! `POST /rclaude/export`: the export step's work-tree mode, done by one helper process instead
//! of a shell and some twenty git processes. The helper is the agent's own executable run as
//! [`HELPER`] (`rclaude` implements it with `rclaude_sandbox_git::native`), started like any
//! sandbox process (inside bubblewrap when the sandbox has it: it sees what the script would),
//! given the job on stdin. The agent adds what only it knows: which paths changed since the
//! last export ([`ChangedPaths`]). When the helper declines, the answer says so and the client
//! runs the step's script as for any other sandbox.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use tokio::io::AsyncWriteExt;

use super::AgentState;
pub use super::changes::ChangedPaths;
use super::paths::Follow;
use crate::provider::WorktreeExportRequest;

/// First argument that makes the agent's executable the export helper: it reads an
/// [`ExportJob`] (JSON) on stdin and prints the step's answer, or exits with
/// [`HELPER_DECLINED`] and the reason on stderr.
pub const HELPER: &str = "__rclaude-sandbox-export";

/// The helper's exit code when it leaves the export to the script.
pub const HELPER_DECLINED: i32 = 3;

/// One export, for the helper. Paths as the helper sees them (the sandbox's root is bound at
/// its own path).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ExportJob {
    /// The work tree (its repository is `.git` in it).
    pub work: PathBuf,
    /// Where the bundle goes.
    pub out: PathBuf,
    /// `out` as the client named it: what the answer reports.
    pub out_name: String,
    /// Commits the receiver has.
    pub bases: Vec<String>,
    /// Ref prefixes whose commits the receiver has too.
    pub base_refs: Vec<String>,
    /// The sandbox's `HOME` (its git configuration).
    pub home: PathBuf,
    /// What changed in the work tree since the last export asked; `None`: unknown.
    pub changed: Option<ChangedPaths>,
}

pub(super) async fn handle(
    State(state): State<Arc<AgentState>>,
    axum::Json(req): axum::Json<WorktreeExportRequest>,
) -> Response {
    if !state.native_export {
        return declined("this agent runs no export helper");
    }
    let resolved = state
        .conf
        .resolve(&req.workdir, Follow::Yes)
        .and_then(|work| Ok((work, state.conf.resolve(&req.out, Follow::No)?)));
    let (work, out) = match resolved {
        Ok(p) => p,
        Err(e) => return super::files::bad(e.to_string()).into_response(),
    };
    let changes = state.clone();
    let dir = work.clone();
    let changed = tokio::task::spawn_blocking(move || changes.changes.take_changed(&dir))
        .await
        .ok()
        .flatten();
    let job = ExportJob {
        work,
        out,
        out_name: req.out,
        bases: req.bases,
        base_refs: req.base_refs,
        home: state.conf.home().to_path_buf(),
        changed,
    };
    match run_helper(&state, &job).await {
        Ok(answer) => axum::Json(serde_json::json!({ "answer": answer })).into_response(),
        Err(reason) => declined(&reason),
    }
}

/// Run the helper on `job`: its answer, or why there is none.
async fn run_helper(state: &AgentState, job: &ExportJob) -> Result<String, String> {
    // The agent's own executable, even when the file was replaced since it started.
    let exe = PathBuf::from(format!("/proc/{}/exe", std::process::id()));
    let mut cmd = state
        .launcher
        .helper_command(state.conf.root(), &job.work, &exe, &[HELPER.to_string()])
        .map_err(|e| format!("cannot start the export helper: {e}"))?;
    cmd.env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("HOME", &job.home)
        .env("LC_ALL", "C")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot start the export helper: {e}"))?;
    let input = serde_json::to_vec(job).map_err(|e| e.to_string())?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(&input)
            .await
            .map_err(|e| format!("writing to the export helper: {e}"))?;
    }
    let out = child
        .wait_with_output()
        .await
        .map_err(|e| format!("waiting for the export helper: {e}"))?;
    if out.status.success() {
        return String::from_utf8(out.stdout).map_err(|e| e.to_string());
    }
    Err(format!(
        "the export helper ended with {}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    ))
}

fn declined(reason: &str) -> Response {
    tracing::debug!("native export declined: {reason}");
    axum::Json(serde_json::json!({ "declined": reason })).into_response()
}
