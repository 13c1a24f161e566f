//! Checking real answers against the OpenAPI document: the response a document gives for an
//! operation and status, its content types, and its schema with `$ref`s into `components`.
#![allow(dead_code)]

pub mod spec_validator;

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

/// Validates answers against one document and remembers which (operation, status) pairs it saw.
pub struct Conformance {
    doc: Value,
    seen: BTreeMap<(String, String), BTreeSet<u16>>,
}

impl Conformance {
    pub fn new(doc: Value) -> Conformance {
        Conformance {
            doc,
            seen: BTreeMap::new(),
        }
    }

    /// Checks one HTTP answer to `method template` (a path as the document spells it, e.g.
    /// `/v1/sessions/{id}`): the status is documented, the content type is one documented for
    /// it, and the body validates against its schema. Panics saying what does not match.
    pub fn check(
        &mut self,
        method: &str,
        template: &str,
        status: u16,
        content_type: Option<&str>,
        body: &str,
    ) {
        let what = format!("{} {template} → {status}", method.to_uppercase());
        let response = self.response(method, template, status, &what);
        let Some(content) = response.get("content").and_then(Value::as_object) else {
            assert!(
                body.is_empty(),
                "{what}: the document gives no body, the server sent {body}"
            );
            return;
        };
        let mime = content_type
            .and_then(|ct| ct.split(';').next())
            .map(|m| m.trim().to_ascii_lowercase())
            .unwrap_or_default();
        let media = content.get(&mime).unwrap_or_else(|| {
            panic!(
                "{what}: content type `{mime}` is not among the documented {:?}",
                content.keys().collect::<Vec<_>>()
            )
        });
        let instance = if mime.ends_with("json") {
            serde_json::from_str(body)
                .unwrap_or_else(|e| panic!("{what}: the body is not JSON ({e}): {body}"))
        } else {
            Value::String(body.to_string())
        };
        self.validate(&what, &media["schema"], &instance);
        self.note(method, template, status);
    }

    /// Checks one WebSocket text message of `GET template` against the schema of its `101`.
    pub fn check_message(&mut self, template: &str, message: &Value) {
        let what = format!("GET {template} → 101 message");
        let response = self.response("get", template, 101, &what);
        let schema = response["content"]["application/json"]["schema"].clone();
        assert!(!schema.is_null(), "{what}: the document gives no schema");
        self.validate(&what, &schema, message);
        self.note("get", template, 101);
    }

    /// The statuses checked so far, per (method, path).
    pub fn seen(&self) -> &BTreeMap<(String, String), BTreeSet<u16>> {
        &self.seen
    }

    /// The statuses the document gives for `method template`.
    pub fn documented(&self, method: &str, template: &str) -> BTreeSet<u16> {
        self.doc["paths"][template][method]["responses"]
            .as_object()
            .map(|r| r.keys().filter_map(|k| k.parse().ok()).collect())
            .unwrap_or_default()
    }

    fn note(&mut self, method: &str, template: &str, status: u16) {
        self.seen
            .entry((method.to_string(), template.to_string()))
            .or_default()
            .insert(status);
    }

    fn response(&self, method: &str, template: &str, status: u16, what: &str) -> Value {
        let op = &self.doc["paths"][template][method];
        assert!(
            op.is_object(),
            "{what}: the operation is not in the document"
        );
        let responses = &op["responses"];
        responses
            .get(status.to_string())
            .or_else(|| responses.get("default"))
            .cloned()
            .unwrap_or_else(|| {
                panic!(
                    "{what}: status not documented (documented: {:?})",
                    responses.as_object().map(|o| o.keys().collect::<Vec<_>>())
                )
            })
    }

    fn validate(&self, what: &str, schema: &Value, instance: &Value) {
        let validator = validator(&self.doc, schema);
        let errors: Vec<String> = validator
            .iter_errors(instance)
            .map(|e| format!("  at `{}`: {e}", e.instance_path()))
            .collect();
        assert!(
            errors.is_empty(),
            "{what}: the body does not follow the document's schema {schema}:\n{}\nbody: {instance}",
            errors.join("\n")
        );
    }
}

/// A JSON Schema 2020-12 validator (formats checked) for `schema`, whose `#/components/…`
/// references resolve into the document's components.
pub fn validator(doc: &Value, schema: &Value) -> jsonschema::Validator {
    let mut root = match schema {
        Value::Object(_) => schema.clone(),
        Value::Bool(true) => serde_json::json!({}),
        other => panic!("not a schema: {other}"),
    };
    root["components"] = doc["components"].clone();
    jsonschema::draft202012::options()
        .should_validate_formats(true)
        .build(&root)
        .unwrap_or_else(|e| panic!("the document's schema {schema} does not compile: {e}"))
}
