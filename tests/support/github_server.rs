//! A local stand-in for GitHub's REST API (version 2022-11-28) for the endpoints a pull request
//! workflow uses, checked against GitHub's own published OpenAPI description.
//!
//! - Endpoints: `GET /repos/{owner}/{repo}` (full-repository), `GET /repos/{owner}/{repo}/pulls`
//!   (`state`, `head`, `base`, `sort`, `direction`, `per_page`, `page`; a `Link` header when there
//!   are more pages), `POST /repos/{owner}/{repo}/pulls`, `GET` and `PATCH
//!   /repos/{owner}/{repo}/pulls/{pull_number}`. Errors are GitHub's: `{"message", "documentation_url",
//!   "status"}`, and for 422 `{"message": "Validation Failed", "errors": [...]}`.
//! - As GitHub does: owner and repository names are case-insensitive; `head=<branch>` without
//!   `user:` is ignored by the list filter (GitHub's documented format is `user:ref-name`); a
//!   second open pull request for the same head and base, a head or base branch that does not
//!   exist, or a head without commits beyond the base is 422; a body that does not fit the
//!   operation's schema is 422 `Invalid request.`; malformed JSON is 400 `Problems parsing JSON`;
//!   a request without `User-Agent` is 403 (plain text, as GitHub's front end answers); an
//!   `X-GitHub-Api-Version` other than 2022-11-28 is 400.
//! - Auth: `Authorization: Bearer <token>`, `token <token>` or Basic with the token as password;
//!   tokens are added with [`FakeGithub::add_token`]. Every endpoint needs one here (401 `Requires
//!   authentication`; an unknown token is 401 `Bad credentials`).
//! - Branches: with [`FakeGithub::with_git`] the fake reads the bare repositories of a
//!   `GitHttp` server (`<root>/<owner>/<name>.git`) for branch tips, commit counts and diff
//!   statistics, and the `rclaude-test-private` marker for privacy; without it, branches are
//!   those set with [`FakeGithub::set_branch`].
//! - Every request is recorded ([`FakeGithub::requests`], without `Authorization`), and checked
//!   against GitHub's OpenAPI description ([`FakeGithub::violations`]): the operation exists for
//!   the method and path template, path and query parameters are declared and fit their
//!   schemas, the body is JSON and fits the operation's request body schema. The fake's own
//!   answers are checked too (the schema of the status documented for the operation; an
//!   undocumented error status must be a `basic-error`), so the fake cannot drift from GitHub's
//!   shapes. Canned answers from [`FakeGithub::inject`] and the `User-Agent` rejection are not
//!   checked (their requests are).
//! - The description is `api.github.com.json` of the npm package `@octokit/openapi` (GitHub's
//!   github/rest-api-description, republished): [`spec_path`], fetched once by
//!   `scripts/github-openapi.sh` when missing. Tests call [`github_spec_or_skip`] first.
#![allow(dead_code)]

#[path = "skip.rs"]
mod skip;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::Response;
use base64::Engine;
use serde_json::{Map, Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Where `html_url`s point (the web side of the fake GitHub, which does not exist).
pub const HTML_BASE: &str = "https://github.example";
/// The only `X-GitHub-Api-Version` the fake accepts (and whose semantics it follows).
pub const API_VERSION: &str = "2022-11-28";
/// The version of `@octokit/openapi` that `scripts/github-openapi.sh` fetches.
pub const OPENAPI_PACKAGE_VERSION: &str = "23.0.2";
/// The variable naming a copy of `api.github.com.json` to use instead of the default path.
pub const SPEC_ENV: &str = "RCLAUDE_GITHUB_OPENAPI";
/// The login of tokens added with [`FakeGithub::add_token`].
pub const DEFAULT_LOGIN: &str = "octocat";

const DOCS: &str = "https://docs.github.com/rest";
/// The marker file of a private bare repository (`git_http::PRIVATE_MARKER`).
const PRIVATE_MARKER: &str = "rclaude-test-private";
const USER_AGENT_MESSAGE: &str = "Request forbidden by administrative rules. Please make sure \
     your request has a User-Agent header \
     (https://docs.github.com/en/rest/overview/resources-in-the-rest-api#user-agent-required). \
     Check https://developer.github.com for other possible causes.";

// ---------------------------------------------------------------------------------------------
// The OpenAPI description: where it is, fetching it once, loading it once

/// `$RCLAUDE_GITHUB_OPENAPI` if set, else `target/github-openapi/api.github.com.json` under
/// the workspace (`CARGO_MANIFEST_DIR`).
pub fn spec_path() -> PathBuf {
    match std::env::var_os(SPEC_ENV) {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("target")
            .join("github-openapi")
            .join("api.github.com.json"),
    }
}

/// The description's path, fetched with `scripts/github-openapi.sh` if missing (once per
/// process; across processes a lock file next to it serializes the download).
fn ensure_spec() -> &'static Result<PathBuf, String> {
    static FETCHED: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    FETCHED.get_or_init(|| {
        let path = spec_path();
        if path.is_file() {
            return Ok(path);
        }
        if std::env::var_os(SPEC_ENV).is_some_and(|v| !v.is_empty()) {
            return Err(format!(
                "{SPEC_ENV} names {}, which does not exist",
                path.display()
            ));
        }
        let dir = path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join(".fetch.lock"))
            .map_err(|e| format!("open the fetch lock in {}: {e}", dir.display()))?;
        // SAFETY: flock on a descriptor this function owns; released when `lock` is dropped.
        let _ = unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&lock), libc::LOCK_EX) };
        if path.is_file() {
            return Ok(path);
        }
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/github-openapi.sh");
        let out = std::process::Command::new("bash")
            .arg(&script)
            .arg(&path)
            .output()
            .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
        if !out.status.success() || !path.is_file() {
            return Err(format!(
                "{} failed ({}): {}",
                script.display(),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(path)
    })
}

fn missing_spec_help(err: &str) -> String {
    format!(
        "GitHub's OpenAPI description is needed and unavailable: {err}. Run \
         scripts/github-openapi.sh (needs npm and the npm registry; fetches \
         @octokit/openapi@{OPENAPI_PACKAGE_VERSION}), or set {SPEC_ENV} to a copy of \
         api.github.com.json; RCLAUDE_SKIP_CLAUDE=1 skips the tests that need it"
    )
}

/// The path of GitHub's OpenAPI description, fetching it if needed. `None` when it cannot be
/// had and `RCLAUDE_SKIP_CLAUDE=1` (npm opted out): the test named `test_name` should return.
/// Panics, saying what to do, when it cannot be had otherwise.
pub fn github_spec_or_skip(test_name: &str) -> Option<PathBuf> {
    match ensure_spec() {
        Ok(path) => Some(path.clone()),
        Err(err) => {
            if skip::opted_out(
                "RCLAUDE_SKIP_CLAUDE",
                &format!("{test_name}: GitHub's OpenAPI description unavailable ({err})"),
            ) {
                return None;
            }
            panic!("{}", missing_spec_help(err));
        }
    }
}

/// GitHub's OpenAPI description, loaded once per process. Panics (see
/// [`github_spec_or_skip`]) when it cannot be had.
pub fn openapi() -> &'static OpenApi {
    static SPEC: OnceLock<OpenApi> = OnceLock::new();
    SPEC.get_or_init(|| {
        let path = match ensure_spec() {
            Ok(p) => p,
            Err(e) => panic!("{}", missing_spec_help(e)),
        };
        OpenApi::load(path).unwrap_or_else(|e| panic!("{}", missing_spec_help(&e)))
    })
}

// ---------------------------------------------------------------------------------------------
// Checking exchanges against the description

/// An OpenAPI 3.0 description with request and response checks. Schemas are compiled to JSON
/// Schema 2020-12 validators (formats checked; OpenAPI's `nullable: true` also admits `null`;
/// `#/components/...` references resolved by copying what a schema reaches next to it), once
/// per operation and part, and cached.
pub struct OpenApi {
    doc: Value,
    templates: Vec<PathTemplate>,
    validators: Mutex<HashMap<String, Arc<jsonschema::Validator>>>,
}

struct PathTemplate {
    template: String,
    /// `None` for a `{parameter}` segment.
    segments: Vec<Option<String>>,
    names: Vec<String>,
}

/// One HTTP exchange to check.
pub struct Exchange<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub request_content_type: Option<&'a str>,
    pub request_body: &'a [u8],
    pub status: u16,
    pub response_content_type: Option<&'a str>,
    /// The answer's JSON body (`None`: no body).
    pub response_body: Option<&'a Value>,
    /// Whether to check the answer at all.
    pub check_response: bool,
}

/// An operation found for a request: its path template, path parameter values and object.
pub struct Operation<'a> {
    pub template: &'a str,
    pub method: String,
    pub params: Vec<(String, String)>,
    pub op: &'a Value,
}

impl Operation<'_> {
    /// `POST /repos/{owner}/{repo}/pulls (pulls/create)`.
    pub fn label(&self) -> String {
        format!(
            "{} {} ({})",
            self.method.to_uppercase(),
            self.template,
            self.op["operationId"].as_str().unwrap_or("?")
        )
    }
}

impl OpenApi {
    /// Reads and indexes the description at `path`.
    pub fn load(path: &Path) -> Result<OpenApi, String> {
        let text =
            std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let doc: Value = serde_json::from_slice(&text)
            .map_err(|e| format!("{} is not JSON: {e}", path.display()))?;
        Self::from_value(doc).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Indexes a description already parsed.
    pub fn from_value(doc: Value) -> Result<OpenApi, String> {
        if !doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")) {
            return Err("not an OpenAPI 3 description".into());
        }
        let paths = doc["paths"]
            .as_object()
            .ok_or("the description has no paths")?;
        let templates = paths
            .keys()
            .map(|t| {
                let mut names = Vec::new();
                let segments = t
                    .split('/')
                    .skip(1)
                    .map(|s| {
                        if let Some(name) = s.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                            names.push(name.to_string());
                            None
                        } else {
                            Some(s.to_string())
                        }
                    })
                    .collect();
                PathTemplate {
                    template: t.clone(),
                    segments,
                    names,
                }
            })
            .collect();
        Ok(OpenApi {
            doc,
            templates,
            validators: Mutex::new(HashMap::new()),
        })
    }

    /// The whole description.
    pub fn doc(&self) -> &Value {
        &self.doc
    }

    /// The path template matching `path` (percent-decoded segments; literal segments win over
    /// parameters, leftmost first), with the parameter values.
    pub fn match_path(&self, path: &str) -> Option<(&str, Vec<(String, String)>)> {
        let segs: Vec<String> = path.split('/').skip(1).map(pct_decode).collect();
        let mut best: Option<(&PathTemplate, Vec<bool>)> = None;
        for t in &self.templates {
            if t.segments.len() != segs.len() {
                continue;
            }
            let fits = t.segments.iter().zip(&segs).all(|(p, s)| match p {
                Some(lit) => lit == s,
                None => !s.is_empty(),
            });
            if !fits {
                continue;
            }
            let score: Vec<bool> = t.segments.iter().map(Option::is_some).collect();
            if best.as_ref().is_none_or(|(_, b)| score > *b) {
                best = Some((t, score));
            }
        }
        let (t, _) = best?;
        let values = t
            .segments
            .iter()
            .zip(&segs)
            .filter(|(p, _)| p.is_none())
            .map(|(_, s)| s.clone());
        Some((&t.template, t.names.iter().cloned().zip(values).collect()))
    }

    /// The operation for `method path`, if the description has one.
    pub fn operation(&self, method: &str, path: &str) -> Option<Operation<'_>> {
        let (template, params) = self.match_path(path)?;
        let method = method.to_ascii_lowercase();
        let op = self.doc["paths"][template].get(&method)?;
        Some(Operation {
            template,
            method,
            params,
            op,
        })
    }

    /// Follows a top-level `$ref` (parameters, request bodies, responses).
    fn resolve<'a>(&'a self, v: &'a Value) -> &'a Value {
        let mut v = v;
        for _ in 0..8 {
            match v.get("$ref").and_then(Value::as_str) {
                Some(r) => match r.strip_prefix('#').and_then(|p| self.doc.pointer(p)) {
                    Some(target) => v = target,
                    None => return &Value::Null,
                },
                None => return v,
            }
        }
        v
    }

    /// The parameters of an operation, path-level ones included (the operation's win).
    fn parameters<'a>(&'a self, op: &Operation<'a>) -> Vec<&'a Value> {
        let mut out: Vec<&Value> = Vec::new();
        let path_level = self.doc["paths"][op.template]["parameters"].as_array();
        let op_level = op.op["parameters"].as_array();
        for p in op_level
            .into_iter()
            .flatten()
            .chain(path_level.into_iter().flatten())
        {
            let p = self.resolve(p);
            let key = (&p["name"], &p["in"]);
            if !out.iter().any(|q| (&q["name"], &q["in"]) == key) {
                out.push(p);
            }
        }
        out
    }

    /// Checks one exchange; returns what does not follow the description (empty: all does).
    pub fn check(&self, ex: &Exchange<'_>) -> Vec<String> {
        let shown = match ex.query {
            Some(q) => format!("{} {}?{q}", ex.method, ex.path),
            None => format!("{} {}", ex.method, ex.path),
        };
        let Some(op) = self.operation(ex.method, ex.path) else {
            return vec![match self.match_path(ex.path) {
                Some((t, _)) => format!(
                    "{shown}: GitHub's OpenAPI description has no {} operation on {t}",
                    ex.method
                ),
                None => format!("{shown}: no path of GitHub's OpenAPI description matches"),
            }];
        };
        let label = op.label();
        let mut out = Vec::new();
        let mut note = |what: String| out.push(format!("{shown} [{label}]: {what}"));
        let params = self.parameters(&op);

        // Path parameters.
        for (name, value) in &op.params {
            match params
                .iter()
                .find(|p| p["in"] == "path" && p["name"] == name.as_str())
            {
                Some(p) => {
                    let key = format!("{label} path {name}");
                    for e in self.validate(&key, &p["schema"], &coerce(value, &p["schema"])) {
                        note(format!("path parameter `{name}` = {value:?}: {e}"));
                    }
                }
                None => note(format!("path parameter `{name}` is not declared")),
            }
        }

        // Query parameters.
        let query = parse_query(ex.query);
        for (name, value) in &query {
            match params
                .iter()
                .find(|p| p["in"] == "query" && p["name"] == name.as_str())
            {
                Some(p) => {
                    let key = format!("{label} query {name}");
                    for e in self.validate(&key, &p["schema"], &coerce(value, &p["schema"])) {
                        note(format!("query parameter `{name}` = {value:?}: {e}"));
                    }
                }
                None => note(format!(
                    "query parameter `{name}` is not declared by the operation"
                )),
            }
        }
        for p in params
            .iter()
            .filter(|p| p["in"] == "query" && p["required"] == true)
        {
            let name = p["name"].as_str().unwrap_or_default();
            if !query.iter().any(|(n, _)| n == name) {
                note(format!("required query parameter `{name}` is missing"));
            }
        }

        // The request body.
        let request_body = op.op.get("requestBody").map(|b| self.resolve(b));
        let has_body = !ex.request_body.iter().all(u8::is_ascii_whitespace);
        match request_body {
            None if has_body => note("the operation takes no request body, one was sent".into()),
            None => {}
            Some(rb) if !has_body && rb["required"] == true => {
                note("the request body is required and missing".into());
            }
            Some(_) if !has_body => {}
            Some(_) => {
                if !is_json(ex.request_content_type) {
                    note(format!(
                        "request Content-Type {:?} is not application/json",
                        ex.request_content_type.unwrap_or("(none)")
                    ));
                }
                match serde_json::from_slice::<Value>(ex.request_body) {
                    Err(e) => note(format!("the request body is not JSON: {e}")),
                    Ok(body) => {
                        for e in self.request_body_errors(&op, &body) {
                            note(format!("request body: {e}"));
                        }
                    }
                }
            }
        }

        if ex.check_response {
            for e in self.check_response(&op, ex) {
                note(e);
            }
        }
        out
    }

    /// The errors of a JSON request body against the operation's `application/json` schema.
    pub fn request_body_errors(&self, op: &Operation<'_>, body: &Value) -> Vec<String> {
        let request_body = op.op.get("requestBody").map(|b| self.resolve(b));
        match request_body.and_then(|rb| rb["content"].get("application/json")) {
            None => vec!["the operation takes no JSON request body".into()],
            Some(media) => {
                let key = format!("{} request body", op.label());
                self.validate(&key, &media["schema"], body)
            }
        }
    }

    fn check_response(&self, op: &Operation<'_>, ex: &Exchange<'_>) -> Vec<String> {
        let label = op.label();
        let status = ex.status;
        let responses = &op.op["responses"];
        let documented = responses
            .get(status.to_string())
            .or_else(|| responses.get("default"))
            .map(|r| self.resolve(r));
        let (key, schema) = match documented {
            Some(r) => match r["content"].as_object() {
                None => {
                    return if ex.response_body.is_some() {
                        vec![format!(
                            "the fake answered {status} with a body; the description gives none"
                        )]
                    } else {
                        vec![]
                    };
                }
                Some(content) => match content.get("application/json") {
                    Some(media) => (
                        format!("{label} response {status}"),
                        media["schema"].clone(),
                    ),
                    None => {
                        return vec![format!(
                            "the fake answered {status} with JSON; the description gives {:?}",
                            content.keys().collect::<Vec<_>>()
                        )];
                    }
                },
            },
            // GitHub documents only some error statuses per operation (none has 401), while
            // every endpoint answers them; they are GitHub's basic error.
            None if status >= 400 => (
                "basic-error".to_string(),
                json!({"$ref": "#/components/schemas/basic-error"}),
            ),
            None => {
                return vec![format!(
                    "status {status} is not documented for the operation"
                )];
            }
        };
        let mut out = Vec::new();
        if !is_json(ex.response_content_type) {
            out.push(format!(
                "the fake's {status} Content-Type {:?} is not JSON",
                ex.response_content_type.unwrap_or("(none)")
            ));
        }
        match ex.response_body {
            None => out.push(format!("the fake's {status} has no body")),
            Some(body) => {
                for e in self.validate(&key, &schema, body) {
                    out.push(format!("the fake's {status} answer: {e}"));
                }
            }
        }
        out
    }

    /// The errors of `instance` against `schema` (validator cached under `key`).
    pub fn validate(&self, key: &str, schema: &Value, instance: &Value) -> Vec<String> {
        let validator = match self.validator(key, schema) {
            Ok(v) => v,
            Err(e) => return vec![e],
        };
        validator
            .iter_errors(instance)
            .map(|e| {
                let mut msg = e.to_string();
                if msg.len() > 300 {
                    let mut cut = 300;
                    while !msg.is_char_boundary(cut) {
                        cut -= 1;
                    }
                    msg.truncate(cut);
                    msg.push('…');
                }
                format!("at `{}`: {msg}", e.instance_path())
            })
            .collect()
    }

    fn validator(&self, key: &str, schema: &Value) -> Result<Arc<jsonschema::Validator>, String> {
        let mut cache = lock(&self.validators);
        if let Some(v) = cache.get(key) {
            return Ok(v.clone());
        }
        let root = self.standalone(schema)?;
        let validator = jsonschema::draft202012::options()
            .should_validate_formats(true)
            .should_ignore_unknown_formats(true)
            .build(&root)
            .map_err(|e| format!("the schema of {key} does not compile: {e}"))?;
        let validator = Arc::new(validator);
        cache.insert(key.to_string(), validator.clone());
        Ok(validator)
    }

    /// `schema` as a JSON Schema document of its own: normalized (see [`normalize`]), with
    /// every `#/components/...` it reaches, transitively, copied under the same pointers.
    fn standalone(&self, schema: &Value) -> Result<Value, String> {
        let mut root = match normalize(schema) {
            Value::Object(m) => Value::Object(m),
            Value::Bool(true) | Value::Null => json!({}),
            other => return Err(format!("not a schema: {other}")),
        };
        let mut pending = Vec::new();
        collect_refs(&root, &mut pending);
        let mut done = BTreeSet::new();
        while let Some(r) = pending.pop() {
            if !done.insert(r.clone()) {
                continue;
            }
            let Some(pointer) = r.strip_prefix('#') else {
                return Err(format!("external reference {r} is not supported"));
            };
            let target = self
                .doc
                .pointer(pointer)
                .ok_or_else(|| format!("dangling reference {r}"))?;
            let target = normalize(target);
            collect_refs(&target, &mut pending);
            insert_at(&mut root, pointer, target)?;
        }
        Ok(root)
    }
}

/// An OpenAPI 3.0 schema as JSON Schema 2020-12: `nullable: true` becomes `anyOf: [null, …]`
/// (which also covers `enum`s and compositions), documentation and `x-` keywords are dropped.
fn normalize(schema: &Value) -> Value {
    let Value::Object(m) = schema else {
        return schema.clone();
    };
    let mut out = Map::new();
    for (k, v) in m {
        let v = match k.as_str() {
            "nullable" | "description" | "example" | "examples" | "externalDocs" | "xml"
            | "discriminator" | "deprecated" | "readOnly" | "writeOnly" => continue,
            k if k.starts_with("x-") => continue,
            "properties" | "patternProperties" => match v {
                Value::Object(props) => Value::Object(
                    props
                        .iter()
                        .map(|(name, s)| (name.clone(), normalize(s)))
                        .collect(),
                ),
                other => other.clone(),
            },
            "items" | "additionalProperties" | "not" => normalize(v),
            "allOf" | "anyOf" | "oneOf" => match v {
                Value::Array(list) => Value::Array(list.iter().map(normalize).collect()),
                other => other.clone(),
            },
            _ => v.clone(),
        };
        out.insert(k.clone(), v);
    }
    if m.get("nullable") == Some(&Value::Bool(true)) {
        json!({ "anyOf": [{ "type": "null" }, Value::Object(out)] })
    } else {
        Value::Object(out)
    }
}

fn collect_refs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                match (k.as_str(), v) {
                    ("$ref", Value::String(r)) => out.push(r.clone()),
                    _ => collect_refs(v, out),
                }
            }
        }
        Value::Array(list) => list.iter().for_each(|v| collect_refs(v, out)),
        _ => {}
    }
}

/// Puts `value` at the JSON pointer `pointer` inside `root`, making objects on the way.
fn insert_at(root: &mut Value, pointer: &str, value: Value) -> Result<(), String> {
    let tokens: Vec<String> = pointer
        .split('/')
        .skip(1)
        .map(|t| t.replace("~1", "/").replace("~0", "~"))
        .collect();
    let Some((last, parents)) = tokens.split_last() else {
        return Err("cannot replace the whole schema".into());
    };
    let mut cur = root;
    for t in parents {
        let Value::Object(m) = cur else {
            return Err(format!("{pointer} crosses a non-object"));
        };
        cur = m.entry(t.clone()).or_insert_with(|| json!({}));
    }
    match cur {
        Value::Object(m) => {
            m.insert(last.clone(), value);
            Ok(())
        }
        _ => Err(format!("{pointer} crosses a non-object")),
    }
}

/// A path or query parameter's text as the JSON value its schema expects (kept a string when
/// it does not parse, so the validator reports it).
fn coerce(raw: &str, schema: &Value) -> Value {
    let ty = schema["type"].as_str().unwrap_or("string");
    match ty {
        "integer" => raw
            .parse::<i64>()
            .map(Value::from)
            .unwrap_or_else(|_| Value::from(raw)),
        "number" => raw
            .parse::<f64>()
            .ok()
            .and_then(|f| serde_json::Number::from_f64(f).map(Value::Number))
            .unwrap_or_else(|| Value::from(raw)),
        "boolean" => match raw {
            "true" => Value::Bool(true),
            "false" => Value::Bool(false),
            _ => Value::from(raw),
        },
        "array" => Value::Array(
            raw.split(',')
                .map(|item| coerce(item, &schema["items"]))
                .collect(),
        ),
        _ => Value::from(raw),
    }
}

fn is_json(content_type: Option<&str>) -> bool {
    content_type
        .and_then(|ct| ct.split(';').next())
        .map(|m| m.trim().to_ascii_lowercase())
        .is_some_and(|m| m == "application/json" || m.ends_with("+json"))
}

// ---------------------------------------------------------------------------------------------
// The fake

/// One API request as the fake received and answered it (`Authorization` left out).
#[derive(Debug, Clone)]
pub struct ApiRequest {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    /// Lower-case names; `authorization`, `cookie` and `proxy-authorization` are left out.
    pub headers: BTreeMap<String, String>,
    /// The body as JSON, or as a string when it is not JSON; `None` when empty.
    pub body: Option<Value>,
    pub status: u16,
}

/// The running fake. Dropping it stops the server.
pub struct FakeGithub {
    /// `http://127.0.0.1:<port>`: the API root (as `https://api.github.com`).
    pub url: String,
    shared: Arc<Shared>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

struct Shared {
    api: String,
    git: Option<GitLink>,
    spec: &'static OpenApi,
    state: Mutex<FakeState>,
}

struct GitLink {
    root: PathBuf,
    url: String,
}

#[derive(Default)]
struct FakeState {
    /// Keyed by lower-case `owner/name`.
    repos: BTreeMap<String, Repo>,
    /// token → login.
    tokens: HashMap<String, String>,
    requests: Vec<ApiRequest>,
    violations: Vec<String>,
    injections: Vec<Injection>,
    next_repo_id: u64,
    next_pull_id: u64,
}

struct Injection {
    method: String,
    pattern: String,
    status: u16,
    body: Value,
}

struct Repo {
    id: u64,
    owner: String,
    name: String,
    default_branch: String,
    created_at: OffsetDateTime,
    /// Branches set with `set_branch` (consulted before git).
    branches: BTreeMap<String, String>,
    pulls: Vec<Pull>,
}

#[derive(Clone)]
struct Pull {
    number: u64,
    id: u64,
    title: String,
    body: Option<String>,
    open: bool,
    draft: bool,
    maintainer_can_modify: bool,
    user: String,
    head_owner: String,
    head_repo: String,
    head_ref: String,
    head_sha: String,
    base_ref: String,
    base_sha: String,
    created_at: OffsetDateTime,
    updated_at: OffsetDateTime,
    closed_at: Option<OffsetDateTime>,
}

impl Pull {
    fn head_label(&self) -> String {
        format!("{}:{}", self.head_owner, self.head_ref)
    }
}

impl FakeGithub {
    /// A fake whose branches are only those set with [`FakeGithub::set_branch`]. Loads (and
    /// if needed fetches) GitHub's OpenAPI description first; panics if it cannot be had.
    pub fn start() -> FakeGithub {
        Self::start_inner(None)
    }

    /// A fake that reads branches from the bare repositories `<git_root>/<owner>/<name>.git`
    /// (a `GitHttp` server's `root()`), whose clone URLs are `<git_url>/<owner>/<name>.git`.
    pub fn with_git(git_root: &Path, git_url: &str) -> FakeGithub {
        Self::start_inner(Some(GitLink {
            root: git_root.to_path_buf(),
            url: git_url.trim_end_matches('/').to_string(),
        }))
    }

    fn start_inner(git: Option<GitLink>) -> FakeGithub {
        let spec = openapi();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        listener
            .set_nonblocking(true)
            .expect("non-blocking listener");
        let addr = listener.local_addr().expect("listener address");
        let url = format!("http://{addr}");
        let shared = Arc::new(Shared {
            api: url.clone(),
            git,
            spec,
            state: Mutex::new(FakeState {
                next_repo_id: 700_000_000,
                next_pull_id: 2_000_000_000,
                ..FakeState::default()
            }),
        });
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let app = Router::new().fallback(handle).with_state(shared.clone());
        let thread = std::thread::Builder::new()
            .name("fake-github".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .expect("tokio runtime for the GitHub fake");
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
            .expect("spawn the GitHub fake thread");
        FakeGithub {
            url,
            shared,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }

    /// Makes `owner/name` known, with `default_branch`.
    pub fn add_repo(&self, owner: &str, name: &str, default_branch: &str) {
        let mut st = lock(&self.shared.state);
        st.next_repo_id += 1;
        let id = st.next_repo_id;
        st.repos.insert(
            repo_key(owner, name),
            Repo {
                id,
                owner: owner.to_string(),
                name: name.to_string(),
                default_branch: default_branch.to_string(),
                created_at: now(),
                branches: BTreeMap::new(),
                pulls: Vec::new(),
            },
        );
    }

    /// Accepts `token`, acting as [`DEFAULT_LOGIN`].
    pub fn add_token(&self, token: &str) {
        self.add_token_as(token, DEFAULT_LOGIN);
    }

    /// Accepts `token`, acting as `login`.
    pub fn add_token_as(&self, token: &str, login: &str) {
        lock(&self.shared.state)
            .tokens
            .insert(token.to_string(), login.to_string());
    }

    /// Sets (or moves) a branch of a known repository without git.
    pub fn set_branch(&self, owner: &str, name: &str, branch: &str, sha: &str) {
        let mut st = lock(&self.shared.state);
        let repo = st
            .repos
            .get_mut(&repo_key(owner, name))
            .unwrap_or_else(|| panic!("set_branch: unknown repository {owner}/{name}"));
        repo.branches.insert(branch.to_string(), sha.to_string());
    }

    /// Every request so far, oldest first.
    pub fn requests(&self) -> Vec<ApiRequest> {
        lock(&self.shared.state).requests.clone()
    }

    /// The pull requests of `owner/repo` as GitHub's `pull-request` objects, by number.
    pub fn pulls(&self, owner: &str, repo: &str) -> Vec<Value> {
        let st = lock(&self.shared.state);
        let Some(r) = st.repos.get(&repo_key(owner, repo)) else {
            return Vec::new();
        };
        r.pulls
            .iter()
            .map(|p| self.shared.pull_json(r, p, true))
            .collect()
    }

    /// Answers the next request with `method` whose path is `path` — or matches it as a
    /// template (`/repos/{owner}/{repo}/pulls`) — with `status` and the JSON `body`, once.
    /// The request is still checked against the description, the canned answer is not.
    pub fn inject(&self, method: &str, path: &str, status: u16, body: Value) {
        lock(&self.shared.state).injections.push(Injection {
            method: method.to_ascii_uppercase(),
            pattern: path.to_string(),
            status,
            body,
        });
    }

    /// What in the requests so far (and the fake's answers) does not follow GitHub's OpenAPI
    /// description, one line each: empty when everything did.
    pub fn violations(&self) -> Vec<String> {
        lock(&self.shared.state).violations.clone()
    }
}

impl Drop for FakeGithub {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Plumbing

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn repo_key(owner: &str, name: &str) -> String {
    format!("{owner}/{name}").to_ascii_lowercase()
}

fn now() -> OffsetDateTime {
    let t = OffsetDateTime::now_utc();
    t.replace_nanosecond(0).unwrap_or(t)
}

fn stamp(t: OffsetDateTime) -> String {
    t.format(&Rfc3339)
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".into())
}

/// A stable id for a name (users, forks the fake does not know).
fn stable_id(s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.to_ascii_lowercase().bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    1_000 + h % 100_000_000
}

fn node_id(prefix: &str, id: u64) -> String {
    let raw = format!("0:{prefix}{id}");
    format!(
        "{prefix}_kgDO{}",
        base64::engine::general_purpose::STANDARD_NO_PAD.encode(raw)
    )
}

/// Percent-decodes `s`; `+` is a space in query strings (`form`), not in paths.
fn pct_decode_with(s: &str, form: bool) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' if form => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(v) => {
                        out.push(v);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A percent-decoded path segment.
fn pct_decode(s: &str) -> String {
    pct_decode_with(s, false)
}

fn parse_query(q: Option<&str>) -> Vec<(String, String)> {
    q.unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (pct_decode_with(k, true), pct_decode_with(v, true))
        })
        .collect()
}

/// Whether `path` is `pattern`, where a `{name}` segment of the pattern matches any segment.
fn path_matches(pattern: &str, path: &str) -> bool {
    let p: Vec<&str> = pattern.split('/').collect();
    let s: Vec<&str> = path.split('/').collect();
    p.len() == s.len()
        && p.iter()
            .zip(&s)
            .all(|(p, s)| (p.starts_with('{') && p.ends_with('}') && !s.is_empty()) || p == s)
}

/// A reply before it becomes an HTTP response.
struct Reply {
    status: u16,
    body: ReplyBody,
    headers: Vec<(&'static str, String)>,
    /// Check the reply against the description.
    check: bool,
    /// The description has the operation but the fake does not implement it.
    unimplemented: bool,
}

enum ReplyBody {
    Json(Value),
    Text(String),
}

impl Reply {
    fn json(status: u16, body: Value) -> Reply {
        Reply {
            status,
            body: ReplyBody::Json(body),
            headers: Vec::new(),
            check: true,
            unimplemented: false,
        }
    }

    fn error(status: u16, message: &str) -> Reply {
        Reply::json(
            status,
            json!({ "message": message, "documentation_url": DOCS, "status": status.to_string() }),
        )
    }

    fn not_found() -> Reply {
        Reply::error(404, "Not Found")
    }

    /// 422 Validation Failed with GitHub's `errors` list.
    fn invalid(errors: Vec<Value>) -> Reply {
        Reply::json(
            422,
            json!({
                "message": "Validation Failed",
                "errors": errors,
                "documentation_url": DOCS,
                "status": "422",
            }),
        )
    }

    fn header(mut self, name: &'static str, value: String) -> Reply {
        self.headers.push((name, value));
        self
    }
}

async fn handle(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, 32 << 20).await else {
        let mut r = Response::new(Body::from("the request body could not be read\n"));
        *r.status_mut() = StatusCode::BAD_REQUEST;
        return r;
    };
    let worker = shared.clone();
    match tokio::task::spawn_blocking(move || serve(&worker, &parts, &bytes)).await {
        Ok(response) => response,
        Err(_) => {
            let mut r = Response::new(Body::from("the fake GitHub failed\n"));
            *r.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
            r
        }
    }
}

fn serve(sh: &Shared, parts: &axum::http::request::Parts, body: &[u8]) -> Response {
    let method = parts.method.as_str().to_string();
    let path = parts.uri.path().to_string();
    let query = parts.uri.query().map(str::to_string);
    let request_ct = header(&parts.headers, "content-type");

    let injected = {
        let mut st = lock(&sh.state);
        let pos = st.injections.iter().position(|i| {
            i.method.eq_ignore_ascii_case(&method) && path_matches(&i.pattern, &path)
        });
        pos.map(|p| st.injections.remove(p))
    };
    let mut extra = Vec::new();
    let reply = match injected {
        Some(i) => Reply {
            check: false,
            ..Reply::json(i.status, i.body)
        },
        None => {
            if !has_user_agent(&parts.headers) {
                extra.push(format!(
                    "{method} {path}: no User-Agent header (GitHub answers 403)"
                ));
            }
            route(
                sh,
                &parts.method,
                &path,
                query.as_deref(),
                &parts.headers,
                body,
            )
        }
    };
    if reply.unimplemented {
        extra.push(format!(
            "{method} {path}: the fake does not implement this operation (answered 404)"
        ));
    }

    let (body_value, response_ct) = match &reply.body {
        ReplyBody::Json(v) => (Some(v), "application/json; charset=utf-8"),
        ReplyBody::Text(_) => (None, "text/plain; charset=utf-8"),
    };
    let mut violations = sh.spec.check(&Exchange {
        method: &method,
        path: &path,
        query: query.as_deref(),
        request_content_type: request_ct.as_deref(),
        request_body: body,
        status: reply.status,
        response_content_type: Some(response_ct),
        response_body: body_value,
        check_response: reply.check,
    });
    violations.extend(extra);

    let headers: BTreeMap<String, String> = parts
        .headers
        .iter()
        .filter(|(n, _)| {
            !matches!(
                n.as_str(),
                "authorization" | "cookie" | "proxy-authorization"
            )
        })
        .map(|(n, v)| {
            (
                n.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let recorded_body = if body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        Some(
            serde_json::from_slice(body)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(body).into_owned())),
        )
    };
    {
        let mut st = lock(&sh.state);
        st.requests.push(ApiRequest {
            method: method.clone(),
            path: path.clone(),
            query: query.clone(),
            headers,
            body: recorded_body,
            status: reply.status,
        });
        st.violations.extend(violations);
    }

    let bytes = match &reply.body {
        ReplyBody::Json(v) => serde_json::to_vec(v).unwrap_or_default(),
        ReplyBody::Text(t) => t.clone().into_bytes(),
    };
    let mut response = Response::new(Body::from(bytes));
    *response.status_mut() =
        StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let h = response.headers_mut();
    h.insert("content-type", HeaderValue::from_static(response_ct));
    h.insert(
        "x-github-api-version-selected",
        HeaderValue::from_static(API_VERSION),
    );
    h.insert(
        "x-github-media-type",
        HeaderValue::from_static("github.v3; format=json"),
    );
    for (name, value) in reply.headers {
        if let Ok(v) = HeaderValue::from_str(&value) {
            h.append(name, v);
        }
    }
    response
}

fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// GitHub rejects requests without a (non-empty) `User-Agent`.
fn has_user_agent(headers: &HeaderMap) -> bool {
    header(headers, "user-agent").is_some_and(|ua| !ua.trim().is_empty())
}

/// The login of the request's token, or the 401 to answer.
fn authenticate(sh: &Shared, headers: &HeaderMap) -> Result<String, Reply> {
    let Some(value) = header(headers, "authorization") else {
        return Err(Reply::error(401, "Requires authentication"));
    };
    let (scheme, rest) = value.trim().split_once(' ').unwrap_or((value.as_str(), ""));
    let rest = rest.trim();
    let token = if scheme.eq_ignore_ascii_case("bearer") || scheme.eq_ignore_ascii_case("token") {
        Some(rest.to_string())
    } else if scheme.eq_ignore_ascii_case("basic") {
        base64::engine::general_purpose::STANDARD
            .decode(rest)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .and_then(|d| d.split_once(':').map(|(_, p)| p.to_string()))
    } else {
        None
    };
    let st = lock(&sh.state);
    token
        .and_then(|t| st.tokens.get(&t).cloned())
        .ok_or_else(|| Reply::error(401, "Bad credentials"))
}

fn route(
    sh: &Shared,
    method: &Method,
    path: &str,
    query: Option<&str>,
    headers: &HeaderMap,
    body: &[u8],
) -> Reply {
    if !has_user_agent(headers) {
        return Reply {
            body: ReplyBody::Text(format!("{USER_AGENT_MESSAGE}\n")),
            check: false,
            ..Reply::json(403, Value::Null)
        };
    }
    if let Some(v) = header(headers, "x-github-api-version")
        && v != API_VERSION
    {
        return Reply::error(
            400,
            &format!(
                "Unsupported 'X-GitHub-Api-Version' header: {v:?}. The fake GitHub supports \
                 {API_VERSION}."
            ),
        );
    }
    let login = match authenticate(sh, headers) {
        Ok(l) => l,
        Err(reply) => return reply,
    };
    let segs: Vec<String> = path.split('/').skip(1).map(pct_decode).collect();
    let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
    match (method.as_str(), segs.as_slice()) {
        ("GET", ["repos", owner, repo]) => sh.get_repo(owner, repo),
        ("GET", ["repos", owner, repo, "pulls"]) => sh.list_pulls(owner, repo, path, query),
        ("POST", ["repos", owner, repo, "pulls"]) => {
            sh.create_pull(&login, owner, repo, path, body)
        }
        ("GET", ["repos", owner, repo, "pulls", number]) => sh.get_pull(owner, repo, number),
        ("PATCH", ["repos", owner, repo, "pulls", number]) => {
            sh.update_pull(owner, repo, number, path, body)
        }
        _ => Reply {
            unimplemented: sh.spec.operation(method.as_str(), path).is_some(),
            ..Reply::not_found()
        },
    }
}

/// The JSON object of a request body, or the 400/422 GitHub answers.
fn body_object(
    sh: &Shared,
    method: &str,
    path: &str,
    body: &[u8],
) -> Result<Map<String, Value>, Reply> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    let Ok(value) = serde_json::from_slice::<Value>(body) else {
        return Err(Reply::error(400, "Problems parsing JSON"));
    };
    // GitHub checks input against the operation's schema first.
    if let Some(op) = sh.spec.operation(method, path) {
        let errors = sh.spec.request_body_errors(&op, &value);
        if !errors.is_empty() {
            return Err(Reply::json(
                422,
                json!({
                    "message": format!("Invalid request.\n\n{}", errors.join("\n")),
                    "documentation_url": DOCS,
                    "status": "422",
                }),
            ));
        }
    }
    match value {
        Value::Object(map) => Ok(map),
        _ => Err(Reply::error(400, "Problems parsing JSON")),
    }
}

impl Shared {
    fn html(&self, rest: &str) -> String {
        format!("{HTML_BASE}/{rest}")
    }

    fn clone_base(&self) -> String {
        match &self.git {
            Some(g) => g.url.clone(),
            None => HTML_BASE.to_string(),
        }
    }

    fn bare_repo(&self, owner: &str, name: &str) -> Option<PathBuf> {
        let g = self.git.as_ref()?;
        let p = g.root.join(owner).join(format!("{name}.git"));
        p.is_dir().then_some(p)
    }

    fn is_private(&self, owner: &str, name: &str) -> bool {
        self.bare_repo(owner, name)
            .is_some_and(|p| p.join(PRIVATE_MARKER).exists())
    }

    /// A branch tip: set with `set_branch`, else from git.
    fn branch_sha(
        &self,
        repo: Option<&Repo>,
        owner: &str,
        name: &str,
        branch: &str,
    ) -> Option<String> {
        if let Some(sha) = repo.and_then(|r| r.branches.get(branch)) {
            return Some(sha.clone());
        }
        let bare = self.bare_repo(owner, name)?;
        git_out(
            &bare,
            &[
                "rev-parse",
                "-q",
                "--verify",
                &format!("refs/heads/{branch}^{{commit}}"),
            ],
        )
        .filter(|s| !s.is_empty())
    }

    /// (commits, additions, deletions, changed files) of `base...head` in one bare repository.
    fn diff_stats(&self, owner: &str, name: &str, base: &str, head: &str) -> (u64, u64, u64, u64) {
        let Some(bare) = self.bare_repo(owner, name) else {
            return (0, 0, 0, 0);
        };
        let commits = git_out(&bare, &["rev-list", "--count", &format!("{base}..{head}")])
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let mut stats = (0, 0, 0);
        if let Some(out) = git_out(&bare, &["diff", "--numstat", &format!("{base}...{head}")]) {
            for line in out.lines() {
                let mut f = line.split('\t');
                let add = f.next().and_then(|s| s.parse::<u64>().ok()).unwrap_or(0);
                let del = f.next().and_then(|s| s.parse::<u64>().ok()).unwrap_or(0);
                stats = (stats.0 + add, stats.1 + del, stats.2 + 1);
            }
        }
        (commits, stats.0, stats.1, stats.2)
    }

    fn user_json(&self, login: &str) -> Value {
        let api = &self.api;
        let id = stable_id(login);
        json!({
            "login": login,
            "id": id,
            "node_id": node_id("U", id),
            "avatar_url": format!("https://avatars.github.example/u/{id}?v=4"),
            "gravatar_id": "",
            "url": format!("{api}/users/{login}"),
            "html_url": self.html(login),
            "followers_url": format!("{api}/users/{login}/followers"),
            "following_url": format!("{api}/users/{login}/following{{/other_user}}"),
            "gists_url": format!("{api}/users/{login}/gists{{/gist_id}}"),
            "starred_url": format!("{api}/users/{login}/starred{{/owner}}{{/repo}}"),
            "subscriptions_url": format!("{api}/users/{login}/subscriptions"),
            "organizations_url": format!("{api}/users/{login}/orgs"),
            "repos_url": format!("{api}/users/{login}/repos"),
            "events_url": format!("{api}/users/{login}/events{{/privacy}}"),
            "received_events_url": format!("{api}/users/{login}/received_events"),
            "type": "User",
            "user_view_type": "public",
            "site_admin": false,
        })
    }

    /// A `repository` object (`full`: a `full-repository`).
    fn repo_json(&self, repo: Option<&Repo>, owner: &str, name: &str, full: bool) -> Value {
        let api = format!("{}/repos/{owner}/{name}", self.api);
        let (id, default_branch, created) = match repo {
            Some(r) => (r.id, r.default_branch.clone(), r.created_at),
            None => (
                stable_id(&format!("{owner}/{name}")),
                "main".to_string(),
                now(),
            ),
        };
        let private = self.is_private(owner, name);
        let open_pulls = repo.map_or(0, |r| r.pulls.iter().filter(|p| p.open).count());
        let t = stamp(created);
        let html = self.html(&format!("{owner}/{name}"));
        // The API URLs of a repository, `{api}{suffix}`.
        const URLS: &[(&str, &str)] = &[
            ("url", ""),
            ("archive_url", "/{archive_format}{/ref}"),
            ("assignees_url", "/assignees{/user}"),
            ("blobs_url", "/git/blobs{/sha}"),
            ("branches_url", "/branches{/branch}"),
            ("collaborators_url", "/collaborators{/collaborator}"),
            ("comments_url", "/comments{/number}"),
            ("commits_url", "/commits{/sha}"),
            ("compare_url", "/compare/{base}...{head}"),
            ("contents_url", "/contents/{+path}"),
            ("contributors_url", "/contributors"),
            ("deployments_url", "/deployments"),
            ("downloads_url", "/downloads"),
            ("events_url", "/events"),
            ("forks_url", "/forks"),
            ("git_commits_url", "/git/commits{/sha}"),
            ("git_refs_url", "/git/refs{/sha}"),
            ("git_tags_url", "/git/tags{/sha}"),
            ("hooks_url", "/hooks"),
            ("issue_comment_url", "/issues/comments{/number}"),
            ("issue_events_url", "/issues/events{/number}"),
            ("issues_url", "/issues{/number}"),
            ("keys_url", "/keys{/key_id}"),
            ("labels_url", "/labels{/name}"),
            ("languages_url", "/languages"),
            ("merges_url", "/merges"),
            ("milestones_url", "/milestones{/number}"),
            (
                "notifications_url",
                "/notifications{?since,all,participating}",
            ),
            ("pulls_url", "/pulls{/number}"),
            ("releases_url", "/releases{/id}"),
            ("stargazers_url", "/stargazers"),
            ("statuses_url", "/statuses/{sha}"),
            ("subscribers_url", "/subscribers"),
            ("subscription_url", "/subscription"),
            ("tags_url", "/tags"),
            ("teams_url", "/teams"),
            ("trees_url", "/git/trees{/sha}"),
        ];
        let mut v = json!({
            "id": id,
            "node_id": node_id("R", id),
            "name": name,
            "full_name": format!("{owner}/{name}"),
            "private": private,
            "owner": self.user_json(owner),
            "html_url": html,
            "description": null,
            "fork": false,
            "git_url": format!("git://github.example/{owner}/{name}.git"),
            "ssh_url": format!("git@github.example:{owner}/{name}.git"),
            "clone_url": format!("{}/{owner}/{name}.git", self.clone_base()),
            "mirror_url": null,
            "svn_url": html,
            "homepage": null,
            "language": null,
            "default_branch": default_branch,
            "visibility": if private { "private" } else { "public" },
            "pushed_at": t,
            "created_at": t,
            "updated_at": t,
            "permissions": {
                "admin": true, "maintain": true, "push": true, "triage": true, "pull": true,
            },
            "license": null,
            "topics": [],
        });
        let counts = json!({
            "forks_count": 0,
            "forks": 0,
            "stargazers_count": 0,
            "watchers_count": 0,
            "watchers": 0,
            "size": 0,
            "open_issues_count": open_pulls,
            "open_issues": open_pulls,
            "is_template": false,
            "has_issues": true,
            "has_projects": true,
            "has_wiki": true,
            "has_pages": false,
            "has_downloads": true,
            "has_discussions": false,
            "archived": false,
            "disabled": false,
            "allow_forking": true,
            "web_commit_signoff_required": false,
        });
        if let (Value::Object(m), Value::Object(c)) = (&mut v, counts) {
            m.extend(c);
            for (key, suffix) in URLS {
                m.insert((*key).to_string(), Value::String(format!("{api}{suffix}")));
            }
        }
        if full {
            let extra = json!({
                "network_count": 0,
                "subscribers_count": 0,
                "allow_rebase_merge": true,
                "allow_squash_merge": true,
                "allow_merge_commit": true,
                "allow_auto_merge": false,
                "delete_branch_on_merge": false,
                "allow_update_branch": false,
                "use_squash_pr_title_as_default": false,
                "squash_merge_commit_title": "COMMIT_OR_PR_TITLE",
                "squash_merge_commit_message": "COMMIT_MESSAGES",
                "merge_commit_title": "MERGE_MESSAGE",
                "merge_commit_message": "PR_TITLE",
                "temp_clone_token": null,
            });
            if let (Value::Object(m), Value::Object(e)) = (&mut v, extra) {
                m.extend(e);
            }
        }
        v
    }

    /// A `pull-request` object (`full`), or a `pull-request-simple` one.
    fn pull_json(&self, repo: &Repo, p: &Pull, full: bool) -> Value {
        let (owner, name) = (&repo.owner, &repo.name);
        let repo_api = format!("{}/repos/{owner}/{name}", self.api);
        let url = format!("{repo_api}/pulls/{}", p.number);
        let html = self.html(&format!("{owner}/{name}/pull/{}", p.number));
        let same_repo =
            p.head_owner.eq_ignore_ascii_case(owner) && p.head_repo.eq_ignore_ascii_case(name);
        let head_repo = same_repo.then_some(repo);
        let head_sha = if p.open {
            self.branch_sha(head_repo, &p.head_owner, &p.head_repo, &p.head_ref)
                .unwrap_or_else(|| p.head_sha.clone())
        } else {
            p.head_sha.clone()
        };
        let base_sha = self
            .branch_sha(Some(repo), owner, name, &p.base_ref)
            .unwrap_or_else(|| p.base_sha.clone());
        let link = |href: String| json!({ "href": href });
        let issue = format!("{repo_api}/issues/{}", p.number);
        let head = json!({
            "label": p.head_label(),
            "ref": p.head_ref,
            "sha": head_sha,
            "user": self.user_json(&p.head_owner),
            "repo": self.repo_json(head_repo, &p.head_owner, &p.head_repo, false),
        });
        let base = json!({
            "label": format!("{owner}:{}", p.base_ref),
            "ref": p.base_ref,
            "sha": base_sha,
            "user": self.user_json(owner),
            "repo": self.repo_json(Some(repo), owner, name, false),
        });
        let links = json!({
            "self": link(url.clone()),
            "html": link(html.clone()),
            "issue": link(issue.clone()),
            "comments": link(format!("{issue}/comments")),
            "review_comments": link(format!("{url}/comments")),
            "review_comment": link(format!("{repo_api}/pulls/comments{{/number}}")),
            "commits": link(format!("{url}/commits")),
            "statuses": link(format!("{repo_api}/statuses/{head_sha}")),
        });
        let mut v = json!({
            "url": url,
            "id": p.id,
            "node_id": node_id("PR", p.id),
            "html_url": html,
            "diff_url": format!("{html}.diff"),
            "patch_url": format!("{html}.patch"),
            "issue_url": issue,
            "commits_url": format!("{url}/commits"),
            "review_comments_url": format!("{url}/comments"),
            "review_comment_url": format!("{repo_api}/pulls/comments{{/number}}"),
            "comments_url": format!("{issue}/comments"),
            "statuses_url": format!("{repo_api}/statuses/{head_sha}"),
            "number": p.number,
            "state": if p.open { "open" } else { "closed" },
            "locked": false,
            "title": p.title,
            "user": self.user_json(&p.user),
            "body": p.body,
            "labels": [],
            "milestone": null,
            "active_lock_reason": null,
            "created_at": stamp(p.created_at),
            "updated_at": stamp(p.updated_at),
            "closed_at": p.closed_at.map(stamp),
            "merged_at": null,
            "merge_commit_sha": null,
            "assignee": null,
            "assignees": [],
            "requested_reviewers": [],
            "requested_teams": [],
            "head": head,
            "base": base,
            "_links": links,
            "author_association": if p.user.eq_ignore_ascii_case(owner) { "OWNER" } else { "CONTRIBUTOR" },
            "auto_merge": null,
            "draft": p.draft,
        });
        if full {
            let (commits, additions, deletions, changed) = if same_repo {
                self.diff_stats(owner, name, &base_sha, &head_sha)
            } else {
                (0, 0, 0, 0)
            };
            let extra = json!({
                "merged": false,
                "mergeable": null,
                "rebaseable": null,
                "mergeable_state": "unknown",
                "merged_by": null,
                "comments": 0,
                "review_comments": 0,
                "maintainer_can_modify": p.maintainer_can_modify,
                "commits": commits,
                "additions": additions,
                "deletions": deletions,
                "changed_files": changed,
            });
            if let (Value::Object(m), Value::Object(e)) = (&mut v, extra) {
                m.extend(e);
            }
        }
        v
    }

    fn get_repo(&self, owner: &str, name: &str) -> Reply {
        let st = lock(&self.state);
        match st.repos.get(&repo_key(owner, name)) {
            Some(r) => Reply::json(200, self.repo_json(Some(r), &r.owner, &r.name, true)),
            None => Reply::not_found(),
        }
    }

    fn list_pulls(&self, owner: &str, name: &str, path: &str, query: Option<&str>) -> Reply {
        let st = lock(&self.state);
        let Some(repo) = st.repos.get(&repo_key(owner, name)) else {
            return Reply::not_found();
        };
        let q: HashMap<String, String> = parse_query(query).into_iter().collect();
        let state = q.get("state").map_or("open", String::as_str);
        if !matches!(state, "open" | "closed" | "all") {
            return Reply::invalid(vec![json!({
                "resource": "PullRequest", "field": "state", "code": "invalid",
            })]);
        }
        // GitHub ignores a head filter that is not `user:ref-name`.
        let head = q.get("head").filter(|h| h.contains(':'));
        let base = q.get("base");
        let mut pulls: Vec<&Pull> = repo
            .pulls
            .iter()
            .filter(|p| match state {
                "open" => p.open,
                "closed" => !p.open,
                _ => true,
            })
            .filter(|p| head.is_none_or(|h| p.head_label().eq_ignore_ascii_case(h)))
            .filter(|p| base.is_none_or(|b| &p.base_ref == b))
            .collect();
        let ascending = q.get("direction").map(String::as_str) == Some("asc");
        match q.get("sort").map(String::as_str) {
            Some("updated") => pulls.sort_by_key(|p| (p.updated_at, p.number)),
            _ => pulls.sort_by_key(|p| p.number),
        }
        if !ascending {
            pulls.reverse();
        }
        let per_page = q
            .get("per_page")
            .and_then(|v| v.parse::<usize>().ok())
            .map_or(30, |n| n.clamp(1, 100));
        let page = q
            .get("page")
            .and_then(|v| v.parse::<usize>().ok())
            .map_or(1, |n| n.max(1));
        let last = pulls.len().div_ceil(per_page).max(1);
        let items: Vec<Value> = pulls
            .iter()
            .skip((page - 1) * per_page)
            .take(per_page)
            .map(|p| self.pull_json(repo, p, false))
            .collect();
        let mut reply = Reply::json(200, Value::Array(items));
        if page < last {
            let mut others: Vec<(String, String)> = parse_query(query)
                .into_iter()
                .filter(|(k, _)| k != "page" && k != "per_page")
                .collect();
            others.push(("per_page".into(), per_page.to_string()));
            let base_q: Vec<String> = others
                .iter()
                .map(|(k, v)| format!("{k}={}", pct_encode(v)))
                .collect();
            let link = |n: usize| format!("<{}{path}?{}&page={n}>", self.api, base_q.join("&"));
            reply = reply.header(
                "link",
                format!(
                    "{}; rel=\"next\", {}; rel=\"last\"",
                    link(page + 1),
                    link(last)
                ),
            );
        }
        reply
    }

    fn create_pull(&self, login: &str, owner: &str, name: &str, path: &str, body: &[u8]) -> Reply {
        if !lock(&self.state).repos.contains_key(&repo_key(owner, name)) {
            return Reply::not_found();
        }
        let input = match body_object(self, "POST", path, body) {
            Ok(m) => m,
            Err(reply) => return reply,
        };
        let text = |k: &str| input.get(k).and_then(Value::as_str).map(str::to_string);
        let (Some(head), Some(base)) = (text("head"), text("base")) else {
            let field = if text("head").is_none() {
                "head"
            } else {
                "base"
            };
            return Reply::invalid(vec![json!({
                "resource": "PullRequest", "field": field, "code": "missing_field",
            })]);
        };
        let Some(title) = text("title") else {
            if input.contains_key("issue") {
                return Reply::invalid(vec![json!({
                    "resource": "PullRequest", "code": "custom",
                    "message": "The fake GitHub does not convert issues to pull requests.",
                })]);
            }
            return Reply::invalid(vec![json!({
                "resource": "PullRequest", "field": "title", "code": "missing_field",
            })]);
        };

        let mut st = lock(&self.state);
        let key = repo_key(owner, name);
        let Some(repo) = st.repos.get(&key) else {
            return Reply::not_found();
        };
        let (repo_owner, repo_name) = (repo.owner.clone(), repo.name.clone());
        let (head_owner, head_ref) = match head.split_once(':') {
            Some((user, branch)) => (user.to_string(), branch.to_string()),
            None => (repo_owner.clone(), head.clone()),
        };
        let head_owner = if head_owner.eq_ignore_ascii_case(&repo_owner) {
            repo_owner.clone()
        } else {
            head_owner
        };
        let head_repo = text("head_repo")
            .and_then(|hr| hr.split_once('/').map(|(_, n)| n.to_string()))
            .unwrap_or_else(|| repo_name.clone());
        let same_repo = head_owner == repo_owner && head_repo.eq_ignore_ascii_case(&repo_name);
        let head_repo_state = if same_repo {
            Some(repo)
        } else {
            st.repos.get(&repo_key(&head_owner, &head_repo))
        };
        let Some(head_sha) = self.branch_sha(head_repo_state, &head_owner, &head_repo, &head_ref)
        else {
            return Reply::invalid(vec![json!({
                "resource": "PullRequest", "field": "head", "code": "invalid",
            })]);
        };
        let Some(base_sha) = self.branch_sha(Some(repo), &repo_owner, &repo_name, &base) else {
            return Reply::invalid(vec![json!({
                "resource": "PullRequest", "field": "base", "code": "invalid",
            })]);
        };
        let label = format!("{head_owner}:{head_ref}");
        if repo
            .pulls
            .iter()
            .any(|p| p.open && p.head_label().eq_ignore_ascii_case(&label) && p.base_ref == base)
        {
            return Reply::invalid(vec![json!({
                "resource": "PullRequest", "code": "custom",
                "message": format!("A pull request already exists for {label}."),
            })]);
        }
        if same_repo
            && let Some(bare) = self.bare_repo(&repo_owner, &repo_name)
            && git_out(
                &bare,
                &["rev-list", "--count", &format!("{base_sha}..{head_sha}")],
            )
            .as_deref()
                == Some("0")
        {
            return Reply::invalid(vec![json!({
                "resource": "PullRequest", "code": "custom",
                "message": format!("No commits between {base} and {head}"),
            })]);
        }

        st.next_pull_id += 1;
        let id = st.next_pull_id;
        let Some(repo) = st.repos.get_mut(&key) else {
            return Reply::not_found();
        };
        let number = repo.pulls.iter().map(|p| p.number).max().unwrap_or(0) + 1;
        let t = now();
        let pull = Pull {
            number,
            id,
            title,
            body: text("body"),
            open: true,
            draft: input.get("draft").and_then(Value::as_bool).unwrap_or(false),
            maintainer_can_modify: !same_repo
                && input
                    .get("maintainer_can_modify")
                    .and_then(Value::as_bool)
                    .unwrap_or(true),
            user: login.to_string(),
            head_owner,
            head_repo,
            head_ref,
            head_sha,
            base_ref: base,
            base_sha,
            created_at: t,
            updated_at: t,
            closed_at: None,
        };
        repo.pulls.push(pull.clone());
        let repo = &st.repos[&key];
        let json = self.pull_json(repo, &pull, true);
        Reply::json(201, json).header(
            "location",
            format!("{}/repos/{repo_owner}/{repo_name}/pulls/{number}", self.api),
        )
    }

    fn get_pull(&self, owner: &str, name: &str, number: &str) -> Reply {
        let st = lock(&self.state);
        let Some(repo) = st.repos.get(&repo_key(owner, name)) else {
            return Reply::not_found();
        };
        let Ok(number) = number.parse::<u64>() else {
            return Reply::not_found();
        };
        match repo.pulls.iter().find(|p| p.number == number) {
            Some(p) => Reply::json(200, self.pull_json(repo, p, true)),
            None => Reply::not_found(),
        }
    }

    fn update_pull(&self, owner: &str, name: &str, number: &str, path: &str, body: &[u8]) -> Reply {
        let key = repo_key(owner, name);
        let Ok(number) = number.parse::<u64>() else {
            return Reply::not_found();
        };
        {
            let st = lock(&self.state);
            let exists = st
                .repos
                .get(&key)
                .is_some_and(|r| r.pulls.iter().any(|p| p.number == number));
            if !exists {
                return Reply::not_found();
            }
        }
        let input = match body_object(self, "PATCH", path, body) {
            Ok(m) => m,
            Err(reply) => return reply,
        };
        let mut st = lock(&self.state);
        let Some(repo) = st.repos.get(&key) else {
            return Reply::not_found();
        };
        let Some(current) = repo.pulls.iter().find(|p| p.number == number).cloned() else {
            return Reply::not_found();
        };
        let mut next = current.clone();
        if let Some(base) = input.get("base").and_then(Value::as_str) {
            match self.branch_sha(Some(repo), &repo.owner, &repo.name, base) {
                Some(sha) => {
                    next.base_ref = base.to_string();
                    next.base_sha = sha;
                }
                None => {
                    return Reply::invalid(vec![json!({
                        "resource": "PullRequest", "field": "base", "code": "invalid",
                    })]);
                }
            }
        }
        if let Some(title) = input.get("title").and_then(Value::as_str) {
            next.title = title.to_string();
        }
        if let Some(body) = input.get("body").and_then(Value::as_str) {
            next.body = Some(body.to_string());
        }
        if let Some(m) = input.get("maintainer_can_modify").and_then(Value::as_bool) {
            next.maintainer_can_modify = m;
        }
        match input.get("state").and_then(Value::as_str) {
            Some("closed") if current.open => {
                next.open = false;
                next.closed_at = Some(now());
            }
            Some("open") if !current.open => {
                let label = current.head_label();
                if repo.pulls.iter().any(|p| {
                    p.open
                        && p.number != number
                        && p.head_label() == label
                        && p.base_ref == next.base_ref
                }) {
                    return Reply::invalid(vec![json!({
                        "resource": "PullRequest", "code": "custom",
                        "message": format!("A pull request already exists for {label}."),
                    })]);
                }
                next.open = true;
                next.closed_at = None;
            }
            _ => {}
        }
        next.updated_at = now();
        let Some(repo) = st.repos.get_mut(&key) else {
            return Reply::not_found();
        };
        if let Some(slot) = repo.pulls.iter_mut().find(|p| p.number == number) {
            *slot = next.clone();
        }
        let repo = &st.repos[&key];
        Reply::json(200, self.pull_json(repo, &next, true))
    }
}

fn pct_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b':' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// git's trimmed stdout in `dir` (no system or global configuration), `None` on failure.
fn git_out(dir: &Path, args: &[&str]) -> Option<String> {
    let out = std::process::Command::new("git")
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE")
        .args(args)
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}
