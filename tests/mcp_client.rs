//! `rclaude mcp` driven by the official MCP Python SDK's client (`mcp` from PyPI, pinned) over
//! stdio, against real local sandboxes: tool schemas, a session brought up, commands and tasks
//! run, a Claude Code run waited for, work pulled as a branch, destructive actions refused
//! without the explicit flag, bad input answered with MCP errors.
//!
//! Needs python3 with venv; the SDK is installed once into `<target>/mcp-<version>`. Without
//! python3-venv the tests fail unless `RCLAUDE_SKIP_PYTHON=1`.

mod common;
#[path = "support/pip_tool.rs"]
mod pip_tool;
#[path = "support/skip.rs"]
mod skip;

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::TestRepo;
use serde_json::{Value, json};

/// The SDK version the server is checked against.
const MCP_VERSION: &str = "2.3.0";
/// JSON-RPC "invalid params".
const INVALID_PARAMS: i64 = -32602;

const CONFIG: &str = r#"[sandbox]
provider = "local"

[tasks.greet]
run = "echo hello-from-task"

[tasks.broken]
run = "echo about-to-fail; exit 4"
"#;

/// The MCP SDK's python, or `None` when skipped.
fn sdk_python() -> Option<std::path::PathBuf> {
    match pip_tool::install(env!("CARGO_TARGET_TMPDIR"), "mcp", MCP_VERSION, "python") {
        Ok(p) => Some(p),
        Err(()) => {
            if skip::opted_out(
                "RCLAUDE_SKIP_PYTHON",
                "MCP client test: python3 with venv missing",
            ) {
                return None;
            }
            panic!(
                "the MCP client test needs python3 with venv (Debian: apt-get install -y python3-venv), \
                 or set RCLAUDE_SKIP_PYTHON=1 to skip it"
            );
        }
    }
}

/// The SDK's client connected to `rclaude mcp` started in `repo`.
struct Client {
    child: Child,
    stdin: ChildStdin,
    lines: mpsc::Receiver<String>,
}

impl Client {
    fn connect(python: &std::path::Path, repo: &TestRepo, extra_env: &[(&str, &str)]) -> Client {
        let mut env = json!({
            "RCLAUDE_HOME": repo.home.path(),
            "CI": "true",
            "GIT_AUTHOR_NAME": "Test Author",
            "GIT_AUTHOR_EMAIL": "author@example.com",
            "GIT_COMMITTER_NAME": "Test Committer",
            "GIT_COMMITTER_EMAIL": "committer@example.com",
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": "/dev/null",
        });
        for (k, v) in extra_env {
            env[*k] = json!(v);
        }
        let server = json!({
            "command": common::bin(),
            "args": ["mcp"],
            "cwd": repo.path(),
            "env": env,
        });
        let driver = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/mcp/driver.py");
        let mut child = Command::new(python)
            .arg(driver)
            .arg(server.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the MCP client");
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut c = Client {
            child,
            stdin,
            lines,
        };
        let init = c.next();
        assert_eq!(
            init["initialized"]["serverInfo"]["name"], "rclaude",
            "{init}"
        );
        c
    }

    fn next(&mut self) -> Value {
        let line = self
            .lines
            .recv_timeout(Duration::from_secs(180))
            .expect("the MCP client answers (it ended or took over 3 minutes)");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"))
    }

    fn send(&mut self, req: Value) -> Value {
        writeln!(self.stdin, "{req}").unwrap();
        self.stdin.flush().unwrap();
        self.next()
    }

    fn tools(&mut self) -> Vec<Value> {
        let v = self.send(json!({"op": "list_tools"}));
        v["tools"]
            .as_array()
            .cloned()
            .unwrap_or_else(|| panic!("{v}"))
    }

    /// A tool call that the server answered with a result; returns (isError, structuredContent).
    fn call(&mut self, tool: &str, args: Value) -> (bool, Value) {
        let v = self.send(json!({"op": "call", "tool": tool, "args": args}));
        let r = &v["result"];
        assert!(r.is_object(), "{tool} {args}: expected a result, got {v}");
        (r["isError"] == true, r["structuredContent"].clone())
    }

    /// A tool call refused for its input: an error result (`isError`, as the MCP specification
    /// asks for input errors) saying why, with nothing run. Returns the message.
    fn rejected(&mut self, tool: &str, args: Value) -> String {
        let v = self.send(json!({"op": "call", "tool": tool, "args": args}));
        let r = &v["result"];
        assert_eq!(
            r["isError"], true,
            "{tool} {args}: expected an error result, got {v}"
        );
        // Ours say `usage` in structured content; the SDK's own argument decoding, text only.
        if let Some(e) = r["structuredContent"]["error"].as_object() {
            assert_eq!(e["kind"], "usage", "{v}");
            assert!(
                r["structuredContent"]["stdout"].is_null(),
                "nothing ran: {v}"
            );
            return e["message"].as_str().unwrap().to_string();
        }
        r["content"][0]["text"].as_str().unwrap().to_string()
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_real_mcp_client_drives_a_session_from_start_to_pulled_branch() {
    let Some(python) = sdk_python() else { return };
    let t = TestRepo::new(CONFIG);
    t.write("a.txt", "base\n");
    t.commit_all("init");
    let mut c = Client::connect(&python, &t, &[]);

    // Every tool is listed with a JSON Schema for its input.
    let tools = c.tools();
    let names: Vec<&str> = tools.iter().filter_map(|t| t["name"].as_str()).collect();
    for want in [
        "list_sessions",
        "session_status",
        "start_session",
        "run_task",
        "exec",
        "claude_run",
        "wait_run",
        "pull",
        "stop_session",
    ] {
        assert!(names.contains(&want), "{want} missing from {names:?}");
    }
    let exec = tools.iter().find(|t| t["name"] == "exec").unwrap();
    assert_eq!(exec["inputSchema"]["type"], "object");
    assert_eq!(
        exec["inputSchema"]["required"],
        json!(["command"]),
        "{exec}"
    );
    let stop = tools.iter().find(|t| t["name"] == "stop_session").unwrap();
    assert_eq!(stop["annotations"]["destructiveHint"], true, "{stop}");

    // Up: the work tree (with an uncommitted file) reaches the sandbox.
    t.write("draft.txt", "uncommitted\n");
    let (err, up) = c.call("start_session", json!({}));
    assert!(!err, "{up}");
    assert_eq!(up["exit_code"], 0, "{up}");
    assert_eq!(up["status"]["provider"], "local", "{up}");

    // A command's output, log and exit code come back as they are; a failing command is a
    // result, not an error.
    let (err, r) = c.call(
        "exec",
        json!({"command": ["sh", "-c", "cat draft.txt; echo to-stderr >&2; exit 3"]}),
    );
    assert!(!err, "{r}");
    assert_eq!(r["exit_code"], 3, "{r}");
    assert_eq!(r["stdout"], "uncommitted\n", "{r}");
    assert!(r["log"].as_str().unwrap().contains("to-stderr"), "{r}");
    let (_, r) = c.call(
        "exec",
        json!({"command": ["sh", "-c", "echo \"$GREETING\""], "env": {"GREETING": "hi"}, "sync": false}),
    );
    assert_eq!(r["stdout"], "hi\n", "{r}");

    // Tasks: output and exit code; an unknown task is rclaude's usage error (isError).
    let (err, r) = c.call("run_task", json!({"task": "greet"}));
    assert!(!err && r["exit_code"] == 0, "{r}");
    assert!(
        r["stdout"].as_str().unwrap().contains("hello-from-task"),
        "{r}"
    );
    let (err, r) = c.call("run_task", json!({"task": "broken"}));
    assert!(!err, "a failing task is a result: {r}");
    assert_eq!(r["exit_code"], 4, "{r}");
    let (err, r) = c.call("run_task", json!({"task": "nope"}));
    assert!(err, "{r}");
    assert_eq!(r["error"]["kind"], "usage", "{r}");
    assert_eq!(r["exit_code"], 64, "{r}");

    // Sandbox work comes back as a branch; the checkout is untouched.
    let (_, r) = c.call(
        "exec",
        json!({"command": ["sh", "-c", "echo agent-work > made-in-sandbox.txt"], "sync": false}),
    );
    assert_eq!(r["exit_code"], 0, "{r}");
    let (err, r) = c.call("pull", json!({}));
    assert!(!err, "{r}");
    assert_eq!(r["pulled"]["branch"], "rclaude/main", "{r}");
    assert_eq!(
        t.git(&["show", "rclaude/main:made-in-sandbox.txt"]),
        "agent-work\n"
    );
    assert!(!t.path().join("made-in-sandbox.txt").exists());

    // Destroying needs the explicit flag; refused, the sandbox is still there.
    let msg = c.rejected("stop_session", json!({"action": "destroy"}));
    assert!(msg.contains("confirm_destroy"), "{msg}");
    let (err, r) = c.call("session_status", json!({}));
    assert!(!err, "{r}");
    assert_eq!(r["status"]["state"], "running", "{r}");
    let listed = c.call("list_sessions", json!({})).1;
    let id = r["status"]["sandbox"].as_str().unwrap().to_string();
    assert!(listed["sessions"].to_string().contains(&id), "{listed}");

    let (err, r) = c.call(
        "stop_session",
        json!({"action": "destroy", "confirm_destroy": true}),
    );
    assert!(!err, "{r}");
    let (err, r) = c.call("session_status", json!({}));
    assert!(!err, "{r}");
    assert!(
        r["status"]["sandbox"].is_null(),
        "after destroy there is no session: {r}"
    );
}

#[test]
fn bad_input_is_an_error_result_and_the_server_keeps_serving() {
    let Some(python) = sdk_python() else { return };
    let t = TestRepo::new(CONFIG);
    t.commit_all("init");
    let mut c = Client::connect(&python, &t, &[]);

    for (tool, args, says) in [
        ("exec", json!({}), "command"),
        ("exec", json!({"command": "ls -la"}), "sequence"),
        ("exec", json!({"command": []}), "command"),
        ("exec", json!({"command": ["ls"], "comand": 1}), "comand"),
        (
            "exec",
            json!({"command": ["ls"], "timeout_secs": 0}),
            "timeout_secs",
        ),
        ("exec", json!({"command": ["ls"], "env": {"1X": "y"}}), "1X"),
        ("run_task", json!({"task": "  "}), "task"),
        ("run_task", json!({"task": 7}), "string"),
        ("claude_run", json!({}), "prompt"),
        (
            "claude_run",
            json!({"prompt": "x", "wait": false, "timeout_secs": 5}),
            "wait",
        ),
        ("stop_session", json!({"action": "explode"}), "explode"),
        (
            "stop_session",
            json!({"action": "pause", "confirm_destroy": true}),
            "destroy",
        ),
        ("pull", json!({"repo": "/no/such/dir"}), "/no/such/dir"),
    ] {
        let msg = c.rejected(tool, args.clone());
        assert!(
            msg.contains(says),
            "{tool} {args}: {msg:?} should mention {says}"
        );
    }
    // An unknown tool is a JSON-RPC error, and the server still answers afterwards.
    let v = c.send(json!({"op": "call", "tool": "rm_rf", "args": {}}));
    assert_eq!(v["error"]["code"], INVALID_PARAMS, "{v}");
    // rclaude's own failure (no session to pull from) is an error result with rclaude's error,
    // its hint and exit code.
    let (err, r) = c.call("pull", json!({}));
    assert!(err, "{r}");
    assert_eq!(r["error"]["kind"], "unavailable", "{r}");
    assert_eq!(r["exit_code"], 69, "{r}");
    assert!(
        r["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{r}"
    );
    assert!(r["error"]["hint"].as_str().is_some(), "{r}");
}

/// A stand-in `claude`: answers `--version`, edits a file as an agent would, then reports.
const EDITING_CLAUDE: &str = r#"#!/bin/sh
if [ "$1" = "--version" ]; then echo "2.1.197 (Claude Code)"; exit 0; fi
prompt=$(cat)
printf '{"type":"system","subtype":"init","session_id":"s-1"}\n'
echo "$prompt" > from-claude.txt
printf '{"type":"result","subtype":"success","is_error":false,"num_turns":1,"duration_ms":5,"usage":{},"result":"Wrote the file"}\n'
"#;

#[test]
fn claude_run_waits_for_the_result_and_its_work_is_pulled_as_a_branch() {
    let Some(python) = sdk_python() else { return };
    let config = format!(
        "{CONFIG}[setup]\nrun = \"mkdir -p $HOME/.local/bin && cp tools/claude $HOME/.local/bin/claude && chmod +x $HOME/.local/bin/claude\"\n"
    );
    let t = TestRepo::new(&config);
    t.write("tools/claude", EDITING_CLAUDE);
    t.commit_all("init");
    let mut c = Client::connect(&python, &t, &[("ANTHROPIC_API_KEY", "sk-test")]);
    let (err, r) = c.call("start_session", json!({"session": "agent"}));
    assert!(!err, "{r}");

    let (err, r) = c.call(
        "claude_run",
        json!({"session": "agent", "prompt": "write the notes", "timeout_secs": 120}),
    );
    assert!(!err, "{r}");
    assert_eq!(r["exit_code"], 0, "{r}");
    assert!(r["run"].as_str().is_some_and(|id| !id.is_empty()), "{r}");
    assert_eq!(r["result"]["result"], "Wrote the file", "{r}");

    // wait_run on the finished run answers at once with the same result.
    let run = r["run"].as_str().unwrap().to_string();
    let (err, w) = c.call("wait_run", json!({"session": "agent", "run": run}));
    assert!(!err, "{w}");
    assert_eq!(w["result"]["result"], "Wrote the file", "{w}");

    let (err, p) = c.call("pull", json!({"session": "agent"}));
    assert!(!err, "{p}");
    let branch = p["pulled"]["branch"].as_str().unwrap().to_string();
    assert_eq!(branch, "rclaude/agent/main", "{p}");
    let file = t.git(&["show", &format!("{branch}:from-claude.txt")]);
    assert!(file.contains("write the notes"), "{file}");
    let (err, r) = c.call(
        "stop_session",
        json!({"session": "agent", "action": "destroy", "confirm_destroy": true, "discard_unpulled_work": true}),
    );
    assert!(!err, "{r}");
}
