//! The names a configuration uses for providers and isolation modes, shared by the CLI's
//! `.rclaude.toml` and the server's deployment settings.

use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize, de};

/// Which cloud runs the sandbox.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    /// A directory on this machine served by `rclaude agent` (the default).
    #[default]
    Local,
    /// E2B cloud sandboxes (`E2B_API_KEY`).
    E2b,
    /// Daytona sandboxes (`DAYTONA_API_KEY`).
    Daytona,
    /// Northflank services (`NORTHFLANK_API_TOKEN`).
    Northflank,
}

impl ProviderKind {
    /// Every provider, in documentation order.
    pub const ALL: [ProviderKind; 4] = [
        ProviderKind::Local,
        ProviderKind::E2b,
        ProviderKind::Daytona,
        ProviderKind::Northflank,
    ];

    /// The provider named `name` (as in `.rclaude.toml` and session records).
    pub fn from_name(name: &str) -> Option<ProviderKind> {
        ProviderKind::ALL.into_iter().find(|k| k.as_str() == name)
    }

    /// The name used in `.rclaude.toml`.
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderKind::Local => "local",
            ProviderKind::E2b => "e2b",
            ProviderKind::Daytona => "daytona",
            ProviderKind::Northflank => "northflank",
        }
    }
}

/// Local provider process isolation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Isolation {
    /// bubblewrap when installed, otherwise none (with a notice).
    #[default]
    Auto,
    /// Require bubblewrap: the host is read-only except the sandbox directory.
    Bwrap,
    /// Plain processes on the host.
    None,
}

impl Isolation {
    /// Every mode, in documentation order.
    pub const ALL: [Isolation; 3] = [Isolation::Auto, Isolation::Bwrap, Isolation::None];

    /// The name used in `.rclaude.toml`.
    pub fn as_str(self) -> &'static str {
        match self {
            Isolation::Auto => "auto",
            Isolation::Bwrap => "bwrap",
            Isolation::None => "none",
        }
    }
}

/// Deserialize a unit enum from its lowercase name, listing the valid names on error.
macro_rules! name_enum_deserialize {
    ($ty:ident) => {
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl de::Visitor<'_> for V {
                    type Value = $ty;
                    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                        let names: Vec<String> = $ty::ALL
                            .iter()
                            .map(|v| format!("\"{}\"", v.as_str()))
                            .collect();
                        write!(f, "one of {}", names.join(", "))
                    }
                    fn visit_str<E: de::Error>(self, v: &str) -> Result<$ty, E> {
                        $ty::ALL
                            .into_iter()
                            .find(|k| k.as_str() == v)
                            .ok_or_else(|| {
                                const NAMES: &[&str] = &$ty::NAMES;
                                E::unknown_variant(v, NAMES)
                            })
                    }
                }
                d.deserialize_str(V)
            }
        }
    };
}

impl ProviderKind {
    const NAMES: [&'static str; 4] = ["local", "e2b", "daytona", "northflank"];
}
impl Isolation {
    const NAMES: [&'static str; 3] = ["auto", "bwrap", "none"];
}
name_enum_deserialize!(ProviderKind);
name_enum_deserialize!(Isolation);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enum_names_agree_with_serde() {
        for (i, p) in ProviderKind::ALL.into_iter().enumerate() {
            assert_eq!(ProviderKind::NAMES[i], p.as_str());
            assert_eq!(serde_json::to_value(p).unwrap(), p.as_str());
            let back: ProviderKind = serde_json::from_value(p.as_str().into()).unwrap();
            assert_eq!(back, p);
        }
        for (i, m) in Isolation::ALL.into_iter().enumerate() {
            assert_eq!(Isolation::NAMES[i], m.as_str());
            assert_eq!(serde_json::to_value(m).unwrap(), m.as_str());
        }
        let e = serde_json::from_value::<ProviderKind>("aws".into()).unwrap_err();
        assert!(e.to_string().contains("`local`"), "{e}");
    }
}
