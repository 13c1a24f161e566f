//! Start an in-process `rclaude agent` on loopback for tests.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use rclaude::agent::{AgentOptions, bind};
use rclaude::config::Isolation;
use rclaude::envd::client::EnvdClient;
use tokio::sync::oneshot;

pub const TOKEN: &str = "test-token-0123456789";

/// A running agent; dropping it shuts the agent down.
pub struct TestAgent {
    pub addr: SocketAddr,
    pub root: PathBuf,
    pub url: String,
    pub token: Option<String>,
    stop: Option<oneshot::Sender<()>>,
    pub task: Option<tokio::task::JoinHandle<Result<(), rclaude::agent::AgentError>>>,
    _dir: Option<tempfile::TempDir>,
}

impl TestAgent {
    /// An agent with a fresh temporary root, token auth and no isolation.
    pub async fn start() -> TestAgent {
        Self::start_with(|_| {}).await
    }

    /// Like [`start`](Self::start), with options adjusted by `f` (root is already set).
    pub async fn start_with(f: impl FnOnce(&mut AgentOptions)) -> TestAgent {
        let dir = tempfile::tempdir().unwrap();
        let mut a = Self::start_in(dir.path(), f).await;
        a._dir = Some(dir);
        a
    }

    /// An agent serving `root` (which the caller keeps alive).
    pub async fn start_in(root: &Path, f: impl FnOnce(&mut AgentOptions)) -> TestAgent {
        let root = std::fs::canonicalize(root).unwrap();
        let mut opts = AgentOptions::new(root.clone());
        opts.listen = "127.0.0.1:0".parse().unwrap();
        opts.token = Some(TOKEN.into());
        opts.isolation = Isolation::None;
        f(&mut opts);
        let token = opts.token.clone();
        let agent = bind(opts).await.expect("agent binds");
        let addr = agent.local_addr();
        let (tx, rx) = oneshot::channel();
        let task = tokio::spawn(agent.serve(async move {
            let _ = rx.await;
        }));
        TestAgent {
            addr,
            url: format!("http://{addr}"),
            root,
            token,
            stop: Some(tx),
            task: Some(task),
            _dir: None,
        }
    }

    pub fn client(&self) -> EnvdClient {
        EnvdClient::new(&self.url, self.token.clone(), Default::default()).unwrap()
    }

    pub fn client_with_token(&self, token: Option<&str>) -> EnvdClient {
        EnvdClient::new(&self.url, token.map(String::from), Default::default()).unwrap()
    }

    /// Ask the agent to stop and wait for `serve` to return.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            t.await.unwrap().unwrap();
        }
    }
}

impl Drop for TestAgent {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}
