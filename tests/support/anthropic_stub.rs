//! A scripted stand-in for the Anthropic Messages API, good enough for the real Claude Code CLI
//! (see the offline notes in the project's reference): `HEAD /`, and `POST /v1/messages` with
//! SSE streaming (`event:` lines included) or a plain JSON reply.
//!
//! Each run's prompt names its script with `[[script:NAME]]`; the step is the number of
//! assistant messages after that prompt (Claude Code may insert `system` messages anywhere).
//! `{cwd}` in tool inputs becomes the working directory from the system prompt, and
//! `{history:MARKER}` in a text reply becomes `yes`/`no`: whether an earlier user message of the
//! conversation contained MARKER. A step may wait for a gate the test opens.
#![allow(dead_code)]

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{head, post};
use serde_json::{Value, json};

/// One scripted model turn.
#[derive(Debug, Clone)]
pub enum Reply {
    /// Call a tool with this input.
    Tool(&'static str, Value),
    /// Answer with text and end the turn.
    Text(String),
}

/// A step: wait for `gate` (when set), then reply.
#[derive(Debug, Clone)]
pub struct Step {
    pub gate: Option<&'static str>,
    pub reply: Reply,
}

pub fn tool(name: &'static str, input: Value) -> Step {
    Step {
        gate: None,
        reply: Reply::Tool(name, input),
    }
}

pub fn text(t: &str) -> Step {
    Step {
        gate: None,
        reply: Reply::Text(t.to_string()),
    }
}

impl Step {
    /// Hold this step until the test opens `gate`.
    pub fn after(mut self, gate: &'static str) -> Step {
        self.gate = Some(gate);
        self
    }
}

/// What the stub saw of one model call.
#[derive(Debug, Clone)]
pub struct Seen {
    pub script: Option<String>,
    pub step: usize,
    pub messages: usize,
    pub has_tools: bool,
    pub api_key: Option<String>,
}

struct Shared {
    scripts: HashMap<String, Vec<Step>>,
    gates: Mutex<HashSet<String>>,
    opened: tokio::sync::Notify,
    seen: Mutex<Vec<Seen>>,
}

/// The running stub; it stops with the test process.
pub struct Stub {
    pub url: String,
    shared: Arc<Shared>,
}

impl Stub {
    /// Serve `scripts` on a free loopback port.
    pub fn start(scripts: Vec<(&str, Vec<Step>)>) -> Stub {
        let shared = Arc::new(Shared {
            scripts: scripts
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
            gates: Mutex::new(HashSet::new()),
            opened: tokio::sync::Notify::new(),
            seen: Mutex::new(Vec::new()),
        });
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let app = Router::new()
            .route("/", head(|| async { StatusCode::OK }))
            .route("/v1/messages", post(messages))
            .fallback(|| async { StatusCode::NOT_FOUND })
            .with_state(shared.clone());
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let l = tokio::net::TcpListener::from_std(listener).unwrap();
                axum::serve(l, app).await.unwrap();
            });
        });
        Stub {
            url: format!("http://127.0.0.1:{port}"),
            shared,
        }
    }

    /// Let steps waiting for `gate` proceed.
    pub fn open(&self, gate: &str) {
        self.shared.gates.lock().unwrap().insert(gate.to_string());
        self.shared.opened.notify_waiters();
    }

    /// Every model call so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.shared.seen.lock().unwrap().clone()
    }
}

/// Text of a message's content (a string or text blocks; tool results left out).
fn message_text(m: &Value) -> String {
    match &m["content"] {
        Value::String(s) => s.clone(),
        Value::Array(blocks) => blocks
            .iter()
            .filter(|b| b["type"] == "text")
            .filter_map(|b| b["text"].as_str())
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

fn script_name(text: &str) -> Option<String> {
    let start = text.find("[[script:")? + "[[script:".len();
    let end = text[start..].find("]]")? + start;
    Some(text[start..end].to_string())
}

fn working_dir(body: &Value) -> String {
    let system = match &body["system"] {
        Value::String(s) => s.clone(),
        Value::Array(b) => b
            .iter()
            .filter_map(|x| x["text"].as_str())
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    };
    for key in ["Primary working directory: ", "CWD: "] {
        if let Some(i) = system.find(key) {
            let rest = &system[i + key.len()..];
            return rest.split_whitespace().next().unwrap_or("").to_string();
        }
    }
    String::new()
}

/// Which script and step a request is at, and the messages before its prompt.
fn position(messages: &[Value]) -> (Option<String>, usize, usize) {
    let prompt_at = messages
        .iter()
        .rposition(|m| m["role"] == "user" && script_name(&message_text(m)).is_some());
    match prompt_at {
        None => (None, 0, 0),
        Some(i) => {
            let name = script_name(&message_text(&messages[i]));
            let step = messages[i + 1..]
                .iter()
                .filter(|m| m["role"] == "assistant")
                .count();
            (name, step, i)
        }
    }
}

async fn messages(
    State(shared): State<Arc<Shared>>,
    headers: axum::http::HeaderMap,
    body: Bytes,
) -> Response {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let msgs = body["messages"].as_array().cloned().unwrap_or_default();
    let has_tools = body["tools"].as_array().is_some_and(|t| !t.is_empty());
    let (script, step, prompt_at) = position(&msgs);
    shared.seen.lock().unwrap().push(Seen {
        script: script.clone(),
        step,
        messages: msgs.len(),
        has_tools,
        api_key: headers
            .get("x-api-key")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
    });
    let steps = script.as_ref().and_then(|s| shared.scripts.get(s));
    let (blocks, stop) = match (has_tools, steps) {
        (true, Some(steps)) if !steps.is_empty() => {
            let st = &steps[step.min(steps.len() - 1)];
            if let Some(g) = st.gate {
                loop {
                    let notified = shared.opened.notified();
                    if shared.gates.lock().unwrap().contains(g) {
                        break;
                    }
                    notified.await;
                }
            }
            match &st.reply {
                Reply::Tool(name, input) => {
                    let cwd = working_dir(&body);
                    let input: Value =
                        serde_json::from_str(&input.to_string().replace("{cwd}", &cwd)).unwrap();
                    let id = format!("toolu_{}", uuid::Uuid::new_v4().simple());
                    (
                        vec![json!({"type": "tool_use", "id": id, "name": name, "input": input})],
                        "tool_use",
                    )
                }
                Reply::Text(t) => {
                    let mut t = t.clone();
                    while let Some(i) = t.find("{history:") {
                        let end = t[i..].find('}').map(|e| e + i).unwrap_or(t.len() - 1);
                        let marker = &t[i + "{history:".len()..end];
                        let seen = msgs[..prompt_at]
                            .iter()
                            .any(|m| m["role"] == "user" && message_text(m).contains(marker));
                        t.replace_range(i..=end, if seen { "yes" } else { "no" });
                    }
                    (vec![json!({"type": "text", "text": t})], "end_turn")
                }
            }
        }
        // Side calls (titles, summaries) and unknown prompts: short text.
        _ => (vec![json!({"type": "text", "text": "ok"})], "end_turn"),
    };
    let model = body["model"].as_str().unwrap_or("claude-stub").to_string();
    let msg = json!({
        "id": format!("msg_{}", uuid::Uuid::new_v4().simple()),
        "type": "message", "role": "assistant", "model": model, "stop_sequence": null,
        "usage": {"input_tokens": 3, "output_tokens": 2},
    });
    if body["stream"] != true {
        let mut m = msg.clone();
        m["content"] = Value::Array(blocks);
        m["stop_reason"] = json!(stop);
        return ([(header::CONTENT_TYPE, "application/json")], m.to_string()).into_response();
    }
    let mut sse = String::new();
    let mut ev = |name: &str, mut data: Value| {
        data["type"] = json!(name);
        sse.push_str(&format!("event: {name}\ndata: {data}\n\n"));
    };
    let mut start = msg.clone();
    start["content"] = json!([]);
    start["stop_reason"] = Value::Null;
    ev("message_start", json!({ "message": start }));
    for (i, b) in blocks.iter().enumerate() {
        if b["type"] == "text" {
            ev(
                "content_block_start",
                json!({"index": i, "content_block": {"type": "text", "text": ""}}),
            );
            ev(
                "content_block_delta",
                json!({"index": i, "delta": {"type": "text_delta", "text": b["text"]}}),
            );
        } else {
            let mut cb = b.clone();
            cb["input"] = json!({});
            ev(
                "content_block_start",
                json!({"index": i, "content_block": cb}),
            );
            ev(
                "content_block_delta",
                json!({"index": i, "delta": {"type": "input_json_delta", "partial_json": b["input"].to_string()}}),
            );
        }
        ev("content_block_stop", json!({"index": i}));
    }
    ev(
        "message_delta",
        json!({"delta": {"stop_reason": stop, "stop_sequence": null}, "usage": {"output_tokens": 2}}),
    );
    ev("message_stop", json!({}));
    ([(header::CONTENT_TYPE, "text/event-stream")], sse).into_response()
}
