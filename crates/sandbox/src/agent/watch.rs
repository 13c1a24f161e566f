//! Directory watching, as envd offers it: the `WatchDir` stream (E2B's async SDK) and the
//! `CreateWatcher` / `GetWatcherEvents` / `RemoveWatcher` trio (the sync SDK polls with them).
//!
//! Both are built on `notify` (inotify on Linux). Events name the changed path relative to the
//! watched directory, with envd's event types: CREATE, WRITE, REMOVE, RENAME (for the old name of
//! a rename; the new name arrives as CREATE), CHMOD. Paths are confined to the sandbox root like
//! every other call. Watchers cost kernel resources, so an agent keeps at most
//! [`MAX_WATCHERS`] at a time, and a polled watcher buffers at most [`MAX_PENDING`] events
//! between two polls (the oldest are dropped first, with a warning in the agent's log).

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::http::HeaderMap;
use axum::response::Response;
use notify::event::{ModifyKind, RenameMode};
use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use super::files::UPLOAD_TMP_PREFIX;
use super::filesystem::{entry_info, path_err};
use super::paths::{Confinement, Follow};
use super::rpc::{self, RpcResult, err};
use crate::envd::connect::{CONTENT_TYPE_STREAM, CONTENT_TYPE_UNARY, Code, ConnectError};
use crate::envd::proto::{Empty, EventType, FilesystemEvent, WatchDirRequest};

/// Watchers (streams and polled ones together) one agent keeps at a time.
pub const MAX_WATCHERS: usize = 64;
/// Events a polled watcher holds between two `GetWatcherEvents` calls.
pub const MAX_PENDING: usize = 10_000;

/// `filesystem.WatchDirResponse`: `start` first, then `filesystem` events and `keepalive`s.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum WatchDirResponse {
    Start(Empty),
    Filesystem(Box<FilesystemEvent>),
    Keepalive(Empty),
}

/// `filesystem.CreateWatcherResponse`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateWatcherResponse {
    pub watcher_id: String,
}

/// `GetWatcherEventsRequest` / `RemoveWatcherRequest`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WatcherIdRequest {
    #[serde(default, alias = "watcher_id")]
    pub watcher_id: String,
}

/// `filesystem.GetWatcherEventsResponse`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GetWatcherEventsResponse {
    pub events: Vec<FilesystemEvent>,
}

/// The watchers of one agent.
pub struct Watchers {
    conf: Arc<Confinement>,
    keepalive_default: Duration,
    /// Every live watcher (streamed or polled) counts against [`MAX_WATCHERS`].
    live: Mutex<usize>,
    polled: Mutex<HashMap<String, Polled>>,
}

/// A watcher created with `CreateWatcher`: its events wait for the next poll.
struct Polled {
    pending: Arc<Mutex<VecDeque<FilesystemEvent>>>,
    _watch: Watch,
}

/// A running `notify` watcher; dropping it stops watching and frees its slot.
struct Watch {
    _inner: RecommendedWatcher,
    _slot: Slot,
}

/// One of the [`MAX_WATCHERS`] places; given back on drop.
struct Slot(Arc<Watchers>);

impl Drop for Slot {
    fn drop(&mut self) {
        *self.0.live.lock().expect("watchers lock") -= 1;
    }
}

impl Watchers {
    pub fn new(conf: Arc<Confinement>, keepalive_default: Duration) -> Arc<Watchers> {
        Arc::new(Watchers {
            conf,
            keepalive_default,
            live: Mutex::new(0),
            polled: Mutex::new(HashMap::new()),
        })
    }

    /// Dispatch one of the four watch methods of `filesystem.Filesystem`.
    pub async fn handle(self: Arc<Self>, method: &str, headers: HeaderMap, body: Body) -> Response {
        if method == "WatchDir" {
            if !rpc::is_stream_json(&headers) {
                return rpc::unsupported_media(CONTENT_TYPE_STREAM, &headers);
            }
            return self.watch_dir(headers, body).await;
        }
        if !rpc::is_unary_json(&headers) {
            return rpc::unsupported_media(CONTENT_TYPE_UNARY, &headers);
        }
        let body = match rpc::read_body(body, rpc::MAX_REQUEST).await {
            Ok(b) => b,
            Err(e) => return rpc::error_response(&e),
        };
        match method {
            "CreateWatcher" => rpc::unary_response(
                rpc::decode_unary::<WatchDirRequest>(&headers, &body).and_then(|r| self.create(&r)),
            ),
            "GetWatcherEvents" => rpc::unary_response(
                rpc::decode_unary::<WatcherIdRequest>(&headers, &body)
                    .and_then(|r| self.take_events(&r.watcher_id)),
            ),
            _ => rpc::unary_response(
                rpc::decode_unary::<WatcherIdRequest>(&headers, &body)
                    .and_then(|r| self.remove(&r.watcher_id)),
            ),
        }
    }

    async fn watch_dir(self: Arc<Self>, headers: HeaderMap, body: Body) -> Response {
        let req: WatchDirRequest = match rpc::decode_stream_request(&headers, body).await {
            Ok(r) => r,
            Err(e) => return rpc::stream_error(e),
        };
        let keepalive = headers
            .get("keepalive-ping-interval")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .filter(|s| *s > 0)
            .map(Duration::from_secs)
            .unwrap_or(self.keepalive_default);
        let (tx, mut rx) = mpsc::unbounded_channel();
        let watch = match self.start(&req, move |ev| {
            let _ = tx.send(ev);
        }) {
            Ok(w) => w,
            Err(e) => return rpc::stream_error(e),
        };
        let (sender, resp) = rpc::stream_response();
        tokio::spawn(async move {
            // The watcher lives as long as the stream: a client that goes away ends both.
            let _watch = watch;
            if !sender.send(&WatchDirResponse::Start(Empty {})).await {
                return;
            }
            loop {
                let msg = match tokio::time::timeout(keepalive, rx.recv()).await {
                    Err(_) => WatchDirResponse::Keepalive(Empty {}),
                    Ok(Some(ev)) => WatchDirResponse::Filesystem(Box::new(ev)),
                    Ok(None) => break,
                };
                if !sender.send(&msg).await {
                    return;
                }
            }
            sender
                .finish(Some(err(Code::Internal, "the directory watcher stopped")))
                .await;
        });
        resp
    }

    fn create(self: &Arc<Self>, req: &WatchDirRequest) -> RpcResult<CreateWatcherResponse> {
        let pending = Arc::new(Mutex::new(VecDeque::new()));
        let sink = pending.clone();
        let watch = self.start(req, move |ev| {
            let mut q = sink.lock().expect("watcher queue lock");
            if q.len() == MAX_PENDING {
                q.pop_front();
                tracing::warn!("a polled watcher holds {MAX_PENDING} events; dropping the oldest");
            }
            q.push_back(ev);
        })?;
        let id = uuid::Uuid::new_v4().simple().to_string();
        self.polled.lock().expect("watchers lock").insert(
            id.clone(),
            Polled {
                pending,
                _watch: watch,
            },
        );
        Ok(CreateWatcherResponse { watcher_id: id })
    }

    fn take_events(&self, id: &str) -> RpcResult<GetWatcherEventsResponse> {
        let polled = self.polled.lock().expect("watchers lock");
        let w = polled
            .get(id)
            .ok_or_else(|| err(Code::NotFound, format!("watcher {id:?} not found")))?;
        let events = w
            .pending
            .lock()
            .expect("watcher queue lock")
            .drain(..)
            .collect();
        Ok(GetWatcherEventsResponse { events })
    }

    fn remove(&self, id: &str) -> RpcResult<Empty> {
        self.polled
            .lock()
            .expect("watchers lock")
            .remove(id)
            .map(|_| Empty {})
            .ok_or_else(|| err(Code::NotFound, format!("watcher {id:?} not found")))
    }

    /// Start watching `req.path`, handing each event to `emit`.
    fn start(
        self: &Arc<Self>,
        req: &WatchDirRequest,
        emit: impl Fn(FilesystemEvent) + Send + 'static,
    ) -> RpcResult<Watch> {
        let dir = self
            .conf
            .resolve(&req.path, Follow::Yes)
            .map_err(path_err)?;
        let meta = std::fs::metadata(&dir).map_err(|e| {
            let code = if e.kind() == std::io::ErrorKind::NotFound {
                Code::NotFound
            } else {
                Code::Internal
            };
            err(code, format!("{}: {e}", dir.display()))
        })?;
        if !meta.is_dir() {
            return Err(err(
                Code::InvalidArgument,
                format!("path {} is not a directory", dir.display()),
            ));
        }
        let slot = self.take_slot()?;
        let conf = self.conf.clone();
        let base = dir.clone();
        let include_entry = req.include_entry;
        let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
            let Ok(event) = res else { return };
            for ev in translate(&conf, &base, &event, include_entry) {
                emit(ev);
            }
        })
        .map_err(|e| watch_err(&dir, e))?;
        let mode = if req.recursive {
            RecursiveMode::Recursive
        } else {
            RecursiveMode::NonRecursive
        };
        watcher.watch(&dir, mode).map_err(|e| watch_err(&dir, e))?;
        Ok(Watch {
            _inner: watcher,
            _slot: slot,
        })
    }

    fn take_slot(self: &Arc<Self>) -> RpcResult<Slot> {
        let mut live = self.live.lock().expect("watchers lock");
        if *live >= MAX_WATCHERS {
            return Err(err(
                Code::ResourceExhausted,
                format!("this sandbox already has {MAX_WATCHERS} directory watchers; remove one"),
            ));
        }
        *live += 1;
        Ok(Slot(self.clone()))
    }
}

fn watch_err(dir: &Path, e: notify::Error) -> ConnectError {
    let code = match &e.kind {
        notify::ErrorKind::PathNotFound => Code::NotFound,
        notify::ErrorKind::MaxFilesWatch => Code::ResourceExhausted,
        _ => Code::Internal,
    };
    err(code, format!("cannot watch {}: {e}", dir.display()))
}

/// envd's events for one `notify` event under `base`.
fn translate(
    conf: &Confinement,
    base: &Path,
    event: &notify::Event,
    include_entry: bool,
) -> Vec<FilesystemEvent> {
    let kinds: Vec<(EventType, &PathBuf)> = match &event.kind {
        EventKind::Create(_) => event.paths.iter().map(|p| (EventType::Create, p)).collect(),
        EventKind::Remove(_) => event.paths.iter().map(|p| (EventType::Remove, p)).collect(),
        EventKind::Modify(ModifyKind::Metadata(_)) => {
            event.paths.iter().map(|p| (EventType::Chmod, p)).collect()
        }
        // inotify reports a rename as From and To events (and then Both, which repeats them).
        // The new name gets CREATE and, for a file, WRITE: its content arrived under that name
        // (uploads are written to a temporary file and renamed into place).
        EventKind::Modify(ModifyKind::Name(RenameMode::Both)) => Vec::new(),
        EventKind::Modify(ModifyKind::Name(RenameMode::To)) => event
            .paths
            .iter()
            .flat_map(|p| {
                let file = std::fs::symlink_metadata(p).is_ok_and(|m| m.is_file());
                std::iter::once((EventType::Create, p)).chain(file.then_some((EventType::Write, p)))
            })
            .collect(),
        EventKind::Modify(ModifyKind::Name(_)) => {
            event.paths.iter().map(|p| (EventType::Rename, p)).collect()
        }
        EventKind::Modify(_) => event.paths.iter().map(|p| (EventType::Write, p)).collect(),
        EventKind::Access(_) | EventKind::Any | EventKind::Other => Vec::new(),
    };
    kinds
        .into_iter()
        .filter_map(|(event_type, path)| {
            let name = path.strip_prefix(base).ok()?;
            if name.as_os_str().is_empty() {
                return None; // the watched directory itself
            }
            // The agent's own temporary upload files are not the user's.
            if name
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(UPLOAD_TMP_PREFIX))
            {
                return None;
            }
            let entry = include_entry
                .then(|| std::fs::symlink_metadata(path).ok())
                .flatten()
                .map(|meta| entry_info(conf, path, &meta));
            Some(FilesystemEvent {
                name: name.to_string_lossy().into_owned(),
                event_type,
                entry,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use notify::event::{CreateKind, DataChange};

    fn conf(root: &Path) -> Confinement {
        Confinement::new(root, None, None).unwrap()
    }

    #[test]
    fn notify_events_become_envd_events_relative_to_the_watched_dir() {
        let dir = tempfile::tempdir().unwrap();
        let c = conf(dir.path());
        let base = dir.path().join("w");
        let ev = |kind, paths: Vec<PathBuf>| notify::Event {
            kind,
            paths,
            attrs: Default::default(),
        };
        let one = |e: notify::Event| translate(&c, &base, &e, false);
        let created = one(ev(
            EventKind::Create(CreateKind::File),
            vec![base.join("a/b.txt")],
        ));
        assert_eq!(created[0].name, "a/b.txt");
        assert_eq!(created[0].event_type, EventType::Create);
        let written = one(ev(
            EventKind::Modify(ModifyKind::Data(DataChange::Content)),
            vec![base.join("x")],
        ));
        assert_eq!(written[0].event_type, EventType::Write);
        let from = one(ev(
            EventKind::Modify(ModifyKind::Name(RenameMode::From)),
            vec![base.join("old")],
        ));
        assert_eq!(from[0].event_type, EventType::Rename);
        let both = one(ev(
            EventKind::Modify(ModifyKind::Name(RenameMode::Both)),
            vec![base.join("old"), base.join("new")],
        ));
        assert!(both.is_empty(), "From and To already said it: {both:?}");
        let upload = one(ev(
            EventKind::Create(CreateKind::File),
            vec![base.join(format!("sub/{UPLOAD_TMP_PREFIX}x1"))],
        ));
        assert!(upload.is_empty(), "{upload:?}");
        assert!(
            one(ev(
                EventKind::Create(CreateKind::Folder),
                vec![base.clone()]
            ))
            .is_empty()
        );
        assert!(
            one(ev(
                EventKind::Access(notify::event::AccessKind::Any),
                vec![base.join("x")]
            ))
            .is_empty()
        );
    }

    #[test]
    fn watchers_are_limited_and_give_their_place_back() {
        let dir = tempfile::tempdir().unwrap();
        let w = Watchers::new(Arc::new(conf(dir.path())), Duration::from_secs(90));
        let req = WatchDirRequest {
            path: dir.path().display().to_string(),
            ..Default::default()
        };
        let held: Vec<_> = (0..MAX_WATCHERS)
            .map(|_| w.start(&req, |_| {}).unwrap())
            .collect();
        assert_eq!(*w.live.lock().unwrap(), MAX_WATCHERS);
        let e = w.start(&req, |_| {}).err().unwrap();
        assert_eq!(e.code, Code::ResourceExhausted);
        drop(held);
        assert_eq!(*w.live.lock().unwrap(), 0);
        assert!(w.start(&req, |_| {}).is_ok());
    }
}
