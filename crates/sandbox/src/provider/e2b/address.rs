//! Where a sandbox's envd answers, following the SDK's rules:
//! - `E2B_SANDBOX_URL` set: that URL, verbatim, for every sandbox;
//! - debug mode: `http://localhost:49983` (one local sandbox; no access token);
//! - the sandbox's domain is one of E2B's own: `https://sandbox.<domain>`, routed by the
//!   `E2b-Sandbox-Id` and `E2b-Sandbox-Port` headers;
//! - any other (self-hosted) domain: `https://49983-<sandboxID>.<domain>`.
//!
//! The two routing headers go on every envd request in every form, as the SDK sends them.

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};

use super::settings::E2bSettings;
use crate::envd::ENVD_PORT;
use crate::provider::ProviderError;

/// Domains served by E2B's own edge, which routes by header.
pub const E2B_OWNED_DOMAINS: [&str; 3] = ["e2b.app", "e2b.dev", "e2b.pro"];
/// Header naming the sandbox on E2B's edge.
pub const SANDBOX_ID_HEADER: &str = "e2b-sandbox-id";
/// Header naming the port inside the sandbox on E2B's edge.
pub const SANDBOX_PORT_HEADER: &str = "e2b-sandbox-port";

/// How to reach one sandbox's envd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvdAddress {
    /// Base URL without a trailing slash.
    pub base_url: String,
    /// Routing headers for every request.
    pub headers: HeaderMap,
    /// Whether the sandbox's access token is sent (not in debug mode).
    pub send_token: bool,
}

/// Whether `domain` is served by E2B's header-routing edge.
pub fn is_e2b_owned(domain: &str) -> bool {
    E2B_OWNED_DOMAINS.contains(&domain.trim_end_matches('.'))
}

/// The envd address of `sandbox_id`; `domain` is the one the API returned for it, if any.
pub fn envd_address(
    settings: &E2bSettings,
    sandbox_id: &str,
    domain: Option<&str>,
) -> Result<EnvdAddress, ProviderError> {
    check_sandbox_id(sandbox_id)?;
    let domain = domain.filter(|d| !d.is_empty()).unwrap_or(&settings.domain);
    let base_url = if let Some(url) = &settings.sandbox_url {
        url.clone()
    } else if settings.debug {
        format!("http://localhost:{ENVD_PORT}")
    } else if is_e2b_owned(domain) {
        format!("https://sandbox.{domain}")
    } else {
        format!("https://{ENVD_PORT}-{sandbox_id}.{domain}")
    };
    let mut headers = HeaderMap::new();
    headers.insert(
        HeaderName::from_static(SANDBOX_ID_HEADER),
        HeaderValue::from_str(sandbox_id).expect("checked sandbox id"),
    );
    headers.insert(
        HeaderName::from_static(SANDBOX_PORT_HEADER),
        HeaderValue::from(ENVD_PORT),
    );
    Ok(EnvdAddress {
        base_url,
        headers,
        send_token: !settings.debug,
    })
}

/// Sandbox ids go into URL paths and host names: letters, digits, `-` and `_` only.
pub fn check_sandbox_id(id: &str) -> Result<(), ProviderError> {
    if id.is_empty()
        || id.len() > 128
        || !id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(ProviderError::Config(format!(
            "invalid E2B sandbox id {id:?}: expected letters, digits, '-' or '_'"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(a: &EnvdAddress, name: &str) -> String {
        a.headers.get(name).unwrap().to_str().unwrap().to_string()
    }

    #[test]
    fn e2b_domains_route_by_header() {
        let s = E2bSettings::new("k");
        let a = envd_address(&s, "sbx123", None).unwrap();
        assert_eq!(a.base_url, "https://sandbox.e2b.app");
        assert_eq!(header(&a, "e2b-sandbox-id"), "sbx123");
        assert_eq!(header(&a, "e2b-sandbox-port"), "49983");
        assert!(a.send_token);
        let a = envd_address(&s, "sbx123", Some("e2b.dev")).unwrap();
        assert_eq!(a.base_url, "https://sandbox.e2b.dev");
    }

    #[test]
    fn other_domains_use_the_host_form() {
        let mut s = E2bSettings::new("k");
        s.domain = "sandboxes.example.org".into();
        let a = envd_address(&s, "abc", None).unwrap();
        assert_eq!(a.base_url, "https://49983-abc.sandboxes.example.org");
        // The API's per-sandbox domain wins over the configured one.
        let a = envd_address(&s, "abc", Some("e2b.app")).unwrap();
        assert_eq!(a.base_url, "https://sandbox.e2b.app");
    }

    #[test]
    fn override_and_debug() {
        let mut s = E2bSettings::new("k");
        s.sandbox_url = Some("http://127.0.0.1:8080".into());
        let a = envd_address(&s, "abc", Some("e2b.app")).unwrap();
        assert_eq!(a.base_url, "http://127.0.0.1:8080");
        assert_eq!(header(&a, "e2b-sandbox-id"), "abc");
        let mut s = E2bSettings::new("k");
        s.debug = true;
        let a = envd_address(&s, "abc", None).unwrap();
        assert_eq!(a.base_url, "http://localhost:49983");
        assert!(!a.send_token);
    }

    #[test]
    fn ids_are_checked() {
        let s = E2bSettings::new("k");
        for bad in ["", "a/b", "a.b", "a b", "../x"] {
            assert!(envd_address(&s, bad, None).is_err(), "{bad:?}");
        }
    }
}
