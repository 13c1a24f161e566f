//! JSON Schema (draft-07, the dialect Taplo / Even Better TOML support best) of `.rclaude.toml`,
//! generated from the Rust types. `schema/rclaude.schema.json` is a committed copy kept in sync
//! by a test (`RCLAUDE_UPDATE_SCHEMA=1 cargo test --test config_schema` rewrites it).

use schemars::generate::SchemaSettings;
use schemars::{Schema, SchemaGenerator, json_schema};

use super::model::{Config, ENV_NAME_PATTERN, SecretSpec, TASK_NAME_PATTERN, TaskConfig};
use super::validate::GIT_HOOKS;

/// Path of the committed schema, relative to the repository root.
pub const SCHEMA_PATH: &str = "schema/rclaude.schema.json";

/// Where editors can fetch the schema (the `#:schema` line of starter files).
pub const SCHEMA_URL: &str =
    "https://raw.githubusercontent.com/rclaude/rclaude/main/schema/rclaude.schema.json";

/// The schema as JSON.
pub fn json_schema() -> serde_json::Value {
    let generator = SchemaSettings::draft07().into_generator();
    let mut schema = generator.into_root_schema_for::<Config>();
    schema.insert("$id".into(), SCHEMA_URL.into());
    let mut value = schema.to_value();
    drop_nulls(&mut value);
    value
}

/// TOML has no null: turn `Option<T>`'s `T | null` into plain `T` and drop null defaults, so
/// editors neither suggest nor accept `null`.
fn drop_nulls(value: &mut serde_json::Value) {
    use serde_json::Value;
    match value {
        Value::Object(map) => {
            // `"default": null`, and unset options inside table defaults.
            map.retain(|_, v| !v.is_null());
            if let Some(Value::Array(types)) = map.get_mut("type") {
                types.retain(|t| t != "null");
                if types.len() == 1 {
                    let only = types.remove(0);
                    map.insert("type".into(), only);
                }
            }
            if let Some(Value::Array(any)) = map.get_mut("anyOf") {
                any.retain(|s| s.get("type").and_then(Value::as_str) != Some("null"));
                if any.len() == 1 {
                    let only = any.remove(0);
                    map.remove("anyOf");
                    map.insert("allOf".into(), Value::Array(vec![only]));
                }
            }
            map.values_mut().for_each(drop_nulls);
        }
        Value::Array(items) => items.iter_mut().for_each(drop_nulls),
        _ => {}
    }
}

/// The schema pretty-printed, with a final newline (the committed file's exact content).
pub fn json_schema_pretty() -> String {
    let mut text = serde_json::to_string_pretty(&json_schema()).expect("schema serializes");
    text.push('\n');
    text
}

/// `[env]` and `tasks.NAME.env`: variable names → string values.
pub(crate) fn env_map_schema(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "object",
        "propertyNames": { "pattern": ENV_NAME_PATTERN },
        "additionalProperties": { "type": "string" }
    })
}

/// `[secrets]`: variable names → [`SecretSpec`].
pub(crate) fn secrets_schema(generator: &mut SchemaGenerator) -> Schema {
    let spec = generator.subschema_for::<SecretSpec>();
    json_schema!({
        "type": "object",
        "propertyNames": { "pattern": ENV_NAME_PATTERN },
        "additionalProperties": spec
    })
}

/// `[ports]`: port numbers → [`super::model::PortSpec`].
pub(crate) fn ports_schema(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "object",
        "propertyNames": { "pattern": "^[1-9][0-9]{0,4}$" },
        "additionalProperties": {
            "description": "A label (\"web\"), or { label = \"web\", public = true }: public ports are served without the sandbox's traffic token where the provider has one (E2B).",
            "anyOf": [
                { "type": "string" },
                {
                    "type": "object",
                    "properties": {
                        "label": { "type": "string" },
                        "public": { "type": "boolean", "default": false }
                    },
                    "additionalProperties": false
                }
            ]
        }
    })
}

/// `[tasks]`: task names → [`TaskConfig`].
pub(crate) fn tasks_schema(generator: &mut SchemaGenerator) -> Schema {
    let task = generator.subschema_for::<TaskConfig>();
    json_schema!({
        "type": "object",
        "propertyNames": { "pattern": TASK_NAME_PATTERN },
        "additionalProperties": task
    })
}

/// `[hooks]`: one property per known git hook, so editors complete the names.
pub(crate) fn hooks_schema(_: &mut SchemaGenerator) -> Schema {
    let properties: serde_json::Map<String, serde_json::Value> = GIT_HOOKS
        .iter()
        .map(|hook| {
            let value = serde_json::json!({
                "description": format!("Tasks the git `{hook}` hook runs in the sandbox, in order."),
                "type": "array",
                "items": { "type": "string", "pattern": TASK_NAME_PATTERN }
            });
            (hook.to_string(), value)
        })
        .collect();
    json_schema!({
        "type": "object",
        "properties": properties,
        "additionalProperties": false
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_describes_the_tables_and_rejects_unknown_keys() {
        let s = json_schema();
        assert_eq!(s["$schema"], "http://json-schema.org/draft-07/schema#");
        let props = s["properties"].as_object().unwrap();
        for key in [
            "sandbox", "env", "secrets", "setup", "start", "sync", "tasks", "hooks", "claude",
            "ports",
        ] {
            assert!(props.contains_key(key), "{key}");
        }
        assert_eq!(s["additionalProperties"], false);
        let defs = s["definitions"].as_object().unwrap();
        assert_eq!(defs["SandboxConfig"]["additionalProperties"], false);
        assert_eq!(defs["HumanDuration"]["type"], "string");
        assert!(defs["HumanDuration"]["pattern"].is_string());
        assert!(props["hooks"]["properties"]["pre-push"].is_object());
        assert_eq!(defs["TaskConfig"]["required"], serde_json::json!(["run"]));
        // TOML has no null.
        assert!(!json_schema_pretty().contains("null"));
    }
}
