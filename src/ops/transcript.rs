//! `pull --transcript`: bring the session's Claude Code conversation into this machine's Claude
//! Code projects directory, so `claude --resume ID` in the checkout continues it.

use std::sync::Arc;

use super::context::Ctx;
use crate::claude::transcript::{self, Stored, TranscriptError};
use crate::error::{CliError, CliResult};
use crate::provider::Sandbox;
use crate::session::SessionRecord;

/// Store the conversation of the session's latest Claude Code run (or `id`) locally.
pub async fn take_home(
    ctx: &Ctx,
    sandbox: &Arc<dyn Sandbox>,
    record: &SessionRecord,
    id: Option<&str>,
) -> CliResult<Stored> {
    let id = match id {
        Some(id) => id.to_string(),
        None => crate::claude::run::conversation(&**sandbox, &record.workdir)
            .await?
            .ok_or_else(|| {
                CliError::unavailable("this session has no Claude Code conversation yet").hint(
                    "start one with `rclaude claude \"PROMPT\"`; `pull --transcript` brings it here afterwards",
                )
            })?,
    };
    let bytes = transcript::fetch(&**sandbox, &id)
        .await
        .map_err(transcript_error)?;
    let local_root = ctx
        .repo
        .root
        .canonicalize()
        .unwrap_or_else(|_| ctx.repo.root.clone());
    let rewritten = transcript::rewrite_cwd(&bytes, &record.workdir, &local_root.to_string_lossy());
    // Secret values a tool printed stay out of files rclaude writes.
    let text = String::from_utf8_lossy(&rewritten);
    let redacted = crate::redact::text(&text);
    let config_dir = transcript::local_config_dir().ok_or_else(|| {
        CliError::config("cannot tell where Claude Code keeps conversations on this machine")
            .hint("set HOME, or CLAUDE_CONFIG_DIR to Claude Code's configuration directory")
    })?;
    transcript::store(&config_dir, &local_root, &id, redacted.as_bytes()).map_err(transcript_error)
}

fn transcript_error(e: TranscriptError) -> CliError {
    let msg = e.to_string();
    match e {
        TranscriptError::BadId(_) => CliError::usage(msg),
        TranscriptError::Missing(_) => CliError::unavailable(msg).hint(
            "Claude Code in the sandbox may keep conversations elsewhere (CLAUDE_CONFIG_DIR), or the run ended before it saved any",
        ),
        TranscriptError::Sandbox(s) => s.into(),
        TranscriptError::Write { path, source } => {
            CliError::io(format!("writing {}", path.display()), source)
        }
    }
}
