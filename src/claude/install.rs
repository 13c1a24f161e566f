//! Make sure Claude Code is in the sandbox: find `claude` (also in `~/.local/bin`, where the
//! local provider's npm prefix puts it), and install `@anthropic-ai/claude-code` with npm when it
//! is missing or not the pinned version.
//!
//! The package ships a native binary in a per-platform optional dependency that its postinstall
//! script links into place; when npm skipped the script (`ignore-scripts`), it is run by hand.

use std::collections::BTreeMap;

use super::{ClaudeError, DEFAULT_VERSION, PACKAGE};
use crate::provider::{ExecRequest, Sandbox};
use crate::shell::quote;

/// Claude Code as found in the sandbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Installed {
    /// Absolute path of `claude`.
    pub path: String,
    /// What `claude --version` reported, `None` when it did not run.
    pub version: Option<String>,
}

/// Print the path of `claude` and its version; exit 3 when there is none.
const PROBE: &str = r#"PATH="$PATH:$HOME/.local/bin"
p=$(command -v claude) || exit 3
v=$("$p" --version 2>&1 </dev/null | head -n1)
printf '%s\n%s\n' "$p" "$v""#;

/// Exit code of the install script when npm is missing.
const NO_NPM: i32 = 127;

/// Check a `[claude] version` value: a version (`2.1.197`) or a dist-tag (`latest`, `stable`).
pub fn validate_version(v: &str) -> Result<(), ClaudeError> {
    let ok = !v.is_empty()
        && v.len() <= 64
        && !v.starts_with(['-', '.'])
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '+'));
    if ok {
        Ok(())
    } else {
        Err(ClaudeError::InvalidVersion(v.to_string()))
    }
}

/// The version in `claude --version` output (`2.1.197 (Claude Code)` → `2.1.197`).
pub fn parse_version(out: &str) -> Option<String> {
    let first = out.lines().next()?.split_whitespace().next()?;
    (first.starts_with(|c: char| c.is_ascii_digit()) && first.contains('.'))
        .then(|| first.to_string())
}

/// Which version to install, if any: when `claude` is missing or broken, `pinned` (or
/// [`DEFAULT_VERSION`]); when a concrete `pinned` version differs from the one found, `pinned`.
/// A dist-tag pin (`latest`) never replaces a working install.
pub fn version_to_install(found: Option<&Installed>, pinned: Option<&str>) -> Option<String> {
    let wanted = pinned.unwrap_or(DEFAULT_VERSION);
    match found.and_then(|f| f.version.as_deref()) {
        None => Some(wanted.to_string()),
        Some(have) => match pinned {
            Some(p) if p.starts_with(|c: char| c.is_ascii_digit()) && p != have => {
                Some(p.to_string())
            }
            _ => None,
        },
    }
}

/// Find `claude` in the sandbox with the environment runs will use.
pub async fn probe(
    sandbox: &dyn Sandbox,
    env: &BTreeMap<String, String>,
) -> Result<Option<Installed>, ClaudeError> {
    let req = ExecRequest::shell(PROBE).env(env.clone());
    let out = crate::provider::run(sandbox, req).await?;
    if out.status.code == 3 {
        return Ok(None);
    }
    let text = out.stdout_str();
    let mut lines = text.lines();
    let path = lines.next().unwrap_or("").trim().to_string();
    if !out.status.success() || path.is_empty() {
        return Ok(None);
    }
    Ok(Some(Installed {
        path,
        version: parse_version(lines.next().unwrap_or("")),
    }))
}

/// The shell script that installs `PACKAGE@version` globally.
fn install_script(version: &str) -> String {
    let spec = quote(&format!("{PACKAGE}@{version}"));
    format!(
        r#"set -e
command -v npm >/dev/null 2>&1 || exit {NO_NPM}
if [ -z "${{NPM_CONFIG_PREFIX:-}}" ]; then
  p=$(npm config get prefix 2>/dev/null || echo /usr/local)
  if ! {{ mkdir -p "$p/lib/node_modules" && [ -w "$p/lib/node_modules" ] && [ -w "$p/bin" ]; }} 2>/dev/null; then
    # Keep the machine's global npmrc (registry, CA file, proxy), which follows the prefix.
    g=$(npm config get globalconfig 2>/dev/null || true)
    if [ -n "$g" ] && [ -z "${{NPM_CONFIG_GLOBALCONFIG:-}}" ]; then export NPM_CONFIG_GLOBALCONFIG="$g"; fi
    export NPM_CONFIG_PREFIX="$HOME/.local"
  fi
fi
npm install -g --no-audit --no-fund --loglevel=error {spec}
PATH="$PATH:$HOME/.local/bin"
if ! claude --version >/dev/null 2>&1 </dev/null; then
  echo "claude does not run yet: running the package's install script (npm skipped it)" >&2
  cd "$(npm root -g)/{PACKAGE}"
  node install.cjs
fi
"#
    )
}

/// Install `@anthropic-ai/claude-code@version` with npm (global, into `~/.local` when the npm
/// prefix is not writable). Output is kept for the error message only.
pub async fn install(
    sandbox: &dyn Sandbox,
    env: &BTreeMap<String, String>,
    version: &str,
) -> Result<(), ClaudeError> {
    validate_version(version)?;
    let req = ExecRequest::shell(install_script(version)).env(env.clone());
    let out = crate::provider::run(sandbox, req).await?;
    if out.status.success() {
        return Ok(());
    }
    if out.status.code == NO_NPM {
        return Err(ClaudeError::NpmMissing);
    }
    let mut all = out.stdout_str();
    all.push_str(&out.stderr_str());
    let lines: Vec<&str> = all.lines().collect();
    Err(ClaudeError::InstallFailed {
        version: version.to_string(),
        code: out.status.shell_code(),
        output: lines[lines.len().saturating_sub(30)..].join("\n"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(v: Option<&str>) -> Installed {
        Installed {
            path: "/x/claude".into(),
            version: v.map(str::to_string),
        }
    }

    #[test]
    fn versions_are_validated_and_parsed() {
        for ok in ["2.1.197", "latest", "stable", "1.0.0-beta.1"] {
            assert!(validate_version(ok).is_ok(), "{ok}");
        }
        for bad in ["", "-g", "1.0; rm -rf /", "a b", "../x"] {
            assert!(validate_version(bad).is_err(), "{bad}");
        }
        assert_eq!(
            parse_version("2.1.197 (Claude Code)\n").as_deref(),
            Some("2.1.197")
        );
        assert_eq!(parse_version("claude native binary not installed"), None);
        assert_eq!(parse_version(""), None);
    }

    #[test]
    fn installs_only_when_missing_broken_or_pinned_differently() {
        assert_eq!(
            version_to_install(None, None).as_deref(),
            Some(DEFAULT_VERSION)
        );
        assert_eq!(
            version_to_install(None, Some("latest")).as_deref(),
            Some("latest")
        );
        assert_eq!(
            version_to_install(Some(&found(None)), Some("2.0.1")).as_deref(),
            Some("2.0.1")
        );
        assert_eq!(version_to_install(Some(&found(Some("2.1.0"))), None), None);
        assert_eq!(
            version_to_install(Some(&found(Some("2.1.0"))), Some("latest")),
            None
        );
        assert_eq!(
            version_to_install(Some(&found(Some("2.1.0"))), Some("2.1.0")),
            None
        );
        assert_eq!(
            version_to_install(Some(&found(Some("2.1.0"))), Some("2.1.197")).as_deref(),
            Some("2.1.197")
        );
    }
}
