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

/// Header carrying a private sandbox's traffic access token to its ports.
pub const TRAFFIC_TOKEN_HEADER: &str = "e2b-traffic-access-token";

/// How one sandbox's ports are reached, following the SDK's `get_host(port)`:
/// `E2B_SANDBOX_URL` set: that URL, routed by the two headers; debug: `http://localhost:PORT`;
/// otherwise `https://PORT-<sandboxID>.<domain>`. A sandbox that is not public needs its
/// traffic access token on every request.
#[derive(Clone)]
pub struct E2bPorts {
    settings: std::sync::Arc<E2bSettings>,
    sandbox_id: String,
    domain: Option<String>,
    traffic_token: Option<String>,
}

impl std::fmt::Debug for E2bPorts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("E2bPorts")
            .field("sandbox_id", &self.sandbox_id)
            .field("domain", &self.domain)
            .field(
                "traffic_token",
                &self.traffic_token.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

impl E2bPorts {
    pub fn new(
        settings: std::sync::Arc<E2bSettings>,
        sandbox_id: &str,
        domain: Option<&str>,
        traffic_token: Option<String>,
    ) -> Result<E2bPorts, ProviderError> {
        check_sandbox_id(sandbox_id)?;
        Ok(E2bPorts {
            settings,
            sandbox_id: sandbox_id.to_string(),
            domain: domain.filter(|d| !d.is_empty()).map(str::to_string),
            traffic_token: traffic_token.filter(|t| !t.is_empty()),
        })
    }
}

impl crate::provider::PortRouter for E2bPorts {
    fn access(&self, port: u16) -> crate::provider::PortAccess {
        let domain = self.domain.as_deref().unwrap_or(&self.settings.domain);
        let url = if let Some(url) = &self.settings.sandbox_url {
            url.trim_end_matches('/').to_string()
        } else if self.settings.debug {
            format!("http://localhost:{port}")
        } else {
            format!("https://{port}-{}.{domain}", self.sandbox_id)
        };
        let mut headers = std::collections::BTreeMap::from([
            (SANDBOX_ID_HEADER.to_string(), self.sandbox_id.clone()),
            (SANDBOX_PORT_HEADER.to_string(), port.to_string()),
        ]);
        let mut secret_headers = Vec::new();
        if let Some(t) = &self.traffic_token {
            headers.insert(TRAFFIC_TOKEN_HEADER.to_string(), t.clone());
            secret_headers.push(TRAFFIC_TOKEN_HEADER.to_string());
        }
        crate::provider::PortAccess {
            url,
            headers,
            secret_headers,
        }
    }
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
    fn ports_use_the_sdks_host_form_and_carry_the_traffic_token() {
        use crate::provider::PortRouter;
        let s = std::sync::Arc::new(E2bSettings::new("k"));
        let public = E2bPorts::new(s.clone(), "sbx1", None, None).unwrap();
        let a = public.access(3000);
        assert_eq!(a.url, "https://3000-sbx1.e2b.app");
        assert_eq!(a.headers["e2b-sandbox-port"], "3000");
        assert!(!a.headers.contains_key(TRAFFIC_TOKEN_HEADER));
        let private = E2bPorts::new(s, "sbx1", Some("e2b.dev"), Some("tok-123".into())).unwrap();
        let a = private.access(8080);
        assert_eq!(a.url, "https://8080-sbx1.e2b.dev");
        assert_eq!(a.headers[TRAFFIC_TOKEN_HEADER], "tok-123");
        // Never shown.
        assert!(!format!("{a:?} {private:?}").contains("tok-123"));
        let mut over = E2bSettings::new("k");
        over.sandbox_url = Some("http://127.0.0.1:9/".into());
        let a = E2bPorts::new(over.into(), "sbx1", None, None)
            .unwrap()
            .access(5173);
        assert_eq!(a.url, "http://127.0.0.1:9");
        assert_eq!(a.headers["e2b-sandbox-id"], "sbx1");
        assert!(
            E2bPorts::new(
                std::sync::Arc::new(E2bSettings::new("k")),
                "a b",
                None,
                None
            )
            .is_err()
        );
    }

    #[test]
    fn private_ports_ask_for_allow_public_traffic_false() {
        use crate::network::NetworkPolicy;
        let (_, n) = super::super::api::network_options(&NetworkPolicy::Open, None);
        assert!(n.is_none());
        let (_, n) = super::super::api::network_options(&NetworkPolicy::Open, Some(false));
        assert_eq!(
            serde_json::to_value(n.unwrap()).unwrap(),
            serde_json::json!({ "allowPublicTraffic": false })
        );
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
