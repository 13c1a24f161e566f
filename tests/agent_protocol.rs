//! `rclaude agent` over real HTTP on loopback with real processes, driven both with raw
//! requests (wire format) and with `EnvdClient` / `EnvdSandbox`.

#[path = "support/agent.rs"]
mod agent_support;

use std::collections::BTreeMap;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use agent_support::{TOKEN, TestAgent};
use bytes::Bytes;
use futures::StreamExt;
use rclaude::config::Isolation;
use rclaude::envd::client::ProcessStream;
use rclaude::envd::connect::{EnvelopeDecoder, encode_json};
use rclaude::envd::proto::{
    B64, DataEvent, EndEvent, FileType, ProcessConfig, ProcessEvent, ProcessInput, ProcessSelector,
    Pty, PtySize, Signal, StartRequest,
};
use rclaude::provider::envd_sandbox::EnvdSandbox;
use rclaude::provider::{ExecRequest, FileUpload, Sandbox, SandboxError, run};
use serde_json::{Value, json};

fn sh(script: &str) -> StartRequest {
    StartRequest {
        process: ProcessConfig {
            cmd: "/bin/sh".into(),
            args: vec!["-c".into(), script.into()],
            ..Default::default()
        },
        stdin: Some(false),
        ..Default::default()
    }
}

#[derive(Default, Debug)]
struct Collected {
    pid: u32,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    pty: Vec<u8>,
    keepalives: usize,
    end: Option<EndEvent>,
}

async fn collect(mut s: ProcessStream) -> Collected {
    let mut c = Collected::default();
    while let Some(ev) = s.next().await {
        match ev.expect("stream event") {
            ProcessEvent::Start(st) => c.pid = st.pid,
            ProcessEvent::Data(DataEvent::Stdout(b)) => c.stdout.extend_from_slice(&b.0),
            ProcessEvent::Data(DataEvent::Stderr(b)) => c.stderr.extend_from_slice(&b.0),
            ProcessEvent::Data(DataEvent::Pty(b)) => c.pty.extend_from_slice(&b.0),
            ProcessEvent::Keepalive(_) => c.keepalives += 1,
            ProcessEvent::End(e) => c.end = Some(e),
        }
    }
    c
}

/// Read events until `pred` holds on the accumulated output (stdout+pty) text.
async fn read_until(s: &mut ProcessStream, acc: &mut String, pred: impl Fn(&str) -> bool) {
    while !pred(acc) {
        match s.next().await.expect("stream open").expect("event") {
            ProcessEvent::Data(DataEvent::Stdout(b) | DataEvent::Pty(b)) => {
                acc.push_str(&String::from_utf8_lossy(&b.0))
            }
            ProcessEvent::End(e) => panic!("process ended early ({e:?}); output so far: {acc:?}"),
            _ => {}
        }
    }
}

/// POST a raw Connect streaming request and return (status, decoded JSON messages, end message).
async fn raw_stream(
    url: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: reqwest::Body,
) -> (u16, Vec<Value>, Option<Value>) {
    let mut rb = reqwest::Client::new()
        .post(format!("{url}{path}"))
        .header("content-type", "application/connect+json");
    for (k, v) in headers {
        rb = rb.header(*k, *v);
    }
    let resp = rb.body(body).send().await.unwrap();
    let status = resp.status().as_u16();
    let bytes = resp.bytes().await.unwrap();
    let mut dec = EnvelopeDecoder::new();
    dec.push(&bytes);
    let mut msgs = Vec::new();
    let mut end = None;
    while let Some(env) = dec.next_envelope().unwrap() {
        let v: Value = serde_json::from_slice(&env.payload).unwrap();
        if env.is_end() {
            end = Some(v)
        } else {
            msgs.push(v)
        }
    }
    assert!(dec.is_empty(), "trailing partial envelope");
    (status, msgs, end)
}

#[tokio::test]
async fn health_and_wire_format_of_a_streamed_exec() {
    let a = TestAgent::start().await;
    a.client().health().await.unwrap();
    let resp = reqwest::Client::new()
        .get(format!("{}/health", a.url))
        .header("x-access-token", TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 204);

    let req = json!({"process": {"cmd": "/bin/sh", "args": ["-c", "printf hi; printf oops >&2; exit 3"]}, "stdin": false});
    let (status, msgs, end) = raw_stream(
        &a.url,
        "/process.Process/Start",
        &[("x-access-token", TOKEN)],
        encode_json(&req).into(),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        end,
        Some(json!({})),
        "success ends with an empty end-of-stream message"
    );
    assert!(
        msgs[0]["event"]["start"]["pid"].as_u64().unwrap() > 0,
        "first event is start: {msgs:?}"
    );
    let last = &msgs.last().unwrap()["event"]["end"];
    assert_eq!(last["exitCode"], 3);
    assert_eq!(last["exited"], true);
    assert_eq!(last["status"], "exit status 3");
    assert_eq!(last["error"], "exit status 3");
    let datas: Vec<_> = msgs.iter().filter_map(|m| m["event"].get("data")).collect();
    assert!(datas.contains(&&json!({"stdout": "aGk="})), "{datas:?}");
    assert!(datas.contains(&&json!({"stderr": "b29wcw=="})), "{datas:?}");
}

#[tokio::test]
async fn exec_reports_output_exit_codes_and_signals() {
    let a = TestAgent::start().await;
    let c = a.client();
    let ok = collect(c.start(&sh("echo out; echo err >&2"), None).await.unwrap()).await;
    assert_eq!(
        (ok.stdout.as_slice(), ok.stderr.as_slice()),
        (&b"out\n"[..], &b"err\n"[..])
    );
    let end = ok.end.unwrap();
    assert_eq!(
        (end.exit_code, end.status.as_str(), end.error),
        (0, "exit status 0", None)
    );

    let fail = collect(c.start(&sh("exit 7"), None).await.unwrap())
        .await
        .end
        .unwrap();
    assert_eq!(
        (fail.exit_code, fail.exited, fail.status.as_str()),
        (7, true, "exit status 7")
    );

    let mut s = c
        .start(&sh("echo ready; exec sleep 60"), None)
        .await
        .unwrap();
    let pid = match s.next().await.unwrap().unwrap() {
        ProcessEvent::Start(st) => st.pid,
        other => panic!("{other:?}"),
    };
    let mut acc = String::new();
    read_until(&mut s, &mut acc, |t| t.contains("ready")).await;
    c.send_signal(ProcessSelector::Pid(pid), Signal::Sigkill)
        .await
        .unwrap();
    let end = collect(s).await.end.unwrap();
    assert_eq!(
        (end.exit_code, end.exited, end.status.as_str()),
        (-1, false, "signal: killed")
    );

    let gone = c
        .send_signal(ProcessSelector::Pid(999_999), Signal::Sigterm)
        .await
        .unwrap_err();
    assert!(matches!(gone, SandboxError::NotFound(_)), "{gone}");
}

#[tokio::test]
async fn a_background_child_holding_the_pipe_does_not_delay_the_end() {
    let a = TestAgent::start().await;
    let client = a.client();
    let req = sh("sleep 600 & echo bg=$!");
    let run = client.start(&req, None);
    let r = tokio::time::timeout(Duration::from_secs(60), async {
        collect(run.await.unwrap()).await
    })
    .await
    .expect("the end event waited for the background child");
    let out = String::from_utf8_lossy(&r.stdout).to_string();
    assert_eq!(r.end.unwrap().exit_code, 0);
    let bg: i32 = out.trim().strip_prefix("bg=").unwrap().parse().unwrap();
    // Killed from inside the sandbox: under bubblewrap `$!` is an id in the sandbox's PID
    // namespace, which on the host may name any process.
    let kill = sh(&format!("kill -9 {bg}"));
    let k = collect(client.start(&kill, None).await.unwrap()).await;
    assert_eq!(k.end.unwrap().exit_code, 0);
}

#[tokio::test]
async fn missing_program_is_an_invalid_argument_in_the_end_frame() {
    let a = TestAgent::start().await;
    let req = StartRequest {
        process: ProcessConfig {
            cmd: "/no/such/binary".into(),
            ..Default::default()
        },
        ..Default::default()
    };
    let mut s = a.client().start(&req, None).await.unwrap();
    let err = s.next().await.unwrap().unwrap_err();
    assert!(
        matches!(&err, SandboxError::InvalidArgument(m) if m.contains("/no/such/binary")),
        "{err}"
    );
}

#[tokio::test]
async fn stdin_given_or_closed() {
    let a = TestAgent::start().await;
    let sb = EnvdSandbox::new(a.client(), "local", a.root.display().to_string(), false);
    let big: Vec<u8> = (0..200_000u32).map(|i| b'a' + (i % 26) as u8).collect();
    let out = run(&sb, ExecRequest::shell("cat").stdin(big.clone()))
        .await
        .unwrap();
    assert_eq!(
        out.stdout, big,
        "stdin bytes reach the process in order and EOF follows"
    );
    assert!(out.status.success());

    // No stdin: the process reads /dev/null and ends at once.
    let out = run(&sb, ExecRequest::shell("cat; echo end")).await.unwrap();
    assert_eq!(out.stdout_str(), "end\n");

    // stdin: true without CloseStdin keeps the pipe open until closed over the API.
    let c = a.client();
    let mut req = sh("read line; echo got:$line; cat");
    req.stdin = Some(true);
    let mut s = c.start(&req, None).await.unwrap();
    let pid = match s.next().await.unwrap().unwrap() {
        ProcessEvent::Start(st) => st.pid,
        other => panic!("{other:?}"),
    };
    c.send_input(
        ProcessSelector::Pid(pid),
        ProcessInput::Stdin(B64(Bytes::from_static(b"hello\nrest"))),
    )
    .await
    .unwrap();
    let mut acc = String::new();
    read_until(&mut s, &mut acc, |t| t.contains("got:hello")).await;
    c.close_stdin(ProcessSelector::Pid(pid)).await.unwrap();
    let rest = collect(s).await;
    let all = acc + &String::from_utf8_lossy(&rest.stdout);
    assert_eq!(all, "got:hello\nrest");
    assert_eq!(rest.end.unwrap().exit_code, 0);
}

#[tokio::test]
async fn stream_input_is_client_streaming() {
    let a = TestAgent::start().await;
    let c = a.client();
    let mut req = sh("cat");
    req.stdin = Some(true);
    let mut s = c.start(&req, None).await.unwrap();
    let pid = match s.next().await.unwrap().unwrap() {
        ProcessEvent::Start(st) => st.pid,
        other => panic!("{other:?}"),
    };
    let msgs = [
        json!({"start": {"process": {"pid": pid}}}),
        json!({"data": {"input": {"stdin": "b25lIA=="}}}),
        json!({"keepalive": {}}),
        json!({"data": {"input": {"stdin": "dHdv"}}}),
    ];
    let pieces: Vec<Result<Bytes, std::io::Error>> =
        msgs.iter().map(|m| Ok(encode_json(m))).collect();
    let (status, replies, end) = raw_stream(
        &a.url,
        "/process.Process/StreamInput",
        &[("x-access-token", TOKEN)],
        reqwest::Body::wrap_stream(futures::stream::iter(pieces)),
    )
    .await;
    assert_eq!(
        (status, replies, end),
        (200, vec![json!({})], Some(json!({})))
    );
    c.close_stdin(ProcessSelector::Pid(pid)).await.unwrap();
    assert_eq!(collect(s).await.stdout, b"one two");

    // The first message must be `start`.
    let bad = vec![Ok::<_, std::io::Error>(encode_json(
        &json!({"data": {"input": {"stdin": "eA=="}}}),
    ))];
    let (_, _, end) = raw_stream(
        &a.url,
        "/process.Process/StreamInput",
        &[("x-access-token", TOKEN)],
        reqwest::Body::wrap_stream(futures::stream::iter(bad)),
    )
    .await;
    assert_eq!(end.unwrap()["error"]["code"], "invalid_argument");
}

#[tokio::test]
async fn env_and_cwd() {
    let a = TestAgent::start_with(|o| {
        o.env.insert("FROM_AGENT".into(), "agent".into());
        o.workdir = Some("work".into());
        std::fs::create_dir_all(o.root.join("work/sub")).unwrap();
    })
    .await;
    let sb = EnvdSandbox::new(
        a.client(),
        "local",
        a.root.join("work").display().to_string(),
        false,
    );
    let mut env = BTreeMap::new();
    env.insert("FOO".to_string(), "bar baz".to_string());
    let out = run(
        &sb,
        ExecRequest::shell("echo \"$FOO|$FROM_AGENT|$E2B_SANDBOX|$HOME\"; pwd").env(env),
    )
    .await
    .unwrap();
    let root = a.root.display().to_string();
    assert_eq!(
        out.stdout_str(),
        format!("bar baz|agent|true|{root}\n{root}/work\n")
    );
    let envs: Value = reqwest::Client::new()
        .get(format!("{}/envs", a.url))
        .header("x-access-token", TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(envs, json!({"FROM_AGENT": "agent"}));

    // Relative cwd resolves against the workdir; the default cwd (none given) is the workdir.
    let mut req = sh("pwd");
    req.process.cwd = Some("sub".into());
    let r = collect(a.client().start(&req, None).await.unwrap()).await;
    assert_eq!(
        String::from_utf8_lossy(&r.stdout),
        format!("{root}/work/sub\n")
    );
    let r = collect(a.client().start(&sh("pwd"), None).await.unwrap()).await;
    assert_eq!(String::from_utf8_lossy(&r.stdout), format!("{root}/work\n"));

    let mut req = sh("pwd");
    req.process.cwd = Some("missing".into());
    let err = collect_err(a.client().start(&req, None).await).await;
    assert!(
        matches!(&err, SandboxError::InvalidArgument(m) if m.contains("does not exist")),
        "{err}"
    );
}

async fn collect_err(r: Result<ProcessStream, SandboxError>) -> SandboxError {
    match r {
        Err(e) => e,
        Ok(mut s) => loop {
            match s.next().await {
                Some(Err(e)) => break e,
                Some(Ok(_)) => continue,
                None => panic!("expected an error"),
            }
        },
    }
}

#[tokio::test]
async fn connect_timeout_kills_the_process_group() {
    let a = TestAgent::start().await;
    // The background sleep shares the process group and must die too.
    let r = collect(
        a.client()
            .start(
                &sh("sleep 60 & echo $!; wait"),
                Some(Duration::from_millis(700)),
            )
            .await
            .unwrap(),
    )
    .await;
    let end = r.end.unwrap();
    assert_eq!((end.exit_code, end.status.as_str()), (-1, "signal: killed"));
    let child: i32 = String::from_utf8_lossy(&r.stdout).trim().parse().unwrap();
    // The grandchild was killed with the group; it is reaped by init shortly after.
    let mut alive = true;
    for _ in 0..100 {
        let stat = std::fs::read_to_string(format!("/proc/{child}/stat")).unwrap_or_default();
        if stat.is_empty() || stat.contains(") Z ") {
            alive = false;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!alive, "background child {child} survived the timeout");
}

#[tokio::test]
async fn keepalives_fill_silence_and_chunked_bodies_are_accepted() {
    let a = TestAgent::start().await;
    let req = json!({"process": {"cmd": "/bin/sh", "args": ["-c", "sleep 2.5; echo done"]}});
    let payload = encode_json(&req);
    // Send the single envelope in small pieces without a Content-Length (chunked encoding).
    let pieces: Vec<Result<Bytes, std::io::Error>> = payload
        .chunks(7)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    let body = reqwest::Body::wrap_stream(futures::stream::iter(pieces));
    let (status, msgs, end) = raw_stream(
        &a.url,
        "/process.Process/Start",
        &[("x-access-token", TOKEN), ("keepalive-ping-interval", "1")],
        body,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(end, Some(json!({})));
    let keepalives = msgs
        .iter()
        .filter(|m| m["event"].get("keepalive").is_some())
        .count();
    assert!(keepalives >= 1, "no keepalive in {msgs:?}");
    assert_eq!(
        msgs.last().unwrap()["event"]["end"]["status"],
        "exit status 0"
    );
}

#[tokio::test]
async fn list_and_reattach_by_tag_after_the_client_disconnects() {
    let a = TestAgent::start().await;
    let c = a.client();
    let mut req = sh("i=0; while true; do i=$((i+1)); echo tick$i; sleep 0.1; done");
    req.tag = Some("ticker".into());
    let mut s = c.start(&req, None).await.unwrap();
    let pid = match s.next().await.unwrap().unwrap() {
        ProcessEvent::Start(st) => st.pid,
        other => panic!("{other:?}"),
    };
    drop(s); // the client goes away; the process must keep running
    tokio::time::sleep(Duration::from_millis(300)).await;

    let list = c.list().await.unwrap();
    let info = list.iter().find(|p| p.pid == pid).expect("listed");
    assert_eq!(info.tag.as_deref(), Some("ticker"));
    assert_eq!(info.config.cmd, "/bin/sh");

    let mut s = c
        .connect(ProcessSelector::Tag("ticker".into()))
        .await
        .unwrap();
    match s.next().await.unwrap().unwrap() {
        ProcessEvent::Start(st) => assert_eq!(st.pid, pid),
        other => panic!("{other:?}"),
    }
    let mut acc = String::new();
    read_until(&mut s, &mut acc, |t| t.matches("tick").count() >= 2).await;
    c.send_signal(ProcessSelector::Tag("ticker".into()), Signal::Sigterm)
        .await
        .unwrap();
    let end = collect(s).await.end.unwrap();
    assert_eq!(end.status, "signal: terminated");
    assert!(
        c.list().await.unwrap().iter().all(|p| p.pid != pid),
        "exited processes are not listed"
    );

    // A late Connect still gets start + end.
    let late = collect(c.connect(ProcessSelector::Pid(pid)).await.unwrap()).await;
    assert_eq!(
        (late.pid, late.end.unwrap().status.as_str()),
        (pid, "signal: terminated")
    );
    let missing = collect_err(c.connect(ProcessSelector::Tag("nope".into())).await).await;
    assert!(matches!(missing, SandboxError::NotFound(_)), "{missing}");
}

#[tokio::test]
async fn pty_runs_a_real_terminal_with_input_and_resize() {
    let a = TestAgent::start().await;
    let c = a.client();
    let mut req = sh("tty; stty size; read line; echo got:$line; read again; stty size");
    req.pty = Some(Pty {
        size: PtySize { cols: 80, rows: 24 },
    });
    req.process
        .envs
        .insert("TERM".into(), "xterm-256color".into());
    let mut s = c.start(&req, None).await.unwrap();
    let pid = match s.next().await.unwrap().unwrap() {
        ProcessEvent::Start(st) => st.pid,
        other => panic!("{other:?}"),
    };
    let mut acc = String::new();
    read_until(&mut s, &mut acc, |t| {
        t.contains("/dev/pts/") && t.contains("24 80")
    })
    .await;
    let sel = ProcessSelector::Pid(pid);
    c.send_input(
        sel.clone(),
        ProcessInput::Pty(B64(Bytes::from_static(b"hello\n"))),
    )
    .await
    .unwrap();
    read_until(&mut s, &mut acc, |t| t.contains("got:hello")).await;
    c.update_pty(
        sel.clone(),
        PtySize {
            cols: 100,
            rows: 40,
        },
    )
    .await
    .unwrap();
    c.send_input(
        sel.clone(),
        ProcessInput::Pty(B64(Bytes::from_static(b"\n"))),
    )
    .await
    .unwrap();
    let rest = collect(s).await;
    let tail = String::from_utf8_lossy(&rest.pty);
    assert!(tail.contains("40 100"), "resize not seen: {tail:?}");
    assert_eq!(rest.end.unwrap().exit_code, 0);
    assert!(
        rest.stdout.is_empty(),
        "PTY output travels as data.pty only"
    );

    let err = c.close_stdin(sel).await.unwrap_err();
    assert!(matches!(err, SandboxError::NotFound(_)), "exited: {err}");
}

#[tokio::test]
async fn filesystem_rpcs() {
    let a = TestAgent::start().await;
    let c = a.client();
    let root = a.root.display().to_string();
    std::fs::create_dir_all(a.root.join("d/e")).unwrap();
    std::fs::write(a.root.join("d/f.txt"), "12345").unwrap();
    std::fs::write(a.root.join("d/e/g"), "").unwrap();

    let st = c.stat("d/f.txt").await.unwrap();
    assert_eq!(
        (st.name.as_str(), st.file_type, st.size.0),
        ("f.txt", FileType::File, 5)
    );
    assert_eq!(st.path, format!("{root}/d/f.txt"));
    assert_eq!(st.permissions.len(), 10);
    assert!(st.modified_time.as_deref().unwrap().ends_with('Z'));
    assert_eq!(
        c.stat(&format!("{root}/d")).await.unwrap().file_type,
        FileType::Directory
    );
    assert!(matches!(
        c.stat("nope").await,
        Err(SandboxError::NotFound(_))
    ));

    let one: Vec<_> = c
        .list_dir("d", 0)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert_eq!(one, ["e", "f.txt"]);
    let two: Vec<_> = c
        .list_dir("d", 2)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.path)
        .collect();
    assert_eq!(
        two,
        [
            format!("{root}/d/e"),
            format!("{root}/d/e/g"),
            format!("{root}/d/f.txt")
        ]
    );
    assert!(matches!(
        c.list_dir("d/f.txt", 1).await,
        Err(SandboxError::InvalidArgument(_))
    ));

    assert_eq!(
        c.make_dir("x/y/z").await.unwrap().file_type,
        FileType::Directory
    );
    assert!(a.root.join("x/y/z").is_dir());
    assert!(matches!(
        c.make_dir("x/y").await,
        Err(SandboxError::AlreadyExists(_))
    ));
    assert!(matches!(
        c.make_dir("d/f.txt").await,
        Err(SandboxError::InvalidArgument(_))
    ));

    let moved = c.move_("d/f.txt", "moved/into/new.txt").await.unwrap();
    assert_eq!(moved.path, format!("{root}/moved/into/new.txt"));
    assert_eq!(
        std::fs::read_to_string(a.root.join("moved/into/new.txt")).unwrap(),
        "12345"
    );
    assert!(matches!(
        c.move_("d/f.txt", "again").await,
        Err(SandboxError::NotFound(_))
    ));

    c.remove("x").await.unwrap();
    assert!(!a.root.join("x").exists());
    c.remove("x").await.unwrap(); // missing is fine
    let err = c.remove(&root).await.unwrap_err();
    assert!(matches!(err, SandboxError::InvalidArgument(_)), "{err}");

    let sb = EnvdSandbox::new(a.client(), "local", root.clone(), false);
    assert!(sb.stat("nothing").await.unwrap().is_none());
    assert!(sb.make_dir("fresh").await.unwrap());
    assert!(!sb.make_dir("fresh").await.unwrap());
}

#[tokio::test]
async fn files_upload_download_multipart_and_large_streams() {
    let a = TestAgent::start().await;
    let c = a.client();
    let root = a.root.display().to_string();
    let written = c
        .write_files(vec![
            ("one.txt".into(), Bytes::from_static(b"first")),
            (
                format!("{root}/deep/dir/two.bin"),
                Bytes::from(vec![0u8, 1, 2, 255]),
            ),
            ("~/three".into(), Bytes::new()),
        ])
        .await
        .unwrap();
    let paths: Vec<_> = written.iter().map(|w| w.path.clone()).collect();
    assert_eq!(
        paths,
        [
            format!("{root}/one.txt"),
            format!("{root}/deep/dir/two.bin"),
            format!("{root}/three")
        ]
    );
    assert_eq!(written[1].name, "two.bin");
    assert_eq!(written[1].kind, "file");
    assert_eq!(
        c.read("one.txt").await.unwrap(),
        Bytes::from_static(b"first")
    );
    assert_eq!(
        &c.read("deep/dir/two.bin").await.unwrap()[..],
        &[0u8, 1, 2, 255]
    );
    assert_eq!(c.read("three").await.unwrap().len(), 0);

    // Same destination twice in one request is refused, as envd does.
    let dup = c
        .write_files(vec![
            ("a".into(), Bytes::from_static(b"1")),
            ("a".into(), Bytes::from_static(b"2")),
        ])
        .await;
    assert!(
        matches!(dup, Err(SandboxError::InvalidArgument(_))),
        "{dup:?}"
    );

    // One request mixing small (buffered) and larger (streamed) parts, many of them.
    let large: Vec<u8> = (0..1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    let mut parts: Vec<(String, Bytes)> = (0..40)
        .map(|i| {
            (
                format!("mix/d{}/f{i}", i % 3),
                Bytes::from(format!("small {i}")),
            )
        })
        .collect();
    parts.insert(17, ("mix/large.bin".into(), Bytes::from(large.clone())));
    let written = c.write_files(parts).await.unwrap();
    assert_eq!(written.len(), 41);
    assert_eq!(written[17].name, "large.bin");
    assert_eq!(&c.read("mix/large.bin").await.unwrap()[..], &large[..]);
    for i in 0..40 {
        assert_eq!(
            c.read(&format!("mix/d{}/f{i}", i % 3)).await.unwrap(),
            Bytes::from(format!("small {i}"))
        );
    }
    let leftovers: Vec<_> = walkdir_names(&a.root.join("mix"))
        .into_iter()
        .filter(|n| n.contains(".rclaude-upload-"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");

    // 20 MiB streamed both ways, byte-identical.
    let local_dir = tempfile::tempdir().unwrap();
    let src = local_dir.path().join("big.bin");
    let data: Vec<u8> = (0..20 * 1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(&src, &data).unwrap();
    let seen = Arc::new(AtomicU64::new(0));
    let s2 = seen.clone();
    let n = c
        .upload_stream(
            "big/big.bin",
            &src,
            Some(Arc::new(move |b| s2.store(b, Ordering::SeqCst))),
        )
        .await
        .unwrap();
    assert_eq!(n, data.len() as u64);
    assert_eq!(seen.load(Ordering::SeqCst), n, "progress reached the total");
    assert!(std::fs::read(a.root.join("big/big.bin")).unwrap() == data);
    let sb = EnvdSandbox::new(a.client(), "local", root.clone(), false);
    let dst = local_dir.path().join("back/big.bin");
    let got = sb.download("big/big.bin", &dst, None).await.unwrap();
    assert_eq!(got, n);
    assert!(std::fs::read(&dst).unwrap() == data, "download differs");

    // Range requests.
    let resp = reqwest::Client::new()
        .get(format!("{}/files", a.url))
        .query(&[("path", "one.txt")])
        .header("x-access-token", TOKEN)
        .header("range", "bytes=1-3")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 206);
    assert_eq!(resp.headers()["content-range"], "bytes 1-3/5");
    assert_eq!(resp.text().await.unwrap(), "irs");

    // Errors: missing file is 404 JSON, a directory is 400.
    let resp = reqwest::Client::new()
        .get(format!("{}/files", a.url))
        .query(&[("path", "nope")])
        .header("x-access-token", TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 404);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["code"], 404);
    assert!(body["message"].as_str().unwrap().contains("not found"));
    assert!(matches!(
        c.read("deep").await,
        Err(SandboxError::InvalidArgument(_))
    ));
    assert!(matches!(
        c.read("nope").await,
        Err(SandboxError::NotFound(_))
    ));
}

#[tokio::test]
async fn overwrite_is_atomic_and_keeps_the_mode() {
    let a = TestAgent::start().await;
    let sb = EnvdSandbox::new(a.client(), "local", a.root.display().to_string(), false);
    sb.write_files(vec![FileUpload {
        path: "run.sh".into(),
        contents: Bytes::from_static(b"v1"),
    }])
    .await
    .unwrap();
    let p = a.root.join("run.sh");
    assert_eq!(
        std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
        0o644
    );
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o750)).unwrap();
    let before_ino = std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&p).unwrap());
    sb.write_files(vec![FileUpload {
        path: "run.sh".into(),
        contents: Bytes::from_static(b"v2"),
    }])
    .await
    .unwrap();
    let meta = std::fs::metadata(&p).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o750);
    assert_ne!(
        std::os::unix::fs::MetadataExt::ino(&meta),
        before_ino,
        "replaced by rename, not rewritten in place"
    );
    assert_eq!(std::fs::read(&p).unwrap(), b"v2");
    let leftovers: Vec<_> = std::fs::read_dir(&a.root)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with(".rclaude"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left behind");
}

#[tokio::test]
async fn every_endpoint_requires_the_token() {
    let a = TestAgent::start().await;
    let http = reqwest::Client::new();
    for token in [None, Some("wrong-token")] {
        let with = |rb: reqwest::RequestBuilder| match token {
            Some(t) => rb.header("x-access-token", t),
            None => rb,
        };
        let r = with(http.get(format!("{}/health", a.url)))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 401);
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["code"], 401);

        let r = with(http.get(format!("{}/files?path=x", a.url)))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 401);
        let r = with(
            http.post(format!("{}/files?path=x", a.url))
                .header("content-type", "application/octet-stream")
                .body("data"),
        )
        .send()
        .await
        .unwrap();
        assert_eq!(r.status().as_u16(), 401);
        assert!(!a.root.join("x").exists());

        let r = with(
            http.post(format!("{}/filesystem.Filesystem/Stat", a.url))
                .header("content-type", "application/json")
                .body("{}"),
        )
        .send()
        .await
        .unwrap();
        assert_eq!(r.status().as_u16(), 401);
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["code"], "unauthenticated");

        let start = encode_json(&sh("touch pwned"));
        let r = with(
            http.post(format!("{}/process.Process/Start", a.url))
                .header("content-type", "application/connect+json")
                .body(start),
        )
        .send()
        .await
        .unwrap();
        assert_eq!(r.status().as_u16(), 401);
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!a.root.join("pwned").exists());

        let c = a.client_with_token(token);
        assert!(matches!(
            c.health().await,
            Err(SandboxError::Unauthenticated(_))
        ));
        assert!(matches!(
            c.list().await,
            Err(SandboxError::Unauthenticated(_))
        ));
        assert!(matches!(
            c.start(&sh("true"), None).await.map(|_| ()),
            Err(SandboxError::Unauthenticated(_))
        ));
        assert!(matches!(
            c.read("x").await,
            Err(SandboxError::Unauthenticated(_))
        ));
    }

    // Presigned file URLs work without the header.
    std::fs::write(a.root.join("shared.txt"), "signed").unwrap();
    let sig = rclaude::agent::sign_file_url("shared.txt", "read", "", TOKEN, None);
    let r = http
        .get(format!("{}/files", a.url))
        .query(&[("path", "shared.txt"), ("signature", &sig)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.text().await.unwrap(), "signed");
    let r = http
        .get(format!("{}/files", a.url))
        .query(&[("path", "other.txt"), ("signature", &sig)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
}

#[tokio::test]
async fn no_auth_mode_accepts_requests_without_a_token() {
    let a = TestAgent::start_with(|o| o.token = None).await;
    let c = a.client_with_token(None);
    c.health().await.unwrap();
    assert!(c.list().await.unwrap().is_empty());
}

#[tokio::test]
async fn connect_protocol_errors() {
    let a = TestAgent::start().await;
    let http = reqwest::Client::new();
    let post = |path: &str, ct: &str, body: &'static str| {
        http.post(format!("{}{path}", a.url))
            .header("x-access-token", TOKEN)
            .header("content-type", ct)
            .body(body)
            .send()
    };
    let r = post("/filesystem.Filesystem/Stat", "application/json", "")
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    assert_eq!(r.json::<Value>().await.unwrap()["code"], "invalid_argument");
    let r = post(
        "/filesystem.Filesystem/Stat",
        "application/json; charset=utf-8",
        r#"{"path":"","unknownField":1}"#,
    )
    .await
    .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(
        r.json::<Value>().await.unwrap()["entry"]["type"],
        "FILE_TYPE_DIRECTORY"
    );
    let r = post("/filesystem.Filesystem/Nope", "application/json", "{}")
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 404);
    assert_eq!(r.json::<Value>().await.unwrap()["code"], "unimplemented");
    let r = post("/process.Process/List", "application/proto", "")
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 415);
    let r = post("/process.Process/List", "application/json", "{}")
        .await
        .unwrap();
    assert_eq!(r.json::<Value>().await.unwrap(), json!({"processes": []}));
    let r = post(
        "/process.Process/SendSignal",
        "application/json",
        r#"{"process":{"pid":1},"signal":"SIGNAL_SIGKILL"}"#,
    )
    .await
    .unwrap();
    assert_eq!(r.status().as_u16(), 404);
    assert_eq!(r.json::<Value>().await.unwrap()["code"], "not_found");
}

#[tokio::test]
async fn paths_that_escape_the_root_are_refused() {
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret"), "top secret").unwrap();
    let a = TestAgent::start().await;
    let c = a.client();
    let root = a.root.display().to_string();
    symlink(outside.path().join("secret"), a.root.join("link")).unwrap();
    symlink(outside.path(), a.root.join("linkdir")).unwrap();

    let err = c.stat("../../../../..").await.unwrap_err();
    assert!(
        matches!(&err, SandboxError::InvalidArgument(m) if m.contains("escapes the sandbox root")),
        "{err}"
    );
    let err = c.read("/etc/passwd").await.unwrap_err();
    assert!(
        matches!(&err, SandboxError::InvalidArgument(m) if m.contains("escapes the sandbox root")),
        "{err}"
    );
    let err = c.read("link").await.unwrap_err();
    assert!(
        matches!(&err, SandboxError::InvalidArgument(m) if m.contains("outside the sandbox root")),
        "{err}"
    );
    let err = c.stat("link").await.unwrap_err();
    assert!(
        matches!(&err, SandboxError::InvalidArgument(m) if m.contains("outside the sandbox root")),
        "{err}"
    );
    let err = c
        .write_files(vec![("linkdir/new".into(), Bytes::from_static(b"x"))])
        .await
        .unwrap_err();
    assert!(matches!(err, SandboxError::InvalidArgument(_)), "{err}");
    let err = c
        .write_files(vec![("link".into(), Bytes::from_static(b"overwritten"))])
        .await
        .unwrap_err();
    assert!(matches!(err, SandboxError::InvalidArgument(_)), "{err}");
    assert!(!outside.path().join("new").exists());
    assert_eq!(
        std::fs::read_to_string(outside.path().join("secret")).unwrap(),
        "top secret"
    );
    assert!(matches!(
        c.list_dir("linkdir", 1).await,
        Err(SandboxError::InvalidArgument(_))
    ));
    assert!(matches!(
        c.make_dir("/tmp/elsewhere").await,
        Err(SandboxError::InvalidArgument(_))
    ));
    assert!(matches!(
        c.move_("link", "../stolen").await,
        Err(SandboxError::InvalidArgument(_))
    ));

    let mut req = sh("pwd");
    req.process.cwd = Some("linkdir".into());
    let err = collect_err(c.start(&req, None).await).await;
    assert!(
        matches!(&err, SandboxError::InvalidArgument(m) if m.contains("outside the sandbox root")),
        "{err}"
    );
    req.process.cwd = Some("/".into());
    assert!(matches!(
        collect_err(c.start(&req, None).await).await,
        SandboxError::InvalidArgument(_)
    ));

    // The link itself may be listed, renamed and removed; the target is untouched.
    let listed = c.list_dir(&root, 1).await.unwrap();
    let link = listed.iter().find(|e| e.name == "link").unwrap();
    assert!(link.is_symlink);
    assert_eq!(link.file_type, FileType::Symlink);
    c.move_("link", "renamed-link").await.unwrap();
    c.remove("renamed-link").await.unwrap();
    assert_eq!(
        std::fs::read_to_string(outside.path().join("secret")).unwrap(),
        "top secret"
    );
}

#[tokio::test]
async fn shutdown_kills_running_processes() {
    let a = TestAgent::start().await;
    let c = a.client();
    let mut s = c.start(&sh("echo up; exec sleep 60"), None).await.unwrap();
    let mut acc = String::new();
    read_until(&mut s, &mut acc, |t| t.contains("up")).await;
    let stream_end = tokio::spawn(collect(s));
    a.shutdown().await;
    let end = stream_end
        .await
        .unwrap()
        .end
        .expect("stream still ended properly");
    assert_eq!(end.status, "signal: killed");
}

/// Root and outside directory on the real disk (not /tmp, which bubblewrap replaces).
fn disk_tempdir() -> tempfile::TempDir {
    tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap()
}

#[tokio::test]
async fn bwrap_confines_writes_to_the_root() {
    let outside = disk_tempdir();
    let root_dir = disk_tempdir();
    let target = outside.path().join("escaped");
    let script = format!(
        "echo inside > {root}/ok; echo outside > {t}; echo status=$?",
        root = root_dir.path().display(),
        t = target.display()
    );

    // Without isolation the write outside succeeds (so the check below means something).
    let plain = TestAgent::start_in(root_dir.path(), |o| o.isolation = Isolation::None).await;
    let r = collect(plain.client().start(&sh(&script), None).await.unwrap()).await;
    assert!(String::from_utf8_lossy(&r.stdout).contains("status=0"));
    assert!(target.exists());
    std::fs::remove_file(&target).unwrap();
    std::fs::remove_file(root_dir.path().join("ok")).unwrap();
    plain.shutdown().await;

    let boxed = TestAgent::start_in(root_dir.path(), |o| o.isolation = Isolation::Bwrap).await;
    let r = collect(boxed.client().start(&sh(&script), None).await.unwrap()).await;
    let out = String::from_utf8_lossy(&r.stdout);
    assert!(
        out.contains("status=1") || out.contains("status=2"),
        "write outside was not refused: {out}"
    );
    // Read-only where the outside directory is visible; absent where it lies under /tmp, which
    // bubblewrap replaces with an empty tmpfs (a checkout under /tmp).
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(
        err.contains("Read-only file system") || err.contains("nonexistent"),
        "{err}"
    );
    assert!(
        !target.exists(),
        "bwrap let a process write outside the root"
    );
    assert_eq!(
        std::fs::read_to_string(root_dir.path().join("ok")).unwrap(),
        "inside\n"
    );
    // A root under /tmp (which bubblewrap replaces with a private tmpfs) is still the real one.
    let tmp_root = tempfile::tempdir().unwrap();
    let in_tmp = TestAgent::start_in(tmp_root.path(), |o| o.isolation = Isolation::Bwrap).await;
    let r = collect(
        in_tmp
            .client()
            .start(
                &sh("echo shared > f; cat /tmp/../etc/hostname >/dev/null"),
                None,
            )
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        r.end.unwrap().exit_code,
        0,
        "{}",
        String::from_utf8_lossy(&r.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(tmp_root.path().join("f")).unwrap(),
        "shared\n"
    );
    in_tmp.shutdown().await;

    // PTYs and signals work through bwrap too.
    let mut req = sh("tty");
    req.pty = Some(Pty::default());
    let r = collect(boxed.client().start(&req, None).await.unwrap()).await;
    assert!(
        String::from_utf8_lossy(&r.pty).contains("/dev/pts/"),
        "{}",
        String::from_utf8_lossy(&r.pty)
    );
    let r = collect(
        boxed
            .client()
            .start(&sh("exec sleep 60"), Some(Duration::from_millis(300)))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(r.end.unwrap().status, "signal: killed");
}

#[tokio::test]
async fn sigterm_reaches_the_command_under_bwrap_so_it_can_clean_up() {
    let root_dir = disk_tempdir();
    let boxed = TestAgent::start_in(root_dir.path(), |o| o.isolation = Isolation::Bwrap).await;
    let c = boxed.client();
    let mut s = c
        .start(
            &sh("trap 'echo cleaned-up; exit 7' TERM; echo ready; sleep 60 & wait"),
            None,
        )
        .await
        .unwrap();
    let pid = match s.next().await.unwrap().unwrap() {
        ProcessEvent::Start(st) => st.pid,
        other => panic!("{other:?}"),
    };
    let mut acc = String::new();
    read_until(&mut s, &mut acc, |t| t.contains("ready")).await;
    c.send_signal(ProcessSelector::Pid(pid), Signal::Sigterm)
        .await
        .unwrap();
    let rest = collect(s).await;
    let out = format!("{acc}{}", String::from_utf8_lossy(&rest.stdout));
    assert!(out.contains("cleaned-up"), "the trap did not run: {out:?}");
    assert_eq!(rest.end.unwrap().exit_code, 7);
    boxed.shutdown().await;
}

/// Every file name below `dir`, recursively.
fn walkdir_names(dir: &std::path::Path) -> Vec<String> {
    let mut names = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            } else {
                names.push(e.file_name().to_string_lossy().into_owned());
            }
        }
    }
    names
}

/// POST a unary JSON RPC; returns (status, body).
async fn raw_unary(url: &str, path: &str, body: Value) -> (u16, Value) {
    let resp = reqwest::Client::new()
        .post(format!("{url}{path}"))
        .header("content-type", "application/json")
        .header("x-access-token", TOKEN)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn watch_dir_streams_events_and_reports_errors_in_the_end_frame() {
    let a = TestAgent::start().await;
    std::fs::create_dir_all(a.root.join("w/sub")).unwrap();
    let req = json!({"path": "w", "recursive": true});
    let resp = reqwest::Client::new()
        .post(format!("{}/filesystem.Filesystem/WatchDir", a.url))
        .header("content-type", "application/connect+json")
        .header("x-access-token", TOKEN)
        .header("keepalive-ping-interval", "1")
        .body(encode_json(&req))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let mut body = resp.bytes_stream();
    let mut dec = EnvelopeDecoder::new();
    let mut msgs: Vec<Value> = Vec::new();
    let mut next = async || -> Value {
        loop {
            if let Some(env) = dec.next_envelope().unwrap() {
                assert!(!env.is_end(), "the watch ended: {:?}", env.payload);
                return serde_json::from_slice(&env.payload).unwrap();
            }
            let chunk = tokio::time::timeout(Duration::from_secs(10), body.next())
                .await
                .expect("a watch message within 10 s")
                .expect("stream open")
                .unwrap();
            dec.push(&chunk);
        }
    };
    assert_eq!(next().await, json!({"start": {}}));
    std::fs::write(a.root.join("w/sub/new.txt"), "x").unwrap();
    std::fs::remove_file(a.root.join("w/sub/new.txt")).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::time::Instant::now() < deadline {
        let m = next().await;
        let done = m["filesystem"]["type"] == "EVENT_TYPE_REMOVE";
        msgs.push(m);
        if done {
            break;
        }
    }
    let events: Vec<(String, String)> = msgs
        .iter()
        .filter_map(|m| m.get("filesystem"))
        .map(|e| {
            (
                e["name"].as_str().unwrap().into(),
                e["type"].as_str().unwrap().into(),
            )
        })
        .collect();
    for want in ["EVENT_TYPE_CREATE", "EVENT_TYPE_WRITE", "EVENT_TYPE_REMOVE"] {
        assert!(
            events.contains(&("sub/new.txt".into(), want.into())),
            "{want} missing: {events:?}"
        );
    }
    // Silence is filled with keepalives at the interval the client asked for.
    assert_eq!(next().await, json!({"keepalive": {}}));

    // Errors arrive inside the stream (HTTP 200), typed, as envd sends them.
    for (path, code) in [("nope", "not_found"), ("../../..", "invalid_argument")] {
        let (status, msgs, end) = raw_stream(
            &a.url,
            "/filesystem.Filesystem/WatchDir",
            &[("x-access-token", TOKEN)],
            encode_json(&json!({ "path": path })).into(),
        )
        .await;
        assert_eq!((status, msgs.len()), (200, 0), "{path}");
        assert_eq!(end.unwrap()["error"]["code"], code, "{path}");
    }
}

#[tokio::test]
async fn polled_watchers_collect_events_until_removed() {
    let a = TestAgent::start().await;
    std::fs::create_dir_all(a.root.join("p/deep")).unwrap();
    let (status, v) = raw_unary(
        &a.url,
        "/filesystem.Filesystem/CreateWatcher",
        json!({"path": "p", "recursive": false}),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    let id = v["watcherId"].as_str().unwrap().to_string();
    std::fs::write(a.root.join("p/top.txt"), "1").unwrap();
    std::fs::write(a.root.join("p/deep/below.txt"), "2").unwrap();
    let mut names = Vec::new();
    for _ in 0..50 {
        let (status, v) = raw_unary(
            &a.url,
            "/filesystem.Filesystem/GetWatcherEvents",
            json!({"watcherId": id}),
        )
        .await;
        assert_eq!(status, 200, "{v}");
        names.extend(
            v["events"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["name"].as_str().unwrap().to_string()),
        );
        if names.iter().any(|n| n == "top.txt") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(names.iter().any(|n| n == "top.txt"), "{names:?}");
    assert!(
        !names.iter().any(|n| n.contains("below")),
        "not recursive, yet saw {names:?}"
    );
    let (status, _) = raw_unary(
        &a.url,
        "/filesystem.Filesystem/RemoveWatcher",
        json!({"watcherId": id}),
    )
    .await;
    assert_eq!(status, 200);
    let (status, v) = raw_unary(
        &a.url,
        "/filesystem.Filesystem/GetWatcherEvents",
        json!({"watcherId": id}),
    )
    .await;
    assert_eq!((status, v["code"].as_str()), (404, Some("not_found")));
}
