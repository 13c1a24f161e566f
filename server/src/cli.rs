//! Command line: `rclaude-server [serve]` and `rclaude-server admin …`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::admin::{self, AdminCommand};
use crate::config::{self, FileConfig, Overrides};

/// rclaude's server: sessions, usage metering, billing, API tokens and live events.
#[derive(Debug, Parser)]
#[command(name = "rclaude-server", version, about, long_about = None)]
pub struct Cli {
    /// Database: a SQLite file path (default: ~/.local/share/rclaude/server.db, created on first
    /// start, WAL mode) or `postgres://USER@HOST/DB` for a shared deployment.
    #[arg(long, env = "DATABASE_URL", global = true)]
    pub database_url: Option<String>,

    /// A TOML config file (keys: listen, database_url, price_hour_usd, price_storage_month_usd,
    /// heartbeat_grace, max_body_bytes, request_timeout, db_max_connections, cookie_secure,
    /// dashboard_session_ttl, stripe_api_key, stripe_meter_event, stripe_api_base,
    /// stripe_api_version, stripe_poll_interval, stripe_retry_base, stripe_retry_max, sandbox_provider,
    /// sandboxes_dir, agent_bin, sandbox_workdir, idle_pause, reconcile_every). Flags and
    /// env win.
    #[arg(long, env = "RCLAUDE_SERVER_CONFIG", global = true)]
    pub config: Option<PathBuf>,

    /// Log format on stderr.
    #[arg(long, env = "RCLAUDE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Json, global = true)]
    pub log_format: LogFormat,

    #[command(flatten)]
    pub serve: ServeArgs,

    #[command(subcommand)]
    pub command: Option<Command>,
}

/// How logs are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// One JSON object per line.
    Json,
    /// Human-readable lines.
    Text,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP server (the default).
    Serve(Box<ServeArgs>),
    /// Manage accounts and API tokens directly in the database.
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
    },
}

/// Options of `serve`.
#[derive(Debug, Clone, Default, Args)]
pub struct ServeArgs {
    /// Address to listen on [default: 127.0.0.1:7420].
    #[arg(long, env = "RCLAUDE_LISTEN")]
    pub listen: Option<String>,
    /// Price of one hour of active session time, in USD [default: 0.10].
    #[arg(long, env = "RCLAUDE_PRICE_HOUR_USD")]
    pub price_hour_usd: Option<String>,
    /// Price of persistent storage per repository per month, in USD [default: 5].
    #[arg(long, env = "RCLAUDE_PRICE_STORAGE_MONTH_USD")]
    pub price_storage_month_usd: Option<String>,
    /// How long a running session stays billable after its last event (e.g. 90s, 5m; at most
    /// 24h) [default: 5m].
    #[arg(long, env = "RCLAUDE_HEARTBEAT_GRACE")]
    pub heartbeat_grace: Option<String>,
    /// Largest accepted request body in bytes [default: 65536].
    #[arg(long, env = "RCLAUDE_MAX_BODY_BYTES")]
    pub max_body_bytes: Option<u64>,
    /// Deadline for one request (e.g. 30s) [default: 30s].
    #[arg(long, env = "RCLAUDE_REQUEST_TIMEOUT")]
    pub request_timeout: Option<String>,
    /// Time a client has to send a request's headers, and to start its next request on a
    /// kept-alive connection (e.g. 10s; 1s to 5m) [default: 10s].
    #[arg(long, env = "RCLAUDE_HEADER_READ_TIMEOUT")]
    pub header_read_timeout: Option<String>,
    /// How often WebSockets are pinged; each ping re-checks the socket's token or sign-in
    /// (e.g. 30s; 1s to 1h) [default: 30s].
    #[arg(long, env = "RCLAUDE_WS_PING")]
    pub ws_ping: Option<String>,
    /// Maximum database connections [default: 16].
    #[arg(long, env = "RCLAUDE_DB_MAX_CONNECTIONS")]
    pub db_max_connections: Option<u32>,
    /// Honour the `x-rclaude-now` header (tests only: it lets clients set the clock).
    #[arg(long, env = "RCLAUDE_TEST_CLOCK")]
    pub test_clock: bool,
    /// `Secure` attribute of the dashboard cookie: auto (when the request came over https per
    /// X-Forwarded-Proto), always, never [default: auto].
    #[arg(long, env = "RCLAUDE_COOKIE_SECURE")]
    pub cookie_secure: Option<String>,
    /// How long a dashboard sign-in lasts (e.g. 12h, 7d) [default: 24h].
    #[arg(long, env = "RCLAUDE_DASHBOARD_SESSION_TTL")]
    pub dashboard_session_ttl: Option<String>,
    /// Stripe secret key; enables the usage export to Stripe billing meter events.
    #[arg(long, env = "STRIPE_API_KEY", hide_env_values = true)]
    pub stripe_api_key: Option<String>,
    /// `event_name` of the Stripe meter [default: rclaude_active_seconds].
    #[arg(long, env = "RCLAUDE_STRIPE_METER_EVENT")]
    pub stripe_meter_event: Option<String>,
    /// Stripe API base URL [default: https://api.stripe.com].
    #[arg(long, env = "RCLAUDE_STRIPE_API_BASE")]
    pub stripe_api_base: Option<String>,
    /// Stripe-Version header [default: 2024-06-20].
    #[arg(long, env = "RCLAUDE_STRIPE_API_VERSION")]
    pub stripe_api_version: Option<String>,
    /// How often the Stripe exporter runs (e.g. 30s) [default: 30s].
    #[arg(long, env = "RCLAUDE_STRIPE_POLL_INTERVAL")]
    pub stripe_poll_interval: Option<String>,
    /// First retry delay of a failed Stripe call; doubles per attempt [default: 2s].
    #[arg(long, env = "RCLAUDE_STRIPE_RETRY_BASE")]
    pub stripe_retry_base: Option<String>,
    /// Longest retry delay [default: 1h].
    #[arg(long, env = "RCLAUDE_STRIPE_RETRY_MAX")]
    pub stripe_retry_max: Option<String>,
    /// Where managed sessions' sandboxes run: local (an `rclaude agent` per sandbox on this
    /// machine), e2b, daytona, northflank (keys from this server's environment), or none
    /// [default: local].
    #[arg(long, env = "RCLAUDE_SANDBOX_PROVIDER")]
    pub sandbox_provider: Option<String>,
    /// The local provider's sandboxes [default: $XDG_DATA_HOME/rclaude/server-sandboxes].
    #[arg(long, env = "RCLAUDE_SANDBOXES_DIR")]
    pub sandboxes_dir: Option<std::path::PathBuf>,
    /// The `rclaude` executable that runs local sandboxes' agents [default: `rclaude` beside
    /// this server, else on PATH].
    #[arg(long, env = "RCLAUDE_AGENT_BIN")]
    pub agent_bin: Option<std::path::PathBuf>,
    /// Where the repository lives inside a managed sandbox: an absolute path the provider's
    /// templates can create (the local provider uses its own) [default: /home/user/workspace].
    #[arg(long, env = "RCLAUDE_SANDBOX_WORKDIR")]
    pub sandbox_workdir: Option<String>,
    /// Pause a running managed session after this long without client activity (e.g. 15m;
    /// `off` never) [default: 15m].
    #[arg(long, env = "RCLAUDE_IDLE_PAUSE")]
    pub idle_pause: Option<String>,
    /// How often managed sessions are checked against the provider: a lost sandbox closes its
    /// session, a sandbox no session owns is killed (e.g. 60s; `off` never) [default: 60s].
    #[arg(long, env = "RCLAUDE_RECONCILE_EVERY")]
    pub reconcile_every: Option<String>,
    /// Where checkpoints of sessions' work are stored: a directory, `file:///PATH`, or
    /// `s3://BUCKET[/PREFIX]` (credentials and endpoint from `AWS_*` variables) [default: a
    /// `checkpoints` directory beside the SQLite database, else under $XDG_DATA_HOME/rclaude].
    #[arg(long, env = "RCLAUDE_CHECKPOINT_STORE")]
    pub checkpoint_store: Option<String>,
    /// The largest checkpoint accepted, in bytes [default: 1073741824].
    #[arg(long, env = "RCLAUDE_CHECKPOINT_MAX_BYTES")]
    pub checkpoint_max_bytes: Option<u64>,
    /// Checkpoints kept per session at most; a client may ask for fewer [default: 20].
    #[arg(long, env = "RCLAUDE_CHECKPOINT_KEEP")]
    pub checkpoint_keep: Option<u32>,
    /// How long the checkpoints of a stopped session are kept before they are deleted (and
    /// stop counting as storage), e.g. 7d; `off` keeps them for ever [default: 7d].
    #[arg(long, env = "RCLAUDE_CHECKPOINT_KEEP_AFTER_STOP")]
    pub checkpoint_keep_after_stop: Option<String>,
}

impl ServeArgs {
    fn or(self, other: ServeArgs) -> ServeArgs {
        ServeArgs {
            listen: self.listen.or(other.listen),
            price_hour_usd: self.price_hour_usd.or(other.price_hour_usd),
            price_storage_month_usd: self
                .price_storage_month_usd
                .or(other.price_storage_month_usd),
            heartbeat_grace: self.heartbeat_grace.or(other.heartbeat_grace),
            max_body_bytes: self.max_body_bytes.or(other.max_body_bytes),
            request_timeout: self.request_timeout.or(other.request_timeout),
            header_read_timeout: self.header_read_timeout.or(other.header_read_timeout),
            ws_ping: self.ws_ping.or(other.ws_ping),
            db_max_connections: self.db_max_connections.or(other.db_max_connections),
            test_clock: self.test_clock || other.test_clock,
            cookie_secure: self.cookie_secure.or(other.cookie_secure),
            dashboard_session_ttl: self.dashboard_session_ttl.or(other.dashboard_session_ttl),
            stripe_api_key: self.stripe_api_key.or(other.stripe_api_key),
            stripe_meter_event: self.stripe_meter_event.or(other.stripe_meter_event),
            stripe_api_base: self.stripe_api_base.or(other.stripe_api_base),
            stripe_api_version: self.stripe_api_version.or(other.stripe_api_version),
            stripe_poll_interval: self.stripe_poll_interval.or(other.stripe_poll_interval),
            stripe_retry_base: self.stripe_retry_base.or(other.stripe_retry_base),
            stripe_retry_max: self.stripe_retry_max.or(other.stripe_retry_max),
            sandbox_provider: self.sandbox_provider.or(other.sandbox_provider),
            sandboxes_dir: self.sandboxes_dir.or(other.sandboxes_dir),
            agent_bin: self.agent_bin.or(other.agent_bin),
            sandbox_workdir: self.sandbox_workdir.or(other.sandbox_workdir),
            idle_pause: self.idle_pause.or(other.idle_pause),
            reconcile_every: self.reconcile_every.or(other.reconcile_every),
            checkpoint_store: self.checkpoint_store.or(other.checkpoint_store),
            checkpoint_max_bytes: self.checkpoint_max_bytes.or(other.checkpoint_max_bytes),
            checkpoint_keep: self.checkpoint_keep.or(other.checkpoint_keep),
            checkpoint_keep_after_stop: self
                .checkpoint_keep_after_stop
                .or(other.checkpoint_keep_after_stop),
        }
    }
}

fn init_logs(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logs(cli.log_format);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("rclaude-server: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rclaude-server: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let file = match &cli.config {
        Some(p) => FileConfig::load(p)?,
        None => FileConfig::default(),
    };
    let (serve_args, admin) = match cli.command {
        None => (cli.serve, None),
        Some(Command::Serve(args)) => ((*args).or(cli.serve), None),
        Some(Command::Admin { command }) => (cli.serve, Some(command)),
    };
    let over = Overrides {
        listen: serve_args.listen,
        database_url: cli.database_url,
        price_hour_usd: serve_args.price_hour_usd,
        price_storage_month_usd: serve_args.price_storage_month_usd,
        heartbeat_grace: serve_args.heartbeat_grace,
        max_body_bytes: serve_args.max_body_bytes,
        request_timeout: serve_args.request_timeout,
        header_read_timeout: serve_args.header_read_timeout,
        ws_ping: serve_args.ws_ping,
        db_max_connections: serve_args.db_max_connections,
        test_clock: serve_args.test_clock,
        cookie_secure: serve_args.cookie_secure,
        dashboard_session_ttl: serve_args.dashboard_session_ttl,
        stripe_api_key: serve_args.stripe_api_key,
        stripe_meter_event: serve_args.stripe_meter_event,
        stripe_api_base: serve_args.stripe_api_base,
        stripe_api_version: serve_args.stripe_api_version,
        stripe_poll_interval: serve_args.stripe_poll_interval,
        stripe_retry_base: serve_args.stripe_retry_base,
        stripe_retry_max: serve_args.stripe_retry_max,
        sandbox_provider: serve_args.sandbox_provider,
        sandboxes_dir: serve_args.sandboxes_dir,
        agent_bin: serve_args.agent_bin,
        sandbox_workdir: serve_args.sandbox_workdir,
        idle_pause: serve_args.idle_pause,
        reconcile_every: serve_args.reconcile_every,
        checkpoint_store: serve_args.checkpoint_store,
        checkpoint_max_bytes: serve_args.checkpoint_max_bytes,
        checkpoint_keep: serve_args.checkpoint_keep,
        checkpoint_keep_after_stop: serve_args.checkpoint_keep_after_stop,
    };
    let cfg = config::resolve(file, over)?;
    match admin {
        None => crate::server::serve(cfg).await,
        Some(cmd) => admin::run(&cfg, cmd, &mut std::io::stdout()).await,
    }
}
