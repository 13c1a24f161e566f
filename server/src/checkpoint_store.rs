//! Where checkpoint bundles live: a directory (the default, under the data directory) or an
//! S3-compatible bucket, both through the `object_store` crate. Objects are written with a
//! multipart upload that becomes visible only when complete (a staged file renamed into place
//! with fsync on a directory; S3's complete-multipart-upload), so a reader never sees half a
//! bundle.

use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, WriteMultipart};

/// A checkpoint store that could not be opened or used.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error(
        "checkpoint store `{0}` is not understood: use a directory path, `file:///PATH` or `s3://BUCKET[/PREFIX]`"
    )]
    BadUrl(String),
    #[error("cannot create the checkpoint directory {dir}: {source}")]
    CreateDir {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("checkpoint store {store}: {source}")]
    Store {
        store: String,
        source: object_store::Error,
    },
}

/// The configured checkpoint store.
#[derive(Debug, Clone)]
pub struct BlobStore {
    inner: Arc<dyn ObjectStore>,
    prefix: ObjectPath,
    /// The directory of a local store (for sweeping staged files a crash left).
    local_dir: Option<PathBuf>,
    describe: String,
}

impl BlobStore {
    /// Open `url`: a directory (created when missing), `file:///PATH`, or `s3://BUCKET[/PREFIX]`
    /// (credentials, region and endpoint from the usual `AWS_*` environment variables, e.g.
    /// `AWS_ENDPOINT_URL` for an S3-compatible service; `AWS_ALLOW_HTTP=true` for plain http).
    pub fn open(url: &str) -> Result<BlobStore, BlobError> {
        let url = url.trim();
        if let Some(rest) = url.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(BlobError::BadUrl(url.to_string()));
            }
            let s3 = object_store::aws::AmazonS3Builder::from_env()
                .with_bucket_name(bucket)
                .build()
                .map_err(|source| BlobError::Store {
                    store: url.to_string(),
                    source,
                })?;
            return Ok(BlobStore {
                inner: Arc::new(s3),
                prefix: ObjectPath::from(prefix.trim_matches('/')),
                local_dir: None,
                describe: url.to_string(),
            });
        }
        let dir = match url.strip_prefix("file://") {
            Some(p) => PathBuf::from(p),
            None if url.contains("://") || url.is_empty() => {
                return Err(BlobError::BadUrl(url.to_string()));
            }
            None => PathBuf::from(url),
        };
        std::fs::create_dir_all(&dir).map_err(|source| BlobError::CreateDir {
            dir: dir.clone(),
            source,
        })?;
        let fs = LocalFileSystem::new_with_prefix(&dir)
            .map_err(|source| BlobError::Store {
                store: dir.display().to_string(),
                source,
            })?
            .with_fsync(true)
            .with_automatic_cleanup(true);
        Ok(BlobStore {
            inner: Arc::new(fs),
            prefix: ObjectPath::default(),
            local_dir: Some(dir.clone()),
            describe: dir.display().to_string(),
        })
    }

    /// For messages and logs.
    pub fn describe(&self) -> &str {
        &self.describe
    }

    fn path(&self, key: &str) -> ObjectPath {
        self.prefix
            .parts()
            .chain(ObjectPath::from(key).parts())
            .collect()
    }

    fn err(&self) -> impl Fn(object_store::Error) -> BlobError + '_ {
        |source| BlobError::Store {
            store: self.describe.clone(),
            source,
        }
    }

    /// Start writing object `key`; nothing is visible until [`Upload::finish`].
    pub async fn upload(&self, key: &str) -> Result<Upload, BlobError> {
        let up = self
            .inner
            .put_multipart(&self.path(key))
            .await
            .map_err(self.err())?;
        Ok(Upload {
            writer: Some(WriteMultipart::new_with_chunk_size(up, 8 * 1024 * 1024)),
            store: self.describe.clone(),
        })
    }

    /// The object's bytes, streamed.
    pub async fn get(
        &self,
        key: &str,
    ) -> Result<futures::stream::BoxStream<'static, Result<Bytes, BlobError>>, BlobError> {
        let got = self.inner.get(&self.path(key)).await.map_err(self.err())?;
        let store = self.describe.clone();
        Ok(got
            .into_stream()
            .map(move |r| {
                r.map_err(|source| BlobError::Store {
                    store: store.clone(),
                    source,
                })
            })
            .boxed())
    }

    /// Delete object `key` (a missing one is not an error).
    pub async fn delete(&self, key: &str) -> Result<(), BlobError> {
        match self.inner.delete(&self.path(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.err()(e)),
        }
    }

    /// Delete objects no record refers to (`live`: the keys that must stay) and, in a local
    /// store, staged files of uploads a crash interrupted; both only when older than `min_age`
    /// (another replica may be uploading right now). Returns how many were removed.
    pub async fn sweep(
        &self,
        live: &std::collections::HashSet<String>,
        min_age: std::time::Duration,
    ) -> Result<usize, BlobError> {
        let cutoff = crate::clock::Now::system().s() - min_age.as_secs() as i64;
        let mut removed = 0;
        let prefix = (!self.prefix.as_ref().is_empty()).then_some(&self.prefix);
        let mut list = self.inner.list(prefix);
        while let Some(meta) = list.next().await {
            let meta = meta.map_err(self.err())?;
            let full = meta.location.as_ref();
            let key = full
                .strip_prefix(self.prefix.as_ref())
                .unwrap_or(full)
                .trim_start_matches('/');
            if live.contains(key) || meta.last_modified.timestamp() > cutoff {
                continue;
            }
            self.delete(key).await?;
            removed += 1;
        }
        if let Some(dir) = &self.local_dir {
            removed += sweep_staged(dir, cutoff);
        }
        Ok(removed)
    }
}

/// Remove `NAME#N` staging files (an interrupted local multipart upload) older than `cutoff`.
fn sweep_staged(dir: &std::path::Path, cutoff: i64) -> usize {
    let mut removed = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            let Ok(md) = e.metadata() else { continue };
            if md.is_dir() {
                stack.push(p);
                continue;
            }
            let staged = p
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.contains('#'));
            let old = md
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .is_some_and(|t| (t.as_secs() as i64) <= cutoff);
            if staged && old && std::fs::remove_file(&p).is_ok() {
                removed += 1;
            }
        }
    }
    removed
}

/// An object being written.
pub struct Upload {
    writer: Option<WriteMultipart>,
    store: String,
}

impl Upload {
    /// Append bytes (buffered; parts are sent as they fill).
    pub async fn write(&mut self, chunk: Bytes) -> Result<(), BlobError> {
        let w = self.writer.as_mut().expect("upload not finished");
        w.wait_for_capacity(4)
            .await
            .map_err(|source| BlobError::Store {
                store: self.store.clone(),
                source,
            })?;
        w.put(chunk);
        Ok(())
    }

    /// Make the object visible, whole.
    pub async fn finish(mut self) -> Result<(), BlobError> {
        let w = self.writer.take().expect("upload not finished");
        w.finish().await.map_err(|source| BlobError::Store {
            store: self.store.clone(),
            source,
        })?;
        Ok(())
    }

    /// Give up: nothing becomes visible.
    pub async fn abort(mut self) {
        if let Some(w) = self.writer.take() {
            let _ = w.abort().await;
        }
    }
}
