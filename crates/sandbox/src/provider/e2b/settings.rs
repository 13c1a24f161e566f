//! E2B client settings, read from the same environment variables E2B's SDKs read.

use std::fmt;
use std::time::Duration;

use crate::provider::ProviderError;
use crate::provider::retry::RetryPolicy;

/// E2B's default domain.
pub const DEFAULT_DOMAIN: &str = "e2b.app";
/// The template used when `.rclaude.toml` names none.
pub const DEFAULT_TEMPLATE: &str = "base";
/// API base URL in SDK debug mode.
pub const DEBUG_API_URL: &str = "http://localhost:3000";
/// Where to create an API key.
pub const API_KEY_URL: &str = "https://e2b.dev/dashboard?tab=keys";
/// Per-request timeout of REST calls (the SDK's default).
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// Page size of `GET /v2/sandboxes` (the API's maximum).
pub const MAX_PAGE_SIZE: u32 = 100;

/// How to reach E2B: credentials, endpoints, retry policy.
#[derive(Clone)]
pub struct E2bSettings {
    /// Sent as `X-API-KEY`; never logged.
    pub api_key: String,
    /// `E2B_DOMAIN` (default `e2b.app`).
    pub domain: String,
    /// REST base URL: `E2B_API_URL`, else `https://api.<domain>` (`http://localhost:3000` in debug).
    pub api_url: String,
    /// `E2B_SANDBOX_URL`: envd base URL for every sandbox, used verbatim.
    pub sandbox_url: Option<String>,
    /// `E2B_DEBUG=true`: envd at `http://localhost:49983`, no access token.
    pub debug: bool,
    pub retry: RetryPolicy,
    /// Timeout of one REST request.
    pub request_timeout: Duration,
    /// Page size for listing sandboxes (1..=100).
    pub page_size: u32,
}

impl fmt::Debug for E2bSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("E2bSettings")
            .field("api_key", &"<redacted>")
            .field("domain", &self.domain)
            .field("api_url", &self.api_url)
            .field("sandbox_url", &self.sandbox_url)
            .field("debug", &self.debug)
            .field("retry", &self.retry)
            .field("request_timeout", &self.request_timeout)
            .field("page_size", &self.page_size)
            .finish()
    }
}

impl E2bSettings {
    /// Defaults for `api_key`: domain `e2b.app`, API `https://api.e2b.app`, SDK retry policy.
    pub fn new(api_key: impl Into<String>) -> Self {
        E2bSettings {
            api_key: api_key.into(),
            domain: DEFAULT_DOMAIN.into(),
            api_url: format!("https://api.{DEFAULT_DOMAIN}"),
            sandbox_url: None,
            debug: false,
            retry: RetryPolicy::default(),
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            page_size: MAX_PAGE_SIZE,
        }
    }

    /// Read the settings from this process's environment.
    pub fn from_env() -> Result<Self, ProviderError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Read the settings through `lookup` (a variable name → its value): `E2B_API_KEY`
    /// (required), `E2B_DOMAIN`, `E2B_API_URL`, `E2B_SANDBOX_URL`, `E2B_DEBUG`,
    /// `E2B_CONNECTION_RETRIES`. Empty values count as unset.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ProviderError> {
        let get = |name: &str| {
            lookup(name)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let api_key = get("E2B_API_KEY").ok_or_else(|| {
            ProviderError::Config(format!(
                "E2B_API_KEY is not set: the e2b provider needs an API key.\n  hint: create one at \
                 {API_KEY_URL} and export E2B_API_KEY=... before running rclaude"
            ))
        })?;
        if reqwest::header::HeaderValue::from_str(&api_key).is_err() {
            return Err(ProviderError::Config(
                "E2B_API_KEY contains characters that cannot be sent in an HTTP header; copy the key again".into(),
            ));
        }
        let mut s = E2bSettings::new(api_key);
        s.debug = get("E2B_DEBUG").is_some_and(|v| v.eq_ignore_ascii_case("true"));
        if let Some(domain) = get("E2B_DOMAIN") {
            if domain.contains("://")
                || domain.contains('/')
                || domain.contains(char::is_whitespace)
            {
                return Err(ProviderError::Config(format!(
                    "E2B_DOMAIN={domain:?} must be a bare domain such as \"e2b.app\" (no scheme, no path)"
                )));
            }
            s.domain = domain;
        }
        s.api_url = match get("E2B_API_URL") {
            Some(url) => check_url("E2B_API_URL", url)?,
            None if s.debug => DEBUG_API_URL.into(),
            None => format!("https://api.{}", s.domain),
        };
        if let Some(url) = get("E2B_SANDBOX_URL") {
            s.sandbox_url = Some(check_url("E2B_SANDBOX_URL", url)?);
        }
        if let Some(n) = get("E2B_CONNECTION_RETRIES") {
            s.retry.connection_retries =
                n.parse::<u32>().ok().filter(|n| *n <= 100).ok_or_else(|| {
                    ProviderError::Config(format!(
                        "E2B_CONNECTION_RETRIES={n:?} must be a whole number from 0 to 100"
                    ))
                })?;
        }
        Ok(s)
    }
}

fn check_url(var: &str, url: String) -> Result<String, ProviderError> {
    let url = url.trim_end_matches('/').to_string();
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"));
    match rest {
        Some(host) if !host.is_empty() && !host.contains(char::is_whitespace) => Ok(url),
        _ => Err(ProviderError::Config(format!(
            "{var}={url:?} must be an http:// or https:// URL, e.g. https://api.e2b.app"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn from(vars: &[(&str, &str)]) -> Result<E2bSettings, ProviderError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        E2bSettings::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn missing_key_is_a_config_error_naming_the_variable() {
        let e = from(&[]).unwrap_err();
        assert!(
            matches!(&e, ProviderError::Config(m) if m.contains("E2B_API_KEY") && m.contains(API_KEY_URL)),
            "{e}"
        );
        assert!(from(&[("E2B_API_KEY", "  ")]).is_err());
    }

    #[test]
    fn defaults_follow_the_domain() {
        let s = from(&[("E2B_API_KEY", "k"), ("E2B_DOMAIN", "example.org")]).unwrap();
        assert_eq!(s.api_url, "https://api.example.org");
        assert_eq!(s.domain, "example.org");
        assert!(!s.debug);
        let s = from(&[("E2B_API_KEY", "k")]).unwrap();
        assert_eq!(s.api_url, "https://api.e2b.app");
    }

    #[test]
    fn overrides_and_debug() {
        let s = from(&[
            ("E2B_API_KEY", "k"),
            ("E2B_API_URL", "http://127.0.0.1:9/"),
            ("E2B_SANDBOX_URL", "http://127.0.0.1:9"),
            ("E2B_CONNECTION_RETRIES", "0"),
        ])
        .unwrap();
        assert_eq!(s.api_url, "http://127.0.0.1:9");
        assert_eq!(s.sandbox_url.as_deref(), Some("http://127.0.0.1:9"));
        assert_eq!(s.retry.connection_retries, 0);
        let s = from(&[("E2B_API_KEY", "k"), ("E2B_DEBUG", "TRUE")]).unwrap();
        assert!(s.debug);
        assert_eq!(s.api_url, DEBUG_API_URL);
    }

    #[test]
    fn bad_values_are_refused() {
        assert!(from(&[("E2B_API_KEY", "k"), ("E2B_DOMAIN", "https://e2b.app")]).is_err());
        assert!(from(&[("E2B_API_KEY", "k"), ("E2B_API_URL", "api.e2b.app")]).is_err());
        assert!(from(&[("E2B_API_KEY", "k"), ("E2B_CONNECTION_RETRIES", "many")]).is_err());
        assert!(from(&[("E2B_API_KEY", "bad\nkey")]).is_err());
    }

    #[test]
    fn debug_output_hides_the_key() {
        let s = E2bSettings::new("e2b_secret_value");
        assert!(!format!("{s:?}").contains("e2b_secret_value"));
    }
}
