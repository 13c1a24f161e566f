//! A real git smart-HTTP server for tests: bare repositories under a root directory, served by
//! git's own `git http-backend` run as a CGI program, behind authentication that behaves like
//! GitHub's.
//!
//! - Repositories are `URL/<owner>/<name>.git` for `<root>/<owner>/<name>.git` (made with
//!   [`GitHttp::create_repo`]: bare, default branch `main`, `http.receivepack=true`,
//!   `uploadpack.allowFilter=true` and `uploadpack.allowAnySHA1InWant=true`, so pushes and
//!   partial clones work). Both protocol v0/v1 and v2 are served: the `Git-Protocol` request
//!   header reaches http-backend as `GIT_PROTOCOL`; gzip request bodies are inflated by
//!   http-backend (`HTTP_CONTENT_ENCODING`). Bodies stream both ways.
//! - Auth is HTTP Basic with any user name and a token as the password (GitHub's
//!   `x-access-token:<token>`; a token as the user name with an empty password is accepted too),
//!   or `Authorization: Bearer <token>`. Tokens are added with [`GitHttp::add_token`], with or
//!   without push rights. A push (`info/refs?service=git-receive-pack` or `git-receive-pack`)
//!   needs a push token: none or an unknown one → 401 with `WWW-Authenticate: Basic
//!   realm="rclaude-test"` (so git asks its credential helper), a read-only token → 403. Any
//!   request to a private repository needs a known token (401 otherwise); an unknown token is
//!   401 on public repositories as well. An unknown repository is 404.
//! - Every request is recorded ([`GitHttp::requests`]) with its method, path, query, whether
//!   credentials came with it and the status answered — never the credentials themselves.
//! - git runs with no system or global configuration (`GIT_CONFIG_NOSYSTEM=1`,
//!   `GIT_CONFIG_GLOBAL=/dev/null`), so the machine's settings cannot change what is served.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use futures::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The marker file in a bare repository that makes it private (read by the GitHub fake too).
pub const PRIVATE_MARKER: &str = "rclaude-test-private";

/// The realm of the `WWW-Authenticate` challenge.
pub const REALM: &str = "rclaude-test";

/// One request as the server received and answered it. Credentials are never kept: only
/// whether some were presented.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitRequest {
    pub method: String,
    /// The path as requested, e.g. `/acme/widget.git/info/refs`.
    pub path: String,
    /// The raw query string, e.g. `service=git-upload-pack`.
    pub query: Option<String>,
    /// Whether an `Authorization` header came with the request.
    pub credentials: bool,
    /// The `Git-Protocol` header (e.g. `version=2`), if any.
    pub git_protocol: Option<String>,
    /// The `Content-Encoding` of the request body (git gzips large requests), if any.
    pub content_encoding: Option<String>,
    /// The status answered.
    pub status: u16,
}

impl GitRequest {
    /// Whether this request belongs to a push (`git-receive-pack`).
    pub fn is_push(&self) -> bool {
        is_push(&self.path, self.query.as_deref())
    }
}

/// The running server. Dropping it stops the server; the repositories stay under `root`.
pub struct GitHttp {
    /// `http://127.0.0.1:<port>`; repositories are `{url}/<owner>/<name>.git`.
    pub url: String,
    root: PathBuf,
    shared: Arc<Shared>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    _tmp: Option<tempfile::TempDir>,
}

struct Shared {
    root: PathBuf,
    backend: PathBuf,
    /// token → may push.
    tokens: Mutex<HashMap<String, bool>>,
    requests: Mutex<Vec<GitRequest>>,
}

impl GitHttp {
    /// Serves the bare repositories under `root` (created if missing).
    pub fn start(root: &Path) -> GitHttp {
        Self::start_inner(root, None)
    }

    /// Serves repositories under a fresh temporary directory, removed on drop.
    pub fn start_temp() -> GitHttp {
        let tmp = tempfile::tempdir().expect("temporary directory for the git server");
        let root = tmp.path().join("repos");
        Self::start_inner(&root, Some(tmp))
    }

    fn start_inner(root: &Path, tmp: Option<tempfile::TempDir>) -> GitHttp {
        std::fs::create_dir_all(root).expect("create the git server's root");
        let root = root.canonicalize().expect("canonical git server root");
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        listener
            .set_nonblocking(true)
            .expect("non-blocking listener");
        let addr = listener.local_addr().expect("listener address");
        let shared = Arc::new(Shared {
            root: root.clone(),
            backend: http_backend().to_path_buf(),
            tokens: Mutex::new(HashMap::new()),
            requests: Mutex::new(Vec::new()),
        });
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let app = Router::new().fallback(handle).with_state(shared.clone());
        let thread = std::thread::Builder::new()
            .name("git-http".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .expect("tokio runtime for the git server");
                rt.block_on(async move {
                    let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                        return;
                    };
                    let server = axum::serve(listener, app).with_graceful_shutdown(async move {
                        let _ = stop_rx.await;
                    });
                    let _ = server.await;
                });
                rt.shutdown_timeout(Duration::from_secs(2));
            })
            .expect("spawn the git server thread");
        GitHttp {
            url: format!("http://{addr}"),
            root,
            shared,
            stop: Some(stop_tx),
            thread: Some(thread),
            _tmp: tmp,
        }
    }

    /// The directory holding `<owner>/<name>.git`.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the bare repository `owner/name` lives (whether or not it exists).
    pub fn repo_path(&self, owner: &str, name: &str) -> PathBuf {
        self.root.join(owner).join(format!("{name}.git"))
    }

    /// The clone URL of `owner/name`.
    pub fn repo_url(&self, owner: &str, name: &str) -> String {
        format!("{}/{owner}/{name}.git", self.url)
    }

    /// Creates the bare repository `owner/name` (default branch `main`, push and partial
    /// clone enabled) and returns its path. Panics if it exists or git fails.
    pub fn create_repo(&self, owner: &str, name: &str, private: bool) -> PathBuf {
        assert!(
            valid_segment(owner) && valid_segment(name),
            "invalid repository name {owner}/{name}"
        );
        let path = self.repo_path(owner, name);
        assert!(!path.exists(), "repository {} exists", path.display());
        std::fs::create_dir_all(&path).expect("create the repository directory");
        run_git(&path, &["init", "--bare", "-q", "--initial-branch=main"]);
        for (key, value) in [
            ("http.receivepack", "true"),
            ("uploadpack.allowFilter", "true"),
            ("uploadpack.allowAnySHA1InWant", "true"),
            ("receive.advertisePushOptions", "true"),
        ] {
            run_git(&path, &["config", key, value]);
        }
        if private {
            std::fs::write(path.join(PRIVATE_MARKER), "private\n").expect("write private marker");
        }
        path
    }

    /// Pushes every branch and tag of the local repository `src_repo` into `owner/name`
    /// (straight through the file system, not HTTP). The bare repository must exist.
    pub fn seed_from(&self, owner: &str, name: &str, src_repo: &Path) {
        let dest = self.repo_path(owner, name);
        assert!(dest.is_dir(), "no repository {owner}/{name}");
        let dest = dest.to_string_lossy().into_owned();
        run_git(
            src_repo,
            &[
                "push",
                "-q",
                &dest,
                "refs/heads/*:refs/heads/*",
                "refs/tags/*:refs/tags/*",
            ],
        );
    }

    /// Whether `owner/name` is private.
    pub fn is_private(&self, owner: &str, name: &str) -> bool {
        self.repo_path(owner, name).join(PRIVATE_MARKER).exists()
    }

    /// Adds a token: it may read every repository, and push if `push`.
    pub fn add_token(&self, token: &str, push: bool) {
        lock(&self.shared.tokens).insert(token.to_string(), push);
    }

    /// Every request so far, oldest first.
    pub fn requests(&self) -> Vec<GitRequest> {
        lock(&self.shared.requests).clone()
    }

    /// Forgets the recorded requests.
    pub fn clear_requests(&self) {
        lock(&self.shared.requests).clear();
    }

    /// The commit id of `refs/heads/<branch>` in `owner/name`, if the branch exists.
    pub fn branch(&self, owner: &str, name: &str, branch: &str) -> Option<String> {
        branch_commit(&self.repo_path(owner, name), branch)
    }
}

impl Drop for GitHttp {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The commit id of `refs/heads/<branch>` in the (bare) repository at `repo`, if any.
pub fn branch_commit(repo: &Path, branch: &str) -> Option<String> {
    if !repo.is_dir() || branch.is_empty() || branch.starts_with('-') {
        return None;
    }
    let out = git_command(repo)
        .args([
            "rev-parse",
            "-q",
            "--verify",
            &format!("refs/heads/{branch}^{{commit}}"),
        ])
        .output()
        .ok()?;
    let oid = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (out.status.success() && !oid.is_empty()).then_some(oid)
}

/// git with no system or global configuration, in `dir`.
fn git_command(dir: &Path) -> std::process::Command {
    let mut c = std::process::Command::new("git");
    c.current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE")
        .env_remove("GIT_INDEX_FILE");
    c
}

fn run_git(dir: &Path, args: &[&str]) -> String {
    let out = git_command(dir)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run git {args:?}: {e}"));
    assert!(
        out.status.success(),
        "git {args:?} in {} failed: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `$(git --exec-path)/git-http-backend`, looked up once.
fn http_backend() -> &'static Path {
    static BACKEND: OnceLock<PathBuf> = OnceLock::new();
    BACKEND.get_or_init(|| {
        let out = std::process::Command::new("git")
            .arg("--exec-path")
            .output()
            .expect("git is needed on PATH for the git HTTP server");
        let dir = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let backend = Path::new(&dir).join("git-http-backend");
        assert!(
            backend.is_file(),
            "git-http-backend not found at {} (git --exec-path)",
            backend.display()
        );
        backend
    })
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A path segment that names an owner or a repository: no separators, no leading dot.
fn valid_segment(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with('.')
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

fn is_push(path: &str, query: Option<&str>) -> bool {
    path.ends_with("/git-receive-pack")
        || (path.ends_with("/info/refs")
            && query
                .unwrap_or("")
                .split('&')
                .any(|kv| kv == "service=git-receive-pack"))
}

/// (owner, name, rest) of `/<owner>/<name>.git/<rest>`.
fn split_repo_path(path: &str) -> Option<(&str, &str, &str)> {
    let trimmed = path.strip_prefix('/')?;
    let mut parts = trimmed.splitn(3, '/');
    let owner = parts.next()?;
    let repo = parts.next()?;
    let rest = parts.next().unwrap_or("");
    let name = repo.strip_suffix(".git")?;
    (valid_segment(owner) && valid_segment(name) && !rest.split('/').any(|s| s == ".."))
        .then_some((owner, name, rest))
}

/// What a request's `Authorization` header amounts to.
enum Credentials {
    /// No header.
    None,
    /// Basic (the password, or the user name when the password is empty) or Bearer.
    Token { user: String, token: String },
    /// A header naming no token.
    Unusable,
}

/// What the presented credentials allow.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Grant {
    Anonymous,
    Invalid,
    Read,
    Push,
}

fn credentials(headers: &HeaderMap) -> Credentials {
    let Some(value) = headers.get("authorization") else {
        return Credentials::None;
    };
    let Ok(value) = value.to_str() else {
        return Credentials::Unusable;
    };
    let (scheme, rest) = value.trim().split_once(' ').unwrap_or((value, ""));
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("bearer") && !rest.is_empty() {
        return Credentials::Token {
            user: "bearer".into(),
            token: rest.to_string(),
        };
    }
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(rest)
            .ok()
            .and_then(|b| String::from_utf8(b).ok());
        if let Some((user, pass)) = decoded.as_deref().and_then(|d| d.split_once(':')) {
            let token = if pass.is_empty() { user } else { pass };
            if !token.is_empty() {
                return Credentials::Token {
                    user: user.to_string(),
                    token: token.to_string(),
                };
            }
        }
    }
    Credentials::Unusable
}

fn plain(status: StatusCode, message: &str) -> Response {
    let mut response = (status, format!("{message}\n")).into_response();
    let headers = response.headers_mut();
    headers.insert(
        "content-type",
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    if status == StatusCode::UNAUTHORIZED
        && let Ok(challenge) = HeaderValue::from_str(&format!("Basic realm=\"{REALM}\""))
    {
        headers.insert("www-authenticate", challenge);
    }
    response
}

fn header_str(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

async fn handle(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    let method = req.method().as_str().to_string();
    let path = req.uri().path().to_string();
    let query = req.uri().query().map(str::to_string);
    let credentials_sent = req.headers().contains_key("authorization");
    let git_protocol = header_str(req.headers(), "git-protocol");
    let content_encoding = header_str(req.headers(), "content-encoding");
    let response = authorize_and_serve(&shared, req, &path, query.as_deref()).await;
    lock(&shared.requests).push(GitRequest {
        method,
        path,
        query,
        credentials: credentials_sent,
        git_protocol,
        content_encoding,
        status: response.status().as_u16(),
    });
    response
}

async fn authorize_and_serve(
    shared: &Shared,
    req: Request,
    path: &str,
    query: Option<&str>,
) -> Response {
    let Some((owner, name, _rest)) = split_repo_path(path) else {
        return plain(StatusCode::NOT_FOUND, "Repository not found.");
    };
    let repo = shared.root.join(owner).join(format!("{name}.git"));
    if !repo.join("HEAD").is_file() {
        return plain(StatusCode::NOT_FOUND, "Repository not found.");
    }
    let private = repo.join(PRIVATE_MARKER).exists();
    let push = is_push(path, query);
    let (grant, user) = match credentials(req.headers()) {
        Credentials::None => (Grant::Anonymous, None),
        Credentials::Unusable => (Grant::Invalid, None),
        Credentials::Token { user, token } => match lock(&shared.tokens).get(&token) {
            Some(true) => (Grant::Push, Some(user)),
            Some(false) => (Grant::Read, Some(user)),
            None => (Grant::Invalid, None),
        },
    };
    match grant {
        Grant::Invalid => return plain(StatusCode::UNAUTHORIZED, "Invalid username or token."),
        Grant::Anonymous if push || private => {
            return plain(StatusCode::UNAUTHORIZED, "Authentication required.");
        }
        Grant::Read if push => {
            return plain(
                StatusCode::FORBIDDEN,
                &format!("Permission to {owner}/{name}.git denied: the token may not push."),
            );
        }
        _ => {}
    }
    match run_backend(shared, req, path, query, user.as_deref()).await {
        Ok(response) => response,
        Err(message) => plain(StatusCode::INTERNAL_SERVER_ERROR, &message),
    }
}

/// Runs `git http-backend` for one request and streams its answer back.
async fn run_backend(
    shared: &Shared,
    req: Request,
    path: &str,
    query: Option<&str>,
    user: Option<&str>,
) -> Result<Response, String> {
    let (parts, body) = req.into_parts();
    let mut cmd = tokio::process::Command::new(&shared.backend);
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", &shared.root)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_PROJECT_ROOT", &shared.root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("GATEWAY_INTERFACE", "CGI/1.1")
        .env("SERVER_PROTOCOL", "HTTP/1.1")
        .env("REQUEST_METHOD", parts.method.as_str())
        .env("PATH_INFO", path)
        .env("QUERY_STRING", query.unwrap_or(""))
        .env("REMOTE_ADDR", "127.0.0.1")
        .current_dir(&shared.root)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if let Some(user) = user {
        cmd.env("REMOTE_USER", user);
    }
    for (var, name) in [
        ("CONTENT_TYPE", "content-type"),
        ("CONTENT_LENGTH", "content-length"),
        ("HTTP_CONTENT_ENCODING", "content-encoding"),
        ("GIT_PROTOCOL", "git-protocol"),
    ] {
        if let Some(value) = header_str(&parts.headers, name) {
            cmd.env(var, value);
        }
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot run git http-backend: {e}"))?;
    let (Some(mut stdin), Some(mut stdout), Some(mut stderr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        return Err("git http-backend has no pipes".into());
    };

    // The request body goes to stdin while the answer is read: neither side can block the other.
    tokio::spawn(async move {
        let mut stream = body.into_data_stream();
        while let Some(chunk) = stream.next().await {
            let Ok(chunk) = chunk else { break };
            if stdin.write_all(&chunk).await.is_err() {
                break;
            }
        }
        let _ = stdin.shutdown().await;
    });
    tokio::spawn(async move {
        let mut log = Vec::new();
        let _ = stderr.read_to_end(&mut log).await;
        if !log.is_empty() {
            eprintln!(
                "git-http-backend: {}",
                String::from_utf8_lossy(&log).trim_end()
            );
        }
    });

    // The CGI header block ends at the first empty line.
    let mut head = Vec::new();
    let mut buf = [0u8; 8192];
    let split = loop {
        if let Some(pos) = header_end(&head) {
            break pos;
        }
        let n = stdout
            .read(&mut buf)
            .await
            .map_err(|e| format!("reading git http-backend: {e}"))?;
        if n == 0 {
            let status = child
                .wait()
                .await
                .map(|s| s.to_string())
                .unwrap_or_default();
            return Err(format!(
                "git http-backend ended without a header block ({status})"
            ));
        }
        head.extend_from_slice(&buf[..n]);
        if head.len() > 64 * 1024 {
            return Err("git http-backend sent an oversized header block".into());
        }
    };
    let (header_len, body_start) = split;
    let leftover = Bytes::copy_from_slice(&head[body_start..]);
    let mut status = StatusCode::OK;
    let mut out_headers = HeaderMap::new();
    for line in String::from_utf8_lossy(&head[..header_len]).lines() {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("status") {
            let code = value.split_whitespace().next().unwrap_or("200");
            status = code
                .parse::<u16>()
                .ok()
                .and_then(|c| StatusCode::from_u16(c).ok())
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        } else if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.trim().as_bytes()),
            HeaderValue::from_str(value),
        ) {
            out_headers.append(name, value);
        }
    }

    let rest = tokio_util::io::ReaderStream::new(stdout);
    let body_stream = futures::stream::once(async move { Ok::<Bytes, std::io::Error>(leftover) })
        .chain(rest)
        .chain(futures::stream::once(async move {
            // Reap the CGI process once its output is done.
            let _ = child.wait().await;
            Ok(Bytes::new())
        }));
    let mut response = Response::new(Body::from_stream(body_stream));
    *response.status_mut() = status;
    *response.headers_mut() = out_headers;
    Ok(response)
}

/// (end of the header lines, start of the body) of a CGI answer, if its header block is complete.
fn header_end(buf: &[u8]) -> Option<(usize, usize)> {
    let crlf = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|p| (p, p + 4));
    let lf = buf
        .windows(2)
        .position(|w| w == b"\n\n")
        .map(|p| (p, p + 2));
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(if a.0 <= b.0 { a } else { b }),
        (a, b) => a.or(b),
    }
}
