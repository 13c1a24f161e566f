//! Snapshot tests of what people read: every command's `--help`, and the errors of common
//! mistakes. A change to any of them shows up as a diff of `tests/snapshots/` in review
//! (`INSTA_UPDATE=always cargo test --test cli_snapshots` rewrites them; CI never does).

mod common;

use std::process::Command;

use common::TestRepo;

/// Every subcommand, as `rclaude --help` lists them.
fn subcommands() -> Vec<String> {
    let out = help(&[]);
    let mut in_list = false;
    let mut names = Vec::new();
    for line in out.lines() {
        if line == "Commands:" {
            in_list = true;
        } else if in_list && !line.starts_with("  ") {
            break;
        } else if in_list
            && !line.starts_with("   ")
            && let Some(name) = line.split_whitespace().next()
            && name != "help"
        {
            names.push(name.to_string());
        }
    }
    names
}

fn help(args: &[&str]) -> String {
    let out = Command::new(common::bin())
        .args(args)
        .arg("--help")
        .env("COLUMNS", "100")
        .env("NO_COLOR", "1")
        // clap shows the values of `env` options in help.
        .env_remove("RCLAUDE_SERVER")
        .output()
        .unwrap();
    assert!(out.status.success(), "{args:?}");
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn help_of_every_command() {
    insta::assert_snapshot!("help", help(&[]));
    let commands = subcommands();
    assert!(commands.len() > 20, "{commands:?}");
    for c in &commands {
        insta::assert_snapshot!(format!("help_{c}"), help(&[c]));
    }
}

/// stderr and exit code, with this test's temporary paths replaced by `[DIR]`.
fn error_of(t: Option<&TestRepo>, dir: &std::path::Path, args: &[&str]) -> String {
    let mut cmd = match t {
        Some(t) => t.cmd(args),
        None => {
            let mut c = Command::new(common::bin());
            c.args(args).current_dir(dir).env("NO_COLOR", "1");
            c
        }
    };
    let out = cmd.env("COLUMNS", "100").output().unwrap();
    let text = String::from_utf8_lossy(&out.stderr).replace(&dir.display().to_string(), "[DIR]");
    format!("exit {}\n{text}", out.status.code().unwrap_or(-1))
}

#[test]
fn errors_of_common_mistakes() {
    let outside = tempfile::tempdir().unwrap();
    let dir = outside.path().canonicalize().unwrap();
    insta::assert_snapshot!("error_not_a_repository", error_of(None, &dir, &["status"]));
    insta::assert_snapshot!(
        "error_unknown_command",
        error_of(None, &dir, &["frobnicate"])
    );

    let t = TestRepo::new("[tasks.t]\nrun = 1\n");
    let root = t.path().canonicalize().unwrap();
    insta::assert_snapshot!(
        "error_config_type",
        error_of(Some(&t), &root, &["run", "t"])
    );
    t.write(
        ".rclaude.toml",
        "[tasks.a]\nrun = \"true\"\ndepends = [\"b\"]\n",
    );
    insta::assert_snapshot!(
        "error_unknown_dependency",
        error_of(Some(&t), &root, &["run", "a"])
    );
    t.write(".rclaude.toml", "[tasks.a]\nrun = \"true\"\n");
    insta::assert_snapshot!(
        "error_unknown_task",
        error_of(Some(&t), &root, &["run", "nope"])
    );
    insta::assert_snapshot!("error_no_session", error_of(Some(&t), &root, &["pull"]));
    insta::assert_snapshot!(
        "error_bad_env_pair",
        error_of(Some(&t), &root, &["exec", "--env", "1A=x", "--", "true"])
    );
}
