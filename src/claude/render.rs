//! Claude Code's `--output-format stream-json` as a readable transcript: assistant text as
//! paragraphs, one line per tool call (`✎ Edit src/a.rs`, `▸ Bash: cargo test`, `◆ Read a.txt`),
//! failed tool calls highlighted, and a closing summary from the `result` event.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::Value;

const DIM: &str = "\x1b[2m";
const BOLD: &str = "\x1b[1m";
const RED: &str = "\x1b[31m";
const GREEN: &str = "\x1b[32m";
const YELLOW: &str = "\x1b[33m";
const CYAN: &str = "\x1b[36m";
const RESET: &str = "\x1b[0m";

/// Longest command or value shown on a tool line.
const MAX_DETAIL: usize = 160;

/// The `result` event at the end of a run.
#[derive(Debug, Clone, PartialEq)]
pub struct RunResult {
    /// The run failed (API error, turn limit, ...).
    pub is_error: bool,
    /// `success`, `error_max_turns`, `error_during_execution`, ...
    pub subtype: String,
    pub num_turns: u64,
    /// Input tokens including cache reads and writes.
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cost_usd: Option<f64>,
    pub duration_ms: u64,
    /// The final text (or the error message).
    pub text: Option<String>,
    /// Tool calls refused by the permission mode.
    pub permission_denials: usize,
}

impl RunResult {
    fn from_event(v: &Value) -> RunResult {
        let usage = &v["usage"];
        let n = |x: &Value| x.as_u64().unwrap_or(0);
        RunResult {
            is_error: v["is_error"].as_bool().unwrap_or(false)
                || !v["subtype"].as_str().unwrap_or("success").eq("success"),
            subtype: v["subtype"].as_str().unwrap_or("").to_string(),
            num_turns: n(&v["num_turns"]),
            input_tokens: n(&usage["input_tokens"])
                + n(&usage["cache_creation_input_tokens"])
                + n(&usage["cache_read_input_tokens"]),
            output_tokens: n(&usage["output_tokens"]),
            cost_usd: v["total_cost_usd"].as_f64(),
            duration_ms: n(&v["duration_ms"]),
            text: v["result"].as_str().map(str::to_string),
            permission_denials: v["permission_denials"].as_array().map_or(0, Vec::len),
        }
    }

    /// `5 turns · 1.2k in / 340 out tokens · $0.0123 · 4.1s`
    pub fn stats(&self) -> String {
        let mut parts = vec![
            format!(
                "{} turn{}",
                self.num_turns,
                if self.num_turns == 1 { "" } else { "s" }
            ),
            format!(
                "{} in / {} out tokens",
                tokens(self.input_tokens),
                tokens(self.output_tokens)
            ),
        ];
        if let Some(c) = self.cost_usd {
            parts.push(if c < 0.01 {
                format!("${c:.4}")
            } else {
                format!("${c:.2}")
            });
        }
        parts.push(crate::format::format_elapsed(Duration::from_millis(
            self.duration_ms,
        )));
        if self.permission_denials > 0 {
            parts.push(format!(
                "{} tool call{} denied",
                self.permission_denials,
                if self.permission_denials == 1 {
                    ""
                } else {
                    "s"
                }
            ));
        }
        parts.join(" · ")
    }
}

/// `980`, `12.3k`, `1.2M`.
fn tokens(n: u64) -> String {
    if n < 10_000 {
        n.to_string()
    } else if n < 1_000_000 {
        format!("{:.1}k", n as f64 / 1000.0)
    } else {
        format!("{:.1}M", n as f64 / 1_000_000.0)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Last {
    Nothing,
    Text,
    Line,
}

/// Turns transcript lines into display text, remembering what it needs across lines (tool
/// names for their results, the working directory for short paths, the session id).
#[derive(Debug)]
pub struct Renderer {
    color: bool,
    cwd: Option<String>,
    tools: HashMap<String, String>,
    last: Last,
    session_id: Option<String>,
    result: Option<RunResult>,
    tool_errors: usize,
}

impl Renderer {
    /// `color`: ANSI colors (for a terminal).
    pub fn new(color: bool) -> Renderer {
        Renderer {
            color,
            cwd: None,
            tools: HashMap::new(),
            last: Last::Nothing,
            session_id: None,
            result: None,
            tool_errors: 0,
        }
    }

    /// Claude Code's conversation id, once the transcript named it.
    pub fn session_id(&self) -> Option<&str> {
        self.session_id.as_deref()
    }

    /// The closing `result` event, once seen.
    pub fn result(&self) -> Option<&RunResult> {
        self.result.as_ref()
    }

    /// Tool calls that came back with `is_error: true`.
    pub fn tool_errors(&self) -> usize {
        self.tool_errors
    }

    fn paint(&self, style: &str, s: &str) -> String {
        if self.color {
            format!("{style}{s}{RESET}")
        } else {
            s.to_string()
        }
    }

    /// A one-line item (tool call, error, status), separated from text paragraphs.
    fn item(&mut self, out: &mut String, s: String) {
        if self.last == Last::Text {
            out.push('\n');
        }
        out.push_str(&s);
        out.push('\n');
        self.last = Last::Line;
    }

    fn paragraph(&mut self, out: &mut String, text: &str) {
        let text = text.trim_matches('\n').trim_end();
        if text.is_empty() {
            return;
        }
        if self.last != Last::Nothing {
            out.push('\n');
        }
        out.push_str(text);
        out.push('\n');
        self.last = Last::Text;
    }

    /// Render one line of the transcript; returns what to print (possibly nothing). Lines that
    /// are not JSON are passed through unchanged.
    pub fn line(&mut self, line: &str) -> String {
        let mut out = String::new();
        let line = line.trim_end_matches(['\r', '\n']);
        if line.trim().is_empty() {
            return out;
        }
        let Ok(v) = serde_json::from_str::<Value>(line) else {
            self.item(&mut out, line.to_string());
            return out;
        };
        if let Some(id) = v["session_id"].as_str() {
            self.session_id = Some(id.to_string());
        }
        match v["type"].as_str().unwrap_or("") {
            "system" => self.system(&mut out, &v),
            "assistant" => {
                for block in v["message"]["content"].as_array().into_iter().flatten() {
                    match block["type"].as_str() {
                        Some("text") => {
                            self.paragraph(&mut out, block["text"].as_str().unwrap_or(""))
                        }
                        Some("tool_use") => self.tool_use(&mut out, block),
                        _ => {}
                    }
                }
            }
            "user" => {
                for block in v["message"]["content"].as_array().into_iter().flatten() {
                    if block["type"] == "tool_result" && block["is_error"] == true {
                        self.tool_error(&mut out, block);
                    }
                }
            }
            "result" => {
                let r = RunResult::from_event(&v);
                if self.last != Last::Nothing {
                    out.push('\n');
                }
                let s = if r.is_error {
                    let why = r
                        .text
                        .as_deref()
                        .map(first_line)
                        .filter(|t| !t.is_empty())
                        .unwrap_or(&r.subtype);
                    self.paint(
                        &format!("{BOLD}{RED}"),
                        &format!("✗ Claude Code failed: {why} · {}", r.stats()),
                    )
                } else {
                    self.paint(
                        &format!("{BOLD}{GREEN}"),
                        &format!("✓ Done · {}", r.stats()),
                    )
                };
                out.push_str(&s);
                out.push('\n');
                self.last = Last::Line;
                self.result = Some(r);
            }
            _ => {}
        }
        out
    }

    fn system(&mut self, out: &mut String, v: &Value) {
        match v["subtype"].as_str() {
            Some("init") => {
                self.cwd = v["cwd"].as_str().map(str::to_string);
                let mut parts = vec![
                    format!(
                        "Claude Code {}",
                        v["claude_code_version"].as_str().unwrap_or("")
                    )
                    .trim_end()
                    .to_string(),
                ];
                if let Some(m) = v["model"].as_str() {
                    parts.push(m.to_string());
                }
                if let Some(m) = v["permissionMode"].as_str() {
                    parts.push(m.to_string());
                }
                if let Some(s) = v["session_id"].as_str() {
                    parts.push(format!("session {s}"));
                }
                let s = self.paint(DIM, &format!("● {}", parts.join(" · ")));
                self.item(out, s);
            }
            Some("compact_boundary") => {
                let s = self.paint(DIM, "● conversation compacted");
                self.item(out, s);
            }
            _ => {}
        }
    }

    fn tool_use(&mut self, out: &mut String, block: &Value) {
        let name = block["name"].as_str().unwrap_or("tool");
        let (icon, label) = tool_label(name, &block["input"], self.cwd.as_deref());
        if let Some(id) = block["id"].as_str() {
            self.tools.insert(id.to_string(), label.clone());
        }
        let style = if icon == '✎' { YELLOW } else { CYAN };
        let s = format!("{} {label}", self.paint(style, &icon.to_string()));
        self.item(out, s);
    }

    fn tool_error(&mut self, out: &mut String, block: &Value) {
        self.tool_errors += 1;
        let label = block["tool_use_id"]
            .as_str()
            .and_then(|id| self.tools.get(id))
            .cloned()
            .unwrap_or_else(|| "tool call".into());
        let text = result_text(&block["content"]);
        let s = self.paint(RED, &format!("  ✗ {label} failed: {}", first_line(&text)));
        self.item(out, s);
    }
}

/// The text of a tool result (a string or a list of text blocks), without the error tags.
fn result_text(content: &Value) -> String {
    let text = match content {
        Value::String(s) => s.clone(),
        Value::Array(items) => items
            .iter()
            .filter_map(|i| i["text"].as_str())
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    };
    text.replace("<tool_use_error>", "")
        .replace("</tool_use_error>", "")
        .trim()
        .to_string()
}

fn first_line(s: &str) -> &str {
    s.trim().lines().next().unwrap_or("").trim()
}

fn clip(s: &str) -> String {
    let one = first_line(s);
    let more = s.trim().lines().count() > 1;
    if one.chars().count() > MAX_DETAIL {
        let cut: String = one.chars().take(MAX_DETAIL).collect();
        format!("{cut}…")
    } else if more {
        format!("{one} …")
    } else {
        one.to_string()
    }
}

/// A path relative to the run's working directory when it is inside it.
fn short_path(p: &str, cwd: Option<&str>) -> String {
    if let Some(c) = cwd {
        let c = c.trim_end_matches('/');
        if let Some(rest) = p.strip_prefix(c).and_then(|r| r.strip_prefix('/'))
            && !rest.is_empty()
        {
            return rest.to_string();
        }
    }
    p.to_string()
}

/// Icon and text of a tool call's line.
fn tool_label(name: &str, input: &Value, cwd: Option<&str>) -> (char, String) {
    let s = |k: &str| input[k].as_str().unwrap_or("");
    let path = |k: &str| short_path(s(k), cwd);
    let within = |k: &str| {
        let p = s(k);
        if p.is_empty() {
            String::new()
        } else {
            format!(" in {}", short_path(p, cwd))
        }
    };
    match name {
        "Write" | "Edit" | "MultiEdit" => ('✎', format!("{name} {}", path("file_path"))),
        "NotebookEdit" => ('✎', format!("{name} {}", path("notebook_path"))),
        "Read" => ('◆', format!("Read {}", path("file_path"))),
        "Bash" => ('▸', format!("Bash: {}", clip(s("command")))),
        "Glob" => (
            '◆',
            format!("Glob {}{}", clip(s("pattern")), within("path")),
        ),
        "Grep" => (
            '◆',
            format!("Grep \"{}\"{}", clip(s("pattern")), within("path")),
        ),
        "WebFetch" => ('◆', format!("WebFetch {}", clip(s("url")))),
        "WebSearch" => ('◆', format!("WebSearch \"{}\"", clip(s("query")))),
        "Task" | "Agent" => ('◆', format!("{name}: {}", clip(s("description")))),
        "TodoWrite" => {
            let n = input["todos"].as_array().map_or(0, Vec::len);
            (
                '◆',
                format!("TodoWrite ({n} item{})", if n == 1 { "" } else { "s" }),
            )
        }
        _ => {
            // The first string argument says most about an unknown tool.
            let detail = input
                .as_object()
                .and_then(|o| o.values().find_map(Value::as_str))
                .map(clip)
                .unwrap_or_default();
            let sep = if detail.is_empty() { "" } else { ": " };
            ('◆', format!("{name}{sep}{detail}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INIT: &str = r#"{"type":"system","subtype":"init","cwd":"/w","session_id":"s-1","model":"claude-stub","permissionMode":"bypassPermissions","claude_code_version":"2.1.197"}"#;

    fn render(lines: &[&str]) -> (String, Renderer) {
        let mut r = Renderer::new(false);
        let out: String = lines.iter().map(|l| r.line(l)).collect();
        (out, r)
    }

    #[test]
    fn renders_text_tools_errors_and_summary() {
        let (out, r) = render(&[
            INIT,
            r#"{"type":"assistant","message":{"content":[{"type":"text","text":"I'll create it.\n"},{"type":"tool_use","id":"t1","name":"Write","input":{"file_path":"/w/src/a.rs","content":"x"}}]}}"#,
            r#"{"type":"user","message":{"content":[{"type":"tool_result","tool_use_id":"t1","content":"ok"}]}}"#,
            r#"{"type":"assistant","message":{"content":[{"type":"tool_use","id":"t2","name":"Edit","input":{"file_path":"/w/src/a.rs","old_string":"x","new_string":"y"}}]}}"#,
            r#"{"type":"user","message":{"content":[{"type":"tool_result","tool_use_id":"t2","is_error":true,"content":"<tool_use_error>File has not been read yet. Read it first.</tool_use_error>"}]}}"#,
            r#"{"type":"assistant","message":{"content":[{"type":"tool_use","id":"t3","name":"Bash","input":{"command":"cargo test\necho more","description":"test"}},{"type":"tool_use","id":"t4","name":"Read","input":{"file_path":"/etc/hosts"}}]}}"#,
            r#"{"type":"assistant","message":{"content":[{"type":"thinking","thinking":"hmm"},{"type":"text","text":"All done."}]}}"#,
            r#"{"type":"result","subtype":"success","is_error":false,"num_turns":4,"duration_ms":1250,"total_cost_usd":0.00123,"result":"All done.","session_id":"s-1","usage":{"input_tokens":10,"cache_read_input_tokens":12000,"output_tokens":7},"permission_denials":[]}"#,
        ]);
        let want = "\
● Claude Code 2.1.197 · claude-stub · bypassPermissions · session s-1

I'll create it.

✎ Write src/a.rs
✎ Edit src/a.rs
  ✗ Edit src/a.rs failed: File has not been read yet. Read it first.
▸ Bash: cargo test …
◆ Read /etc/hosts

All done.

✓ Done · 4 turns · 12.0k in / 7 out tokens · $0.0012 · 1.2s
";
        assert_eq!(out, want);
        assert_eq!(r.session_id(), Some("s-1"));
        assert_eq!(r.tool_errors(), 1);
        let res = r.result().unwrap();
        assert!(!res.is_error);
        assert_eq!(res.num_turns, 4);
    }

    #[test]
    fn failed_runs_and_foreign_lines() {
        let (out, r) = render(&[
            "not json at all",
            r#"{"type":"result","subtype":"success","is_error":true,"num_turns":1,"duration_ms":20,"result":"API Error: Connection refused","usage":{}}"#,
        ]);
        assert_eq!(
            out,
            "not json at all\n\n✗ Claude Code failed: API Error: Connection refused · 1 turn · 0 in / 0 out tokens · 20ms\n"
        );
        assert!(r.result().unwrap().is_error);
    }

    #[test]
    fn colors_only_when_asked() {
        let mut r = Renderer::new(true);
        let s = r.line(r#"{"type":"assistant","message":{"content":[{"type":"tool_use","id":"t","name":"Write","input":{"file_path":"/a"}}]}}"#);
        assert!(s.contains("\x1b[33m✎\x1b[0m Write /a"), "{s:?}");
        let mut plain = Renderer::new(false);
        assert!(!plain.line(INIT).contains('\x1b'));
    }

    #[test]
    fn unknown_tools_show_their_first_string_argument() {
        let (icon, label) = tool_label(
            "mcp__x__search",
            &serde_json::json!({"q": "needle", "n": 3}),
            None,
        );
        assert_eq!((icon, label.as_str()), ('◆', "mcp__x__search: needle"));
        let (_, label) = tool_label(
            "Grep",
            &serde_json::json!({"pattern": "fn main", "path": "/w/src"}),
            Some("/w"),
        );
        assert_eq!(label, "Grep \"fn main\" in src");
        assert_eq!(tokens(1_500_000), "1.5M");
    }
}
