//! The API's JSON shapes (responses) and the session event vocabulary. Each shape derives
//! `ToSchema`: the OpenAPI document describes these types, not a copy of them.

use serde::Serialize;
use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use utoipa::ToSchema;
use utoipa::openapi::schema::{Object, ObjectBuilder, Type};

/// A session as returned by the API.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Session {
    /// UUID.
    pub id: String,
    pub repository: String,
    pub branch: String,
    pub provider: String,
    #[schema(required = true)]
    pub sandbox_id: Option<String>,
    #[schema(required = true)]
    pub config_hash: Option<String>,
    /// `created | running | paused | stopped`.
    #[schema(schema_with = session_state_schema)]
    pub state: String,
    #[schema(format = DateTime)]
    pub created_at: String,
    #[schema(format = DateTime)]
    pub updated_at: String,
    /// Last event of any kind (RFC 3339), the session's last sign of life.
    #[schema(format = DateTime)]
    pub last_seen_at: String,
    /// Billable active seconds so far (the open interval is cut at last sign of life + grace).
    pub active_seconds: i64,
    /// Price of `active_seconds`, rounded once.
    pub cost_micros: i64,
    /// Highest event sequence number of this session.
    pub last_seq: i64,
    /// The server created this session's sandbox and owns its lifecycle: it pauses, resumes and
    /// stops it, and bills from its own record (clients' reports do not change billing).
    pub managed: bool,
    /// A managed session's own idle pause (seconds without client activity before the server
    /// pauses it); absent: the deployment's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idle_pause_seconds: Option<i64>,
}

/// One event of a session's history.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Event {
    /// UUID.
    pub id: String,
    pub session_id: String,
    #[serde(rename = "type")]
    #[schema(schema_with = event_type_schema)]
    pub kind: String,
    /// An object: the keys described by `EventData`, plus any others the client sent.
    #[schema(value_type = EventData)]
    pub data: Value,
    #[schema(format = DateTime)]
    pub created_at: String,
    /// 1, 2, 3… per session, in commit order.
    pub seq: i64,
}

/// The keys of an event's `data` that the server checks (any other key is kept as sent).
/// `task_started` needs `task`; `task_finished` needs `task`, `exit_code` and `duration_ms`.
/// Only describes the document: the server keeps `data` as a JSON object.
#[derive(Debug, ToSchema)]
pub struct EventData {
    /// The task's name (1 to 200 characters).
    #[schema(nullable = false, min_length = 1, max_length = 200)]
    pub task: Option<String>,
    #[schema(nullable = false)]
    pub exit_code: Option<i32>,
    #[schema(nullable = false, minimum = 0, maximum = 1_000_000_000_000_i64)]
    pub duration_ms: Option<i64>,
    /// At most 4096 bytes.
    #[schema(nullable = false, max_length = 4096)]
    pub message: Option<String>,
}

/// A live event: one WebSocket text message, and the answer to appending an event.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct LiveMessage {
    pub event: Event,
    /// The session after the event.
    pub session: Session,
}

/// A [`LiveMessage`] by reference, to serialize without copying.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct LiveMessageRef<'a> {
    pub event: &'a Event,
    pub session: &'a Session,
}

/// An API token's public description (never the secret).
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct TokenInfo {
    /// UUID.
    pub id: String,
    /// The public prefix, `rcl_` and 8 characters.
    pub prefix: String,
    pub name: String,
    #[schema(format = DateTime)]
    pub created_at: String,
    #[schema(format = DateTime, required = true)]
    pub last_used_at: Option<String>,
    #[schema(format = DateTime, required = true)]
    pub revoked_at: Option<String>,
}

/// An account.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Account {
    /// UUID.
    pub id: String,
    pub name: String,
    #[schema(format = DateTime)]
    pub created_at: String,
}

/// A string schema that allows exactly `values`.
pub fn string_enum<'a>(values: impl IntoIterator<Item = &'a str>) -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(values))
        .build()
}

/// The schema of a session `state`.
pub fn session_state_schema() -> Object {
    string_enum(STATES)
}

/// The schema of an event `type`.
pub fn event_type_schema() -> Object {
    string_enum(EventKind::ALL.map(EventKind::as_str))
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
    /// Where the session's labelled `[ports]` are reached (`data.ports`); the dashboard links
    /// the latest.
    Ports,
}

impl EventKind {
    /// Whether the event moves the session between states (as opposed to a sign of life).
    pub fn changes_state(self) -> bool {
        matches!(
            self,
            EventKind::Started | EventKind::Paused | EventKind::Resumed | EventKind::Stopped
        )
    }

    pub const ALL: [EventKind; 9] = [
        EventKind::Created,
        EventKind::Started,
        EventKind::Paused,
        EventKind::Resumed,
        EventKind::Stopped,
        EventKind::Heartbeat,
        EventKind::TaskStarted,
        EventKind::TaskFinished,
        EventKind::Ports,
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
            EventKind::Ports => "ports",
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
