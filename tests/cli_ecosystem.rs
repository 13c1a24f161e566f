//! Fitting the ecosystem: the completion script registered in a real bash completes commands
//! and the task names of the repository it runs in; man pages are generated for every command;
//! output to a closed pipe ends quietly; `init --from-devcontainer` converts a real
//! devcontainer.json (JSONC) and rejects one that is not JSON.

mod common;

use std::process::{Command, Stdio};

use common::TestRepo;

/// Complete `line` (ending at the cursor) in a real bash that sourced `rclaude completions bash`.
fn bash_complete(repo: &TestRepo, line: &str) -> Vec<String> {
    let bin_dir = std::path::Path::new(common::bin()).parent().unwrap();
    let path = format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap());
    let words: Vec<&str> = line.split(' ').collect();
    let script = format!(
        "source <(rclaude completions bash) || exit 9\n\
         COMP_WORDS=({words})\n\
         COMP_CWORD={cword}\n\
         COMP_LINE='{line}'\n\
         COMP_POINT=${{#COMP_LINE}}\n\
         COMP_TYPE=9\n\
         _clap_complete_rclaude rclaude '{last}' '{prev}'\n\
         printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        words = words
            .iter()
            .map(|w| format!("'{w}'"))
            .collect::<Vec<_>>()
            .join(" "),
        cword = words.len() - 1,
        last = words[words.len() - 1],
        prev = words[words.len() - 2],
    );
    let out = Command::new("bash")
        .arg("-c")
        .arg(script)
        .current_dir(repo.path())
        .env("PATH", path)
        .env("RCLAUDE_HOME", repo.home.path())
        .output()
        .expect("run bash");
    assert!(
        out.status.success(),
        "bash completion failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect()
}

#[test]
fn bash_completes_subcommands_and_this_repositorys_task_names() {
    let repo = TestRepo::new(
        "[tasks.build]\nrun = \"make\"\ndescription = \"Build it\"\n\
         [tasks.bench]\nrun = \"make bench\"\n[tasks.test]\nrun = \"make test\"\n",
    );
    let subcommands = bash_complete(&repo, "rclaude pu");
    assert_eq!(subcommands, vec!["pull"], "{subcommands:?}");
    let mut tasks = bash_complete(&repo, "rclaude run b");
    tasks.sort();
    assert_eq!(tasks, vec!["bench", "build"]);
    let ci = bash_complete(&repo, "rclaude ci t");
    assert_eq!(ci, vec!["test"]);
    // Another repository, other tasks: names are read at Tab time, not install time.
    repo.write(".rclaude.toml", "[tasks.lint]\nrun = \"make lint\"\n");
    let names: Vec<String> = bash_complete(&repo, "rclaude run ")
        .into_iter()
        .filter(|c| !c.starts_with('-'))
        .collect();
    assert_eq!(names, vec!["lint"]);
}

#[test]
fn bash_completes_this_repositorys_session_names() {
    let repo = TestRepo::new("[sandbox]\nprovider = \"local\"\n");
    repo.write("a.txt", "a\n");
    repo.commit_all("init");
    assert!(bash_complete(&repo, "rclaude exec -s ").is_empty());
    repo.ok(&["up", "--quiet", "-s", "alpha"]);
    repo.ok(&["up", "--quiet", "-s", "beta"]);
    let mut all = bash_complete(&repo, "rclaude exec -s ");
    all.sort();
    assert_eq!(all, vec!["alpha", "beta"]);
    assert_eq!(
        bash_complete(&repo, "rclaude pull --session b"),
        vec!["beta"]
    );
    for s in ["alpha", "beta"] {
        repo.ok(&["down", "--yes", "--discard", "-s", s]);
    }
    assert!(bash_complete(&repo, "rclaude exec -s ").is_empty());
}

#[test]
fn every_shell_gets_a_script_and_an_unknown_one_is_a_usage_error() {
    let repo = TestRepo::new("");
    for shell in ["bash", "zsh", "fish", "powershell", "elvish"] {
        let out = repo.ok(&["completions", shell]);
        assert!(
            out.stdout().contains("RCLAUDE_COMPLETE"),
            "{shell}: {}",
            out.stdout()
        );
    }
    let bad = repo.rclaude(&["completions", "nushell"]);
    assert_eq!(bad.code(), 64, "{}", bad.all());
    assert!(bad.stderr().contains("possible values"), "{}", bad.all());
}

#[test]
fn man_pages_cover_every_command() {
    let repo = TestRepo::new("");
    let page = repo.ok(&["man"]).stdout();
    assert!(page.contains(".TH rclaude 1"), "{page}");
    for sub in ["up", "pull", "exec", "claude", "completions"] {
        assert!(page.contains(&format!("rclaude\\-{sub}")), "{sub} missing");
    }
    let dir = repo.home.path().join("man1");
    repo.ok(&["man", "--dir", dir.to_str().unwrap()]);
    let up = std::fs::read_to_string(dir.join("rclaude-up.1")).expect("rclaude-up.1");
    assert!(up.contains("\\-\\-no\\-setup"), "{up}");
}

#[test]
fn output_into_a_closed_pipe_ends_quietly() {
    let repo = TestRepo::new("");
    for args in [&["schema"][..], &["man"][..], &["completions", "zsh"][..]] {
        let mut child = repo
            .cmd(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take()); // the reader goes away before anything is written
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
}

#[test]
fn init_from_devcontainer_writes_a_config_that_up_accepts_and_lists_the_rest() {
    let repo = TestRepo::new("");
    std::fs::remove_file(repo.path().join(".rclaude.toml")).unwrap();
    repo.write(
        ".devcontainer/devcontainer.json",
        r#"{
  // comments and trailing commas are part of the format
  "name": "demo",
  "postCreateCommand": "echo created > created.txt",
  "postStartCommand": ["sh", "-c", "echo started > started.txt"],
  "containerEnv": { "GREETING": "hello", "API_KEY": "${localEnv:DEMO_API_KEY}" },
  "forwardPorts": [8080],
}"#,
    );
    let out = repo.ok(&["init", "--from-devcontainer"]);
    assert!(
        out.stderr().contains("forwardPorts"),
        "unmapped keys not listed: {}",
        out.all()
    );
    let toml = repo.read(".rclaude.toml");
    assert!(toml.contains("API_KEY = \"DEMO_API_KEY\""), "{toml}");
    repo.write("README", "x\n");
    repo.commit_all("init");
    // The converted commands really run: setup and start on up, env in exec.
    let mut up = repo.cmd(&["up"]);
    up.env("DEMO_API_KEY", "k");
    let up = up.output().unwrap();
    assert!(
        up.status.success(),
        "{}",
        String::from_utf8_lossy(&up.stderr)
    );
    let mut exec = repo.cmd(&[
        "exec",
        "--",
        "sh",
        "-c",
        "cat created.txt started.txt; echo $GREETING",
    ]);
    exec.env("DEMO_API_KEY", "k");
    let exec = exec.output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&exec.stdout),
        "created\nstarted\nhello\n"
    );
    // Never overwritten without --force; not JSON is a located config error (exit 78).
    let again = repo.rclaude(&["init", "--from-devcontainer"]);
    assert_eq!(again.code(), 78, "{}", again.all());
    repo.write(".devcontainer/broken.json", "{ \"image\": }");
    let bad = repo.rclaude(&[
        "init",
        "--force",
        "--from-devcontainer",
        ".devcontainer/broken.json",
    ]);
    assert_eq!(bad.code(), 78, "{}", bad.all());
    assert!(bad.stderr().contains("broken.json:1:"), "{}", bad.all());
}
