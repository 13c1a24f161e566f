//! Secrets by phase and redaction, end to end with real local sandboxes: a `setup`-only secret
//! never reaches `exec`, a `run` secret never reaches `[setup]`; a value a task prints (whole,
//! and split across two writes) shows as `***NAME` on the terminal and in CI JSON.

mod common;

use common::TestRepo;

const SETUP_VALUE: &str = "npm-setup-token-5f2c9a";
const API_VALUE: &str = "sk-live-0123456789abcdef";

const CONFIG: &str = r#"[sandbox]
provider = "local"

[secrets]
SETUP_TOKEN = { from_env = "T_SETUP", phase = "setup" }
API_KEY = { from_env = "T_API", phase = "run" }

[setup]
run = 'echo "setup: ${#SETUP_TOKEN} chars, api=${API_KEY:-absent}, token=$SETUP_TOKEN" | tee "$HOME/setup-saw"'

[tasks.leak]
run = 'printf "key=%s\n" "$API_KEY"; printf "split=%s" "${API_KEY%"${API_KEY#??????????}"}"; sleep 0.5; printf "%s\n" "${API_KEY#??????????}"; echo "err=$API_KEY" >&2'
"#;

fn repo() -> TestRepo {
    let t = TestRepo::new(CONFIG);
    t.write("a.txt", "a\n");
    t.commit_all("init");
    t
}

fn with_secrets(t: &TestRepo, args: &[&str]) -> common::Run {
    common::Run(
        t.cmd(args)
            .env("T_SETUP", SETUP_VALUE)
            .env("T_API", API_VALUE)
            .output()
            .unwrap(),
    )
}

#[test]
fn each_secret_reaches_only_its_phase() {
    let t = repo();
    let up = with_secrets(&t, &["up"]);
    assert_eq!(up.code(), 0, "{}", up.all());
    // Setup had its token (redacted where it was echoed) and not the run secret.
    assert!(up.all().contains("token=***SETUP_TOKEN"), "{}", up.all());
    assert!(!up.all().contains(SETUP_VALUE), "{}", up.all());
    let saw = with_secrets(&t, &["exec", "--no-sync", "--", "cat", "/root/setup-saw"]);
    let saw = if saw.code() == 0 {
        saw
    } else {
        with_secrets(
            &t,
            &[
                "exec",
                "--no-sync",
                "--",
                "sh",
                "-c",
                "cat \"$HOME/setup-saw\"",
            ],
        )
    };
    assert!(
        saw.stdout()
            .contains(&format!("setup: {} chars, api=absent", SETUP_VALUE.len())),
        "{}",
        saw.all()
    );
    // exec has the run secret and not the setup one.
    let env = with_secrets(
        &t,
        &[
            "exec",
            "--no-sync",
            "--",
            "sh",
            "-c",
            "echo \"setup=${SETUP_TOKEN:-absent} api=${#API_KEY}\"",
        ],
    );
    assert_eq!(env.code(), 0, "{}", env.all());
    assert_eq!(
        env.stdout(),
        format!("setup=absent api={}\n", API_VALUE.len())
    );
    // A required run secret missing from the environment is an error naming it.
    let missing = t.rclaude(&["exec", "--no-sync", "--", "true"]);
    assert_eq!(missing.code(), 78, "{}", missing.all());
    assert!(
        missing.stderr().contains("API_KEY") && missing.stderr().contains("T_API"),
        "{}",
        missing.all()
    );
}

#[test]
fn a_printed_secret_is_redacted_on_the_terminal_and_in_ci_json() {
    let t = repo();
    assert_eq!(with_secrets(&t, &["up", "--quiet"]).code(), 0);
    let run = with_secrets(&t, &["run", "leak"]);
    assert_eq!(run.code(), 0, "{}", run.all());
    assert!(!run.all().contains(API_VALUE), "{}", run.all());
    // Not even its halves (the split write) get through.
    assert!(!run.all().contains(&API_VALUE[..10]), "{}", run.all());
    assert!(!run.all().contains(&API_VALUE[10..]), "{}", run.all());
    assert!(run.stdout().contains("key=***API_KEY\n"), "{}", run.all());
    assert!(run.stdout().contains("split=***API_KEY\n"), "{}", run.all());
    assert!(run.stderr().contains("err=***API_KEY"), "{}", run.all());

    let ci = with_secrets(&t, &["ci", "leak", "--json"]);
    assert_eq!(ci.code(), 0, "{}", ci.all());
    assert!(!ci.all().contains(API_VALUE), "{}", ci.all());
    let summary: serde_json::Value = serde_json::from_str(&ci.stdout()).unwrap();
    let tail = summary["tasks"][0]["log_tail"].as_str().unwrap_or_default();
    // stdout and stderr interleave in the tail; each of the three values is there, redacted.
    assert_eq!(tail.matches("***API_KEY").count(), 3, "{summary}");
    assert!(
        !tail.contains(&API_VALUE[..10]) && !tail.contains(&API_VALUE[10..]),
        "{summary}"
    );
}
