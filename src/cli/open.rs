//! `rclaude open PORT`: open a port the sandbox serves in the browser.

use super::GlobalArgs;
use crate::error::CliResult;
use crate::ops::ports;

/// Open a port the sandbox serves in the browser (`$BROWSER`, else `xdg-open`/`open`); the URL
/// is printed either way.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  rclaude open 3000\n  rclaude open 5173 -s feature-x")]
pub struct Args {
    /// The port in the sandbox (1-65535).
    #[arg(value_name = "PORT", value_parser = super::port::parse_port)]
    pub port: u16,
}

pub async fn run(g: &GlobalArgs, args: Args) -> CliResult {
    let ctx = g.ctx().await?;
    let record = ctx.require_session()?;
    let reach = ports::reach(&record, &ctx.config.network.policy(), args.port)?;
    // A private sandbox's ports need its traffic token, which a browser cannot add: open a
    // local forwarder instead and keep it until Ctrl-C.
    let forwarder = match &reach {
        ports::Reach::Url { .. } if ports::private(&ctx.config) => Some(ports::bind(0).await?),
        _ => None,
    };
    let url = match &forwarder {
        Some(l) => format!(
            "http://{}",
            l.local_addr()
                .map_err(|e| crate::error::CliError::io("reading the local address", e))?
        ),
        None => reach.url().to_string(),
    };
    super::output::write_stdout(format!("{url}\n").as_bytes())?;
    let opened = open_in_browser(&url);
    if !opened {
        ctx.ui
            .info("No browser found (set $BROWSER): open the URL above yourself");
    }
    match forwarder {
        Some(listener) => ports::serve_through_edge(&ctx, &record, args.port, listener, "").await,
        None => Ok(0),
    }
}

/// Start `$BROWSER`, else `xdg-open`, else `open` on `url`; whether one started.
fn open_in_browser(url: &str) -> bool {
    let browsers: Vec<String> = std::env::var("BROWSER")
        .ok()
        .filter(|b| !b.trim().is_empty())
        .into_iter()
        .chain(["xdg-open".to_string(), "open".to_string()])
        .collect();
    browsers.iter().any(|b| {
        std::process::Command::new(b)
            .arg(url)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .is_ok()
    })
}
