//! Daytona client settings from the environment variables Daytona's SDKs read.
//!
//! Hardening copied from the SDK: nothing is read from a `.env` file, and rclaude refuses to run
//! when a `.env` in the current directory names the API endpoint — a repository cannot redirect
//! the API key to a server of its choosing, even through a tool that loads `.env` files.

use std::fmt;
use std::path::Path;
use std::time::Duration;

use crate::provider::ProviderError;
use crate::provider::retry::RetryPolicy;

/// Daytona's API.
pub const DEFAULT_API_URL: &str = "https://app.daytona.io/api";
/// Where to create an API key.
pub const API_KEY_URL: &str = "https://app.daytona.io/dashboard/keys";
/// Sent as `X-Daytona-SDK-Version`: the toolbox keeps the stdout/stderr markers in command logs
/// for SDKs from 0.27 on.
pub const SDK_VERSION: &str = "0.218.0";
/// Per-request timeout of control-plane calls.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// Variables naming the endpoint (the second is the deprecated alias).
pub const ENDPOINT_VARS: [&str; 2] = ["DAYTONA_API_URL", "DAYTONA_SERVER_URL"];

/// How rclaude authenticates.
#[derive(Clone, PartialEq, Eq)]
pub enum Credentials {
    /// `DAYTONA_API_KEY` as a bearer token.
    ApiKey(String),
    /// `DAYTONA_JWT_TOKEN` as a bearer token plus the organization header.
    Jwt { token: String, organization: String },
    /// One sandbox's preview token (`X-Daytona-Preview-Token`): its toolbox and nothing else,
    /// what a server that holds the key hands to the clients of a sandbox it manages.
    PreviewToken(String),
}

/// How to reach Daytona.
#[derive(Clone)]
pub struct DaytonaSettings {
    pub credentials: Credentials,
    /// Control-plane base URL without a trailing slash.
    pub api_url: String,
    /// `DAYTONA_TARGET`: the region sent as `target` on create.
    pub target: Option<String>,
    pub retry: RetryPolicy,
    pub request_timeout: Duration,
    /// Longest wait for a sandbox to reach a state (build, start, stop).
    pub state_timeout: Duration,
    /// First pause between state polls; it grows to `max_poll_interval`.
    pub poll_interval: Duration,
    pub max_poll_interval: Duration,
}

impl fmt::Debug for DaytonaSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let auth = match &self.credentials {
            Credentials::ApiKey(_) => "api key <redacted>".to_string(),
            Credentials::Jwt { organization, .. } => {
                format!("jwt <redacted>, organization {organization}")
            }
            Credentials::PreviewToken(_) => "preview token <redacted>".to_string(),
        };
        f.debug_struct("DaytonaSettings")
            .field("credentials", &auth)
            .field("api_url", &self.api_url)
            .field("target", &self.target)
            .field("retry", &self.retry)
            .field("request_timeout", &self.request_timeout)
            .field("state_timeout", &self.state_timeout)
            .finish()
    }
}

impl DaytonaSettings {
    /// Settings that reach one sandbox's toolbox with its preview token (no control plane).
    pub fn for_preview_token(token: impl Into<String>) -> Self {
        let mut s = DaytonaSettings::new(String::new());
        s.credentials = Credentials::PreviewToken(token.into());
        s
    }

    /// Defaults for an API key.
    pub fn new(api_key: impl Into<String>) -> Self {
        DaytonaSettings {
            credentials: Credentials::ApiKey(api_key.into()),
            api_url: DEFAULT_API_URL.into(),
            target: None,
            retry: RetryPolicy::default(),
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            state_timeout: Duration::from_secs(15 * 60),
            poll_interval: Duration::from_millis(250),
            max_poll_interval: Duration::from_secs(2),
        }
    }

    /// From this process's environment; refuses a `.env` in the current directory that names
    /// the endpoint.
    pub fn from_env() -> Result<Self, ProviderError> {
        let dotenv = std::env::current_dir()
            .ok()
            .and_then(|d| std::fs::read_to_string(d.join(".env")).ok());
        Self::from_lookup(|name| std::env::var(name).ok(), dotenv.as_deref())
    }

    /// From `lookup` (variable name → value) and the text of the current directory's `.env`,
    /// if any: `DAYTONA_API_KEY` (or `DAYTONA_JWT_TOKEN` + `DAYTONA_ORGANIZATION_ID`),
    /// `DAYTONA_API_URL` (alias `DAYTONA_SERVER_URL`), `DAYTONA_TARGET`. Empty values count as
    /// unset.
    pub fn from_lookup(
        lookup: impl Fn(&str) -> Option<String>,
        dotenv: Option<&str>,
    ) -> Result<Self, ProviderError> {
        let get = |name: &str| {
            lookup(name)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        if let Some(text) = dotenv
            && let Some(var) = ENDPOINT_VARS.iter().find(|v| dotenv_names(text, v))
        {
            return Err(ProviderError::Config(format!(
                "a .env file in this directory sets {var}: rclaude takes the Daytona endpoint only from \
                 the process environment, so a repository cannot send your API key elsewhere.\n  hint: \
                 remove {var} from .env and export it in your shell if you really use another endpoint"
            )));
        }
        let credentials = match (get("DAYTONA_API_KEY"), get("DAYTONA_JWT_TOKEN")) {
            (Some(key), _) => Credentials::ApiKey(key),
            (None, Some(token)) => {
                let organization = get("DAYTONA_ORGANIZATION_ID").ok_or_else(|| {
                    ProviderError::Config(
                        "DAYTONA_JWT_TOKEN is set but DAYTONA_ORGANIZATION_ID is not: a JWT needs the organization id (or use DAYTONA_API_KEY)".into(),
                    )
                })?;
                Credentials::Jwt {
                    token,
                    organization,
                }
            }
            (None, None) => {
                return Err(ProviderError::Config(format!(
                    "DAYTONA_API_KEY is not set: the daytona provider needs an API key.\n  hint: create one at \
                     {API_KEY_URL} and export DAYTONA_API_KEY=... before running rclaude"
                )));
            }
        };
        let secrets: Vec<&str> = match &credentials {
            Credentials::ApiKey(k) | Credentials::PreviewToken(k) => vec![k],
            Credentials::Jwt {
                token,
                organization,
            } => vec![token, organization],
        };
        if secrets
            .iter()
            .any(|s| reqwest::header::HeaderValue::from_str(s).is_err())
        {
            return Err(ProviderError::Config(
                "the Daytona credentials contain characters that cannot be sent in an HTTP header; copy them again".into(),
            ));
        }
        let mut s = DaytonaSettings::new(String::new());
        s.credentials = credentials;
        if let Some(url) = get("DAYTONA_API_URL").or_else(|| get("DAYTONA_SERVER_URL")) {
            s.api_url = check_url(url)?;
        }
        if let Some(target) = get("DAYTONA_TARGET") {
            if !target
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                return Err(ProviderError::Config(format!(
                    "DAYTONA_TARGET={target:?} must be a region name such as \"us\" or \"eu\""
                )));
            }
            s.target = Some(target);
        }
        Ok(s)
    }

    /// The headers every control-plane and toolbox request carries.
    pub fn auth_headers(&self) -> Vec<(&'static str, String)> {
        let mut h = vec![("x-daytona-sdk-version", SDK_VERSION.to_string())];
        match &self.credentials {
            Credentials::ApiKey(k) => h.push(("authorization", format!("Bearer {k}"))),
            Credentials::Jwt {
                token,
                organization,
            } => {
                h.push(("authorization", format!("Bearer {token}")));
                h.push(("x-daytona-organization-id", organization.clone()));
            }
            Credentials::PreviewToken(t) => h.push(("x-daytona-preview-token", t.clone())),
        }
        h
    }
}

/// Whether a `.env` text assigns `var` (`VAR=…`, `export VAR=…`, spaces allowed).
fn dotenv_names(text: &str, var: &str) -> bool {
    text.lines().any(|line| {
        let line = line.trim_start();
        let line = line.strip_prefix("export ").unwrap_or(line).trim_start();
        line.strip_prefix(var)
            .is_some_and(|rest| rest.trim_start().starts_with('='))
    })
}

fn check_url(url: String) -> Result<String, ProviderError> {
    let url = url.trim_end_matches('/').to_string();
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"));
    match rest {
        Some(host) if !host.is_empty() && !host.contains(char::is_whitespace) => Ok(url),
        _ => Err(ProviderError::Config(format!(
            "DAYTONA_API_URL={url:?} must be an http:// or https:// URL, e.g. {DEFAULT_API_URL}"
        ))),
    }
}

/// Whether `path` is absolute and free of NUL bytes (the toolbox takes host paths verbatim).
pub fn check_path(path: &str) -> Result<(), crate::provider::SandboxError> {
    if !Path::new(path).is_absolute() || path.contains('\0') {
        return Err(crate::provider::SandboxError::InvalidArgument(format!(
            "{path:?} is not an absolute path"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn from(vars: &[(&str, &str)], dotenv: Option<&str>) -> Result<DaytonaSettings, ProviderError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        DaytonaSettings::from_lookup(|k| map.get(k).cloned(), dotenv)
    }

    #[test]
    fn missing_key_names_the_variable() {
        let e = from(&[], None).unwrap_err();
        assert!(
            matches!(&e, ProviderError::Config(m) if m.contains("DAYTONA_API_KEY") && m.contains(API_KEY_URL)),
            "{e}"
        );
        assert!(from(&[("DAYTONA_JWT_TOKEN", "t")], None).is_err());
    }

    #[test]
    fn defaults_and_overrides() {
        let s = from(&[("DAYTONA_API_KEY", "k")], None).unwrap();
        assert_eq!(s.api_url, DEFAULT_API_URL);
        assert_eq!(s.target, None);
        let s = from(
            &[
                ("DAYTONA_API_KEY", "k"),
                ("DAYTONA_SERVER_URL", "http://127.0.0.1:9/api/"),
                ("DAYTONA_TARGET", "eu"),
            ],
            Some("OTHER=1\n"),
        )
        .unwrap();
        assert_eq!(s.api_url, "http://127.0.0.1:9/api");
        assert_eq!(s.target.as_deref(), Some("eu"));
        let s = from(
            &[
                ("DAYTONA_JWT_TOKEN", "t"),
                ("DAYTONA_ORGANIZATION_ID", "org"),
            ],
            None,
        )
        .unwrap();
        let h = s.auth_headers();
        assert!(h.contains(&("x-daytona-organization-id", "org".into())));
        assert!(h.contains(&("authorization", "Bearer t".into())));
    }

    #[test]
    fn a_dotenv_naming_the_endpoint_is_refused() {
        for text in [
            "DAYTONA_API_URL=https://evil.example/api\n",
            "  export DAYTONA_SERVER_URL = x\n",
        ] {
            let e = from(&[("DAYTONA_API_KEY", "k")], Some(text)).unwrap_err();
            assert!(e.to_string().contains(".env"), "{e}");
        }
        assert!(
            from(
                &[("DAYTONA_API_KEY", "k")],
                Some("DAYTONA_API_URL_X=1\n# DAYTONA_API_URL\n")
            )
            .is_ok()
        );
    }

    #[test]
    fn bad_values_are_refused() {
        assert!(
            from(
                &[
                    ("DAYTONA_API_KEY", "k"),
                    ("DAYTONA_API_URL", "app.daytona.io")
                ],
                None
            )
            .is_err()
        );
        assert!(from(&[("DAYTONA_API_KEY", "k"), ("DAYTONA_TARGET", "e u")], None).is_err());
        assert!(from(&[("DAYTONA_API_KEY", "bad\nkey")], None).is_err());
    }

    #[test]
    fn debug_output_hides_the_key() {
        let s = DaytonaSettings::new("dtn_secret_value");
        assert!(!format!("{s:?}").contains("dtn_secret_value"));
    }
}
