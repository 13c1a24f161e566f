//! `rclaude logs [-f]`: a session's events from the server, optionally followed live.

use futures::StreamExt;
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use super::GlobalArgs;
use crate::claude::ClaudeError;
use crate::error::{CliError, CliResult};
use crate::ops::claude_run::{Interrupt, follow, remember, resolve_run};
use crate::report::{Credentials, ServerClient};

/// Show this repository's session events (created, started, task results, ...) from the server,
/// or the transcript of the latest Claude Code run in the sandbox.
///
/// With `-f`, keep following new events live over WebSocket until Ctrl-C. With `--claude`, or
/// when not logged in to a server, show the Claude Code run instead (`-f`: until it ends).
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  rclaude logs\n  rclaude logs -f\n  rclaude logs --session 7c0e... --json\n  rclaude logs -f --claude"
)]
pub struct Args {
    /// Follow new events live.
    #[arg(short, long)]
    pub follow: bool,
    /// One JSON object per event on stdout.
    #[arg(long)]
    pub json: bool,
    /// The latest Claude Code run's transcript (the default when not logged in to a server).
    #[arg(long)]
    pub claude: bool,
}

pub async fn run(g: &GlobalArgs, args: Args) -> CliResult {
    let logged_in = matches!(Credentials::load(), Ok(Some(_)));
    if args.claude || (!logged_in && g.session.is_none()) {
        return claude_logs(g, args.follow, args.json).await;
    }
    let creds = Credentials::load()
        .map_err(|e| CliError::config(e.to_string()))?
        .ok_or_else(|| {
            CliError::auth("not logged in to an rclaude server")
                .hint("`rclaude login --server URL`")
        })?;
    // `--session`: a session started here from a URL (by a prefix of its id), else any id
    // the server knows.
    let session = match &g.session {
        Some(s) => crate::session::started::find(s)
            .ok()
            .flatten()
            .map(|(_, r)| r.session_id)
            .unwrap_or_else(|| s.clone()),
        None => g.ctx().await?.require_session()?.session_id,
    };
    let reporter = crate::report::Reporter::from_env();
    reporter.flush().await;
    let client = ServerClient::new(&creds).map_err(|e| CliError::internal(e.to_string()))?;
    let detail = client
        .session(&session)
        .await
        .map_err(super::server::server_error)?;
    let mut last_seq = None;
    for ev in detail["events"].as_array().into_iter().flatten() {
        print_event(ev, args.json);
        last_seq = ev["seq"].as_i64().or(last_seq);
    }
    if !args.follow {
        return Ok(0);
    }
    let url = client.events_url(Some(&session), last_seq);
    let mut req = url
        .clone()
        .into_client_request()
        .map_err(|e| CliError::internal(e.to_string()))?;
    req.headers_mut().insert(
        "authorization",
        format!("Bearer {}", client.token())
            .parse()
            .map_err(|_| CliError::auth("the token is not a valid header value"))?,
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(req)
        .await
        .map_err(|e| CliError::unavailable(format!("cannot follow events at {url}: {e}")))?;
    loop {
        tokio::select! {
            msg = ws.next() => match msg {
                Some(Ok(Message::Text(t))) => {
                    if let Ok(v) = serde_json::from_str::<Value>(&t) {
                        print_event(&v["event"], args.json);
                    }
                }
                Some(Ok(Message::Close(_))) | None => return Ok(0),
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(CliError::unavailable(format!("event stream broke: {e}"))),
            },
            _ = tokio::signal::ctrl_c() => return Ok(0),
        }
    }
}

/// An RFC 3339 UTC time with exactly three fractional digits (the server trims trailing
/// zeros: `…:00.28Z`), so the columns of the log line up.
fn fixed_width(at: &str) -> String {
    let Some(body) = at.strip_suffix('Z') else {
        return at.to_string();
    };
    let (whole, frac) = body.split_once('.').unwrap_or((body, ""));
    if frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return at.to_string();
    }
    format!("{whole}.{frac:0<3}Z")
}

fn print_event(ev: &Value, json: bool) {
    if json {
        println!("{}", crate::redact::text(&ev.to_string()));
        return;
    }
    let at = fixed_width(ev["created_at"].as_str().unwrap_or(""));
    let kind = ev["type"].as_str().unwrap_or("?");
    let data = &ev["data"];
    let detail = match kind {
        "task_started" => data["task"].as_str().unwrap_or("").to_string(),
        "task_finished" => format!(
            "{} exit {} in {} ms",
            data["task"].as_str().unwrap_or(""),
            data["exit_code"]
                .as_i64()
                .map(|c| c.to_string())
                .unwrap_or_default(),
            data["duration_ms"].as_i64().unwrap_or(0)
        ),
        _ => data
            .get("message")
            .and_then(|m| m.as_str())
            .unwrap_or("")
            .to_string(),
    };
    println!("{at}  {kind:<14} {}", crate::redact::text(&detail));
    // A task's last lines of output (redacted before they were sent).
    if let Some(tail) = data["output_tail"].as_str() {
        for line in tail.lines() {
            println!("{:>20}  | {}", "", crate::redact::text(line));
        }
    }
}

/// `rclaude logs [-f] --claude`: the latest run's transcript, followed with `-f`.
async fn claude_logs(g: &GlobalArgs, follow_it: bool, json: bool) -> CliResult {
    let ctx = g.ctx().await?;
    let record = ctx.require_session()?;
    let sandbox = ctx.connect(&record).await?;
    let _alive = crate::ops::alive::keep_alive(&ctx, &record);
    let files = resolve_run(&*sandbox, &record, None).await.map_err(|e| {
        if e.message == ClaudeError::NoRun.to_string() {
            e.hint("`rclaude claude \"PROMPT\"` starts one; for the server's session events, `rclaude login --server URL` first")
        } else {
            e
        }
    })?;
    let followed = follow(
        &ctx,
        &*sandbox,
        &files,
        crate::ops::claude_run::Show::json_or_transcript(json),
        follow_it,
        Interrupt::Detach,
    )
    .await?;
    if followed.end.is_some() {
        remember(&ctx, &followed);
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::fixed_width;

    #[test]
    fn times_get_three_fractional_digits() {
        assert_eq!(
            fixed_width("2026-12-04T21:13:00.28Z"),
            "2026-12-04T21:13:00.280Z"
        );
        assert_eq!(
            fixed_width("2026-12-04T21:13:00Z"),
            "2026-12-04T21:13:00.000Z"
        );
        assert_eq!(
            fixed_width("2026-12-04T21:13:00.279Z"),
            "2026-12-04T21:13:00.279Z"
        );
        assert_eq!(fixed_width("not a time"), "not a time");
    }
}
