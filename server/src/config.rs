//! Server configuration: prices, heartbeat grace, limits; parsed from flags, env and an optional
//! TOML file (flags and env win over the file, the file over the defaults).
//!
//! Length: every setting's flag, variable, file key, default and range in one table-like
//! struct, plus its tests; splitting it would hide which source wins.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// One US dollar in micro-dollars, the server's unit of money.
pub const MICROS_PER_USD: i64 = 1_000_000;

/// Prices and metering rules. All money is integer micro-dollars.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Prices {
    /// Price of one hour of active session time.
    pub hour_micros: i64,
    /// Price of persistent storage for one repository for one whole month.
    pub storage_month_micros: i64,
    /// How long after the last sign of life a running session still counts as active.
    pub heartbeat_grace_s: i64,
}

impl Default for Prices {
    fn default() -> Self {
        Prices {
            hour_micros: 100_000,            // $0.10 / hour
            storage_month_micros: 5_000_000, // $5 / repository / month
            heartbeat_grace_s: 300,          // 5 minutes
        }
    }
}

/// Everything `serve` needs, after merging flags, env and the config file.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub database_url: String,
    pub prices: Prices,
    /// Largest accepted request body in bytes.
    pub max_body_bytes: usize,
    /// Deadline for one HTTP request (WebSockets are exempt once upgraded).
    pub request_timeout: Duration,
    /// How often WebSockets are pinged; each ping also re-checks the socket's credential.
    pub ws_ping: Duration,
    /// Time a client has to send a request's headers (and to start the next request on a
    /// kept-alive connection) before the connection is closed.
    pub header_read_timeout: Duration,
    /// Honour the `x-rclaude-now` header (tests drive the clock with it). Never in production.
    pub test_clock: bool,
    /// Maximum pooled database connections (PostgreSQL; SQLite uses 1 writer + readers).
    pub db_max_connections: u32,
    /// How long graceful shutdown waits for open connections.
    pub shutdown_grace: Duration,
    /// Dashboard sign-in sessions.
    pub dashboard: DashboardConfig,
    /// The Stripe usage export; `None` when no API key is configured.
    pub stripe: Option<StripeConfig>,
    /// Managed sandboxes: the provider the server creates them with.
    pub sandboxes: SandboxSettings,
    /// Where checkpoints are stored, and how many and how large.
    pub checkpoints: CheckpointSettings,
}

/// Settings of checkpoint storage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointSettings {
    /// A directory, `file:///PATH` or `s3://BUCKET[/PREFIX]`.
    pub store: String,
    /// The largest bundle accepted.
    pub max_bytes: u64,
    /// Checkpoints kept per session at most (a client may ask for fewer).
    pub keep: u32,
    /// How long the checkpoints of a stopped session are kept (`None`: for ever).
    pub keep_after_stop: Option<std::time::Duration>,
}

/// Default largest checkpoint: 1 GiB.
pub const DEFAULT_MAX_BYTES: u64 = 1 << 30;
/// Default (and largest) number kept per session.
pub const DEFAULT_KEEP: u32 = 20;
/// How long a stopped session's checkpoints are kept by default: 7 days.
pub const DEFAULT_KEEP_AFTER_STOP: std::time::Duration = std::time::Duration::from_secs(7 * 86_400);

/// Where the repository lives inside a managed sandbox by default.
pub const DEFAULT_SANDBOX_WORKDIR: &str = "/home/user/workspace";

/// Where managed sessions' sandboxes run (see docs/server.md, "Managed sessions").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxSettings {
    /// `None`: this server manages no sandboxes (`sandbox_provider = "none"`).
    pub provider: Option<rclaude_sandbox::ProviderKind>,
    /// The local provider's sandboxes.
    pub dir: PathBuf,
    /// The `rclaude` executable that runs local sandboxes' agents (`None`: beside this
    /// server's executable, else on PATH).
    pub agent_bin: Option<PathBuf>,
    /// Where the repository lives inside a managed sandbox.
    pub workdir: String,
    /// A running managed session no client has shown activity on for this long is paused
    /// (`None`: never).
    pub idle_pause: Option<Duration>,
    /// How often the database is reconciled with the provider (`None`: never).
    pub reconcile_every: Option<Duration>,
}

impl Default for SandboxSettings {
    fn default() -> Self {
        SandboxSettings {
            provider: Some(rclaude_sandbox::ProviderKind::Local),
            dir: default_data_dir().join("server-sandboxes"),
            agent_bin: None,
            workdir: DEFAULT_SANDBOX_WORKDIR.into(),
            idle_pause: Some(Duration::from_secs(15 * 60)),
            reconcile_every: Some(Duration::from_secs(60)),
        }
    }
}

/// When the dashboard's session cookie carries the `Secure` attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CookieSecure {
    /// When the request arrived over https (`X-Forwarded-Proto: https` from a proxy).
    Auto,
    Always,
    Never,
}

/// Dashboard settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DashboardConfig {
    pub cookie_secure: CookieSecure,
    /// Lifetime of a sign-in (absolute, from sign-in).
    pub session_ttl: Duration,
}

impl Default for DashboardConfig {
    fn default() -> Self {
        DashboardConfig {
            cookie_secure: CookieSecure::Auto,
            session_ttl: Duration::from_secs(24 * 3600),
        }
    }
}

/// A secret that never appears in `Debug` output or logs.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }

    /// The secret itself (for the one place that sends it).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Default meter event name (the `event_name` of the Stripe meter).
pub const DEFAULT_STRIPE_METER_EVENT: &str = "rclaude_active_seconds";
/// Default Stripe API base URL.
pub const DEFAULT_STRIPE_API_BASE: &str = "https://api.stripe.com";
/// The Stripe API version the export is written against (sent as `Stripe-Version`).
pub const DEFAULT_STRIPE_API_VERSION: &str = "2024-06-20";

/// The Stripe usage export (see docs/server.md, "Stripe export").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StripeConfig {
    pub api_key: Secret,
    /// `event_name` of the meter events.
    pub meter_event_name: String,
    /// `https://api.stripe.com`, or a local server in tests.
    pub api_base: String,
    pub api_version: String,
    /// How often the exporter looks for new usage and due retries.
    pub poll_interval: Duration,
    /// First retry delay; doubles per attempt up to `retry_max`.
    pub retry_base: Duration,
    pub retry_max: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: "127.0.0.1:7420".parse().expect("valid default address"),
            database_url: default_database_url(),
            prices: Prices::default(),
            max_body_bytes: 64 * 1024,
            request_timeout: Duration::from_secs(30),
            ws_ping: Duration::from_secs(30),
            header_read_timeout: Duration::from_secs(10),
            test_clock: false,
            db_max_connections: 16,
            shutdown_grace: Duration::from_secs(10),
            dashboard: DashboardConfig::default(),
            stripe: None,
            sandboxes: SandboxSettings::default(),
            checkpoints: CheckpointSettings {
                store: default_data_dir().join("checkpoints").display().to_string(),
                max_bytes: DEFAULT_MAX_BYTES,
                keep: DEFAULT_KEEP,
                keep_after_stop: Some(DEFAULT_KEEP_AFTER_STOP),
            },
        }
    }
}

/// `$XDG_DATA_HOME/rclaude/server.db` (or `~/.local/share/rclaude/server.db`, or `./rclaude-server.db`).
pub fn default_database_url() -> String {
    let dir = default_data_dir();
    if dir.as_os_str().is_empty() {
        "rclaude-server.db".to_string()
    } else {
        dir.join("server.db").display().to_string()
    }
}

/// The directory of a SQLite database file (`None`: PostgreSQL, or in memory).
fn sqlite_dir(url: &str) -> Option<PathBuf> {
    let url = url.trim();
    if url.contains("postgres") || url.contains(":memory:") || url.contains("mode=memory") {
        return None;
    }
    let path = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .unwrap_or(url);
    let path = path.split('?').next().unwrap_or(path);
    let dir = Path::new(path).parent()?;
    Some(if dir.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        dir.to_path_buf()
    })
}

/// `$XDG_DATA_HOME/rclaude` (or `~/.local/share/rclaude`; empty: the current directory).
fn default_data_dir() -> PathBuf {
    std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
        .map(|d| d.join("rclaude"))
        .unwrap_or_default()
}

/// A configuration value that could not be understood.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "{what}: `{value}` is not a dollar amount (write e.g. `0.10` or `5`; at most 6 decimals)"
    )]
    BadUsd { what: String, value: String },
    #[error(
        "{what}: `{value}` is not a duration (write e.g. `300`, `90s`, `5m`, `2h`; whole seconds)"
    )]
    BadDuration { what: String, value: String },
    #[error("{what}: `{value}` is not a socket address (write e.g. `127.0.0.1:7420`)")]
    BadAddress { what: String, value: String },
    #[error("{what}: {message}")]
    Invalid { what: String, message: String },
    #[error("config file {path}: {message}")]
    File { path: PathBuf, message: String },
}

/// Parses a non-negative decimal dollar amount exactly into micro-dollars (`"0.10"` → `100000`).
pub fn parse_usd(what: &str, value: &str) -> Result<i64, ConfigError> {
    let bad = || ConfigError::BadUsd {
        what: what.to_string(),
        value: value.to_string(),
    };
    let s = value.trim().trim_start_matches('$');
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    if int.is_empty() && frac.is_empty()
        || !int.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
        || frac.len() > 6
        || int.len() > 12
    {
        return Err(bad());
    }
    let int: i64 = if int.is_empty() {
        0
    } else {
        int.parse().map_err(|_| bad())?
    };
    let frac_micros: i64 = if frac.is_empty() {
        0
    } else {
        format!("{frac:0<6}").parse().map_err(|_| bad())?
    };
    Ok(int * MICROS_PER_USD + frac_micros)
}

/// Parses `300`, `300s`, `5m`, `2h`, `1d` into whole seconds.
pub fn parse_duration_s(what: &str, value: &str) -> Result<i64, ConfigError> {
    let bad = || ConfigError::BadDuration {
        what: what.to_string(),
        value: value.to_string(),
    };
    let s = value.trim();
    let (num, mult) = match s.char_indices().last() {
        Some((i, 's')) => (&s[..i], 1),
        Some((i, 'm')) => (&s[..i], 60),
        Some((i, 'h')) => (&s[..i], 3600),
        Some((i, 'd')) => (&s[..i], 86_400),
        Some(_) => (s, 1),
        None => return Err(bad()),
    };
    let n: i64 = num.trim().parse().map_err(|_| bad())?;
    if n < 0 {
        return Err(bad());
    }
    n.checked_mul(mult).ok_or_else(bad)
}

/// The longest heartbeat grace: a client silent for longer than this is stopped and its billing
/// ends at its last heartbeat. A day covers a laptop asleep overnight; more would let a crashed
/// client's session look alive (and billable) for days.
pub const MAX_HEARTBEAT_GRACE_S: i64 = 24 * 3600;

/// A duration setting in whole seconds within `min..=max`.
fn duration_within(what: &str, value: &str, min: i64, max: i64) -> Result<i64, ConfigError> {
    let s = parse_duration_s(what, value)?;
    if (min..=max).contains(&s) {
        Ok(s)
    } else {
        Err(ConfigError::Invalid {
            what: what.into(),
            message: format!("`{value}` is out of range ({min}s ..= {max}s)"),
        })
    }
}

/// The TOML config file (`--config`). Every key is optional.
///
/// ```toml
/// listen = "0.0.0.0:7420"
/// database_url = "postgres://rclaude@db/rclaude"
/// price_hour_usd = "0.10"
/// price_storage_month_usd = "5"
/// heartbeat_grace = "5m"
/// max_body_bytes = 65536
/// request_timeout = "30s"
/// header_read_timeout = "10s"
/// ws_ping = "30s"
/// db_max_connections = 16
/// ```
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub listen: Option<String>,
    pub database_url: Option<String>,
    pub price_hour_usd: Option<NumOrStr>,
    pub price_storage_month_usd: Option<NumOrStr>,
    pub heartbeat_grace: Option<NumOrStr>,
    pub max_body_bytes: Option<u64>,
    pub request_timeout: Option<NumOrStr>,
    pub header_read_timeout: Option<NumOrStr>,
    pub ws_ping: Option<NumOrStr>,
    pub db_max_connections: Option<u32>,
    pub cookie_secure: Option<String>,
    pub dashboard_session_ttl: Option<NumOrStr>,
    pub stripe_api_key: Option<String>,
    pub stripe_meter_event: Option<String>,
    pub stripe_api_base: Option<String>,
    pub stripe_api_version: Option<String>,
    pub stripe_poll_interval: Option<NumOrStr>,
    pub stripe_retry_base: Option<NumOrStr>,
    pub stripe_retry_max: Option<NumOrStr>,
    pub sandbox_provider: Option<String>,
    pub sandboxes_dir: Option<PathBuf>,
    pub agent_bin: Option<PathBuf>,
    pub sandbox_workdir: Option<String>,
    pub idle_pause: Option<NumOrStr>,
    pub reconcile_every: Option<NumOrStr>,
    pub checkpoint_store: Option<String>,
    pub checkpoint_max_bytes: Option<u64>,
    pub checkpoint_keep: Option<u32>,
    pub checkpoint_keep_after_stop: Option<NumOrStr>,
}

/// A TOML value written either as a number or as a string (`0.10` or `"0.10"`).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum NumOrStr {
    Int(i64),
    Float(f64),
    Str(String),
}

impl NumOrStr {
    fn text(&self) -> String {
        match self {
            NumOrStr::Int(i) => i.to_string(),
            NumOrStr::Float(f) => f.to_string(),
            NumOrStr::Str(s) => s.clone(),
        }
    }
}

impl FileConfig {
    /// Reads and parses a config file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::File {
            path: path.to_path_buf(),
            message: format!("cannot read it: {e}"),
        })?;
        toml::from_str(&text).map_err(|e| ConfigError::File {
            path: path.to_path_buf(),
            message: e.to_string(),
        })
    }
}

/// Raw overrides from flags / env (each `None` when not given).
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub listen: Option<String>,
    pub database_url: Option<String>,
    pub price_hour_usd: Option<String>,
    pub price_storage_month_usd: Option<String>,
    pub heartbeat_grace: Option<String>,
    pub max_body_bytes: Option<u64>,
    pub request_timeout: Option<String>,
    pub header_read_timeout: Option<String>,
    pub ws_ping: Option<String>,
    pub db_max_connections: Option<u32>,
    pub test_clock: bool,
    pub cookie_secure: Option<String>,
    pub dashboard_session_ttl: Option<String>,
    pub stripe_api_key: Option<String>,
    pub stripe_meter_event: Option<String>,
    pub stripe_api_base: Option<String>,
    pub stripe_api_version: Option<String>,
    pub stripe_poll_interval: Option<String>,
    pub stripe_retry_base: Option<String>,
    pub stripe_retry_max: Option<String>,
    pub sandbox_provider: Option<String>,
    pub sandboxes_dir: Option<PathBuf>,
    pub agent_bin: Option<PathBuf>,
    pub sandbox_workdir: Option<String>,
    pub idle_pause: Option<String>,
    pub reconcile_every: Option<String>,
    pub checkpoint_store: Option<String>,
    pub checkpoint_max_bytes: Option<u64>,
    pub checkpoint_keep: Option<u32>,
    pub checkpoint_keep_after_stop: Option<String>,
}

/// Merges flags/env over the file over the defaults, validating every value.
pub fn resolve(file: FileConfig, over: Overrides) -> Result<ServerConfig, ConfigError> {
    let mut cfg = ServerConfig {
        stripe: resolve_stripe(&file, &over)?,
        ..ServerConfig::default()
    };
    if let Some(v) = over
        .sandbox_provider
        .clone()
        .or(file.sandbox_provider.clone())
    {
        cfg.sandboxes.provider = match v.trim() {
            "none" => None,
            name => Some(
                rclaude_sandbox::ProviderKind::ALL
                    .into_iter()
                    .find(|k| k.as_str() == name)
                    .ok_or_else(|| ConfigError::Invalid {
                        what: "sandbox_provider".into(),
                        message: format!(
                            "`{v}` is not one of none, local, e2b, daytona, northflank"
                        ),
                    })?,
            ),
        };
    }
    if let Some(v) = over.sandboxes_dir.clone().or(file.sandboxes_dir.clone()) {
        cfg.sandboxes.dir = v;
    }
    cfg.sandboxes.agent_bin = over.agent_bin.clone().or(file.agent_bin.clone());
    if let Some(v) = over
        .sandbox_workdir
        .clone()
        .or(file.sandbox_workdir.clone())
    {
        let v = v.trim().to_string();
        if !v.starts_with('/')
            || v == "/"
            || v.split('/').any(|c| c == "..")
            || v.chars().any(char::is_control)
        {
            return Err(ConfigError::Invalid {
                what: "sandbox_workdir".into(),
                message: format!("`{v}` is not an absolute path other than / (without `..`)"),
            });
        }
        cfg.sandboxes.workdir = v;
    }
    if let Some(v) = over
        .idle_pause
        .clone()
        .or(file.idle_pause.as_ref().map(|v| v.text()))
    {
        cfg.sandboxes.idle_pause = match v.trim() {
            "off" | "never" | "0" => None,
            _ => Some(Duration::from_secs(
                duration_within("idle_pause", &v, 1, 30 * 86_400)? as u64,
            )),
        };
    }
    if let Some(v) = over
        .reconcile_every
        .clone()
        .or(file.reconcile_every.as_ref().map(|v| v.text()))
    {
        cfg.sandboxes.reconcile_every = match v.trim() {
            "off" | "never" | "0" => None,
            _ => Some(Duration::from_secs(
                duration_within("reconcile_every", &v, 1, 86_400)? as u64,
            )),
        };
    }
    if let Some(v) = over
        .checkpoint_store
        .clone()
        .or(file.checkpoint_store.clone())
    {
        if v.trim().is_empty() {
            return Err(ConfigError::Invalid {
                what: "checkpoint_store".into(),
                message: "empty: give a directory, file:///PATH or s3://BUCKET[/PREFIX]".into(),
            });
        }
        cfg.checkpoints.store = v;
    }
    if let Some(v) = over.checkpoint_max_bytes.or(file.checkpoint_max_bytes) {
        if !(1024..=1 << 40).contains(&v) {
            return Err(ConfigError::Invalid {
                what: "checkpoint_max_bytes".into(),
                message: format!("{v} is out of range (1024 ..= 1099511627776)"),
            });
        }
        cfg.checkpoints.max_bytes = v;
    }
    if let Some(v) = over
        .checkpoint_keep_after_stop
        .clone()
        .or(file.checkpoint_keep_after_stop.as_ref().map(|v| v.text()))
    {
        cfg.checkpoints.keep_after_stop = match v.trim() {
            "off" | "never" | "forever" => None,
            _ => Some(Duration::from_secs(duration_within(
                "checkpoint_keep_after_stop",
                &v,
                60,
                3650 * 86_400,
            )? as u64)),
        };
    }
    if let Some(v) = over.checkpoint_keep.or(file.checkpoint_keep) {
        if !(1..=1000).contains(&v) {
            return Err(ConfigError::Invalid {
                what: "checkpoint_keep".into(),
                message: format!("{v} is out of range (1 ..= 1000)"),
            });
        }
        cfg.checkpoints.keep = v;
    }
    if let Some(v) = over.listen.or(file.listen) {
        cfg.listen = v.parse().map_err(|_| ConfigError::BadAddress {
            what: "listen".into(),
            value: v.clone(),
        })?;
    }
    if let Some(v) = over.database_url.or(file.database_url) {
        cfg.database_url = v;
    }
    if over.checkpoint_store.is_none()
        && file.checkpoint_store.is_none()
        && let Some(dir) = sqlite_dir(&cfg.database_url)
    {
        cfg.checkpoints.store = dir.join("checkpoints").display().to_string();
    }
    if let Some(v) = over
        .price_hour_usd
        .or(file.price_hour_usd.map(|v| v.text()))
    {
        cfg.prices.hour_micros = parse_usd("price_hour_usd", &v)?;
    }
    if let Some(v) = over
        .price_storage_month_usd
        .or(file.price_storage_month_usd.map(|v| v.text()))
    {
        cfg.prices.storage_month_micros = parse_usd("price_storage_month_usd", &v)?;
    }
    if let Some(v) = over
        .heartbeat_grace
        .or(file.heartbeat_grace.map(|v| v.text()))
    {
        cfg.prices.heartbeat_grace_s =
            duration_within("heartbeat_grace", &v, 1, MAX_HEARTBEAT_GRACE_S)?;
    }
    if let Some(v) = over
        .header_read_timeout
        .or(file.header_read_timeout.map(|v| v.text()))
    {
        cfg.header_read_timeout =
            Duration::from_secs(duration_within("header_read_timeout", &v, 1, 300)? as u64);
    }
    if let Some(v) = over.ws_ping.or(file.ws_ping.map(|v| v.text())) {
        cfg.ws_ping = Duration::from_secs(duration_within("ws_ping", &v, 1, 3600)? as u64);
    }
    if let Some(v) = over.max_body_bytes.or(file.max_body_bytes) {
        if !(1024..=64 * 1024 * 1024).contains(&v) {
            return Err(ConfigError::Invalid {
                what: "max_body_bytes".into(),
                message: format!("{v} is out of range (1024 ..= 67108864)"),
            });
        }
        cfg.max_body_bytes = v as usize;
    }
    if let Some(v) = over
        .request_timeout
        .or(file.request_timeout.map(|v| v.text()))
    {
        let s = parse_duration_s("request_timeout", &v)?;
        if s == 0 {
            return Err(ConfigError::Invalid {
                what: "request_timeout".into(),
                message: "must be at least 1s".into(),
            });
        }
        cfg.request_timeout = Duration::from_secs(s as u64);
    }
    if let Some(v) = over.db_max_connections.or(file.db_max_connections) {
        if v == 0 {
            return Err(ConfigError::Invalid {
                what: "db_max_connections".into(),
                message: "must be at least 1".into(),
            });
        }
        cfg.db_max_connections = v;
    }
    cfg.test_clock = over.test_clock;
    if let Some(v) = over.cookie_secure.or(file.cookie_secure) {
        cfg.dashboard.cookie_secure = match v.trim() {
            "auto" => CookieSecure::Auto,
            "always" | "true" => CookieSecure::Always,
            "never" | "false" => CookieSecure::Never,
            _ => {
                return Err(ConfigError::Invalid {
                    what: "cookie_secure".into(),
                    message: format!("`{v}` is not one of auto, always, never"),
                });
            }
        };
    }
    if let Some(v) = over
        .dashboard_session_ttl
        .or(file.dashboard_session_ttl.map(|v| v.text()))
    {
        let s = parse_duration_s("dashboard_session_ttl", &v)?;
        if !(60..=90 * 86_400).contains(&s) {
            return Err(ConfigError::Invalid {
                what: "dashboard_session_ttl".into(),
                message: format!("{v} is out of range (1m ..= 90d)"),
            });
        }
        cfg.dashboard.session_ttl = Duration::from_secs(s as u64);
    }
    Ok(cfg)
}

fn resolve_stripe(
    file: &FileConfig,
    over: &Overrides,
) -> Result<Option<StripeConfig>, ConfigError> {
    let invalid = |what: &str, message: String| ConfigError::Invalid {
        what: what.into(),
        message,
    };
    let Some(key) = over
        .stripe_api_key
        .clone()
        .or(file.stripe_api_key.clone())
        .filter(|k| !k.trim().is_empty())
    else {
        return Ok(None);
    };
    let key = key.trim().to_string();
    if !(key.starts_with("sk_") || key.starts_with("rk_"))
        || key.len() > 255
        || !key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
    {
        // Never echo the key itself.
        return Err(invalid(
            "stripe_api_key",
            "does not look like a Stripe secret or restricted key (sk_… or rk_…)".into(),
        ));
    }
    let event = over
        .stripe_meter_event
        .clone()
        .or(file.stripe_meter_event.clone())
        .unwrap_or_else(|| DEFAULT_STRIPE_METER_EVENT.to_string());
    if event.is_empty()
        || event.len() > 100
        || !event
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-.:".contains(&b))
    {
        return Err(invalid(
            "stripe_meter_event",
            format!("`{event}` is not a meter event name (1-100 of A-Z a-z 0-9 _ - . :)"),
        ));
    }
    let base = over
        .stripe_api_base
        .clone()
        .or(file.stripe_api_base.clone())
        .unwrap_or_else(|| DEFAULT_STRIPE_API_BASE.to_string());
    let base = base.trim_end_matches('/').to_string();
    match url::Url::parse(&base) {
        Ok(u) if (u.scheme() == "https" || u.scheme() == "http") && u.host().is_some() => {}
        _ => {
            return Err(invalid(
                "stripe_api_base",
                format!("`{base}` is not an http(s) URL"),
            ));
        }
    }
    let version = over
        .stripe_api_version
        .clone()
        .or(file.stripe_api_version.clone())
        .unwrap_or_else(|| DEFAULT_STRIPE_API_VERSION.to_string());
    if !valid_stripe_version(&version) {
        return Err(invalid(
            "stripe_api_version",
            format!(
                "`{version}` is not a Stripe API version (e.g. 2024-06-20 or 2025-03-31.basil)"
            ),
        ));
    }
    let dur = |what: &str, o: &Option<String>, f: &Option<NumOrStr>, default: u64| match o
        .clone()
        .or(f.as_ref().map(|v| v.text()))
    {
        None => Ok(Duration::from_secs(default)),
        Some(v) => {
            let s = parse_duration_s(what, &v)?;
            if s == 0 {
                return Err(invalid(what, "must be at least 1s".into()));
            }
            Ok(Duration::from_secs(s as u64))
        }
    };
    let poll_interval = dur(
        "stripe_poll_interval",
        &over.stripe_poll_interval,
        &file.stripe_poll_interval,
        30,
    )?;
    let retry_base = dur(
        "stripe_retry_base",
        &over.stripe_retry_base,
        &file.stripe_retry_base,
        2,
    )?;
    let retry_max = dur(
        "stripe_retry_max",
        &over.stripe_retry_max,
        &file.stripe_retry_max,
        3600,
    )?;
    if retry_max < retry_base {
        return Err(invalid(
            "stripe_retry_max",
            "must not be less than stripe_retry_base".into(),
        ));
    }
    Ok(Some(StripeConfig {
        api_key: Secret::new(key),
        meter_event_name: event,
        api_base: base,
        api_version: version,
        poll_interval,
        retry_base,
        retry_max,
    }))
}

/// `YYYY-MM-DD` optionally followed by `.name` (Stripe's version strings).
pub fn valid_stripe_version(v: &str) -> bool {
    let (date, name) = match v.split_once('.') {
        Some((d, n)) => (d, Some(n)),
        None => (v, None),
    };
    let b = date.as_bytes();
    b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit())
        && name.is_none_or(|n| !n.is_empty() && n.bytes().all(|c| c.is_ascii_lowercase()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usd_parses_exactly() {
        assert_eq!(parse_usd("x", "0.10").unwrap(), 100_000);
        assert_eq!(parse_usd("x", "5").unwrap(), 5_000_000);
        assert_eq!(parse_usd("x", "$1.5").unwrap(), 1_500_000);
        assert_eq!(parse_usd("x", ".000001").unwrap(), 1);
        assert_eq!(parse_usd("x", "0.1").unwrap(), 100_000);
        for bad in ["", ".", "-1", "1.0000001", "abc", "1,5", "1e3"] {
            assert!(parse_usd("x", bad).is_err(), "{bad} should be rejected");
        }
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration_s("x", "300").unwrap(), 300);
        assert_eq!(parse_duration_s("x", "90s").unwrap(), 90);
        assert_eq!(parse_duration_s("x", "5m").unwrap(), 300);
        assert_eq!(parse_duration_s("x", "2h").unwrap(), 7200);
        assert!(parse_duration_s("x", "5 minutes").is_err());
        assert!(parse_duration_s("x", "-5s").is_err());
        assert!(parse_duration_s("x", "").is_err());
    }

    #[test]
    fn flags_override_file() {
        let file: FileConfig = toml::from_str(
            "price_hour_usd = 0.2\nprice_storage_month_usd = \"7\"\nheartbeat_grace = \"1m\"",
        )
        .unwrap();
        let over = Overrides {
            price_hour_usd: Some("0.30".into()),
            ..Default::default()
        };
        let cfg = resolve(file, over).unwrap();
        assert_eq!(cfg.prices.hour_micros, 300_000);
        assert_eq!(cfg.prices.storage_month_micros, 7_000_000);
        assert_eq!(cfg.prices.heartbeat_grace_s, 60);
    }

    #[test]
    fn stripe_config() {
        assert_eq!(
            resolve(FileConfig::default(), Overrides::default())
                .unwrap()
                .stripe,
            None
        );
        let over = Overrides {
            stripe_api_key: Some("sk_test_abc123".into()),
            stripe_retry_base: Some("1s".into()),
            ..Default::default()
        };
        let s = resolve(FileConfig::default(), over)
            .unwrap()
            .stripe
            .unwrap();
        assert_eq!(s.meter_event_name, DEFAULT_STRIPE_METER_EVENT);
        assert_eq!(s.retry_base, Duration::from_secs(1));
        assert!(!format!("{s:?}").contains("abc123"));
        let bad = Overrides {
            stripe_api_key: Some("pk_live_oops".into()),
            ..Default::default()
        };
        let e = resolve(FileConfig::default(), bad).unwrap_err().to_string();
        assert!(!e.contains("oops"), "{e}");
        assert!(valid_stripe_version("2025-03-31.basil"));
        assert!(!valid_stripe_version("2025-3-31"));
        let file: FileConfig =
            toml::from_str("cookie_secure = \"always\"\ndashboard_session_ttl = \"2h\"").unwrap();
        let cfg = resolve(file, Overrides::default()).unwrap();
        assert_eq!(cfg.dashboard.cookie_secure, CookieSecure::Always);
        assert_eq!(cfg.dashboard.session_ttl, Duration::from_secs(7200));
    }

    #[test]
    fn file_rejects_unknown_keys() {
        assert!(toml::from_str::<FileConfig>("price_hour = 1").is_err());
    }
}
