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
        EventKind::Ports => {
            require("ports")?;
            ports(&map["ports"])?;
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

/// Ports a `ports` event may list.
pub const MAX_PORTS: usize = 32;

/// `data.ports` of a `ports` event: at most [`MAX_PORTS`] objects `{port, label?, url}`, `port`
/// 1–65535, `label` up to 64 characters, `url` an `http://` or `https://` URL (the dashboard
/// links it) up to 300 characters.
fn ports(v: &Value) -> Result<(), ApiError> {
    let Some(list) = v.as_array() else {
        return Err(ApiError::invalid(format!(
            "`data.ports` must be an array, not {}",
            json_kind(v)
        )));
    };
    if list.len() > MAX_PORTS {
        return Err(ApiError::invalid(format!(
            "`data.ports` lists {} ports; at most {MAX_PORTS}",
            list.len()
        )));
    }
    for (i, p) in list.iter().enumerate() {
        let at = format!("data.ports[{i}]");
        let Some(obj) = p.as_object() else {
            return Err(ApiError::invalid(format!(
                "`{at}` must be an object, not {}",
                json_kind(p)
            )));
        };
        if obj
            .get("port")
            .and_then(Value::as_u64)
            .is_none_or(|n| !(1..=65535).contains(&n))
        {
            return Err(ApiError::invalid(format!(
                "`{at}.port` must be a port number from 1 to 65535"
            )));
        }
        match obj.get("label") {
            None | Some(Value::Null) => {}
            Some(Value::String(l)) => text(&format!("{at}.label"), l, 64)?,
            Some(other) => {
                return Err(ApiError::invalid(format!(
                    "`{at}.label` must be a string, not {}",
                    json_kind(other)
                )));
            }
        }
        let url = obj.get("url").and_then(Value::as_str).unwrap_or_default();
        let parsed = url::Url::parse(url).ok();
        if url.len() > 300
            || !parsed
                .is_some_and(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some())
        {
            return Err(ApiError::invalid(format!(
                "`{at}.url` must be an http:// or https:// URL of at most 300 characters"
            )));
        }
    }
    Ok(())
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
        let port = |p: Value| event_data(EventKind::Ports, Some(json!({ "ports": [p] })));
        assert!(
            port(json!({"port": 3000, "label": "web", "url": "https://3000-x.e2b.app"})).is_ok()
        );
        assert!(port(json!({"port": 8080, "url": "http://127.0.0.1:8080"})).is_ok());
        assert!(event_data(EventKind::Ports, Some(json!({}))).is_err());
        for bad in [
            json!({"port": 0, "url": "http://a"}),
            json!({"port": 70000, "url": "http://a"}),
            json!({"port": 80, "url": "javascript:alert(1)"}),
            json!({"port": 80, "url": "/relative"}),
            json!({"port": 80, "label": 5, "url": "http://a"}),
            json!({"port": 80, "label": "x\u{7}", "url": "http://a"}),
            json!("3000"),
        ] {
            assert!(port(bad.clone()).is_err(), "{bad}");
        }
        let many: Vec<Value> = (1..=33)
            .map(|p| json!({"port": p, "url": "http://a"}))
            .collect();
        assert!(event_data(EventKind::Ports, Some(json!({ "ports": many }))).is_err());
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
