//! The allow-listing proxy of a sandbox with a restricted `[network]` policy.
//!
//! Such a sandbox's processes run in their own network namespace, which has only a loopback
//! interface: nothing outside is reachable, neither the internet nor this machine's own
//! loopback services. The one way out is this proxy, which the agent (in the host's network
//! namespace) serves on `127.0.0.1:3128` *inside* the sandbox's namespace (the listening socket
//! is created there by a helper process, [`super::netns`]). Processes find it through `HTTP_PROXY` /
//! `HTTPS_PROXY`.
//!
//! It speaks the two forms of HTTP proxying every client uses: `CONNECT host:port` (HTTPS and
//! any other TCP stream) and absolute-form plain HTTP requests (`GET http://host/path`). Each
//! connection is checked against the policy by name and by resolved address before anything is
//! connected; the upstream connection goes to the address that was checked (no second lookup).
//! A refusal is a `403` whose body says which host was refused and why.
//!
//! Hand-written rather than a proxy crate: the crates available either intercept TLS (MITM) or
//! bring a full HTTP stack for a job that is reading one request head and splicing two sockets.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::network::NetworkPolicy;

/// The proxy's port on the sandbox's own loopback.
pub const PROXY_PORT: u16 = 3128;
/// Longest request head accepted.
const MAX_HEAD: usize = 64 * 1024;
/// How long resolving and connecting upstream may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// Environment that sends a sandbox process's traffic through the proxy (the sandbox's own
/// loopback services stay direct).
pub fn proxy_env() -> Vec<(String, String)> {
    let url = format!("http://127.0.0.1:{PROXY_PORT}");
    let direct = "localhost,127.0.0.1,::1";
    [
        ("HTTP_PROXY", url.as_str()),
        ("HTTPS_PROXY", url.as_str()),
        ("http_proxy", url.as_str()),
        ("https_proxy", url.as_str()),
        ("NO_PROXY", direct),
        ("no_proxy", direct),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// Serve the proxy on `listener` until the task is dropped.
pub async fn serve(listener: std::net::TcpListener, policy: Arc<NetworkPolicy>) {
    let listener = match TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!("the sandbox's egress proxy cannot serve: {e}");
            return;
        }
    };
    loop {
        match listener.accept().await {
            Ok((conn, _)) => {
                let policy = policy.clone();
                tokio::spawn(async move {
                    if let Err(e) = handle(conn, &policy).await {
                        tracing::debug!("egress proxy connection: {e}");
                    }
                });
            }
            Err(e) => {
                tracing::warn!("egress proxy accept: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// What the client asked for.
#[derive(Debug, PartialEq, Eq)]
struct Request {
    connect: bool,
    host: String,
    port: u16,
    /// The head to send upstream (plain HTTP only), origin-form, `Connection: close`.
    upstream_head: Vec<u8>,
}

async fn handle(mut conn: TcpStream, policy: &NetworkPolicy) -> io::Result<()> {
    let _ = conn.set_nodelay(true);
    let mut buf = Vec::with_capacity(4096);
    let head_end = loop {
        if let Some(i) = find(&buf, b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() > MAX_HEAD {
            return refuse(
                &mut conn,
                431,
                "Request Header Fields Too Large",
                "request head too long",
            )
            .await;
        }
        let mut chunk = [0u8; 4096];
        let n = conn.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let req = match parse(&buf[..head_end]) {
        Ok(r) => r,
        Err(why) => return refuse(&mut conn, 400, "Bad Request", &why).await,
    };
    let rest = buf[head_end..].to_vec();
    let refused = |host: &str, port: u16| {
        tracing::info!(
            host,
            port,
            "egress refused by the sandbox's [network] policy"
        );
        format!("{host}:{port} is not in this sandbox's [network] allow list")
    };
    // A name no rule can allow is refused without looking it up.
    if !policy.may_allow_name(&req.host) {
        return refuse(&mut conn, 403, "Forbidden", &refused(&req.host, req.port)).await;
    }
    let addrs = match resolve(&req.host, req.port).await {
        Ok(a) => a,
        Err(e) => {
            return refuse(
                &mut conn,
                502,
                "Bad Gateway",
                &format!("cannot resolve {}: {e}", req.host),
            )
            .await;
        }
    };
    let allowed: Vec<SocketAddr> = addrs
        .into_iter()
        .filter(|a| policy.allows(&req.host, a.ip()))
        .collect();
    if allowed.is_empty() {
        return refuse(&mut conn, 403, "Forbidden", &refused(&req.host, req.port)).await;
    }
    let mut upstream = None;
    let mut last_err = None;
    for a in allowed {
        match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(a)).await {
            Ok(Ok(s)) => {
                upstream = Some(s);
                break;
            }
            Ok(Err(e)) => last_err = Some(e.to_string()),
            Err(_) => last_err = Some("timed out".into()),
        }
    }
    let Some(mut upstream) = upstream else {
        let why = format!(
            "cannot connect to {}:{}: {}",
            req.host,
            req.port,
            last_err.unwrap_or_default()
        );
        return refuse(&mut conn, 502, "Bad Gateway", &why).await;
    };
    let _ = upstream.set_nodelay(true);
    if req.connect {
        conn.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
            .await?;
    } else {
        upstream.write_all(&req.upstream_head).await?;
    }
    if !rest.is_empty() {
        upstream.write_all(&rest).await?;
    }
    tokio::io::copy_bidirectional(&mut conn, &mut upstream).await?;
    Ok(())
}

async fn resolve(host: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    let found = tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::lookup_host((host, port)))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "name lookup timed out"))??;
    Ok(found.collect())
}

async fn refuse(conn: &mut TcpStream, code: u16, reason: &str, why: &str) -> io::Result<()> {
    let body = format!("rclaude: {why}\n");
    let head = format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    conn.write_all(head.as_bytes()).await?;
    conn.write_all(body.as_bytes()).await?;
    conn.shutdown().await
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Parse a proxy request head (ending in the blank line).
fn parse(head: &[u8]) -> Result<Request, String> {
    let text =
        std::str::from_utf8(head).map_err(|_| "the request head is not UTF-8".to_string())?;
    let mut lines = text.split("\r\n");
    let line = lines.next().unwrap_or_default();
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(format!("malformed request line {line:?}"));
    };
    if !version.starts_with("HTTP/1.") {
        return Err(format!("unsupported protocol {version:?}"));
    }
    if method.eq_ignore_ascii_case("CONNECT") {
        let (host, port) = split_host_port(target, None)?;
        return Ok(Request {
            connect: true,
            host,
            port,
            upstream_head: Vec::new(),
        });
    }
    let Some(after) = target.strip_prefix("http://") else {
        return Err(format!(
            "this proxy takes CONNECT host:port or absolute http:// URLs, not {target:?}"
        ));
    };
    let (authority, path) = match after.find('/') {
        Some(i) => (&after[..i], &after[i..]),
        None => (after, "/"),
    };
    if authority.contains('@') {
        return Err("credentials in the URL are not forwarded".into());
    }
    let (host, port) = split_host_port(authority, Some(80))?;
    let mut out = format!("{method} {path} {version}\r\n");
    for h in lines.filter(|l| !l.is_empty()) {
        let name = h.split(':').next().unwrap_or_default().trim();
        let hop = [
            "proxy-connection",
            "proxy-authorization",
            "connection",
            "keep-alive",
        ];
        if hop.iter().any(|x| name.eq_ignore_ascii_case(x)) {
            continue;
        }
        out.push_str(h);
        out.push_str("\r\n");
    }
    // One request per connection: a second request on it could name another host.
    out.push_str("Connection: close\r\n\r\n");
    Ok(Request {
        connect: false,
        host,
        port,
        upstream_head: out.into_bytes(),
    })
}

/// `host:port`, `[v6]:port`, or `host` with `default` port.
fn split_host_port(s: &str, default: Option<u16>) -> Result<(String, u16), String> {
    let bad = || format!("bad host:port {s:?}");
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (h, after) = rest.split_once(']').ok_or_else(bad)?;
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p),
            None if after.is_empty() => None,
            None => return Err(bad()),
        };
        (h.to_string(), port)
    } else {
        match s.rsplit_once(':') {
            Some((h, p)) if !h.contains(':') => (h.to_string(), Some(p)),
            _ => (s.to_string(), None),
        }
    };
    let port = match port {
        Some(p) => p.parse::<u16>().ok().filter(|p| *p != 0).ok_or_else(bad)?,
        None => default.ok_or_else(bad)?,
    };
    if host.is_empty() || host.contains(['/', ' ', '@']) {
        return Err(bad());
    }
    Ok((host, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_requests_name_host_and_port() {
        let r = parse(
            b"CONNECT registry.npmjs.org:443 HTTP/1.1\r\nHost: registry.npmjs.org:443\r\n\r\n",
        )
        .unwrap();
        assert!(r.connect);
        assert_eq!((r.host.as_str(), r.port), ("registry.npmjs.org", 443));
        let r = parse(b"CONNECT [::1]:8080 HTTP/1.1\r\n\r\n").unwrap();
        assert_eq!((r.host.as_str(), r.port), ("::1", 8080));
        assert!(parse(b"CONNECT example.com HTTP/1.1\r\n\r\n").is_err());
        assert!(parse(b"CONNECT example.com:0 HTTP/1.1\r\n\r\n").is_err());
    }

    #[test]
    fn plain_requests_go_upstream_in_origin_form_one_per_connection() {
        let r = parse(
            b"GET http://example.com:8080/a?b=1 HTTP/1.1\r\nHost: example.com:8080\r\nProxy-Connection: keep-alive\r\nConnection: keep-alive\r\nAccept: */*\r\n\r\n",
        )
        .unwrap();
        assert!(!r.connect);
        assert_eq!((r.host.as_str(), r.port), ("example.com", 8080));
        assert_eq!(
            String::from_utf8(r.upstream_head).unwrap(),
            "GET /a?b=1 HTTP/1.1\r\nHost: example.com:8080\r\nAccept: */*\r\nConnection: close\r\n\r\n"
        );
        let r = parse(b"GET http://example.com HTTP/1.0\r\n\r\n").unwrap();
        assert_eq!(r.port, 80);
        assert!(r.upstream_head.starts_with(b"GET / HTTP/1.0\r\n"));
    }

    #[test]
    fn other_requests_are_refused() {
        for bad in [
            &b"GET /relative HTTP/1.1\r\n\r\n"[..],
            b"GET https://example.com/ HTTP/1.1\r\n\r\n",
            b"GET http://user:pw@example.com/ HTTP/1.1\r\n\r\n",
            b"GET http://example.com/ SPDY/3\r\n\r\n",
            b"garbage\r\n\r\n",
        ] {
            assert!(parse(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
    }
}
