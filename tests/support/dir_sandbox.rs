//! `DirSandbox`: a [`Sandbox`] backed by a local directory. Processes are real (`bash -c` via
//! tokio::process, each in its own process group), files are local paths; writes are atomic
//! (temporary name + rename) like the agent's. Faults can be injected for interruption tests.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use rclaude::agent::apply::ApplyJob;
use rclaude::agent::export::ExportJob;
use rclaude::agent::helper::{HELPER, HELPER_DECLINED, Job};
use rclaude::agent::query::QueryJob;
use rclaude::provider::{
    ApplySyncRequest, Command, Entry, EntryKind, ExecEvent, ExecRequest, ExecStream, ExitStatus,
    FileUpload, Progress, QuerySyncRequest, Sandbox, SandboxError, WorktreeExportRequest,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Notify;

/// Faults for the next transfer.
#[derive(Default)]
pub struct Faults {
    /// The next upload fails after writing this many bytes (its temporary file is left behind,
    /// as when the agent dies mid-upload).
    pub fail_upload_after: Option<u64>,
    /// The next upload stops halfway, notifies, and never finishes (to abort the caller).
    pub stall_upload: Option<Arc<Notify>>,
    /// The next upload arrives with the byte at this offset flipped.
    pub corrupt_upload_at: Option<u64>,
    /// The next upload arrives truncated to this many bytes.
    pub truncate_upload_to: Option<u64>,
    /// The next download arrives with the byte at this offset flipped.
    pub corrupt_download_at: Option<u64>,
}

pub struct DirSandbox {
    id: String,
    workdir: String,
    env: Mutex<BTreeMap<String, String>>,
    pub faults: Mutex<Faults>,
    /// Completed uploads.
    pub uploads: AtomicUsize,
    /// Environment of every exec, in order (steps are told apart by their variables).
    pub exec_log: Mutex<Vec<BTreeMap<String, String>>>,
    /// The process id of the last step helper started.
    pub helper_pid: std::sync::atomic::AtomicU32,
    /// Run the step helper even under `DIRSANDBOX_STEPS=script` (tests of the helper itself).
    pub always_helper: std::sync::atomic::AtomicBool,
}

impl DirSandbox {
    pub fn new(workdir: &Path) -> Self {
        DirSandbox {
            id: format!("dir-{}", std::process::id()),
            workdir: workdir.to_str().expect("utf-8 workdir").to_string(),
            env: Mutex::new(BTreeMap::new()),
            faults: Mutex::new(Faults::default()),
            uploads: AtomicUsize::new(0),
            exec_log: Mutex::new(Vec::new()),
            helper_pid: Default::default(),
            always_helper: Default::default(),
        }
    }

    /// Add an environment variable to every process started from now on.
    pub fn set_env(&self, key: &str, value: &str) {
        self.env.lock().unwrap().insert(key.into(), value.into());
    }

    pub fn remove_env(&self, key: &str) {
        self.env.lock().unwrap().remove(key);
    }

    /// How many execs had an environment variable `key` (e.g. `RC_SNAPSHOT` = apply steps).
    pub fn execs_with(&self, key: &str) -> usize {
        self.exec_log
            .lock()
            .unwrap()
            .iter()
            .filter(|e| e.contains_key(key))
            .count()
    }

    /// The sandbox's `HOME`: set for its processes, or this process's.
    fn home(&self) -> PathBuf {
        self.env
            .lock()
            .unwrap()
            .get("HOME")
            .cloned()
            .or_else(|| std::env::var("HOME").ok())
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/nonexistent"))
    }

    /// A sync step done by rclaude's step helper (`rclaude __rclaude-sandbox-step`, as the
    /// agent runs it), logged as an exec with `vars` (how steps are told apart); `None` when it
    /// declines. `DIRSANDBOX_STEPS=script` leaves every step to its script, as does a sandbox
    /// whose git is the kill shim of the interruption tests (`RC_TEST_KILL_AT`: they interrupt
    /// the script at its git calls).
    async fn step(
        &self,
        job: &Job,
        vars: BTreeMap<String, String>,
    ) -> Result<Option<String>, SandboxError> {
        let scripts = std::env::var("DIRSANDBOX_STEPS").as_deref() == Ok("script")
            && !self.always_helper.load(Ordering::SeqCst);
        if scripts || self.env.lock().unwrap().contains_key("RC_TEST_KILL_AT") {
            return Ok(None);
        }
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_rclaude"))
            .arg(HELPER)
            .env("HOME", self.home())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .map_err(|e| io("starting the step helper", e))?;
        self.helper_pid
            .store(child.id().unwrap_or(0), Ordering::SeqCst);
        let input = serde_json::to_vec(job).expect("a job serializes");
        let mut stdin = child.stdin.take().expect("piped stdin");
        stdin
            .write_all(&input)
            .await
            .map_err(|e| io("writing to the step helper", e))?;
        drop(stdin);
        let out = child
            .wait_with_output()
            .await
            .map_err(|e| io("waiting for the step helper", e))?;
        if out.status.code() == Some(HELPER_DECLINED) {
            eprintln!(
                "the step helper declined: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
            return Ok(None);
        }
        if !out.status.success() {
            return Err(SandboxError::Protocol(format!(
                "the step helper failed: {}",
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        let mut logged = self.env.lock().unwrap().clone();
        logged.extend(vars);
        logged.insert("RC_NATIVE".into(), "1".into());
        self.exec_log.lock().unwrap().push(logged);
        Ok(Some(String::from_utf8_lossy(&out.stdout).into_owned()))
    }

    fn faults<T>(&self, f: impl FnOnce(&mut Faults) -> T) -> T {
        f(&mut self.faults.lock().unwrap())
    }
}

fn io(context: &str, e: std::io::Error) -> SandboxError {
    SandboxError::io(context.to_string(), e)
}

fn tmp_sibling(path: &Path) -> PathBuf {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    path.with_file_name(format!(".{name}.tmp-{}", uuid::Uuid::new_v4()))
}

fn exit_status(s: std::process::ExitStatus) -> ExitStatus {
    match s.code() {
        Some(code) => ExitStatus {
            code,
            status: format!("exit status {code}"),
        },
        None => {
            let sig = s.signal().unwrap_or(0);
            let name = match sig {
                9 => "killed".to_string(),
                15 => "terminated".to_string(),
                2 => "interrupt".to_string(),
                1 => "hangup".to_string(),
                n => format!("signal {n}"),
            };
            ExitStatus {
                code: -1,
                status: format!("signal: {name}"),
            }
        }
    }
}

#[async_trait]
impl Sandbox for DirSandbox {
    fn id(&self) -> &str {
        &self.id
    }

    fn workdir(&self) -> &str {
        &self.workdir
    }

    async fn export_worktree(
        &self,
        req: &WorktreeExportRequest,
    ) -> Result<Option<String>, SandboxError> {
        let job = Job::Export(ExportJob {
            work: PathBuf::from(&req.workdir),
            out: PathBuf::from(&req.out),
            out_name: req.out.clone(),
            bases: req.bases.clone(),
            base_refs: req.base_refs.clone(),
            home: self.home(),
            changed: None,
        });
        self.step(
            &job,
            BTreeMap::from([("RC_MODE".into(), "worktree".into())]),
        )
        .await
    }

    async fn apply_sync(&self, req: &ApplySyncRequest) -> Result<Option<String>, SandboxError> {
        let job = Job::Apply(ApplyJob {
            work: PathBuf::from(&req.workdir),
            bundle: req.bundle.as_ref().map(PathBuf::from),
            home: self.home(),
            changed: None,
            request: req.clone(),
        });
        self.step(
            &job,
            BTreeMap::from([("RC_SNAPSHOT".into(), req.snapshot.clone())]),
        )
        .await
    }

    async fn query_sync(&self, req: &QuerySyncRequest) -> Result<Option<String>, SandboxError> {
        if !Path::new(&req.workdir).is_dir() {
            return Ok(None);
        }
        let job = Job::Query(QueryJob {
            work: PathBuf::from(&req.workdir),
            home: self.home(),
        });
        self.step(&job, BTreeMap::from([("RC_QUERY".into(), "1".into())]))
            .await
    }

    async fn exec(&self, req: ExecRequest) -> Result<ExecStream, SandboxError> {
        let mut cmd = match &req.command {
            Command::Shell(s) => {
                // DIRSANDBOX_SHELL=dash checks that the step scripts are plain POSIX sh.
                let shell = std::env::var("DIRSANDBOX_SHELL").unwrap_or_else(|_| "bash".into());
                let mut c = tokio::process::Command::new(shell);
                c.arg("-c").arg(s);
                c
            }
            Command::Argv(a) => {
                let (prog, args) = a
                    .split_first()
                    .ok_or_else(|| SandboxError::InvalidArgument("empty argv".into()))?;
                let mut c = tokio::process::Command::new(prog);
                c.args(args);
                c
            }
        };
        let cwd = req.cwd.clone().unwrap_or_else(|| self.workdir.clone());
        cmd.current_dir(&cwd);
        let env = self.env.lock().unwrap().clone();
        let mut logged = env.clone();
        logged.extend(req.env.clone());
        self.exec_log.lock().unwrap().push(logged);
        cmd.envs(env).envs(&req.env);
        cmd.stdin(if req.stdin.is_some() {
            std::process::Stdio::piped()
        } else {
            std::process::Stdio::null()
        });
        cmd.stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        cmd.process_group(0);
        cmd.kill_on_drop(false);
        let mut child = cmd
            .spawn()
            .map_err(|e| io(&format!("starting a process in {cwd}"), e))?;
        let pid = child.id().unwrap_or(0);
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<Result<ExecEvent, SandboxError>>();
        let _ = tx.send(Ok(ExecEvent::Started { pid }));
        if let Some(data) = req.stdin.clone() {
            let mut stdin = child.stdin.take().expect("piped stdin");
            tokio::spawn(async move {
                let _ = stdin.write_all(&data).await;
            });
        }
        let mut out = child.stdout.take().expect("piped stdout");
        let mut err = child.stderr.take().expect("piped stderr");
        let timeout = req.timeout;
        tokio::spawn(async move {
            let t1 = tx.clone();
            let r1 = tokio::spawn(async move {
                let mut buf = vec![0u8; 64 * 1024];
                while let Ok(n) = out.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    let _ = t1.send(Ok(ExecEvent::Stdout(Bytes::copy_from_slice(&buf[..n]))));
                }
            });
            let t2 = tx.clone();
            let r2 = tokio::spawn(async move {
                let mut buf = vec![0u8; 64 * 1024];
                while let Ok(n) = err.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    let _ = t2.send(Ok(ExecEvent::Stderr(Bytes::copy_from_slice(&buf[..n]))));
                }
            });
            let status = match timeout {
                Some(t) => match tokio::time::timeout(t, child.wait()).await {
                    Ok(s) => s,
                    Err(_) => {
                        unsafe { libc::kill(-(pid as i32), libc::SIGKILL) };
                        child.wait().await
                    }
                },
                None => child.wait().await,
            };
            let _ = r1.await;
            let _ = r2.await;
            let ev = match status {
                Ok(s) => Ok(ExecEvent::Exited(exit_status(s))),
                Err(e) => Err(io("waiting for a process", e)),
            };
            let _ = tx.send(ev);
        });
        Ok(Box::pin(futures::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|ev| (ev, rx))
        })))
    }

    async fn kill_process(&self, pid: u32, force: bool) -> Result<(), SandboxError> {
        let sig = if force { libc::SIGKILL } else { libc::SIGTERM };
        if unsafe { libc::kill(-(pid as i32), sig) } != 0 {
            return Err(SandboxError::NotFound(format!("process {pid}")));
        }
        Ok(())
    }

    async fn write_files(&self, files: Vec<FileUpload>) -> Result<(), SandboxError> {
        for f in files {
            let path = PathBuf::from(&f.path);
            if let Some(parent) = path.parent() {
                tokio::fs::create_dir_all(parent)
                    .await
                    .map_err(|e| io("creating directories", e))?;
            }
            let tmp = tmp_sibling(&path);
            tokio::fs::write(&tmp, &f.contents)
                .await
                .map_err(|e| io(&format!("writing {}", f.path), e))?;
            tokio::fs::rename(&tmp, &path)
                .await
                .map_err(|e| io(&format!("renaming into {}", f.path), e))?;
        }
        Ok(())
    }

    async fn upload(
        &self,
        local: &Path,
        remote_path: &str,
        progress: Option<Progress>,
    ) -> Result<u64, SandboxError> {
        let (fail_after, stall, corrupt, truncate) = self.faults(|f| {
            (
                f.fail_upload_after.take(),
                f.stall_upload.take(),
                f.corrupt_upload_at.take(),
                f.truncate_upload_to.take(),
            )
        });
        let dest = PathBuf::from(remote_path);
        if let Some(parent) = dest.parent() {
            tokio::fs::create_dir_all(parent)
                .await
                .map_err(|e| io("creating directories", e))?;
        }
        let total = tokio::fs::metadata(local)
            .await
            .map_err(|e| io("reading the local file", e))?
            .len();
        let mut src = tokio::fs::File::open(local)
            .await
            .map_err(|e| io("opening the local file", e))?;
        let tmp = tmp_sibling(&dest);
        let mut dst = tokio::fs::File::create(&tmp)
            .await
            .map_err(|e| io("creating the upload file", e))?;
        let mut buf = vec![0u8; 16 * 1024];
        let mut done = 0u64;
        let mut stalled = false;
        loop {
            let n = src
                .read(&mut buf)
                .await
                .map_err(|e| io("reading the local file", e))?;
            if n == 0 {
                break;
            }
            let mut chunk = &buf[..n];
            if let Some(limit) = fail_after
                && done + n as u64 >= limit
            {
                chunk = &chunk[..(limit - done) as usize];
                dst.write_all(chunk).await.map_err(|e| io("writing", e))?;
                dst.flush().await.ok();
                return Err(SandboxError::Unreachable {
                    url: "dir-sandbox".into(),
                    reason: "connection reset (agent killed mid-upload)".into(),
                });
            }
            dst.write_all(chunk)
                .await
                .map_err(|e| io("writing the upload file", e))?;
            done += n as u64;
            if let Some(p) = &progress {
                p(done);
            }
            if let Some(notify) = &stall
                && !stalled
                && done * 2 >= total
            {
                stalled = true;
                dst.flush().await.ok();
                notify.notify_one();
                std::future::pending::<()>().await;
            }
        }
        dst.flush()
            .await
            .map_err(|e| io("writing the upload file", e))?;
        dst.sync_all().await.ok();
        drop(dst);
        if let Some(at) = corrupt {
            let mut data = tokio::fs::read(&tmp)
                .await
                .map_err(|e| io("corrupting", e))?;
            let i = (at as usize).min(data.len().saturating_sub(1));
            data[i] ^= 0x5a;
            tokio::fs::write(&tmp, data)
                .await
                .map_err(|e| io("corrupting", e))?;
        }
        if let Some(len) = truncate {
            let f = std::fs::OpenOptions::new()
                .write(true)
                .open(&tmp)
                .map_err(|e| io("truncating", e))?;
            f.set_len(len).map_err(|e| io("truncating", e))?;
        }
        tokio::fs::rename(&tmp, &dest)
            .await
            .map_err(|e| io("renaming the upload into place", e))?;
        self.uploads.fetch_add(1, Ordering::SeqCst);
        Ok(done)
    }

    async fn download(
        &self,
        remote_path: &str,
        local: &Path,
        progress: Option<Progress>,
    ) -> Result<u64, SandboxError> {
        let corrupt = self.faults(|f| f.corrupt_download_at.take());
        let mut data = match tokio::fs::read(remote_path).await {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(SandboxError::NotFound(remote_path.to_string()));
            }
            Err(e) => return Err(io("reading the remote file", e)),
        };
        if let Some(at) = corrupt {
            let i = (at as usize).min(data.len().saturating_sub(1));
            data[i] ^= 0x5a;
        }
        let tmp = tmp_sibling(local);
        tokio::fs::write(&tmp, &data)
            .await
            .map_err(|e| io("writing the local file", e))?;
        tokio::fs::rename(&tmp, local)
            .await
            .map_err(|e| io("renaming the local file", e))?;
        if let Some(p) = &progress {
            p(data.len() as u64);
        }
        Ok(data.len() as u64)
    }

    async fn read_file(&self, path: &str) -> Result<Bytes, SandboxError> {
        match tokio::fs::read(path).await {
            Ok(d) => Ok(Bytes::from(d)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(SandboxError::NotFound(path.to_string()))
            }
            Err(e) => Err(io("reading", e)),
        }
    }

    async fn remove(&self, path: &str) -> Result<(), SandboxError> {
        let p = Path::new(path);
        match tokio::fs::symlink_metadata(p).await {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io("removing", e)),
            Ok(m) if m.is_dir() => tokio::fs::remove_dir_all(p)
                .await
                .map_err(|e| io("removing", e)),
            Ok(_) => tokio::fs::remove_file(p)
                .await
                .map_err(|e| io("removing", e)),
        }
    }

    async fn stat(&self, path: &str) -> Result<Option<Entry>, SandboxError> {
        let p = Path::new(path);
        let m = match tokio::fs::symlink_metadata(p).await {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io("stat", e)),
            Ok(m) => m,
        };
        let kind = if m.is_symlink() {
            EntryKind::Symlink
        } else if m.is_dir() {
            EntryKind::Directory
        } else {
            EntryKind::File
        };
        Ok(Some(Entry {
            name: p
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("")
                .to_string(),
            kind,
            path: path.to_string(),
            size: m.len(),
            mode: m.permissions().mode(),
            symlink_target: if m.is_symlink() {
                std::fs::read_link(p)
                    .ok()
                    .map(|t| t.to_string_lossy().into_owned())
            } else {
                None
            },
            modified_time: None,
        }))
    }

    async fn make_dir(&self, path: &str) -> Result<bool, SandboxError> {
        if tokio::fs::metadata(path).await.is_ok() {
            return Ok(false);
        }
        tokio::fs::create_dir_all(path)
            .await
            .map_err(|e| io("creating a directory", e))?;
        Ok(true)
    }

    async fn rename(&self, from: &str, to: &str) -> Result<(), SandboxError> {
        tokio::fs::rename(from, to)
            .await
            .map_err(|e| io(&format!("renaming {from} to {to}"), e))
    }
}
