//! The query step: the sandbox repository's identity, refs and sync records (read only).

use std::collections::BTreeMap;

use git2::Oid;
use rclaude_sandbox::provider::{QuerySyncRequest, Sandbox};

use crate::StepError;
use crate::init::check_workdir;
use crate::scripts::QUERY;
use crate::step::{Answer, check_identity, helper_answer, run_step};

/// State of the sandbox repository as the query step reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RepoState {
    /// The workdir does not exist.
    Missing,
    /// No repository or no identity yet.
    Uninitialized,
    Ready,
}

/// What the last complete apply installed (`.git/rclaude/synced`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Synced {
    pub snapshot: Option<Oid>,
    pub index: Option<Oid>,
    pub head: Option<Oid>,
    pub branch: Option<String>,
    pub excludes: Option<String>,
}

/// The query step's answer.
#[derive(Debug, Clone)]
pub struct Query {
    pub state: RepoState,
    pub identity: String,
    /// `refs/heads/*` and `refs/rclaude/*` with their commits.
    pub refs: Vec<(String, Oid)>,
    /// An apply was interrupted.
    pub marker: bool,
    pub synced: Synced,
}

impl Query {
    pub fn get_ref(&self, name: &str) -> Option<Oid> {
        self.refs.iter().find(|(n, _)| n == name).map(|(_, o)| *o)
    }
}

/// The query done by the sandbox itself ([`Sandbox::query_sync`]); `None`: run the script.
async fn native(sandbox: &dyn Sandbox) -> Option<Answer> {
    let req = QuerySyncRequest {
        workdir: sandbox.workdir().to_string(),
    };
    helper_answer(sandbox, "query", sandbox.query_sync(&req).await)
}

/// Ask the sandbox for its identity, HEAD, refs and sync records (read only).
pub async fn query(sandbox: &dyn Sandbox) -> Result<Query, StepError> {
    check_workdir(sandbox)?;
    const STEP: &str = "query";
    let answered = match native(sandbox).await {
        Some(a) => Ok(a),
        None => run_step(sandbox, STEP, QUERY, BTreeMap::new()).await,
    };
    let a = match answered {
        Ok(a) => a,
        // A process cannot start in a workdir that does not exist yet.
        Err(e @ StepError::Sandbox { .. }) => match sandbox.stat(sandbox.workdir()).await {
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
            return Err(StepError::Protocol {
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
    let refs = a.refs(STEP)?;
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
