//! Sandbox work a sync saved (`refs/rclaude/saved/<time>`), brought back here as local refs of
//! the same names, with the commands that show it.

use std::path::{Path, PathBuf};

use git2::Oid;

use super::push::{SavedRef, download_bundle};
use super::push_plan::WantedRef;
use super::remote::{self, ExportMode};
use super::{SyncError, SyncProgress, blocking, bundle, free_ref_name, open_repo, short};
use crate::provider::Sandbox;

fn describe_kind(k: &str) -> String {
    match k {
        "worktree" => "uncommitted edits".into(),
        "commits" => "commits made in the sandbox".into(),
        "index" => "staged changes".into(),
        "branch" => "commits on the branch being replaced".into(),
        other => other.into(),
    }
}

pub(super) fn saved_ref(
    local_name: &str,
    wanted: &WantedRef,
    local: bool,
    prev_snapshot: Option<Oid>,
) -> SavedRef {
    let sandbox_name = wanted.name.as_str();
    let mut commands = vec![format!(
        "git log --stat -p HEAD..{local_name}    # what the sandbox had that HEAD lacks"
    )];
    if let Some(p) = prev_snapshot {
        commands.push(format!(
            "git diff {} {local_name}    # sandbox changes since the last sync",
            short(&p)
        ));
    }
    commands.push(format!(
        "git switch -c sandbox-work {local_name}    # continue from it on a branch"
    ));
    if !local {
        commands = vec![format!(
            "rclaude pull --ref {sandbox_name}    # bring it here (the next sync also retries)"
        )];
    }
    SavedRef {
        name: local_name.to_string(),
        sandbox_name: sandbox_name.to_string(),
        oid: wanted.oid.to_string(),
        kinds: wanted.kinds.iter().map(|k| describe_kind(k)).collect(),
        local,
        earlier: wanted.earlier,
        commands,
    }
}

/// Fetch saved refs from the sandbox into local refs of the same name.
pub(super) async fn bring_back(
    repo_path: &Path,
    sandbox: &dyn Sandbox,
    wanted: Vec<WantedRef>,
    mut bases: Vec<Oid>,
    prev_snapshot: Option<Oid>,
    progress: &dyn SyncProgress,
) -> Result<Vec<SavedRef>, SyncError> {
    progress.stage("fetch-saved");
    // Commits we already have for other saved refs help as bases too.
    let names: Vec<String> = wanted.iter().map(|w| w.name.clone()).collect();
    if let Some(p) = prev_snapshot {
        bases.push(p);
    }
    let fetched = fetch_refs(repo_path, sandbox, ExportMode::Refs(names), bases, progress).await?;
    let mut out = Vec::new();
    for w in wanted {
        let local_name = fetched
            .iter()
            .find(|(sn, ..)| *sn == w.name)
            .map(|(_, ln, _)| ln.clone())
            .unwrap_or_else(|| w.name.clone());
        out.push(saved_ref(&local_name, &w, true, prev_snapshot));
    }
    Ok(out)
}

/// Export refs from the sandbox and create them locally under the same names (a taken name with
/// another value gets a `-2`, `-3` suffix). Returns `(sandbox name, local name, oid)`.
async fn fetch_refs(
    repo_path: &Path,
    sandbox: &dyn Sandbox,
    mode: ExportMode,
    bases: Vec<Oid>,
    progress: &dyn SyncProgress,
) -> Result<Vec<(String, String, Oid)>, SyncError> {
    let out = remote::remote_tmp_path(sandbox, &format!("export-{}.bundle", uuid::Uuid::new_v4()));
    let e = remote::export(sandbox, &mode, &bases, &[], &out).await?;
    let local_bundle = match &e.bundle {
        Some((path, size)) => {
            Some(download_bundle(repo_path, sandbox, path, *size, progress).await?)
        }
        None => None,
    };
    let path: PathBuf = repo_path.to_path_buf();
    let refs = e.refs.clone();
    blocking(progress, move |p| {
        let repo = open_repo(&path)?;
        if let Some(b) = &local_bundle {
            p.stage("index");
            bundle::read(&repo, b, p)?;
        }
        let mut done = Vec::new();
        for (name, oid) in refs {
            repo.find_commit(oid).map_err(|_| SyncError::Protocol {
                step: "export",
                detail: format!("{name} ({oid}) did not arrive"),
            })?;
            let local_name = match repo.refname_to_id(&name) {
                Ok(o) if o == oid => name.clone(),
                Ok(_) => {
                    let (prefix, stamp) = name
                        .rsplit_once('/')
                        .unwrap_or(("refs/rclaude/saved", &name));
                    free_ref_name(&repo, &format!("{prefix}/"), stamp)
                }
                Err(_) => name.clone(),
            };
            if local_name != name || repo.refname_to_id(&name).is_err() {
                repo.reference(
                    &local_name,
                    oid,
                    false,
                    "rclaude: sandbox work saved before a sync",
                )
                .map_err(SyncError::git(format!("creating {local_name}")))?;
            }
            done.push((name, local_name, oid));
        }
        Ok(done)
    })
    .await
}
