//! Human durations in config: "90s", "15m", "1h30m", "2d", "500ms".
//!
//! Grammar: one or more `<digits><unit>` parts with units `d`, `h`, `m`, `s`, `ms`, written from
//! the largest unit to the smallest, each unit at most once; or a bare number of seconds ("90").
//! Display gives the compact canonical form (`5400s` → "1h30m"); precision is one millisecond.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer, de};

/// A duration written as text ("90s", "5m", "1h30m").
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HumanDuration(pub Duration);

/// Why a duration string was rejected (the message is shown to users).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration \"{input}\": {reason}")]
pub struct DurationError {
    input: String,
    reason: &'static str,
}

/// The hint every duration error ends with.
pub(crate) const DURATION_HINT: &str = "use a number with a unit, e.g. \"90s\", \"15m\", \"1h30m\"";

/// JSON Schema / editor pattern (a little looser than the parser: it does not check unit order).
pub const DURATION_PATTERN: &str = "^[0-9]+(ms|[dhms])?([0-9]+(ms|[dhms]))*$";

const UNITS: [(&str, u64); 5] = [
    ("d", 86_400_000),
    ("h", 3_600_000),
    ("m", 60_000),
    ("s", 1_000),
    ("ms", 1),
];

impl HumanDuration {
    /// A whole number of seconds.
    pub fn from_secs(s: u64) -> Self {
        HumanDuration(Duration::from_secs(s))
    }

    /// The wrapped duration.
    pub fn as_duration(self) -> Duration {
        self.0
    }

    /// Is this zero?
    pub fn is_zero(self) -> bool {
        self.0.is_zero()
    }
}

impl From<Duration> for HumanDuration {
    fn from(d: Duration) -> Self {
        HumanDuration(d)
    }
}

impl From<HumanDuration> for Duration {
    fn from(d: HumanDuration) -> Self {
        d.0
    }
}

impl FromStr for HumanDuration {
    type Err = DurationError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let fail = |reason| DurationError {
            input: input.to_string(),
            reason,
        };
        let s = input.trim();
        if s.is_empty() {
            return Err(fail(DURATION_HINT));
        }
        if s.bytes().all(|b| b.is_ascii_digit()) {
            let secs: u64 = s.parse().map_err(|_| fail("the number is too large"))?;
            return Ok(HumanDuration::from_secs(secs));
        }
        let bytes = s.as_bytes();
        let mut total_ms: u64 = 0;
        let mut last_unit: Option<usize> = None;
        let mut i = 0;
        while i < bytes.len() {
            let start = i;
            while i < bytes.len() && bytes[i].is_ascii_digit() {
                i += 1;
            }
            if start == i {
                return Err(fail(DURATION_HINT));
            }
            let number: u64 = s[start..i]
                .parse()
                .map_err(|_| fail("the number is too large"))?;
            let unit_start = i;
            while i < bytes.len() && bytes[i].is_ascii_alphabetic() {
                i += 1;
            }
            let unit = &s[unit_start..i];
            let Some(idx) = UNITS.iter().position(|(u, _)| *u == unit) else {
                return Err(fail(DURATION_HINT));
            };
            if last_unit.is_some_and(|last| idx <= last) {
                return Err(fail(
                    "write each unit once, from the largest to the smallest, e.g. \"1h30m\"",
                ));
            }
            last_unit = Some(idx);
            total_ms = number
                .checked_mul(UNITS[idx].1)
                .and_then(|ms| total_ms.checked_add(ms))
                .ok_or_else(|| fail("the duration is too large"))?;
        }
        Ok(HumanDuration(Duration::from_millis(total_ms)))
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut ms = self.0.as_millis();
        if ms == 0 {
            return f.write_str("0s");
        }
        for (unit, size) in UNITS {
            let size = u128::from(size);
            if ms >= size {
                write!(f, "{}{unit}", ms / size)?;
                ms %= size;
            }
        }
        Ok(())
    }
}

impl Serialize for HumanDuration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl de::Visitor<'_> for V {
            type Value = HumanDuration;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a duration string such as \"90s\", \"15m\" or \"1h30m\"")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<HumanDuration, E> {
                v.parse().map_err(E::custom)
            }
        }
        d.deserialize_str(V)
    }
}

impl JsonSchema for HumanDuration {
    fn schema_name() -> Cow<'static, str> {
        "HumanDuration".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "pattern": DURATION_PATTERN,
            "description": "A duration: a number with a unit (d, h, m, s, ms) from the largest unit to the smallest, e.g. \"90s\", \"15m\", \"1h30m\", \"500ms\"; a bare number means seconds.",
            "examples": ["90s", "15m", "1h30m"]
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<Duration, DurationError> {
        s.parse::<HumanDuration>().map(|d| d.0)
    }

    #[test]
    fn parses_the_documented_forms() {
        assert_eq!(p("90").unwrap(), Duration::from_secs(90));
        assert_eq!(p("90s").unwrap(), Duration::from_secs(90));
        assert_eq!(p("15m").unwrap(), Duration::from_secs(900));
        assert_eq!(p("1h").unwrap(), Duration::from_secs(3600));
        assert_eq!(p("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(p("2d").unwrap(), Duration::from_secs(172_800));
        assert_eq!(p("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(p("1m30s250ms").unwrap(), Duration::from_millis(90_250));
        assert_eq!(p(" 5m ").unwrap(), Duration::from_secs(300));
        assert_eq!(p("0s").unwrap(), Duration::ZERO);
    }

    #[test]
    fn rejects_garbage_with_the_hint() {
        for bad in [
            "",
            "5 parsecs",
            "m",
            "1.5h",
            "-1s",
            "1h 30m",
            "10x",
            "h1",
            "1h30",
        ] {
            let e = p(bad).unwrap_err().to_string();
            assert!(
                e.starts_with(&format!("invalid duration \"{bad}\"")),
                "{bad}: {e}"
            );
        }
        assert_eq!(
            p("5 parsecs").unwrap_err().to_string(),
            "invalid duration \"5 parsecs\": use a number with a unit, e.g. \"90s\", \"15m\", \"1h30m\""
        );
        assert!(p("30m1h").unwrap_err().to_string().contains("largest"));
        assert!(p("1m1m").unwrap_err().to_string().contains("once"));
        assert!(
            p("99999999999999999999s")
                .unwrap_err()
                .to_string()
                .contains("too large")
        );
        assert!(
            p("999999999999999d")
                .unwrap_err()
                .to_string()
                .contains("too large")
        );
    }

    #[test]
    fn displays_compactly_and_round_trips() {
        let cases = [
            (Duration::from_secs(5400), "1h30m"),
            (Duration::from_secs(90), "1m30s"),
            (Duration::from_millis(500), "500ms"),
            (Duration::from_secs(172_800), "2d"),
            (Duration::from_millis(90_061_001), "1d1h1m1s1ms"),
            (Duration::ZERO, "0s"),
        ];
        for (d, text) in cases {
            assert_eq!(HumanDuration(d).to_string(), text);
            assert_eq!(p(text).unwrap(), d);
        }
    }
}
