//! `POST /rclaude/query`: the sync's query step (the sandbox repository's identity, refs and
//! sync records, read only), done by the step helper ([`super::helper`]).

use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};

use super::AgentState;
use super::helper::{self, Job};
use super::paths::Follow;
use crate::provider::QuerySyncRequest;

/// One query, for the helper.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct QueryJob {
    /// The work tree (its repository is `.git` in it).
    pub work: PathBuf,
    /// The sandbox's `HOME` (its git configuration).
    pub home: PathBuf,
}

pub(super) async fn handle(
    State(state): State<Arc<AgentState>>,
    axum::Json(req): axum::Json<QuerySyncRequest>,
) -> Response {
    if !state.step_helper {
        return helper::declined("query", "this agent runs no step helper");
    }
    let work = match state.conf.resolve(&req.workdir, Follow::Yes) {
        Ok(w) => w,
        Err(e) => return super::files::bad(e.to_string()).into_response(),
    };
    // The helper starts in the work tree: a sandbox without one yet is the script's to answer.
    if !work.is_dir() {
        return helper::declined("query", "no work tree yet");
    }
    let job = Job::Query(QueryJob {
        work: work.clone(),
        home: state.conf.home().to_path_buf(),
    });
    helper::respond("query", helper::run(&state, &work, &job).await)
}
