//! Checks beyond types: names, paths, ranges, task references, cycles, hooks.
//!
//! All problems are collected and the one earliest in the file is reported, so fixing errors
//! top to bottom works.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Component, Path};

use super::duration::HumanDuration;
use super::error::{ConfigError, ErrorKind};
use super::model::{Config, StringOrList};
use super::parse::{Seg, Source};
use super::plan;

/// Git hooks `[hooks]` may wire (client-side hooks that make sense to run tasks from).
pub const GIT_HOOKS: &[&str] = &[
    "pre-commit",
    "prepare-commit-msg",
    "commit-msg",
    "post-commit",
    "pre-rebase",
    "post-checkout",
    "post-merge",
    "pre-push",
    "pre-merge-commit",
    "post-rewrite",
    "pre-auto-gc",
];

/// Placeholders `sync.pull_branch` may use.
const PULL_BRANCH_PLACEHOLDERS: &[&str] = &["{branch}", "{session}"];

/// Is `name` a valid environment variable name (`[A-Za-z_][A-Za-z0-9_]*`)?
pub fn is_env_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Is `name` a valid task name (`[A-Za-z0-9_.-]+`)?
pub fn is_task_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// Which part of a located key an issue points at.
#[derive(Clone, Copy)]
enum At {
    Key,
    Value,
}

struct Issue {
    segs: Vec<Seg>,
    /// Where to point instead when `segs` is not in the document.
    fallback: Option<Vec<Seg>>,
    at: At,
    kind: ErrorKind,
    message: String,
}

#[derive(Default)]
struct Issues(Vec<Issue>);

impl Issues {
    fn push(&mut self, segs: Vec<Seg>, at: At, kind: ErrorKind, message: impl Into<String>) {
        self.0.push(Issue {
            segs,
            fallback: None,
            at,
            kind,
            message: message.into(),
        });
    }
}

macro_rules! path {
    ($($seg:expr),* $(,)?) => { vec![$(Seg::from($seg)),*] };
}

/// Validate a deserialized config against its source; the earliest problem is returned.
pub(crate) fn validate(config: &Config, source: &Source) -> Result<(), ConfigError> {
    let mut issues = Issues::default();
    check_sandbox(config, &mut issues);
    check_env(&config.env, path!["env"], &mut issues);
    check_secrets(config, &mut issues);
    check_commands(&config.setup.run, path!["setup", "run"], false, &mut issues);
    check_commands(&config.start.run, path!["start", "run"], false, &mut issues);
    check_sync(config, &mut issues);
    check_tasks(config, &mut issues);
    check_hooks(config, &mut issues);
    check_git(config, &mut issues);
    check_ports(config, &mut issues);
    check_network(config, &mut issues);

    let located = issues.0.into_iter().map(|mut issue| {
        let mut found = source.lookup(&issue.segs);
        if found.is_none()
            && let Some(fallback) = issue.fallback.take()
        {
            found = source.lookup(&fallback);
            issue.segs = fallback;
        }
        let span: Range<usize> = match (&found, issue.at) {
            (Some(l), At::Key) => l.key.clone().unwrap_or_else(|| l.value.clone()),
            (Some(l), At::Value) => l.value.clone(),
            (None, _) => usize::MAX..usize::MAX,
        };
        (span, issue)
    });
    // Earliest in the file first; issues that cannot be located (defaults) go last.
    match located.min_by_key(|(span, _)| span.start) {
        None => Ok(()),
        Some((span, issue)) => {
            let span = if span.start == usize::MAX { 0..0 } else { span };
            Err(source
                .diagnostic(span, &issue.segs, issue.kind, issue.message)
                .into())
        }
    }
}

fn positive(d: HumanDuration, segs: Vec<Seg>, issues: &mut Issues) {
    if d.is_zero() {
        issues.push(
            segs,
            At::Value,
            ErrorKind::InvalidValue,
            "the duration must be greater than zero, e.g. \"30m\"",
        );
    }
}

fn check_sandbox(config: &Config, issues: &mut Issues) {
    let s = &config.sandbox;
    positive(s.timeout, path!["sandbox", "timeout"], issues);
    if !s.workdir.starts_with('/') || has_parent_dir(&s.workdir) {
        issues.push(
            path!["sandbox", "workdir"],
            At::Value,
            ErrorKind::InvalidValue,
            format!(
                "invalid workdir \"{}\": use an absolute path without `..`, e.g. \"/home/user/repo\"",
                s.workdir
            ),
        );
    }
    for (i, p) in s.expose.iter().enumerate() {
        let rest = p.strip_prefix("~/").unwrap_or(p);
        if !(p.starts_with('/') || p.starts_with("~/")) || rest.is_empty() || has_parent_dir(p) {
            issues.push(
                path!["sandbox", "expose", i],
                At::Value,
                ErrorKind::InvalidValue,
                format!(
                    "invalid path \"{p}\": use an absolute path or one under your home directory \
                     (\"~/...\"), without `..`, e.g. \"~/.nvm\""
                ),
            );
        }
    }
    for (key, value) in [("cpu", s.cpu), ("memory_mb", s.memory_mb)] {
        if value == Some(0) {
            issues.push(
                path!["sandbox", key],
                At::Value,
                ErrorKind::InvalidValue,
                "must be at least 1 (leave it out for the provider's default)",
            );
        }
    }
    if let Some(d) = s.idle_pause
        && !(60..=604_800).contains(&d.0.as_secs())
    {
        issues.push(
            path!["sandbox", "idle_pause"],
            At::Value,
            ErrorKind::InvalidValue,
            "must be between 1m and 7d (leave it out for the server's default)",
        );
    }
    if s.image.as_deref().is_some_and(|i| i.trim().is_empty()) {
        issues.push(
            path!["sandbox", "image"],
            At::Value,
            ErrorKind::InvalidValue,
            "the image name is empty; leave `image` out for the provider's default",
        );
    }
}

fn has_parent_dir(p: &str) -> bool {
    Path::new(p).components().any(|c| c == Component::ParentDir)
}

fn env_name_message(name: &str) -> String {
    format!(
        "invalid environment variable name \"{name}\": use letters, digits and `_`, not starting with a digit"
    )
}

fn check_env(env: &BTreeMap<String, String>, base: Vec<Seg>, issues: &mut Issues) {
    for name in env.keys() {
        if !is_env_name(name) {
            let mut segs = base.clone();
            segs.push(Seg::from(name.as_str()));
            issues.push(
                segs,
                At::Key,
                ErrorKind::InvalidValue,
                env_name_message(name),
            );
        }
    }
}

fn check_ports(config: &Config, issues: &mut Issues) {
    for key in config.ports.keys() {
        if crate::config::port_number(key).is_none() {
            issues.push(
                path!["ports", key.as_str()],
                At::Key,
                ErrorKind::InvalidValue,
                format!("{key:?} is not a port number: give 1 to 65535, e.g. 3000 = \"web\""),
            );
        }
    }
}

fn check_network(config: &Config, issues: &mut Issues) {
    let net = &config.network;
    if net.deny_all && !net.allow.is_empty() {
        issues.push(
            path!["network", "deny_all"],
            At::Value,
            ErrorKind::InvalidValue,
            "deny_all = true lets nothing out, so `allow` would never apply: keep one of them",
        );
    }
    for (i, rule) in net.allow.iter().enumerate() {
        if let Err(e) = crate::network::Rule::parse(rule) {
            issues.push(
                path!["network", "allow", i],
                At::Value,
                ErrorKind::InvalidValue,
                e.to_string(),
            );
        }
    }
}

fn check_git(config: &Config, issues: &mut Issues) {
    if !is_env_name(&config.git.token_secret) {
        issues.push(
            path!["git", "token_secret"],
            At::Value,
            ErrorKind::InvalidValue,
            env_name_message(&config.git.token_secret),
        );
    }
    let remote = &config.git.remote;
    if remote.is_empty() || remote.starts_with('-') || remote.contains(char::is_whitespace) {
        issues.push(
            path!["git", "remote"],
            At::Value,
            ErrorKind::InvalidValue,
            format!(
                "invalid remote name {remote:?}: name a remote of this repository, e.g. \"origin\""
            ),
        );
    }
}

fn check_secrets(config: &Config, issues: &mut Issues) {
    for (name, spec) in &config.secrets {
        if !is_env_name(name) {
            issues.push(
                path!["secrets", name.as_str()],
                At::Key,
                ErrorKind::InvalidValue,
                env_name_message(name),
            );
        } else if config.env.contains_key(name) {
            issues.push(
                path!["secrets", name.as_str()],
                At::Key,
                ErrorKind::InvalidValue,
                format!("`{name}` is also set in [env]; a variable is either plain or secret, remove one"),
            );
        }
        if !is_env_name(&spec.from_env) {
            // The table form has the variable in from_env; `NAME = "VAR"` has it as the value.
            issues.push(
                path!["secrets", name.as_str(), "from_env"],
                At::Value,
                ErrorKind::InvalidValue,
                format!(
                    "invalid local variable: {}",
                    env_name_message(&spec.from_env)
                ),
            );
            if let Some(issue) = issues.0.last_mut() {
                issue.fallback = Some(path!["secrets", name.as_str()]);
            }
        }
    }
}

/// Command lists: no blank commands; `required` lists must not be empty.
fn check_commands(list: &StringOrList, segs: Vec<Seg>, required: bool, issues: &mut Issues) {
    let blank = "empty command; write a shell command line";
    match list {
        StringOrList::One(s) if s.trim().is_empty() => {
            issues.push(segs, At::Value, ErrorKind::InvalidValue, blank)
        }
        StringOrList::Many(v) if v.is_empty() && required => issues.push(
            segs,
            At::Value,
            ErrorKind::InvalidValue,
            "a task needs at least one command",
        ),
        StringOrList::Many(v) => {
            for (i, line) in v.iter().enumerate() {
                if line.trim().is_empty() {
                    let mut segs = segs.clone();
                    segs.push(Seg::Index(i));
                    issues.push(segs, At::Value, ErrorKind::InvalidValue, blank);
                }
            }
        }
        _ => {}
    }
}

fn check_sync(config: &Config, issues: &mut Issues) {
    // max_delete_percent's range is checked while deserializing.
    let s = &config.sync;
    check_pull_branch(&s.pull_branch, issues);
    for (i, pattern) in s.ignore.iter().enumerate() {
        let mut builder = ignore::gitignore::GitignoreBuilder::new("/");
        let problem = if pattern.trim().is_empty() {
            Some("it is empty".to_string())
        } else {
            builder.add_line(None, pattern).err().map(|e| e.to_string())
        };
        if let Some(problem) = problem {
            issues.push(
                path!["sync", "ignore", i],
                At::Value,
                ErrorKind::InvalidValue,
                format!(
                    "invalid ignore pattern {pattern:?} ({problem}): use gitignore syntax, e.g. \"target/\""
                ),
            );
        }
    }
}

fn check_pull_branch(branch: &str, issues: &mut Issues) {
    let mut rest = branch.to_string();
    for p in PULL_BRANCH_PLACEHOLDERS {
        rest = rest.replace(p, "x");
    }
    let message = if rest.contains('{') || rest.contains('}') {
        Some(format!(
            "invalid branch \"{branch}\": the only placeholders are {}",
            PULL_BRANCH_PLACEHOLDERS.join(" and ")
        ))
    } else if !git2::Reference::is_valid_name(&format!("refs/heads/{rest}")) {
        Some(format!(
            "invalid branch \"{branch}\": not a valid git branch name, e.g. \"rclaude/{{branch}}\""
        ))
    } else {
        None
    };
    if let Some(message) = message {
        issues.push(
            path!["sync", "pull_branch"],
            At::Value,
            ErrorKind::InvalidValue,
            message,
        );
    }
}

fn defined_tasks(config: &Config) -> String {
    if config.tasks.is_empty() {
        "no tasks are defined".to_string()
    } else {
        let names: Vec<&str> = config.tasks.keys().map(String::as_str).collect();
        format!("defined tasks: {}", names.join(", "))
    }
}

fn check_tasks(config: &Config, issues: &mut Issues) {
    for (name, task) in &config.tasks {
        let n = name.as_str();
        if !is_task_name(name) {
            issues.push(
                path!["tasks", n],
                At::Key,
                ErrorKind::InvalidValue,
                format!("invalid task name \"{name}\": use letters, digits, `_`, `.` and `-`"),
            );
        }
        check_commands(&task.run, path!["tasks", n, "run"], true, issues);
        check_env(&task.env, path!["tasks", n, "env"], issues);
        if let Some(cwd) = &task.cwd {
            let p = Path::new(cwd);
            let bad = cwd.is_empty()
                || p.has_root()
                || p.is_absolute()
                || cwd.starts_with('\\')
                || cwd.get(1..2) == Some(":")
                || has_parent_dir(cwd);
            if bad {
                issues.push(
                    path!["tasks", n, "cwd"],
                    At::Value,
                    ErrorKind::InvalidValue,
                    format!(
                        "invalid cwd \"{cwd}\": use a path relative to the repository root without `..`, e.g. \"crates/core\" (\".\" is the root)"
                    ),
                );
            }
        }
        if let Some(t) = task.timeout {
            positive(t, path!["tasks", n, "timeout"], issues);
        }
        for (i, dep) in task.depends.iter().enumerate() {
            let dep = dep.get_ref();
            if !config.tasks.contains_key(dep) {
                issues.push(
                    path!["tasks", n, "depends", i],
                    At::Value,
                    ErrorKind::UnknownTask,
                    format!("task \"{dep}\" does not exist ({})", defined_tasks(config)),
                );
            }
        }
    }
    if let Some((cycle, edge)) = plan::find_cycle(&config.tasks) {
        issues.push(
            path!["tasks", cycle[0].as_str(), "depends", edge],
            At::Value,
            ErrorKind::DependencyCycle,
            format!("dependency cycle {}", cycle.join(" -> ")),
        );
    }
}

fn check_hooks(config: &Config, issues: &mut Issues) {
    for (hook, tasks) in &config.hooks {
        if !GIT_HOOKS.contains(&hook.as_str()) {
            let valid: Vec<String> = GIT_HOOKS.iter().map(|h| h.to_string()).collect();
            let mut message = format!(
                "unknown git hook \"{hook}\"; valid hooks: {}",
                GIT_HOOKS.join(", ")
            );
            if let Some(best) = super::parse::did_you_mean(hook, &valid) {
                message.push_str(&format!(" (did you mean \"{best}\"?)"));
            }
            issues.push(
                path!["hooks", hook.as_str()],
                At::Key,
                ErrorKind::UnknownHook,
                message,
            );
        }
        for (i, task) in tasks.iter().enumerate() {
            let task = task.get_ref();
            if !config.tasks.contains_key(task) {
                issues.push(
                    path!["hooks", hook.as_str(), i],
                    At::Value,
                    ErrorKind::UnknownTask,
                    format!("task \"{task}\" does not exist ({})", defined_tasks(config)),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for good in ["A", "_x", "RUST_LOG", "a1"] {
            assert!(is_env_name(good), "{good}");
        }
        for bad in ["", "1A", "A-B", "A B", "É"] {
            assert!(!is_env_name(bad), "{bad}");
        }
        for good in ["build", "test.unit", "a-b_c", "1"] {
            assert!(is_task_name(good), "{good}");
        }
        for bad in ["", "a b", "a/b", "ü"] {
            assert!(!is_task_name(bad), "{bad}");
        }
    }
}
