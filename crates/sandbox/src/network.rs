//! A sandbox's egress policy (`[network]`): open (the default), or only the listed destinations.
//!
//! A rule is a host name (`registry.npmjs.org`), every subdomain of a domain (`*.github.com`),
//! an IP address, or a CIDR block (`10.0.0.0/8`). Providers enforce the policy their own way
//! (the local agent through a network namespace and an allow-listing proxy, E2B and Daytona
//! through their create-time options) or refuse to create the sandbox; none ignores it.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

/// Where a sandbox's processes may connect to.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum NetworkPolicy {
    /// Anywhere (the default).
    #[default]
    Open,
    /// Only to destinations a rule allows; no rules: nowhere outside the sandbox.
    Restricted { allow: Vec<Rule> },
}

impl NetworkPolicy {
    /// No connection leaves the sandbox.
    pub fn deny_all() -> NetworkPolicy {
        NetworkPolicy::Restricted { allow: Vec::new() }
    }

    pub fn is_open(&self) -> bool {
        matches!(self, NetworkPolicy::Open)
    }

    /// The rules of a restricted policy (empty when open or denying everything).
    pub fn rules(&self) -> &[Rule] {
        match self {
            NetworkPolicy::Open => &[],
            NetworkPolicy::Restricted { allow } => allow,
        }
    }

    /// Whether a connection to `host` (a name or an IP literal) resolved to `addr` may be made.
    /// A name is allowed by a host rule naming it, or by an address rule covering `addr`.
    pub fn allows(&self, host: &str, addr: IpAddr) -> bool {
        match self {
            NetworkPolicy::Open => true,
            NetworkPolicy::Restricted { allow } => allow.iter().any(|r| r.matches(host, addr)),
        }
    }

    /// Whether some address of `host` could be allowed: a name rule matches it, or an address
    /// rule may cover what it resolves to. `false` means refused without a lookup.
    pub fn may_allow_name(&self, host: &str) -> bool {
        match self {
            NetworkPolicy::Open => true,
            NetworkPolicy::Restricted { allow } => {
                let unspecified = IpAddr::from([0, 0, 0, 0]);
                match host.parse::<IpAddr>() {
                    Ok(ip) => allow.iter().any(|r| r.matches(host, ip)),
                    Err(_) => allow
                        .iter()
                        .any(|r| matches!(r, Rule::Net(_)) || r.matches(host, unspecified)),
                }
            }
        }
    }

    /// This policy with `host` allowed too (Claude Code's API host for a Claude Code run).
    /// An open policy stays open; a policy that denies everything stays closed.
    pub fn also_allowing(&self, host: &str) -> NetworkPolicy {
        match self {
            NetworkPolicy::Restricted { allow } if !allow.is_empty() => {
                let mut allow = allow.clone();
                if let Ok(r) = Rule::parse(host)
                    && !allow.contains(&r)
                {
                    allow.push(r);
                }
                NetworkPolicy::Restricted { allow }
            }
            other => other.clone(),
        }
    }
}

/// One allowed destination.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Rule {
    /// Exactly this host name (lower case).
    Host(String),
    /// Any subdomain of this domain (`*.github.com` → `github.com`), not the domain itself.
    Subdomains(String),
    /// An address or block of addresses.
    Net(ipnet::IpNet),
}

/// A rule that is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{value:?} is not a network rule: use a host name (registry.npmjs.org), *.domain (*.github.com), an IP address or a CIDR block (10.0.0.0/8)"
)]
pub struct BadRule {
    pub value: String,
}

impl Rule {
    pub fn parse(s: &str) -> Result<Rule, BadRule> {
        let bad = || BadRule {
            value: s.to_string(),
        };
        let t = s.trim();
        if let Ok(net) = t.parse::<ipnet::IpNet>() {
            return Ok(Rule::Net(net.trunc()));
        }
        if let Ok(ip) = t.parse::<IpAddr>() {
            return Ok(Rule::Net(ipnet::IpNet::from(ip)));
        }
        let (wild, name) = match t.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, t),
        };
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        let label_ok = |l: &str| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        };
        if name.is_empty() || name.len() > 253 || !name.split('.').all(label_ok) {
            return Err(bad());
        }
        Ok(if wild {
            Rule::Subdomains(name)
        } else {
            Rule::Host(name)
        })
    }

    fn matches(&self, host: &str, addr: IpAddr) -> bool {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        match self {
            Rule::Host(h) => *h == host,
            Rule::Subdomains(d) => host
                .strip_suffix(d.as_str())
                .is_some_and(|head| head.ends_with('.') && head.len() > 1),
            Rule::Net(n) => n.contains(&addr),
        }
    }

    /// The rule as written in `[network] allow`.
    pub fn as_config(&self) -> String {
        match self {
            Rule::Host(h) => h.clone(),
            Rule::Subdomains(d) => format!("*.{d}"),
            Rule::Net(n) if n.prefix_len() == n.max_prefix_len() => n.addr().to_string(),
            Rule::Net(n) => n.to_string(),
        }
    }
}

impl TryFrom<String> for Rule {
    type Error = BadRule;
    fn try_from(s: String) -> Result<Rule, BadRule> {
        Rule::parse(&s)
    }
}

impl From<Rule> for String {
    fn from(r: Rule) -> String {
        r.as_config()
    }
}

impl std::fmt::Display for Rule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.as_config())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn rules_parse_and_print_back() {
        for (given, kept) in [
            ("registry.npmjs.org", "registry.npmjs.org"),
            ("Registry.NPMJS.org.", "registry.npmjs.org"),
            ("*.github.com", "*.github.com"),
            ("10.1.2.3", "10.1.2.3"),
            ("10.1.2.3/8", "10.0.0.0/8"),
            ("::1", "::1"),
            ("fd00::/8", "fd00::/8"),
        ] {
            assert_eq!(Rule::parse(given).unwrap().as_config(), kept, "{given}");
        }
        for bad in [
            "",
            "*",
            "*.",
            "a..b",
            "-a.com",
            "a b",
            "http://x.com",
            "x.com:443",
            "1.2.3.4/33",
            "*.*.com",
        ] {
            assert!(Rule::parse(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn names_subdomains_and_blocks_match_what_they_say() {
        let p = NetworkPolicy::Restricted {
            allow: ["registry.npmjs.org", "*.github.com", "10.0.0.0/8"]
                .iter()
                .map(|r| Rule::parse(r).unwrap())
                .collect(),
        };
        let far = ip("93.184.216.34");
        assert!(p.allows("registry.npmjs.org", far));
        assert!(p.allows("REGISTRY.npmjs.org.", far));
        assert!(!p.allows("npmjs.org", far));
        assert!(!p.allows("evil-registry.npmjs.org.attacker.com", far));
        assert!(p.allows("api.github.com", far));
        assert!(p.allows("a.b.github.com", far));
        assert!(!p.allows("github.com", far));
        assert!(!p.allows("notgithub.com", far));
        assert!(p.allows("internal.example", ip("10.2.3.4")));
        assert!(p.allows("10.2.3.4", ip("10.2.3.4")));
        assert!(!p.allows("11.0.0.1", ip("11.0.0.1")));
        assert!(!NetworkPolicy::deny_all().allows("registry.npmjs.org", far));
        assert!(NetworkPolicy::Open.allows("anything", far));
        assert!(p.may_allow_name("api.github.com"));
        assert!(
            p.may_allow_name("unknown.example"),
            "an address rule may cover it"
        );
        let names_only = NetworkPolicy::Restricted {
            allow: vec![Rule::parse("pypi.org").unwrap()],
        };
        assert!(!names_only.may_allow_name("example.com"));
        assert!(!names_only.may_allow_name("10.0.0.1"));
        assert!(names_only.may_allow_name("PyPI.org"));
    }

    #[test]
    fn claude_codes_host_joins_an_allow_list_but_not_deny_all() {
        let p = NetworkPolicy::Restricted {
            allow: vec![Rule::parse("pypi.org").unwrap()],
        };
        let with = p.also_allowing("api.anthropic.com");
        assert!(with.allows("api.anthropic.com", ip("1.1.1.1")));
        assert_eq!(with.also_allowing("api.anthropic.com"), with);
        assert_eq!(
            NetworkPolicy::deny_all().also_allowing("api.anthropic.com"),
            NetworkPolicy::deny_all()
        );
        assert_eq!(
            NetworkPolicy::Open.also_allowing("x.com"),
            NetworkPolicy::Open
        );
    }

    #[test]
    fn policies_round_trip_through_json() {
        let p = NetworkPolicy::Restricted {
            allow: vec![
                Rule::parse("*.github.com").unwrap(),
                Rule::parse("10.0.0.0/8").unwrap(),
            ],
        };
        let json = serde_json::to_string(&p).unwrap();
        assert_eq!(
            json,
            r#"{"mode":"restricted","allow":["*.github.com","10.0.0.0/8"]}"#
        );
        assert_eq!(serde_json::from_str::<NetworkPolicy>(&json).unwrap(), p);
        assert_eq!(
            serde_json::from_str::<NetworkPolicy>(r#"{"mode":"open"}"#).unwrap(),
            NetworkPolicy::Open
        );
    }
}
