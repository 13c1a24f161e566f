//! Checkpoints kept on the server (when one is configured): the newest one is copied there
//! after it is taken here, and taken back from there when this machine has none (its state
//! directory was lost, or this is another machine).
//!
//! Each copy is a bundle that builds on an earlier copy of the same session (its `base`), so
//! only new objects cross the wire. A copy that carries more than [`ANCHOR_BYTES`] becomes an
//! anchor later copies build on, so copies stay small as a session's work grows; retention on
//! the server keeps every copy a kept one builds on.

use std::path::PathBuf;

use serde_json::{Value, json};

use super::context::Ctx;
use crate::error::{CliError, CliResult};
use crate::gitsync::checkpoint::Checkpoint;
use crate::gitsync::checkpoint_bundle;
use crate::report::client::{ServerClient, ServerError};
use crate::session::SessionRecord;

/// A copy carrying more than this is an anchor.
pub const ANCHOR_BYTES: u64 = 256 * 1024;

/// What [`upload_latest`] did.
#[derive(Debug)]
pub enum Kept {
    /// No server configured, or no checkpoint here.
    Nothing,
    /// The server already had it; `server` is its list of the session's checkpoints (read to
    /// find out, and unchanged since), oldest first.
    Already { id: String, server: Vec<Checkpoint> },
    /// Uploaded: its name, bytes sent, and what it builds on.
    Uploaded {
        name: String,
        bytes: u64,
        base: Option<String>,
    },
}

fn client(ctx: &Ctx) -> CliResult<Option<ServerClient>> {
    match ctx.reporter.client() {
        None => Ok(None),
        Some(c) => c
            .map(Some)
            .map_err(|e| CliError::unavailable(e.to_string())),
    }
}

fn server_err(e: ServerError) -> CliError {
    match &e {
        ServerError::Rejected {
            status: 413,
            message,
            ..
        } => CliError::usage(format!("the server refused the checkpoint: {message}"))
            .hint("it is kept on this machine only; raise the server's checkpoint_max_bytes, or add large generated files to [sync] ignore"),
        _ => CliError::unavailable(e.to_string()),
    }
}

fn checkpoint_of(v: &Value) -> Option<Checkpoint> {
    serde_json::from_value(v["info"]["checkpoint"].clone()).ok()
}

/// Copy the session's newest local checkpoint to the server, unless it is there already.
pub async fn upload_latest(ctx: &Ctx, record: &SessionRecord) -> CliResult<Kept> {
    let Some(client) = client(ctx)? else {
        return Ok(Kept::Nothing);
    };
    let Some(cp) = super::checkpoint::list(ctx, record)?.pop() else {
        return Ok(Kept::Nothing);
    };
    // The session itself may still be queued for the server.
    ctx.reporter.flush().await;
    let remote = client
        .list_checkpoints(&record.session_id)
        .await
        .map_err(server_err)?;
    let listed = || remote.iter().filter_map(checkpoint_of).collect();
    if remote.iter().any(|r| r["name"] == cp.id.as_str()) {
        return Ok(Kept::Already {
            id: cp.id,
            server: listed(),
        });
    }
    // The server's newest holds the same work (it took it itself before a pause).
    if let Some(newest) = remote.last().and_then(checkpoint_of)
        && newest.tip == cp.tip
        && newest.sandbox_head == cp.sandbox_head
    {
        return Ok(Kept::Already {
            id: newest.id,
            server: listed(),
        });
    }
    // Build on the newest anchor whose commits are here.
    let repo = crate::gitsync::open_work_tree(&ctx.repo.root)
        .map_err(|e| CliError::internal(format!("opening the repository: {e}")))?;
    let base = remote
        .iter()
        .rev()
        .filter(|r| r["anchor"] == true)
        .filter_map(|r| Some((r["name"].as_str()?.to_string(), checkpoint_of(r)?)))
        .find(|(_, c)| git2::Oid::from_str(&c.tip).is_ok_and(|o| repo.find_commit(o).is_ok()));
    drop(repo);
    let tmp = tempfile::Builder::new()
        .prefix("rclaude-checkpoint-")
        .suffix(".bundle")
        .tempfile()
        .map_err(|e| CliError::internal(format!("creating a temporary file: {e}")))?;
    let path = tmp.path().to_path_buf();
    let (root, cp2, base_cp) = (
        ctx.repo.root.clone(),
        cp.clone(),
        base.as_ref().map(|(_, c)| c.clone()),
    );
    let (written, sha) = tokio::task::spawn_blocking(move || {
        checkpoint_bundle::export(
            &root,
            &cp2,
            base_cp.as_ref(),
            &path,
            &crate::gitsync::NoProgress,
        )
    })
    .await
    .map_err(|e| CliError::internal(e.to_string()))??;
    let meta = json!({
        "name": cp.id,
        "base": base.as_ref().map(|(n, _)| n),
        "anchor": base.is_none() || written.bytes > ANCHOR_BYTES,
        "sha256": sha,
        "size_bytes": written.bytes,
        "keep": ctx.config.checkpoints.keep,
        "info": {"checkpoint": cp},
    });
    client
        .upload_checkpoint(&record.session_id, &meta, tmp.path())
        .await
        .map_err(server_err)?;
    Ok(Kept::Uploaded {
        name: cp.id,
        bytes: written.bytes,
        base: base.map(|(n, _)| n),
    })
}

/// The session's checkpoints on the server, oldest first (`None`: no server configured).
pub async fn list(ctx: &Ctx, session_id: &str) -> CliResult<Option<Vec<Checkpoint>>> {
    let Some(client) = client(ctx)? else {
        return Ok(None);
    };
    let remote = client
        .list_checkpoints(session_id)
        .await
        .map_err(server_err)?;
    Ok(Some(remote.iter().filter_map(checkpoint_of).collect()))
}

/// Take checkpoint `id` (default: the newest that is intact) of `session_id` back from the
/// server and record it here. A copy whose bytes do not match their checksum is reported and
/// the one before it used (unless `id` asked for that one).
pub async fn recover(ctx: &Ctx, session_id: &str, id: Option<&str>) -> CliResult<Checkpoint> {
    let Some(client) = client(ctx)? else {
        return Err(match id {
            Some(id) => CliError::usage(format!("no checkpoint {id:?} for this session"))
                .hint("`rclaude checkpoints` lists them"),
            None => CliError::unavailable(
                "no checkpoint of this session's work on this machine, and no rclaude server is configured to keep them",
            ),
        });
    };
    let remote = client
        .list_checkpoints(session_id)
        .await
        .map_err(server_err)?;
    let by_name = |n: &str| remote.iter().find(|r| r["name"] == n);
    let candidates: Vec<&Value> = match id {
        Some(id) => vec![by_name(id).ok_or_else(|| {
            CliError::usage(format!(
                "no checkpoint {id:?} of this session here or on the server"
            ))
            .hint("`rclaude checkpoints` lists them")
        })?],
        None => remote.iter().rev().collect(),
    };
    if candidates.is_empty() {
        return Err(CliError::unavailable(
            "no checkpoint of this session's work on this machine or on the server",
        ));
    }
    let dir = tempfile::tempdir()
        .map_err(|e| CliError::internal(format!("creating a temporary directory: {e}")))?;
    let mut last_err = None;
    for cand in candidates {
        let Some(cp) = checkpoint_of(cand) else {
            continue;
        };
        // The chain this copy builds on, oldest first.
        let mut chain = vec![cand];
        while let Some(b) = chain
            .last()
            .and_then(|c| c["base"].as_str())
            .and_then(by_name)
        {
            if chain.len() > 1000 {
                break;
            }
            chain.push(b);
        }
        chain.reverse();
        let mut files: Vec<PathBuf> = Vec::new();
        let mut damaged = None;
        for link in &chain {
            let name = link["name"].as_str().unwrap_or_default();
            let path = dir.path().join(format!("{name}.bundle"));
            let (declared, got) = client
                .download_checkpoint(session_id, name, &path)
                .await
                .map_err(server_err)?;
            let recorded = link["sha256"].as_str().unwrap_or_default();
            if got != recorded || declared.as_deref().is_some_and(|d| d != recorded) {
                damaged = Some(name.to_string());
                break;
            }
            files.push(path);
        }
        if let Some(name) = damaged {
            ctx.ui.warn(format!(
                "checkpoint {name} on the server is damaged (its bytes do not match their SHA-256); {}",
                if id.is_some() { "not using it" } else { "trying the one before" }
            ));
            last_err = Some(CliError::sync(format!(
                "checkpoint {name} on the server is damaged (checksum mismatch)"
            )));
            continue;
        }
        let (root, sid, want) = (ctx.repo.root.clone(), session_id.to_string(), cp.clone());
        let imported = tokio::task::spawn_blocking(move || {
            checkpoint_bundle::import(&root, &sid, &want, &files, &crate::gitsync::NoProgress)
        })
        .await
        .map_err(|e| CliError::internal(e.to_string()))?;
        match imported {
            Ok(cp) => return Ok(cp),
            Err(crate::gitsync::SyncError::MissingPrerequisite { oid, .. }) => {
                return Err(CliError::sync(format!(
                    "the checkpoint builds on commit {oid}, which this clone does not have"
                ))
                .hint(
                    "fetch the repository's remote (`git fetch --all`) and run the command again",
                ));
            }
            Err(e) => {
                ctx.ui.warn(format!(
                    "checkpoint {} from the server cannot be used: {e}",
                    cp.id
                ));
                last_err = Some(CliError::from(e));
            }
        }
    }
    Err(last_err.unwrap_or_else(|| {
        CliError::unavailable("no usable checkpoint of this session's work on the server")
    }))
}
