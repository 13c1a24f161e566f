//! `GET /sessions`: a table per repository (newest sessions first, live over `/v1/events`), or
//! one repository's sessions page by page; `GET /sessions/{id}/section`: one session's row in
//! its repository's table (the live script inserts it).

use std::collections::HashMap;

use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use maud::{Markup, html};

use super::auth::WebUser;
use super::layout::{
    self, Nav, duration, html_response, page, q, short_id, state_badge, time, usd,
};
use crate::clock::Now;
use crate::model::{STATES, Session};
use crate::state::AppState;
use crate::storage::{RepoSummary, SessionFilter};

/// Sessions shown per repository on the overview.
pub const PER_REPO: i64 = 10;
/// Repositories per overview page.
pub const REPOS_PER_PAGE: i64 = 20;
/// Sessions per page of one repository.
pub const PAGE_SIZE: i64 = 50;

#[derive(Debug, Default)]
struct ListQuery {
    repository: Option<String>,
    state: Option<String>,
    page: i64,
    cursor: Option<(i64, String)>,
}

fn parse_query(raw: Option<&str>) -> Result<ListQuery, String> {
    let mut out = ListQuery::default();
    for (k, v) in url::form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
        let v = v.trim().to_string();
        match k.as_ref() {
            "repository" if !v.is_empty() => out.repository = Some(v),
            "state" if !v.is_empty() => {
                if !STATES.contains(&v.as_str()) {
                    return Err(format!(
                        "“{v}” is not a session state; use one of {}.",
                        STATES.join(", ")
                    ));
                }
                out.state = Some(v);
            }
            "page" if !v.is_empty() => {
                out.page = v
                    .parse::<i64>()
                    .ok()
                    .filter(|p| (0..=100_000).contains(p))
                    .ok_or_else(|| format!("“{v}” is not a page number."))?;
            }
            "cursor" if !v.is_empty() => {
                let bad = || "That page link is not valid; start from the first page.".to_string();
                let (ms, id) = v.split_once('.').ok_or_else(bad)?;
                let ms = ms.parse().map_err(|_| bad())?;
                let id = crate::validate::session_id("cursor", id).map_err(|_| bad())?;
                out.cursor = Some((ms, id));
            }
            _ => {}
        }
    }
    Ok(out)
}

const COLUMNS: [&str; 7] = [
    "Session",
    "State",
    "Provider",
    "Branch",
    "Started",
    "Active time",
    "Cost so far",
];

/// One session's row.
pub fn row(s: &Session) -> Markup {
    html! {
        tr id={ "s-" (s.id) } data-session=(s.id) data-state=(s.state) {
            th scope="row" {
                a href={ "/sessions/" (s.id) } aria-label={ "Session " (short_id(&s.id)) } {
                    code { (short_id(&s.id)) }
                }
            }
            td { (state_badge(&s.state)) }
            td { (s.provider) }
            td { (s.branch) }
            td { (time(&s.created_at)) }
            td class="num" { (duration(s.active_seconds)) }
            td class="num" { (usd(s.cost_micros)) }
        }
    }
}

fn caption_text(name: &str, sessions: i64, running: i64) -> String {
    let plural = if sessions == 1 { "" } else { "s" };
    format!("{name}: {sessions} session{plural}, {running} running")
}

/// A repository's table (`rows` already rendered).
fn section(name: &str, sessions: i64, running: i64, rows: Markup, more: Option<Markup>) -> Markup {
    html! {
        section class="repo" data-repository=(name) {
            h2 { (name) }
            div class="scroll" {
                table class="sessions" {
                    caption { (caption_text(name, sessions, running)) }
                    thead { tr { @for c in COLUMNS { th scope="col" { (c) } } } }
                    tbody { (rows) }
                }
            }
            @if let Some(m) = more { (m) }
        }
    }
}

fn filter_form(repository: Option<&str>, state: Option<&str>) -> Markup {
    html! {
        form method="get" action="/sessions" class="filters" {
            @if let Some(r) = repository {
                input type="hidden" name="repository" value=(r);
            }
            label for="state" { "State" }
            select id="state" name="state" {
                option value="" selected[state.is_none()] { "any" }
                @for s in STATES {
                    option value=(s) selected[state == Some(s)] { (s) }
                }
            }
            button type="submit" { "Filter" }
        }
    }
}

/// `GET /sessions?repository=&state=&page=&cursor=`.
pub async fn page_handler(
    State(state): State<AppState>,
    user: WebUser,
    now: Now,
    RawQuery(raw): RawQuery,
) -> Response {
    let query = match parse_query(raw.as_deref()) {
        Ok(q) => q,
        Err(m) => {
            return layout::error_page(Some(&user), StatusCode::BAD_REQUEST, "Bad request", &m);
        }
    };
    let result = match &query.repository {
        Some(repo) => one_repository(&state, &user, now, repo, &query).await,
        None => overview(&state, &user, now, &query).await,
    };
    match result {
        Ok(body) => html_response(
            StatusCode::OK,
            page("Sessions", Some(&user), Nav::Sessions, body),
        ),
        Err(e) => layout::store_error(Some(&user), e),
    }
}

async fn overview(
    state: &AppState,
    user: &WebUser,
    now: Now,
    query: &ListQuery,
) -> Result<Markup, crate::storage::StoreError> {
    let account = &user.principal.account_id;
    let st = query.state.as_deref();
    let groups = state.store.repository_groups(account, st).await?;
    let total: i64 = groups.iter().map(|g| g.sessions).sum();
    let running: i64 = groups.iter().map(|g| g.running).sum();
    let repo_count = groups.len() as i64;
    let repos: Vec<RepoSummary> = groups
        .into_iter()
        .skip((query.page * REPOS_PER_PAGE) as usize)
        .take(REPOS_PER_PAGE as usize)
        .collect();
    let ids: Vec<String> = repos.iter().map(|r| r.id.clone()).collect();
    let mut newest: HashMap<String, Vec<Session>> = state
        .store
        .newest_sessions_per_repository(account, &ids, st, PER_REPO, now.s())
        .await?;
    let pages = (repo_count + REPOS_PER_PAGE - 1) / REPOS_PER_PAGE;
    let state_q = st.map(|s| format!("&state={}", q(s))).unwrap_or_default();
    Ok(html! {
        h1 { "Sessions" }
        (super::start::form(state, &user.csrf))
        (account_summary(total, repo_count, running, st))
        (filter_form(None, st))
        (layout::live_status())
        div id="repositories" data-live="sessions" data-per-repo=(PER_REPO)
            data-insert=(if query.page == 0 { "yes" } else { "no" })
            data-filter-state=(st.unwrap_or("")) data-filter-repository="" {
            @if repos.is_empty() {
                p id="empty" {
                    @if st.is_some() { "No sessions in this state." }
                    @else { "No sessions yet. Start one with " code { "rclaude up" } "." }
                }
            }
            @for r in &repos {
                (repo_section(r, newest.remove(&r.id).unwrap_or_default(), st))
            }
        }
        @if pages > 1 {
            nav class="pager" aria-label="Repository pages" {
                @if query.page > 0 {
                    a href={ "/sessions?page=" (query.page - 1) (state_q) } rel="prev" { "Previous repositories" }
                }
                span { "Page " (query.page + 1) " of " (pages) }
                @if query.page + 1 < pages {
                    a href={ "/sessions?page=" (query.page + 1) (state_q) } rel="next" { "More repositories" }
                }
            }
        }
    })
}

/// The line above the tables (replaced by the live script when sessions appear).
fn account_summary(total: i64, repos: i64, running: i64, st: Option<&str>) -> Markup {
    html! {
        p id="account-summary" class="summary" {
            (total) " session" @if total != 1 { "s" }
            @if let Some(s) = st { " in state " (s) }
            " in " (repos) " repositor" @if repos == 1 { "y" } @else { "ies" } "; "
            (running) " running. The newest " (PER_REPO) " of each repository are shown."
        }
    }
}

fn repo_section(r: &RepoSummary, sessions: Vec<Session>, st: Option<&str>) -> Markup {
    let rows = html! { @for s in &sessions { (row(s)) } };
    let more = (r.sessions > sessions.len() as i64).then(|| {
        let state_q = st.map(|s| format!("&state={}", q(s))).unwrap_or_default();
        html! {
            p class="more" {
                a href={ "/sessions?repository=" (q(&r.name)) (state_q) } {
                    "All " (r.sessions) " sessions of " (r.name)
                }
            }
        }
    });
    section(&r.name, r.sessions, r.running, rows, more)
}

async fn one_repository(
    state: &AppState,
    user: &WebUser,
    now: Now,
    repo: &str,
    query: &ListQuery,
) -> Result<Markup, crate::storage::StoreError> {
    let account = &user.principal.account_id;
    let filter = SessionFilter {
        repository: Some(repo.to_string()),
        state: query.state.clone(),
        provider: None,
        limit: PAGE_SIZE,
        after: query.cursor.clone(),
    };
    let (sessions, next) = state.store.list_sessions(account, &filter, now.s()).await?;
    let count = state
        .store
        .repository_summary(account, repo, query.state.as_deref())
        .await?;
    let (n, running) = count.map(|c| (c.sessions, c.running)).unwrap_or((0, 0));
    let state_q = query
        .state
        .as_deref()
        .map(|s| format!("&state={}", q(s)))
        .unwrap_or_default();
    let rows = html! { @for s in &sessions { (row(s)) } };
    let pager = html! {
        nav class="pager" aria-label="Session pages" {
            @if query.cursor.is_some() {
                a href={ "/sessions?repository=" (q(repo)) (state_q) } { "Newest sessions" }
            }
            @if let Some((ms, id)) = &next {
                a href={ "/sessions?repository=" (q(repo)) (state_q) "&cursor=" (ms) "." (id) } rel="next" {
                    "Older sessions"
                }
            }
        }
    };
    Ok(html! {
        p { a href="/sessions" { "All repositories" } }
        h1 { "Sessions of " (repo) }
        (filter_form(Some(repo), query.state.as_deref()))
        (layout::live_status())
        div id="repositories" data-live="sessions" data-per-repo=(PAGE_SIZE)
            data-insert=(if query.cursor.is_none() { "yes" } else { "no" })
            data-filter-state=(query.state.as_deref().unwrap_or("")) data-filter-repository=(repo) {
            @if sessions.is_empty() {
                p id="empty" { "No sessions of this repository" @if query.state.is_some() { " in this state" } "." }
            } @else {
                (section(repo, n, running, rows, Some(pager)))
            }
        }
    })
}

/// `GET /sessions/{id}/section[?totals=1]`: the session's row inside its repository's section
/// (with the repository's current counts, and with `totals=1` the account's totals line), for
/// the live script. 404 for another account's session.
pub async fn section_fragment(
    State(state): State<AppState>,
    user: WebUser,
    now: Now,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Response {
    let totals = raw.as_deref() == Some("totals=1");
    let Ok(sid) = crate::validate::session_id("id", &id) else {
        return layout::not_found(&user, "such session");
    };
    let account = &user.principal.account_id;
    let session = match state.store.get_session(account, &sid, now.s()).await {
        Ok(Some(s)) => s,
        Ok(None) => return layout::not_found(&user, "such session"),
        Err(e) => return layout::store_error(Some(&user), e),
    };
    let summary = match state
        .store
        .repository_summary(account, &session.repository, None)
        .await
    {
        Ok(s) => s,
        Err(e) => return layout::store_error(Some(&user), e),
    };
    let (n, running) = summary.map(|c| (c.sessions, c.running)).unwrap_or((1, 0));
    let summary = if totals {
        let groups = match state.store.repository_groups(account, None).await {
            Ok(g) => g,
            Err(e) => return layout::store_error(Some(&user), e),
        };
        let total: i64 = groups.iter().map(|g| g.sessions).sum();
        let all_running: i64 = groups.iter().map(|g| g.running).sum();
        Some(account_summary(
            total,
            groups.len() as i64,
            all_running,
            None,
        ))
    } else {
        None
    };
    let markup = html! {
        @if let Some(s) = summary { (s) }
        (section(&session.repository, n, running, row(&session), None))
    };
    html_response(StatusCode::OK, markup)
}
