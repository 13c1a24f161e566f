//! `rclaude status`: where this repository's sandbox is and what state it is in.

use serde_json::json;

use super::GlobalArgs;
use crate::agent::IsolationReport;
use crate::error::CliResult;

/// Show this repository's sandbox: provider, id, state, location, last sync.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  rclaude status\n  rclaude status --json | jq .state")]
pub struct Args {
    /// Print JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

pub async fn run(g: &GlobalArgs, args: Args) -> CliResult {
    let ctx = g.ctx()?;
    let Some(record) = ctx.store.load()? else {
        if args.json {
            println!(
                "{}",
                json!({ "repository": ctx.repo.root, "sandbox": null })
            );
        } else {
            println!(
                "No sandbox for {}.\n`rclaude up` creates one on provider \"{}\".",
                ctx.repo.root.display(),
                ctx.config.sandbox.provider.as_str()
            );
        }
        return Ok(0);
    };
    let provider = ctx.provider_for(&record)?;
    let info = provider.info(&record.sandbox_id).await?;
    let state = match &info {
        Some(i) => i.state.to_string(),
        None => "gone".to_string(),
    };
    let caps = provider.capabilities();
    let sync = record.sync.clone().unwrap_or(serde_json::Value::Null);
    let isolation =
        crate::ops::isolation::local_isolation(&record.provider, &record.sandbox_id).await;
    if let Some(w) = isolation
        .as_ref()
        .and_then(crate::ops::isolation::isolation_warning)
    {
        ctx.ui.warn(w);
    }
    if args.json {
        let out = json!({
            "repository": ctx.repo.root,
            "provider": record.provider,
            "sandbox": record.sandbox_id,
            "state": state,
            "workdir": record.workdir,
            "session": record.session_id,
            "created_at": record.created_at,
            "end_at": info.as_ref().and_then(|i| i.end_at.clone()),
            "sync": sync,
            "capabilities": caps,
            "isolation": isolation,
        });
        println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
        return Ok(0);
    }
    println!("Repository  {}", ctx.repo.root.display());
    println!(
        "Sandbox     {} on {} — {state}",
        record.sandbox_id, record.provider
    );
    println!("Workdir     {}", record.workdir);
    println!(
        "Session     {} (created {})",
        record.session_id, record.created_at
    );
    if let Some(end) = info.as_ref().and_then(|i| i.end_at.clone()) {
        println!("Pauses at   {end}");
    }
    if let Some(iso) = &isolation {
        println!("Isolation   {}", isolation_line(iso));
    }
    if let Some(snap) = sync.get("snapshot").and_then(|v| v.as_str()) {
        println!("Last sync   snapshot {}", &snap[..snap.len().min(12)]);
    } else {
        println!("Last sync   never");
    }
    let mut notes = Vec::new();
    if !caps.pause_keeps_memory {
        notes.push("pause keeps files, not running processes");
    }
    if !caps.persistent_disk {
        notes.push("files do not survive a pause");
    }
    if !notes.is_empty() {
        println!("Note        {}", notes.join("; "));
    }
    if state == "gone" {
        println!(
            "\nThe sandbox no longer exists; `rclaude up` creates a new one and syncs your work tree."
        );
    }
    Ok(0)
}

/// One line for `status`: what a sandbox process can see.
fn isolation_line(iso: &IsolationReport) -> String {
    if iso.is_isolated() {
        "bubblewrap: commands see the system directories (/usr, /etc, /opt) read-only and their \
         own sandbox; not your home, other repositories, other sandboxes or rclaude's files"
            .into()
    } else {
        "NONE: commands run unconfined, with your user's rights".into()
    }
}
