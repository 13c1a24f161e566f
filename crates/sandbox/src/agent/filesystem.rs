//! The `filesystem.Filesystem` service: Stat, ListDir, MakeDir, Move, Remove, all confined to
//! the sandbox root. (File contents travel over `/files`, never over RPC; the watch methods are
//! in `watch.rs`.)

use std::fs::Metadata;
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::body::Body;
use axum::http::HeaderMap;
use axum::response::Response;

use super::paths::{Confinement, Follow, PathError};
use super::rpc::{self, RpcResult, err};
use crate::envd::connect::{CONTENT_TYPE_UNARY, Code, ConnectError};
use crate::envd::proto::{
    Empty, EntryInfo, EntryResponse, FileType, I64, ListDirRequest, ListDirResponse, MoveRequest,
    PathRequest,
};

fn to_json<T: serde::Serialize>(v: RpcResult<T>) -> RpcResult<serde_json::Value> {
    v.map(|x| serde_json::to_value(x).expect("protocol messages serialize"))
}

/// Map a confinement refusal to `invalid_argument`.
pub fn path_err(e: PathError) -> ConnectError {
    err(Code::InvalidArgument, e.to_string())
}

fn io_err(path: &Path, e: io::Error) -> ConnectError {
    let code = match e.kind() {
        io::ErrorKind::NotFound => Code::NotFound,
        io::ErrorKind::PermissionDenied => Code::PermissionDenied,
        io::ErrorKind::AlreadyExists => Code::AlreadyExists,
        _ if e.raw_os_error() == Some(libc::ENOTDIR) => Code::InvalidArgument,
        _ if e.raw_os_error() == Some(libc::ENOSPC) => Code::ResourceExhausted,
        _ => Code::Internal,
    };
    err(code, format!("{}: {e}", path.display()))
}

/// Dispatch `/filesystem.Filesystem/<method>`.
pub async fn handle(
    conf: Arc<Confinement>,
    method: &str,
    headers: HeaderMap,
    body: Body,
) -> Response {
    match method {
        "Stat" | "ListDir" | "MakeDir" | "Move" | "Remove" => {}
        other => return rpc::unknown_method("filesystem.Filesystem", other),
    }
    if !rpc::is_unary_json(&headers) {
        return rpc::unsupported_media(CONTENT_TYPE_UNARY, &headers);
    }
    let body = match rpc::read_body(body, rpc::MAX_REQUEST).await {
        Ok(b) => b,
        Err(e) => return rpc::error_response(&e),
    };
    let method = method.to_string();
    let result = tokio::task::spawn_blocking(move || -> RpcResult<serde_json::Value> {
        match method.as_str() {
            "Stat" => to_json(
                rpc::decode_unary::<PathRequest>(&headers, &body)
                    .and_then(|r| stat(&conf, &r.path)),
            ),
            "ListDir" => to_json(
                rpc::decode_unary::<ListDirRequest>(&headers, &body)
                    .and_then(|r| list_dir(&conf, &r)),
            ),
            "MakeDir" => to_json(
                rpc::decode_unary::<PathRequest>(&headers, &body)
                    .and_then(|r| make_dir(&conf, &r.path)),
            ),
            "Move" => to_json(
                rpc::decode_unary::<MoveRequest>(&headers, &body)
                    .and_then(|r| move_entry(&conf, &r)),
            ),
            _ => to_json(
                rpc::decode_unary::<PathRequest>(&headers, &body)
                    .and_then(|r| remove(&conf, &r.path)),
            ),
        }
    })
    .await
    .unwrap_or_else(|e| Err(err(Code::Internal, format!("filesystem task failed: {e}"))));
    rpc::unary_response(result)
}

fn stat(conf: &Confinement, path: &str) -> RpcResult<EntryResponse> {
    // Refuse links that escape, even though the entry reported is the link itself.
    conf.resolve(path, Follow::Yes).map_err(path_err)?;
    let p = conf.resolve(path, Follow::No).map_err(path_err)?;
    let meta = std::fs::symlink_metadata(&p).map_err(|e| io_err(&p, e))?;
    Ok(EntryResponse {
        entry: entry_info(conf, &p, &meta),
    })
}

fn list_dir(conf: &Confinement, req: &ListDirRequest) -> RpcResult<ListDirResponse> {
    let dir = conf.resolve(&req.path, Follow::Yes).map_err(path_err)?;
    let meta = std::fs::metadata(&dir).map_err(|e| io_err(&dir, e))?;
    if !meta.is_dir() {
        return Err(err(
            Code::InvalidArgument,
            format!("path {} is not a directory", dir.display()),
        ));
    }
    let depth = req.depth.max(1);
    let mut entries = Vec::new();
    walk(conf, &dir, depth, &mut entries)?;
    Ok(ListDirResponse { entries })
}

fn walk(conf: &Confinement, dir: &Path, depth: u32, out: &mut Vec<EntryInfo>) -> RpcResult<()> {
    let mut children: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| io_err(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    children.sort();
    for child in children {
        let Ok(meta) = std::fs::symlink_metadata(&child) else {
            continue;
        };
        out.push(entry_info(conf, &child, &meta));
        if depth > 1 && meta.is_dir() {
            walk(conf, &child, depth - 1, out)?;
        }
    }
    Ok(())
}

fn make_dir(conf: &Confinement, path: &str) -> RpcResult<EntryResponse> {
    let p = conf.resolve(path, Follow::Yes).map_err(path_err)?;
    match std::fs::metadata(&p) {
        Ok(m) if m.is_dir() => {
            return Err(err(
                Code::AlreadyExists,
                format!("directory {} already exists", p.display()),
            ));
        }
        Ok(_) => {
            return Err(err(
                Code::InvalidArgument,
                format!("path {} already exists and is not a directory", p.display()),
            ));
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err(&p, e)),
    }
    std::fs::create_dir_all(&p).map_err(|e| io_err(&p, e))?;
    let meta = std::fs::symlink_metadata(&p).map_err(|e| io_err(&p, e))?;
    Ok(EntryResponse {
        entry: entry_info(conf, &p, &meta),
    })
}

fn move_entry(conf: &Confinement, req: &MoveRequest) -> RpcResult<EntryResponse> {
    let src = conf.resolve(&req.source, Follow::No).map_err(path_err)?;
    let dst = conf
        .resolve(&req.destination, Follow::No)
        .map_err(path_err)?;
    if src == conf.root() {
        return Err(err(
            Code::InvalidArgument,
            "refusing to move the sandbox root",
        ));
    }
    std::fs::symlink_metadata(&src).map_err(|e| io_err(&src, e))?;
    if let Some(parent) = dst.parent() {
        std::fs::create_dir_all(parent).map_err(|e| io_err(parent, e))?;
    }
    std::fs::rename(&src, &dst).map_err(|e| io_err(&dst, e))?;
    let meta = std::fs::symlink_metadata(&dst).map_err(|e| io_err(&dst, e))?;
    Ok(EntryResponse {
        entry: entry_info(conf, &dst, &meta),
    })
}

fn remove(conf: &Confinement, path: &str) -> RpcResult<Empty> {
    let p = conf.resolve(path, Follow::No).map_err(path_err)?;
    if p == conf.root() {
        return Err(err(
            Code::InvalidArgument,
            format!("refusing to remove the sandbox root {}", p.display()),
        ));
    }
    let r = match std::fs::symlink_metadata(&p) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Empty {}),
        Err(e) => Err(e),
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(&p),
        Ok(_) => std::fs::remove_file(&p),
    };
    match r {
        Ok(()) => Ok(Empty {}),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Empty {}),
        Err(e) => Err(io_err(&p, e)),
    }
}

/// Describe `path` (not followed) the way envd does: a symlink reports its target's type and
/// `isSymlink`; a link that leaves the root or dangles reports `FILE_TYPE_SYMLINK`.
pub fn entry_info(conf: &Confinement, path: &Path, lmeta: &Metadata) -> EntryInfo {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "/".into());
    let mut info = EntryInfo {
        name,
        path: path.display().to_string(),
        owner: user_name(lmeta.uid()),
        group: group_name(lmeta.gid()),
        ..Default::default()
    };
    let mut meta = lmeta.clone();
    if lmeta.file_type().is_symlink() {
        info.is_symlink = true;
        let target = conf.resolve(&path.to_string_lossy(), Follow::Yes).ok();
        match target
            .as_ref()
            .and_then(|t| std::fs::metadata(t).ok().map(|m| (t, m)))
        {
            Some((t, m)) => {
                info.symlink_target = Some(t.display().to_string());
                meta = m;
            }
            None => {
                info.symlink_target = std::fs::read_link(path)
                    .ok()
                    .map(|t| t.display().to_string());
                info.file_type = FileType::Symlink;
            }
        }
    }
    if info.file_type != FileType::Symlink {
        info.file_type = if meta.is_dir() {
            FileType::Directory
        } else {
            FileType::File
        };
    }
    info.size = I64(meta.len() as i64);
    info.mode = meta.permissions().mode() & 0o7777;
    info.permissions = permissions_string(lmeta);
    info.modified_time = meta.modified().ok().and_then(|t| {
        time::OffsetDateTime::from(t)
            .format(&time::format_description::well_known::Rfc3339)
            .ok()
    });
    info
}

/// Go's `FileMode.String()` for the common cases (`-rw-r--r--`, `drwxr-xr-x`, `Lrwxrwxrwx`).
fn permissions_string(meta: &Metadata) -> String {
    let ft = meta.file_type();
    let kind = if ft.is_dir() {
        'd'
    } else if ft.is_symlink() {
        'L'
    } else if ft.is_file() {
        '-'
    } else {
        '?'
    };
    let mode = meta.permissions().mode();
    let mut s = String::with_capacity(10);
    s.push(kind);
    for (i, c) in "rwxrwxrwx".chars().enumerate() {
        s.push(if mode & (1 << (8 - i)) != 0 { c } else { '-' });
    }
    s
}

fn user_name(uid: u32) -> String {
    let mut buf = vec![0 as libc::c_char; 4096];
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: getpwuid_r writes into pwd/buf (sizes given) and sets result.
    let rc = unsafe { libc::getpwuid_r(uid, &mut pwd, buf.as_mut_ptr(), buf.len(), &mut result) };
    if rc == 0 && !result.is_null() && !pwd.pw_name.is_null() {
        // SAFETY: pw_name points into buf, NUL-terminated.
        return unsafe { std::ffi::CStr::from_ptr(pwd.pw_name) }
            .to_string_lossy()
            .into_owned();
    }
    uid.to_string()
}

fn group_name(gid: u32) -> String {
    let mut buf = vec![0 as libc::c_char; 4096];
    let mut grp: libc::group = unsafe { std::mem::zeroed() };
    let mut result: *mut libc::group = std::ptr::null_mut();
    // SAFETY: getgrgid_r writes into grp/buf (sizes given) and sets result.
    let rc = unsafe { libc::getgrgid_r(gid, &mut grp, buf.as_mut_ptr(), buf.len(), &mut result) };
    if rc == 0 && !result.is_null() && !grp.gr_name.is_null() {
        // SAFETY: gr_name points into buf, NUL-terminated.
        return unsafe { std::ffi::CStr::from_ptr(grp.gr_name) }
            .to_string_lossy()
            .into_owned();
    }
    gid.to_string()
}
