//! `POST /rclaude/apply`: the sync's apply step, done by the step helper ([`super::helper`])
//! from the paths that changed since the last step ([`ChangedPaths`]).

use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};

use super::AgentState;
use super::changes::ChangedPaths;
use super::helper::{self, Job};
use super::paths::Follow;
use crate::provider::ApplySyncRequest;

/// One apply, for the helper.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ApplyJob {
    /// The work tree (its repository is `.git` in it).
    pub work: PathBuf,
    /// The uploaded bundle, when objects were sent.
    pub bundle: Option<PathBuf>,
    /// The sandbox's `HOME` (its git configuration).
    pub home: PathBuf,
    /// What changed in the work tree since the last step asked; `None`: unknown.
    pub changed: Option<ChangedPaths>,
    /// The client's request (object ids, branch, what the laptop has).
    pub request: ApplySyncRequest,
}

pub(super) async fn handle(
    State(state): State<Arc<AgentState>>,
    axum::Json(req): axum::Json<ApplySyncRequest>,
) -> Response {
    if !state.step_helper {
        return helper::declined("apply", "this agent runs no step helper");
    }
    let resolved = state.conf.resolve(&req.workdir, Follow::Yes).and_then(|w| {
        let bundle = req
            .bundle
            .as_deref()
            .map(|b| state.conf.resolve(b, Follow::No))
            .transpose()?;
        Ok((w, bundle))
    });
    let (work, bundle) = match resolved {
        Ok(p) => p,
        Err(e) => return super::files::bad(e.to_string()).into_response(),
    };
    let changed = state.changed_under(&work).await;
    let job = Job::Apply(ApplyJob {
        work: work.clone(),
        bundle,
        home: state.conf.home().to_path_buf(),
        changed,
        request: req,
    });
    helper::respond("apply", helper::run(&state, &work, &job).await)
}
