//! The server URL and API token: `rclaude login` stores them (0600) in the config directory;
//! `RCLAUDE_SERVER` + `RCLAUDE_TOKEN` in the environment take precedence (CI).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Where and as whom to report.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Credentials {
    /// Base URL, e.g. `https://rclaude.example.com` (no trailing slash).
    pub server: String,
    /// API token (`Authorization: Bearer`).
    pub token: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("server", &self.server)
            .field("token", &"<redacted>")
            .finish()
    }
}

/// Errors reading or writing credentials.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not valid credentials JSON: {source}; `rclaude login` writes a new one")]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("invalid server URL {0:?}: use http://host:port or https://host")]
    BadUrl(String),
}

impl Credentials {
    /// The credentials file.
    pub fn path() -> PathBuf {
        crate::dirs::config_dir().join("credentials.json")
    }

    /// A checked pair: the URL must be http(s) and is normalised (no trailing slash).
    pub fn new(server: &str, token: &str) -> Result<Credentials, CredentialsError> {
        let server = server.trim().trim_end_matches('/').to_string();
        let ok = (server.starts_with("http://") || server.starts_with("https://"))
            && reqwest::Url::parse(&server)
                .map(|u| u.host().is_some())
                .unwrap_or(false);
        if !ok {
            return Err(CredentialsError::BadUrl(server));
        }
        Ok(Credentials {
            server,
            token: token.trim().to_string(),
        })
    }

    /// Environment first (`RCLAUDE_SERVER` + `RCLAUDE_TOKEN`), then the stored file.
    pub fn load() -> Result<Option<Credentials>, CredentialsError> {
        if let (Ok(s), Ok(t)) = (
            std::env::var("RCLAUDE_SERVER"),
            std::env::var("RCLAUDE_TOKEN"),
        ) && !s.is_empty()
            && !t.is_empty()
        {
            return Credentials::new(&s, &t).map(Some);
        }
        let path = Self::path();
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|source| CredentialsError::Parse { path, source }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(CredentialsError::Io { path, source }),
        }
    }

    /// Store with 0600 permissions (atomically).
    pub fn save(&self) -> Result<PathBuf, CredentialsError> {
        use std::io::Write;
        use std::os::unix::fs::PermissionsExt;
        let path = Self::path();
        let dir = path
            .parent()
            .expect("credentials path has a parent")
            .to_path_buf();
        let io = |source| CredentialsError::Io {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(&dir).map_err(io)?;
        let mut tmp = tempfile::NamedTempFile::new_in(&dir).map_err(io)?;
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(io)?;
        tmp.write_all(&serde_json::to_vec_pretty(self).expect("serializable"))
            .map_err(io)?;
        tmp.as_file().sync_all().map_err(io)?;
        tmp.persist(&path).map_err(|e| io(e.error))?;
        Ok(path)
    }

    /// Forget stored credentials; `false` when there were none.
    pub fn remove() -> Result<bool, CredentialsError> {
        let path = Self::path();
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(source) => Err(CredentialsError::Io { path, source }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked_and_normalised_and_tokens_never_debug_printed() {
        let c = Credentials::new("http://127.0.0.1:7420/", "tok-123").unwrap();
        assert_eq!(c.server, "http://127.0.0.1:7420");
        assert!(!format!("{c:?}").contains("tok-123"));
        assert!(Credentials::new("ftp://x", "t").is_err());
        assert!(Credentials::new("localhost:7420", "t").is_err());
    }
}
