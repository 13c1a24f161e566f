//! `GET /files` (download, streamed, with single-range support) and `POST /files` (upload:
//! multipart with one or more `file` parts, or a raw `application/octet-stream` body). Every
//! write goes to a temporary file in the destination directory, then is renamed over
//! the destination, keeping an existing file's mode (new files get 0644).

use std::collections::HashSet;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::{Stream, StreamExt};
use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

use super::AgentState;
use super::paths::Follow;
use crate::envd::proto::{HttpError, WrittenFile};

/// Name prefix of the temporary files uploads are written to before they are renamed into place.
pub(crate) const UPLOAD_TMP_PREFIX: &str = ".rclaude-upload-";

/// Query of `/files` (the user and signature fields are accepted; auth checks the signature).
#[derive(Debug, Default, Deserialize)]
pub struct FilesQuery {
    pub path: Option<String>,
    #[allow(dead_code)]
    pub username: Option<String>,
}

/// An error answered with envd's `{"code","message"}` body.
#[derive(Debug)]
pub struct HttpFail(pub StatusCode, pub String);

impl IntoResponse for HttpFail {
    fn into_response(self) -> Response {
        let body = HttpError {
            code: self.0.as_u16(),
            message: self.1,
        };
        (self.0, axum::Json(body)).into_response()
    }
}

pub(super) fn bad(msg: impl Into<String>) -> HttpFail {
    HttpFail(StatusCode::BAD_REQUEST, msg.into())
}

fn io_fail(path: &Path, e: io::Error) -> HttpFail {
    let status = match e.kind() {
        io::ErrorKind::NotFound => StatusCode::NOT_FOUND,
        io::ErrorKind::PermissionDenied => StatusCode::FORBIDDEN,
        _ if e.raw_os_error() == Some(libc::ENOSPC) || e.raw_os_error() == Some(libc::EDQUOT) => {
            StatusCode::INSUFFICIENT_STORAGE
        }
        _ if e.raw_os_error() == Some(libc::EISDIR) || e.raw_os_error() == Some(libc::ENOTDIR) => {
            StatusCode::BAD_REQUEST
        }
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    HttpFail(status, format!("{}: {e}", path.display()))
}

/// `GET /files?path=`: stream a file.
pub async fn download(
    State(state): State<Arc<AgentState>>,
    Query(q): Query<FilesQuery>,
    headers: HeaderMap,
) -> Response {
    match download_inner(&state, q, &headers).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn download_inner(
    state: &AgentState,
    q: FilesQuery,
    headers: &HeaderMap,
) -> Result<Response, HttpFail> {
    let raw = q
        .path
        .ok_or_else(|| bad("the path query parameter is required"))?;
    let path = state
        .conf
        .resolve(&raw, Follow::Yes)
        .map_err(|e| bad(e.to_string()))?;
    let meta = tokio::fs::metadata(&path)
        .await
        .map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => HttpFail(
                StatusCode::NOT_FOUND,
                format!("file {} not found", path.display()),
            ),
            _ => io_fail(&path, e),
        })?;
    if meta.is_dir() {
        return Err(bad(format!("path {} is a directory", path.display())));
    }
    let size = meta.len();
    let mut file = tokio::fs::File::open(&path)
        .await
        .map_err(|e| io_fail(&path, e))?;
    let range = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .map(|r| parse_range(r, size));
    let (status, start, len) = match range {
        None | Some(Range::Ignore) => (StatusCode::OK, 0, size),
        Some(Range::Unsatisfiable) => {
            let mut r = HttpFail(
                StatusCode::RANGE_NOT_SATISFIABLE,
                format!("range not satisfiable for {size} bytes"),
            )
            .into_response();
            r.headers_mut().insert(
                header::CONTENT_RANGE,
                HeaderValue::from_str(&format!("bytes */{size}")).unwrap(),
            );
            return Ok(r);
        }
        Some(Range::Bytes(a, b)) => (StatusCode::PARTIAL_CONTENT, a, b - a + 1),
    };
    if start > 0 {
        file.seek(io::SeekFrom::Start(start))
            .await
            .map_err(|e| io_fail(&path, e))?;
    }
    let body = Body::from_stream(tokio_util::io::ReaderStream::with_capacity(
        file.take(len),
        64 * 1024,
    ));
    let mut resp = (status, body).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if status == StatusCode::PARTIAL_CONTENT {
        let cr = format!("bytes {start}-{}/{size}", start + len - 1);
        h.insert(header::CONTENT_RANGE, HeaderValue::from_str(&cr).unwrap());
    }
    Ok(resp)
}

#[derive(Debug, PartialEq, Eq)]
enum Range {
    /// Serve the whole file (no usable single range).
    Ignore,
    Unsatisfiable,
    /// Inclusive byte range.
    Bytes(u64, u64),
}

fn parse_range(v: &str, size: u64) -> Range {
    let Some(spec) = v.trim().strip_prefix("bytes=") else {
        return Range::Ignore;
    };
    if spec.contains(',') {
        return Range::Ignore;
    }
    let Some((a, b)) = spec.split_once('-') else {
        return Range::Ignore;
    };
    let (a, b) = (a.trim(), b.trim());
    let parsed = match (a.is_empty(), b.is_empty()) {
        (true, true) => return Range::Ignore,
        (true, false) => match b.parse::<u64>() {
            Ok(0) => return Range::Unsatisfiable,
            Ok(n) => (size.saturating_sub(n), size.saturating_sub(1)),
            Err(_) => return Range::Ignore,
        },
        (false, _) => {
            let Ok(start) = a.parse::<u64>() else {
                return Range::Ignore;
            };
            let end = if b.is_empty() {
                size.saturating_sub(1)
            } else {
                match b.parse::<u64>() {
                    Ok(e) if e >= start => e.min(size.saturating_sub(1)),
                    _ => return Range::Ignore,
                }
            };
            (start, end)
        }
    };
    if size == 0 || parsed.0 >= size {
        return Range::Unsatisfiable;
    }
    Range::Bytes(parsed.0, parsed.1)
}

/// `POST /files`: write one or more files.
pub async fn upload(
    State(state): State<Arc<AgentState>>,
    Query(q): Query<FilesQuery>,
    req: Request,
) -> Response {
    match upload_inner(&state, q, req).await {
        Ok(written) => (StatusCode::OK, axum::Json(written)).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn upload_inner(
    state: &AgentState,
    q: FilesQuery,
    req: Request,
) -> Result<Vec<WrittenFile>, HttpFail> {
    let headers = req.headers().clone();
    match headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
    {
        None | Some("") | Some("identity") => {}
        Some(other) => {
            return Err(bad(format!(
                "Content-Encoding {other} is not supported by this agent; send the body uncompressed"
            )));
        }
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let media = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let body = req.into_body().into_data_stream();
    if media == "application/octet-stream" {
        let raw = q.path.ok_or_else(|| {
            bad("the path query parameter is required for an application/octet-stream upload")
        })?;
        let dest = state
            .conf
            .resolve(&raw, Follow::Yes)
            .map_err(|e| bad(e.to_string()))?;
        write_atomic(&dest, body, true).await?;
        return Ok(vec![written(&dest)]);
    }
    if !media.starts_with("multipart/") {
        return Err(bad(format!(
            "unsupported content type {content_type:?}: expected multipart/form-data or application/octet-stream"
        )));
    }
    let boundary = multer::parse_boundary(&content_type)
        .map_err(|e| bad(format!("invalid multipart body: {e}")))?;
    let mut multipart = multer::Multipart::new(body, boundary);
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    let mut writing: Vec<tokio::task::JoinHandle<Result<(), HttpFail>>> = Vec::new();
    loop {
        let field = match multipart.next_field().await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) => return Err(bad(format!("invalid multipart body: {e}"))),
        };
        if field.name() != Some("file") {
            continue;
        }
        let raw = match (&q.path, field.file_name()) {
            (Some(p), _) => p.clone(),
            (None, Some(f)) if !f.is_empty() => f.to_string(),
            _ => {
                return Err(bad(
                    "a `file` part has no filename and no path query parameter was given",
                ));
            }
        };
        let dest = state
            .conf
            .resolve(&raw, Follow::Yes)
            .map_err(|e| bad(e.to_string()))?;
        if !seen.insert(dest.clone()) {
            return Err(bad(format!(
                "you cannot upload multiple files to the same path '{}' in one upload request",
                dest.display()
            )));
        }
        // Small files (most of a live-sync batch) are buffered and written off the async
        // threads, several at once; larger ones are streamed.
        let mut field = field;
        let mut head: Vec<Bytes> = Vec::new();
        let mut size = 0usize;
        let complete = loop {
            match field.chunk().await {
                Ok(Some(c)) => {
                    size += c.len();
                    head.push(c);
                    if size > SMALL_FILE {
                        break false;
                    }
                }
                Ok(None) => break true,
                Err(e) => return Err(bad(format!("reading the upload body failed: {e}"))),
            }
        };
        if complete {
            if writing.len() >= WRITES_IN_FLIGHT {
                join_write(writing.remove(0)).await?;
            }
            let d = dest.clone();
            writing.push(tokio::task::spawn_blocking(move || write_small(&d, &head)));
        } else {
            let rest =
                futures::stream::iter(head.into_iter().map(Ok::<_, multer::Error>)).chain(field);
            write_atomic(&dest, rest, false).await?;
        }
        out.push(written(&dest));
    }
    for w in writing {
        join_write(w).await?;
    }
    Ok(out)
}

/// Multipart files up to this size are buffered and written in one blocking step.
const SMALL_FILE: usize = 256 * 1024;
/// How many buffered files are written at once.
const WRITES_IN_FLIGHT: usize = 8;

async fn join_write(h: tokio::task::JoinHandle<Result<(), HttpFail>>) -> Result<(), HttpFail> {
    h.await
        .map_err(|e| HttpFail(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
}

/// [`write_atomic`] for a file already in memory, without fsync, as one blocking call.
fn write_small(dest: &Path, parts: &[Bytes]) -> Result<(), HttpFail> {
    use std::io::Write;
    let parent = dest.parent().ok_or_else(|| bad("cannot write to /"))?;
    let mode = match std::fs::metadata(dest) {
        Ok(m) if m.is_dir() => return Err(bad(format!("path {} is a directory", dest.display()))),
        Ok(m) => m.permissions().mode() & 0o7777,
        Err(_) => {
            std::fs::create_dir_all(parent).map_err(|e| io_fail(parent, e))?;
            0o644
        }
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(UPLOAD_TMP_PREFIX)
        .tempfile_in(parent)
        .map_err(|e| io_fail(parent, e))?;
    for p in parts {
        tmp.write_all(p).map_err(|e| io_fail(dest, e))?;
    }
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(mode))
        .map_err(|e| io_fail(tmp.path(), e))?;
    tmp.persist(dest).map_err(|e| io_fail(dest, e.error))?;
    Ok(())
}

fn written(dest: &Path) -> WrittenFile {
    WrittenFile {
        path: dest.display().to_string(),
        name: dest
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        kind: "file".into(),
    }
}

/// Stream `chunks` into `dest` atomically (temp file + rename; readers see the old or the new
/// file, never a partial one); parents are created. `durable` also fsyncs the file and its
/// directory, so the write survives a power loss: done for single (octet-stream) uploads such as
/// bundles; multipart batches (many small source files from live sync) skip it, which makes them
/// an order of magnitude faster and only matters if the machine itself goes down.
pub async fn write_atomic<S, E>(dest: &Path, chunks: S, durable: bool) -> Result<u64, HttpFail>
where
    S: Stream<Item = Result<Bytes, E>>,
    E: std::fmt::Display,
{
    let parent: PathBuf = dest
        .parent()
        .ok_or_else(|| bad("cannot write to /"))?
        .to_path_buf();
    tokio::fs::create_dir_all(&parent)
        .await
        .map_err(|e| io_fail(&parent, e))?;
    let mode = match tokio::fs::metadata(dest).await {
        Ok(m) if m.is_dir() => return Err(bad(format!("path {} is a directory", dest.display()))),
        Ok(m) => m.permissions().mode() & 0o7777,
        Err(_) => 0o644,
    };
    let p2 = parent.clone();
    let tmp = tokio::task::spawn_blocking(move || {
        tempfile::Builder::new()
            .prefix(UPLOAD_TMP_PREFIX)
            .tempfile_in(&p2)
    })
    .await
    .map_err(|e| HttpFail(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
    .map_err(|e| io_fail(&parent, e))?;
    let mut file = tokio::fs::File::from_std(
        tmp.as_file()
            .try_clone()
            .map_err(|e| io_fail(tmp.path(), e))?,
    );
    let mut total = 0u64;
    let mut chunks = std::pin::pin!(chunks);
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.map_err(|e| bad(format!("reading the upload body failed: {e}")))?;
        file.write_all(&chunk).await.map_err(|e| io_fail(dest, e))?;
        total += chunk.len() as u64;
    }
    file.flush().await.map_err(|e| io_fail(dest, e))?;
    if durable {
        file.sync_all().await.map_err(|e| io_fail(dest, e))?;
    }
    drop(file);
    let dest = dest.to_path_buf();
    tokio::task::spawn_blocking(move || -> Result<(), HttpFail> {
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(mode))
            .map_err(|e| io_fail(tmp.path(), e))?;
        tmp.persist(&dest).map_err(|e| io_fail(&dest, e.error))?;
        if durable && let Ok(d) = std::fs::File::open(&parent) {
            let _ = d.sync_all();
        }
        Ok(())
    })
    .await
    .map_err(|e| HttpFail(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))??;
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_follow_rfc_7233() {
        assert_eq!(parse_range("bytes=0-9", 100), Range::Bytes(0, 9));
        assert_eq!(parse_range("bytes=90-", 100), Range::Bytes(90, 99));
        assert_eq!(parse_range("bytes=-10", 100), Range::Bytes(90, 99));
        assert_eq!(parse_range("bytes=50-500", 100), Range::Bytes(50, 99));
        assert_eq!(parse_range("bytes=100-", 100), Range::Unsatisfiable);
        assert_eq!(parse_range("bytes=0-1,5-6", 100), Range::Ignore);
        assert_eq!(parse_range("items=0-1", 100), Range::Ignore);
        assert_eq!(parse_range("bytes=9-3", 100), Range::Ignore);
    }
}
