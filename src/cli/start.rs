//! `rclaude start URL[@REF]`: a session whose sandbox clones the repository itself.

use super::GlobalArgs;
use crate::config::ProviderKind;
use crate::error::{CliError, CliResult};
use crate::ops::start::{StartOptions, start};

/// Start a session from a repository URL, without a local checkout: a new sandbox clones the
/// repository (at REF: a branch, tag or commit; else its default branch), applies its
/// committed `.rclaude.toml` (built-in defaults when it has none), runs `[setup]` and
/// `[start]`, and the session id is printed.
///
/// Then `claude`, `exec`, `run`, `attach`, `logs`, `status`, `pr` and `down` take
/// `--session ID` from any directory, and `pull --session ID` inside a clone of the repository
/// brings the sandbox's commits back as `rclaude/<branch>`. A private repository needs a token
/// in `GITHUB_TOKEN`, handed to git in the sandbox through a credential helper's environment
/// and never written down. On a bad URL, REF or token nothing is left running.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  rclaude start github.com/acme/widget\n  rclaude start https://github.com/acme/widget.git@release-2.x --name widget-release\n  id=$(rclaude start git@github.com:acme/widget.git@v1.4.0)\n  rclaude claude --session $id \"make the failing tests pass\" --pr"
)]
pub struct Args {
    /// The repository: `github.com/OWNER/REPO`, `https://…`, `ssh://…`, `git@host:o/r.git` or
    /// any URL git accepts, optionally `@REF`.
    #[arg(value_name = "URL[@REF]")]
    pub target: String,
    /// How the session's repository is shown (default: OWNER/REPO from the URL).
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// Run the sandbox on this provider with your own credentials (default: the server's when
    /// you are logged in to one that offers managed sessions, else local).
    #[arg(long, value_name = "NAME", value_parser = super::args::parse_kind)]
    pub provider: Option<ProviderKind>,
    /// Never a managed session (as `up --direct`).
    #[arg(long)]
    pub direct: bool,
    /// Print the session as JSON.
    #[arg(long)]
    pub json: bool,
}

pub async fn run(g: &GlobalArgs, args: Args) -> CliResult {
    if g.session.is_some() {
        return Err(CliError::usage(
            "`start` makes a new session: leave out --session",
        ));
    }
    if let Some(n) = &args.name
        && (n.trim().is_empty() || n.chars().any(char::is_control))
    {
        return Err(CliError::usage("--name is empty or has control characters"));
    }
    let ui = crate::ui::Ui::detect(g.quiet).out();
    let direct =
        args.direct || std::env::var("RCLAUDE_DIRECT").is_ok_and(|v| !v.is_empty() && v != "0");
    let record = start(
        ui.clone(),
        &StartOptions {
            target: args.target.clone(),
            name: args.name.clone(),
            provider: args.provider,
            direct,
        },
    )
    .await?;
    let out = if args.json {
        let mut s = serde_json::to_string_pretty(&serde_json::json!({
            "session": record.session_id,
            "sandbox": record.sandbox_id,
            "provider": record.provider,
            "workdir": record.workdir,
            "origin": record.origin,
        }))
        .unwrap_or_default();
        s.push('\n');
        s
    } else {
        let short: String = record.session_id.chars().take(8).collect();
        ui.info(format!(
            "Session {} is up; e.g. `rclaude claude --session {short} \"PROMPT\"`, `rclaude exec --session {short} -- CMD`, `rclaude pr --session {short}`",
            record.session_id
        ));
        format!("{}\n", record.session_id)
    };
    super::output::write_stdout(out.as_bytes())?;
    Ok(0)
}
