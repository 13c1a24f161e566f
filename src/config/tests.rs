//! Loading, error locations and messages, plans, hashes and secrets.
//!
//! Length: test cases only, one per rule of the file format.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use super::*;

const FILE: &str = ".rclaude.toml";

fn parse(text: &str) -> Config {
    Config::parse(text, Path::new(FILE)).unwrap_or_else(|e| panic!("{e}"))
}

fn err(text: &str) -> ConfigError {
    match Config::parse(text, Path::new(FILE)) {
        Ok(_) => panic!("expected an error for:\n{text}"),
        Err(e) => e,
    }
}

/// 1-based (line, column) of the first occurrence of `needle` in `text`.
fn pos(text: &str, needle: &str) -> (usize, usize) {
    let at = text
        .find(needle)
        .unwrap_or_else(|| panic!("{needle:?} not in text"));
    let line = text[..at].matches('\n').count() + 1;
    let col = text[..at].rsplit('\n').next().unwrap().chars().count() + 1;
    (line, col)
}

/// Check an error's location (the first occurrence of `at`), key path, kind and message.
#[track_caller]
fn check(text: &str, at: &str, key: &str, kind: ErrorKind, message: &str) {
    let e = err(text);
    let (line, col) = pos(text, at);
    let d = e.diagnostic().unwrap_or_else(|| panic!("not located: {e}"));
    assert_eq!(
        (d.line, d.column, d.key_path.as_str(), d.kind),
        (line, col, key, kind),
        "\n{e}"
    );
    assert!(
        d.message.contains(message),
        "message {:?} lacks {message:?}",
        d.message
    );
    let first = e.to_string().lines().next().unwrap().to_string();
    let expected = if key.is_empty() {
        format!("{FILE}:{line}:{col}: error: ")
    } else {
        format!("{FILE}:{line}:{col}: error in {key}: ")
    };
    assert!(first.starts_with(&expected), "{first}");
    assert_eq!(e.line(), Some(line));
    assert_eq!(e.column(), Some(col));
    assert_eq!(e.path(), Some(Path::new(FILE)));
    assert_eq!(e.key_path(), (!key.is_empty()).then_some(key));
}

const DESIGN_EXAMPLE: &str = r#"
[sandbox]
provider = "local"          # local | e2b | daytona | northflank
image = "base"              # E2B template / image name
cpu = 2
memory_mb = 4096
timeout = "1h"              # idle lifetime before auto-pause
auto_pause = true
workdir = "/home/user/repo"

[env]                       # plain values, committed
RUST_LOG = "info"
[secrets]                   # names only: values come from the local environment at `up`
ANTHROPIC_API_KEY = { from_env = "ANTHROPIC_API_KEY" }

[setup]                     # once per sandbox; re-run when these lines change (hash kept in sandbox)
run = ["npm i -g @anthropic-ai/claude-code", "cargo fetch"]
[start]                     # every up/resume
run = ["git config --global user.email rclaude@localhost"]

[sync]
ignore = ["target/", "node_modules/"]   # on top of .gitignore
watch = true

[tasks.build]
run = "cargo build"
[tasks.test]
run = "cargo test"
depends = ["build"]

[hooks]
pre-push = ["test"]         # `rclaude hooks install` wires these
"#;

#[test]
fn the_design_example_parses() {
    let c = parse(DESIGN_EXAMPLE);
    assert_eq!(c.sandbox.provider, ProviderKind::Local);
    assert_eq!(c.sandbox.image.as_deref(), Some("base"));
    assert_eq!((c.sandbox.cpu, c.sandbox.memory_mb), (Some(2), Some(4096)));
    assert_eq!(c.sandbox.timeout.0, Duration::from_secs(3600));
    assert_eq!(c.env["RUST_LOG"], "info");
    assert_eq!(
        c.secrets["ANTHROPIC_API_KEY"],
        SecretSpec {
            from_env: "ANTHROPIC_API_KEY".into(),
            required: true,
            phase: SecretPhase::All,
        }
    );
    assert_eq!(
        c.setup.run.lines(),
        ["npm i -g @anthropic-ai/claude-code", "cargo fetch"]
    );
    assert_eq!(c.start.run.lines().len(), 1);
    assert_eq!(c.sync.ignore, ["target/", "node_modules/"]);
    assert!(c.sync.watch);
    assert_eq!(
        c.tasks["build"].run,
        StringOrList::One("cargo build".into())
    );
    assert_eq!(c.tasks["test"].depends[0].get_ref(), "build");
    assert_eq!(c.hooks["pre-push"][0].get_ref(), "test");
    assert_eq!(c.task_plan("test").unwrap(), ["build", "test"]);
}

#[test]
fn an_empty_file_gives_the_defaults() {
    let c = parse("");
    assert_eq!(c.sandbox.provider, ProviderKind::Local);
    assert_eq!(c.sandbox.timeout, HumanDuration::from_secs(3600));
    assert!(c.sandbox.auto_pause);
    assert_eq!(c.sandbox.workdir, "/home/user/repo");
    assert_eq!(c.sync.max_delete_percent, 50);
    assert_eq!(c.sync.pull_branch, "rclaude/{branch}");
    assert_eq!(c.claude.permission_mode, "bypassPermissions");
    assert!(c.tasks.is_empty() && c.setup.run.lines().is_empty());
}

#[test]
fn value_forms() {
    let c = parse(
        r#"
[sandbox]
provider = "northflank"
isolation = "bwrap"
timeout = "90"
[secrets]
A = "LOCAL_A"
B = { from_env = "LOCAL_B", required = false }
C = { from_env = "LOCAL_C", required = true }
[tasks.t]
run = ["a", "b"]
timeout = "1m30s"
cwd = "crates/core"
env = { X_1 = "y" }
[sync]
max_delete_percent = 100
pull_branch = "rclaude/{session}/{branch}"
"#,
    );
    assert_eq!(c.sandbox.provider, ProviderKind::Northflank);
    assert_eq!(c.sandbox.project, None); // may come from NORTHFLANK_PROJECT_ID
    assert_eq!(c.sandbox.isolation, Isolation::Bwrap);
    assert_eq!(c.sandbox.timeout, HumanDuration::from_secs(90));
    assert_eq!(c.secrets["A"].from_env, "LOCAL_A");
    assert!(c.secrets["A"].required);
    assert!(!c.secrets["B"].required);
    assert!(c.secrets["C"].required);
    assert_eq!(c.tasks["t"].run.lines(), ["a", "b"]);
    assert_eq!(c.tasks["t"].timeout, Some(HumanDuration::from_secs(90)));
    assert_eq!(c.sync.max_delete_percent, 100);
}

#[test]
fn the_briefs_example_messages() {
    let text = "[tasks.build]\nrun = \"b\"\n[tasks.lint]\nrun = \"l\"\n[tasks.test]\nrun = \"t\"\ndepends = [\"biuld\"]\n";
    let e = err(text);
    assert_eq!(
        e.to_string().lines().next().unwrap(),
        ".rclaude.toml:7:12: error in tasks.test.depends[0]: task \"biuld\" does not exist (defined tasks: build, lint, test)"
    );
    let e = err("[sandbox]\nimage = \"x\"\ncolour = \"red\"\n");
    assert_eq!(
        e.to_string().lines().next().unwrap(),
        ".rclaude.toml:3:1: error in sandbox.colour: unknown key; valid keys: provider, image, cpu, memory_mb, timeout, auto_pause, idle_pause, workdir, isolation, expose, project, managed"
    );
    let e = err("[sandbox]\nidle_pause = \"10s\"\n");
    assert!(
        e.to_string()
            .contains("sandbox.idle_pause: must be between 1m and 7d"),
        "{e}"
    );
    let e = err("[sandbox]\nprovider = \"e2b\"\ncpu = 2\ntimeout = \"5 parsecs\"\n");
    assert_eq!(
        e.to_string().lines().next().unwrap(),
        ".rclaude.toml:4:11: error in sandbox.timeout: invalid duration \"5 parsecs\": use a number with a unit, e.g. \"90s\", \"15m\", \"1h30m\""
    );
    // The excerpt follows, with a caret under the value.
    assert_eq!(
        e.to_string().lines().skip(1).collect::<Vec<_>>(),
        [
            "  |",
            "4 | timeout = \"5 parsecs\"",
            "  |           ^^^^^^^^^^^"
        ]
    );
    let e = err(
        "[tasks.a]\nrun = \"x\"\ndepends = [\"b\"]\n[tasks.b]\nrun = \"y\"\ndepends = [\"a\"]\n",
    );
    assert_eq!(
        e.to_string().lines().next().unwrap(),
        ".rclaude.toml:3:12: error in tasks.a.depends[0]: dependency cycle a -> b -> a"
    );
}

#[test]
fn syntax_errors() {
    check("[sandbox\n", "\n", "", ErrorKind::Syntax, "invalid TOML");
    check(
        "a = 1\na = 2\n",
        "a = 2",
        "",
        ErrorKind::Syntax,
        "duplicate key",
    );
    let e = err("[tasks.x]\nrun = \"unterminated\n");
    assert_eq!(
        (e.line(), e.column(), e.kind()),
        (Some(2), Some(20), Some(ErrorKind::Syntax))
    );
    assert!(e.to_string().contains("invalid basic string"), "{e}");
}

#[test]
fn unknown_keys_name_the_key_and_list_valid_ones() {
    check(
        "colour = 1\n",
        "colour",
        "colour",
        ErrorKind::UnknownKey,
        "valid keys: sandbox, env, secrets, setup, start, sync, tasks, hooks, claude",
    );
    check(
        "[sandbox]\ntimout = \"1h\"\n",
        "timout",
        "sandbox.timout",
        ErrorKind::UnknownKey,
        "(did you mean `timeout`?)",
    );
    check(
        "[tasks.t]\nrun = \"x\"\ndepend = [\"y\"]\n",
        "depend ",
        "tasks.t.depend",
        ErrorKind::UnknownKey,
        "valid keys: run, description, depends, env, cwd, timeout",
    );
    check(
        "[sync]\nwatch = true\nignored = []\n",
        "ignored",
        "sync.ignored",
        ErrorKind::UnknownKey,
        "valid keys: ignore, watch",
    );
    check(
        "[setup]\ncmd = \"x\"\n",
        "cmd",
        "setup.cmd",
        ErrorKind::UnknownKey,
        "valid keys: run",
    );
    check(
        "[claude]\nmodel = \"m\"\nmodle = \"m\"\n",
        "modle",
        "claude.modle",
        ErrorKind::UnknownKey,
        "valid keys: version, permission_mode, model, args",
    );
    check(
        "[secrets]\nA = { from_env = \"X\", optional = true }\n",
        "optional",
        "secrets.A.optional",
        ErrorKind::UnknownKey,
        "valid keys: from_env, required",
    );
    // Dotted keys point at the unknown part.
    check(
        "sandbox.colour = 1\n",
        "colour",
        "sandbox.colour",
        ErrorKind::UnknownKey,
        "valid keys",
    );
}

#[test]
fn wrong_types_say_expected_and_found() {
    check(
        "[sandbox]\ncpu = \"two\"\n",
        "\"two\"",
        "sandbox.cpu",
        ErrorKind::WrongType,
        "expected an integer from 0 to 4294967295, found string \"two\"",
    );
    check(
        "[sandbox]\nauto_pause = \"yes\"\n",
        "\"yes\"",
        "sandbox.auto_pause",
        ErrorKind::WrongType,
        "expected a boolean, found string \"yes\"",
    );
    check(
        "[sandbox]\nprovider = 5\n",
        "5",
        "sandbox.provider",
        ErrorKind::WrongType,
        "expected one of \"local\", \"e2b\", \"daytona\", \"northflank\", found integer 5",
    );
    check(
        "[sandbox]\ntimeout = 30\n",
        "30",
        "sandbox.timeout",
        ErrorKind::WrongType,
        "expected a duration string such as \"90s\"",
    );
    check(
        "[sandbox]\ntimeout = 1979-05-27\n",
        "1979",
        "sandbox.timeout",
        ErrorKind::WrongType,
        "found datetime 1979-05-27",
    );
    check(
        "sandbox = 5\n",
        "5",
        "sandbox",
        ErrorKind::WrongType,
        "expected a table, found integer 5",
    );
    check(
        "[env]\nA = 1\n",
        "1",
        "env.A",
        ErrorKind::WrongType,
        "expected a string, found integer 1",
    );
    check(
        "[tasks.t]\nrun = 5\n",
        "5",
        "tasks.t.run",
        ErrorKind::WrongType,
        "expected a command string or an array of command strings, found integer 5",
    );
    check(
        "[tasks.t]\nrun = [\"a\", true]\n",
        "true",
        "tasks.t.run[1]",
        ErrorKind::WrongType,
        "expected a command string, found boolean true",
    );
    check(
        "[tasks.t]\nrun = \"x\"\ndepends = \"y\"\n",
        "\"y\"",
        "tasks.t.depends",
        ErrorKind::WrongType,
        "expected an array, found string \"y\"",
    );
    check(
        "[tasks.t]\nrun = \"x\"\ndepends = [5]\n",
        "5",
        "tasks.t.depends[0]",
        ErrorKind::WrongType,
        "expected a string, found integer 5",
    );
    check(
        "[secrets]\nA = 5\n",
        "5",
        "secrets.A",
        ErrorKind::WrongType,
        "expected a local environment variable name",
    );
    check(
        "[secrets]\nA = { from_env = \"X\", required = \"no\" }\n",
        "\"no\"",
        "secrets.A.required",
        ErrorKind::WrongType,
        "expected a boolean",
    );
    check(
        "[hooks]\npre-push = \"test\"\n",
        "\"test\"",
        "hooks.pre-push",
        ErrorKind::WrongType,
        "expected an array",
    );
    check(
        "[sync]\nignore = [1]\n",
        "1]",
        "sync.ignore[0]",
        ErrorKind::WrongType,
        "expected a string, found integer 1",
    );
}

#[test]
fn missing_keys_point_at_their_table() {
    check(
        "[tasks.test]\ndescription = \"d\"\n",
        "test",
        "tasks.test",
        ErrorKind::MissingKey,
        "missing required key `run`",
    );
    check(
        "[tasks]\nlint = { description = \"d\" }\n",
        "lint",
        "tasks.lint",
        ErrorKind::MissingKey,
        "missing required key `run`",
    );
    check(
        "[secrets]\nA = { required = false }\n",
        "A",
        "secrets.A",
        ErrorKind::MissingKey,
        "missing required key `from_env`",
    );
}

#[test]
fn invalid_values() {
    check(
        "[sandbox]\nprovider = \"aws\"\n",
        "\"aws\"",
        "sandbox.provider",
        ErrorKind::InvalidValue,
        "unknown value \"aws\"; valid values: local, e2b, daytona, northflank",
    );
    check(
        "[sandbox]\nprovider = \"e2 b\"\n",
        "\"e2 b\"",
        "sandbox.provider",
        ErrorKind::InvalidValue,
        "(did you mean \"e2b\"?)",
    );
    check(
        "[sandbox]\nisolation = \"docker\"\n",
        "\"docker\"",
        "sandbox.isolation",
        ErrorKind::InvalidValue,
        "valid values: auto, bwrap, none",
    );
    check(
        "[sandbox]\nexpose = [\"~/.nvm\", \"toolchains/go\"]\n",
        "\"toolchains/go\"",
        "sandbox.expose[1]",
        ErrorKind::InvalidValue,
        "use an absolute path or one under your home directory",
    );
    check(
        "[sandbox]\nexpose = [\"/opt/../root\"]\n",
        "\"/opt/../root\"",
        "sandbox.expose[0]",
        ErrorKind::InvalidValue,
        "without `..`",
    );
    check(
        "[sandbox]\ncpu = -1\n",
        "-1",
        "sandbox.cpu",
        ErrorKind::InvalidValue,
        "integer -1",
    );
    check(
        "[sandbox]\ncpu = 0\n",
        "0",
        "sandbox.cpu",
        ErrorKind::InvalidValue,
        "at least 1",
    );
    check(
        "[sandbox]\nmemory_mb = 0\n",
        "0",
        "sandbox.memory_mb",
        ErrorKind::InvalidValue,
        "at least 1",
    );
    check(
        "[sandbox]\ntimeout = \"0s\"\n",
        "\"0s\"",
        "sandbox.timeout",
        ErrorKind::InvalidValue,
        "greater than zero",
    );
    check(
        "[sandbox]\ntimeout = \"30m1h\"\n",
        "\"30m",
        "sandbox.timeout",
        ErrorKind::InvalidValue,
        "largest to the smallest",
    );
    check(
        "[sandbox]\nworkdir = \"repo\"\n",
        "\"repo\"",
        "sandbox.workdir",
        ErrorKind::InvalidValue,
        "absolute path",
    );
    check(
        "[sandbox]\nworkdir = \"/home/../etc\"\n",
        "\"/home",
        "sandbox.workdir",
        ErrorKind::InvalidValue,
        "without `..`",
    );
    check(
        "[sandbox]\nimage = \" \"\n",
        "\" \"",
        "sandbox.image",
        ErrorKind::InvalidValue,
        "empty",
    );
    check(
        "[sync]\nmax_delete_percent = 0\n",
        "0",
        "sync.max_delete_percent",
        ErrorKind::InvalidValue,
        "0 is out of range: use a percentage from 1 to 100",
    );
    check(
        "[sync]\nmax_delete_percent = 300\n",
        "300",
        "sync.max_delete_percent",
        ErrorKind::InvalidValue,
        "300 is out of range",
    );
    check(
        "[sync]\nmax_delete_percent = \"50%\"\n",
        "\"50%\"",
        "sync.max_delete_percent",
        ErrorKind::WrongType,
        "expected a percentage from 1 to 100",
    );
    check(
        "[sync]\npull_branch = \"rclaude/{user}\"\n",
        "\"rclaude",
        "sync.pull_branch",
        ErrorKind::InvalidValue,
        "placeholders are {branch} and {session}",
    );
    check(
        "[sync]\npull_branch = \"a..b\"\n",
        "\"a..b\"",
        "sync.pull_branch",
        ErrorKind::InvalidValue,
        "not a valid git branch name",
    );
    check(
        "[sync]\nignore = [\"ok/\", \"  \"]\n",
        "\"  \"",
        "sync.ignore[1]",
        ErrorKind::InvalidValue,
        "invalid ignore pattern",
    );
    check(
        "[sync]\nignore = [\"a{b\"]\n",
        "\"a{b\"",
        "sync.ignore[0]",
        ErrorKind::InvalidValue,
        "unclosed alternate group",
    );
}

#[test]
fn names_and_paths() {
    check(
        "[env]\n\"A-B\" = \"x\"\n",
        "\"A-B\"",
        "env.A-B",
        ErrorKind::InvalidValue,
        "invalid environment variable name \"A-B\"",
    );
    check(
        "[secrets]\n\"9A\" = \"X\"\n",
        "\"9A\"",
        "secrets.9A",
        ErrorKind::InvalidValue,
        "not starting with a digit",
    );
    check(
        "[secrets]\nA = \"not a var\"\n",
        "\"not",
        "secrets.A",
        ErrorKind::InvalidValue,
        "invalid local variable",
    );
    check(
        "[secrets]\nA = { from_env = \"not a var\" }\n",
        "\"not",
        "secrets.A.from_env",
        ErrorKind::InvalidValue,
        "invalid local variable",
    );
    check(
        "[env]\nTOKEN = \"x\"\n[secrets]\nTOKEN = \"T\"\n",
        "TOKEN = \"T",
        "secrets.TOKEN",
        ErrorKind::InvalidValue,
        "also set in [env]",
    );
    check(
        "[tasks.\"a b\"]\nrun = \"x\"\n",
        "\"a b\"",
        "tasks.\"a b\"",
        ErrorKind::InvalidValue,
        "invalid task name \"a b\"",
    );
    check(
        "[tasks.t]\nrun = \"x\"\nenv = { \"B-C\" = \"1\" }\n",
        "\"B-C\"",
        "tasks.t.env.B-C",
        ErrorKind::InvalidValue,
        "invalid environment variable name",
    );
    for cwd in ["/abs", "../up", "a/../../b", ""] {
        let text = format!("[tasks.t]\nrun = \"x\"\ncwd = \"{cwd}\"\n");
        check(
            &text,
            &format!("\"{cwd}\""),
            "tasks.t.cwd",
            ErrorKind::InvalidValue,
            "relative to the repository root",
        );
    }
    parse("[tasks.t]\nrun = \"x\"\ncwd = \".\"\n[tasks.u]\nrun = \"x\"\ncwd = \"a/b\"\n");
}

#[test]
fn commands() {
    check(
        "[tasks.t]\nrun = \"\"\n",
        "\"\"",
        "tasks.t.run",
        ErrorKind::InvalidValue,
        "empty command",
    );
    check(
        "[tasks.t]\nrun = []\n",
        "[]",
        "tasks.t.run",
        ErrorKind::InvalidValue,
        "at least one command",
    );
    check(
        "[tasks.t]\nrun = [\"a\", \" \"]\n",
        "\" \"",
        "tasks.t.run[1]",
        ErrorKind::InvalidValue,
        "empty command",
    );
    check(
        "[setup]\nrun = [\"\"]\n",
        "\"\"",
        "setup.run[0]",
        ErrorKind::InvalidValue,
        "empty command",
    );
    parse("[setup]\nrun = []\n[start]\nrun = []\n");
    check(
        "[tasks.t]\nrun = \"x\"\ntimeout = \"0ms\"\n",
        "\"0ms\"",
        "tasks.t.timeout",
        ErrorKind::InvalidValue,
        "greater than zero",
    );
    check(
        "[tasks.t]\nrun = \"x\"\ntimeout = \"soon\"\n",
        "\"soon\"",
        "tasks.t.timeout",
        ErrorKind::InvalidValue,
        "invalid duration \"soon\"",
    );
}

#[test]
fn task_references_and_cycles() {
    check(
        "[tasks.t]\nrun = \"x\"\ndepends = [\"t2\", \"nope\"]\n[tasks.t2]\nrun = \"y\"\n",
        "\"nope\"",
        "tasks.t.depends[1]",
        ErrorKind::UnknownTask,
        "task \"nope\" does not exist (defined tasks: t, t2)",
    );
    check(
        "[tasks.t]\nrun = \"x\"\ndepends = [\"t\"]\n",
        "\"t\"]",
        "tasks.t.depends[0]",
        ErrorKind::DependencyCycle,
        "dependency cycle t -> t",
    );
    let text = "[tasks.a]\nrun = \"x\"\ndepends = [\"c\", \"b\"]\n[tasks.b]\nrun = \"x\"\ndepends = [\"c\"]\n[tasks.c]\nrun = \"x\"\ndepends = [\"a\"]\n";
    check(
        text,
        "\"c\", ",
        "tasks.a.depends[0]",
        ErrorKind::DependencyCycle,
        "dependency cycle a -> c -> a",
    );
    check(
        "[hooks]\npre-push = [\"test\"]\n",
        "\"test\"",
        "hooks.pre-push[0]",
        ErrorKind::UnknownTask,
        "task \"test\" does not exist (no tasks are defined)",
    );
    check(
        "[tasks.test]\nrun = \"x\"\n[hooks]\npre-comit = [\"test\"]\n",
        "pre-comit",
        "hooks.pre-comit",
        ErrorKind::UnknownHook,
        "valid hooks: pre-commit, prepare-commit-msg, commit-msg, post-commit, pre-rebase, post-checkout, post-merge, pre-push, pre-merge-commit, post-rewrite, pre-auto-gc (did you mean \"pre-commit\"?)",
    );
}

#[test]
fn the_earliest_problem_is_reported() {
    let text = "[tasks.z]\nrun = \"x\"\ndepends = [\"missing\"]\n[sandbox]\nworkdir = \"rel\"\n";
    check(
        text,
        "\"missing\"",
        "tasks.z.depends[0]",
        ErrorKind::UnknownTask,
        "missing",
    );
    let text = "[sandbox]\nworkdir = \"rel\"\n[tasks.z]\nrun = \"x\"\ndepends = [\"missing\"]\n";
    check(
        text,
        "\"rel\"",
        "sandbox.workdir",
        ErrorKind::InvalidValue,
        "absolute",
    );
}

#[test]
fn crlf_files_locate_errors_too() {
    let text = "[sandbox]\r\ntimeout = \"x\"\r\n";
    let e = err(text);
    assert_eq!((e.line(), e.column()), (Some(2), Some(11)));
    assert!(!e.to_string().contains('\r'));
}

#[test]
fn diagnostics_serialize_for_json_output() {
    let e = err("[sandbox]\ncolour = 1\n");
    let v = serde_json::to_value(e.diagnostic().unwrap()).unwrap();
    assert_eq!(v["kind"], "unknown_key");
    assert_eq!(v["key_path"], "sandbox.colour");
    assert_eq!(
        (v["line"].as_u64(), v["column"].as_u64()),
        (Some(2), Some(1))
    );
    assert_eq!(v["path"], FILE);
}

#[test]
fn load_reads_files_and_explains_a_missing_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(CONFIG_FILE);
    let e = Config::load(&path).unwrap_err();
    assert!(matches!(e, ConfigError::NotFound { .. }));
    assert!(e.to_string().contains("run `rclaude init`"), "{e}");
    std::fs::write(&path, "[tasks.t]\nrun = \"true\"\n").unwrap();
    assert_eq!(Config::load(&path).unwrap().task_plan("t").unwrap(), ["t"]);
    std::fs::write(&path, "[tasks.t]\nrun = 1\n").unwrap();
    let e = Config::load(&path).unwrap_err();
    assert!(
        e.to_string()
            .starts_with(&format!("{}:2:7: error in tasks.t.run", path.display()))
    );
    std::fs::write(&path, [0xff, 0xfe]).unwrap();
    let e = Config::load(&path).unwrap_err().to_string();
    assert!(e.contains("not valid UTF-8 (byte 0xff at offset 0)"), "{e}");
    assert!(e.starts_with(&path.display().to_string()), "{e}");
}

#[test]
fn task_plan_on_a_parsed_config() {
    let c = parse(
        "[tasks.fetch]\nrun = \"f\"\n[tasks.build]\nrun = \"b\"\ndepends = [\"fetch\"]\n\
         [tasks.lint]\nrun = \"l\"\ndepends = [\"fetch\"]\n[tasks.ci]\nrun = \"c\"\ndepends = [\"lint\", \"build\"]\n",
    );
    assert_eq!(c.task_plan("ci").unwrap(), ["fetch", "lint", "build", "ci"]);
    let e = c.task_plan("tset").unwrap_err();
    assert_eq!(
        e.to_string(),
        "task \"tset\" does not exist (defined tasks: build, ci, fetch, lint)"
    );
    let e = parse("").task_plan("x").unwrap_err();
    assert!(e.to_string().contains("no tasks are defined"), "{e}");
}

#[test]
fn setup_hash_follows_the_setup_lines_only() {
    let base = parse("[setup]\nrun = [\"a\", \"b\"]\n");
    let same = parse("# comment\n[env]\nX = \"1\"\n[setup]\nrun = [ \"a\",\n  \"b\" ]\n");
    assert_eq!(base.setup_hash(), same.setup_hash());
    assert_eq!(base.setup_hash().len(), 64);
    let changed = parse("[setup]\nrun = [\"a\", \"c\"]\n");
    assert_ne!(base.setup_hash(), changed.setup_hash());
    // Line boundaries matter: ["ab"] is not ["a", "b"].
    assert_ne!(
        base.setup_hash(),
        parse("[setup]\nrun = \"ab\"\n").setup_hash()
    );
    assert_eq!(
        parse("[setup]\nrun = \"x\"\n").setup_hash(),
        parse("[setup]\nrun = [\"x\"]\n").setup_hash()
    );
}

#[test]
fn config_hash_ignores_formatting_but_not_values() {
    let a = parse("[sandbox]\ncpu = 2\ntimeout = \"1h\"\n[env]\nA = \"1\"\nB = \"2\"\n");
    let b = parse("# x\n[env]\nB = \"2\"\nA = \"1\"\n\n[sandbox]\ntimeout = \"60m\"\ncpu = 2\n");
    assert_eq!(a.hash(), b.hash());
    assert_eq!(a.hash().len(), 64);
    assert_ne!(
        a.hash(),
        parse("[sandbox]\ncpu = 3\n[env]\nA = \"1\"\nB = \"2\"\n").hash()
    );
    assert_ne!(parse("").hash(), parse("[tasks.t]\nrun = \"x\"\n").hash());
    // Spans are not part of the hash.
    let t1 = parse("[tasks.a]\nrun = \"x\"\n[tasks.t]\nrun = \"x\"\ndepends = [\"a\"]\n");
    let t2 = parse("\n\n[tasks.t]\ndepends = [ \"a\" ]\nrun = \"x\"\n[tasks.a]\nrun = \"x\"\n");
    assert_eq!(t1.hash(), t2.hash());
}

#[test]
fn secrets_resolve_from_the_lookup_and_never_leak_values() {
    let c = parse(
        "[secrets]\nAPI = \"LOCAL_API\"\nOPT = { from_env = \"LOCAL_OPT\", required = false }\nEMPTY = \"LOCAL_EMPTY\"\n",
    );
    let env: BTreeMap<&str, &str> = [("LOCAL_API", "s3cr3t-value"), ("LOCAL_EMPTY", "")].into();
    let got = c
        .resolve_secrets(SecretPhase::All, |k| env.get(k).map(|v| v.to_string()))
        .unwrap();
    assert_eq!(got.len(), 2);
    assert_eq!(got["API"], "s3cr3t-value");
    assert_eq!(got["EMPTY"], "");
    let full: BTreeMap<&str, &str> =
        [("LOCAL_API", "v"), ("LOCAL_OPT", "o"), ("LOCAL_EMPTY", "e")].into();
    assert_eq!(
        c.resolve_secrets(SecretPhase::All, |k| full.get(k).map(|v| v.to_string()))
            .unwrap()["OPT"],
        "o"
    );

    let only_opt: BTreeMap<&str, &str> = [("LOCAL_OPT", "s3cr3t-value")].into();
    let e = c
        .resolve_secrets(SecretPhase::All, |k| only_opt.get(k).map(|v| v.to_string()))
        .unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, ConfigError::MissingSecret { .. }));
    assert!(
        msg.contains("secret API") && msg.contains("LOCAL_API is not set"),
        "{msg}"
    );
    assert!(!msg.contains("s3cr3t"), "{msg}");
}

#[test]
fn secrets_reach_only_their_phase() {
    let c = parse(
        "[secrets]\nREG = { from_env = \"L_REG\", phase = \"setup\" }\nDB = { from_env = \"L_DB\", phase = \"run\" }\nBOTH = \"L_BOTH\"\n",
    );
    let env: BTreeMap<&str, &str> = [("L_REG", "r"), ("L_DB", "d"), ("L_BOTH", "b")].into();
    let names = |phase| -> Vec<String> {
        c.resolve_secrets(phase, |k| env.get(k).map(|v| v.to_string()))
            .unwrap()
            .into_keys()
            .collect()
    };
    assert_eq!(names(SecretPhase::Setup), ["BOTH", "REG"]);
    assert_eq!(names(SecretPhase::Run), ["BOTH", "DB"]);
    assert_eq!(names(SecretPhase::All), ["BOTH", "DB", "REG"]);
    // A required run secret that is missing does not stop setup.
    let none: BTreeMap<&str, &str> = [("L_REG", "r"), ("L_BOTH", "b")].into();
    assert!(
        c.resolve_secrets(SecretPhase::Setup, |k| none.get(k).map(|v| v.to_string()))
            .is_ok()
    );
    let e = c
        .resolve_secrets(SecretPhase::Run, |k| none.get(k).map(|v| v.to_string()))
        .unwrap_err();
    assert!(e.to_string().contains("DB"), "{e}");

    // A phase that does not exist is a located error naming the key.
    let text = "[secrets]\nREG = { from_env = \"L_REG\", phase = \"build\" }\n";
    let e = Config::parse(text, Path::new(".rclaude.toml")).unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains("build") && msg.contains(":2"), "{msg}");
}
