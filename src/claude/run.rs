//! Headless Claude Code runs that outlive the CLI, and following them.
//!
//! Length: the wrapper script, the run's files and the follower that reads them are one on-disk
//! protocol; kept together so that a change to one side is seen with the other.
//!
//! A run is a `bash` wrapper started with tag `rclaude-claude-<id>`; it runs `claude -p` with
//! the prompt on stdin and appends its stream-json output to files in
//! `<workdir>/.git/rclaude/claude/`:
//!
//! | file            | written by | holds                                                  |
//! |-----------------|------------|--------------------------------------------------------|
//! | `current`       | CLI        | id of the latest run                                   |
//! | `session`       | CLI, run   | Claude Code's conversation id (for `--continue`)       |
//! | `<id>.json`     | CLI        | [`RunMeta`]: when, how, which conversation             |
//! | `<id>.prompt`   | CLI        | the prompt (fed to `claude` on stdin)                  |
//! | `<id>.jsonl`    | run        | the transcript (`--output-format stream-json`)         |
//! | `<id>.stderr`   | run        | Claude Code's stderr                                   |
//! | `<id>.pid`      | run        | pid of `claude` (to stop it with a signal)             |
//! | `<id>.exit`     | run        | exit code, written (atomically) once `claude` ended    |
//!
//! Nothing depends on a client stream: a [`Follower`] polls the transcript with range reads
//! from any machine, and stops at the exit marker. Secrets are only in the process environment.
//!
//! Length: the last ~70 lines are unit tests.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::StreamExt;
use serde::{Deserialize, Serialize};

use super::ClaudeError;
use crate::provider::{Command, ExecEvent, ExecRequest, Sandbox, SandboxError};
use crate::shell::quote;

/// Where runs keep their files, relative to the repository in the sandbox.
pub const RUNS_DIR: &str = ".git/rclaude/claude";

/// Prefix of the process tag of a run.
pub const TAG_PREFIX: &str = "rclaude-claude-";

/// Runs `"$@"` (claude and its arguments; `$1` = runs dir, `$2` = run id before the shift) with
/// output in the run's files; forwards SIGTERM/SIGINT to it; records the conversation id from the
/// `init` event and the exit code; then, when `RCLAUDE_NOTIFY_WEBHOOK` is set, posts one JSON
/// message (`{"text": …}`, what Slack-compatible incoming webhooks take) saying the run ended.
/// The URL is taken out of the environment before Claude Code starts, so it does not inherit it.
const WRAPPER: &str = r#"d=$1; id=$2; shift 2
notify=${RCLAUDE_NOTIFY_WEBHOOK:-}; unset RCLAUDE_NOTIFY_WEBHOOK
trap '' HUP
"$@" <"$d/$id.prompt" >>"$d/$id.jsonl" 2>>"$d/$id.stderr" &
child=$!
printf '%s\n' "$child" >"$d/$id.pid"
trap 'kill -TERM "$child" 2>/dev/null' TERM INT
wait "$child"; code=$?
while kill -0 "$child" 2>/dev/null; do wait "$child"; code=$?; done
sid=$(grep -m1 '"subtype":"init"' "$d/$id.jsonl" 2>/dev/null | sed -n 's/.*"session_id":"\([0-9A-Za-z-]*\)".*/\1/p')
if [ -n "$sid" ]; then printf '%s\n' "$sid" >"$d/session.tmp" && mv -f "$d/session.tmp" "$d/session"; fi
printf '%s\n' "$code" >"$d/$id.exit.tmp" && mv -f "$d/$id.exit.tmp" "$d/$id.exit"
if [ -n "$notify" ]; then
  if [ "$code" = 0 ]; then how="finished"; else how="ended with exit code $code"; fi
  text=$(printf 'rclaude: Claude Code run %s in %s (session %s) %s' "$id" "${RCLAUDE_REPO:-?}" "${RCLAUDE_SESSION:-?}" "$how" | sed 's/\\/\\\\/g; s/"/\\"/g')
  body=$(printf '{"text":"%s","run":"%s","exit_code":%s}' "$text" "$id" "$code")
  if command -v curl >/dev/null 2>&1; then
    curl -fsS -m 10 -X POST -H 'Content-Type: application/json' --data "$body" "$notify" >/dev/null 2>>"$d/$id.stderr" || echo "rclaude: the webhook did not accept the notification" >>"$d/$id.stderr"
  elif command -v wget >/dev/null 2>&1; then
    wget -q -T 10 -O /dev/null --header 'Content-Type: application/json' --post-data "$body" "$notify" 2>>"$d/$id.stderr" || echo "rclaude: the webhook did not accept the notification" >>"$d/$id.stderr"
  else
    echo "rclaude: no curl or wget in the sandbox; the webhook was not notified" >>"$d/$id.stderr"
  fi
fi
exit "$code""#;

/// How often a follower checks that a run without an exit marker is still alive.
const LIVENESS_EVERY: u32 = 8;

/// The runs directory of a repository in the sandbox.
pub fn runs_dir(workdir: &str) -> String {
    format!("{}/{RUNS_DIR}", workdir.trim_end_matches('/'))
}

/// A run's id: UTC start time plus a random suffix (`20261124T101500Z-1a2b`), sortable.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RunId(String);

impl RunId {
    /// A new id for a run starting now.
    pub fn generate() -> RunId {
        let now = time::OffsetDateTime::now_utc();
        let fmt = time::macros::format_description!("[year][month][day]T[hour][minute][second]Z");
        let stamp = now.format(&fmt).unwrap_or_else(|_| "run".into());
        let rand = uuid::Uuid::new_v4().simple().to_string();
        RunId(format!("{stamp}-{}", &rand[..4]))
    }

    /// Validate an id given by a user or read from the sandbox.
    pub fn parse(s: &str) -> Result<RunId, ClaudeError> {
        let s = s.trim();
        let ok = !s.is_empty()
            && s.len() <= 64
            && !s.starts_with('-')
            && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
        if ok {
            Ok(RunId(s.to_string()))
        } else {
            Err(ClaudeError::InvalidRunId(s.to_string()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The process tag of this run.
    pub fn tag(&self) -> String {
        format!("{TAG_PREFIX}{}", self.0)
    }
}

impl std::fmt::Display for RunId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Paths of one run's files in the sandbox.
#[derive(Debug, Clone)]
pub struct RunFiles {
    pub dir: String,
    pub id: RunId,
}

impl RunFiles {
    pub fn new(workdir: &str, id: RunId) -> RunFiles {
        RunFiles {
            dir: runs_dir(workdir),
            id,
        }
    }
    fn file(&self, ext: &str) -> String {
        format!("{}/{}.{ext}", self.dir, self.id)
    }
    /// The stream-json transcript.
    pub fn transcript(&self) -> String {
        self.file("jsonl")
    }
    pub fn stderr(&self) -> String {
        self.file("stderr")
    }
    pub fn exit(&self) -> String {
        self.file("exit")
    }
    pub fn meta(&self) -> String {
        self.file("json")
    }
    pub fn prompt(&self) -> String {
        self.file("prompt")
    }
    pub fn pid(&self) -> String {
        self.file("pid")
    }
}

/// Which conversation a run belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Conversation {
    /// A new conversation with this id (`--session-id`).
    New(String),
    /// Continue this one (`--resume`).
    Resume(String),
}

impl Conversation {
    /// A new conversation with a fresh id.
    pub fn fresh() -> Conversation {
        Conversation::New(uuid::Uuid::new_v4().to_string())
    }

    pub fn id(&self) -> &str {
        match self {
            Conversation::New(s) | Conversation::Resume(s) => s,
        }
    }

    fn args(&self) -> [String; 2] {
        match self {
            Conversation::New(s) => ["--session-id".into(), s.clone()],
            Conversation::Resume(s) => ["--resume".into(), s.clone()],
        }
    }
}

/// How Claude Code is invoked (both headless and interactive).
#[derive(Debug, Clone)]
pub struct ClaudeArgs {
    pub permission_mode: String,
    pub model: Option<String>,
    pub conversation: Conversation,
    /// `[claude] args`.
    pub extra: Vec<String>,
}

impl ClaudeArgs {
    fn common(&self) -> Vec<String> {
        let mut v = vec![
            "--permission-mode".to_string(),
            self.permission_mode.clone(),
        ];
        v.extend(self.conversation.args());
        if let Some(m) = &self.model {
            v.push("--model".into());
            v.push(m.clone());
        }
        v.extend(self.extra.iter().cloned());
        v
    }

    /// Arguments of a headless run (the prompt comes on stdin).
    pub fn headless(&self) -> Vec<String> {
        let mut v: Vec<String> = ["-p", "--output-format", "stream-json", "--verbose"]
            .map(String::from)
            .to_vec();
        v.extend(self.common());
        v
    }

    /// Arguments of an interactive session.
    pub fn interactive(&self) -> Vec<String> {
        self.common()
    }

    /// Environment the permission mode needs: `bypassPermissions` is refused as root unless
    /// `IS_SANDBOX=1` says the machine is a sandbox (which it is).
    pub fn env(&self) -> BTreeMap<String, String> {
        let mut env = BTreeMap::new();
        if self.permission_mode == "bypassPermissions" {
            env.insert("IS_SANDBOX".into(), "1".into());
        }
        env
    }
}

/// What `<id>.json` records about a run (no secrets).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RunMeta {
    pub id: String,
    /// RFC 3339.
    pub started_at: String,
    /// Claude Code's conversation id.
    pub session_id: String,
    /// The run continued an earlier conversation.
    pub resumed: bool,
    pub permission_mode: String,
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub claude_version: Option<String>,
    /// The first line of the prompt (the whole prompt is in `<id>.prompt`).
    pub title: String,
}

/// A headless run to start.
#[derive(Debug, Clone)]
pub struct Launch {
    /// Absolute path of `claude` in the sandbox.
    pub claude: String,
    pub claude_version: Option<String>,
    pub prompt: String,
    pub args: ClaudeArgs,
    /// The complete environment (credentials included; passed to the process only).
    pub env: BTreeMap<String, String>,
    /// Where Claude Code works (the repository in the sandbox).
    pub workdir: String,
}

/// A run that was just started.
#[derive(Debug, Clone)]
pub struct Started {
    pub files: RunFiles,
    /// Pid of the wrapper process.
    pub pid: u32,
    pub meta: RunMeta,
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunEnd {
    /// `claude` exited with this code.
    Exited(i32),
    /// The process is gone without an exit code (the sandbox was paused or restarted, or the
    /// run was killed).
    Lost,
}

/// Start `launch` in the sandbox and return once the process runs. The run is independent of
/// this call: it keeps going when the caller exits.
pub async fn start(sandbox: &dyn Sandbox, launch: Launch) -> Result<Started, ClaudeError> {
    let id = RunId::generate();
    let files = RunFiles::new(&launch.workdir, id.clone());
    sandbox.make_dir(&files.dir).await?;
    let meta = RunMeta {
        id: id.to_string(),
        started_at: crate::time::now_rfc3339(),
        session_id: launch.args.conversation.id().to_string(),
        resumed: matches!(launch.args.conversation, Conversation::Resume(_)),
        permission_mode: launch.args.permission_mode.clone(),
        model: launch.args.model.clone(),
        claude_version: launch.claude_version.clone(),
        title: launch
            .prompt
            .trim()
            .lines()
            .next()
            .unwrap_or("")
            .chars()
            .take(200)
            .collect(),
    };
    let meta_json = serde_json::to_vec_pretty(&meta).expect("run metadata serializes");
    let upload = |path: String, contents: Vec<u8>| crate::provider::FileUpload {
        path,
        contents: contents.into(),
    };
    sandbox
        .write_files(vec![
            upload(files.prompt(), launch.prompt.clone().into_bytes()),
            upload(files.meta(), meta_json),
            upload(files.transcript(), Vec::new()),
            upload(
                format!("{}/session", files.dir),
                format!("{}\n", meta.session_id).into_bytes(),
            ),
            upload(
                format!("{}/current", files.dir),
                format!("{id}\n").into_bytes(),
            ),
        ])
        .await?;

    let mut argv = vec![files.dir.clone(), id.to_string(), launch.claude.clone()];
    argv.extend(launch.args.headless());
    let line = format!(
        "set -- {}\n{WRAPPER}",
        argv.iter().map(|a| quote(a)).collect::<Vec<_>>().join(" ")
    );
    let mut env = launch.env.clone();
    env.extend(launch.args.env());
    env.insert("RCLAUDE_CLAUDE_RUN".into(), id.to_string());
    let mut req = ExecRequest::shell(line)
        .cwd(launch.workdir.clone())
        .env(env);
    req.tag = Some(id.tag());
    let started = async {
        let mut events = sandbox.exec(req).await?;
        match events.next().await {
            Some(Ok(ExecEvent::Started { pid })) => Ok(pid),
            Some(Err(e)) => Err(e),
            _ => Err(SandboxError::Protocol(
                "the run's process stream did not start with its pid".into(),
            )),
        }
        // Dropping the stream detaches; the process keeps running.
    };
    match started.await {
        Ok(pid) => Ok(Started { files, pid, meta }),
        Err(e) => {
            // Leave an ended run behind rather than one that looks alive forever.
            let _ = sandbox
                .write_files(vec![
                    upload(
                        files.stderr(),
                        format!("rclaude: cannot start the run: {e}\n").into_bytes(),
                    ),
                    upload(files.exit(), b"127\n".to_vec()),
                ])
                .await;
            Err(e.into())
        }
    }
}

async fn read_opt(sandbox: &dyn Sandbox, path: &str) -> Result<Option<String>, SandboxError> {
    match sandbox.read_file(path).await {
        Ok(b) => Ok(Some(String::from_utf8_lossy(&b).trim().to_string())),
        Err(SandboxError::NotFound(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The latest run in the sandbox, if any.
pub async fn current(sandbox: &dyn Sandbox, workdir: &str) -> Result<Option<RunId>, ClaudeError> {
    match read_opt(sandbox, &format!("{}/current", runs_dir(workdir))).await? {
        Some(s) if !s.is_empty() => Ok(Some(RunId::parse(&s)?)),
        _ => Ok(None),
    }
}

/// The conversation the latest run belongs to (what `--continue` resumes).
pub async fn conversation(
    sandbox: &dyn Sandbox,
    workdir: &str,
) -> Result<Option<String>, ClaudeError> {
    Ok(read_opt(sandbox, &format!("{}/session", runs_dir(workdir)))
        .await?
        .filter(|s| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')))
}

/// A run's metadata, `None` when the run does not exist.
pub async fn meta(sandbox: &dyn Sandbox, files: &RunFiles) -> Result<Option<RunMeta>, ClaudeError> {
    let Some(text) = read_opt(sandbox, &files.meta()).await? else {
        return Ok(None);
    };
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| ClaudeError::Corrupt {
            path: files.meta(),
            reason: e.to_string(),
        })
}

/// The exit code once the run ended.
pub async fn exit_code(
    sandbox: &dyn Sandbox,
    files: &RunFiles,
) -> Result<Option<i32>, ClaudeError> {
    match read_opt(sandbox, &files.exit()).await? {
        None => Ok(None),
        Some(s) => s.parse().map(Some).map_err(|_| ClaudeError::Corrupt {
            path: files.exit(),
            reason: format!("{s:?} is not an exit code"),
        }),
    }
}

/// Pid of the run's process while it runs; `Ok(None)` when it is not running, `Err` when the
/// sandbox cannot list processes.
pub async fn running_pid(sandbox: &dyn Sandbox, id: &RunId) -> Result<Option<u32>, SandboxError> {
    let tag = id.tag();
    Ok(sandbox
        .processes()
        .await?
        .into_iter()
        .find(|p| p.tag.as_deref() == Some(tag.as_str()))
        .map(|p| p.pid))
}

/// Whether the run is still going: no exit marker and (where the sandbox can tell) its process
/// is alive.
pub async fn is_running(sandbox: &dyn Sandbox, files: &RunFiles) -> Result<bool, ClaudeError> {
    if exit_code(sandbox, files).await?.is_some() {
        return Ok(false);
    }
    match running_pid(sandbox, &files.id).await {
        Ok(pid) => Ok(pid.is_some()),
        Err(SandboxError::Unsupported(_)) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Ask Claude Code to stop (SIGTERM; SIGKILL with `force`) by signalling `claude` itself from
/// inside the sandbox, so the wrapper still records how it ended. `false` when it was not
/// running.
pub async fn stop(
    sandbox: &dyn Sandbox,
    files: &RunFiles,
    force: bool,
) -> Result<bool, ClaudeError> {
    let sig = if force { "KILL" } else { "TERM" };
    let line = format!(
        "p=$(cat {} 2>/dev/null) && [ -n \"$p\" ] && kill -{sig} \"$p\" 2>/dev/null",
        quote(&files.pid())
    );
    let out = crate::provider::run(sandbox, ExecRequest::shell(line)).await?;
    Ok(out.status.success())
}

/// What one [`Follower::poll`] found.
#[derive(Debug, Default)]
pub struct Poll {
    /// Complete new transcript lines.
    pub lines: Vec<String>,
    /// Set once the run ended and everything was read.
    pub end: Option<RunEnd>,
}

/// Reads a run's transcript from the start and keeps up with it until the run ends.
pub struct Follower<'a> {
    sandbox: &'a dyn Sandbox,
    files: RunFiles,
    offset: u64,
    partial: Vec<u8>,
    idle: u32,
}

impl<'a> Follower<'a> {
    pub fn new(sandbox: &'a dyn Sandbox, files: RunFiles) -> Self {
        Follower {
            sandbox,
            files,
            offset: 0,
            partial: Vec::new(),
            idle: 0,
        }
    }

    /// How long to wait before the next poll: short while output flows, longer when idle.
    pub fn delay(&self) -> Duration {
        match self.idle {
            0 => Duration::from_millis(50),
            1..=20 => Duration::from_millis(200),
            _ => Duration::from_millis(500),
        }
    }

    async fn read_new(&mut self, lines: &mut Vec<String>) -> Result<bool, ClaudeError> {
        let chunk = match self
            .sandbox
            .read_file_from(&self.files.transcript(), self.offset)
            .await
        {
            Ok(b) => b,
            Err(SandboxError::NotFound(_)) => return Ok(false),
            Err(e) => return Err(e.into()),
        };
        if chunk.is_empty() {
            return Ok(false);
        }
        self.offset += chunk.len() as u64;
        self.partial.extend_from_slice(&chunk);
        while let Some(i) = self.partial.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.partial.drain(..=i).collect();
            lines.push(String::from_utf8_lossy(&line[..i]).into_owned());
        }
        Ok(true)
    }

    fn flush_partial(&mut self, lines: &mut Vec<String>) {
        if !self.partial.is_empty() {
            lines.push(String::from_utf8_lossy(&self.partial).into_owned());
            self.partial.clear();
        }
    }

    /// Read what is new; report the end once the run ended and its transcript is read.
    pub async fn poll(&mut self) -> Result<Poll, ClaudeError> {
        let mut p = Poll::default();
        if self.read_new(&mut p.lines).await? {
            self.idle = 0;
            return Ok(p);
        }
        self.idle += 1;
        let mut code = exit_code(self.sandbox, &self.files).await?;
        if code.is_none() && self.idle.is_multiple_of(LIVENESS_EVERY) {
            match running_pid(self.sandbox, &self.files.id).await {
                Ok(Some(_)) | Err(SandboxError::Unsupported(_)) => {}
                Ok(None) => {
                    // Gone: it may have written its exit code just now.
                    code = exit_code(self.sandbox, &self.files).await?;
                    if code.is_none() {
                        self.read_new(&mut p.lines).await?;
                        self.flush_partial(&mut p.lines);
                        p.end = Some(RunEnd::Lost);
                        return Ok(p);
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
        if let Some(c) = code {
            // The output was complete before the marker was written: one last read.
            self.read_new(&mut p.lines).await?;
            self.flush_partial(&mut p.lines);
            p.end = Some(RunEnd::Exited(c));
        }
        Ok(p)
    }
}

/// The shell line that runs `claude` with `args` in a terminal (login-shell environment).
pub fn interactive_command(claude: &str, args: &[String]) -> Command {
    let mut line = format!("exec {}", quote(claude));
    for a in args {
        line.push(' ');
        line.push_str(&quote(a));
    }
    Command::Shell(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_ids_are_generated_valid_and_checked() {
        let id = RunId::generate();
        assert_eq!(RunId::parse(id.as_str()).unwrap(), id);
        assert!(id.tag().starts_with(TAG_PREFIX));
        for bad in ["", "../x", "a b", "-x", "a/b"] {
            assert!(RunId::parse(bad).is_err(), "{bad}");
        }
        let f = RunFiles::new("/w/", RunId::parse("r1").unwrap());
        assert_eq!(f.transcript(), "/w/.git/rclaude/claude/r1.jsonl");
        assert_eq!(f.exit(), "/w/.git/rclaude/claude/r1.exit");
    }

    #[test]
    fn arguments_follow_the_conversation_and_mode() {
        let a = ClaudeArgs {
            permission_mode: "bypassPermissions".into(),
            model: Some("m".into()),
            conversation: Conversation::Resume("s1".into()),
            extra: vec!["--max-turns".into(), "3".into()],
        };
        assert_eq!(
            a.headless(),
            [
                "-p",
                "--output-format",
                "stream-json",
                "--verbose",
                "--permission-mode",
                "bypassPermissions",
                "--resume",
                "s1",
                "--model",
                "m",
                "--max-turns",
                "3"
            ]
        );
        assert_eq!(a.env().get("IS_SANDBOX").map(String::as_str), Some("1"));
        let b = ClaudeArgs {
            permission_mode: "acceptEdits".into(),
            model: None,
            conversation: Conversation::New("n1".into()),
            extra: vec![],
        };
        assert_eq!(
            b.interactive(),
            ["--permission-mode", "acceptEdits", "--session-id", "n1"]
        );
        assert!(b.env().is_empty());
        let Command::Shell(line) = interactive_command("/h/claude", &b.interactive()) else {
            panic!()
        };
        assert_eq!(
            line,
            "exec /h/claude --permission-mode acceptEdits --session-id n1"
        );
        // Words a shell would split or expand are quoted (one quoting rule: crate::shell).
        let Command::Shell(line) = interactive_command("/h/my claude", &["it's".into()]) else {
            panic!()
        };
        assert_eq!(line, r"exec '/h/my claude' 'it'\''s'");
    }
}
