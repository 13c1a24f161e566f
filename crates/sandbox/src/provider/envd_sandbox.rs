//! [`Sandbox`] over the envd protocol: used for E2B sandboxes and for the local agent.

use crate::provider::download::DownloadFile;
use std::path::Path;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;

use crate::envd::client::EnvdClient;
use crate::envd::proto::{
    B64, DataEvent, ProcessConfig, ProcessEvent, ProcessInput, ProcessSelector, Pty, PtySize,
    Signal, StartRequest,
};
use crate::provider::{
    Command, Entry, EnvdAccess, ExecEvent, ExecRequest, ExecStream, ExitStatus, FileUpload,
    PortAccess, PortRouter, ProcessEntry, Progress, PtyInput, PtyRequest, PtySession, Sandbox,
    SandboxError,
};

/// A sandbox reached through an envd endpoint.
#[derive(Debug, Clone)]
pub struct EnvdSandbox {
    client: EnvdClient,
    id: String,
    workdir: String,
    login_shell: bool,
    /// How the provider's edge reaches its ports (E2B), if it does.
    ports: Option<std::sync::Arc<dyn PortRouter>>,
    /// The endpoint is rclaude's own agent, which answers [`Sandbox::change_token`].
    rclaude_agent: bool,
}

impl EnvdSandbox {
    /// `login_shell`: run shell commands as `bash -l -c` (as E2B's SDK does) instead of `bash -c`.
    pub fn new(
        client: EnvdClient,
        id: impl Into<String>,
        workdir: impl Into<String>,
        login_shell: bool,
    ) -> Self {
        EnvdSandbox {
            client,
            id: id.into(),
            workdir: workdir.into(),
            login_shell,
            ports: None,
            rclaude_agent: false,
        }
    }

    /// The endpoint is rclaude's own agent (`rclaude agent`), with its extensions.
    pub fn rclaude_agent(mut self) -> Self {
        self.rclaude_agent = true;
        self
    }

    /// Its ports are reached through `ports` (see [`Sandbox::port_access`]).
    pub fn with_ports(mut self, ports: std::sync::Arc<dyn PortRouter>) -> Self {
        self.ports = Some(ports);
        self
    }

    /// The underlying protocol client (PTY, re-attach, process list).
    pub fn client(&self) -> &EnvdClient {
        &self.client
    }

    fn start_request(&self, req: &ExecRequest) -> Result<StartRequest, SandboxError> {
        let (cmd, args) = command_parts(&req.command, self.login_shell)?;
        Ok(StartRequest {
            process: ProcessConfig {
                cmd,
                args,
                envs: req.env.clone(),
                cwd: Some(req.cwd.clone().unwrap_or_else(|| self.workdir.clone())),
            },
            pty: None,
            tag: req.tag.clone(),
            stdin: Some(req.stdin.is_some() || req.stream_stdin),
        })
    }
}

fn command_parts(
    command: &Command,
    login_shell: bool,
) -> Result<(String, Vec<String>), SandboxError> {
    match command {
        Command::Shell(s) => {
            let mut args = Vec::new();
            if login_shell {
                args.push("-l".to_string());
            }
            args.push("-c".to_string());
            args.push(s.clone());
            Ok(("/bin/bash".to_string(), args))
        }
        Command::Argv(argv) => {
            let (first, rest) = argv
                .split_first()
                .ok_or_else(|| SandboxError::InvalidArgument("empty command".into()))?;
            Ok((first.clone(), rest.to_vec()))
        }
    }
}

/// Keystrokes and resizes for one PTY process, by pid.
struct EnvdPtyInput {
    client: EnvdClient,
    pid: u32,
}

#[async_trait]
impl PtyInput for EnvdPtyInput {
    async fn write(&self, data: Bytes) -> Result<(), SandboxError> {
        for chunk in data.chunks(64 * 1024) {
            self.client
                .send_input(
                    ProcessSelector::Pid(self.pid),
                    ProcessInput::Pty(B64(Bytes::copy_from_slice(chunk))),
                )
                .await?;
        }
        Ok(())
    }

    async fn resize(&self, cols: u16, rows: u16) -> Result<(), SandboxError> {
        self.client
            .update_pty(
                ProcessSelector::Pid(self.pid),
                PtySize {
                    cols: cols.into(),
                    rows: rows.into(),
                },
            )
            .await
    }
}

/// Wait for the `start` event of a new process stream and return its pid.
async fn first_pid(events: &mut crate::envd::client::ProcessStream) -> Result<u32, SandboxError> {
    match events.next().await {
        Some(Ok(ProcessEvent::Start(s))) => Ok(s.pid),
        Some(Ok(other)) => Err(SandboxError::Protocol(format!(
            "the first process event was not `start`: {other:?}"
        ))),
        Some(Err(e)) => Err(e),
        None => Err(SandboxError::Protocol(
            "the process stream ended before the start event".into(),
        )),
    }
}

fn map_event(ev: ProcessEvent) -> Option<ExecEvent> {
    match ev {
        ProcessEvent::Start(s) => Some(ExecEvent::Started { pid: s.pid }),
        ProcessEvent::Data(DataEvent::Stdout(b) | DataEvent::Pty(b)) => {
            Some(ExecEvent::Stdout(b.0))
        }
        ProcessEvent::Data(DataEvent::Stderr(b)) => Some(ExecEvent::Stderr(b.0)),
        ProcessEvent::End(e) => Some(ExecEvent::Exited(ExitStatus {
            code: e.exit_code,
            status: e.status,
        })),
        ProcessEvent::Keepalive(_) => None,
    }
}

#[async_trait]
impl Sandbox for EnvdSandbox {
    fn id(&self) -> &str {
        &self.id
    }

    fn workdir(&self) -> &str {
        &self.workdir
    }

    fn port_access(&self, port: u16) -> Option<PortAccess> {
        self.ports.as_ref().map(|p| p.access(port))
    }

    fn envd_access(&self) -> Option<EnvdAccess> {
        Some(EnvdAccess {
            url: self.client.base_url().to_string(),
            access_token: self.client.access_token().map(str::to_string),
            headers: self.client.routing_headers(),
        })
    }

    async fn change_token(&self, dir: &str) -> Result<Option<String>, SandboxError> {
        if !self.rclaude_agent {
            return Ok(None);
        }
        self.client.change_token(dir).await
    }

    async fn export_worktree(
        &self,
        req: &crate::provider::WorktreeExportRequest,
    ) -> Result<Option<String>, SandboxError> {
        if !self.rclaude_agent {
            return Ok(None);
        }
        self.client.export_worktree(req).await
    }

    async fn apply_sync(
        &self,
        req: &crate::provider::ApplySyncRequest,
    ) -> Result<Option<String>, SandboxError> {
        if !self.rclaude_agent {
            return Ok(None);
        }
        self.client.apply_sync(req).await
    }

    async fn query_sync(
        &self,
        req: &crate::provider::QuerySyncRequest,
    ) -> Result<Option<String>, SandboxError> {
        if !self.rclaude_agent {
            return Ok(None);
        }
        self.client.query_sync(req).await
    }

    async fn exec(&self, req: ExecRequest) -> Result<ExecStream, SandboxError> {
        let start = self.start_request(&req)?;
        let mut events = self.client.start(&start, req.timeout).await?;
        let pid = first_pid(&mut events).await?;
        if let Some(data) = req.stdin {
            // Feed stdin concurrently, so a process that writes before it reads cannot deadlock
            // against a caller that has not started consuming output yet.
            let client = self.client.clone();
            tokio::spawn(async move {
                let sel = ProcessSelector::Pid(pid);
                let r = async {
                    client.send_stdin(sel.clone(), &data).await?;
                    client.close_stdin(sel).await
                };
                if let Err(e) = r.await {
                    tracing::debug!(pid, "feeding stdin stopped: {e}");
                }
            });
        }
        let first = futures::stream::once(async move { Ok(ExecEvent::Started { pid }) });
        let rest = events.filter_map(|r| async move { r.map(map_event).transpose() });
        Ok(Box::pin(first.chain(rest)))
    }

    async fn kill_process(&self, pid: u32, force: bool) -> Result<(), SandboxError> {
        let sig = if force {
            Signal::Sigkill
        } else {
            Signal::Sigterm
        };
        self.client
            .send_signal(ProcessSelector::Pid(pid), sig)
            .await
    }

    fn streams_stdin(&self) -> bool {
        true
    }

    async fn write_stdin(&self, pid: u32, data: Bytes) -> Result<(), SandboxError> {
        self.client
            .send_stdin(ProcessSelector::Pid(pid), &data)
            .await
    }

    async fn close_stdin(&self, pid: u32) -> Result<(), SandboxError> {
        self.client.close_stdin(ProcessSelector::Pid(pid)).await
    }

    async fn write_files(&self, files: Vec<FileUpload>) -> Result<(), SandboxError> {
        self.client
            .write_files(files.into_iter().map(|f| (f.path, f.contents)).collect())
            .await
            .map(|_| ())
    }

    async fn upload(
        &self,
        local: &Path,
        remote_path: &str,
        progress: Option<Progress>,
    ) -> Result<u64, SandboxError> {
        self.client
            .upload_stream(remote_path, local, progress)
            .await
    }

    async fn download(
        &self,
        remote_path: &str,
        local: &Path,
        progress: Option<Progress>,
    ) -> Result<u64, SandboxError> {
        let mut stream = self.client.download(remote_path).await?;
        let mut out = DownloadFile::create(local, progress)?;
        while let Some(chunk) = stream.next().await {
            let chunk: Bytes = chunk?;
            out.write(&chunk).await?;
        }
        out.finish().await
    }

    async fn read_file(&self, path: &str) -> Result<Bytes, SandboxError> {
        self.client.read(path).await
    }

    async fn remove(&self, path: &str) -> Result<(), SandboxError> {
        self.client.remove(path).await
    }

    async fn stat(&self, path: &str) -> Result<Option<Entry>, SandboxError> {
        match self.client.stat(path).await {
            Ok(e) => Ok(Some(e.into())),
            Err(SandboxError::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn make_dir(&self, path: &str) -> Result<bool, SandboxError> {
        match self.client.make_dir(path).await {
            Ok(_) => Ok(true),
            Err(SandboxError::AlreadyExists(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    async fn rename(&self, from: &str, to: &str) -> Result<(), SandboxError> {
        self.client.move_(from, to).await.map(|_| ())
    }

    async fn read_file_from(&self, path: &str, offset: u64) -> Result<Bytes, SandboxError> {
        self.client.read_from(path, offset).await
    }

    async fn list_dir(&self, path: &str) -> Result<Vec<Entry>, SandboxError> {
        let entries = self.client.list_dir(path, 1).await?;
        Ok(entries.into_iter().map(Entry::from).collect())
    }

    async fn processes(&self) -> Result<Vec<ProcessEntry>, SandboxError> {
        Ok(self
            .client
            .list()
            .await?
            .into_iter()
            .map(|p| ProcessEntry {
                pid: p.pid,
                tag: p.tag,
            })
            .collect())
    }

    async fn pty(&self, req: PtyRequest) -> Result<PtySession, SandboxError> {
        let (cmd, args) = match &req.command {
            Some(c) => command_parts(c, self.login_shell)?,
            None => ("/bin/bash".to_string(), vec!["-i".into(), "-l".into()]),
        };
        let mut envs = req.env.clone();
        envs.entry("TERM".into())
            .or_insert_with(|| "xterm-256color".into());
        for k in ["LANG", "LC_ALL"] {
            envs.entry(k.into()).or_insert_with(|| "C.UTF-8".into());
        }
        let start = StartRequest {
            process: ProcessConfig {
                cmd,
                args,
                envs,
                cwd: Some(req.cwd.clone().unwrap_or_else(|| self.workdir.clone())),
            },
            pty: Some(Pty {
                size: PtySize {
                    cols: req.cols.into(),
                    rows: req.rows.into(),
                },
            }),
            tag: req.tag.clone(),
            stdin: None,
        };
        let mut events = self.client.start(&start, None).await?;
        let pid = first_pid(&mut events).await?;
        let rest = events.filter_map(|r| async move { r.map(map_event).transpose() });
        Ok(PtySession {
            pid,
            events: Box::pin(rest),
            input: std::sync::Arc::new(EnvdPtyInput {
                client: self.client.clone(),
                pid,
            }),
        })
    }
}
