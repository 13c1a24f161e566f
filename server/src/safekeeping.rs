//! Checkpoints the server takes itself, before a pause or stop it makes on a managed session
//! (idle auto-pause, the budget cap, a pause or delete from the API or the dashboard): the
//! sandbox's whole work, taken by the same sandbox-side step the CLI uses
//! (`rclaude-sandbox-git`'s export), bundled on the session's newest anchor and stored like an
//! uploaded checkpoint. A CLI lists and recovers them like its own (`info.checkpoint`), so no
//! pause the server makes can strand work that only lived in the sandbox.
//!
//! It never blocks the pause: a sandbox that cannot be read within [`LIMIT`] is paused anyway
//! and the failure logged (the provider keeps a paused sandbox's files; the checkpoint is the
//! copy for when it does not).

use std::time::Duration;

use serde_json::json;
use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;

use crate::checkpoint_store::BlobStore;
use crate::checkpoints::{CheckpointSettings, object_key, retain};
use crate::clock::Now;
use crate::sandboxes::{Sandboxes, Work};
use crate::storage::{CheckpointRow, NewCheckpoint, Store};

/// How long a checkpoint before a pause may take.
pub const LIMIT: Duration = Duration::from_secs(120);

/// A copy carrying more than this becomes an anchor later copies build on (the CLI's rule).
const ANCHOR_BYTES: u64 = 256 * 1024;

/// Takes checkpoints of managed sessions' sandboxes into the checkpoint store.
#[derive(Clone)]
pub struct Safekeeper {
    pub store: Store,
    pub sandboxes: Sandboxes,
    pub blobs: BlobStore,
    pub settings: CheckpointSettings,
}

/// What [`Safekeeper::checkpoint`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Kept {
    /// Stored under this name, with this many bundle bytes.
    Stored { name: String, bytes: u64 },
    /// The newest stored checkpoint already holds this work.
    Unchanged,
    /// Nothing to keep: no commits and an empty work tree, or only published history.
    Nothing,
    /// It could not be taken or stored (logged).
    Failed(String),
}

impl Safekeeper {
    /// Checkpoint `session`'s sandbox before the server pauses or stops it for `reason`
    /// (`idle-pause`, `budget-pause`, `pause`, `down`). Never fails: what went wrong is logged
    /// and answered as [`Kept::Failed`].
    pub async fn checkpoint(
        &self,
        account: &str,
        session: &str,
        sandbox_id: &str,
        reason: &str,
    ) -> Kept {
        let kept = match tokio::time::timeout(
            LIMIT,
            self.take(account, session, sandbox_id, reason),
        )
        .await
        {
            Ok(Ok(k)) => k,
            Ok(Err(why)) => Kept::Failed(why),
            Err(_) => Kept::Failed(format!("it took longer than {} s", LIMIT.as_secs())),
        };
        match &kept {
            Kept::Stored { name, bytes } => {
                tracing::info!(
                    session,
                    reason,
                    name,
                    bytes,
                    "checkpoint taken before a pause"
                )
            }
            Kept::Failed(why) => tracing::warn!(
                session,
                reason,
                error = %why,
                "no checkpoint before this pause; the sandbox keeps its files while paused"
            ),
            Kept::Unchanged | Kept::Nothing => {}
        }
        kept
    }

    async fn take(
        &self,
        account: &str,
        session: &str,
        sandbox_id: &str,
        reason: &str,
    ) -> Result<Kept, String> {
        let stored = self
            .store
            .list_checkpoints(account, session)
            .await
            .map_err(|e| e.to_string())?;
        let anchor = stored
            .iter()
            .rev()
            .filter(|r| r.anchor)
            .find_map(|r| Some((r.name.clone(), tip_of(r)?)));
        let work = self
            .sandboxes
            .export_work(sandbox_id, anchor.as_ref().map(|(_, t)| *t))
            .await
            .map_err(|e| e.message)?;
        let Some(work) = work else {
            return Ok(Kept::Nothing);
        };
        if stored.last().and_then(tip_of) == Some(work.tip) {
            return Ok(Kept::Unchanged);
        }
        let Some((file, size)) = &work.bundle else {
            return Ok(Kept::Nothing);
        };
        if *size > self.settings.max_bytes {
            return Err(format!(
                "the checkpoint is {size} bytes; this server keeps checkpoints of at most {} bytes (its `checkpoint_max_bytes`)",
                self.settings.max_bytes
            ));
        }
        let base = anchor.filter(|_| work.base_used).map(|(n, _)| n);
        let name = free_name(&stored);
        let key = object_key(account, session, &name);
        let sha256 = self.upload(&key, file).await?;
        let new = NewCheckpoint {
            name: name.clone(),
            anchor: base.is_none() || *size > ANCHOR_BYTES,
            base,
            object_key: key.clone(),
            size_bytes: *size as i64,
            sha256,
            info: info(&name, reason, &work).to_string(),
        };
        let now = Now::system();
        match self
            .store
            .insert_checkpoint(account, session, &new, now.ms())
            .await
        {
            Ok(Ok(_)) => {}
            failed => {
                let _ = self.blobs.delete(&key).await;
                return Err(match failed {
                    Err(e) => format!("recording checkpoint {name} failed: {e}"),
                    _ => format!("checkpoint {name} was recorded by another replica first"),
                });
            }
        }
        let keep = self.settings.keep as usize;
        if let Err(e) = retain(&self.store, &self.blobs, account, session, keep, now).await {
            tracing::warn!(session, error = %e, "checkpoint retention failed");
        }
        Ok(Kept::Stored { name, bytes: *size })
    }

    /// Copy `file` into object `key`, whole or not at all; answers its SHA-256.
    async fn upload(&self, key: &str, file: &std::path::Path) -> Result<String, String> {
        let mut f = tokio::fs::File::open(file)
            .await
            .map_err(|e| format!("reading the bundle: {e}"))?;
        let mut up = self.blobs.upload(key).await.map_err(|e| e.to_string())?;
        let mut hash = Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = match f.read(&mut buf).await {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) => {
                    up.abort().await;
                    return Err(format!("reading the bundle: {e}"));
                }
            };
            hash.update(&buf[..n]);
            if let Err(e) = up.write(bytes::Bytes::copy_from_slice(&buf[..n])).await {
                up.abort().await;
                return Err(e.to_string());
            }
        }
        up.finish().await.map_err(|e| e.to_string())?;
        Ok(hex::encode(hash.finalize()))
    }
}

/// The commit a stored checkpoint holds (from what its client recorded).
fn tip_of(r: &CheckpointRow) -> Option<git2::Oid> {
    let info: serde_json::Value = serde_json::from_str(&r.info).ok()?;
    git2::Oid::from_str(info["checkpoint"]["tip"].as_str()?).ok()
}

/// `YYYYMMDDTHHMMSSZ-server` (the CLI's stamp, marked as the server's), with a count when taken.
fn free_name(stored: &[CheckpointRow]) -> String {
    let stamp = time::OffsetDateTime::now_utc()
        .format(time::macros::format_description!(
            "[year][month][day]T[hour][minute][second]Z"
        ))
        .unwrap_or_default();
    let mut name = format!("{stamp}-server");
    let mut n = 1;
    while stored.iter().any(|r| r.name == name) {
        n += 1;
        name = format!("{stamp}-server{n}");
    }
    name
}

/// What a CLI needs to use the checkpoint again: the same `checkpoint` record it uploads.
fn info(name: &str, reason: &str, w: &Work) -> serde_json::Value {
    json!({
        "by": "server",
        "checkpoint": {
            "id": name,
            "reason": reason,
            "tip": w.tip.to_string(),
            "sandbox_head": w.head.map(|o| o.to_string()),
            "wip": w.wip,
            "label": w.branch.clone().unwrap_or_else(|| "detached".into()),
            "sandbox_branch": w.branch,
            "pushed": w.synced.map(|(s, i)| [s.to_string(), i.to_string()]),
            "received_bytes": w.bundle.as_ref().map_or(0, |(_, n)| *n),
        },
    })
}
