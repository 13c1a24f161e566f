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
    let ctx = g.ctx().await?;
    let Some(record) = ctx.store.load()? else {
        if args.json {
            println!(
                "{}",
                json!({ "repository": ctx.repo.root, "sandbox": null })
            );
        } else {
            let named = ctx
                .session_name
                .as_deref()
                .map(|n| format!(" (session \"{n}\")"))
                .unwrap_or_default();
            let up = ctx
                .session_name
                .as_deref()
                .map(|n| format!("rclaude up -s {n}"))
                .unwrap_or_else(|| "rclaude up".into());
            println!(
                "No sandbox for {}{named}.\n`{up}` creates one on provider \"{}\".",
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
    // Ports its processes listen on (a paused sandbox is not woken up for it).
    let listening = match &info {
        Some(i) if i.state == crate::provider::SandboxState::Running => {
            match ctx.connect(&record).await {
                Ok(sb) => crate::ops::ports::listening(&*sb).await.unwrap_or_default(),
                Err(_) => Vec::new(),
            }
        }
        _ => Vec::new(),
    };
    let network = ctx.config.network.policy();
    let ports: Vec<serde_json::Value> = listening
        .iter()
        .map(|p| {
            json!({
                "port": p,
                "label": ctx.config.ports.get(&p.to_string()).and_then(|s| s.label()),
                "url": crate::ops::ports::reach(&record, &network, *p).ok().map(|r| r.url().to_string()),
            })
        })
        .collect();
    let managed = if record.provider == crate::report::managed::MANAGED {
        managed_costs(&ctx, &record.session_id).await
    } else {
        None
    };
    if args.json {
        let out = json!({
            "repository": if ctx.local_checkout { json!(ctx.repo.root) } else { json!(ctx.repo.name) },
            "origin": record.origin,
            "provider": record.provider,
            "sandbox": record.sandbox_id,
            "state": state,
            "workdir": record.workdir,
            "session": record.session_id,
            "session_name": ctx.session_name,
            "created_at": record.created_at,
            "end_at": info.as_ref().and_then(|i| i.end_at.clone()),
            "sync": sync,
            "capabilities": caps,
            "isolation": isolation,
            "ports": ports,
            "cost_micros": managed.as_ref().map(|m| m.cost_micros),
            "budget": managed.as_ref().and_then(|m| m.budget.map(|(max, spent)| json!({
                "max_month_micros": max,
                "month_cost_micros": spent,
                "left_micros": (max - spent).max(0),
            }))),
        });
        println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
        return Ok(0);
    }
    match &record.origin {
        Some(o) => {
            println!(
                "Repository  {} (cloned in the sandbox from {}{}, at {})",
                ctx.repo.name,
                o.url,
                o.git_ref
                    .as_deref()
                    .map(|r| format!("@{r}"))
                    .unwrap_or_default(),
                &o.commit[..o.commit.len().min(10)]
            );
            println!(
                "Config      {}",
                if o.config_from_repository {
                    "the repository's .rclaude.toml"
                } else {
                    "built-in defaults (the repository has no .rclaude.toml)"
                }
            );
        }
        None => println!("Repository  {}", ctx.repo.root.display()),
    }
    println!(
        "Sandbox     {} on {} — {state}",
        record.sandbox_id, record.provider
    );
    println!("Workdir     {}", record.workdir);
    println!(
        "Session     {}{} (created {})",
        record.session_id,
        ctx.session_name
            .as_deref()
            .map(|n| format!(" \"{n}\""))
            .unwrap_or_default(),
        record.created_at
    );
    if let Some(end) = info.as_ref().and_then(|i| i.end_at.clone()) {
        println!("Pauses at   {end}");
    }
    if let Some(m) = &managed {
        println!(
            "Cost        {} so far ({} active), billed by the server",
            crate::ui::format_usd(m.cost_micros),
            crate::ui::format_hms(m.active_seconds.max(0) as u64)
        );
        if let Some((max, spent)) = m.budget {
            println!(
                "Budget      {} left of {} this month",
                crate::ui::format_usd((max - spent).max(0)),
                crate::ui::format_usd(max)
            );
        }
    }
    if let Some(iso) = &isolation {
        println!("Isolation   {}", isolation_line(iso));
    }
    if !ports.is_empty() {
        let shown: Vec<String> = ports
            .iter()
            .map(|p| {
                let mut s = p["port"].to_string();
                if let Some(l) = p["label"].as_str() {
                    s.push_str(&format!(" ({l})"));
                }
                if let Some(u) = p["url"].as_str() {
                    s.push_str(&format!(" {u}"));
                }
                s
            })
            .collect();
        println!("Ports       {}", shown.join(", "));
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

/// What the server says a managed session and its account cost.
struct ManagedCosts {
    cost_micros: i64,
    active_seconds: i64,
    /// `(max_month_micros, month_cost_micros)` when the account has a budget.
    budget: Option<(i64, i64)>,
}

async fn managed_costs(ctx: &crate::ops::context::Ctx, session: &str) -> Option<ManagedCosts> {
    let client = match ctx.reporter.client()? {
        Ok(c) => c,
        Err(e) => {
            ctx.ui.warn(format!("cannot ask the server for costs: {e}"));
            return None;
        }
    };
    let (s, me) = match tokio::join!(client.session(session), client.me()) {
        (Ok(s), Ok(me)) => (s, me),
        (Err(e), _) | (_, Err(e)) => {
            ctx.ui.warn(format!("cannot ask the server for costs: {e}"));
            return None;
        }
    };
    let limits = &me["limits"];
    Some(ManagedCosts {
        cost_micros: s["session"]["cost_micros"].as_i64().unwrap_or(0),
        active_seconds: s["session"]["active_seconds"].as_i64().unwrap_or(0),
        budget: limits["max_month_micros"]
            .as_i64()
            .map(|max| (max, limits["month_cost_micros"].as_i64().unwrap_or(0))),
    })
}
