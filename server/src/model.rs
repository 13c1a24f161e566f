//! The API's JSON shapes (responses) and the session event vocabulary.

use serde::Serialize;
use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// A session as returned by the API.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Session {
    pub id: String,
    pub repository: String,
    pub branch: String,
    pub provider: String,
    pub sandbox_id: Option<String>,
    pub config_hash: Option<String>,
    /// `created | running | paused | stopped`.
    pub state: String,
    pub created_at: String,
    pub updated_at: String,
    /// Last event of any kind (RFC 3339), the session's last sign of life.
    pub last_seen_at: String,
    /// Billable active seconds so far (the open interval is cut at last sign of life + grace).
    pub active_seconds: i64,
    /// Price of `active_seconds`, rounded once.
    pub cost_micros: i64,
    /// Highest event sequence number of this session.
    pub last_seq: i64,
}

/// One event of a session's history.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Event {
    pub id: String,
    pub session_id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub data: Value,
    pub created_at: String,
    /// 1, 2, 3… per session, in commit order.
    pub seq: i64,
}

/// An API token's public description (never the secret).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TokenInfo {
    pub id: String,
    pub prefix: String,
    pub name: String,
    pub created_at: String,
    pub last_used_at: Option<String>,
    pub revoked_at: Option<String>,
}

/// An account.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Account {
    pub id: String,
    pub name: String,
    pub created_at: String,
}

/// Session states.
pub const STATES: [&str; 4] = ["created", "running", "paused", "stopped"];

/// The event types a session accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Created,
    Started,
    Paused,
    Resumed,
    Stopped,
    Heartbeat,
    TaskStarted,
    TaskFinished,
}

impl EventKind {
    pub const ALL: [EventKind; 8] = [
        EventKind::Created,
        EventKind::Started,
        EventKind::Paused,
        EventKind::Resumed,
        EventKind::Stopped,
        EventKind::Heartbeat,
        EventKind::TaskStarted,
        EventKind::TaskFinished,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Created => "created",
            EventKind::Started => "started",
            EventKind::Paused => "paused",
            EventKind::Resumed => "resumed",
            EventKind::Stopped => "stopped",
            EventKind::Heartbeat => "heartbeat",
            EventKind::TaskStarted => "task_started",
            EventKind::TaskFinished => "task_finished",
        }
    }

    pub fn parse(s: &str) -> Option<EventKind> {
        EventKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// Unix milliseconds → RFC 3339 (UTC, millisecond precision).
pub fn rfc3339_ms(ms: i64) -> String {
    let t = OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH);
    let t = t
        .replace_nanosecond((ms.rem_euclid(1000) as u32) * 1_000_000)
        .unwrap_or(t);
    t.format(&Rfc3339).unwrap_or_default()
}

/// Unix seconds → RFC 3339 (UTC).
pub fn rfc3339_s(s: i64) -> String {
    rfc3339_ms(s.saturating_mul(1000))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_format() {
        assert_eq!(rfc3339_ms(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339_ms(1_738_368_000_250), "2025-02-01T00:00:00.25Z");
        assert_eq!(rfc3339_s(1_738_368_000), "2025-02-01T00:00:00Z");
    }

    #[test]
    fn kinds_round_trip() {
        for k in EventKind::ALL {
            assert_eq!(EventKind::parse(k.as_str()), Some(k));
        }
        assert_eq!(EventKind::parse("exploded"), None);
    }
}
