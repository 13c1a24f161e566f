//! `POST /rclaude/export`: the export step's work-tree mode, done by the step helper
//! ([`super::helper`]). The agent adds what only it knows: which paths changed since the last
//! export ([`ChangedPaths`]).

use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};

use super::AgentState;
pub use super::changes::ChangedPaths;
use super::helper::{self, Job};
use super::paths::Follow;
use crate::provider::WorktreeExportRequest;

/// One export, for the helper.
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
    if !state.step_helper {
        return helper::declined("export", "this agent runs no step helper");
    }
    let resolved = state
        .conf
        .resolve(&req.workdir, Follow::Yes)
        .and_then(|work| Ok((work, state.conf.resolve(&req.out, Follow::No)?)));
    let (work, out) = match resolved {
        Ok(p) => p,
        Err(e) => return super::files::bad(e.to_string()).into_response(),
    };
    let changed = state.changed_under(&work).await;
    let job = Job::Export(ExportJob {
        work: work.clone(),
        out,
        out_name: req.out,
        bases: req.bases,
        base_refs: req.base_refs,
        home: state.conf.home().to_path_buf(),
        changed,
    });
    helper::respond("export", helper::run(&state, &work, &job).await)
}
