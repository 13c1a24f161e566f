//! A download written to a temporary file beside its destination and moved into place only when
//! complete, so an interrupted download never leaves a partial file under the real name.

use std::path::{Path, PathBuf};

use tokio::io::AsyncWriteExt;

use super::{Progress, SandboxError};

/// A download in progress to `local`.
pub struct DownloadFile {
    local: PathBuf,
    tmp: tempfile::NamedTempFile,
    file: tokio::fs::File,
    total: u64,
    progress: Option<Progress>,
}

impl DownloadFile {
    /// Create the destination's directory and a temporary file in it.
    pub fn create(local: &Path, progress: Option<Progress>) -> Result<DownloadFile, SandboxError> {
        let dir = local
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir)
            .map_err(|e| SandboxError::io(format!("cannot create {}", dir.display()), e))?;
        let tmp = tempfile::Builder::new()
            .prefix(".rclaude-download-")
            .tempfile_in(dir)
            .map_err(|e| {
                SandboxError::io(
                    format!("cannot create a temporary file in {}", dir.display()),
                    e,
                )
            })?;
        let std_file = tmp
            .as_file()
            .try_clone()
            .map_err(|e| SandboxError::io("cannot open the temporary file", e))?;
        Ok(DownloadFile {
            local: local.to_path_buf(),
            tmp,
            file: tokio::fs::File::from_std(std_file),
            total: 0,
            progress,
        })
    }

    /// Append a chunk and report the running total.
    pub async fn write(&mut self, chunk: &[u8]) -> Result<(), SandboxError> {
        self.file
            .write_all(chunk)
            .await
            .map_err(|e| SandboxError::io(format!("cannot write {}", self.local.display()), e))?;
        self.total += chunk.len() as u64;
        if let Some(p) = &self.progress {
            p(self.total);
        }
        Ok(())
    }

    /// Flush and move the file into place; returns the bytes written.
    pub async fn finish(mut self) -> Result<u64, SandboxError> {
        self.file
            .flush()
            .await
            .map_err(|e| SandboxError::io(format!("cannot write {}", self.local.display()), e))?;
        drop(self.file);
        self.tmp.persist(&self.local).map_err(|e| {
            SandboxError::io(
                format!("cannot move the download to {}", self.local.display()),
                e.error,
            )
        })?;
        Ok(self.total)
    }
}
