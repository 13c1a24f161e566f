//! `rclaude port PORT [--local LOCAL]`: reach a port the sandbox serves from this machine.

use super::GlobalArgs;
use crate::error::CliResult;
use crate::ops::ports::{self, Reach};

/// Reach a port the sandbox serves (the web app the agent is building) from this machine.
///
/// With `--local LOCAL`, connections to 127.0.0.1:LOCAL are forwarded to the sandbox's PORT
/// until Ctrl-C (any TCP protocol: HTTP, WebSockets, a database). Without it, the URL is
/// printed: a local sandbox shares this machine's network, so its ports are on 127.0.0.1
/// already; an E2B sandbox serves them at https://PORT-<id>.<domain>.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  rclaude port 3000                 # print where the sandbox's port 3000 is\n  rclaude port 3000 --local 8080    # forward localhost:8080 to it (Ctrl-C stops)\n  rclaude open 3000                 # open it in the browser"
)]
pub struct Args {
    /// The port in the sandbox (1-65535).
    #[arg(value_name = "PORT", value_parser = parse_port)]
    pub port: u16,
    /// Forward this local port to it (127.0.0.1 only).
    #[arg(long, value_name = "LOCAL", value_parser = parse_port)]
    pub local: Option<u16>,
}

/// A port number on the command line.
pub fn parse_port(s: &str) -> Result<u16, String> {
    crate::config::port_number(s).ok_or_else(|| format!("{s:?} is not a port number (1-65535)"))
}

pub async fn run(g: &GlobalArgs, args: Args) -> CliResult {
    let ctx = g.ctx().await?;
    let record = ctx.require_session()?;
    let reach = ports::reach(&record, &ctx.config.network.policy(), args.port)?;
    let label = ctx
        .config
        .ports
        .get(&args.port.to_string())
        .and_then(|p| p.label())
        .map(|l| format!(" ({l})"))
        .unwrap_or_default();
    let target = match (&reach, args.local) {
        (Reach::Direct { addr, .. }, Some(local)) if local != args.port => *addr,
        (_, None) | (Reach::Direct { .. }, Some(_)) => {
            if let Reach::Direct { .. } = reach {
                ctx.ui.info(format!(
                    "Sandbox port {}{label}: the local sandbox shares this machine's network, so it is at",
                    args.port
                ));
            } else if ports::private(&ctx.config) {
                ctx.ui.info(format!(
                    "Sandbox port {}{label} is served at the address below, to requests carrying the sandbox's traffic token only (no [ports] entry is `public = true`); `rclaude port {} --local PORT` adds it",
                    args.port, args.port
                ));
            } else {
                ctx.ui
                    .info(format!("Sandbox port {}{label} is served at", args.port));
            }
            return super::output::write_stdout(format!("{}\n", reach.url()).as_bytes());
        }
        (Reach::Url { .. }, Some(local)) => {
            let listener = ports::bind(local).await?;
            return ports::serve_through_edge(&ctx, &record, args.port, listener, &label).await;
        }
    };
    let local = args.local.expect("matched above");
    let sandbox = ctx.connect(&record).await?;
    ports::warn_if_not_listening(&ctx, &*sandbox, args.port).await?;
    let listener = ports::bind(local).await?;
    ctx.ui.info(format!(
        "Forwarding http://127.0.0.1:{local} → sandbox port {}{label} (Ctrl-C stops)",
        args.port
    ));
    ports::forward(&ctx, listener, target, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await
}
