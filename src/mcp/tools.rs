//! The tools `rclaude mcp` offers, each one rclaude command (see [`super::invoke`]).
//!
//! Errors are tool results with `isError` (as the MCP specification asks, so that a model can
//! read them and correct its call): bad input (missing, mistyped or unknown arguments, a
//! destructive action without its flag) before anything runs, with `error.kind = "usage"`; or
//! rclaude failing to do what was asked, with its error (kind, message, hint). A command or
//! task in the sandbox that ran and failed is a plain result with its exit code. An unknown
//! tool is a JSON-RPC error.

use std::path::{Path, PathBuf};

use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{CallToolResult, Implementation, ServerCapabilities, ServerConfig};
use rmcp::{ServerHandler, tool, tool_handler, tool_router};
use serde_json::{Value, json};

use super::invoke::{Invocation, Outcome, resolve_dir};
use super::params::{self, StopAction};

/// What the tools share: the binary to run and the directory they default to.
#[derive(Clone)]
pub struct Tools {
    exe: PathBuf,
    base: PathBuf,
    tool_router: ToolRouter<Self>,
}

/// A tool's answer; `Err` ends the call early with an error result.
type ToolResult = Result<CallToolResult, CallToolResult>;

/// Bad input: nothing ran.
fn invalid(message: String) -> CallToolResult {
    CallToolResult::structured_error(json!({
        "error": { "kind": "usage", "message": message, "exit_code": 64, "remote": false }
    }))
}

/// The answer of a tool body, early errors included.
async fn settle(body: impl std::future::Future<Output = ToolResult>) -> CallToolResult {
    body.await.unwrap_or_else(|e| e)
}

#[tool_router]
impl Tools {
    /// Tools running `exe` with `base` as the default repository directory.
    pub fn new(exe: PathBuf, base: PathBuf) -> Tools {
        Tools {
            exe,
            base,
            tool_router: Self::tool_router(),
        }
    }

    fn dir(&self, repo: Option<&str>) -> Result<PathBuf, CallToolResult> {
        resolve_dir(&self.base, repo).map_err(invalid)
    }

    fn call<'a>(&'a self, dir: &'a Path) -> Invocation<'a> {
        Invocation::new(&self.exe, dir)
    }

    #[tool(
        description = "List the sandboxes rclaude made on the repository's provider (its sessions, CI runs, leftovers), as JSON.",
        annotations(read_only_hint = true)
    )]
    async fn list_sessions(
        &self,
        Parameters(p): Parameters<params::ListSessions>,
    ) -> CallToolResult {
        settle(async move {
            let dir = self.dir(p.repo.as_deref())?;
            let out = run(self.call(&dir).args(["ls", "--json"])).await?;
            Ok(answer(out, |o| json_stdout(o, "sessions")))
        })
        .await
    }

    #[tool(
        description = "A session's state: provider, sandbox id, state (running/paused), work directory, time left, last sync, as JSON.",
        annotations(read_only_hint = true)
    )]
    async fn session_status(&self, Parameters(p): Parameters<params::Status>) -> CallToolResult {
        settle(async move {
            let dir = self.dir(p.repo.as_deref())?;
            let out = run(self
                .call(&dir)
                .session(p.session.as_deref())
                .args(["status", "--json"]))
            .await?;
            Ok(answer(out, |o| json_stdout(o, "status")))
        })
        .await
    }

    #[tool(
        description = "Create or resume a session's sandbox: for a repository checkout, sync its work tree (commits and uncommitted files) and run [setup]; for a `url`, the sandbox clones the repository itself. Returns the session's status (with `url`: its id, for `session` in later calls).",
        annotations(destructive_hint = false, open_world_hint = true)
    )]
    async fn start_session(
        &self,
        Parameters(p): Parameters<params::StartSession>,
    ) -> CallToolResult {
        settle(async move {
            if let Some(url) = &p.url {
                let url = params::required("url", url).map_err(invalid)?;
                if p.no_setup {
                    return Err(invalid(
                        "`no_setup` applies to a repository checkout, not to a `url`".into(),
                    ));
                }
                let mut call = self
                    .call(&self.base)
                    .args(["start", url.as_str(), "--json"]);
                if let Some(name) = &p.session {
                    call = call.args(["--name", name.as_str()]);
                }
                let out = run(call).await?;
                return Ok(answer(out, |o| json_stdout(o, "session")));
            }
            let dir = self.dir(p.repo.as_deref())?;
            let mut up = vec!["up", "--no-watch"];
            if p.no_setup {
                up.push("--no-setup");
            }
            let out = run(self.call(&dir).session(p.session.as_deref()).args(up)).await?;
            if out.failed() {
                return Ok(answer(out, |_| None));
            }
            let status = run(self
                .call(&dir)
                .session(p.session.as_deref())
                .args(["status", "--json"]))
            .await?;
            let facts = json_stdout(&status, "status");
            Ok(answer(out, |_| facts))
        })
        .await
    }

    #[tool(
        description = "Run a task from the repository's .rclaude.toml (its dependencies first) in the sandbox, after syncing the work tree. Returns its output and exit code; a failing task is a result with its exit code, not an error."
    )]
    async fn run_task(&self, Parameters(p): Parameters<params::RunTask>) -> CallToolResult {
        settle(async move {
            let task = params::required("task", &p.task).map_err(invalid)?;
            let dir = self.dir(p.repo.as_deref())?;
            let mut args = vec!["run".to_string()];
            if !p.sync {
                args.push("--no-sync".into());
            }
            args.push(task);
            if !p.args.is_empty() {
                args.push("--".into());
                args.extend(p.args);
            }
            let out = run(self.call(&dir).session(p.session.as_deref()).args(args)).await?;
            Ok(answer(out, |_| None))
        })
        .await
    }

    #[tool(
        description = "Run a command in the sandbox (argv, no shell; use [\"sh\",\"-c\",\"...\"] for one), after syncing the work tree. Returns stdout, the log (stderr) and the exit code."
    )]
    async fn exec(&self, Parameters(p): Parameters<params::Exec>) -> CallToolResult {
        settle(async move {
            if p.command.is_empty() || p.command[0].trim().is_empty() {
                return Err(invalid("`command` is empty: give the program and its arguments, e.g. [\"ls\", \"-la\"]".into()));
            }
            let dir = self.dir(p.repo.as_deref())?;
            let mut args = vec!["exec".to_string(), "--no-stdin".into()];
            if !p.sync {
                args.push("--no-sync".into());
            }
            if let Some(t) = params::timeout("timeout_secs", p.timeout_secs).map_err(invalid)? {
                args.extend(["--timeout".into(), t]);
            }
            if let Some(cwd) = &p.cwd {
                args.extend(["--cwd".into(), params::required("cwd", cwd).map_err(invalid)?]);
            }
            for (k, v) in &p.env {
                params::env_name(k).map_err(invalid)?;
                args.extend(["--env".into(), format!("{k}={v}")]);
            }
            args.push("--".into());
            args.extend(p.command);
            let out = run(self.call(&dir).session(p.session.as_deref()).args(args)).await?;
            Ok(answer(out, |_| None))
        })
        .await
    }

    #[tool(
        description = "Start Claude Code on a prompt in the session's sandbox (after syncing the work tree) and, by default, wait for it to end. Returns the run id, its exit code and Claude Code's final result. The run keeps going if waiting times out or the client goes away; its edits stay in the sandbox until `pull`.",
        annotations(open_world_hint = true)
    )]
    async fn claude_run(&self, Parameters(p): Parameters<params::ClaudeRun>) -> CallToolResult {
        settle(async move {
            let prompt = params::required("prompt", &p.prompt).map_err(invalid)?;
            let timeout = params::timeout("timeout_secs", p.timeout_secs).map_err(invalid)?;
            if timeout.is_some() && !p.wait {
                return Err(invalid("`timeout_secs` needs `wait`".into()));
            }
            let dir = self.dir(p.repo.as_deref())?;
            let session = p.session.as_deref();
            let mut args = vec!["claude".to_string(), "--detach".into()];
            if !p.sync {
                args.push("--no-sync".into());
            }
            if p.continue_conversation {
                args.push("--continue".into());
            }
            if let Some(m) = &p.model {
                args.extend([
                    "--model".into(),
                    params::required("model", m).map_err(invalid)?,
                ]);
            }
            args.extend(["--".into(), prompt]);
            let started = run(self.call(&dir).session(session).args(args)).await?;
            let run_id = started.stdout.trim().to_string();
            if started.failed() || run_id.is_empty() || !p.wait {
                return Ok(answer(started, |_| Some(json!({ "run": run_id }))));
            }
            self.wait_for(&dir, session, &run_id, timeout).await
        })
        .await
    }

    #[tool(
        description = "Wait for a Claude Code run (default: the session's latest) to end; returns its exit code and Claude Code's final result. A timeout leaves the run going (exit code 124).",
        annotations(read_only_hint = true)
    )]
    async fn wait_run(&self, Parameters(p): Parameters<params::WaitRun>) -> CallToolResult {
        settle(async move {
            let timeout = params::timeout("timeout_secs", p.timeout_secs).map_err(invalid)?;
            let dir = self.dir(p.repo.as_deref())?;
            let run_id = match &p.run {
                Some(r) => params::required("run", r).map_err(invalid)?,
                None => String::new(),
            };
            self.wait_for(&dir, p.session.as_deref(), &run_id, timeout)
                .await
        })
        .await
    }

    /// `wait [RUN]`, then the run's final result event from its transcript.
    async fn wait_for(
        &self,
        dir: &Path,
        session: Option<&str>,
        run_id: &str,
        timeout: Option<String>,
    ) -> ToolResult {
        let mut args = vec!["wait".to_string()];
        if !run_id.is_empty() {
            args.push(run_id.to_string());
        }
        if let Some(t) = timeout {
            args.extend(["--timeout".into(), t]);
        }
        let waited = run(self.call(dir).session(session).args(args)).await?;
        if waited.failed() {
            return Ok(answer(waited, |_| Some(json!({ "run": run_id }))));
        }
        let mut replay = vec!["attach".to_string(), "--json".into()];
        if !run_id.is_empty() {
            replay.push(run_id.to_string());
        }
        let transcript = run(self.call(dir).session(session).args(replay)).await?;
        let result = transcript
            .stdout
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .rfind(|v| v["type"] == "result");
        let run_id = run_id.to_string();
        Ok(answer(waited, move |_| {
            Some(json!({ "run": run_id, "result": result }))
        }))
    }

    #[tool(
        description = "Bring the sandbox's commits and uncommitted edits back as a local branch (default rclaude/<branch>); the checked-out branch and work tree are never touched. Returns the branch, its commit and what it holds."
    )]
    async fn pull(&self, Parameters(p): Parameters<params::Pull>) -> CallToolResult {
        settle(async move {
            let dir = self.dir(p.repo.as_deref())?;
            let mut args = vec!["pull".to_string(), "--json".into()];
            if let Some(b) = &p.branch {
                args.extend([
                    "--branch".into(),
                    params::required("branch", b).map_err(invalid)?,
                ]);
            }
            let out = run(self.call(&dir).session(p.session.as_deref()).args(args)).await?;
            Ok(answer(out, |o| json_stdout(o, "pulled")))
        })
        .await
    }

    #[tool(
        description = "Pause a session's sandbox (files kept, compute stops) or destroy it. `destroy` needs `confirm_destroy: true`; unpulled sandbox work is brought back as a branch first unless `discard_unpulled_work` is also true.",
        annotations(destructive_hint = true)
    )]
    async fn stop_session(&self, Parameters(p): Parameters<params::StopSession>) -> CallToolResult {
        settle(async move {
            let dir = self.dir(p.repo.as_deref())?;
            let args: Vec<&str> = match p.action {
                StopAction::Pause if p.confirm_destroy || p.discard_unpulled_work => {
                    return Err(invalid(
                        "`confirm_destroy` and `discard_unpulled_work` apply to `destroy` only".into(),
                    ));
                }
                StopAction::Pause => vec!["pause"],
                StopAction::Destroy if !p.confirm_destroy => {
                    return Err(invalid(
                        "`destroy` deletes the sandbox: pass `confirm_destroy: true` to do it (or use `pause`, which keeps its files)".into(),
                    ));
                }
                StopAction::Destroy if p.discard_unpulled_work => vec!["down", "--yes", "--discard"],
                StopAction::Destroy => vec!["down", "--yes"],
            };
            let out = run(self.call(&dir).session(p.session.as_deref()).args(args)).await?;
            Ok(answer(out, |_| None))
        })
        .await
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for Tools {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("rclaude", env!("CARGO_PKG_VERSION")))
            .with_instructions(
                "rclaude runs Claude Code and a repository's tasks in a persistent remote sandbox. \
                 start_session brings a repository's sandbox up (or starts one from a URL); exec \
                 and run_task run work there; claude_run starts Claude Code on a prompt; pull \
                 brings the sandbox's work back as a local git branch. `repo` defaults to the \
                 directory the server runs in; `session` picks one of several sessions.",
            )
    }
}

/// Run `call`; failing to start the binary at all is an error result.
async fn run(call: Invocation<'_>) -> Result<Outcome, CallToolResult> {
    call.run().await.map_err(|e| {
        CallToolResult::structured_error(json!({
            "error": { "kind": "io", "message": format!("cannot run rclaude: {e}"), "exit_code": 74, "remote": false }
        }))
    })
}

/// The stdout of a `--json` command parsed, under `key`.
fn json_stdout(out: &Outcome, key: &str) -> Option<Value> {
    let v: Value = serde_json::from_str(out.stdout.trim()).ok()?;
    Some(json!({ key: v, "stdout": "" }))
}

/// The call's result: the outcome, plus `extra` fields; `isError` when rclaude itself failed.
fn answer(out: Outcome, extra: impl FnOnce(&Outcome) -> Option<Value>) -> CallToolResult {
    let extra = extra(&out);
    let failed = out.failed();
    let mut value = serde_json::to_value(&out).unwrap_or_else(|_| json!({}));
    if let (Some(Value::Object(fields)), Value::Object(map)) = (extra, &mut value) {
        map.extend(fields);
    }
    if failed {
        CallToolResult::structured_error(value)
    } else {
        CallToolResult::structured(value)
    }
}
