//! The OpenAPI 3.1 document served at `/v1/openapi.json`. Its paths and methods must equal
//! [`crate::app::ROUTES`] (checked by a unit test and by an integration test that calls each one).

use serde_json::{Value, json};

fn r(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

fn body(schema: Value) -> Value {
    json!({ "required": true, "content": { "application/json": { "schema": schema } } })
}

fn ok(desc: &str, schema: Value) -> Value {
    json!({ "description": desc, "content": { "application/json": { "schema": schema } } })
}

fn err(desc: &str) -> Value {
    ok(desc, r("Error"))
}

fn q(name: &str, desc: &str, schema: Value) -> Value {
    json!({ "name": name, "in": "query", "required": false, "description": desc, "schema": schema })
}

fn p(name: &str, desc: &str) -> Value {
    json!({ "name": name, "in": "path", "required": true, "description": desc, "schema": { "type": "string" } })
}

fn obj(props: Value, required: &[&str]) -> Value {
    json!({ "type": "object", "properties": props, "required": required })
}

fn str_() -> Value {
    json!({ "type": "string" })
}

fn nstr() -> Value {
    json!({ "type": ["string", "null"] })
}

fn int() -> Value {
    json!({ "type": "integer", "format": "int64" })
}

fn time_() -> Value {
    json!({ "type": "string", "format": "date-time" })
}

fn authed(op: Value) -> Value {
    let mut op = op;
    op["security"] = json!([{ "bearer": [] }]);
    let responses = op["responses"].as_object_mut().expect("responses");
    responses.insert(
        "401".into(),
        err("Missing, malformed, unknown or revoked token"),
    );
    op
}

/// The document.
pub fn document() -> Value {
    let session_path = p("id", "Session id (UUID)");
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "rclaude server API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Sessions, events, usage metering, billing and API tokens for rclaude. Money is integer micro-dollars (1 USD = 1000000). Every /v1 call except this document needs `Authorization: Bearer <token>`; an account sees only its own data (another account's session is a 404). Errors are `{\"error\": {\"code\", \"message\"}}`."
        },
        "components": {
            "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer" } },
            "schemas": {
                "Error": obj(json!({ "error": obj(json!({ "code": str_(), "message": str_() }), &["code", "message"]) }), &["error"]),
                "Session": obj(json!({
                    "id": str_(), "repository": str_(), "branch": str_(), "provider": str_(),
                    "sandbox_id": nstr(), "config_hash": nstr(),
                    "state": { "type": "string", "enum": ["created", "running", "paused", "stopped"] },
                    "created_at": time_(), "updated_at": time_(), "last_seen_at": time_(),
                    "active_seconds": int(), "cost_micros": int(), "last_seq": int()
                }), &["id", "repository", "branch", "provider", "sandbox_id", "config_hash", "state", "created_at", "updated_at", "last_seen_at", "active_seconds", "cost_micros", "last_seq"]),
                "Event": obj(json!({
                    "id": str_(), "session_id": str_(),
                    "type": { "type": "string", "enum": ["created", "started", "paused", "resumed", "stopped", "heartbeat", "task_started", "task_finished"] },
                    "data": { "type": "object" }, "created_at": time_(), "seq": int()
                }), &["id", "session_id", "type", "data", "created_at", "seq"]),
                "LiveMessage": obj(json!({ "event": r("Event"), "session": r("Session") }), &["event", "session"]),
                "CreateSession": {
                    "type": "object", "additionalProperties": false,
                    "properties": {
                        "id": { "type": "string", "format": "uuid", "description": "Client-chosen id: makes the create idempotent" },
                        "repository": str_(), "branch": str_(),
                        "provider": { "type": "string", "pattern": "^[a-z0-9_-]{1,32}$" },
                        "sandbox_id": nstr(), "config_hash": { "type": ["string", "null"], "pattern": "^[0-9a-fA-F]{1,128}$" }
                    },
                    "required": ["repository", "branch", "provider"]
                },
                "AppendEvent": {
                    "type": "object", "additionalProperties": false,
                    "properties": {
                        "type": { "type": "string", "enum": ["created", "started", "paused", "resumed", "stopped", "heartbeat", "task_started", "task_finished"] },
                        "idempotency_key": { "type": "string", "minLength": 1, "maxLength": 200 },
                        "data": {
                            "type": ["object", "null"],
                            "description": "task_started needs task; task_finished needs task, exit_code, duration_ms",
                            "properties": {
                                "task": str_(), "exit_code": { "type": "integer", "format": "int32" },
                                "duration_ms": { "type": "integer", "minimum": 0 }, "message": str_()
                            }
                        }
                    },
                    "required": ["type", "idempotency_key"]
                },
                "TokenInfo": obj(json!({
                    "id": str_(), "prefix": str_(), "name": str_(), "created_at": time_(),
                    "last_used_at": { "type": ["string", "null"], "format": "date-time" },
                    "revoked_at": { "type": ["string", "null"], "format": "date-time" }
                }), &["id", "prefix", "name", "created_at", "last_used_at", "revoked_at"]),
                "Account": obj(json!({ "id": str_(), "name": str_(), "created_at": time_() }), &["id", "name", "created_at"]),
                "InvoiceLine": obj(json!({
                    "kind": { "type": "string", "enum": ["active", "storage"] },
                    "repository": str_(),
                    "quantity": int(),
                    "unit": { "type": "string", "enum": ["second", "day"] },
                    "unit_price_micros": int(),
                    "price_unit": { "type": "string", "enum": ["hour", "month"] },
                    "amount_micros": int(),
                    "description": str_()
                }), &["kind", "repository", "quantity", "unit", "unit_price_micros", "price_unit", "amount_micros", "description"]),
                "Invoice": obj(json!({
                    "month": str_(), "status": { "type": "string", "enum": ["open", "final"] },
                    "currency": str_(), "lines": { "type": "array", "items": r("InvoiceLine") }, "total_micros": int()
                }), &["month", "status", "currency", "lines", "total_micros"]),
                "Usage": obj(json!({
                    "from": str_(), "to": str_(), "currency": str_(),
                    "repositories": { "type": "array", "items": obj(json!({
                        "repository": str_(), "active_seconds": int(), "active_cost_micros": int(),
                        "storage_days": int(), "storage_cost_micros": int(), "cost_micros": int()
                    }), &["repository", "active_seconds", "active_cost_micros", "storage_days", "storage_cost_micros", "cost_micros"]) },
                    "days": { "type": "array", "items": obj(json!({
                        "date": str_(), "active_seconds": int(), "storage_repositories": int(), "cost_micros": int(),
                        "repositories": { "type": "array", "items": obj(json!({ "repository": str_(), "active_seconds": int() }), &["repository", "active_seconds"]) }
                    }), &["date", "active_seconds", "storage_repositories", "cost_micros", "repositories"]) },
                    "total_active_seconds": int(), "total_cost_micros": int()
                }), &["from", "to", "currency", "repositories", "days", "total_active_seconds", "total_cost_micros"])
            }
        },
        "paths": {
            "/healthz": { "get": {
                "summary": "Liveness and database check",
                "responses": { "200": { "description": "Healthy" }, "503": { "description": "Database unreachable" } }
            }},
            "/metrics": { "get": {
                "summary": "Prometheus metrics (text format)",
                "responses": { "200": { "description": "Metrics", "content": { "text/plain": {} } } }
            }},
            "/v1/openapi.json": { "get": {
                "summary": "This document",
                "responses": { "200": { "description": "OpenAPI 3.1 document" } }
            }},
            "/v1/me": { "get": authed(json!({
                "summary": "The calling account and token",
                "responses": { "200": ok("Account", obj(json!({ "account": r("Account"), "token": obj(json!({ "id": str_(), "prefix": str_() }), &["id", "prefix"]) }), &["account", "token"])) }
            }))},
            "/v1/tokens": {
                "get": authed(json!({
                    "summary": "List the account's tokens (prefixes only)",
                    "responses": { "200": ok("Tokens", obj(json!({ "tokens": { "type": "array", "items": r("TokenInfo") } }), &["tokens"])) }
                })),
                "post": authed(json!({
                    "summary": "Create a token; the secret is shown once",
                    "requestBody": { "required": false, "content": { "application/json": { "schema": obj(json!({ "name": str_() }), &[]) } } },
                    "responses": { "201": ok("Created", obj(json!({ "token": r("TokenInfo"), "secret": str_() }), &["token", "secret"])), "422": err("Invalid name") }
                }))
            },
            "/v1/tokens/{token}": { "delete": authed(json!({
                "summary": "Revoke a token by prefix or id (idempotent)",
                "parameters": [p("token", "Token prefix (rcl_xxxxxxxx) or id")],
                "responses": { "200": ok("Revoked", obj(json!({ "token": r("TokenInfo") }), &["token"])), "404": err("No such token in this account") }
            }))},
            "/v1/sessions": {
                "get": authed(json!({
                    "summary": "List sessions, newest first",
                    "parameters": [
                        q("repository", "Exact repository name", str_()),
                        q("state", "created | running | paused | stopped", str_()),
                        q("provider", "Provider name", str_()),
                        q("limit", "1..=200, default 50", int()),
                        q("cursor", "next_cursor of the previous page", str_())
                    ],
                    "responses": { "200": ok("A page", obj(json!({ "sessions": { "type": "array", "items": r("Session") }, "next_cursor": nstr() }), &["sessions", "next_cursor"])), "422": err("Invalid filter") }
                })),
                "post": authed(json!({
                    "summary": "Create a session (idempotent when `id` is given)",
                    "requestBody": body(r("CreateSession")),
                    "responses": {
                        "201": ok("Created", obj(json!({ "session": r("Session") }), &["session"])),
                        "200": ok("Already created with this id", obj(json!({ "session": r("Session") }), &["session"])),
                        "400": err("Malformed JSON"), "409": err("The id names a different session"),
                        "413": err("Body too large"), "415": err("Not JSON"), "422": err("Invalid field")
                    }
                }))
            },
            "/v1/sessions/{id}": { "get": authed(json!({
                "summary": "A session with its event history",
                "parameters": [session_path.clone()],
                "responses": { "200": ok("Session", obj(json!({ "session": r("Session"), "events": { "type": "array", "items": r("Event") } }), &["session", "events"])), "404": err("No such session in this account") }
            }))},
            "/v1/sessions/{id}/events": {
                "get": authed(json!({
                    "summary": "Live events of a session (WebSocket; `?since_seq=` replays first), or the stored events as JSON without Upgrade",
                    "description": "With `Upgrade: websocket`: each event is one text message, a LiveMessage. The token may also be passed as `?token=`.",
                    "parameters": [session_path.clone(), q("since_seq", "Replay events with seq > since_seq first", int()), q("limit", "JSON form only: 1..=10000", int()), q("token", "WebSocket only: the bearer token", str_())],
                    "responses": {
                        "101": { "description": "WebSocket: LiveMessage per event", "content": { "application/json": { "schema": r("LiveMessage") } } },
                        "200": ok("Stored events", obj(json!({ "events": { "type": "array", "items": r("Event") } }), &["events"])),
                        "404": err("No such session in this account")
                    }
                })),
                "post": authed(json!({
                    "summary": "Append an event (idempotent by idempotency_key)",
                    "parameters": [session_path],
                    "requestBody": body(r("AppendEvent")),
                    "responses": {
                        "201": ok("Stored", r("LiveMessage")),
                        "200": ok("Already stored with this idempotency_key", r("LiveMessage")),
                        "400": err("Malformed JSON"), "404": err("No such session in this account"),
                        "409": err("Session stopped, or the key was used for a different event"),
                        "413": err("Body too large"), "415": err("Not JSON"), "422": err("Invalid field")
                    }
                }))
            },
            "/v1/events": { "get": authed(json!({
                "summary": "Live events of the whole account (WebSocket)",
                "parameters": [q("token", "The bearer token (for browsers)", str_())],
                "responses": {
                    "101": { "description": "WebSocket: LiveMessage per event", "content": { "application/json": { "schema": r("LiveMessage") } } },
                    "426": err("Not a WebSocket request")
                }
            }))},
            "/v1/usage": { "get": authed(json!({
                "summary": "Usage per repository and per day (UTC, both dates inclusive)",
                "parameters": [q("from", "YYYY-MM-DD (default: first day of this month)", str_()), q("to", "YYYY-MM-DD (default: today)", str_())],
                "responses": { "200": ok("Usage", r("Usage")), "422": err("Invalid range") }
            }))},
            "/v1/invoices/{month}": { "get": authed(json!({
                "summary": "The invoice of a month",
                "parameters": [p("month", "YYYY-MM")],
                "responses": { "200": ok("Invoice", r("Invoice")), "422": err("Invalid month") }
            }))}
        }
    })
}

/// The (method, path) pairs the document describes, sorted.
pub fn operations(doc: &Value) -> Vec<(String, String)> {
    let mut ops = Vec::new();
    if let Some(paths) = doc["paths"].as_object() {
        for (path, item) in paths {
            if let Some(item) = item.as_object() {
                for method in item.keys() {
                    ops.push((method.clone(), path.clone()));
                }
            }
        }
    }
    ops.sort();
    ops
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn document_matches_routes() {
        let mut routes: Vec<(String, String)> = crate::app::ROUTES
            .iter()
            .map(|(m, p)| (m.to_string(), p.to_string()))
            .collect();
        routes.sort();
        assert_eq!(operations(&document()), routes);
    }

    #[test]
    fn refs_resolve() {
        let doc = document();
        let text = doc.to_string();
        for part in text.split("#/components/schemas/").skip(1) {
            let name: String = part.chars().take_while(|c| c.is_alphanumeric()).collect();
            assert!(
                doc["components"]["schemas"].get(&name).is_some(),
                "missing schema {name}"
            );
        }
    }
}
