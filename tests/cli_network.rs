//! `[network]` on the local provider, with real processes: a restricted sandbox runs in its own
//! network namespace whose only way out is the agent's allow-listing proxy. A listener on this
//! machine's loopback stands for "outside"; probes run in the sandbox with python3.
//!
//! Enforcement needs bubblewrap, as root or as an ordinary user (then bubblewrap's namespaces
//! belong to a user namespace of its own, which the agent's helpers join first).

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;

use common::TestRepo;

const PROBE: &str = include_str!("network/probe.py");

/// An HTTP server on this machine's loopback answering `hello from the host` to everything.
fn host_server() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut c in l.incoming().flatten() {
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                let mut head = Vec::new();
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match c.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let body = "hello from the host";
                let _ = write!(
                    c,
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            });
        }
    });
    port
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn repo(network: &str) -> TestRepo {
    let t = TestRepo::new(&format!(
        "[sandbox]\nprovider = \"local\"\nisolation = \"bwrap\"\n\n[network]\n{network}\n"
    ));
    t.write("probe.py", PROBE);
    t.commit_all("init");
    t
}

fn probe(t: &TestRepo, args: &str) -> String {
    t.ok(&[
        "exec",
        "--no-sync",
        "--",
        &format!("python3 probe.py {args}"),
    ])
    .stdout()
}

#[test]
fn an_allowed_host_is_reached_through_the_proxy_and_nothing_else() {
    let port = host_server();
    let t = repo("allow = [\"127.0.0.1\"]");
    t.ok(&["up"]);
    // Plain HTTP (absolute-form) and CONNECT tunnels to the allowed address work.
    assert_eq!(
        probe(&t, &format!("get http://127.0.0.1:{port}/x")),
        "200 hello from the host\n"
    );
    assert_eq!(
        probe(&t, &format!("tunnel 127.0.0.1 {port}")),
        "200 hello from the host\n"
    );
    // A direct connection does not leave the sandbox: its 127.0.0.1 is its own.
    let direct = probe(&t, &format!("direct 127.0.0.1 {port}"));
    assert!(direct.starts_with("refused"), "{direct}");
    // Anything not on the list is refused by the proxy, saying why.
    let other = probe(&t, &format!("get http://10.255.255.1:{port}/"));
    assert!(
        other.starts_with("403 rclaude: 10.255.255.1:")
            && other.contains("not in this sandbox's [network] allow list"),
        "{other}"
    );
    let other = probe(&t, "tunnel 192.0.2.1 443");
    assert!(other.contains("403"), "{other}");
    // The sandbox's own loopback services work as usual, across commands.
    t.ok(&[
        "exec",
        "--no-sync",
        "--",
        "nohup python3 -m http.server 18431 --bind 127.0.0.1 >/dev/null 2>&1 &",
    ]);
    let mut own = String::new();
    for _ in 0..50 {
        own = probe(&t, "direct 127.0.0.1 18431");
        if own == "connected\n" {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(own, "connected\n");
    // ...but not from this machine: `port` says so instead of forwarding to the wrong place.
    let r = t.rclaude(&["port", "18431"]);
    assert_eq!(r.code(), 64, "{}", r.all());
    assert!(r.stderr().contains("own network namespace"), "{}", r.all());
    // Processes are told where the proxy is; the sandbox's own addresses stay direct.
    let env = t.ok(&["exec", "--no-sync", "--", "env"]).stdout();
    assert!(env.contains("HTTPS_PROXY=http://127.0.0.1:3128\n"), "{env}");
    assert!(env.contains("NO_PROXY=localhost,127.0.0.1,::1\n"), "{env}");
    t.ok(&["down", "--yes", "--discard"]);
}

#[test]
fn deny_all_lets_no_connection_out() {
    let port = host_server();
    let t = repo("deny_all = true");
    t.ok(&["up"]);
    let direct = probe(&t, &format!("direct 127.0.0.1 {port}"));
    assert!(direct.starts_with("refused"), "{direct}");
    let proxied = probe(&t, &format!("get http://127.0.0.1:{port}/"));
    assert!(proxied.starts_with("403 "), "{proxied}");
    // Claude Code's API host is not added to deny_all.
    let api = probe(&t, "tunnel api.anthropic.com 443");
    assert!(api.contains("403"), "{api}");
    t.ok(&["down", "--yes", "--discard"]);
}

#[test]
fn a_policy_that_cannot_be_enforced_is_refused_before_a_sandbox_exists() {
    // Without bubblewrap's namespaces there is nothing to enforce it with.
    let t = TestRepo::new(
        "[sandbox]\nprovider = \"local\"\nisolation = \"none\"\n\n[network]\ndeny_all = true\n",
    );
    t.commit_all("init");
    let r = t.rclaude(&["up"]);
    assert_eq!(r.code(), 78, "{}", r.all());
    assert!(r.stderr().contains("isolation = \"bwrap\""), "{}", r.all());
    assert_eq!(
        std::fs::read_dir(t.sandboxes_dir())
            .map(|d| d.count())
            .unwrap_or(0),
        0
    );

    // Bad rules and contradictions are located config errors.
    for (network, want) in [
        ("allow = [\"http://x.com\"]", "is not a network rule"),
        ("allow = [\"10.0.0.0/33\"]", "is not a network rule"),
        (
            "deny_all = true\nallow = [\"pypi.org\"]",
            "deny_all = true lets nothing out",
        ),
    ] {
        let t = TestRepo::new(&format!("[network]\n{network}\n"));
        let r = t.rclaude(&["exec", "--", "true"]);
        assert_eq!(r.code(), 78, "{network}: {}", r.all());
        assert!(r.stderr().contains(want), "{network}: {}", r.all());
        assert!(
            r.stderr().contains(".rclaude.toml:"),
            "not located: {}",
            r.all()
        );
    }
}

/// The user every command of [`an_ordinary_user_gets_the_same_enforcement`] runs as.
const NOBODY: u32 = 65534;

/// `rclaude ARGS` as [`NOBODY`], with a copy of the binary that user can run.
fn as_nobody(t: &TestRepo, bin: &std::path::Path, args: &[&str]) -> common::Run {
    use std::os::unix::process::CommandExt;
    let mut c = t.cmd_of(bin, args);
    c.uid(NOBODY).gid(NOBODY).env("HOME", t.home.path());
    let r = common::Run(c.output().unwrap());
    assert_eq!(r.code(), 0, "rclaude {args:?} as nobody:\n{}", r.all());
    r
}

/// Most people run rclaude as themselves, not root. Then bubblewrap builds the sandbox inside
/// a user namespace of its own, and the agent joins that before entering the sandbox's network
/// namespace (for the proxy's listener and for every command). Run as root, this test drops to
/// `nobody` for every rclaude command; run as an ordinary user, the tests above are this case
/// already and it has nothing to add.
#[test]
fn an_ordinary_user_gets_the_same_enforcement() {
    if !is_root() {
        return;
    }
    let port = host_server();
    let t = repo("allow = [\"127.0.0.1\"]");
    // The test's directories are root's 0700 temporary directories: hand them over, with a
    // copy of the binary where nobody can run it.
    let bin_dir = tempfile::tempdir().unwrap();
    let bin = bin_dir.path().join("rclaude");
    std::fs::copy(common::bin(), &bin).unwrap();
    for p in [bin_dir.path(), t.home.path(), t.path()] {
        let ok = std::process::Command::new("chown")
            .args(["-R", &format!("{NOBODY}:{NOBODY}")])
            .arg(p)
            .status()
            .unwrap()
            .success();
        assert!(ok, "chown {}", p.display());
    }
    as_nobody(&t, &bin, &["up"]);
    let probe = |args: &str| {
        as_nobody(
            &t,
            &bin,
            &[
                "exec",
                "--no-sync",
                "--",
                &format!("python3 probe.py {args}"),
            ],
        )
        .stdout()
    };
    assert_eq!(
        probe(&format!("get http://127.0.0.1:{port}/x")),
        "200 hello from the host\n"
    );
    assert_eq!(
        probe(&format!("tunnel 127.0.0.1 {port}")),
        "200 hello from the host\n"
    );
    let direct = probe(&format!("direct 127.0.0.1 {port}"));
    assert!(direct.starts_with("refused"), "{direct}");
    let other = probe(&format!("get http://10.255.255.1:{port}/"));
    assert!(
        other.contains("not in this sandbox's [network] allow list"),
        "{other}"
    );
    // The agent really is unprivileged, and the sandbox's processes see their own PID
    // namespace and a network namespace with nothing but its loopback.
    let agents = std::process::Command::new("pgrep")
        .args(["-u", &NOBODY.to_string(), "-f", "rclaude agent"])
        .output()
        .unwrap();
    assert!(!agents.stdout.is_empty(), "no agent runs as nobody");
    let inside = as_nobody(
        &t,
        &bin,
        &[
            "exec",
            "--no-sync",
            "--",
            "tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '; ls /proc | grep -c '^[0-9]'",
        ],
    )
    .stdout();
    let mut lines = inside.lines();
    assert_eq!(lines.next(), Some("lo"), "{inside}");
    let procs: usize = lines.last().unwrap_or("").parse().unwrap_or(usize::MAX);
    assert!(procs < 10, "the sandbox sees {procs} processes:\n{inside}");
    as_nobody(&t, &bin, &["down", "--yes", "--discard"]);
}
