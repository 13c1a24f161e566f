//! Input validation at the API boundary; every error names the field and what would be valid.

use serde_json::{Map, Value};

use crate::error::ApiError;
use crate::model::EventKind;

/// Largest accepted event `data`, serialised.
pub const MAX_EVENT_DATA_BYTES: usize = 16 * 1024;

fn has_control(s: &str) -> bool {
    s.chars().any(char::is_control)
}

/// A free-text name: 1..=max characters, no control characters, no surrounding spaces.
pub fn text(field: &str, v: &str, max: usize) -> Result<(), ApiError> {
    if v.is_empty() {
        return Err(ApiError::invalid(format!("`{field}` must not be empty")));
    }
    if v.chars().count() > max {
        return Err(ApiError::invalid(format!(
            "`{field}` is longer than {max} characters"
        )));
    }
    if has_control(v) || v.trim() != v {
        return Err(ApiError::invalid(format!(
            "`{field}` must not contain control characters or surrounding spaces"
        )));
    }
    Ok(())
}

/// `repository`: e.g. `github.com/acme/app` or a name derived from a path.
pub fn repository(v: &str) -> Result<(), ApiError> {
    text("repository", v, 300)
}

/// `branch`: a git branch name (or `HEAD` / a commit id when detached).
pub fn branch(v: &str) -> Result<(), ApiError> {
    text("branch", v, 255)
}

/// `provider`: lowercase letters, digits, `-`, `_`; up to 32 characters.
pub fn provider(v: &str) -> Result<(), ApiError> {
    let ok = !v.is_empty()
        && v.len() <= 32
        && v.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(ApiError::invalid(format!(
            "`provider` `{v}` is not valid: use lowercase letters, digits, `-` or `_` (e.g. `local`, `e2b`)"
        )))
    }
}

/// `sandbox_id`: up to 255 visible characters.
pub fn sandbox_id(v: &str) -> Result<(), ApiError> {
    text("sandbox_id", v, 255)?;
    if v.chars().any(char::is_whitespace) {
        return Err(ApiError::invalid("`sandbox_id` must not contain spaces"));
    }
    Ok(())
}

/// `config_hash`: 1..=128 hexadecimal digits.
pub fn config_hash(v: &str) -> Result<(), ApiError> {
    if v.is_empty() || v.len() > 128 || !v.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ApiError::invalid(
            "`config_hash` must be 1 to 128 hexadecimal digits",
        ));
    }
    Ok(())
}

/// A session id: a UUID, returned in canonical lowercase hyphenated form.
pub fn session_id(field: &str, v: &str) -> Result<String, ApiError> {
    uuid::Uuid::parse_str(v)
        .map(|u| u.hyphenated().to_string())
        .map_err(|_| ApiError::invalid(format!("`{field}` `{v}` is not a UUID")))
}

/// `idempotency_key`: 1..=200 visible ASCII characters (a UUID is typical).
pub fn idempotency_key(v: &str) -> Result<(), ApiError> {
    if v.is_empty() || v.len() > 200 || !v.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
        return Err(ApiError::invalid(
            "`idempotency_key` must be 1 to 200 visible ASCII characters (a client-generated UUID is typical)",
        ));
    }
    Ok(())
}

/// `type` of an event.
pub fn event_kind(v: &str) -> Result<EventKind, ApiError> {
    EventKind::parse(v).ok_or_else(|| {
        let all: Vec<&str> = EventKind::ALL.iter().map(|k| k.as_str()).collect();
        ApiError::invalid(format!(
            "`type` `{v}` is not an event type; use one of: {}",
            all.join(", ")
        ))
    })
}

/// Event `data`: an object (absent/null → `{}`) of at most 16 KiB. Known keys are typed:
/// `task` (string), `exit_code` (32-bit integer), `duration_ms` (non-negative integer),
/// `message` (string). `task_started` needs `task`; `task_finished` needs `task`, `exit_code`
/// and `duration_ms`. Other keys are kept as given.
pub fn event_data(kind: EventKind, data: Option<Value>) -> Result<Value, ApiError> {
    let map = match data {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(m)) => m,
        Some(other) => {
            return Err(ApiError::invalid(format!(
                "`data` must be a JSON object, not {}",
                json_kind(&other)
            )));
        }
    };
    if let Some(v) = map.get("task") {
        match v.as_str() {
            Some(s) => text("data.task", s, 200)?,
            None => {
                return Err(ApiError::invalid(format!(
                    "`data.task` must be a string, not {}",
                    json_kind(v)
                )));
            }
        }
    }
    if let Some(v) = map.get("exit_code")
        && v.as_i64().and_then(|i| i32::try_from(i).ok()).is_none()
    {
        return Err(ApiError::invalid(format!(
            "`data.exit_code` must be a 32-bit integer, not {}",
            json_kind(v)
        )));
    }
    if let Some(v) = map.get("duration_ms")
        && v.as_u64().is_none_or(|d| d > 1_000_000_000_000)
    {
        return Err(ApiError::invalid(format!(
            "`data.duration_ms` must be a non-negative integer of milliseconds, not {}",
            json_kind(v)
        )));
    }
    if let Some(v) = map.get("message") {
        match v.as_str() {
            Some(s) if s.len() <= 4096 => {}
            Some(_) => {
                return Err(ApiError::invalid(
                    "`data.message` is longer than 4096 bytes",
                ));
            }
            None => {
                return Err(ApiError::invalid(format!(
                    "`data.message` must be a string, not {}",
                    json_kind(v)
                )));
            }
        }
    }
    let require = |key: &str| {
        if map.contains_key(key) {
            Ok(())
        } else {
            Err(ApiError::invalid(format!(
                "a `{}` event needs `data.{key}`",
                kind.as_str()
            )))
        }
    };
    match kind {
        EventKind::TaskStarted => require("task")?,
        EventKind::TaskFinished => {
            require("task")?;
            require("exit_code")?;
            require("duration_ms")?;
        }
        _ => {}
    }
    let value = Value::Object(map);
    if value.to_string().len() > MAX_EVENT_DATA_BYTES {
        return Err(ApiError::invalid(format!(
            "`data` is larger than {MAX_EVENT_DATA_BYTES} bytes"
        )));
    }
    Ok(value)
}

fn json_kind(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(_) => "a boolean".into(),
        Value::Number(n) => format!("the number {n}"),
        Value::String(_) => "a string".into(),
        Value::Array(_) => "an array".into(),
        Value::Object(_) => "an object".into(),
    }
}

/// A date `YYYY-MM-DD`.
pub fn date(field: &str, v: &str) -> Result<time::Date, ApiError> {
    let fmt = time::macros::format_description!("[year]-[month]-[day]");
    time::Date::parse(v, &fmt)
        .map_err(|_| ApiError::invalid(format!("`{field}` `{v}` is not a date; use YYYY-MM-DD")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn data_rules() {
        assert_eq!(event_data(EventKind::Heartbeat, None).unwrap(), json!({}));
        assert!(event_data(EventKind::TaskFinished, Some(json!({"task": "test"}))).is_err());
        assert!(
            event_data(
                EventKind::TaskFinished,
                Some(json!({"task": "test", "exit_code": 1, "duration_ms": 1500}))
            )
            .is_ok()
        );
        let e = event_data(EventKind::Heartbeat, Some(json!({"exit_code": "x"}))).unwrap_err();
        assert!(e.message.contains("data.exit_code"), "{}", e.message);
        assert!(event_data(EventKind::Heartbeat, Some(json!([1]))).is_err());
        assert!(event_data(EventKind::Heartbeat, Some(json!({"duration_ms": -1}))).is_err());
    }

    #[test]
    fn names() {
        assert!(provider("local").is_ok());
        assert!(provider("Local").is_err());
        assert!(repository("github.com/acme/app").is_ok());
        assert!(repository(" x").is_err());
        assert!(repository("").is_err());
        assert!(config_hash("abc123").is_ok());
        assert!(config_hash("xyz").is_err());
        assert!(idempotency_key("k 1").is_err());
        assert_eq!(
            session_id("id", "6F9619FF-8B86-D011-B42D-00C04FC964FF").unwrap(),
            "6f9619ff-8b86-d011-b42d-00c04fc964ff"
        );
        assert!(date("from", "2025-02-30").is_err());
        assert!(date("from", "2025-02-28").is_ok());
    }
}
