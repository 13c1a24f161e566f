//! `GET /sessions/{id}`: a session's summary, its task results and its event timeline (live
//! over `/v1/sessions/{id}/events`).

use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use maud::{Markup, html};
use serde_json::Value;

use super::auth::WebUser;
use super::layout::{
    self, Nav, duration, html_response, page, q, short_id, state_badge, time, usd,
};
use crate::clock::Now;
use crate::model::{Event, Session};
use crate::state::AppState;

/// Events per timeline page.
pub const TIMELINE_PAGE: i64 = 200;

/// A finished task, paired with its start when known.
struct TaskResult<'a> {
    finished: &'a Event,
    task: String,
    exit_code: Option<i64>,
    duration_ms: Option<i64>,
}

fn task_results(events: &[Event]) -> Vec<TaskResult<'_>> {
    events
        .iter()
        .filter(|e| e.kind == "task_finished")
        .map(|e| TaskResult {
            finished: e,
            task: e.data["task"].as_str().unwrap_or("?").to_string(),
            exit_code: e.data["exit_code"].as_i64(),
            duration_ms: e.data["duration_ms"].as_i64(),
        })
        .collect()
}

/// A labelled port of the session, from its latest `ports` event.
struct PortLink {
    port: u64,
    label: Option<String>,
    url: String,
}

fn port_links(latest: Option<&Event>) -> Vec<PortLink> {
    let Some(list) = latest.and_then(|e| e.data["ports"].as_array()) else {
        return Vec::new();
    };
    list.iter()
        .filter_map(|p| {
            let url = p["url"].as_str()?;
            // Checked when the event was accepted; links are only ever http(s).
            (url.starts_with("http://") || url.starts_with("https://")).then(|| PortLink {
                port: p["port"].as_u64().unwrap_or(0),
                label: p["label"].as_str().map(str::to_string),
                url: url.to_string(),
            })
        })
        .collect()
}

fn ports(links: &[PortLink]) -> Markup {
    html! {
        section aria-labelledby="h-ports" {
            h2 id="h-ports" { "Ports" }
            ul id="ports" {
                @for p in links {
                    li {
                        a href=(p.url) target="_blank" rel="noopener noreferrer" {
                            (p.label.as_deref().unwrap_or("port")) " (" (p.port) ")"
                        }
                        " " code { (p.url) }
                    }
                }
            }
        }
    }
}

fn ms_text(ms: i64) -> String {
    if ms < 1000 {
        format!("{ms} ms")
    } else if ms < 60_000 {
        format!("{}.{:01} s", ms / 1000, (ms % 1000) / 100)
    } else {
        duration(ms / 1000)
    }
}

/// An event's details as short `key: value` text (data is escaped by the template).
fn details(e: &Event) -> Markup {
    let Value::Object(map) = &e.data else {
        return html! {};
    };
    html! {
        @for (k, v) in map {
            span class="kv" {
                span class="k" { (k) ": " }
                @match v {
                    Value::String(s) => { (s) }
                    other => { (other.to_string()) }
                }
            }
            " "
        }
    }
}

fn summary(s: &Session) -> Markup {
    html! {
        dl id="summary" class="summary-grid" {
            dt { "Repository" } dd { a href={ "/sessions?repository=" (q(&s.repository)) } { (s.repository) } }
            dt { "Branch" } dd { (s.branch) }
            dt { "Provider" } dd { (s.provider) }
            dt { "State" } dd { (state_badge(&s.state)) }
            dt { "Sandbox" } dd { (s.sandbox_id.as_deref().unwrap_or("–")) }
            dt { "Config hash" } dd { code { (s.config_hash.as_deref().unwrap_or("–")) } }
            dt { "Started" } dd { (time(&s.created_at)) }
            dt { "Last seen" } dd { (time(&s.last_seen_at)) }
            dt { "Active time" } dd { (duration(s.active_seconds)) }
            dt { "Cost so far" } dd { (usd(s.cost_micros)) }
            dt { "Events" } dd { (s.last_seq) }
        }
    }
}

/// Pause, resume and stop buttons of a managed session (the server runs its sandbox).
fn controls(s: &Session, csrf: &str) -> Markup {
    let button = |action: &str, label: &str| {
        html! {
            form method="post" action={ "/sessions/" (s.id) "/" (action) } class="inline" {
                input type="hidden" name="csrf" value=(csrf);
                button type="submit" id={ "session-" (action) } { (label) }
            }
        }
    };
    html! {
        div class="controls" role="group" aria-label="Session controls" {
            @if s.state == "running" { (button("pause", "Pause")) }
            @else { (button("resume", "Resume")) }
            (button("stop", "Stop and delete the sandbox"))
        }
    }
}

/// `POST /sessions/{id}/{pause|resume|stop}` (form: `csrf`): act on a managed session as the API
/// does, then show its page again.
pub async fn action_handler(
    State(state): State<AppState>,
    headers: axum::http::HeaderMap,
    user: WebUser,
    now: Now,
    Path((id, action)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> Response {
    let csrf = url::form_urlencoded::parse(&body)
        .find(|(k, _)| k == "csrf")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default();
    if !super::auth::same_origin(&headers) || !super::auth::same_secret(&csrf, &user.csrf) {
        return layout::error_page(
            Some(&user),
            StatusCode::FORBIDDEN,
            "Action refused",
            "The form expired or came from another site; use the buttons on the session's page.",
        );
    }
    let account = &user.principal.account_id;
    let done = match action.as_str() {
        "pause" => crate::managed::pause(&state, account, &id, now)
            .await
            .map(|_| ()),
        "resume" => crate::managed::resume(&state, account, &id, now)
            .await
            .map(|_| ()),
        "stop" => crate::managed::delete(&state, account, &id, now)
            .await
            .map(|_| ()),
        _ => return layout::not_found(&user, "such action"),
    };
    match done {
        Ok(()) => axum::response::IntoResponse::into_response(axum::response::Redirect::to(
            &format!("/sessions/{id}"),
        )),
        Err(e) if e.status == StatusCode::NOT_FOUND => layout::not_found(&user, "such session"),
        Err(e) => layout::error_page(
            Some(&user),
            e.status,
            "The session could not change",
            &e.message,
        ),
    }
}

/// `GET /sessions/{id}?from_seq=N`.
pub async fn page_handler(
    State(state): State<AppState>,
    user: WebUser,
    now: Now,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Response {
    let Ok(sid) = crate::validate::session_id("id", &id) else {
        return layout::not_found(&user, "such session");
    };
    let account = &user.principal.account_id;
    let session = match state.store.get_session(account, &sid, now.s()).await {
        Ok(Some(s)) => s,
        Ok(None) => return layout::not_found(&user, "such session"),
        Err(e) => return layout::store_error(Some(&user), e),
    };
    let from_seq = url::form_urlencoded::parse(raw.as_deref().unwrap_or("").as_bytes())
        .find(|(k, _)| k == "from_seq")
        .and_then(|(_, v)| v.parse::<i64>().ok())
        .filter(|n| *n >= 1);
    // Latest page by default; `from_seq` pages back.
    let since = match from_seq {
        Some(n) => n - 1,
        None => (session.last_seq - TIMELINE_PAGE).max(0),
    };
    let events = match state
        .store
        .list_events(account, &sid, since, TIMELINE_PAGE)
        .await
    {
        Ok(e) => e,
        Err(e) => return layout::store_error(Some(&user), e),
    };
    let finished = match state
        .store
        .events_of_kind(account, &sid, "task_finished")
        .await
    {
        Ok(e) => e,
        Err(e) => return layout::store_error(Some(&user), e),
    };
    let tasks = task_results(&finished);
    let port_events = match state.store.events_of_kind(account, &sid, "ports").await {
        Ok(e) => e,
        Err(e) => return layout::store_error(Some(&user), e),
    };
    let links = if session.state == "stopped" {
        Vec::new()
    } else {
        port_links(port_events.last())
    };
    let latest = events.last().is_none_or(|e| e.seq >= session.last_seq);
    let title = format!("Session {}", short_id(&session.id));
    let body = html! {
        p { a href="/sessions" { "All sessions" } }
        h1 { "Session " code { (short_id(&session.id)) } " of " (session.repository) }
        (layout::live_status())
        div id="session-live" data-live="session" data-session=(session.id)
            data-last-seq=(session.last_seq) data-latest=(if latest { "yes" } else { "no" }) {
            section aria-labelledby="h-summary" {
                h2 id="h-summary" { "Summary" }
                (summary(&session))
                @if session.managed && session.state != "stopped" {
                    (controls(&session, &user.csrf))
                }
            }
            @if !links.is_empty() {
                (ports(&links))
            }
            section aria-labelledby="h-tasks" {
                h2 id="h-tasks" { "Task results" }
                div id="tasks" class="scroll" {
                    @if tasks.is_empty() {
                        p { "No task has finished in this session yet." }
                    } @else {
                        table {
                            caption { (tasks.len()) " finished task" @if tasks.len() != 1 { "s" } }
                            thead { tr {
                                th scope="col" { "Task" } th scope="col" { "Result" }
                                th scope="col" { "Exit code" } th scope="col" { "Duration" }
                                th scope="col" { "Finished" }
                            } }
                            tbody {
                                @for t in &tasks {
                                    tr {
                                        th scope="row" { (t.task) }
                                        td {
                                            @match t.exit_code {
                                                Some(0) => { span class="ok" { "passed" } }
                                                Some(_) => { span class="fail" { "failed" } }
                                                None => { "unknown" }
                                            }
                                        }
                                        td class="num" { (t.exit_code.map(|c| c.to_string()).unwrap_or_else(|| "–".into())) }
                                        td class="num" { (t.duration_ms.map(ms_text).unwrap_or_else(|| "–".into())) }
                                        td { (time(&t.finished.created_at)) }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            section aria-labelledby="h-timeline" {
                h2 id="h-timeline" { "Timeline" }
                div id="timeline" class="scroll" {
                    table {
                        caption {
                            "Events " (events.first().map(|e| e.seq).unwrap_or(0)) "–"
                            (events.last().map(|e| e.seq).unwrap_or(0)) " of " (session.last_seq)
                        }
                        thead { tr {
                            th scope="col" { "#" } th scope="col" { "Time" }
                            th scope="col" { "Event" } th scope="col" { "Details" }
                        } }
                        tbody {
                            @for e in &events {
                                tr id={ "e-" (e.seq) } {
                                    td class="num" { (e.seq) }
                                    td { (time(&e.created_at)) }
                                    th scope="row" { (e.kind) }
                                    td { (details(e)) }
                                }
                            }
                        }
                    }
                    nav class="pager" aria-label="Timeline pages" {
                        @if let Some(first) = events.first() {
                            @if first.seq > 1 {
                                a href={ "/sessions/" (session.id) "?from_seq=" ((first.seq - TIMELINE_PAGE).max(1)) } rel="prev" {
                                    "Earlier events"
                                }
                            }
                        }
                        @if !latest {
                            a href={ "/sessions/" (session.id) } { "Latest events" }
                        }
                    }
                }
            }
        }
    };
    html_response(
        StatusCode::OK,
        page(&title, Some(&user), Nav::Sessions, body),
    )
}
