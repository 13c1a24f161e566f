//! envd's Connect-RPC messages in their canonical proto3 JSON form.
//!
//! Field names are lowerCamelCase on output; snake_case is accepted on input. `bytes` travel as
//! base64, `int64` as strings, enums as their proto names (numbers accepted), and oneofs as a
//! single key, exactly as Go's protojson produces them.

use std::collections::BTreeMap;

use base64::Engine;
use bytes::Bytes;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

// ---------------------------------------------------------------- scalar helpers

/// `bytes` fields: standard base64 on output; standard or URL-safe, padded or not, on input.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct B64(pub Bytes);

impl Serialize for B64 {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(&self.0))
    }
}

impl<'de> Deserialize<'de> for B64 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        decode_b64(&s)
            .map(|v| B64(Bytes::from(v)))
            .map_err(serde::de::Error::custom)
    }
}

/// Decode base64 the way protojson does: either alphabet, padding optional.
pub fn decode_b64(s: &str) -> Result<Vec<u8>, String> {
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    let trimmed = s.trim_end_matches('=');
    STANDARD
        .decode(s)
        .or_else(|_| STANDARD_NO_PAD.decode(trimmed))
        .or_else(|_| URL_SAFE.decode(s))
        .or_else(|_| URL_SAFE_NO_PAD.decode(trimmed))
        .map_err(|e| format!("invalid base64: {e}"))
}

/// `int64` fields: a JSON string on output; string or number on input.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct I64(pub i64);

impl Serialize for I64 {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0.to_string())
    }
}

impl<'de> Deserialize<'de> for I64 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Either {
            S(String),
            N(i64),
        }
        match Either::deserialize(d)? {
            Either::N(n) => Ok(I64(n)),
            Either::S(s) => s.parse().map(I64).map_err(serde::de::Error::custom),
        }
    }
}

/// Implements proto enum JSON (name on output, name or number on input).
macro_rules! proto_enum {
    ($(#[$m:meta])* $name:ident { $($variant:ident = $num:expr => $text:expr),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
        pub enum $name { #[default] $($variant),+ }

        impl $name {
            /// The proto enum name.
            pub fn as_str(self) -> &'static str { match self { $($name::$variant => $text),+ } }
            /// The proto enum number.
            pub fn number(self) -> i32 { match self { $($name::$variant => $num),+ } }
            fn from_number(n: i64) -> Option<Self> { match n { $(x if x == $num => Some($name::$variant),)+ _ => None } }
            fn from_name(s: &str) -> Option<Self> { match s { $($text => Some($name::$variant),)+ _ => None } }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> { s.serialize_str(self.as_str()) }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let v = serde_json::Value::deserialize(d)?;
                let parsed = match &v {
                    serde_json::Value::String(s) => $name::from_name(s),
                    serde_json::Value::Number(n) => n.as_i64().and_then($name::from_number),
                    serde_json::Value::Null => Some($name::default()),
                    _ => None,
                };
                parsed.ok_or_else(|| serde::de::Error::custom(format!("invalid {} value: {v}", stringify!($name))))
            }
        }
    };
}

// ---------------------------------------------------------------- process service

/// `process.ProcessConfig`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProcessConfig {
    pub cmd: String,
    #[serde(default)]
    pub args: Vec<String>,
    #[serde(default)]
    pub envs: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
}

/// `process.PTY.Size`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PtySize {
    #[serde(default)]
    pub cols: u32,
    #[serde(default)]
    pub rows: u32,
}

/// `process.PTY`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pty {
    #[serde(default)]
    pub size: PtySize,
}

/// `process.StartRequest`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StartRequest {
    pub process: ProcessConfig,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pty: Option<Pty>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    /// Whether a stdin pipe is kept open (absent = true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdin: Option<bool>,
}

/// `process.ProcessSelector` (oneof pid | tag).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ProcessSelector {
    Pid(u32),
    Tag(String),
}

/// `process.ProcessInfo`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProcessInfo {
    pub config: ProcessConfig,
    pub pid: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
}

/// `process.ListResponse`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListResponse {
    #[serde(default)]
    pub processes: Vec<ProcessInfo>,
}

/// `process.ProcessEvent.StartEvent`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StartEvent {
    #[serde(default)]
    pub pid: u32,
}

/// `process.ProcessEvent.DataEvent` (oneof output).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum DataEvent {
    Stdout(B64),
    Stderr(B64),
    Pty(B64),
}

/// `process.ProcessEvent.EndEvent`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EndEvent {
    #[serde(default, alias = "exit_code")]
    pub exit_code: i32,
    #[serde(default)]
    pub exited: bool,
    #[serde(default)]
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Empty message (`keepalive`, `{}` responses).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Empty {}

/// `process.ProcessEvent` (oneof event).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ProcessEvent {
    Start(StartEvent),
    Data(DataEvent),
    End(EndEvent),
    Keepalive(Empty),
}

/// `process.StartResponse` / `process.ConnectResponse`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StartResponse {
    pub event: ProcessEvent,
}

/// `process.ConnectRequest`, `process.CloseStdinRequest`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SelectRequest {
    pub process: ProcessSelector,
}

/// `process.ProcessInput` (oneof input).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ProcessInput {
    Stdin(B64),
    Pty(B64),
}

/// `process.SendInputRequest`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendInputRequest {
    pub process: ProcessSelector,
    pub input: ProcessInput,
}

/// `process.UpdateRequest` (PTY resize).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdateRequest {
    pub process: ProcessSelector,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pty: Option<Pty>,
}

/// `process.StreamInputRequest` (oneof event).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum StreamInputEvent {
    Start(SelectRequest),
    Data(StreamInputData),
    Keepalive(Empty),
}

/// `process.StreamInputRequest.DataEvent`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamInputData {
    pub input: ProcessInput,
}

/// `process.StreamInputRequest`. Its oneof sits directly in the message, so the JSON form is
/// `{"start":{...}}` / `{"data":{...}}` / `{"keepalive":{}}` (no `event` wrapper).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct StreamInputRequest {
    pub event: StreamInputEvent,
}

proto_enum! {
    /// `process.Signal`.
    Signal {
        Unspecified = 0 => "SIGNAL_UNSPECIFIED",
        Sigterm = 15 => "SIGNAL_SIGTERM",
        Sigkill = 9 => "SIGNAL_SIGKILL",
    }
}

/// `process.SendSignalRequest`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendSignalRequest {
    pub process: ProcessSelector,
    #[serde(default)]
    pub signal: Signal,
}

// ---------------------------------------------------------------- filesystem service

proto_enum! {
    /// `filesystem.FileType`.
    FileType {
        Unspecified = 0 => "FILE_TYPE_UNSPECIFIED",
        File = 1 => "FILE_TYPE_FILE",
        Directory = 2 => "FILE_TYPE_DIRECTORY",
        Symlink = 3 => "FILE_TYPE_SYMLINK",
    }
}

proto_enum! {
    /// `filesystem.EventType`.
    EventType {
        Unspecified = 0 => "EVENT_TYPE_UNSPECIFIED",
        Create = 1 => "EVENT_TYPE_CREATE",
        Write = 2 => "EVENT_TYPE_WRITE",
        Remove = 3 => "EVENT_TYPE_REMOVE",
        Rename = 4 => "EVENT_TYPE_RENAME",
        Chmod = 5 => "EVENT_TYPE_CHMOD",
    }
}

/// `filesystem.EntryInfo`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EntryInfo {
    #[serde(default)]
    pub name: String,
    #[serde(default, rename = "type")]
    pub file_type: FileType,
    #[serde(default)]
    pub path: String,
    #[serde(default)]
    pub size: I64,
    #[serde(default)]
    pub mode: u32,
    #[serde(default)]
    pub permissions: String,
    #[serde(default)]
    pub owner: String,
    #[serde(default)]
    pub group: String,
    /// RFC 3339 UTC.
    #[serde(
        default,
        alias = "modified_time",
        skip_serializing_if = "Option::is_none"
    )]
    pub modified_time: Option<String>,
    #[serde(
        default,
        alias = "symlink_target",
        skip_serializing_if = "Option::is_none"
    )]
    pub symlink_target: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
    #[serde(default, alias = "is_symlink")]
    pub is_symlink: bool,
}

/// `filesystem.StatRequest`, `MakeDirRequest`, `RemoveRequest`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PathRequest {
    #[serde(default)]
    pub path: String,
}

/// `filesystem.StatResponse`, `MakeDirResponse`, `MoveResponse`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntryResponse {
    pub entry: EntryInfo,
}

/// `filesystem.ListDirRequest`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListDirRequest {
    #[serde(default)]
    pub path: String,
    /// 0 means 1.
    #[serde(default)]
    pub depth: u32,
}

/// `filesystem.ListDirResponse`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListDirResponse {
    #[serde(default)]
    pub entries: Vec<EntryInfo>,
}

/// `filesystem.MoveRequest`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MoveRequest {
    #[serde(default)]
    pub source: String,
    #[serde(default)]
    pub destination: String,
}

/// `filesystem.WatchDirRequest` / `CreateWatcherRequest`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WatchDirRequest {
    #[serde(default)]
    pub path: String,
    #[serde(default)]
    pub recursive: bool,
    #[serde(default, alias = "include_entry")]
    pub include_entry: bool,
    #[serde(default, alias = "allow_network_mounts")]
    pub allow_network_mounts: bool,
}

/// `filesystem.FilesystemEvent`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FilesystemEvent {
    pub name: String,
    #[serde(rename = "type")]
    pub event_type: EventType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entry: Option<EntryInfo>,
}

/// One entry of the `POST /files` response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WrittenFile {
    pub path: String,
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
}

/// Error body of the plain HTTP endpoints: `{"code": <status>, "message": "..."}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpError {
    pub code: u16,
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_event_round_trips_in_protojson_shape() {
        let ev = StartResponse {
            event: ProcessEvent::Data(DataEvent::Stdout(B64(Bytes::from_static(b"hi\n")))),
        };
        let s = serde_json::to_string(&ev).unwrap();
        assert_eq!(s, r#"{"event":{"data":{"stdout":"aGkK"}}}"#);
        let back: StartResponse = serde_json::from_str(&s).unwrap();
        assert_eq!(back, ev);
    }

    #[test]
    fn end_event_accepts_snake_case_and_missing_defaults() {
        let e: StartResponse =
            serde_json::from_str(r#"{"event":{"end":{"exit_code":3,"status":"exit status 3"}}}"#)
                .unwrap();
        assert_eq!(
            e.event,
            ProcessEvent::End(EndEvent {
                exit_code: 3,
                exited: false,
                status: "exit status 3".into(),
                error: None
            })
        );
        let e: StartResponse = serde_json::from_str(r#"{"event":{"end":{}}}"#).unwrap();
        assert!(matches!(
            e.event,
            ProcessEvent::End(EndEvent { exit_code: 0, .. })
        ));
    }

    #[test]
    fn enums_accept_names_and_numbers_and_int64_accepts_strings() {
        let r: SendSignalRequest =
            serde_json::from_str(r#"{"process":{"pid":4},"signal":9}"#).unwrap();
        assert_eq!(r.signal, Signal::Sigkill);
        let r: SendSignalRequest =
            serde_json::from_str(r#"{"process":{"tag":"x"},"signal":"SIGNAL_SIGTERM"}"#).unwrap();
        assert_eq!(r.signal, Signal::Sigterm);
        let e: EntryInfo = serde_json::from_str(
            r#"{"name":"a","type":"FILE_TYPE_FILE","size":"12","is_symlink":true}"#,
        )
        .unwrap();
        assert_eq!(
            (e.file_type, e.size.0, e.is_symlink),
            (FileType::File, 12, true)
        );
        assert_eq!(serde_json::to_value(e).unwrap()["size"], "12");
        assert!(
            serde_json::from_str::<SendSignalRequest>(r#"{"process":{"pid":4},"signal":"SIGHUP"}"#)
                .is_err()
        );
    }

    #[test]
    fn stream_input_oneof_is_not_wrapped() {
        let r: StreamInputRequest =
            serde_json::from_str(r#"{"start":{"process":{"pid":7}}}"#).unwrap();
        assert_eq!(
            r.event,
            StreamInputEvent::Start(SelectRequest {
                process: ProcessSelector::Pid(7)
            })
        );
        let d = StreamInputRequest {
            event: StreamInputEvent::Data(StreamInputData {
                input: ProcessInput::Stdin(B64(Bytes::from_static(b"hi"))),
            }),
        };
        assert_eq!(
            serde_json::to_string(&d).unwrap(),
            r#"{"data":{"input":{"stdin":"aGk="}}}"#
        );
    }

    #[test]
    fn base64_accepts_unpadded_and_url_safe() {
        assert_eq!(decode_b64("aGk").unwrap(), b"hi");
        assert_eq!(decode_b64("-_8=").unwrap(), vec![0xfb, 0xff]);
        assert!(decode_b64("***").is_err());
    }
}
