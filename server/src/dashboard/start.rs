//! Start a managed session from a repository URL: the form on the sessions page and its
//! `POST /sessions/start` (the same path as `POST /v1/sessions` with `clone_url`).

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};

use super::auth::WebUser;
use super::layout;
use crate::clock::Now;
use crate::routes::managed::{CreateManaged, GitToken};
use crate::state::AppState;

/// The form, when this server manages sandboxes.
pub fn form(state: &AppState, csrf: &str) -> Markup {
    if crate::managed::sandboxes(state).is_err() {
        return html! {};
    }
    html! {
        form method="post" action="/sessions/start" class="start" id="start-session" {
            input type="hidden" name="csrf" value=(csrf);
            label for="start-url" { "Start a session from a repository" }
            input id="start-url" name="url" type="text" required maxlength="2000"
                placeholder="github.com/owner/repo@branch" autocomplete="off";
            label for="start-token" { "Token (private repositories; used for the clone only, never stored)" }
            input id="start-token" name="token" type="password" maxlength="1000" autocomplete="off";
            button type="submit" { "Start" }
        }
    }
}

/// `owner/name` with the URL's host (`github.com/acme/app`), as sessions name repositories.
fn repository_name(url: &str) -> String {
    let up = rclaude_deliver::Upstream::parse(url);
    let name = match (&up.host, &up.slug) {
        (Some(h), Some((o, n))) => format!("{h}/{o}/{n}"),
        _ => up.display(),
    };
    name.chars().take(300).collect()
}

/// `POST /sessions/start` (form: `csrf`, `url` = `URL[@REF]`, `token`): create the managed
/// session, clone into it, show its page.
pub async fn submit(
    State(state): State<AppState>,
    headers: HeaderMap,
    user: WebUser,
    now: Now,
    body: axum::body::Bytes,
) -> Response {
    let field = |name: &str| {
        url::form_urlencoded::parse(&body)
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.trim().to_string())
            .unwrap_or_default()
    };
    if !super::auth::same_origin(&headers) || !super::auth::same_secret(&field("csrf"), &user.csrf)
    {
        return layout::error_page(
            Some(&user),
            StatusCode::FORBIDDEN,
            "Start refused",
            "The form expired or came from another site; use the form on the sessions page.",
        );
    }
    let target = field("url");
    if target.is_empty() {
        return layout::error_page(
            Some(&user),
            StatusCode::UNPROCESSABLE_ENTITY,
            "No repository",
            "Give a repository URL, e.g. github.com/owner/repo or github.com/owner/repo@branch.",
        );
    }
    let token = Some(field("token")).filter(|t| !t.is_empty()).map(GitToken);
    let (url, _) = rclaude_deliver::upstream::parse_start_target(&target).unwrap_or_default();
    let request = CreateManaged {
        managed: true,
        repository: repository_name(if url.is_empty() { &target } else { &url }),
        name: None,
        clone_url: Some(target),
        git_token: token,
        template: None,
        resources: None,
        idle_pause: None,
    };
    let account = &user.principal.account_id;
    match crate::routes::managed::create(&state, account, now, &HeaderMap::new(), request).await {
        Ok((_, axum::Json(created))) => {
            Redirect::to(&format!("/sessions/{}", created.session.id)).into_response()
        }
        Err(e) => layout::error_page(
            Some(&user),
            e.status,
            "The session could not start",
            &e.message,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::repository_name;

    #[test]
    fn repositories_are_named_host_owner_name() {
        assert_eq!(
            repository_name("https://github.com/acme/app.git"),
            "github.com/acme/app"
        );
        assert_eq!(
            repository_name("http://127.0.0.1:8080/acme/app.git"),
            "127.0.0.1:8080/acme/app"
        );
        assert_eq!(
            repository_name("https://u:secret@host.example/o/r"),
            "host.example/o/r"
        );
    }
}
