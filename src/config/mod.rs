//! `.rclaude.toml`: types, loading with precise errors, validation, schema and starter file.
//!
//! [`Config::load`] / [`Config::parse`] give either a fully validated [`Config`] or a
//! [`ConfigError`] whose first line reads `file:line:col: error in KEY: message`.
//!
//! Decisions worth knowing:
//! - `provider = "northflank"` without `sandbox.project` is accepted here: the project may come
//!   from `NORTHFLANK_PROJECT_ID`, so the Northflank provider checks that one of them is set.
//! - Only the first problem (the earliest in the file) is reported.
pub mod devcontainer;
pub mod duration;
mod error;
pub mod init;
pub mod model;
mod parse;
mod plan;
pub mod schema;
mod validate;

use std::collections::BTreeMap;
use std::path::Path;

use sha2::{Digest, Sha256};

pub use duration::{DurationError, HumanDuration};
pub use error::{ConfigError, Diagnostic, ErrorKind};
pub use model::*;
pub use validate::{GIT_HOOKS, is_env_name, is_task_name};

/// Largest `.rclaude.toml` read (a configuration is a few KiB; this bounds memory).
pub const MAX_CONFIG_BYTES: u64 = 1024 * 1024;

/// The configuration file name, at the repository root.
pub const CONFIG_FILE: &str = ".rclaude.toml";

impl Config {
    /// Read, parse and validate a configuration file. A missing file is
    /// [`ConfigError::NotFound`] (its message suggests `rclaude init`).
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        use std::io::Read;
        let read_err = |source: std::io::Error| {
            if source.kind() == std::io::ErrorKind::NotFound {
                ConfigError::NotFound {
                    path: path.to_path_buf(),
                }
            } else {
                ConfigError::Read {
                    path: path.to_path_buf(),
                    source,
                }
            }
        };
        // Never more than the limit in memory, whatever the file's size.
        let mut bytes = Vec::new();
        std::fs::File::open(path)
            .map_err(read_err)?
            .take(MAX_CONFIG_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(read_err)?;
        if bytes.len() as u64 > MAX_CONFIG_BYTES {
            return Err(ConfigError::TooLarge {
                path: path.to_path_buf(),
                limit: MAX_CONFIG_BYTES,
            });
        }
        let text = match String::from_utf8(bytes) {
            Ok(t) => t,
            Err(e) => {
                // Point at the first byte that is not UTF-8.
                let at = e.utf8_error().valid_up_to();
                let bytes = e.into_bytes();
                let text = String::from_utf8_lossy(&bytes).into_owned();
                let start = text
                    .char_indices()
                    .map(|(i, _)| i)
                    .find(|&i| i >= at)
                    .unwrap_or(text.len().saturating_sub(1));
                let end = (start + 3).min(text.len()).max(start + 1).min(text.len());
                return Err(error::Diagnostic::new(
                    path,
                    &text,
                    start..end,
                    String::new(),
                    error::ErrorKind::Syntax,
                    format!(
                        "the file is not valid UTF-8 (byte 0x{:02x} at offset {at}); TOML files are UTF-8",
                        bytes[at]
                    ),
                )
                .into());
            }
        };
        Config::parse(&text, path)
    }

    /// Parse and validate configuration text; `path` is only used in error messages.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        parse::parse(text, path)
    }

    /// The tasks `rclaude run NAME` runs: dependencies first (depth-first, in `depends` order),
    /// each once, `name` last. Unknown names are [`ConfigError::UnknownTask`] (listing the
    /// defined tasks); cycles (only possible in configs not built by `parse`) are
    /// [`ConfigError::DependencyCycle`].
    pub fn task_plan(&self, name: &str) -> Result<Vec<String>, ConfigError> {
        plan::task_plan(&self.tasks, name)
    }

    /// Hex SHA-256 of the `[setup] run` lines, in order. Only the lines count: changing `[env]`
    /// or secrets does not re-run setup.
    pub fn setup_hash(&self) -> String {
        let mut h = Sha256::new();
        h.update(b"rclaude-setup-v1\0");
        for line in self.setup.run.lines() {
            h.update((line.len() as u64).to_le_bytes());
            h.update(line.as_bytes());
        }
        hex::encode(h.finalize())
    }

    /// Hex SHA-256 of the whole effective configuration (defaults filled in), stable across
    /// formatting, comments and key order. Secret values are not part of the config, so never
    /// part of the hash.
    pub fn hash(&self) -> String {
        let json = serde_json::to_vec(self).expect("a Config always serializes to JSON");
        let mut h = Sha256::new();
        h.update(b"rclaude-config-v1\0");
        h.update(&json);
        hex::encode(h.finalize())
    }

    /// Read the value of every secret for processes of `phase` (`Setup` or `Run`; `All` takes
    /// every secret) with `lookup` (normally the local environment). A required secret whose
    /// variable is unset is [`ConfigError::MissingSecret`] (naming the secret and the variable,
    /// never a value); an optional one is left out. An empty value counts as set.
    pub fn resolve_secrets(
        &self,
        phase: SecretPhase,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<BTreeMap<String, String>, ConfigError> {
        let mut out = BTreeMap::new();
        for (name, spec) in &self.secrets {
            if phase != SecretPhase::All && !spec.phase.reaches(phase) {
                continue;
            }
            match lookup(&spec.from_env) {
                Some(value) => {
                    out.insert(name.clone(), value);
                }
                None if spec.required => {
                    return Err(ConfigError::MissingSecret {
                        name: name.clone(),
                        var: spec.from_env.clone(),
                    });
                }
                None => {}
            }
        }
        Ok(out)
    }
}
/// A `[ports]` key or a command-line port: 1 to 65535, digits only.
pub fn port_number(s: &str) -> Option<u16> {
    if s.is_empty() || s.len() > 5 || !s.bytes().all(|b| b.is_ascii_digit()) || s.starts_with('0') {
        return None;
    }
    s.parse::<u16>().ok().filter(|p| *p > 0)
}

#[cfg(test)]
mod tests;
