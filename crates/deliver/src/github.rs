//! The GitHub REST endpoints a pull request needs (API version 2022-11-28): the repository's
//! default branch, the open pull request for a branch, create, update.
//!
//! Four calls on the `reqwest` client rclaude already has; a full GitHub SDK (octocrab) would
//! add its own HTTP stack to the build for them. Requests are checked against GitHub's
//! published OpenAPI description in the tests (`tests/support/github_server.rs`).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::upstream::GitHubRepo;

/// A failed GitHub API call.
#[derive(Debug, thiserror::Error)]
pub enum GitHubError {
    /// 401: the token is missing, expired or wrong.
    #[error("GitHub rejected the token ({status}): {message}")]
    Unauthorized { status: u16, message: String },
    /// 403: the token may not do this (or a rate limit).
    #[error("GitHub refused the request (403): {message}")]
    Forbidden { message: String },
    /// 404: no such repository or pull request, or the token cannot see it.
    #[error("GitHub has no {what} (404), or the token cannot see it")]
    NotFound { what: String },
    /// 422: GitHub validated the request and said no.
    #[error("GitHub did not accept the pull request: {message}")]
    Invalid { message: String },
    /// Anything else GitHub answered.
    #[error("GitHub answered {status}: {message}")]
    Api { status: u16, message: String },
    /// No answer.
    #[error("cannot reach the GitHub API at {api}: {source}")]
    Unreachable {
        api: String,
        #[source]
        source: reqwest::Error,
    },
}

/// A pull request, as far as rclaude reads it.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
pub struct PullRequest {
    pub number: u64,
    pub html_url: String,
    pub state: String,
    #[serde(default)]
    pub draft: Option<bool>,
    pub title: String,
}

/// The body of `POST /repos/{owner}/{repo}/pulls`.
#[derive(Debug, Clone, Serialize)]
pub struct NewPull<'a> {
    pub title: &'a str,
    pub head: &'a str,
    pub base: &'a str,
    pub body: &'a str,
    pub draft: bool,
}

/// The body of `PATCH /repos/{owner}/{repo}/pulls/{pull_number}` (only what is set).
#[derive(Debug, Clone, Default, Serialize)]
pub struct PullUpdate<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base: Option<&'a str>,
}

/// A client for one repository.
pub struct GitHub {
    http: reqwest::Client,
    repo: GitHubRepo,
    token: String,
}

#[derive(Deserialize)]
struct Repository {
    default_branch: String,
}

#[derive(Deserialize, Default)]
struct ErrorBody {
    #[serde(default)]
    message: String,
    #[serde(default)]
    errors: Vec<serde_json::Value>,
}

impl GitHub {
    /// A client for `repo`, authenticated with `token`.
    pub fn new(repo: GitHubRepo, token: &str) -> GitHub {
        let http = reqwest::Client::builder()
            .user_agent(concat!("rclaude/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap_or_default();
        GitHub {
            http,
            repo,
            token: token.to_string(),
        }
    }

    fn url(&self, tail: &str) -> String {
        format!(
            "{}/repos/{}/{}{tail}",
            self.repo.api, self.repo.owner, self.repo.name
        )
    }

    async fn send<T: serde::de::DeserializeOwned>(
        &self,
        rb: reqwest::RequestBuilder,
        what: &str,
    ) -> Result<T, GitHubError> {
        let resp = rb
            .bearer_auth(&self.token)
            .header("Accept", "application/vnd.github+json")
            .header("X-GitHub-Api-Version", "2022-11-28")
            .send()
            .await
            .map_err(|source| GitHubError::Unreachable {
                api: self.repo.api.clone(),
                source,
            })?;
        let status = resp.status().as_u16();
        if resp.status().is_success() {
            return resp.json().await.map_err(|e| GitHubError::Api {
                status,
                message: format!("unreadable answer: {e}"),
            });
        }
        let body: ErrorBody = resp.json().await.unwrap_or_default();
        let mut message = body.message;
        for e in &body.errors {
            let m = e["message"]
                .as_str()
                .map(str::to_string)
                .or_else(|| {
                    Some(format!(
                        "{} {}",
                        e["field"].as_str()?,
                        e["code"].as_str().unwrap_or("invalid")
                    ))
                })
                .unwrap_or_else(|| e.to_string());
            message.push_str(&format!("; {m}"));
        }
        Err(match status {
            401 => GitHubError::Unauthorized { status, message },
            403 => GitHubError::Forbidden { message },
            404 => GitHubError::NotFound {
                what: what.to_string(),
            },
            422 => GitHubError::Invalid { message },
            _ => GitHubError::Api { status, message },
        })
    }

    fn repo_name(&self) -> String {
        format!("repository {}/{}", self.repo.owner, self.repo.name)
    }

    /// The repository's default branch (the pull request's base unless told otherwise).
    pub async fn default_branch(&self) -> Result<String, GitHubError> {
        let r: Repository = self
            .send(self.http.get(self.url("")), &self.repo_name())
            .await?;
        Ok(r.default_branch)
    }

    /// The open pull request whose head is `branch` of this repository, if any.
    pub async fn open_pull(&self, branch: &str) -> Result<Option<PullRequest>, GitHubError> {
        let head = format!("{}:{branch}", self.repo.owner);
        let list: Vec<PullRequest> = self
            .send(
                self.http.get(self.url("/pulls")).query(&[
                    ("state", "open"),
                    ("head", head.as_str()),
                    ("per_page", "10"),
                ]),
                &self.repo_name(),
            )
            .await?;
        Ok(list.into_iter().next())
    }

    /// Open a pull request.
    pub async fn create_pull(&self, new: &NewPull<'_>) -> Result<PullRequest, GitHubError> {
        self.send(
            self.http.post(self.url("/pulls")).json(new),
            &self.repo_name(),
        )
        .await
    }

    /// Change a pull request's title, body or base.
    pub async fn update_pull(
        &self,
        number: u64,
        update: &PullUpdate<'_>,
    ) -> Result<PullRequest, GitHubError> {
        self.send(
            self.http
                .patch(self.url(&format!("/pulls/{number}")))
                .json(update),
            &format!("pull request #{number}"),
        )
        .await
    }
}
