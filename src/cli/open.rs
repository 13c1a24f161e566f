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
    let url = ports::reach(&record, &ctx.config.network.policy(), args.port)?
        .url()
        .to_string();
    super::output::write_stdout(format!("{url}\n").as_bytes())?;
    let browsers: Vec<String> = std::env::var("BROWSER")
        .ok()
        .filter(|b| !b.trim().is_empty())
        .into_iter()
        .chain(["xdg-open".to_string(), "open".to_string()])
        .collect();
    for b in browsers {
        let spawned = std::process::Command::new(&b)
            .arg(&url)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn();
        if spawned.is_ok() {
            return Ok(0);
        }
    }
    ctx.ui
        .info("No browser found (set $BROWSER): open the URL above yourself");
    Ok(0)
}
