//! Running one step: its script after the shared prelude, in the sandbox, and reading its
//! `RCLAUDE:key=value` answer.

use std::collections::BTreeMap;

use git2::Oid;
use rclaude_sandbox::provider::{ExecRequest, Sandbox, run};

use crate::StepError;
use crate::scripts::PRELUDE;

/// Parsed `RCLAUDE:key=value` lines, in order.
#[derive(Debug, Default, Clone)]
pub(crate) struct Answer {
    pub(crate) lines: Vec<(String, String)>,
}

impl Answer {
    pub(crate) fn parse(stdout: &[u8]) -> Answer {
        let text = String::from_utf8_lossy(stdout);
        let lines = text
            .lines()
            .filter_map(|l| l.strip_prefix("RCLAUDE:"))
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Answer { lines }
    }

    pub(crate) fn get(&self, key: &str) -> Option<&str> {
        self.lines
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub(crate) fn all<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.lines
            .iter()
            .filter(move |(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Every `ref=<oid> <name>` line, as `(name, oid)`.
    pub(crate) fn refs(&self, step: &'static str) -> Result<Vec<(String, Oid)>, StepError> {
        self.all("ref")
            .map(|line| {
                line.split_once(' ')
                    .and_then(|(oid, name)| Some((name.to_string(), parse_oid(oid)?)))
                    .ok_or_else(|| StepError::Protocol {
                        step,
                        detail: format!("bad ref line {line:?}"),
                    })
            })
            .collect()
    }

    pub(crate) fn oid(&self, step: &'static str, key: &str) -> Result<Option<Oid>, StepError> {
        match self.get(key) {
            None | Some("") => Ok(None),
            Some(v) => parse_oid(v).map(Some).ok_or_else(|| StepError::Protocol {
                step,
                detail: format!("{key}={v:?} is not an object id"),
            }),
        }
    }
}

/// Run one step's script in the sandbox and check that it finished.
pub(crate) async fn run_step(
    sandbox: &dyn Sandbox,
    step: &'static str,
    body: &str,
    mut env: BTreeMap<String, String>,
) -> Result<Answer, StepError> {
    env.insert("RC_WORKDIR".into(), sandbox.workdir().to_string());
    env.insert(rclaude_sandbox::agent::SYNC_STEP_VAR.into(), step.into());
    tracing::debug!(step, sandbox = sandbox.id(), "running a sandbox-side step");
    let script = format!("{PRELUDE}{body}");
    // cwd: the provider's default (the workdir); scripts `cd` there themselves.
    let req = ExecRequest::shell(script).env(env);
    let out = run(sandbox, req)
        .await
        .map_err(StepError::sandbox(format!("running the {step} step")))?;
    let answer = Answer::parse(&out.stdout);
    if !out.status.success() {
        let message = match answer.get("error") {
            Some(m) => m.to_string(),
            None if out.status.code < 0 => format!(
                "it was interrupted ({}); run the command again: the next sync completes or repairs the interrupted step",
                out.status.status
            ),
            None => {
                let err = out.stderr_str();
                let tail: Vec<&str> = err.lines().rev().take(4).collect();
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                format!("exit code {}: {}", out.status.code, tail.join(" | "))
            }
        };
        return Err(StepError::Remote {
            step,
            code: out.status.code,
            message,
        });
    }
    if answer.get("done") != Some("1") {
        return Err(StepError::Protocol {
            step,
            detail: format!(
                "the step ended without finishing; stderr: {}",
                out.stderr_str().trim()
            ),
        });
    }
    Ok(answer)
}

pub(crate) fn check_identity(step: &'static str, id: &str) -> Result<String, StepError> {
    let id = id.trim();
    if id.is_empty()
        || id.len() > 100
        || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    {
        return Err(StepError::Protocol {
            step,
            detail: format!("bad sandbox identity {id:?}"),
        });
    }
    Ok(id.to_string())
}

/// Parse a full 40-hex SHA-1 object id.
pub(crate) fn parse_oid(s: &str) -> Option<Oid> {
    if s.len() != 40 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    Oid::from_str(s).ok()
}

/// The answer of a step the sandbox did itself (rclaude's step helper, e.g.
/// [`Sandbox::apply_sync`]), when it did; `None` when it declined or failed: the caller runs the
/// step's script.
pub(crate) fn helper_answer(
    sandbox: &dyn Sandbox,
    step: &'static str,
    result: Result<Option<String>, rclaude_sandbox::provider::SandboxError>,
) -> Option<Answer> {
    match result {
        Ok(Some(text)) => {
            // Logged as the script's run is (once, by whichever did the step).
            tracing::debug!(
                step,
                sandbox = sandbox.id(),
                helper = true,
                "running a sandbox-side step"
            );
            let a = Answer::parse(text.as_bytes());
            (a.get("done") == Some("1")).then_some(a)
        }
        Ok(None) => None,
        Err(e) => {
            tracing::debug!("the sandbox's own {step} step failed, running the script: {e}");
            None
        }
    }
}
