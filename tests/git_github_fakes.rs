//! Pins the behaviour of the two fakes a pull request workflow is tested against: the git
//! smart-HTTP server (real `git http-backend`, driven by the real git CLI) and the GitHub REST
//! stand-in (driven by reqwest), whose every request and answer is checked against GitHub's
//! published OpenAPI description.

#[path = "support/git_http.rs"]
mod git_http;
#[path = "support/github_server.rs"]
mod github_server;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use git_http::GitHttp;
use github_server::{Exchange, FakeGithub, openapi};
use serde_json::{Value, json};

const READ_TOKEN: &str = "ghs_readonly0123456789abcdefABCDEF0123";
const PUSH_TOKEN: &str = "ghs_pushtoken0123456789abcdefABCDEF0123";
const API_TOKEN: &str = "ghp_apitoken0123456789abcdefABCDEF01234";

/// A credential helper that answers with `$RCLAUDE_TEST_TOKEN`, so the token never appears on
/// a command line or in a config file.
const ENV_HELPER: &str = "credential.helper=!f() { echo username=x-access-token; echo \"password=$RCLAUDE_TEST_TOKEN\"; }; f";

// ---------------------------------------------------------------------------------------------
// git helpers

/// git in `dir` with no system/global configuration, no prompts and a fixed identity.
fn git_cmd(dir: &Path, args: &[&str]) -> Command {
    let mut c = Command::new("git");
    c.current_dir(dir)
        .args(["-c", "init.defaultBranch=main"])
        .args(args)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_AUTHOR_NAME", "Test Author")
        .env("GIT_AUTHOR_EMAIL", "author@example.com")
        .env("GIT_COMMITTER_NAME", "Test Committer")
        .env("GIT_COMMITTER_EMAIL", "committer@example.com")
        .env_remove("GIT_ASKPASS")
        .env_remove("SSH_ASKPASS")
        .env_remove("RCLAUDE_TEST_TOKEN")
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE")
        .env_remove("GIT_INDEX_FILE");
    c
}

fn run(mut c: Command) -> Output {
    c.output().expect("run git")
}

fn git(dir: &Path, args: &[&str]) -> String {
    let out = run(git_cmd(dir, args));
    assert!(
        out.status.success(),
        "git {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// git with the environment credential helper and `token` in `RCLAUDE_TEST_TOKEN`.
fn git_with_token(dir: &Path, token: &str, args: &[&str]) -> Output {
    let mut full = vec!["-c", ENV_HELPER];
    full.extend_from_slice(args);
    let mut c = git_cmd(dir, &full);
    c.env("RCLAUDE_TEST_TOKEN", token);
    run(c)
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A local repository with a commit on `main` and one more on `feature`.
fn source_repo(base: &Path) -> PathBuf {
    let src = base.join("src");
    std::fs::create_dir_all(&src).unwrap();
    git(&src, &["init", "-q"]);
    std::fs::write(src.join("README.md"), "# widget\n").unwrap();
    std::fs::write(src.join("big.txt"), "blob ".repeat(10_000)).unwrap();
    git(&src, &["add", "-A"]);
    git(&src, &["commit", "-q", "-m", "first"]);
    git(&src, &["checkout", "-q", "-b", "feature"]);
    std::fs::write(src.join("feature.txt"), "a feature\nover two lines\n").unwrap();
    git(&src, &["add", "-A"]);
    git(&src, &["commit", "-q", "-m", "feature"]);
    git(&src, &["checkout", "-q", "main"]);
    src
}

/// A git server with `acme/widget` (public or private) seeded from [`source_repo`].
fn served_repo(private: bool) -> (tempfile::TempDir, GitHttp, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let git_server = GitHttp::start(&tmp.path().join("server"));
    git_server.create_repo("acme", "widget", private);
    let src = source_repo(tmp.path());
    git_server.seed_from("acme", "widget", &src);
    (tmp, git_server, src)
}

fn statuses(server: &GitHttp) -> Vec<u16> {
    server.requests().iter().map(|r| r.status).collect()
}

// ---------------------------------------------------------------------------------------------
// The git server

#[test]
fn public_repo_clones_without_credentials() {
    let (tmp, server, src) = served_repo(false);
    let clone = tmp.path().join("clone");
    let out = run(git_cmd(
        tmp.path(),
        &[
            "clone",
            "-q",
            &server.repo_url("acme", "widget"),
            clone.to_str().unwrap(),
        ],
    ));
    assert!(out.status.success(), "clone failed: {}", stderr(&out));
    assert_eq!(
        git(&clone, &["rev-parse", "HEAD"]),
        git(&src, &["rev-parse", "main"])
    );
    assert_eq!(
        git(&clone, &["rev-parse", "origin/feature"]),
        git(&src, &["rev-parse", "feature"])
    );
    let requests = server.requests();
    assert!(!requests.is_empty());
    assert!(
        requests.iter().all(|r| r.status == 200 && !r.credentials),
        "{requests:#?}"
    );
}

#[test]
fn unknown_repo_is_404() {
    let (tmp, server, _src) = served_repo(false);
    let out = run(git_cmd(
        tmp.path(),
        &[
            "clone",
            "-q",
            &server.repo_url("acme", "nothing"),
            "nothing",
        ],
    ));
    assert!(!out.status.success());
    assert_eq!(statuses(&server), vec![404]);
}

#[test]
fn private_repo_needs_a_token_and_the_clone_keeps_none() {
    let (tmp, server, src) = served_repo(true);
    server.add_token(READ_TOKEN, false);
    let url = server.repo_url("acme", "widget");

    let out = run(git_cmd(tmp.path(), &["clone", "-q", &url, "anon"]));
    assert!(
        !out.status.success(),
        "a private repo cloned without credentials"
    );
    assert!(statuses(&server).contains(&401), "{:?}", server.requests());
    assert!(server.requests().iter().all(|r| !r.credentials));

    let out = git_with_token(tmp.path(), "not-a-token", &["clone", "-q", &url, "wrong"]);
    assert!(
        !out.status.success(),
        "a private repo cloned with a wrong token"
    );

    server.clear_requests();
    let out = git_with_token(tmp.path(), READ_TOKEN, &["clone", "-q", &url, "clone"]);
    assert!(
        out.status.success(),
        "clone with a token failed: {}",
        stderr(&out)
    );
    let clone = tmp.path().join("clone");
    assert_eq!(
        git(&clone, &["rev-parse", "HEAD"]),
        git(&src, &["rev-parse", "main"])
    );
    // git asks once without credentials (401), then with the helper's.
    let requests = server.requests();
    assert_eq!(requests[0].status, 401);
    assert!(!requests[0].credentials);
    assert!(
        requests[1..]
            .iter()
            .all(|r| r.status == 200 && r.credentials),
        "{requests:#?}"
    );

    let config = git(&clone, &["config", "--list", "--show-origin"]);
    assert!(
        !config.contains(READ_TOKEN),
        "the token is in the clone's config:\n{config}"
    );
    assert_eq!(git(&clone, &["remote", "get-url", "origin"]), url);
    let raw = std::fs::read_to_string(clone.join(".git/config")).unwrap();
    assert!(!raw.contains(READ_TOKEN));
    assert!(!format!("{requests:?}").contains(READ_TOKEN));
}

#[test]
fn push_needs_a_push_token() {
    let (tmp, server, _src) = served_repo(false);
    server.add_token(READ_TOKEN, false);
    server.add_token(PUSH_TOKEN, true);
    let clone = tmp.path().join("clone");
    git(
        tmp.path(),
        &[
            "clone",
            "-q",
            &server.repo_url("acme", "widget"),
            clone.to_str().unwrap(),
        ],
    );
    git(&clone, &["checkout", "-q", "-b", "rclaude/fix"]);
    std::fs::write(clone.join("fix.txt"), "fixed\n").unwrap();
    git(&clone, &["add", "-A"]);
    git(&clone, &["commit", "-q", "-m", "fix"]);
    let head = git(&clone, &["rev-parse", "HEAD"]);

    server.clear_requests();
    let out = run(git_cmd(&clone, &["push", "-q", "origin", "rclaude/fix"]));
    assert!(!out.status.success(), "pushed without credentials");
    assert_eq!(statuses(&server), vec![401]);
    assert!(server.requests()[0].is_push());
    assert_eq!(server.branch("acme", "widget", "rclaude/fix"), None);

    server.clear_requests();
    let out = git_with_token(&clone, READ_TOKEN, &["push", "-q", "origin", "rclaude/fix"]);
    assert!(!out.status.success(), "pushed with a read-only token");
    assert!(statuses(&server).contains(&403), "{:?}", server.requests());
    assert_eq!(server.branch("acme", "widget", "rclaude/fix"), None);

    server.clear_requests();
    let out = git_with_token(&clone, PUSH_TOKEN, &["push", "-q", "origin", "rclaude/fix"]);
    assert!(out.status.success(), "push failed: {}", stderr(&out));
    assert_eq!(
        server.branch("acme", "widget", "rclaude/fix"),
        Some(head.clone())
    );
    let requests = server.requests();
    assert!(
        requests
            .iter()
            .any(|r| r.path.ends_with("/git-receive-pack")
                && r.method == "POST"
                && r.status == 200),
        "{requests:#?}"
    );

    // `Authorization: Bearer` works as well (an extra header instead of a helper).
    git(&clone, &["commit", "-q", "--allow-empty", "-m", "again"]);
    let again = git(&clone, &["rev-parse", "HEAD"]);
    let bearer = format!("http.extraHeader=Authorization: Bearer {PUSH_TOKEN}");
    let out = run(git_cmd(
        &clone,
        &["-c", &bearer, "push", "-q", "origin", "rclaude/fix"],
    ));
    assert!(out.status.success(), "bearer push failed: {}", stderr(&out));
    assert_eq!(server.branch("acme", "widget", "rclaude/fix"), Some(again));
}

#[test]
fn protocol_v2_fetch_and_partial_clone_work() {
    let (tmp, server, src) = served_repo(false);
    let url = server.repo_url("acme", "widget");

    let v2 = tmp.path().join("v2");
    git(
        tmp.path(),
        &[
            "-c",
            "protocol.version=2",
            "clone",
            "-q",
            &url,
            v2.to_str().unwrap(),
        ],
    );
    let requests = server.requests();
    assert!(
        requests
            .iter()
            .all(|r| r.git_protocol.as_deref() == Some("version=2")),
        "{requests:#?}"
    );
    // A protocol v2 request is a POST to git-upload-pack after the v2 capability advertisement.
    assert!(
        requests
            .iter()
            .any(|r| r.method == "POST" && r.path.ends_with("/git-upload-pack"))
    );

    // Fetch a new commit over v2, and over v0.
    git(&src, &["commit", "-q", "--allow-empty", "-m", "later"]);
    server.seed_from("acme", "widget", &src);
    server.clear_requests();
    git(&v2, &["-c", "protocol.version=2", "fetch", "-q", "origin"]);
    assert_eq!(
        git(&v2, &["rev-parse", "origin/main"]),
        git(&src, &["rev-parse", "main"])
    );
    assert!(server.requests().iter().all(|r| r.status == 200));
    server.clear_requests();
    git(&v2, &["-c", "protocol.version=0", "fetch", "-q", "origin"]);
    assert!(server.requests().iter().all(|r| r.git_protocol.is_none()));

    // Many local commits make a protocol v0 negotiation (which repeats every `have` in each
    // stateless round) big enough for git to gzip it; http-backend inflates it.
    // They are dated after everything else, so the negotiation offers them first.
    git(&v2, &["checkout", "-q", "-b", "local"]);
    let later = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600;
    for n in 0..120 {
        let mut c = git_cmd(
            &v2,
            &["commit", "-q", "--allow-empty", "-m", &format!("local {n}")],
        );
        c.env("GIT_COMMITTER_DATE", format!("@{} +0000", later + n));
        assert!(run(c).status.success());
    }
    git(&src, &["commit", "-q", "--allow-empty", "-m", "even later"]);
    server.seed_from("acme", "widget", &src);
    server.clear_requests();
    git(&v2, &["-c", "protocol.version=0", "fetch", "-q", "origin"]);
    let requests = server.requests();
    assert!(
        requests
            .iter()
            .any(|r| r.content_encoding.as_deref() == Some("gzip") && r.status == 200),
        "no gzip request: {requests:#?}"
    );
    assert!(requests.iter().all(|r| r.status == 200));
    assert_eq!(
        git(&v2, &["rev-parse", "origin/main"]),
        git(&src, &["rev-parse", "main"])
    );

    // A blobless clone fetches blobs on demand.
    let partial = tmp.path().join("partial");
    git(
        tmp.path(),
        &[
            "clone",
            "-q",
            "--no-checkout",
            "--filter=blob:none",
            &url,
            partial.to_str().unwrap(),
        ],
    );
    assert_eq!(git(&partial, &["config", "remote.origin.promisor"]), "true");
    let missing = git(
        &partial,
        &["rev-list", "--objects", "--missing=print", "HEAD"],
    );
    assert!(
        missing.lines().any(|l| l.starts_with('?')),
        "no blob was left out:\n{missing}"
    );
    git(&partial, &["checkout", "-q", "main"]);
    assert_eq!(
        std::fs::read_to_string(partial.join("README.md")).unwrap(),
        "# widget\n"
    );
}

// ---------------------------------------------------------------------------------------------
// The GitHub fake

/// A small reqwest client for the fake, with the headers GitHub asks clients to send.
struct Api {
    rt: tokio::runtime::Runtime,
    client: reqwest::Client,
    base: String,
}

struct Answer {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Value,
}

impl Api {
    fn new(base: &str) -> Api {
        Api {
            rt: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap(),
            client: reqwest::Client::builder()
                .user_agent("rclaude-tests")
                .build()
                .unwrap(),
            base: base.to_string(),
        }
    }

    fn request(&self, method: &str, path: &str, token: Option<&str>) -> reqwest::RequestBuilder {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut req = self
            .client
            .request(method, format!("{}{path}", self.base))
            .header("accept", "application/vnd.github+json")
            .header("x-github-api-version", "2022-11-28");
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        req
    }

    fn send(&self, req: reqwest::RequestBuilder) -> Answer {
        self.rt.block_on(async {
            let resp = req.send().await.unwrap();
            let status = resp.status().as_u16();
            let headers = resp.headers().clone();
            let text = resp.text().await.unwrap();
            let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
            Answer {
                status,
                headers,
                body,
            }
        })
    }

    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Answer {
        let mut req = self.request(method, path, Some(API_TOKEN));
        if let Some(body) = body {
            req = req.json(&body);
        }
        self.send(req)
    }
}

/// A git server with `acme/widget` (branches `main`, `feature`, `same` = main) and a GitHub fake
/// that reads it; `None` when the OpenAPI description is unavailable and opted out.
fn github_with_git(test: &str) -> Option<(tempfile::TempDir, GitHttp, FakeGithub, Api)> {
    github_server::github_spec_or_skip(test)?;
    let (tmp, git_server, src) = served_repo(false);
    git(&src, &["branch", "same", "main"]);
    git_server.seed_from("acme", "widget", &src);
    let fake = FakeGithub::with_git(git_server.root(), &git_server.url);
    fake.add_repo("acme", "widget", "main");
    fake.add_token(API_TOKEN);
    let api = Api::new(&fake.url);
    Some((tmp, git_server, fake, api))
}

#[test]
fn pull_request_lifecycle_follows_githubs_description() {
    let Some((_tmp, git_server, fake, api)) = github_with_git("pull request lifecycle") else {
        return;
    };

    let repo = api.call("GET", "/repos/acme/widget", None);
    assert_eq!(repo.status, 200, "{}", repo.body);
    assert_eq!(repo.body["full_name"], "acme/widget");
    assert_eq!(repo.body["default_branch"], "main");
    assert_eq!(repo.body["private"], false);
    assert_eq!(
        repo.body["clone_url"],
        git_server.repo_url("acme", "widget")
    );
    // Names are case-insensitive, as on GitHub.
    assert_eq!(api.call("GET", "/repos/ACME/Widget", None).status, 200);

    let created = api.call(
        "POST",
        "/repos/acme/widget/pulls",
        Some(json!({
            "title": "Add a feature",
            "head": "feature",
            "base": "main",
            "body": "Made in a sandbox.",
            "draft": false,
            "maintainer_can_modify": true,
        })),
    );
    assert_eq!(created.status, 201, "{}", created.body);
    let pr = &created.body;
    assert_eq!(pr["number"], 1);
    assert_eq!(pr["state"], "open");
    assert_eq!(pr["html_url"], "https://github.example/acme/widget/pull/1");
    assert_eq!(pr["head"]["label"], "acme:feature");
    assert_eq!(pr["head"]["ref"], "feature");
    assert_eq!(
        pr["head"]["sha"].as_str(),
        git_server.branch("acme", "widget", "feature").as_deref()
    );
    assert_eq!(
        pr["base"]["sha"].as_str(),
        git_server.branch("acme", "widget", "main").as_deref()
    );
    assert_eq!(
        (pr["commits"].as_u64(), pr["additions"].as_u64()),
        (Some(1), Some(2))
    );
    assert_eq!(pr["user"]["login"], "octocat");
    assert_eq!(
        created.headers["location"],
        format!("{}/repos/acme/widget/pulls/1", fake.url).as_str()
    );

    let again = api.call(
        "POST",
        "/repos/acme/widget/pulls",
        Some(json!({ "title": "Again", "head": "acme:feature", "base": "main" })),
    );
    assert_eq!(again.status, 422, "{}", again.body);
    assert_eq!(again.body["message"], "Validation Failed");
    assert_eq!(
        again.body["errors"][0]["message"],
        "A pull request already exists for acme:feature."
    );

    let listed = api.call(
        "GET",
        "/repos/acme/widget/pulls?head=acme%3Afeature&state=open&per_page=10",
        None,
    );
    assert_eq!(listed.status, 200);
    let items = listed.body.as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["number"], 1);
    assert!(
        items[0].get("mergeable").is_none(),
        "list items are pull-request-simple"
    );
    let other = api.call("GET", "/repos/acme/widget/pulls?head=acme:other", None);
    assert_eq!(other.body, json!([]));

    let patched = api.call(
        "PATCH",
        "/repos/acme/widget/pulls/1",
        Some(json!({ "title": "Add a better feature" })),
    );
    assert_eq!(patched.status, 200, "{}", patched.body);
    assert_eq!(patched.body["title"], "Add a better feature");
    assert_eq!(patched.body["body"], "Made in a sandbox.");
    let got = api.call("GET", "/repos/acme/widget/pulls/1", None);
    assert_eq!(got.body["title"], "Add a better feature");

    let missing_head = api.call(
        "POST",
        "/repos/acme/widget/pulls",
        Some(json!({ "title": "Nope", "head": "no-such-branch", "base": "main" })),
    );
    assert_eq!(missing_head.status, 422);
    assert_eq!(
        missing_head.body["errors"][0],
        json!({ "resource": "PullRequest", "field": "head", "code": "invalid" })
    );
    let missing_base = api.call(
        "POST",
        "/repos/acme/widget/pulls",
        Some(json!({ "title": "Nope", "head": "feature", "base": "no-such-base" })),
    );
    assert_eq!(missing_base.status, 422);
    assert_eq!(missing_base.body["errors"][0]["field"], "base");
    let no_commits = api.call(
        "POST",
        "/repos/acme/widget/pulls",
        Some(json!({ "title": "Nothing", "head": "same", "base": "main" })),
    );
    assert_eq!(no_commits.status, 422);
    assert_eq!(
        no_commits.body["errors"][0]["message"],
        "No commits between main and same"
    );

    let anonymous = api.send(api.request("GET", "/repos/acme/widget/pulls", None));
    assert_eq!(anonymous.status, 401);
    assert_eq!(anonymous.body["message"], "Requires authentication");
    let wrong = api.send(api.request("GET", "/repos/acme/widget/pulls", Some("ghp_wrong")));
    assert_eq!(wrong.status, 401);
    assert_eq!(wrong.body["message"], "Bad credentials");
    let unknown = api.call("GET", "/repos/acme/nothing", None);
    assert_eq!(unknown.status, 404);
    assert_eq!(
        unknown.body,
        json!({ "message": "Not Found", "documentation_url": "https://docs.github.com/rest", "status": "404" })
    );
    assert_eq!(
        api.call("PATCH", "/repos/acme/widget/pulls/99", Some(json!({})))
            .status,
        404
    );

    // Closing; then the head is free for a new pull request (with no body: `body` is null).
    let closed = api.call(
        "PATCH",
        "/repos/acme/widget/pulls/1",
        Some(json!({ "state": "closed" })),
    );
    assert_eq!(closed.body["state"], "closed");
    assert!(closed.body["closed_at"].is_string());
    let open = api.call("GET", "/repos/acme/widget/pulls?state=open", None);
    assert_eq!(open.body, json!([]));
    let second = api.call(
        "POST",
        "/repos/acme/widget/pulls",
        Some(
            json!({ "title": "Second try", "head": "acme:feature", "base": "main", "draft": true }),
        ),
    );
    assert_eq!(second.status, 201, "{}", second.body);
    assert_eq!(second.body["number"], 2);
    assert_eq!(second.body["draft"], true);
    assert_eq!(second.body["body"], Value::Null);
    let all = api.call(
        "GET",
        "/repos/acme/widget/pulls?state=all&direction=asc",
        None,
    );
    let numbers: Vec<u64> = all
        .body
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["number"].as_u64())
        .collect();
    assert_eq!(numbers, vec![1, 2]);
    let reopen = api.call(
        "PATCH",
        "/repos/acme/widget/pulls/1",
        Some(json!({ "state": "open" })),
    );
    assert_eq!(reopen.status, 422, "{}", reopen.body);

    let pulls = fake.pulls("acme", "widget");
    assert_eq!(pulls.len(), 2);
    assert_eq!(pulls[0]["state"], "closed");

    // Recorded without the token.
    let requests = fake.requests();
    assert!(
        requests
            .iter()
            .all(|r| !r.headers.contains_key("authorization"))
    );
    assert!(!format!("{requests:?}").contains(API_TOKEN));
    assert_eq!(requests[0].headers["x-github-api-version"], "2022-11-28");

    let violations = fake.violations();
    assert!(
        violations.is_empty(),
        "violations:\n{}",
        violations.join("\n")
    );
}

#[test]
fn violations_report_requests_that_break_githubs_description() {
    if github_server::github_spec_or_skip("violations test").is_none() {
        return;
    }
    let fake = FakeGithub::start();
    fake.add_repo("acme", "widget", "main");
    fake.set_branch("acme", "widget", "main", &"a".repeat(40));
    fake.set_branch("acme", "widget", "feature", &"b".repeat(40));
    fake.add_token(API_TOKEN);
    let api = Api::new(&fake.url);

    // Each request is followed by the violations it added.
    let mut seen = 0;
    let mut next = |expect: &str| {
        let all = fake.violations();
        let new = all[seen..].to_vec();
        seen = all.len();
        assert!(
            new.iter().any(|v| v.contains(expect)),
            "expected a violation mentioning {expect:?}, got {new:#?}"
        );
        new
    };

    let bad_draft = api.call(
        "POST",
        "/repos/acme/widget/pulls",
        Some(json!({ "title": "t", "head": "feature", "base": "main", "draft": "yes" })),
    );
    assert_eq!(bad_draft.status, 422);
    assert!(
        bad_draft.body["message"]
            .as_str()
            .unwrap()
            .starts_with("Invalid request.")
    );
    next("/draft");

    let no_head = api.call(
        "POST",
        "/repos/acme/widget/pulls",
        Some(json!({ "title": "t", "base": "main" })),
    );
    assert_eq!(no_head.status, 422);
    next("\"head\" is a required property");

    api.call("GET", "/repos/acme/widget/pulls?state=bogus", None);
    next("query parameter `state`");

    api.call("GET", "/repos/acme/widget/pulls?per_page=many", None);
    next("query parameter `per_page`");

    api.call("GET", "/repos/acme/widget/pulls?frobnicate=1", None);
    next("`frobnicate` is not declared");

    api.call(
        "PATCH",
        "/repos/acme/widget/pulls/first",
        Some(json!({ "title": "t" })),
    );
    next("path parameter `pull_number`");

    api.call(
        "PATCH",
        "/repos/acme/widget/pulls/1",
        Some(json!({ "state": "merged" })),
    );
    next("/state");

    let text = api.send(
        api.request("POST", "/repos/acme/widget/pulls", Some(API_TOKEN))
            .header("content-type", "text/plain")
            .body(r#"{"title":"t","head":"feature","base":"main"}"#),
    );
    assert_eq!(text.status, 201);
    next("is not application/json");

    let unparsable = api.send(
        api.request("POST", "/repos/acme/widget/pulls", Some(API_TOKEN))
            .header("content-type", "application/json")
            .body("{not json"),
    );
    assert_eq!(unparsable.status, 400);
    assert_eq!(unparsable.body["message"], "Problems parsing JSON");
    next("not JSON");

    api.call("GET", "/repos/acme/widget/pull", None);
    next("no path of GitHub's OpenAPI description matches");

    api.call("DELETE", "/repos/acme/widget/pulls/1", None);
    next("no DELETE operation");

    api.call("GET", "/repos/acme/widget/issues", None);
    next("does not implement");

    let no_agent = api.rt.block_on(async {
        reqwest::Client::new()
            .get(format!("{}/repos/acme/widget", fake.url))
            .bearer_auth(API_TOKEN)
            .send()
            .await
            .unwrap()
    });
    assert_eq!(no_agent.status().as_u16(), 403);
    next("no User-Agent");

    // Well-formed requests add none.
    let ok = api.call(
        "GET",
        "/repos/acme/widget/pulls?state=all&sort=created",
        None,
    );
    assert_eq!(ok.status, 200);
    assert_eq!(
        fake.violations().len(),
        seen,
        "{:#?}",
        &fake.violations()[seen..]
    );
}

#[test]
fn response_checks_catch_an_answer_that_drifts_from_github() {
    if github_server::github_spec_or_skip("response check test").is_none() {
        return;
    }
    let check = |status: u16, body: &Value| {
        openapi().check(&Exchange {
            method: "GET",
            path: "/repos/acme/widget/pulls/1",
            query: None,
            request_content_type: None,
            request_body: b"",
            status,
            response_content_type: Some("application/json"),
            response_body: Some(body),
            check_response: true,
        })
    };
    let drifted = check(200, &json!({ "number": "one", "state": "open" }));
    assert!(
        drifted.iter().any(|v| v.contains("/number")),
        "{drifted:#?}"
    );
    assert!(
        drifted.iter().any(|v| v.contains("required property")),
        "{drifted:#?}"
    );
    // Undocumented error statuses must still be GitHub's basic error.
    assert!(check(401, &json!({ "message": "Bad credentials" })).is_empty());
    assert!(!check(401, &json!({ "message": 7 })).is_empty());
    // A 2xx the operation does not document is reported.
    let undocumented = check(202, &json!({}));
    assert!(
        undocumented.iter().any(|v| v.contains("not documented")),
        "{undocumented:#?}"
    );
}

#[test]
fn injected_answers_and_pagination() {
    if github_server::github_spec_or_skip("injection and pagination test").is_none() {
        return;
    }
    let fake = FakeGithub::start();
    fake.add_repo("acme", "widget", "main");
    fake.set_branch("acme", "widget", "main", &"a".repeat(40));
    for n in 1..=3 {
        fake.set_branch(
            "acme",
            "widget",
            &format!("b{n}"),
            &format!("{n}").repeat(40),
        );
    }
    fake.add_token(API_TOKEN);
    let api = Api::new(&fake.url);

    fake.inject(
        "POST",
        "/repos/{owner}/{repo}/pulls",
        502,
        json!({ "message": "Server Error" }),
    );
    let body = json!({ "title": "t", "head": "b1", "base": "main" });
    let first = api.call("POST", "/repos/acme/widget/pulls", Some(body.clone()));
    assert_eq!(
        (first.status, &first.body),
        (502, &json!({ "message": "Server Error" }))
    );
    let retried = api.call("POST", "/repos/acme/widget/pulls", Some(body));
    assert_eq!(retried.status, 201);
    for n in 2..=3 {
        let r = api.call(
            "POST",
            "/repos/acme/widget/pulls",
            Some(json!({ "title": format!("t{n}"), "head": format!("acme:b{n}"), "base": "main" })),
        );
        assert_eq!(r.status, 201, "{}", r.body);
    }

    let page1 = api.call("GET", "/repos/acme/widget/pulls?per_page=2", None);
    let numbers = |a: &Answer| -> Vec<u64> {
        a.body
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|p| p["number"].as_u64())
            .collect()
    };
    assert_eq!(numbers(&page1), vec![3, 2]);
    let link = page1.headers["link"].to_str().unwrap().to_string();
    assert!(
        link.contains("rel=\"next\"") && link.contains("page=2"),
        "{link}"
    );
    let next = link
        .split(',')
        .find(|l| l.contains("rel=\"next\""))
        .and_then(|l| l.split(['<', '>']).nth(1))
        .unwrap()
        .strip_prefix(&fake.url)
        .unwrap()
        .to_string();
    let page2 = api.call("GET", &next, None);
    assert_eq!(numbers(&page2), vec![1]);
    assert!(page2.headers.get("link").is_none());

    // A `head` without `user:` is ignored by GitHub's filter.
    let unqualified = api.call("GET", "/repos/acme/widget/pulls?head=b1", None);
    assert_eq!(numbers(&unqualified), vec![3, 2, 1]);
    let qualified = api.call("GET", "/repos/acme/widget/pulls?head=acme:b1", None);
    assert_eq!(numbers(&qualified), vec![1]);

    let violations = fake.violations();
    assert!(
        violations.is_empty(),
        "violations:\n{}",
        violations.join("\n")
    );
}

#[test]
fn private_repos_and_api_versions() {
    if github_server::github_spec_or_skip("private repo test").is_none() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let git_server = GitHttp::start(&tmp.path().join("server"));
    git_server.create_repo("acme", "secret", true);
    let fake = FakeGithub::with_git(git_server.root(), &git_server.url);
    fake.add_repo("acme", "secret", "main");
    fake.add_token(API_TOKEN);
    let api = Api::new(&fake.url);

    let repo = api.call("GET", "/repos/acme/secret", None);
    assert_eq!(repo.status, 200, "{}", repo.body);
    assert_eq!(
        (&repo.body["private"], &repo.body["visibility"]),
        (&json!(true), &json!("private"))
    );

    let future = api.send(
        api.client
            .get(format!("{}/repos/acme/secret", fake.url))
            .bearer_auth(API_TOKEN)
            .header("x-github-api-version", "2099-01-01"),
    );
    assert_eq!(future.status, 400, "{}", future.body);

    // An empty repository has no branches: no pull request can be opened.
    let pr = api.call(
        "POST",
        "/repos/acme/secret/pulls",
        Some(json!({ "title": "t", "head": "feature", "base": "main" })),
    );
    assert_eq!(pr.status, 422);

    let violations = fake.violations();
    assert!(
        violations.is_empty(),
        "violations:\n{}",
        violations.join("\n")
    );
}
