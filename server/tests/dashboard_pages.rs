//! The dashboard over real HTTP against the real `rclaude-server` binary (SQLite and
//! PostgreSQL): cookie sign-in and sign-out with CSRF and origin checks, cookie attributes, the
//! cookie on the live WebSocket, pages that show only the signed-in account's data, figures equal
//! to the billing API's, escaping, CSV downloads, grouping and paging.

mod common;

use common::*;
use reqwest::StatusCode;
use reqwest::header::{HeaderMap, LOCATION, SET_COOKIE};
use serde_json::Value;
use std::time::Duration;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// A client that keeps the dashboard cookie by hand and never follows redirects.
struct Web {
    http: reqwest::Client,
    base: String,
    cookie: Option<String>,
}

struct Page {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

impl Page {
    fn location(&self) -> &str {
        self.headers
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    fn set_cookie(&self, name: &str) -> Option<String> {
        self.headers
            .get_all(SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find(|v| v.starts_with(&format!("{name}=")))
            .map(str::to_string)
    }
}

fn cookie_value(set_cookie: &str) -> String {
    set_cookie
        .split(';')
        .next()
        .unwrap()
        .split_once('=')
        .unwrap()
        .1
        .to_string()
}

fn hidden(body: &str, name: &str) -> String {
    let needle = format!("name=\"{name}\" value=\"");
    let start = body
        .find(&needle)
        .unwrap_or_else(|| panic!("no {name} field in {body}"))
        + needle.len();
    body[start..].split('"').next().unwrap().to_string()
}

impl Web {
    fn new(server: &Server) -> Web {
        Web {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            base: server.base.clone(),
            cookie: None,
        }
    }

    async fn req(
        &self,
        method: reqwest::Method,
        path: &str,
        extra: &[(&str, &str)],
        form: Option<String>,
    ) -> Page {
        let mut r = self.http.request(method, format!("{}{path}", self.base));
        if let Some(c) = &self.cookie {
            r = r.header("cookie", c);
        }
        for (k, v) in extra {
            r = r.header(*k, *v);
        }
        if let Some(f) = form {
            r = r
                .header("content-type", "application/x-www-form-urlencoded")
                .body(f);
        }
        let resp = r.send().await.unwrap();
        Page {
            status: resp.status(),
            headers: resp.headers().clone(),
            body: resp.text().await.unwrap(),
        }
    }

    async fn get(&self, path: &str) -> Page {
        self.req(reqwest::Method::GET, path, &[], None).await
    }

    async fn get_at(&self, path: &str, at: &str) -> Page {
        self.req(reqwest::Method::GET, path, &[("x-rclaude-now", at)], None)
            .await
    }

    /// Signs in with `token`; returns the sign-in answer and keeps the session cookie.
    async fn sign_in_with(&mut self, token: &str, extra: &[(&str, &str)]) -> Page {
        let form_page = self.get("/sign-in?next=%2Fusage").await;
        assert_eq!(form_page.status, StatusCode::OK);
        let pre = cookie_value(
            &form_page
                .set_cookie("rclaude_signin")
                .expect("sign-in cookie"),
        );
        let csrf = hidden(&form_page.body, "csrf");
        assert_eq!(pre, csrf);
        let form = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("token", token)
            .append_pair("csrf", &csrf)
            .append_pair("next", "/usage")
            .finish();
        let saved = self.cookie.take();
        self.cookie = Some(format!("rclaude_signin={pre}"));
        let page = self
            .req(reqwest::Method::POST, "/sign-in", extra, Some(form))
            .await;
        self.cookie = page
            .set_cookie("rclaude_session")
            .map(|c| format!("rclaude_session={}", cookie_value(&c)))
            .or(saved);
        page
    }

    async fn sign_in(&mut self, token: &str) {
        let p = self.sign_in_with(token, &[]).await;
        assert_eq!(p.status, StatusCode::SEE_OTHER, "{}", p.body);
    }
}

async fn ws_with_cookie(addr: &str, path: &str, cookie: &str, origin: &str) -> Result<Ws, u16> {
    let mut req = format!("ws://{addr}{path}").into_client_request().unwrap();
    req.headers_mut().insert("cookie", cookie.parse().unwrap());
    req.headers_mut().insert("origin", origin.parse().unwrap());
    match tokio_tungstenite::connect_async(req).await {
        Ok((ws, _)) => Ok(ws),
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => Err(resp.status().as_u16()),
        Err(e) => panic!("websocket: {e}"),
    }
}

async fn sign_in_and_out(db: TestDb) {
    let token = create_account(&db, "alice").await;
    let server = Server::start(&db, &[]).await;
    let mut web = Web::new(&server);

    // Strangers are sent to sign in, keeping where they wanted to go.
    let p = web.get("/usage?month=2025-02").await;
    assert_eq!(p.status, StatusCode::SEE_OTHER);
    assert_eq!(p.location(), "/sign-in?next=%2Fusage%3Fmonth%3D2025-02");
    assert_eq!(web.get("/").await.location(), "/sessions");

    // The form: a labelled password input, a double-submit token, security headers.
    let form = web.get("/sign-in").await;
    assert!(
        form.body.contains("<label for=\"token\">API token</label>"),
        "{}",
        form.body
    );
    assert!(form.body.contains("type=\"password\""));
    let csp = form
        .headers
        .get("content-security-policy")
        .unwrap()
        .to_str()
        .unwrap();
    assert!(
        csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    let pre = form.set_cookie("rclaude_signin").unwrap();
    assert!(
        pre.contains("HttpOnly") && pre.contains("SameSite=Strict"),
        "{pre}"
    );

    // CSRF: a post without the matching token, or from another site, is refused.
    let csrf = hidden(&form.body, "csrf");
    let body = |csrf: &str| format!("token={token}&csrf={csrf}");
    let p = web
        .req(reqwest::Method::POST, "/sign-in", &[], Some(body(&csrf)))
        .await;
    assert_eq!(p.status, StatusCode::FORBIDDEN, "no cookie");
    let cookie = format!("rclaude_signin={csrf}");
    let p = web
        .req(
            reqwest::Method::POST,
            "/sign-in",
            &[("cookie", &cookie)],
            Some(body("forged")),
        )
        .await;
    assert_eq!(p.status, StatusCode::FORBIDDEN, "wrong token");
    let p = web
        .req(
            reqwest::Method::POST,
            "/sign-in",
            &[("cookie", &cookie), ("origin", "http://evil.example")],
            Some(body(&csrf)),
        )
        .await;
    assert_eq!(p.status, StatusCode::FORBIDDEN, "cross-site");
    assert!(p.set_cookie("rclaude_session").is_none());

    // Wrong tokens: a clear message, the token never echoed.
    let wrong = "rcl_abcdefgh_ABCDEFGHIJKLMNOPQRSTUVWXYZ012345";
    let p = web.sign_in_with(wrong, &[]).await;
    assert_eq!(p.status, StatusCode::UNAUTHORIZED);
    assert!(p.body.contains("unknown or revoked"), "{}", p.body);
    assert!(!p.body.contains(wrong));
    let p = web.sign_in_with("hello<script>", &[]).await;
    assert_eq!(p.status, StatusCode::UNAUTHORIZED);
    assert!(!p.body.contains("hello<script>") && !p.body.contains("hello&lt;script"));

    // The right token: a session cookie, HttpOnly + SameSite=Strict + Path=/, Secure only over
    // https (auto); redirected to where the user was going; the token appears nowhere.
    let p = web.sign_in_with(&token, &[]).await;
    assert_eq!((p.status, p.location()), (StatusCode::SEE_OTHER, "/usage"));
    let c = p.set_cookie("rclaude_session").unwrap();
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=86400"] {
        assert!(c.contains(attr), "{attr} missing: {c}");
    }
    assert!(!c.contains("Secure"), "{c}");
    assert!(!c.contains(&token));
    let page = web.get("/usage").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("Signed in as <strong>alice</strong>"));
    assert!(!page.body.contains(&token));
    assert_eq!(page.headers.get("cache-control").unwrap(), "no-store");
    let mut secure = Web::new(&server);
    let p = secure
        .sign_in_with(&token, &[("x-forwarded-proto", "https")])
        .await;
    assert!(
        p.set_cookie("rclaude_session")
            .unwrap()
            .contains("; Secure")
    );

    // The cookie authenticates the live WebSocket (same account only, same site only).
    let cookie = web.cookie.clone().unwrap();
    let origin = server.base.clone();
    let mut ws = ws_with_cookie(&server.addr, "/v1/events", &cookie, &origin)
        .await
        .unwrap();
    let api = server.client(&token);
    let sid = api.new_session("github.com/acme/app", None).await;
    let msg = ws_next(&mut ws).await;
    assert_eq!(msg["session"]["id"], sid.as_str());
    assert_eq!(
        ws_with_cookie(&server.addr, "/v1/events", &cookie, "http://evil.example")
            .await
            .err(),
        Some(401)
    );
    let mut sws = ws_with_cookie(
        &server.addr,
        &format!("/v1/sessions/{sid}/events?since_seq=0"),
        &cookie,
        &origin,
    )
    .await
    .unwrap();
    assert_eq!(ws_next(&mut sws).await["event"]["type"], "created");

    // Sign-out needs the form's CSRF token, then revokes the session server-side.
    let sessions_page = web.get("/sessions").await;
    let out_csrf = hidden(&sessions_page.body, "csrf");
    let p = web
        .req(
            reqwest::Method::POST,
            "/sign-out",
            &[],
            Some("csrf=nope".into()),
        )
        .await;
    assert_eq!(p.status, StatusCode::FORBIDDEN);
    assert_eq!(
        web.get("/sessions").await.status,
        StatusCode::OK,
        "still signed in"
    );
    let p = web
        .req(
            reqwest::Method::POST,
            "/sign-out",
            &[],
            Some(format!("csrf={out_csrf}")),
        )
        .await;
    assert_eq!(
        (p.status, p.location()),
        (StatusCode::SEE_OTHER, "/sign-in")
    );
    assert!(
        p.set_cookie("rclaude_session")
            .unwrap()
            .contains("Max-Age=0")
    );
    // Sockets opened with that sign-in close at once (1008), not at their next ping.
    assert_eq!(
        ws_close_code(&mut ws, Duration::from_secs(5)).await,
        Some(1008)
    );
    assert_eq!(
        ws_close_code(&mut sws, Duration::from_secs(5)).await,
        Some(1008)
    );
    // The old cookie is dead even if a browser kept it.
    assert_eq!(web.get("/sessions").await.status, StatusCode::SEE_OTHER);
    assert_eq!(
        ws_with_cookie(&server.addr, "/v1/events", &cookie, &origin)
            .await
            .err(),
        Some(401)
    );
    drop(ws);
    drop(sws);

    // Revoking the API token ends the browser sessions signed in with it.
    web.sign_in(&token).await;
    assert_eq!(web.get("/sessions").await.status, StatusCode::OK);
    let (ok, out, err) = admin(&db, &["revoke-token", &token[..12]]).await;
    assert!(ok, "{out}{err}");
    assert_eq!(web.get("/sessions").await.status, StatusCode::SEE_OTHER);
}

async fn only_own_data(db: TestDb) {
    let alice = create_account(&db, "alice").await;
    let bob = create_account(&db, "bob").await;
    let server = Server::start(&db, &[]).await;
    let (a, b) = (server.client(&alice), server.client(&bob));
    let a1 = a.new_session("github.com/alice/app", None).await;
    a.event(&a1, "started", None).await;
    let bob_repo = "github.com/bob/secret-project";
    let b1 = b.new_session(bob_repo, None).await;
    b.event(&b1, "started", None).await;
    b.event_with(
        &b1,
        "task_finished",
        serde_json::json!({"task": "bob-task", "exit_code": 0, "duration_ms": 5}),
        None,
    )
    .await;

    let mut web = Web::new(&server);
    web.sign_in(&alice).await;
    let month = time::OffsetDateTime::now_utc().date().to_string()[..7].to_string();
    for path in [
        "/sessions".to_string(),
        format!("/sessions?repository={}", bob_repo),
        format!("/sessions/{a1}"),
        format!("/sessions/{a1}/section"),
        format!("/sessions/{a1}/section?totals=1"),
        "/usage".to_string(),
        format!("/usage.csv?month={month}"),
        format!("/invoice.csv?month={month}"),
    ] {
        let p = web.get(&path).await;
        assert_eq!(p.status, StatusCode::OK, "{path}");
        // Asking for Bob's repository by name echoes the name alice typed, nothing of Bob's.
        let asked = path.contains("repository=");
        if asked {
            assert!(
                p.body.contains("No sessions of this repository."),
                "{}",
                p.body
            );
        }
        let secrets: &[&str] = if asked {
            &[b1.as_str(), &b1[..8], "bob-task"]
        } else {
            &[bob_repo, b1.as_str(), &b1[..8], "bob-task", "bob"]
        };
        for secret in secrets.iter().copied() {
            assert!(
                !p.body.contains(secret),
                "{path} shows {secret}:\n{}",
                p.body
            );
        }
    }
    assert!(web.get("/sessions").await.body.contains(&a1[..8]));
    for path in [format!("/sessions/{b1}"), format!("/sessions/{b1}/section")] {
        let p = web.get(&path).await;
        assert_eq!(p.status, StatusCode::NOT_FOUND, "{path}");
        assert!(!p.body.contains(bob_repo));
    }
    assert_eq!(
        web.get("/sessions/not-a-uuid").await.status,
        StatusCode::NOT_FOUND
    );

    // Alice's account socket (cookie) never carries Bob's events.
    let mut ws = ws_with_cookie(
        &server.addr,
        "/v1/events",
        web.cookie.as_ref().unwrap(),
        &server.base,
    )
    .await
    .unwrap();
    b.event(&b1, "heartbeat", None).await;
    a.event(&a1, "heartbeat", None).await;
    let msg = ws_next(&mut ws).await;
    assert_eq!(msg["session"]["id"], a1.as_str());
    ws_close(ws).await;
}

/// Figures on the pages equal the API's (the same billing code), across the worked example's
/// month boundary, with the clock driven by `x-rclaude-now`.
async fn figures_match_the_api(db: TestDb) {
    let token = create_account(&db, "alice").await;
    let server = Server::start(&db, &[]).await;
    let c = server.client(&token);
    let repo = "github.com/acme/<b>app</b>";
    let sid = c.new_session(repo, Some("2025-01-31T22:50:00Z")).await;
    c.event(&sid, "started", Some("2025-01-31T23:00:00Z")).await;
    let mut t = time::macros::datetime!(2025-01-31 23:04 UTC);
    while t < time::macros::datetime!(2025-02-01 00:30 UTC) {
        let at = t
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap();
        c.event(&sid, "heartbeat", Some(&at)).await;
        t += time::Duration::minutes(4);
    }
    c.event(&sid, "paused", Some("2025-02-01T00:30:00Z")).await;
    c.event_with(
        &sid,
        "task_finished",
        serde_json::json!({"task": "test <all>", "exit_code": 3, "duration_ms": 5120, "message": "<img src=x>"}),
        Some("2025-02-01T00:31:00Z"),
    )
    .await;
    c.event(&sid, "stopped", Some("2025-02-01T00:32:00Z")).await;
    let at = "2025-02-10T00:00:00Z";

    let mut web = Web::new(&server);
    web.sign_in(&token).await;

    // Sessions and session page: active time and cost as the API computes them; escaped.
    let (_, api) = c.get_at(&format!("/v1/sessions/{sid}"), at).await;
    let s = &api["session"];
    let active = rclaude_server::billing::format_hms(s["active_seconds"].as_i64().unwrap());
    let cost = rclaude_server::billing::format_usd(s["cost_micros"].as_i64().unwrap());
    assert_eq!((active.as_str(), cost.as_str()), ("1h 30m 0s", "$0.15"));
    for path in ["/sessions".to_string(), format!("/sessions/{sid}")] {
        let p = web.get_at(&path, at).await;
        assert!(
            p.body.contains(&active) && p.body.contains(&cost),
            "{path}: {}",
            p.body
        );
        assert!(
            p.body.contains("github.com/acme/&lt;b&gt;app&lt;/b&gt;"),
            "{path}"
        );
        assert!(!p.body.contains("<b>app</b>"), "{path} is not escaped");
        assert!(p.body.contains("<caption>") && p.body.contains("scope=\"col\""));
    }
    let p = web.get_at(&format!("/sessions/{sid}"), at).await;
    assert!(p.body.contains("test &lt;all&gt;") && p.body.contains("&lt;img src=x&gt;"));
    assert!(
        p.body.contains("<span class=\"fail\">failed</span>"),
        "exit code 3 is a failure"
    );
    assert!(p.body.contains("5.1 s"));

    // Usage page and CSVs for February: the API's numbers.
    let (_, usage) = c
        .get_at("/v1/usage?from=2025-02-01&to=2025-02-28", at)
        .await;
    let (_, invoice) = c.get_at("/v1/invoices/2025-02", at).await;
    let p = web.get_at("/usage?month=2025-02", at).await;
    assert_eq!(p.status, StatusCode::OK);
    assert!(p.body.contains("<svg") && p.body.contains("role=\"img\""));
    assert!(
        p.body
            .contains("<title>2025-02-01: 0h 30m 0s active</title>"),
        "{}",
        p.body
    );
    assert_eq!(p.body.matches("<g class=\"bar\">").count(), 2 * 28);
    for l in invoice["lines"].as_array().unwrap() {
        let amount = rclaude_server::billing::format_usd(l["amount_micros"].as_i64().unwrap());
        assert!(p.body.contains(&amount), "invoice amount {amount} missing");
    }
    let total = rclaude_server::billing::format_usd(invoice["total_micros"].as_i64().unwrap());
    assert!(p.body.contains(&total));
    assert!(
        p.body.contains("href=\"/usage?month=2025-01\"")
            && p.body.contains("href=\"/usage?month=2025-03\"")
    );

    let csv = web.get_at("/usage.csv?month=2025-02", at).await;
    assert_eq!(
        csv.headers.get("content-type").unwrap(),
        "text/csv; charset=utf-8"
    );
    assert_eq!(
        csv.headers.get("content-disposition").unwrap(),
        "attachment; filename=\"rclaude-usage-2025-02.csv\""
    );
    let lines: Vec<&str> = csv.body.lines().collect();
    assert_eq!(
        lines[0],
        "date,active_seconds,storage_repositories,cost_micros,cost_usd"
    );
    assert_eq!(lines.len(), 1 + 28);
    for (line, day) in lines[1..].iter().zip(usage["days"].as_array().unwrap()) {
        let f: Vec<&str> = line.split(',').collect();
        assert_eq!(f[0], day["date"].as_str().unwrap());
        assert_eq!(f[1], day["active_seconds"].to_string());
        assert_eq!(f[3], day["cost_micros"].to_string());
    }
    let inv = web.get_at("/invoice.csv?month=2025-02", at).await;
    let rows: Vec<&str> = inv.body.lines().collect();
    assert!(rows[0].starts_with("month,status,kind,repository,quantity"));
    assert_eq!(rows.len(), 1 + invoice["lines"].as_array().unwrap().len());
    assert!(
        rows[1].contains(",active,github.com/acme/<b>app</b>,1800,second,"),
        "{}",
        rows[1]
    );

    let bad = web.get("/usage?month=2025-13").await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.body.contains("is not a month"));
}

async fn grouping_and_paging(db: TestDb) {
    let token = create_account(&db, "alice").await;
    let server = Server::start(&db, &[]).await;
    let c = server.client(&token);
    let mut ids = Vec::new();
    for i in 0..55 {
        let at = format!("2025-03-01T10:{:02}:{:02}Z", i / 60, i % 60);
        ids.push(c.new_session("github.com/acme/big", Some(&at)).await);
    }
    let small = c
        .new_session("github.com/acme/small", Some("2025-03-01T09:00:00Z"))
        .await;
    c.event(&ids[54], "started", Some("2025-03-01T11:00:00Z"))
        .await;

    let mut web = Web::new(&server);
    web.sign_in(&token).await;
    let p = web.get("/sessions").await;
    // Most recently used repository first, its 10 newest sessions, and a link to all of them.
    let big_at = p
        .body
        .find("data-repository=\"github.com/acme/big\"")
        .unwrap();
    let small_at = p
        .body
        .find("data-repository=\"github.com/acme/small\"")
        .unwrap();
    assert!(big_at < small_at);
    assert_eq!(p.body.matches("<tr id=\"s-").count(), 11);
    for id in ids.iter().rev().take(10) {
        assert!(p.body.contains(&format!("id=\"s-{id}\"")));
    }
    assert!(p.body.contains(&format!("id=\"s-{small}\"")));
    assert!(
        p.body
            .contains("github.com/acme/big: 55 sessions, 1 running")
    );
    assert!(
        p.body
            .contains("href=\"/sessions?repository=github.com%2Facme%2Fbig\"")
    );

    // One repository, page by page (50 per page).
    let p = web
        .get("/sessions?repository=github.com%2Facme%2Fbig")
        .await;
    assert_eq!(p.body.matches("<tr id=\"s-").count(), 50);
    let next = p
        .body
        .split("href=\"")
        .find(|s| s.contains("cursor="))
        .unwrap();
    let next = next.split('"').next().unwrap().replace("&amp;", "&");
    let p2 = web.get(&next).await;
    assert_eq!(p2.body.matches("<tr id=\"s-").count(), 5);
    assert!(p2.body.contains(&format!("id=\"s-{}\"", ids[0])));

    // State filter.
    let p = web.get("/sessions?state=running").await;
    assert_eq!(p.body.matches("<tr id=\"s-").count(), 1);
    assert!(p.body.contains(&format!("id=\"s-{}\"", ids[54])));
    assert_eq!(
        web.get("/sessions?state=exploded").await.status,
        StatusCode::BAD_REQUEST
    );

    // Static files.
    let css = web.get("/assets/app.css").await;
    assert_eq!(
        css.headers.get("content-type").unwrap(),
        "text/css; charset=utf-8"
    );
    let js = web.get("/assets/live.js").await;
    assert!(js.body.contains("/v1/events"));
    assert_eq!(
        web.get("/assets/nope.js").await.status,
        StatusCode::NOT_FOUND
    );
    let v: Value = serde_json::from_str(&web.get("/v1/openapi.json").await.body).unwrap();
    assert!(
        v["paths"].get("/sessions").is_none(),
        "the dashboard is not part of the API"
    );
}

/// A session's latest `ports` event becomes links on its page (escaped, http(s) only); a bad
/// one is refused at the API; a stopped session shows none.
async fn ports_are_linked(db: TestDb) {
    let token = create_account(&db, "alice").await;
    let server = Server::start(&db, &[]).await;
    let c = server.client(&token);
    let sid = c.new_session("github.com/acme/app", None).await;
    c.event(&sid, "started", None).await;
    let mut web = Web::new(&server);
    web.sign_in(&token).await;
    let path = format!("/sessions/{sid}");
    assert!(
        !web.get(&path).await.body.contains("id=\"ports\""),
        "no ports yet"
    );

    c.event_with(
        &sid,
        "ports",
        serde_json::json!({"ports": [{"port": 3000, "label": "old", "url": "http://127.0.0.1:3000"}]}),
        None,
    )
    .await;
    c.event_with(
        &sid,
        "ports",
        serde_json::json!({"ports": [
            {"port": 3000, "label": "web <b>", "url": "https://3000-sbx.e2b.app"},
            {"port": 9229, "url": "http://127.0.0.1:9229"}
        ]}),
        None,
    )
    .await;
    let body = web.get(&path).await.body;
    assert!(
        body.contains(
            "<a href=\"https://3000-sbx.e2b.app\" target=\"_blank\" rel=\"noopener noreferrer\">web &lt;b&gt; (3000)</a>"
        ),
        "{body}"
    );
    assert!(body.contains("port (9229)"), "{body}");
    assert!(
        !body.contains(">old (3000)"),
        "only the latest ports event is linked"
    );

    for bad in [
        serde_json::json!({"ports": [{"port": 3000, "url": "javascript:alert(1)"}]}),
        serde_json::json!({"ports": [{"port": 0, "url": "http://a"}]}),
        serde_json::json!({}),
    ] {
        let (status, v) = c
            .post(
                &format!("/v1/sessions/{sid}/events"),
                serde_json::json!({"type": "ports", "idempotency_key": uuid::Uuid::new_v4().to_string(), "data": bad}),
            )
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    }
    c.event(&sid, "stopped", None).await;
    assert!(
        !web.get(&path).await.body.contains("id=\"ports\""),
        "a stopped session links no ports"
    );
}

both_engines!(
    ports_are_linked,
    sign_in_and_out,
    only_own_data,
    figures_match_the_api,
    grouping_and_paging
);
