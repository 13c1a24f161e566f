//! A real `rclaude-server` (SQLite) for CLI tests: started on a free port, accounts created
//! with its `admin` command, stopped on drop.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

/// The server binary, built next to ours (`cargo test --workspace` builds it; build it if not).
pub fn server_bin() -> PathBuf {
    let path = PathBuf::from(super::bin()).with_file_name("rclaude-server");
    if !path.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let st = Command::new(cargo)
            .args(["build", "-p", "rclaude-server"])
            .status()
            .unwrap();
        assert!(st.success(), "building rclaude-server failed");
    }
    path
}

pub struct Server {
    pub child: Child,
    pub base: String,
    pub db: String,
}

impl Server {
    /// A server that manages no sandboxes: the CLI runs them (direct mode) and reports.
    pub fn start(db: &str, listen: &str) -> Server {
        Server::start_with(db, listen, &["--sandbox-provider", "none"])
    }

    pub fn start_with(db: &str, listen: &str, extra: &[&str]) -> Server {
        Server::start_with_env(db, listen, extra, &[])
    }

    /// A server on SQLite in `dir` that runs managed sandboxes on the local provider (under
    /// `dir/sandboxes`, returned), started with `extra` flags besides.
    pub fn managed_local(dir: &std::path::Path, extra: &[&str]) -> (Server, std::path::PathBuf) {
        let db = format!("sqlite://{}", dir.join("server.db").display());
        let sandboxes = dir.join("sandboxes");
        let mut flags = vec![
            "--sandboxes-dir",
            sandboxes.to_str().unwrap(),
            "--agent-bin",
            super::bin(),
        ];
        flags.extend_from_slice(extra);
        (Server::start_with(&db, "127.0.0.1:0", &flags), sandboxes)
    }

    /// [`Server::start_with`] with these environment variables (a provider's credentials).
    pub fn start_with_env(
        db: &str,
        listen: &str,
        extra: &[&str],
        env: &[(&str, String)],
    ) -> Server {
        let mut child = Command::new(server_bin())
            .args(["serve", "--listen", listen, "--database-url", db])
            .args(extra)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(if std::env::var_os("RCLAUDE_TEST_SERVER_LOG").is_some() {
                Stdio::inherit()
            } else {
                Stdio::null()
            })
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let base = line.trim().rsplit(' ').next().unwrap().to_string();
        assert!(
            base.starts_with("http://"),
            "unexpected first line {line:?}"
        );
        Server {
            child,
            base,
            db: db.to_string(),
        }
    }

    /// A new account's API token.
    pub fn create_account(&self, name: &str) -> String {
        self.admin(&["create-account", name])
            .lines()
            .last()
            .unwrap()
            .trim()
            .to_string()
    }

    pub fn admin(&self, args: &[&str]) -> String {
        let out = Command::new(server_bin())
            .arg("admin")
            .args(args)
            .args(["--database-url", &self.db])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// `rclaude login --server` this server in `repo`'s home with `token`; it must succeed.
    pub fn login(&self, repo: &super::TestRepo, token: &str) {
        let out = repo
            .cmd(&["login", "--server", &self.base])
            .env("RCLAUDE_TOKEN", token)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn stop(mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.base.clone()
    }

    pub fn get(&self, token: &str, path: &str) -> serde_json::Value {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let r = reqwest::Client::new()
                .get(format!("{}{path}", self.base))
                .bearer_auth(token)
                .send()
                .await
                .unwrap();
            assert!(r.status().is_success(), "GET {path}: {}", r.status());
            r.json().await.unwrap()
        })
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
