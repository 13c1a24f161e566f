//! `rclaude agent`: serve a directory as a sandbox over E2B's envd protocol.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use super::GlobalArgs;
use crate::agent::{AgentOptions, bind};
use crate::config::Isolation;
use crate::error::{CliError, CliResult};

/// Serve DIR as a sandbox over E2B's envd protocol (what the local provider runs).
///
/// Speaks the subset of envd that rclaude and E2B's SDKs use: process start/stream/signal,
/// file system RPCs and `/files` upload/download. Every request must carry the access token in
/// `X-Access-Token`; paths outside `--root` (including through symlinks) are refused.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  RCLAUDE_AGENT_TOKEN=$(openssl rand -hex 32) rclaude agent --root /srv/sandbox\n  rclaude agent --listen 0.0.0.0:49983 --root /srv/sandbox --token-file /etc/rclaude/token\n  rclaude agent --root /tmp/box --no-auth     # debugging only: anyone on this host can use it"
)]
pub struct Args {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:49983", value_name = "ADDR")]
    pub listen: SocketAddr,
    /// The sandbox root: every path must stay inside it.
    #[arg(long, value_name = "DIR")]
    pub root: PathBuf,
    /// HOME for processes (default: the root).
    #[arg(long, value_name = "DIR")]
    pub home: Option<PathBuf>,
    /// Default working directory and base of relative paths (default: home).
    #[arg(long, value_name = "DIR")]
    pub workdir: Option<PathBuf>,
    /// Read the access token from this file (else from RCLAUDE_AGENT_TOKEN).
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// Accept requests without a token. Debugging only.
    #[arg(long)]
    pub no_auth: bool,
    /// Process isolation: auto (bubblewrap when available), bwrap, none.
    #[arg(long, value_enum, default_value = "auto")]
    pub isolation: IsolationArg,
    /// Default environment variable for every process (repeatable).
    #[arg(long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// Write `{"pid":..,"port":..,"isolation":..}` here once listening.
    #[arg(long, value_name = "FILE")]
    pub state_file: Option<PathBuf>,
    /// With bubblewrap: a host path processes see read-only (repeatable); by default they see
    /// only the system directories (/usr, /etc, /opt, /bin, /lib...) and the root.
    #[arg(long = "expose", value_name = "PATH")]
    pub expose: Vec<PathBuf>,
    /// Record the process groups started here, and kill those a previous agent with the same
    /// file left running.
    #[arg(long, value_name = "FILE")]
    pub groups_file: Option<PathBuf>,
    /// Egress policy as JSON (`{"mode":"restricted","allow":["*.github.com"]}`); default open.
    /// Restricted: processes get their own network namespace and reach out only through an
    /// allow-listing proxy (needs bubblewrap).
    #[arg(long, value_name = "JSON", value_parser = parse_network)]
    pub network: Option<crate::network::NetworkPolicy>,
    /// Copy this machine's npm network settings (registry, CA file, proxies; never
    /// credentials) into HOME/.npmrc unless it has one; commands wait until it is written.
    #[arg(long)]
    pub copy_npm_settings: bool,
}

fn parse_network(s: &str) -> Result<crate::network::NetworkPolicy, String> {
    serde_json::from_str(s).map_err(|e| format!("not a network policy: {e}"))
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum IsolationArg {
    Auto,
    Bwrap,
    None,
}

pub async fn run(_g: &GlobalArgs, args: Args) -> CliResult {
    let token = if args.no_auth {
        eprintln!(
            "warning: --no-auth: any local process can run commands and read files in {}",
            args.root.display()
        );
        None
    } else if let Some(f) = &args.token_file {
        let t = std::fs::read_to_string(f)
            .map_err(|e| CliError::io(format!("reading token file {}", f.display()), e))?;
        Some(t.trim().to_string())
    } else if let Ok(t) = std::env::var("RCLAUDE_AGENT_TOKEN") {
        Some(t.trim().to_string())
    } else {
        return Err(CliError::usage("the agent needs an access token").hint(
            "set RCLAUDE_AGENT_TOKEN or pass --token-file FILE (or --no-auth for debugging)",
        ));
    };
    if token.as_deref() == Some("") {
        return Err(CliError::usage("the access token is empty"));
    }
    let env: BTreeMap<String, String> = super::args::parse_env_pairs(&args.env)?;
    let root = args
        .root
        .canonicalize()
        .map_err(|e| CliError::io(format!("sandbox root {}", args.root.display()), e))?;
    let opts = AgentOptions {
        listen: args.listen,
        root,
        token,
        home: args.home,
        workdir: args.workdir,
        env,
        isolation: match args.isolation {
            IsolationArg::Auto => Isolation::Auto,
            IsolationArg::Bwrap => Isolation::Bwrap,
            IsolationArg::None => Isolation::None,
        },
        expose: args.expose,
        groups_file: args.groups_file,
        network: args.network.unwrap_or_default(),
        step_helper: true,
        copy_npm_settings: args.copy_npm_settings,
        ..AgentOptions::new(PathBuf::new())
    };
    let agent = bind(opts)
        .await
        .map_err(|e| CliError::unavailable(e.to_string()))?;
    let addr = agent.local_addr();
    if let Some(f) = &args.state_file {
        let state = crate::provider::local::AgentState {
            pid: std::process::id(),
            port: addr.port(),
            isolation: Some(agent.isolation().clone()),
        };
        crate::session::write_atomic(f, &serde_json::to_vec(&state).unwrap_or_default())?;
    }
    tracing::info!(%addr, "rclaude agent listening");
    agent
        .serve(shutdown_signal())
        .await
        .map_err(|e| CliError::internal(e.to_string()))?;
    Ok(0)
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut hup = signal(SignalKind::hangup()).expect("SIGHUP handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
        _ = hup.recv() => {}
    }
}
