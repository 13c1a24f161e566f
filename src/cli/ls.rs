//! `rclaude ls`: the sandboxes rclaude made on a provider (for E2B: on this API key's team).

use std::time::Duration;

use serde_json::json;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::GlobalArgs;
use crate::config::{Config, ProviderKind};
use crate::error::{CliError, CliResult};
use crate::provider::{SandboxInfo, SandboxState};
use crate::session::{Repo, SessionStore};

/// List the sandboxes rclaude made on a provider, this repository's marked with `*`.
///
/// The provider is `--provider`, else the one in this repository's .rclaude.toml, else
/// `local`. For E2B this lists every rclaude sandbox of the API key's team, running and
/// paused, across all pages. Sandboxes of `rclaude ci` runs that were killed before they could
/// destroy them are destroyed first; a running ci run's sandbox is marked `ci`, one that could
/// not be destroyed `left`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  rclaude ls\n  rclaude ls --provider e2b\n  rclaude ls --json | jq '.[] | select(.state == \"paused\") | .id'"
)]
pub struct Args {
    /// Print JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// Provider to list: local, e2b, daytona or northflank.
    #[arg(long, value_name = "NAME", value_parser = super::args::parse_kind, conflicts_with = "managed")]
    pub provider: Option<ProviderKind>,
    /// List the managed sessions of your account on the rclaude server, every repository and
    /// machine (the default when this repository's session is managed).
    #[arg(long)]
    pub managed: bool,
}

pub async fn run(g: &GlobalArgs, args: Args) -> CliResult {
    let repo = Repo::discover(&g.start_dir()?).ok();
    let config = match &repo {
        Some(r) if r.config_path().exists() => Some(Config::load(&r.config_path())?),
        _ => None,
    };
    let kind = args
        .provider
        .or(config.as_ref().map(|c| c.sandbox.provider))
        .unwrap_or_default();
    // This repository's sessions: the default one and the named ones.
    let sessions = match &repo {
        Some(r) => SessionStore::all_of(r),
        None => Vec::new(),
    };
    let record = sessions
        .iter()
        .find(|(n, _)| n.is_none())
        .map(|(_, r)| r.clone());
    let managed = crate::report::managed::MANAGED;
    let list_managed = args.managed
        || (args.provider.is_none() && record.as_ref().is_some_and(|r| r.provider == managed));
    let listed = if list_managed { managed } else { kind.as_str() };
    let ours: Vec<(String, String)> = sessions
        .iter()
        .filter(|(_, rec)| rec.provider == listed)
        .map(|(n, rec)| {
            (
                rec.sandbox_id.clone(),
                n.clone().unwrap_or_else(|| "(default)".into()),
            )
        })
        .collect();
    let session_of = |s: &SandboxInfo| {
        ours.iter()
            .find(|(id, _)| *id == s.id)
            .map(|(_, n)| n.clone())
    };
    let provider: Box<dyn crate::provider::Provider> = if list_managed {
        let client = crate::report::Reporter::from_env()
            .client()
            .ok_or_else(|| {
                CliError::usage("not logged in to an rclaude server")
                    .hint("`rclaude login --server URL` first")
            })?
            .map_err(|e| CliError::unavailable(e.to_string()))?;
        Box::new(crate::report::managed::ManagedProvider::account(client))
    } else {
        match &config {
            Some(c) if c.sandbox.provider == kind => crate::provider::select::for_settings(
                c.sandbox.provider,
                c.sandbox.project.as_deref(),
            )?,
            _ => crate::provider::select::for_kind(kind)?,
        }
    };
    crate::ops::leftovers::reap(&crate::ui::Ui::detect(g.quiet).out()).await;
    let ci_runs = crate::ops::leftovers::runs();
    let ci_of = |s: &SandboxInfo| {
        ci_runs
            .iter()
            .find(|r| r.record.as_ref().is_some_and(|rec| rec.sandbox_id == s.id))
    };
    let mut sandboxes = provider.list().await?;
    sandboxes.sort_by(|a, b| b.started_at.cmp(&a.started_at));
    let is_current = |s: &SandboxInfo| session_of(s).is_some();
    if args.json {
        let items: Vec<_> = sandboxes
            .iter()
            .map(|s| {
                json!({
                    "id": s.id,
                    "provider": s.provider,
                    "state": s.state.to_string(),
                    "repo": s.metadata.get("rclaude.repo"),
                    "branch": s.metadata.get("rclaude.branch"),
                    "session": s.metadata.get("rclaude.session"),
                    "workdir": s.workdir,
                    "started_at": s.started_at,
                    "end_at": s.end_at,
                    "current": is_current(s),
                    "session_name": session_of(s),
                    "ci": ci_of(s).map(|r| json!({ "pid": r.pid, "running": r.alive })),
                })
            })
            .collect();
        let text =
            serde_json::to_string_pretty(&items).map_err(|e| CliError::internal(e.to_string()))?;
        println!("{text}");
        return Ok(0);
    }
    if sandboxes.is_empty() {
        println!("No rclaude sandboxes on provider \"{listed}\".");
        return Ok(0);
    }
    let now = OffsetDateTime::now_utc();
    let rows: Vec<[String; 8]> = sandboxes
        .iter()
        .map(|s| {
            [
                match ci_of(s) {
                    _ if is_current(s) => "*".into(),
                    Some(r) if r.alive => "ci".into(),
                    Some(_) => "left".into(),
                    None => " ".into(),
                },
                s.id.clone(),
                session_of(s)
                    .or_else(|| s.metadata.get("rclaude.session_name").cloned())
                    .unwrap_or_else(|| "-".into()),
                s.state.to_string(),
                s.metadata
                    .get("rclaude.repo")
                    .cloned()
                    .unwrap_or_else(|| "-".into()),
                s.metadata
                    .get("rclaude.branch")
                    .cloned()
                    .filter(|b| !b.is_empty())
                    .unwrap_or_else(|| "-".into()),
                s.started_at
                    .as_deref()
                    .map(short_time)
                    .unwrap_or_else(|| "-".into()),
                ends(s, now),
            ]
        })
        .collect();
    let header = [
        "", "ID", "SESSION", "STATE", "REPO", "BRANCH", "STARTED", "ENDS",
    ]
    .map(String::from);
    let mut widths = [0usize; 8];
    for row in std::iter::once(&header).chain(&rows) {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    for row in std::iter::once(&header).chain(&rows) {
        let line: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        println!("{}", line.join("  ").trim_end());
    }
    let mut legend = Vec::new();
    if !ours.is_empty() {
        legend.push(
            "* this repository's sessions (`--session NAME` acts on a named one)".to_string(),
        );
    }
    if sandboxes.iter().any(|s| ci_of(s).is_some_and(|r| r.alive)) {
        legend.push("ci: a running `rclaude ci` run's sandbox (destroyed when it ends)".into());
    }
    if sandboxes.iter().any(|s| ci_of(s).is_some_and(|r| !r.alive)) {
        legend.push(
            "left: left behind by a killed `rclaude ci` run; `rclaude down --sandbox ID` removes it"
                .into(),
        );
    }
    if !legend.is_empty() {
        println!("\n{}", legend.join("\n"));
    }
    Ok(0)
}

/// `2026-03-01 12:00` (UTC) from RFC 3339; the input unchanged when it does not parse.
fn short_time(rfc: &str) -> String {
    match OffsetDateTime::parse(rfc, &Rfc3339) {
        Ok(t) => {
            let t = t.to_offset(time::UtcOffset::UTC);
            format!(
                "{:04}-{:02}-{:02} {:02}:{:02}",
                t.year(),
                t.month() as u8,
                t.day(),
                t.hour(),
                t.minute()
            )
        }
        Err(_) => rfc.to_string(),
    }
}

/// When a running sandbox times out: `in 42m`; `-` otherwise.
fn ends(s: &SandboxInfo, now: OffsetDateTime) -> String {
    if s.state != SandboxState::Running {
        return "-".into();
    }
    let Some(end) = s
        .end_at
        .as_deref()
        .and_then(|e| OffsetDateTime::parse(e, &Rfc3339).ok())
    else {
        return "-".into();
    };
    let left = end - now;
    if left.is_negative() {
        return "now".into();
    }
    format!("in {}", human(left.unsigned_abs()))
}

/// `45s`, `12m`, `3h05m`, `2d04h`.
fn human(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        3600..86400 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d{:02}h", s / 86400, s % 86400 / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_times_are_short() {
        assert_eq!(human(Duration::from_secs(45)), "45s");
        assert_eq!(human(Duration::from_secs(725)), "12m");
        assert_eq!(human(Duration::from_secs(3 * 3600 + 5 * 60)), "3h05m");
        assert_eq!(human(Duration::from_secs(2 * 86400 + 4 * 3600)), "2d04h");
        assert_eq!(short_time("2026-03-01T12:34:56.789Z"), "2026-03-01 12:34");
        assert_eq!(short_time("garbage"), "garbage");
    }
}
