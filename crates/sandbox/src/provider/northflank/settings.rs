//! Northflank client settings: the API token and endpoint from the environment, the project from
//! `.rclaude.toml` (`[sandbox] project`) or `NORTHFLANK_PROJECT_ID`.

use std::fmt;
use std::time::Duration;

use crate::provider::ProviderError;

/// Northflank's API.
pub const DEFAULT_API_URL: &str = "https://api.northflank.com";
/// Where team API tokens are made.
pub const TOKEN_HELP: &str = "create a team API token (team settings → API → Tokens, with an API role allowed to manage services, volumes and command execution)";
/// The plan used when the config names no size (2 vCPU, 4 GB).
pub const DEFAULT_PLAN: &str = "nf-compute-200";
/// Workspace volume size.
pub const DEFAULT_VOLUME_MB: u32 = 10240;
/// Storage class of the workspace volume.
pub const DEFAULT_STORAGE_CLASS: &str = "nf-multi-rw";

/// How to reach Northflank, and how gently.
#[derive(Clone)]
pub struct NorthflankSettings {
    /// Bearer token; never logged.
    pub token: String,
    /// REST base URL without a trailing slash; the exec WebSocket lives under it too.
    pub api_url: String,
    /// Project for new sandboxes and for listing (existing sandboxes carry their own).
    pub project: Option<String>,
    /// `NORTHFLANK_DEPLOYMENT_PLAN`: overrides the plan picked from `cpu`/`memory_mb`.
    pub plan: Option<String>,
    pub volume_mb: u32,
    pub storage_class: String,
    pub request_timeout: Duration,
    /// First pause between state polls; grows by half each time up to `max_poll_interval`.
    pub poll_interval: Duration,
    pub max_poll_interval: Duration,
    /// Pause between polls once fewer than `low_budget` requests (and at most a tenth of the
    /// limit) are left this window.
    pub low_budget_poll_interval: Duration,
    pub low_budget: u64,
    /// Longest wait for the rate-limit window to reset before failing instead.
    pub max_budget_wait: Duration,
    /// Longest wait for a service to roll out (image pull included).
    pub ready_timeout: Duration,
}

impl fmt::Debug for NorthflankSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NorthflankSettings")
            .field("token", &"<redacted>")
            .field("api_url", &self.api_url)
            .field("project", &self.project)
            .field("plan", &self.plan)
            .field("volume_mb", &self.volume_mb)
            .field("poll_interval", &self.poll_interval)
            .finish()
    }
}

impl NorthflankSettings {
    pub fn new(token: impl Into<String>) -> Self {
        NorthflankSettings {
            token: token.into(),
            api_url: DEFAULT_API_URL.into(),
            project: None,
            plan: None,
            volume_mb: DEFAULT_VOLUME_MB,
            storage_class: DEFAULT_STORAGE_CLASS.into(),
            request_timeout: Duration::from_secs(60),
            poll_interval: Duration::from_secs(2),
            max_poll_interval: Duration::from_secs(5),
            low_budget_poll_interval: Duration::from_secs(15),
            low_budget: 50,
            max_budget_wait: Duration::from_secs(90),
            ready_timeout: Duration::from_secs(10 * 60),
        }
    }

    /// From this process's environment, with the project from the config when it names one.
    pub fn from_env(config_project: Option<&str>) -> Result<Self, ProviderError> {
        Self::from_lookup(|name| std::env::var(name).ok(), config_project)
    }

    /// `NORTHFLANK_API_TOKEN` (or `NORTHFLANK_TOKEN`, required), `NORTHFLANK_API_URL`,
    /// `NORTHFLANK_PROJECT_ID` (when the config names no project), `NORTHFLANK_DEPLOYMENT_PLAN`.
    pub fn from_lookup(
        lookup: impl Fn(&str) -> Option<String>,
        config_project: Option<&str>,
    ) -> Result<Self, ProviderError> {
        let get = |name: &str| {
            lookup(name)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let token = get("NORTHFLANK_API_TOKEN")
            .or_else(|| get("NORTHFLANK_TOKEN"))
            .ok_or_else(|| {
                ProviderError::Config(format!(
                    "NORTHFLANK_API_TOKEN is not set: the northflank provider needs an API token.\n  hint: {TOKEN_HELP}, then export NORTHFLANK_API_TOKEN=..."
                ))
            })?;
        if reqwest::header::HeaderValue::from_str(&token).is_err() {
            return Err(ProviderError::Config(
                "NORTHFLANK_API_TOKEN contains characters that cannot be sent in an HTTP header; copy it again".into(),
            ));
        }
        let mut s = NorthflankSettings::new(token);
        if let Some(url) = get("NORTHFLANK_API_URL") {
            s.api_url = check_url(url)?;
        }
        let project = config_project
            .map(|p| p.trim().to_string())
            .filter(|p| !p.is_empty())
            .or_else(|| get("NORTHFLANK_PROJECT_ID"));
        if let Some(p) = &project {
            check_name("project id", p)?;
        }
        s.project = project;
        if let Some(plan) = get("NORTHFLANK_DEPLOYMENT_PLAN") {
            check_name("NORTHFLANK_DEPLOYMENT_PLAN", &plan)?;
            s.plan = Some(plan);
        }
        Ok(s)
    }

    /// The project for new sandboxes, or the error saying how to name one.
    pub fn require_project(&self) -> Result<&str, ProviderError> {
        self.project.as_deref().ok_or_else(|| {
            ProviderError::Config(
                "no Northflank project: set `project = \"<project id>\"` in .rclaude.toml [sandbox] or export NORTHFLANK_PROJECT_ID\n  hint: the project fixes the region (or your own cluster); its id is in the project's URL".into(),
            )
        })
    }
}

/// Northflank ids: lower-case letters, digits and hyphens.
pub fn check_name(what: &str, v: &str) -> Result<(), ProviderError> {
    if v.is_empty()
        || v.len() > 64
        || !v
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err(ProviderError::Config(format!(
            "Northflank {what} {v:?} is not valid: expected lower-case letters, digits and '-'"
        )));
    }
    Ok(())
}

fn check_url(url: String) -> Result<String, ProviderError> {
    let url = url.trim_end_matches('/').to_string();
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"));
    match rest {
        Some(host) if !host.is_empty() && !host.contains(char::is_whitespace) => Ok(url),
        _ => Err(ProviderError::Config(format!(
            "NORTHFLANK_API_URL={url:?} must be an http:// or https:// URL, e.g. {DEFAULT_API_URL}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn from(
        vars: &[(&str, &str)],
        project: Option<&str>,
    ) -> Result<NorthflankSettings, ProviderError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        NorthflankSettings::from_lookup(|k| map.get(k).cloned(), project)
    }

    #[test]
    fn token_is_required_under_either_name() {
        let e = from(&[], None).unwrap_err();
        assert!(e.to_string().contains("NORTHFLANK_API_TOKEN"), "{e}");
        assert_eq!(from(&[("NORTHFLANK_TOKEN", "t")], None).unwrap().token, "t");
        assert_eq!(
            from(
                &[("NORTHFLANK_TOKEN", "t"), ("NORTHFLANK_API_TOKEN", "u")],
                None
            )
            .unwrap()
            .token,
            "u"
        );
    }

    #[test]
    fn the_project_comes_from_the_config_first() {
        let s = from(
            &[
                ("NORTHFLANK_TOKEN", "t"),
                ("NORTHFLANK_PROJECT_ID", "env-proj"),
            ],
            Some("cfg-proj"),
        )
        .unwrap();
        assert_eq!(s.project.as_deref(), Some("cfg-proj"));
        let s = from(
            &[
                ("NORTHFLANK_TOKEN", "t"),
                ("NORTHFLANK_PROJECT_ID", "env-proj"),
            ],
            None,
        )
        .unwrap();
        assert_eq!(s.project.as_deref(), Some("env-proj"));
        let s = from(&[("NORTHFLANK_TOKEN", "t")], None).unwrap();
        let e = s.require_project().unwrap_err().to_string();
        assert!(
            e.contains("project") && e.contains("NORTHFLANK_PROJECT_ID"),
            "{e}"
        );
        assert!(from(&[("NORTHFLANK_TOKEN", "t")], Some("Bad Project")).is_err());
    }

    #[test]
    fn urls_and_secrets() {
        let s = from(
            &[
                ("NORTHFLANK_TOKEN", "t"),
                ("NORTHFLANK_API_URL", "http://127.0.0.1:1/"),
            ],
            None,
        )
        .unwrap();
        assert_eq!(s.api_url, "http://127.0.0.1:1");
        assert_eq!(
            from(&[("NORTHFLANK_TOKEN", "t")], None).unwrap().api_url,
            DEFAULT_API_URL
        );
        assert!(
            from(
                &[
                    ("NORTHFLANK_TOKEN", "t"),
                    ("NORTHFLANK_API_URL", "api.northflank.com")
                ],
                None
            )
            .is_err()
        );
        assert!(!format!("{:?}", NorthflankSettings::new("nf-secret")).contains("nf-secret"));
    }
}
