//! Reaching ports the sandbox serves: how a port is reached from this machine, forwarding a
//! local port to it, and which ports its processes listen on.

use std::collections::BTreeSet;
use std::net::SocketAddr;

use super::context::Ctx;
use crate::error::{CliError, CliResult};
use crate::provider::{ExecRequest, Sandbox};
use crate::session::SessionRecord;

/// How sandbox port `port` is reached from this machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reach {
    /// The sandbox shares this machine's network (the local provider): `addr` is the port.
    Direct { addr: SocketAddr, url: String },
    /// The provider serves it at `url` (E2B: `https://PORT-<id>.<domain>`).
    Url { url: String },
}

impl Reach {
    /// The URL to open.
    pub fn url(&self) -> &str {
        match self {
            Reach::Direct { url, .. } | Reach::Url { url } => url,
        }
    }
}

/// How `port` of the session's sandbox is reached; a provider that cannot serve ports is a
/// clear refusal. `network`: the `[network]` policy (a restricted local sandbox has its own
/// network namespace, which this machine's loopback does not reach).
pub fn reach(
    record: &SessionRecord,
    network: &crate::network::NetworkPolicy,
    port: u16,
) -> CliResult<Reach> {
    match record.provider.as_str() {
        "local" if !network.is_open() => Err(CliError::usage(format!(
            "port {port} of this sandbox cannot be reached from here: with [network] restrictions its processes have their own network namespace"
        ))
        .hint("run the client inside the sandbox (`rclaude exec -- curl localhost:PORT`), or remove [network] (and recreate the sandbox) while you need the port")),
        "local" => {
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            Ok(Reach::Direct {
                addr,
                url: format!("http://{addr}"),
            })
        }
        "e2b" => {
            let domain = std::env::var("E2B_DOMAIN")
                .ok()
                .filter(|d| !d.trim().is_empty())
                .unwrap_or_else(|| "e2b.app".into());
            Ok(Reach::Url {
                url: format!("https://{port}-{}.{domain}", record.sandbox_id),
            })
        }
        other => Err(CliError::usage(format!(
            "ports of a {other} sandbox cannot be reached from here yet"
        ))
        .hint("run the client inside the sandbox (`rclaude exec -- curl localhost:PORT`), or use the local or E2B provider")),
    }
}

/// Whether the sandbox's ports are served without a traffic token, as a new sandbox is
/// created (E2B decides for the whole sandbox): public when a `[ports]` entry says
/// `public = true`, private when `[ports]` lists ports and none is public, the provider's
/// default (public) without `[ports]`.
pub fn public_ports(config: &crate::config::Config) -> Option<bool> {
    if config.ports.is_empty() {
        return None;
    }
    Some(config.ports.values().any(|p| p.public()))
}

/// The sandbox's ports need its traffic token (see [`public_ports`]).
pub fn private(config: &crate::config::Config) -> bool {
    public_ports(config) == Some(false)
}

/// Ports one `ports` event lists (the server's limit).
const REPORTED_PORTS: usize = 32;

/// Tell the server where the session's `[ports]` are reached, so the dashboard links them;
/// nothing without `[ports]`, a server, or a provider that serves ports.
pub fn report(ctx: &Ctx, record: &SessionRecord) {
    let policy = ctx.config.network.policy();
    let list: Vec<serde_json::Value> = ctx
        .config
        .ports
        .iter()
        .filter_map(|(port, spec)| {
            let port: u16 = port.parse().ok()?;
            let url = reach(record, &policy, port).ok()?.url().to_string();
            // The server takes labels of 1-64 characters without control characters.
            let label = spec
                .label()
                .map(|l| {
                    let kept: String = l.chars().filter(|c| !c.is_control()).take(64).collect();
                    kept.trim().to_string()
                })
                .filter(|l| !l.is_empty());
            Some(serde_json::json!({ "port": port, "label": label, "url": url }))
        })
        .take(REPORTED_PORTS)
        .collect();
    if !list.is_empty() {
        ctx.reporter
            .event(record, "ports", serde_json::json!({ "ports": list }));
    }
}

/// Copy buffer per direction of a forwarded connection.
const BUF: usize = 256 * 1024;

/// Forward connections to `listener` to `target` until `stop` resolves; each connection is
/// copied both ways (so WebSockets and any TCP protocol work).
pub async fn forward(
    ctx: &Ctx,
    listener: tokio::net::TcpListener,
    target: SocketAddr,
    stop: impl std::future::Future<Output = ()>,
) -> CliResult {
    tokio::pin!(stop);
    let warned = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    loop {
        tokio::select! {
            _ = &mut stop => return Ok(0),
            accepted = listener.accept() => {
                let (mut inbound, _) = accepted
                    .map_err(|e| CliError::io("accepting a connection", e))?;
                let _ = inbound.set_nodelay(true);
                let ui = ctx.ui.clone();
                let warned = warned.clone();
                tokio::spawn(async move {
                    match tokio::net::TcpStream::connect(target).await {
                        Ok(mut outbound) => {
                            let _ = outbound.set_nodelay(true);
                            // Large buffers: 8 KiB (the default) costs a quarter of loopback throughput.
                            let _ = tokio::io::copy_bidirectional_with_sizes(&mut inbound, &mut outbound, BUF, BUF).await;
                        }
                        Err(e) => {
                            if !warned.swap(true, std::sync::atomic::Ordering::Relaxed) {
                                ui.warn(format!(
                                    "nothing answers on sandbox port {} ({e}); is the server running there?",
                                    target.port()
                                ));
                            }
                        }
                    }
                });
            }
        }
    }
}

/// Run in the sandbox: the TCP sockets table, then the socket inodes its processes hold.
const LISTENING_SCRIPT: &str = "cat /proc/net/tcp /proc/net/tcp6 2>/dev/null; echo --; \
    for f in /proc/[0-9]*/fd/*; do readlink \"$f\" 2>/dev/null; done; true";

/// TCP ports the sandbox's processes listen on (sorted).
pub async fn listening(sandbox: &dyn Sandbox) -> CliResult<Vec<u16>> {
    let out = crate::provider::run(
        sandbox,
        ExecRequest::shell(LISTENING_SCRIPT).timeout(Some(std::time::Duration::from_secs(10))),
    )
    .await?;
    Ok(parse_listening(&out.stdout_str()))
}

/// Ports of LISTEN sockets (`/proc/net/tcp` state `0A`) whose inode a process holds.
fn parse_listening(text: &str) -> Vec<u16> {
    let (table, fds) = text.split_once("\n--\n").unwrap_or((text, ""));
    let held: BTreeSet<&str> = fds
        .lines()
        .filter_map(|l| l.strip_prefix("socket:[")?.strip_suffix(']'))
        .collect();
    let mut ports = BTreeSet::new();
    for line in table.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 10 || f[3] != "0A" || !held.contains(f[9]) {
            continue;
        }
        if let Some(port) = f[1]
            .rsplit_once(':')
            .and_then(|(_, p)| u16::from_str_radix(p, 16).ok())
        {
            ports.insert(port);
        }
    }
    ports.into_iter().collect()
}

/// Serve `port` of the session's sandbox on `listener` through the provider's edge (E2B) until
/// Ctrl-C: a local HTTP proxy that adds the routing headers and, for a private sandbox, the
/// traffic token to every request (HTTP and WebSockets).
pub async fn serve_through_edge(
    ctx: &Ctx,
    record: &SessionRecord,
    port: u16,
    listener: tokio::net::TcpListener,
    label: &str,
) -> CliResult {
    let sandbox = ctx.connect(record).await?;
    let Some(access) = sandbox.port_access(port) else {
        return Err(CliError::usage(format!(
            "ports of a {} sandbox cannot be forwarded from here yet",
            record.provider
        ))
        .hint("run the client inside the sandbox (`rclaude exec -- curl localhost:PORT`)"));
    };
    warn_if_not_listening(ctx, &*sandbox, port).await?;
    let local = listener
        .local_addr()
        .map_err(|e| CliError::io("reading the local address", e))?;
    ctx.ui.info(format!(
        "Forwarding http://{local} → sandbox port {port}{label} through {}'s edge (HTTP and WebSockets; Ctrl-C stops)",
        record.provider
    ));
    rclaude_sandbox::port_proxy::serve(listener, access, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await
    .map_err(|e| CliError::io(format!("serving {local}"), e))?;
    Ok(0)
}

/// Say so when nothing listens on `port` in the sandbox (yet).
pub async fn warn_if_not_listening(ctx: &Ctx, sandbox: &dyn Sandbox, port: u16) -> CliResult<()> {
    if !listening(sandbox).await?.contains(&port) {
        ctx.ui.warn(format!(
            "nothing listens on port {port} in the sandbox yet; connections wait for it"
        ));
    }
    Ok(())
}

/// Listen on 127.0.0.1:`local` (0: any free port); a port in use is the user's to change.
pub async fn bind(local: u16) -> CliResult<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(("127.0.0.1", local))
        .await
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::AddrInUse => CliError::usage(format!(
                "local port {local} is already in use by another program"
            ))
            .hint("pick another one with --local"),
            _ => CliError::io(format!("listening on 127.0.0.1:{local}"), e),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_listening_sockets_a_process_holds_count() {
        let text = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
   0: 0100007F:0BB8 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 111 1 0 100 0 0 10 0\n\
   1: 00000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 222 1 0 100 0 0 10 0\n\
   2: 0100007F:0BB8 0100007F:D431 01 00000000:00000000 00:00000000 00000000  1000        0 333 1 0 100 0 0 10 0\n\
--\n\
socket:[111]\n\
socket:[333]\n\
pipe:[9]\n";
        assert_eq!(parse_listening(text), vec![3000]);
    }
}
