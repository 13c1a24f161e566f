//! Human durations in config: "30s", "5m", "1h30m".
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A duration written as text ("90s", "5m", "1h30m").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(transparent)]
pub struct HumanDuration(#[schemars(with = "String")] #[serde(with = "secs")] pub std::time::Duration);

impl HumanDuration {
    pub fn from_secs(s: u64) -> Self {
        HumanDuration(std::time::Duration::from_secs(s))
    }
}

mod secs {
    pub fn serialize<S: serde::Serializer>(d: &std::time::Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{}s", d.as_secs()))
    }
    pub fn deserialize<'de, D: serde::Deserializer<'de>>(_d: D) -> Result<std::time::Duration, D::Error> {
        unimplemented!("config helper")
    }
}
