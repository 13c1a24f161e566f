//! Checkpoints kept by the server: upload, list, download, checks, retention, storage billing,
//! a crash mid-upload, and an S3-compatible store (moto in server mode), on the real binary
//! with real databases.

mod common;

#[path = "../../tests/support/pip_tool.rs"]
mod pip_tool;

use std::time::Duration;

use common::{Client, Engine, Server, TestDb, create_account};
use reqwest::StatusCode;
use reqwest::multipart::{Form, Part};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

fn sha(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

fn bundle(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31) ^ seed)
        .collect()
}

fn meta(name: &str, base: Option<&str>, data: &[u8]) -> Value {
    json!({"name": name, "base": base, "anchor": base.is_none(), "sha256": sha(data),
           "size_bytes": data.len(), "info": {"tip": "abc", "reason": "pause"}})
}

async fn upload_at(
    c: &Client,
    session: &str,
    meta: &Value,
    data: Vec<u8>,
    at: Option<&str>,
) -> (StatusCode, Value) {
    let form = Form::new()
        .part(
            "meta",
            Part::text(meta.to_string())
                .mime_str("application/json")
                .unwrap(),
        )
        .part("bundle", Part::bytes(data).file_name("checkpoint.bundle"));
    let mut req = c
        .http
        .post(format!("{}/v1/sessions/{session}/checkpoints", c.base))
        .bearer_auth(&c.token)
        .multipart(form);
    if let Some(at) = at {
        req = req.header("x-rclaude-now", at);
    }
    let resp = req.send().await.expect("upload");
    let status = resp.status();
    let text = resp.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

async fn upload(c: &Client, session: &str, meta: &Value, data: Vec<u8>) -> (StatusCode, Value) {
    upload_at(c, session, meta, data, None).await
}

async fn download(c: &Client, session: &str, name: &str) -> (StatusCode, Option<String>, Vec<u8>) {
    let resp = c
        .http
        .get(format!(
            "{}/v1/sessions/{session}/checkpoints/{name}",
            c.base
        ))
        .bearer_auth(&c.token)
        .send()
        .await
        .expect("download");
    let status = resp.status();
    let sum = resp
        .headers()
        .get("x-rclaude-sha256")
        .map(|v| v.to_str().unwrap().to_string());
    (status, sum, resp.bytes().await.unwrap().to_vec())
}

async fn names(c: &Client, session: &str) -> Vec<String> {
    let (s, v) = c.get(&format!("/v1/sessions/{session}/checkpoints")).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    v["checkpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_string())
        .collect()
}

fn files_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            if e.path().is_dir() {
                stack.push(e.path());
            } else {
                out.push(e.path());
            }
        }
    }
    out
}

async fn round_trip_and_refusals(engine: Engine) {
    let Some(db) = TestDb::new(engine).await else {
        return;
    };
    let token = create_account(&db, "acme").await;
    let other = create_account(&db, "other").await;
    let server = Server::start(&db, &["--checkpoint-max-bytes", "100000"]).await;
    let c = server.client(&token);
    let session = c.new_session("github.com/acme/app", None).await;

    let data = bundle(1, 50_000);
    let (s, v) = upload(
        &c,
        &session,
        &meta("20261204T100000Z", None, &data),
        data.clone(),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v["checkpoint"]["sha256"], sha(&data));
    assert_eq!(v["checkpoint"]["info"]["reason"], "pause");
    let (s, sum, got) = download(&c, &session, "20261204T100000Z").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(sum.as_deref(), Some(sha(&data).as_str()));
    assert!(got == data, "the downloaded bundle differs");

    // The same upload again is answered, not stored twice; other bytes under the name are not.
    let (s, _) = upload(
        &c,
        &session,
        &meta("20261204T100000Z", None, &data),
        data.clone(),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let other_data = bundle(2, 1000);
    let (s, v) = upload(
        &c,
        &session,
        &meta("20261204T100000Z", None, &other_data),
        other_data,
    )
    .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("checkpoint_exists"))
    );

    // Damaged on the way: the checksum does not match, nothing is kept.
    let mut m = meta("20261204T100100Z", Some("20261204T100000Z"), &data);
    m["sha256"] = json!(sha(b"something else"));
    let (s, v) = upload(&c, &session, &m, data.clone()).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("checksum_mismatch")),
        "{v}"
    );
    // Cut short: fewer bytes than announced.
    let m = meta("20261204T100100Z", None, &data);
    let (s, v) = upload(&c, &session, &m, data[..1000].to_vec()).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("size_mismatch")),
        "{v}"
    );
    // Over the server's limit: refused with the limit named.
    let big = bundle(3, 100_001);
    let (s, v) = upload(&c, &session, &meta("20261204T100200Z", None, &big), big).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (StatusCode::PAYLOAD_TOO_LARGE, Some("checkpoint_too_large"))
    );
    assert!(
        v["error"]["message"].as_str().unwrap().contains("100000"),
        "{v}"
    );
    // A base that is not stored, bad names, a missing part.
    let (s, v) = upload(
        &c,
        &session,
        &meta("20261204T100300Z", Some("nope"), &data),
        data.clone(),
    )
    .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("unknown_base"))
    );
    for bad in ["../x", "a b", ""] {
        let (s, _) = upload(&c, &session, &meta(bad, None, &data), data.clone()).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{bad:?}");
    }
    let resp = c
        .http
        .post(format!("{}/v1/sessions/{session}/checkpoints", c.base))
        .bearer_auth(&c.token)
        .multipart(Form::new().part("meta", Part::text(meta("x1", None, &data).to_string())))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert_eq!(names(&c, &session).await, vec!["20261204T100000Z"]);
    // Exactly one object in the store: nothing refused left a file behind.
    let objects = files_under(&db.dir.path().join("checkpoints"));
    assert_eq!(objects.len(), 1, "{objects:?}");

    // Another account sees none of it.
    let o = server.client(&other);
    let (s, _) = o.get(&format!("/v1/sessions/{session}/checkpoints")).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _, _) = download(&o, &session, "20261204T100000Z").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = upload(&o, &session, &meta("y", None, &data), data.clone()).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert!(server.terminate().await);
}

#[tokio::test]
async fn round_trip_and_refusals_sqlite() {
    round_trip_and_refusals(Engine::Sqlite).await;
}

#[tokio::test]
async fn round_trip_and_refusals_postgres() {
    round_trip_and_refusals(Engine::Postgres).await;
}

/// Retention keeps the newest (as configured, capped by the server) and what they build on;
/// what it drops is gone from the store too. Stored checkpoints keep the repository's storage
/// billed after its session stopped.
#[tokio::test]
async fn retention_and_storage_billing() {
    let db = TestDb::new(Engine::Sqlite).await.unwrap();
    let token = create_account(&db, "acme").await;
    let server = Server::start(&db, &["--checkpoint-keep", "3"]).await;
    let c = server.client(&token);
    let day1 = "2026-11-02T10:00:00Z";
    let session = c.new_session("github.com/acme/app", Some(day1)).await;
    let base = bundle(0, 4000);
    let (s, _) = upload_at(&c, &session, &meta("c0", None, &base), base, Some(day1)).await;
    assert_eq!(s, StatusCode::CREATED);
    for i in 1..=5u8 {
        let d = bundle(i, 500);
        let mut m = meta(&format!("c{i}"), Some("c0"), &d);
        if i == 5 {
            m["keep"] = json!(2); // the client asks for fewer
        }
        let (s, v) = upload_at(&c, &session, &m, d, Some(day1)).await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
    }
    // keep 2 of the newest, and c0 they build on.
    assert_eq!(names(&c, &session).await, vec!["c0", "c4", "c5"]);
    assert_eq!(files_under(&db.dir.path().join("checkpoints")).len(), 3);
    let (s, _, _) = download(&c, &session, "c1").await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // The session stops on day 1; its checkpoints are still stored on day 20.
    c.event(&session, "stopped", Some(day1)).await;
    let (s, v) = c
        .get_at(
            "/v1/usage?from=2026-11-20&to=2026-11-20",
            "2026-11-20T12:00:00Z",
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let text = v.to_string();
    assert!(
        text.contains("github.com/acme/app"),
        "storage not billed while checkpoints are kept: {v}"
    );

    // Expiry (7 days after the stop by default): not yet on day 5, done on day 10; from then
    // on the repository is no longer billed for storage.
    let store = rclaude_server::storage::Store::new(
        rclaude_server::db::open(&db.url, 2).await.unwrap(),
        rclaude_server::config::Prices::default(),
        rclaude_server::events::Hub::default(),
    );
    let blobs = rclaude_server::checkpoint_store::BlobStore::open(
        &db.dir.path().join("checkpoints").display().to_string(),
    )
    .unwrap();
    let week = rclaude_server::checkpoints::DEFAULT_KEEP_AFTER_STOP;
    let ms = |t: &str| {
        time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
            .unwrap()
            .unix_timestamp()
            * 1000
    };
    let expire = |at: i64| rclaude_server::guardians::expire_round(&store, &blobs, at, week);
    assert_eq!(expire(ms("2026-11-05T10:00:00Z")).await.unwrap(), 0);
    assert_eq!(names(&c, &session).await.len(), 3);
    assert_eq!(expire(ms("2026-11-10T10:00:00Z")).await.unwrap(), 3);
    assert!(names(&c, &session).await.is_empty());
    assert!(files_under(&db.dir.path().join("checkpoints")).is_empty());
    let (_, v) = c
        .get_at(
            "/v1/usage?from=2026-11-20&to=2026-11-20",
            "2026-11-20T12:00:00Z",
        )
        .await;
    assert!(
        !v.to_string().contains("github.com/acme/app"),
        "storage still billed after the checkpoints expired: {v}"
    );
    assert!(server.terminate().await);
}

/// kill -9 while a checkpoint streams in: the acknowledged one is intact after restart, the
/// interrupted one was never recorded (not listed, not downloadable).
#[tokio::test]
async fn crash_mid_upload_keeps_acknowledged_and_no_half() {
    let db = TestDb::new(Engine::Sqlite).await.unwrap();
    let token = create_account(&db, "acme").await;
    let server = Server::start(&db, &[]).await;
    let c = server.client(&token);
    let session = c.new_session("github.com/acme/app", None).await;
    let done = bundle(7, 200_000);
    let (s, _) = upload(&c, &session, &meta("first", None, &done), done.clone()).await;
    assert_eq!(s, StatusCode::CREATED);

    let half = bundle(8, 4 << 20);
    let m = meta("second", Some("first"), &half);
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(4);
    let body = reqwest::Body::wrap_stream(tokio_stream_from(rx));
    let form = Form::new()
        .part(
            "meta",
            Part::text(m.to_string())
                .mime_str("application/json")
                .unwrap(),
        )
        .part("bundle", Part::stream_with_length(body, half.len() as u64));
    let req = c
        .http
        .post(format!("{}/v1/sessions/{session}/checkpoints", c.base))
        .bearer_auth(&c.token)
        .multipart(form)
        .send();
    let pending = tokio::spawn(req);
    tx.send(Ok(half[..2 << 20].to_vec())).await.unwrap();
    // Wait until the server has taken part of it into the store (a staged file).
    let store = db.dir.path().join("checkpoints");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while files_under(&store).len() < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "the upload never reached the store"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.crash().await;
    drop(tx);
    let answered = pending.await.unwrap();
    assert!(answered.is_err() || !answered.unwrap().status().is_success());

    let server = Server::start(&db, &[]).await;
    let c = server.client(&token);
    assert_eq!(names(&c, &session).await, vec!["first"]);
    let (s, sum, got) = download(&c, &session, "first").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(sum.unwrap(), sha(&done));
    assert!(got == done);
    let (s, _, _) = download(&c, &session, "second").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    // The upload can be made again in full.
    let (s, v) = upload(&c, &session, &m, half).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert!(server.terminate().await);
}

fn tokio_stream_from<T: Send + 'static>(
    mut rx: tokio::sync::mpsc::Receiver<T>,
) -> impl futures::Stream<Item = T> + Send + 'static {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// The same API over an S3-compatible bucket (moto in server mode, installed from PyPI).
#[tokio::test]
async fn s3_compatible_store() {
    let moto = match pip_tool::install(
        env!("CARGO_TARGET_TMPDIR"),
        "moto[server]",
        "5.1.22",
        "moto_server",
    ) {
        Ok(m) => m,
        Err(()) => {
            if common::skip::opted_out("RCLAUDE_SKIP_S3", "S3 test: python3 with venv is missing") {
                return;
            }
            panic!("the S3 test needs python3 with venv (or RCLAUDE_SKIP_S3=1)");
        }
    };
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut moto = tokio::process::Command::new(moto)
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start moto_server");
    let endpoint = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        // Create the bucket (moto accepts any credentials).
        if let Ok(r) = http.put(format!("{endpoint}/ckpt")).send().await
            && r.status().is_success()
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "moto_server did not start"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let db = TestDb::new(Engine::Sqlite).await.unwrap();
    let token = create_account(&db, "acme").await;
    let envs = [
        ("AWS_ENDPOINT_URL", endpoint.as_str()),
        ("AWS_ALLOW_HTTP", "true"),
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("AWS_REGION", "us-east-1"),
    ];
    let server = Server::start_env(
        &db,
        &[
            "--checkpoint-store",
            "s3://ckpt/rclaude",
            "--checkpoint-keep",
            "2",
        ],
        &envs,
    )
    .await;
    let c = server.client(&token);
    let session = c.new_session("github.com/acme/app", None).await;
    // Bigger than one multipart part (8 MiB): three parts.
    let data = bundle(9, 20 << 20);
    let (s, v) = upload(&c, &session, &meta("a", None, &data), data.clone()).await;
    assert_eq!(s, StatusCode::CREATED, "{v}\n{}", server.log_text());
    let (s, sum, got) = download(&c, &session, "a").await;
    assert_eq!((s, sum.unwrap()), (StatusCode::OK, sha(&data)));
    assert!(got == data, "the bundle read back from S3 differs");
    // Retention deletes from the bucket.
    for n in ["b", "c"] {
        let d = bundle(10, 1000);
        let (s, _) = upload(&c, &session, &meta(n, Some("a"), &d), d).await;
        assert_eq!(s, StatusCode::CREATED);
    }
    let (s, _) = upload(
        &c,
        &session,
        &meta("d", None, &bundle(11, 10)),
        bundle(11, 10),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED);
    assert_eq!(names(&c, &session).await, vec!["a", "c", "d"]);
    let listing = http
        .get(format!("{endpoint}/ckpt?list-type=2"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(listing.matches("<Key>").count(), 3, "{listing}");
    assert!(server.terminate().await);
    let _ = moto.kill().await;
}
