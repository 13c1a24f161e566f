//! `rclaude port`, `rclaude open` and the ports `status` lists, with real servers in a local
//! sandbox: an HTTP server and a WebSocket echo reached through a forwarded local port.

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::TestRepo;
use common::net::{
    Bg, WS_ECHO_PY, free_port, http_get, serve_web_and_echo, wait_for, ws_echo_round_trip,
};

#[test]
fn sandbox_servers_are_reached_through_rclaude_port_http_and_websockets() {
    let (web, ws) = (free_port(), free_port());
    let t = TestRepo::new(&format!(
        "[sandbox]\nprovider = \"local\"\n[ports]\n{web} = \"web\"\n{ws} = {{ label = \"echo\" }}\n"
    ));
    t.write("hello.txt", "hello from the sandbox\n");
    t.write("ws_echo.py", WS_ECHO_PY);
    t.commit_all("init");
    t.ok(&["up", "--quiet"]);
    t.sh(&serve_web_and_echo(web, ws));
    wait_for(web);
    wait_for(ws);

    // Where a port is; status lists what the sandbox listens on, with labels.
    assert_eq!(
        t.ok(&["port", &web.to_string()]).stdout(),
        format!("http://127.0.0.1:{web}\n")
    );
    let status: serde_json::Value =
        serde_json::from_str(&t.ok(&["status", "--json"]).stdout()).unwrap();
    let listed = status["ports"].as_array().unwrap();
    let find = |p: u16| listed.iter().find(|e| e["port"] == p).cloned();
    assert_eq!(find(web).unwrap()["label"], "web", "{status}");
    assert_eq!(find(ws).unwrap()["label"], "echo", "{status}");

    // Forwarded: HTTP through a local port.
    let (l_web, l_ws) = (free_port(), free_port());
    let _fwd_web = Bg(t
        .cmd(&["port", &web.to_string(), "--local", &l_web.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap());
    wait_for(l_web);
    let reply = http_get(l_web, "/hello.txt");
    assert!(reply.starts_with("HTTP/1.0 200"), "{reply}");
    assert!(reply.ends_with("hello from the sandbox\n"), "{reply}");

    // WebSockets: an echo through a forwarded port.
    let _fwd_ws = Bg(t
        .cmd(&["port", &ws.to_string(), "--local", &l_ws.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap());
    wait_for(l_ws);
    ws_echo_round_trip(
        &format!("ws://127.0.0.1:{l_ws}/"),
        &["hello", "through rclaude port"],
    );

    // Bad input: a port out of range, a local port already bound.
    let r = t.rclaude(&["port", "70000"]);
    assert_eq!(r.code(), 64, "{}", r.all());
    let r = t.rclaude(&["port", &web.to_string(), "--local", &l_web.to_string()]);
    assert_eq!(r.code(), 64, "{}", r.all());
    assert!(r.stderr().contains("already in use"), "{}", r.all());

    // open: the URL goes to $BROWSER.
    let opened = t.path().join("opened");
    let browser = t.path().join("browser.sh");
    std::fs::write(
        &browser,
        format!("#!/bin/sh\necho \"$1\" > {}\n", opened.display()),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&browser, std::fs::Permissions::from_mode(0o755)).unwrap();
    let r = common::Run(
        t.cmd(&["open", &web.to_string()])
            .env("BROWSER", &browser)
            .output()
            .unwrap(),
    );
    assert_eq!(r.code(), 0, "{}", r.all());
    // The browser runs detached: wait for its whole line (the shell creates the file before
    // `echo` writes to it).
    let deadline = Instant::now() + Duration::from_secs(5);
    let read = || std::fs::read_to_string(&opened).unwrap_or_default();
    while !read().ends_with('\n') && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(read(), format!("http://127.0.0.1:{web}\n"));
}

#[test]
fn a_ports_key_that_is_not_a_port_is_a_located_config_error() {
    let t = TestRepo::new("[sandbox]\nprovider = \"local\"\n\n[ports]\nweb = \"3000\"\n");
    let r = t.rclaude(&["status"]);
    assert_eq!(r.code(), 78, "{}", r.all());
    assert!(
        r.stderr().contains(".rclaude.toml:5") && r.stderr().contains("not a port number"),
        "{}",
        r.all()
    );
}
