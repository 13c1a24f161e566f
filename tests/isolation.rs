//! What a local sandbox can see. Under bubblewrap: the system, its own root, exposed toolchains,
//! nothing else — not another sandbox's agent token, not rclaude's state or config, not
//! `~/.ssh`, not the user's other repositories. Without bubblewrap, `up` and `status` say so
//! plainly every time. Real binary, real agents, real bubblewrap.
//!
//! Everything lives under `$HOME/.cache/rclaude-tests` rather than in `/tmp`: bubblewrap gives
//! sandboxes a private `/tmp`, which would hide files there whatever rclaude does.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::TestRepo;

/// A directory outside `/tmp`, removed on drop.
struct Outside(PathBuf);

impl Outside {
    fn new() -> Outside {
        let base = PathBuf::from(std::env::var_os("HOME").expect("HOME"))
            .join(".cache/rclaude-tests")
            .join(format!("isolation-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&base).unwrap();
        Outside(base)
    }
}

impl Drop for Outside {
    fn drop(&mut self) {
        let _ = Command::new("chmod")
            .arg("-R")
            .arg("u+w")
            .arg(&self.0)
            .status();
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A repository at `dir` using rclaude home `home` and user home `user_home`.
fn rclaude(dir: &Path, home: &Path, user_home: &Path, args: &[&str]) -> std::process::Output {
    let mut c = Command::new(common::bin());
    c.args(args)
        .current_dir(dir)
        .env("RCLAUDE_HOME", home)
        .env("HOME", user_home)
        .env("CI", "true")
        .env_remove("RCLAUDE_AGENT_BIN")
        .env_remove("RCLAUDE_TOKEN");
    common::git_env(&mut c);
    c.output().unwrap()
}

fn init_repo(dir: &Path, config: &str) {
    std::fs::create_dir_all(dir).unwrap();
    let git = |args: &[&str]| {
        let out = common::git_env(Command::new("git").args(args).current_dir(dir))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    git(&["init", "-q", "-b", "main"]);
    std::fs::write(dir.join(".rclaude.toml"), config).unwrap();
    std::fs::write(dir.join("README"), "private repository content\n").unwrap();
    git(&["add", "-A"]);
    git(&["commit", "-q", "-m", "init"]);
}

#[test]
fn a_bubblewrapped_sandbox_sees_nothing_of_rclaude_other_sandboxes_or_the_users_secrets() {
    let o = Outside::new();
    let rc_home = o.0.join("rclaude-home");
    let user_home = o.0.join("user-home");
    std::fs::create_dir_all(user_home.join(".ssh")).unwrap();
    std::fs::write(user_home.join(".ssh/id_rsa"), "PRIVATE KEY\n").unwrap();
    // The server token as `rclaude login` stores it.
    std::fs::create_dir_all(rc_home.join("config")).unwrap();
    std::fs::write(
        rc_home.join("config/credentials.json"),
        "{\"token\":\"rcl_secret\"}",
    )
    .unwrap();
    let config = "[sandbox]\nprovider = \"local\"\nisolation = \"bwrap\"\n";
    let a = o.0.join("repo-a");
    let b = o.0.join("repo-b");
    init_repo(&a, config);
    init_repo(&b, config);
    for repo in [&a, &b] {
        let out = rclaude(repo, &rc_home, &user_home, &["up", "--quiet"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let sandboxes: Vec<PathBuf> = std::fs::read_dir(rc_home.join("data/sandboxes"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert_eq!(sandboxes.len(), 2);
    let tokens: Vec<PathBuf> = sandboxes.iter().map(|s| s.join("agent.token")).collect();
    let token_text = std::fs::read_to_string(&tokens[0]).unwrap();

    // From inside repository A's sandbox.
    let probe = |path: &Path| -> (bool, String) {
        let out = rclaude(
            &a,
            &rc_home,
            &user_home,
            &[
                "exec",
                "--no-sync",
                "--",
                "cat",
                &path.display().to_string(),
            ],
        );
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    for secret in [
        &tokens[0],
        &tokens[1],
        &rc_home.join("config/credentials.json"),
        &user_home.join(".ssh/id_rsa"),
        &b.join("README"),
    ] {
        let (ok, out) = probe(secret);
        assert!(!ok, "the sandbox read {}: {out}", secret.display());
        assert!(
            !out.contains(token_text.trim()) && !out.contains("PRIVATE"),
            "{out}"
        );
    }
    let ls = rclaude(
        &a,
        &rc_home,
        &user_home,
        &[
            "exec",
            "--no-sync",
            "--",
            "sh",
            "-c",
            &format!("ls {}", rc_home.join("data/sandboxes").display()),
        ],
    );
    let listing = String::from_utf8_lossy(&ls.stdout);
    let other_id = sandboxes
        .iter()
        .map(|s| s.file_name().unwrap().to_string_lossy().into_owned())
        .collect::<Vec<_>>();
    // Its own sandbox directory shows (it is where its root is); the other one does not.
    assert_eq!(
        other_id
            .iter()
            .filter(|id| listing.contains(id.as_str()))
            .count(),
        1,
        "{listing}"
    );

    // The normal workflow still works: system tools, git, writing in the workspace.
    let ok = rclaude(
        &a,
        &rc_home,
        &user_home,
        &[
            "exec",
            "--no-sync",
            "--",
            "sh",
            "-c",
            "git --version >/dev/null && echo made > made.txt && cat made.txt && cat README",
        ],
    );
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&ok.stdout),
        "made\nprivate repository content\n"
    );
    let status = rclaude(&a, &rc_home, &user_home, &["status"]);
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(text.contains("Isolation   bubblewrap"), "{text}");
    for repo in [&a, &b] {
        rclaude(repo, &rc_home, &user_home, &["down", "--yes", "--discard"]);
    }
}

#[test]
fn up_and_status_say_plainly_when_a_sandbox_is_not_isolated() {
    // Configured off.
    let t = TestRepo::new("[sandbox]\nprovider = \"local\"\nisolation = \"none\"\n");
    t.write("README", "x\n");
    t.commit_all("init");
    let up = t.ok(&["up"]);
    assert!(
        up.stderr().contains("NOT isolated") && up.stderr().contains("isolation = \"none\""),
        "{}",
        up.all()
    );
    let st = t.ok(&["status"]);
    assert!(st.stderr().contains("NOT isolated"), "{}", st.all());
    assert!(st.stdout().contains("Isolation   none"), "{}", st.all());

    // Wanted (auto) but bubblewrap is missing: the reason and the fix, every time.
    let bin = tempfile::tempdir().unwrap();
    for e in std::fs::read_dir("/usr/bin").unwrap().flatten() {
        if e.file_name() != "bwrap" {
            let _ = std::os::unix::fs::symlink(e.path(), bin.path().join(e.file_name()));
        }
    }
    let path = format!("/usr/local/bin:{}", bin.path().display());
    let t = TestRepo::new("[sandbox]\nprovider = \"local\"\n");
    t.write("README", "x\n");
    t.commit_all("init");
    for args in [&["up"][..], &["status"][..], &["up"][..]] {
        let out = t.cmd(args).env("PATH", &path).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{err}");
        assert!(
            err.contains("NOT isolated") && err.contains("apt-get install bubblewrap"),
            "{args:?}: {err}"
        );
    }
}
