//! [`Sandbox`] over Northflank's exec channel only: there is no agent in the container, so
//! commands and files both go through [`exec`](super::exec).
//!
//! - Commands run as `bash -c '<wrapper>'` (see [`shellwrap`]): the exec protocol has no cwd or
//!   env fields. Stdin goes up as payload messages and ends with `stdInEnd`. The wrapper's start
//!   marker gives the real pid, which [`Sandbox::kill_process`] and timeouts signal with `kill`
//!   through a second exec.
//! - Files: uploads stream the file as stdin of `cat > <tmp>` then `mv` into place (atomic);
//!   `write_files` sends one uncompressed tar of temp names and renames each after extraction;
//!   reads are `cat` with base64 output (byte-exact); stat/mkdir/rm/mv are small scripts.

use crate::provider::download::DownloadFile;
use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

use super::exec::{self, Collected, Input, Output, Target};
use crate::provider::shellwrap::{self, Detected, StartDetector, StdinSource};
use crate::provider::{
    Entry, EntryKind, ExecEvent, ExecRequest, ExecStream, ExitStatus, FileUpload, Progress,
    Sandbox, SandboxError,
};

/// After a kill, how long to wait for the command's completion.
const KILL_GRACE: Duration = Duration::from_secs(10);
/// Exit codes the file scripts use.
const MISSING: i32 = 66;
const IS_DIR: i32 = 65;
const EXISTS_AS_DIR: i32 = 3;
const EXISTS_NOT_DIR: i32 = 4;

/// `rclaude SIG PID`: signal PID and its descendants. The tree is frozen first (SIGSTOP, repeated
/// until no new child appears) so a process forking at that moment cannot leave a child behind
/// holding the output open; then the signal, then SIGCONT so a TERM is delivered.
const KILL_TREE: &str = r#"tree() {
  local want=$1 f line rest pp c
  for f in /proc/[0-9]*/stat; do
    { read -r line < "$f"; } 2>/dev/null || continue
    rest=${line##*) }
    pp=${rest#* }; pp=${pp%% *}
    if [ "$pp" = "$want" ]; then c=${line%% *}; echo "$c"; tree "$c"; fi
  done
}
kill -0 "$2" 2>/dev/null || exit 1
kill -STOP "$2" 2>/dev/null
seen=""
for i in 1 2 3 4 5 6 7 8; do
  now=$(tree "$2")
  [ -n "$now" ] && kill -STOP $now 2>/dev/null
  [ "$now" = "$seen" ] && break
  seen=$now
done
kill -s "$1" -- "$2" $seen 2>/dev/null
kill -CONT -- "$2" $seen 2>/dev/null
exit 0"#;

const NOT_KILLED: u8 = 0;
const TERMINATED: u8 = 1;
const KILLED: u8 = 2;

/// One Northflank service's container, reached through exec.
#[derive(Clone)]
pub struct NorthflankSandbox {
    target: Target,
    id: String,
    workdir: String,
    running: Arc<Mutex<HashMap<u32, Arc<AtomicU8>>>>,
}

impl std::fmt::Debug for NorthflankSandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NorthflankSandbox")
            .field("id", &self.id)
            .field("workdir", &self.workdir)
            .finish()
    }
}

fn check_path(path: &str) -> Result<(), SandboxError> {
    if !path.starts_with('/') || path.contains('\0') {
        return Err(SandboxError::InvalidArgument(format!(
            "{path:?} is not an absolute path"
        )));
    }
    Ok(())
}

/// `bash -c SCRIPT rclaude ARGS…`.
fn script(body: &str, args: &[&str]) -> Vec<String> {
    let mut v = vec![
        "bash".to_string(),
        "-c".into(),
        body.to_string(),
        "rclaude".into(),
    ];
    v.extend(args.iter().map(|a| a.to_string()));
    v
}

fn failed(what: &str, c: &Collected) -> SandboxError {
    SandboxError::Remote {
        code: c.code().to_string(),
        message: format!(
            "{what} failed (exit code {}){}",
            c.code(),
            if c.stderr.is_empty() {
                String::new()
            } else {
                format!(": {}", c.stderr_text())
            }
        ),
    }
}

impl NorthflankSandbox {
    pub fn new(target: Target, id: &str, workdir: &str) -> Self {
        NorthflankSandbox {
            target,
            id: id.to_string(),
            workdir: workdir.to_string(),
            running: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    async fn collect(&self, argv: Vec<String>, input: Input) -> Result<Collected, SandboxError> {
        exec::collect(&self.target, argv, input).await
    }

    /// Signal `pid` and every process below it (found through `/proc`, as images may lack
    /// `ps`/`pkill`); exit code 1 when `pid` does not exist.
    async fn signal(&self, pid: u32, force: bool) -> Result<Collected, SandboxError> {
        let sig = if force { "KILL" } else { "TERM" };
        let pid = pid.to_string();
        self.collect(script(KILL_TREE, &[sig, &pid]), Input::None)
            .await
    }

    /// Start `cat` on `path`; its stdout is the file's bytes.
    async fn open_read(&self, path: &str) -> Result<exec::Messages, SandboxError> {
        check_path(path)?;
        let argv = script(
            &format!(
                "[ -e \"$1\" ] || exit {MISSING}; [ -d \"$1\" ] && exit {IS_DIR}; exec cat -- \"$1\""
            ),
            &[path],
        );
        exec::start(&self.target, argv, Input::None).await
    }
}

/// The outcome of a read's completion.
fn read_result(path: &str, stderr: Vec<u8>, c: exec::Completion) -> Result<(), SandboxError> {
    match c.code {
        Some(0) => Ok(()),
        Some(MISSING) => Err(SandboxError::NotFound(path.to_string())),
        Some(IS_DIR) => Err(SandboxError::InvalidArgument(format!(
            "{path} is a directory"
        ))),
        _ => Err(failed(
            &format!("reading {path}"),
            &Collected {
                stdout: Vec::new(),
                stderr,
                completion: c,
            },
        )),
    }
}

fn no_completion() -> SandboxError {
    SandboxError::Protocol("the exec channel ended without a completion".into())
}

#[async_trait]
impl Sandbox for NorthflankSandbox {
    fn id(&self) -> &str {
        &self.id
    }

    fn workdir(&self) -> &str {
        &self.workdir
    }

    async fn exec(&self, req: ExecRequest) -> Result<ExecStream, SandboxError> {
        let source = if req.stdin.is_some() {
            StdinSource::Channel
        } else {
            StdinSource::Closed
        };
        let wrapper = shellwrap::wrap(&req, &self.workdir, source)?;
        let input = match req.stdin.clone() {
            Some(b) => Input::Bytes(b),
            None => Input::None,
        };
        let mut rx = exec::start(&self.target, wrapper.argv(), input).await?;
        let mut detector = StartDetector::new(&wrapper.nonce);
        let mut early_err = Vec::new();
        let (pid, first_out) = loop {
            match rx.recv().await {
                Some(Ok(Output::Stdout(b))) => {
                    if let Detected::Started { pid, output } = detector.push(&b)? {
                        break (pid, output);
                    }
                }
                Some(Ok(Output::Stderr(b))) => early_err.extend_from_slice(&b),
                Some(Ok(Output::Exit(c))) => {
                    let mut err = early_err;
                    if err.is_empty() {
                        err = detector.seen().to_vec();
                    }
                    return Err(shellwrap::not_started(&wrapper.cwd, &err, c.code));
                }
                Some(Err(e)) => return Err(e),
                None => {
                    return Err(SandboxError::Protocol(
                        "the exec channel ended before the command started".into(),
                    ));
                }
            }
        };
        let killed = Arc::new(AtomicU8::new(NOT_KILLED));
        self.running
            .lock()
            .expect("running map")
            .insert(pid, killed.clone());
        let (tx, out_rx) = tokio::sync::mpsc::channel::<Result<ExecEvent, SandboxError>>(64);
        let _ = tx.try_send(Ok(ExecEvent::Started { pid }));
        if !first_out.is_empty() {
            let _ = tx.try_send(Ok(ExecEvent::Stdout(Bytes::from(first_out))));
        }
        if !early_err.is_empty() {
            let _ = tx.try_send(Ok(ExecEvent::Stderr(Bytes::from(early_err))));
        }
        let sb = self.clone();
        let timeout = req.timeout;
        tokio::spawn(async move {
            let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
            let mut kill_deadline: Option<tokio::time::Instant> = None;
            let result: Option<Result<ExitStatus, SandboxError>> = loop {
                let timer = async {
                    match (deadline, kill_deadline) {
                        (_, Some(k)) => tokio::time::sleep_until(k).await,
                        (Some(d), None) => tokio::time::sleep_until(d).await,
                        (None, None) => std::future::pending().await,
                    }
                };
                tokio::select! {
                    msg = rx.recv() => {
                        let ev = match msg {
                            Some(Ok(Output::Stdout(b))) => ExecEvent::Stdout(b),
                            Some(Ok(Output::Stderr(b))) => ExecEvent::Stderr(b),
                            Some(Ok(Output::Exit(c))) => {
                                let how = killed.load(Ordering::SeqCst);
                                break Some(Ok(if how != NOT_KILLED {
                                    ExitStatus {
                                        code: -1,
                                        status: if how == KILLED { "signal: killed".into() } else { "signal: terminated".into() },
                                    }
                                } else {
                                    match c.code {
                                        Some(code) => ExitStatus { code, status: format!("exit status {code}") },
                                        None => ExitStatus {
                                            code: -1,
                                            status: c.message.clone().unwrap_or_else(|| format!("unknown ({})", c.status)),
                                        },
                                    }
                                }));
                            }
                            Some(Err(e)) => break Some(Err(e)),
                            None => break Some(Err(SandboxError::Protocol("the exec channel ended without a completion".into()))),
                        };
                        if tx.send(Ok(ev)).await.is_err() {
                            // Nobody listens any more: leave the command to its fate.
                            break None;
                        }
                    }
                    _ = timer => {
                        if kill_deadline.is_some() {
                            break Some(Ok(ExitStatus { code: -1, status: "signal: killed".into() }));
                        }
                        killed.store(KILLED, Ordering::SeqCst);
                        if let Err(e) = sb.signal(pid, true).await {
                            tracing::warn!(pid, "could not kill the timed-out command: {e}");
                        }
                        kill_deadline = Some(tokio::time::Instant::now() + KILL_GRACE);
                    }
                }
            };
            sb.running.lock().expect("running map").remove(&pid);
            if let Some(r) = result {
                let _ = tx.send(r.map(ExecEvent::Exited)).await;
            }
        });
        let mut out_rx = out_rx;
        Ok(Box::pin(futures::stream::poll_fn(move |cx| {
            out_rx.poll_recv(cx)
        })))
    }

    async fn kill_process(&self, pid: u32, force: bool) -> Result<(), SandboxError> {
        if let Some(flag) = self.running.lock().expect("running map").get(&pid) {
            flag.store(if force { KILLED } else { TERMINATED }, Ordering::SeqCst);
        }
        let c = self.signal(pid, force).await?;
        if c.code() == 0 {
            Ok(())
        } else {
            Err(SandboxError::NotFound(format!("process {pid}")))
        }
    }

    async fn write_files(&self, files: Vec<FileUpload>) -> Result<(), SandboxError> {
        if files.is_empty() {
            return Ok(());
        }
        let tag = uuid::Uuid::new_v4().simple().to_string();
        let mut builder = tar::Builder::new(Vec::new());
        let mut args: Vec<String> = Vec::new();
        let mtime = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        for f in &files {
            check_path(&f.path)?;
            let tmp = format!("{}.rclaude-{tag}", f.path.trim_end_matches('/'));
            let mut header = tar::Header::new_gnu();
            header.set_size(f.contents.len() as u64);
            header.set_mode(0o644);
            header.set_mtime(mtime);
            header.set_entry_type(tar::EntryType::Regular);
            builder
                .append_data(&mut header, tmp.trim_start_matches('/'), &f.contents[..])
                .map_err(|e| SandboxError::io(format!("packing {}", f.path), e))?;
            args.push(tmp);
            args.push(f.path.clone());
        }
        let archive = builder
            .into_inner()
            .map_err(|e| SandboxError::io("packing files", e))?;
        let body = "tar -xf - --no-same-owner -C / || exit 1\n\
                    while [ $# -gt 0 ]; do mv -f -- \"$1\" \"$2\" || exit 1; shift 2; done";
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let c = self
            .collect(script(body, &refs), Input::Bytes(Bytes::from(archive)))
            .await?;
        if c.code() == 0 {
            Ok(())
        } else {
            Err(failed("writing files", &c))
        }
    }

    async fn upload(
        &self,
        local: &Path,
        remote_path: &str,
        progress: Option<Progress>,
    ) -> Result<u64, SandboxError> {
        check_path(remote_path)?;
        let size = tokio::fs::metadata(local)
            .await
            .map_err(|e| SandboxError::io(format!("cannot stat {}", local.display()), e))?
            .len();
        let tmp = format!(
            "{}.rclaude-{}",
            remote_path.trim_end_matches('/'),
            uuid::Uuid::new_v4().simple()
        );
        let body = "mkdir -p -- \"$(dirname -- \"$1\")\" && cat > \"$2\" && mv -f -- \"$2\" \"$1\" || { rm -f -- \"$2\"; exit 1; }";
        let c = self
            .collect(
                script(body, &[remote_path, &tmp]),
                Input::File {
                    path: local.to_path_buf(),
                    progress,
                },
            )
            .await?;
        if c.code() == 0 {
            Ok(size)
        } else {
            Err(failed(&format!("uploading to {remote_path}"), &c))
        }
    }

    async fn download(
        &self,
        remote_path: &str,
        local: &Path,
        progress: Option<Progress>,
    ) -> Result<u64, SandboxError> {
        let mut out = DownloadFile::create(local, progress)?;
        let mut rx = self.open_read(remote_path).await?;
        let mut stderr = Vec::new();
        loop {
            match rx.recv().await.ok_or_else(no_completion)?? {
                Output::Stdout(chunk) => out.write(&chunk).await?,
                Output::Stderr(b) => stderr.extend_from_slice(&b),
                Output::Exit(c) => {
                    read_result(remote_path, stderr, c)?;
                    break;
                }
            }
        }
        out.finish().await
    }

    async fn read_file(&self, path: &str) -> Result<Bytes, SandboxError> {
        let mut rx = self.open_read(path).await?;
        let (mut out, mut stderr) = (Vec::new(), Vec::new());
        loop {
            match rx.recv().await.ok_or_else(no_completion)?? {
                Output::Stdout(chunk) => out.extend_from_slice(&chunk),
                Output::Stderr(b) => stderr.extend_from_slice(&b),
                Output::Exit(c) => {
                    read_result(path, stderr, c)?;
                    return Ok(Bytes::from(out));
                }
            }
        }
    }

    async fn remove(&self, path: &str) -> Result<(), SandboxError> {
        check_path(path)?;
        let c = self
            .collect(script("rm -rf -- \"$1\"", &[path]), Input::None)
            .await?;
        if c.code() == 0 {
            Ok(())
        } else {
            Err(failed(&format!("removing {path}"), &c))
        }
    }

    async fn stat(&self, path: &str) -> Result<Option<Entry>, SandboxError> {
        check_path(path)?;
        let body = format!(
            "[ -e \"$1\" ] || [ -L \"$1\" ] || exit {MISSING}\n\
             stat -c '%f' -- \"$1\" && stat -c '%s' -- \"$1\" && stat -c '%U' -- \"$1\" && \
             stat -c '%G' -- \"$1\" && stat -c '%Y' -- \"$1\" || exit 1\n\
             if [ -L \"$1\" ]; then readlink -- \"$1\"; fi"
        );
        let c = self.collect(script(&body, &[path]), Input::None).await?;
        match c.code() {
            0 => parse_stat(path, &c.stdout).map(Some),
            MISSING => Ok(None),
            _ => Err(failed(&format!("stat {path}"), &c)),
        }
    }

    async fn make_dir(&self, path: &str) -> Result<bool, SandboxError> {
        check_path(path)?;
        let body = format!(
            "[ -d \"$1\" ] && exit {EXISTS_AS_DIR}; [ -e \"$1\" ] && exit {EXISTS_NOT_DIR}; mkdir -p -- \"$1\""
        );
        let c = self.collect(script(&body, &[path]), Input::None).await?;
        match c.code() {
            0 => Ok(true),
            EXISTS_AS_DIR => Ok(false),
            EXISTS_NOT_DIR => Err(SandboxError::AlreadyExists(format!(
                "{path} exists and is not a directory"
            ))),
            _ => Err(failed(&format!("creating {path}"), &c)),
        }
    }

    async fn rename(&self, from: &str, to: &str) -> Result<(), SandboxError> {
        check_path(from)?;
        check_path(to)?;
        let body =
            format!("[ -e \"$1\" ] || [ -L \"$1\" ] || exit {MISSING}; mv -f -- \"$1\" \"$2\"");
        let c = self
            .collect(script(&body, &[from, to]), Input::None)
            .await?;
        match c.code() {
            0 => Ok(()),
            MISSING => Err(SandboxError::NotFound(from.to_string())),
            _ => Err(failed(&format!("moving {from} to {to}"), &c)),
        }
    }
}

/// The stat script's output: raw mode (hex), size, owner, group, mtime, [symlink target].
fn parse_stat(path: &str, out: &[u8]) -> Result<Entry, SandboxError> {
    let text = String::from_utf8_lossy(out);
    let lines: Vec<&str> = text.lines().collect();
    let bad = || SandboxError::Protocol(format!("unreadable stat output for {path}: {text:?}"));
    if lines.len() < 5 {
        return Err(bad());
    }
    let raw = u32::from_str_radix(lines[0].trim(), 16).map_err(|_| bad())?;
    let size = lines[1].trim().parse::<i64>().map_err(|_| bad())?;
    let mtime = lines[4].trim().parse::<i64>().map_err(|_| bad())?;
    let kind = raw & 0o170000;
    let entry_kind = match kind {
        0o040000 => EntryKind::Directory,
        0o120000 => EntryKind::Symlink,
        _ => EntryKind::File,
    };
    let modified = time::OffsetDateTime::from_unix_timestamp(mtime)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        });
    Ok(Entry {
        name: Path::new(path)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "/".into()),
        kind: entry_kind,
        path: path.to_string(),
        size: u64::try_from(size).unwrap_or(0),
        mode: raw & 0o7777,
        modified_time: modified,
        symlink_target: if entry_kind == EntryKind::Symlink {
            lines.get(5).map(|s| s.to_string())
        } else {
            None
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_output() {
        let e = parse_stat("/w/a.txt", b"81a4\n12\nroot\nroot\n1700000000\n").unwrap();
        assert_eq!(e.kind, EntryKind::File);
        assert_eq!(e.size, 12);
        assert_eq!(e.mode, 0o644);
        assert_eq!(e.name, "a.txt");
        assert_eq!(e.modified_time.as_deref(), Some("2023-11-14T22:13:20Z"));
        let d = parse_stat("/w", b"41ed\n4096\nu\ng\n0\n").unwrap();
        assert_eq!(d.kind, EntryKind::Directory);
        let l = parse_stat("/w/l", b"a1ff\n3\nu\ng\n0\n/etc\n").unwrap();
        assert!(l.is_symlink());
        assert_eq!(l.symlink_target.as_deref(), Some("/etc"));
        assert!(parse_stat("/w", b"zz\n").is_err());
    }
}
