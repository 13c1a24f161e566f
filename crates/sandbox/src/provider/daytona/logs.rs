//! Daytona command logs: the WebSocket that replays and follows a session command's log, and the
//! demultiplexer for its stream markers. With the SDK version header the toolbox prefixes every
//! line with `01 01 01` (stdout) or `02 02 02` (stderr); a marker may be split across frames, so
//! up to two trailing bytes that could start one are held back until the next frame.

use futures::StreamExt;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use super::api::chain;
use crate::provider::SandboxError;

/// stdout marker.
pub const STDOUT_MARK: [u8; 3] = [1, 1, 1];
/// stderr marker.
pub const STDERR_MARK: [u8; 3] = [2, 2, 2];

/// Which stream a piece of output belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    Stdout,
    Stderr,
}

/// Splits the marked log into stdout and stderr pieces.
#[derive(Debug)]
pub struct Demux {
    current: Channel,
    held: Vec<u8>,
}

impl Default for Demux {
    fn default() -> Self {
        Demux {
            current: Channel::Stdout,
            held: Vec::new(),
        }
    }
}

impl Demux {
    /// Feed one frame; returns the output it completes, in order.
    pub fn push(&mut self, data: &[u8]) -> Vec<(Channel, Vec<u8>)> {
        let mut buf = std::mem::take(&mut self.held);
        buf.extend_from_slice(data);
        let mut out: Vec<(Channel, Vec<u8>)> = Vec::new();
        let mut seg = Vec::new();
        let mut i = 0;
        while i < buf.len() {
            let b = buf[i];
            if b == 1 || b == 2 {
                let rest = &buf[i..];
                if rest.len() >= 3 {
                    if rest[..3] == [b, b, b] {
                        flush(&mut out, self.current, &mut seg);
                        self.current = if b == 1 {
                            Channel::Stdout
                        } else {
                            Channel::Stderr
                        };
                        i += 3;
                        continue;
                    }
                } else if rest.iter().all(|x| *x == b) {
                    // Possibly the start of a marker cut by the frame boundary.
                    self.held = rest.to_vec();
                    break;
                }
            }
            seg.push(b);
            i += 1;
        }
        flush(&mut out, self.current, &mut seg);
        out
    }

    /// The end of the log: held bytes were output after all.
    pub fn finish(&mut self) -> Vec<(Channel, Vec<u8>)> {
        let held = std::mem::take(&mut self.held);
        if held.is_empty() {
            Vec::new()
        } else {
            vec![(self.current, held)]
        }
    }
}

fn flush(out: &mut Vec<(Channel, Vec<u8>)>, ch: Channel, seg: &mut Vec<u8>) {
    if seg.is_empty() {
        return;
    }
    match out.last_mut() {
        Some((c, v)) if *c == ch => v.append(seg),
        _ => out.push((ch, std::mem::take(seg))),
    }
}

/// An open log WebSocket.
pub type LogSocket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// `http(s)://` → `ws(s)://`.
pub fn ws_url(http_url: &str) -> String {
    if let Some(rest) = http_url.strip_prefix("https://") {
        format!("wss://{rest}")
    } else if let Some(rest) = http_url.strip_prefix("http://") {
        format!("ws://{rest}")
    } else {
        http_url.to_string()
    }
}

/// Open the follow-mode log WebSocket of a command.
pub async fn open(
    url: &str,
    headers: &[(&'static str, String)],
) -> Result<LogSocket, SandboxError> {
    let mut req = url
        .into_client_request()
        .map_err(|e| SandboxError::InvalidArgument(format!("log URL {url}: {e}")))?;
    for (k, v) in headers {
        req.headers_mut().insert(
            *k,
            v.parse()
                .map_err(|_| SandboxError::InvalidArgument(format!("header {k} is not valid")))?,
        );
    }
    let (ws, _) = tokio_tungstenite::connect_async_with_config(req, None, true)
        .await
        .map_err(|e| match &e {
            tokio_tungstenite::tungstenite::Error::Http(resp) => {
                let status = resp.status().as_u16();
                let body = resp
                    .body()
                    .as_ref()
                    .map(|b| String::from_utf8_lossy(b).into_owned())
                    .unwrap_or_default();
                match status {
                    401 | 403 => SandboxError::Unauthenticated(format!(
                        "the command log WebSocket was refused ({status})"
                    )),
                    404 => SandboxError::NotFound("the command's log".into()),
                    _ => SandboxError::Remote {
                        code: status.to_string(),
                        message: format!("opening the command log failed: {}", body.trim()),
                    },
                }
            }
            _ => SandboxError::Unreachable {
                url: url.to_string(),
                reason: chain(&e),
            },
        })?;
    Ok(ws)
}

/// The next frame's bytes; `None` when the server closed the log.
pub async fn next_frame(ws: &mut LogSocket) -> Option<Result<Vec<u8>, SandboxError>> {
    loop {
        match ws.next().await? {
            Ok(Message::Binary(b)) => return Some(Ok(b.to_vec())),
            Ok(Message::Text(t)) => return Some(Ok(t.as_bytes().to_vec())),
            Ok(Message::Close(_)) => return None,
            Ok(_) => continue,
            Err(e) => {
                return Some(Err(SandboxError::Protocol(format!(
                    "the command log stream broke: {}",
                    chain(&e)
                ))));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(frames: &[&[u8]]) -> (Vec<u8>, Vec<u8>) {
        let mut d = Demux::default();
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let mut all = Vec::new();
        for f in frames {
            all.extend(d.push(f));
        }
        all.extend(d.finish());
        for (c, v) in all {
            match c {
                Channel::Stdout => out.extend(v),
                Channel::Stderr => err.extend(v),
            }
        }
        (out, err)
    }

    #[test]
    fn markers_route_lines() {
        let (o, e) = run(&[b"\x01\x01\x01out 1\n\x02\x02\x02err 1\n\x01\x01\x01out 2\n"]);
        assert_eq!(o, b"out 1\nout 2\n");
        assert_eq!(e, b"err 1\n");
    }

    #[test]
    fn markers_split_across_frames_at_every_position() {
        let log: &[u8] = b"\x01\x01\x01a\n\x02\x02\x02b\n\x01\x01\x01c\x01d\n\x02\x02\x02\x02e\n";
        for cut in 0..=log.len() {
            for cut2 in cut..=log.len() {
                let (o, e) = run(&[&log[..cut], &log[cut..cut2], &log[cut2..]]);
                assert_eq!(o, b"a\nc\x01d\n", "cuts {cut} {cut2}");
                assert_eq!(e, b"b\n\x02e\n", "cuts {cut} {cut2}");
            }
        }
    }

    #[test]
    fn unmarked_output_is_stdout_and_held_bytes_flush_at_the_end() {
        let (o, e) = run(&[b"plain", b"\x01\x01"]);
        assert_eq!(o, b"plain\x01\x01");
        assert!(e.is_empty());
    }

    #[test]
    fn ws_urls() {
        assert_eq!(
            ws_url("https://proxy.app.daytona.io/toolbox/x"),
            "wss://proxy.app.daytona.io/toolbox/x"
        );
        assert_eq!(ws_url("http://127.0.0.1:1/t"), "ws://127.0.0.1:1/t");
    }
}
