//! Placeholder sync (plain copy of tracked + untracked files) until the git-bundle engine lands.
use crate::provider::Sandbox;
use serde::{Deserialize, Serialize};
use std::path::Path;
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct SyncState {
    pub identity: String,
}
pub struct PushOptions {
    pub extra_ignores: Vec<String>,
    pub force_full: bool,
    pub submodules: bool,
}
pub struct PullOptions {
    pub branch_template: String,
    pub session: String,
    pub apply: bool,
    pub sandbox_ref: Option<String>,
}
pub struct Saved;
impl Saved {
    pub fn describe(&self) -> String {
        String::new()
    }
}
pub struct PushReport {
    pub sent_bytes: u64,
    pub objects: u64,
    pub skipped_nothing_new: bool,
    pub saved: Option<Saved>,
    pub state: SyncState,
}
pub struct PullReport {
    pub branch: String,
}
impl PullReport {
    pub fn summary(&self) -> String {
        String::new()
    }
    pub fn hint_lines(&self) -> Vec<String> {
        vec![]
    }
    pub fn is_empty(&self) -> bool {
        true
    }
}
pub trait SyncProgress: Send + Sync {
    fn stage(&self, name: &str);
    fn objects(&self, done: u64, total: u64);
    fn bytes(&self, done: u64, total: Option<u64>);
}
#[derive(Debug, thiserror::Error)]
#[error("stub")]
pub struct SyncError;
impl From<SyncError> for crate::error::CliError {
    fn from(e: SyncError) -> Self {
        crate::error::CliError::sync(e.to_string())
    }
}
pub async fn push(
    repo: &Path,
    sb: &dyn Sandbox,
    _s: Option<&SyncState>,
    _o: &PushOptions,
    _p: &dyn SyncProgress,
) -> Result<PushReport, SyncError> {
    // plain copy of tracked + untracked files via git ls-files
    let out = std::process::Command::new("git")
        .args(["ls-files", "-co", "--exclude-standard", "-z"])
        .current_dir(repo)
        .output()
        .unwrap();
    let mut files = vec![];
    for p in out.stdout.split(|b| *b == 0).filter(|p| !p.is_empty()) {
        let rel = String::from_utf8_lossy(p).to_string();
        if let Ok(b) = std::fs::read(repo.join(&rel)) {
            files.push(crate::provider::FileUpload {
                path: format!("{}/{}", sb.workdir(), rel),
                contents: b.into(),
            });
        }
    }
    sb.write_files(files).await.unwrap();
    Ok(PushReport {
        sent_bytes: 0,
        objects: 0,
        skipped_nothing_new: false,
        saved: None,
        state: SyncState::default(),
    })
}
pub async fn pull(
    _r: &Path,
    _sb: &dyn Sandbox,
    _s: Option<&SyncState>,
    _o: &PullOptions,
    _p: &dyn SyncProgress,
) -> Result<PullReport, SyncError> {
    Ok(PullReport {
        branch: String::new(),
    })
}
