//! High availability: two replicas of the server on one PostgreSQL behind a small TCP balancer,
//! and the real CLI creating, syncing, running a task in and pausing managed sessions (local
//! provider, real agents) in a loop on three repositories at once. Under that load one replica
//! is killed with SIGKILL and started again, then both are restarted one after the other
//! (SIGTERM). No CLI command may fail, and afterwards every session's record holds each
//! transition exactly once, every task the CLI reported, and billing equal to the sum of its
//! running intervals.

mod common;

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Engine, Server, TestDb, create_account};
use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::net::{TcpListener, TcpStream};

/// A TCP balancer: each connection goes to the next backend in turn, or to the one after it
/// when that one refuses (as a balancer's health check would route around a dead replica).
struct Balancer {
    base: String,
    backends: Arc<Mutex<Vec<String>>>,
}

impl Balancer {
    async fn start(backends: Vec<String>) -> Balancer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let backends = Arc::new(Mutex::new(backends));
        let list = backends.clone();
        tokio::spawn(async move {
            let mut turn = 0usize;
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    return;
                };
                turn += 1;
                let candidates = list.lock().unwrap().clone();
                tokio::spawn(async move {
                    for i in 0..candidates.len() {
                        let addr = &candidates[(turn + i) % candidates.len()];
                        if let Ok(mut out) = TcpStream::connect(addr).await {
                            let _ = tokio::io::copy_bidirectional(&mut inbound, &mut out).await;
                            return;
                        }
                    }
                });
            }
        });
        Balancer { base, backends }
    }

    fn route_to(&self, backends: &[&Server]) {
        *self.backends.lock().unwrap() = backends.iter().map(|s| s.addr.clone()).collect();
    }
}

/// One repository and its own rclaude home, driven with the real CLI.
struct Repo {
    home: tempfile::TempDir,
    dir: tempfile::TempDir,
}

fn git_env(c: &mut Command) -> &mut Command {
    c.env("GIT_AUTHOR_NAME", "Test")
        .env("GIT_AUTHOR_EMAIL", "test@example.com")
        .env("GIT_COMMITTER_NAME", "Test")
        .env("GIT_COMMITTER_EMAIL", "test@example.com")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
}

impl Repo {
    fn new(n: usize) -> Repo {
        let r = Repo {
            home: tempfile::tempdir().unwrap(),
            dir: tempfile::tempdir().unwrap(),
        };
        std::fs::write(
            r.dir.path().join(".rclaude.toml"),
            "[tasks.show]\nrun = \"cat round.txt\"\n",
        )
        .unwrap();
        std::fs::write(r.dir.path().join("round.txt"), "none\n").unwrap();
        let remote = format!("https://github.com/acme/app{n}.git");
        for args in [
            &["init", "-q", "-b", "main"][..],
            &["remote", "add", "origin", &remote],
            &["add", "-A"],
            &["commit", "-qm", "init"],
        ] {
            let ok = git_env(Command::new("git").args(args).current_dir(r.dir.path()))
                .status()
                .unwrap()
                .success();
            assert!(ok, "git {args:?}");
        }
        r
    }

    fn rclaude(&self, args: &[&str], token: &str) -> std::process::Output {
        git_env(
            Command::new(common::agent_bin())
                .args(args)
                .current_dir(self.dir.path())
                .env("RCLAUDE_HOME", self.home.path())
                .env("RCLAUDE_TOKEN", token)
                .env("CI", "true"),
        )
        .output()
        .unwrap()
    }

    /// Run `rclaude ARGS`; `Err` with its output when it fails.
    fn ok(&self, args: &[&str], token: &str) -> Result<String, String> {
        let out = self.rclaude(args, token);
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(format!(
                "rclaude {args:?} exited {:?}:\n{}{}",
                out.status.code(),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    }

    fn session_id(&self) -> String {
        let dir = self.home.path().join("state/repos");
        let f = std::fs::read_dir(dir)
            .unwrap()
            .flatten()
            .find(|e| e.path().extension().is_some_and(|x| x == "json"))
            .unwrap();
        let v: Value = serde_json::from_slice(&std::fs::read(f.path()).unwrap()).unwrap();
        v["session_id"].as_str().unwrap().to_string()
    }

    /// Calls queued for the server and not yet delivered.
    fn undelivered(&self) -> usize {
        fn count(p: &Path) -> usize {
            std::fs::read_dir(p)
                .map(|d| {
                    d.flatten()
                        .map(|e| {
                            if e.path().is_dir() {
                                count(&e.path())
                            } else {
                                1
                            }
                        })
                        .sum()
                })
                .unwrap_or(0)
        }
        count(&self.home.path().join("state/outbox"))
    }
}

/// What one worker did.
#[derive(Default)]
struct Done {
    rounds: usize,
    failures: Vec<String>,
}

/// Rounds of: edit, `up` (create or resume, then sync), `run show` (must print the edit),
/// `pause`; until `stop`.
fn work(repo: &Repo, token: &str, stop: &AtomicBool, progress: &AtomicUsize) -> Done {
    let mut done = Done::default();
    while !stop.load(Ordering::SeqCst) {
        let round = done.rounds;
        let text = format!("round {round}\n");
        std::fs::write(repo.dir.path().join("round.txt"), &text).unwrap();
        let step = || -> Result<(), String> {
            repo.ok(&["up", "--quiet"], token)?;
            let shown = repo.ok(&["run", "show"], token)?;
            if shown != text {
                return Err(format!("`run show` printed {shown:?}, not {text:?}"));
            }
            repo.ok(&["pause"], token)?;
            Ok(())
        };
        if let Err(e) = step() {
            done.failures.push(format!("round {round}: {e}"));
            return done;
        }
        done.rounds += 1;
        progress.fetch_add(1, Ordering::SeqCst);
    }
    done
}

/// Wait until every worker has finished `more` rounds beyond `from` (or one has failed).
async fn wait_rounds(progress: &[Arc<AtomicUsize>], more: usize, failed: &dyn Fn() -> bool) {
    let from: Vec<usize> = progress.iter().map(|p| p.load(Ordering::SeqCst)).collect();
    let deadline = Instant::now() + Duration::from_secs(240);
    while progress
        .iter()
        .zip(&from)
        .any(|(p, f)| p.load(Ordering::SeqCst) < f + more)
    {
        if failed() {
            return;
        }
        assert!(Instant::now() < deadline, "the workers made no progress");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn ms(at: &Value) -> i64 {
    let t = OffsetDateTime::parse(at.as_str().unwrap(), &Rfc3339).unwrap();
    (t.unix_timestamp_nanos() / 1_000_000) as i64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killing_a_replica_under_load_fails_no_command_and_loses_nothing() {
    let Some(db) = TestDb::new(Engine::Postgres).await else {
        return;
    };
    let sandboxes = db.dir.path().join("sandboxes");
    let token = create_account(&db, "acme").await;
    let mut flags = common::sandbox_flags(&sandboxes, &common::agent_bin());
    flags.extend(["--idle-pause", "off"].map(String::from));
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let a = Server::start(&db, &flags).await;
    let b = Server::start(&db, &flags).await;
    let balancer = Balancer::start(vec![a.addr.clone(), b.addr.clone()]).await;

    let repos: Vec<Arc<Repo>> = (0..3).map(|n| Arc::new(Repo::new(n))).collect();
    for r in &repos {
        r.ok(&["login", "--server", &balancer.base], &token)
            .unwrap();
    }
    let stop = Arc::new(AtomicBool::new(false));
    let progress: Vec<Arc<AtomicUsize>> = repos.iter().map(|_| Arc::default()).collect();
    let failed_flag = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = repos
        .iter()
        .zip(&progress)
        .map(|(r, p)| {
            let (r, p, stop, token, failed) = (
                r.clone(),
                p.clone(),
                stop.clone(),
                token.clone(),
                failed_flag.clone(),
            );
            std::thread::spawn(move || {
                let done = work(&r, &token, &stop, &p);
                if !done.failures.is_empty() {
                    failed.store(true, Ordering::SeqCst);
                }
                done
            })
        })
        .collect();
    let failed = || failed_flag.load(Ordering::SeqCst);

    wait_rounds(&progress, 1, &failed).await;
    // A replica dies mid-load; the balancer still sends it connections until told otherwise.
    a.crash().await;
    wait_rounds(&progress, 1, &failed).await;
    let a = Server::start(&db, &flags).await;
    balancer.route_to(&[&a, &b]);
    wait_rounds(&progress, 1, &failed).await;
    // A rolling restart: each replica stopped (SIGTERM) while it still takes connections, and
    // started again, one after the other.
    assert!(b.terminate().await, "replica b did not stop cleanly");
    let b = Server::start(&db, &flags).await;
    balancer.route_to(&[&a, &b]);
    wait_rounds(&progress, 1, &failed).await;
    assert!(a.terminate().await, "replica a did not stop cleanly");
    let a = Server::start(&db, &flags).await;
    balancer.route_to(&[&a, &b]);
    wait_rounds(&progress, 1, &failed).await;
    stop.store(true, Ordering::SeqCst);
    let done: Vec<Done> = workers.into_iter().map(|w| w.join().unwrap()).collect();
    let failures: Vec<&String> = done.iter().flat_map(|d| &d.failures).collect();
    assert!(failures.is_empty(), "CLI commands failed:\n{failures:#?}");

    let c = a.client(&token);
    for (repo, d) in repos.iter().zip(&done) {
        assert!(d.rounds >= 5, "only {} rounds", d.rounds);
        assert_eq!(repo.undelivered(), 0, "calls left undelivered");
        let id = repo.session_id();
        let (_, detail) = c.get(&format!("/v1/sessions/{id}")).await;
        let events = detail["events"].as_array().unwrap();
        let transitions: Vec<&Value> = events
            .iter()
            .filter(|e| matches!(e["type"].as_str(), Some("started" | "resumed" | "paused")))
            .collect();
        // started, paused, then resumed, paused for every later round: nothing twice, nothing
        // missing.
        let kinds: Vec<&str> = transitions
            .iter()
            .map(|e| e["type"].as_str().unwrap())
            .collect();
        let mut expected = vec!["started", "paused"];
        for _ in 1..d.rounds {
            expected.extend(["resumed", "paused"]);
        }
        assert_eq!(kinds, expected, "{detail:#}");
        let tasks = events
            .iter()
            .filter(|e| e["type"] == "task_finished")
            .count();
        assert_eq!(tasks, d.rounds, "task reports lost or doubled: {detail:#}");
        // Billed: the sum of the running intervals, in whole seconds as the meter counts.
        let billed: i64 = transitions
            .chunks(2)
            .map(|p| {
                ms(&p[1]["created_at"]).div_euclid(1000) - ms(&p[0]["created_at"]).div_euclid(1000)
            })
            .sum();
        assert_eq!(detail["session"]["active_seconds"], billed, "{detail:#}");
        assert_eq!(detail["session"]["state"], "paused");
    }
    assert!(b.terminate().await);
    assert!(a.terminate().await);
}
