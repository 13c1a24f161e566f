//! Server side of Connect-RPC with the JSON codec: request decoding, unary responses, streamed
//! responses (envelopes flushed one by one, then the end-of-stream frame).

use std::convert::Infallible;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::StreamExt;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;

use crate::envd::connect::{
    CONTENT_TYPE_STREAM, CONTENT_TYPE_UNARY, Code, ConnectError, EnvelopeDecoder, encode_end,
    encode_json,
};

/// Largest unary request body accepted (requests are small JSON messages).
pub const MAX_REQUEST: usize = 4 * 1024 * 1024;

/// Result of an RPC handler.
pub type RpcResult<T> = Result<T, ConnectError>;

/// Shorthand constructors for handler errors.
pub fn err(code: Code, message: impl Into<String>) -> ConnectError {
    ConnectError::new(code, message)
}

/// A unary error response: mapped HTTP status and `{"code","message"}`.
pub fn error_response(e: &ConnectError) -> Response {
    let status =
        StatusCode::from_u16(e.code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = serde_json::to_vec(e).expect("ConnectError serializes");
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(CONTENT_TYPE_UNARY),
        )],
        body,
    )
        .into_response()
}

/// 404 for a procedure this agent does not know (as an HTTP router in front of connect-go).
pub fn unknown_method(service: &str, method: &str) -> Response {
    let mut r = error_response(&err(
        Code::Unimplemented,
        format!("unknown method {service}/{method}"),
    ));
    *r.status_mut() = StatusCode::NOT_FOUND;
    r
}

/// A unary success (or error) response.
pub fn unary_response<T: Serialize>(result: RpcResult<T>) -> Response {
    match result {
        Ok(msg) => {
            let body = serde_json::to_vec(&msg).expect("protocol messages serialize");
            (
                StatusCode::OK,
                [(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static(CONTENT_TYPE_UNARY),
                )],
                body,
            )
                .into_response()
        }
        Err(e) => error_response(&e),
    }
}

fn media_type(headers: &HeaderMap) -> String {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

fn charset_ok(headers: &HeaderMap) -> bool {
    let raw = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    raw.split(';').skip(1).all(|p| {
        let p = p.trim().to_ascii_lowercase();
        !p.starts_with("charset=") || p == "charset=utf-8" || p == "charset=\"utf-8\""
    })
}

/// 415 with the accepted content type, as connect-go answers an unsupported codec.
pub fn unsupported_media(expected: &'static str, headers: &HeaderMap) -> Response {
    let got = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("(none)")
        .to_string();
    let mut r = (
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        format!("unsupported content type {got}: this agent speaks Connect with the JSON codec ({expected})"),
    )
        .into_response();
    r.headers_mut()
        .insert("accept-post", HeaderValue::from_static(expected));
    r
}

/// True when the request is a unary JSON Connect call.
pub fn is_unary_json(headers: &HeaderMap) -> bool {
    media_type(headers) == CONTENT_TYPE_UNARY && charset_ok(headers)
}

/// True when the request is a streaming JSON Connect call.
pub fn is_stream_json(headers: &HeaderMap) -> bool {
    media_type(headers) == CONTENT_TYPE_STREAM && charset_ok(headers)
}

/// Content encodings other than identity are refused (the agent never compresses).
fn check_encoding(headers: &HeaderMap, name: &str) -> RpcResult<()> {
    match headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
    {
        None | Some("") | Some("identity") => Ok(()),
        Some(other) => Err(err(
            Code::Unimplemented,
            format!("{name} {other} is not supported; send identity"),
        )),
    }
}

/// Decode a unary JSON request body. An empty body is refused (JSON requires at least `{}`).
pub fn decode_unary<T: DeserializeOwned>(headers: &HeaderMap, body: &[u8]) -> RpcResult<T> {
    check_encoding(headers, "content-encoding")?;
    if body.is_empty() {
        return Err(err(
            Code::InvalidArgument,
            "empty request body: a JSON request message must be at least {}",
        ));
    }
    decode_message(body)
}

fn decode_message<T: DeserializeOwned>(body: &[u8]) -> RpcResult<T> {
    let de = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(de).map_err(|e| {
        err(
            Code::InvalidArgument,
            format!("invalid request message at {}: {}", e.path(), e.inner()),
        )
    })
}

/// Read a whole (bounded) request body.
pub async fn read_body(body: Body, limit: usize) -> RpcResult<Bytes> {
    axum::body::to_bytes(body, limit).await.map_err(|e| {
        err(
            Code::ResourceExhausted,
            format!("cannot read the request body (limit {limit} bytes): {e}"),
        )
    })
}

/// Decode the single request envelope of a server-streaming call.
pub async fn decode_stream_request<T: DeserializeOwned>(
    headers: &HeaderMap,
    body: Body,
) -> RpcResult<T> {
    check_encoding(headers, "connect-content-encoding")?;
    let bytes = read_body(body, MAX_REQUEST).await?;
    let mut dec = EnvelopeDecoder::new();
    dec.push(&bytes);
    let env = dec.next_envelope()?.ok_or_else(|| {
        err(
            Code::InvalidArgument,
            "the request has no complete message envelope",
        )
    })?;
    if env.is_end() {
        return Err(err(
            Code::InvalidArgument,
            "the request message is flagged end-of-stream",
        ));
    }
    if !dec.is_empty() {
        return Err(err(
            Code::InvalidArgument,
            "a server-streaming call takes exactly one request message",
        ));
    }
    decode_message(&env.payload)
}

/// Incremental reader of a client-streaming request body.
pub struct EnvelopeReader {
    body: axum::body::BodyDataStream,
    dec: EnvelopeDecoder,
    done: bool,
}

impl EnvelopeReader {
    pub fn new(body: Body) -> Self {
        EnvelopeReader {
            body: body.into_data_stream(),
            dec: EnvelopeDecoder::new(),
            done: false,
        }
    }

    /// Next message, `None` at the end of the body (or at an end-of-stream envelope).
    pub async fn next<T: DeserializeOwned>(&mut self) -> RpcResult<Option<T>> {
        loop {
            if let Some(env) = self.dec.next_envelope()? {
                if env.is_end() {
                    self.done = true;
                    return Ok(None);
                }
                return decode_message(&env.payload).map(Some);
            }
            if self.done {
                if self.dec.is_empty() {
                    return Ok(None);
                }
                return Err(err(
                    Code::InvalidArgument,
                    "the request body ended inside a message envelope",
                ));
            }
            match self.body.next().await {
                Some(Ok(chunk)) => self.dec.push(&chunk),
                Some(Err(e)) => {
                    return Err(err(
                        Code::Canceled,
                        format!("reading the request stream failed: {e}"),
                    ));
                }
                None => self.done = true,
            }
        }
    }
}

/// Sender half of a streamed response: data messages, then [`StreamSender::finish`].
pub struct StreamSender {
    tx: mpsc::Sender<Bytes>,
}

impl StreamSender {
    /// Send one message; `false` when the client has gone away.
    pub async fn send<T: Serialize>(&self, msg: &T) -> bool {
        self.tx.send(encode_json(msg)).await.is_ok()
    }

    /// Send the end-of-stream frame (`{}` or the error).
    pub async fn finish(self, error: Option<ConnectError>) {
        let _ = self.tx.send(encode_end(error)).await;
    }
}

/// A streaming response whose envelopes are produced by the returned sender.
pub fn stream_response() -> (StreamSender, Response) {
    let (tx, rx) = mpsc::channel::<Bytes>(8);
    let body = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<_, Infallible>(b), rx))
    });
    let resp = (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(CONTENT_TYPE_STREAM),
        )],
        Body::from_stream(body),
    )
        .into_response();
    (StreamSender { tx }, resp)
}

/// A streaming response that carries only an error in its end-of-stream frame (HTTP 200).
pub fn stream_error(e: ConnectError) -> Response {
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(CONTENT_TYPE_STREAM),
        )],
        encode_end(Some(e)),
    )
        .into_response()
}

/// A completed client-streaming response: one message and the end frame.
pub fn stream_single<T: Serialize>(result: RpcResult<T>) -> Response {
    match result {
        Ok(msg) => {
            let mut body = encode_json(&msg).to_vec();
            body.extend_from_slice(&encode_end(None));
            (
                StatusCode::OK,
                [(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static(CONTENT_TYPE_STREAM),
                )],
                body,
            )
                .into_response()
        }
        Err(e) => stream_error(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envd::proto::PathRequest;

    fn headers(ct: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_str(ct).unwrap());
        h
    }

    #[test]
    fn content_types_are_recognized_with_charset() {
        assert!(is_unary_json(&headers("application/json")));
        assert!(is_unary_json(&headers("application/json; charset=utf-8")));
        assert!(!is_unary_json(&headers("application/json; charset=latin1")));
        assert!(!is_unary_json(&headers("application/proto")));
        assert!(is_stream_json(&headers("application/connect+json")));
        assert!(!is_stream_json(&headers("application/json")));
    }

    #[test]
    fn unary_bodies_must_be_json_objects_and_ignore_unknown_fields() {
        let h = headers("application/json");
        assert_eq!(
            decode_unary::<PathRequest>(&h, b"").unwrap_err().code,
            Code::InvalidArgument
        );
        assert_eq!(
            decode_unary::<PathRequest>(&h, b"{\"path\":3}")
                .unwrap_err()
                .code,
            Code::InvalidArgument
        );
        let r: PathRequest = decode_unary(&h, br#"{"path":"/x","future":true}"#).unwrap();
        assert_eq!(r.path, "/x");
        let r: PathRequest = decode_unary(&h, b"{}").unwrap();
        assert_eq!(r.path, "");
    }
}
