//! Argument values the subcommands share: command lines, `--env`, `--timeout`, provider names,
//! and task-name completion.

use std::collections::BTreeMap;
use std::ffi::OsStr;

use clap_complete::engine::CompletionCandidate;

use crate::config::{HumanDuration, ProviderKind};
use crate::error::{CliError, CliResult};

/// One argument is used verbatim as a shell line; several are shell-quoted and joined.
pub fn command_line(args: &[String]) -> String {
    match args {
        [one] => one.clone(),
        many => many
            .iter()
            .map(|a| crate::shell::quote(a))
            .collect::<Vec<_>>()
            .join(" "),
    }
}

/// `KEY=VALUE` pairs from the command line.
pub fn parse_env_pairs(pairs: &[String]) -> CliResult<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for p in pairs {
        let (k, v) = p
            .split_once('=')
            .ok_or_else(|| CliError::usage(format!("--env {p:?} is not KEY=VALUE")))?;
        if k.is_empty()
            || !k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            || k.starts_with(|c: char| c.is_ascii_digit())
        {
            return Err(CliError::usage(format!(
                "--env {p:?}: {k:?} is not a valid variable name"
            )));
        }
        out.insert(k.to_string(), v.to_string());
    }
    Ok(out)
}

/// Parse a `--timeout` value with the config's duration syntax.
pub fn parse_duration(s: &str) -> CliResult<std::time::Duration> {
    s.parse::<HumanDuration>()
        .map(|d| d.0)
        .map_err(|e| CliError::usage(format!("--timeout {s:?}: {e}")))
}

/// A provider name given on the command line.
pub fn parse_kind(s: &str) -> Result<ProviderKind, String> {
    ProviderKind::from_name(s).ok_or_else(|| {
        let names: Vec<&str> = ProviderKind::ALL.iter().map(|k| k.as_str()).collect();
        format!(
            "unknown provider {s:?}; expected one of {}",
            names.join(", ")
        )
    })
}

/// Task names from the `.rclaude.toml` of the repository in the current directory.
pub fn task_names(current: &OsStr) -> Vec<CompletionCandidate> {
    let current = current.to_string_lossy();
    let Ok(dir) = std::env::current_dir() else {
        return Vec::new();
    };
    let Ok(repo) = crate::session::Repo::discover(&dir) else {
        return Vec::new();
    };
    let Ok(config) = crate::config::Config::load(&repo.config_path()) else {
        return Vec::new();
    };
    config
        .tasks
        .iter()
        .filter(|(name, _)| name.starts_with(current.as_ref()))
        .map(|(name, task)| {
            CompletionCandidate::new(name.as_str())
                .help(task.description.as_deref().map(|d| d.to_string().into()))
        })
        .collect()
}

/// Session names for `--session`: the named sessions of the repository in the current
/// directory, then the ids of sessions started from a URL on this machine.
pub fn session_names(current: &OsStr) -> Vec<CompletionCandidate> {
    let current = current.to_string_lossy();
    let mut out = Vec::new();
    if let Ok(repo) = std::env::current_dir()
        .map_err(|_| ())
        .and_then(|d| crate::session::Repo::discover(&d).map_err(|_| ()))
    {
        for (name, record) in crate::session::SessionStore::all_of(&repo) {
            if let Some(name) = name.filter(|n| n.starts_with(current.as_ref())) {
                out.push(CompletionCandidate::new(name).help(Some(
                    format!("{} sandbox {}", record.provider, record.sandbox_id).into(),
                )));
            }
        }
    }
    for (_, record) in crate::session::started::all() {
        if record.session_id.starts_with(current.as_ref()) {
            let from = record
                .origin
                .as_ref()
                .map(|o| crate::deliver::Upstream::parse(&o.url).display_name())
                .unwrap_or_default();
            out.push(
                CompletionCandidate::new(record.session_id.clone())
                    .help(Some(format!("started from {from}").into())),
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_only_when_needed() {
        assert_eq!(command_line(&["ls | wc -l".into()]), "ls | wc -l");
        assert_eq!(
            command_line(&["echo".into(), "a b".into(), "it's".into()]),
            r"echo 'a b' 'it'\''s'"
        );
        assert_eq!(
            command_line(&["cargo".into(), "test".into(), "-p".into(), "x".into()]),
            "cargo test -p x"
        );
        assert_eq!(crate::shell::quote(""), "''");
    }

    #[test]
    fn env_pairs_are_validated() {
        assert_eq!(
            parse_env_pairs(&["A=1".into(), "B_2=x=y".into()]).unwrap()["B_2"],
            "x=y"
        );
        assert!(parse_env_pairs(&["1A=1".into()]).is_err());
        assert!(parse_env_pairs(&["novalue".into()]).is_err());
    }

    #[test]
    fn provider_names_parse() {
        assert_eq!(parse_kind("e2b").unwrap(), ProviderKind::E2b);
        assert!(parse_kind("aws").unwrap_err().contains("local, e2b"));
    }
}
