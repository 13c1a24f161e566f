//! Local TCP helpers: a free port, waiting for a listener, a raw HTTP/1.0 GET.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// A port nothing listens on right now (the OS picked it).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Until `port` on 127.0.0.1 accepts connections (or 20 s).
pub fn wait_for(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `GET path` over HTTP/1.0 on 127.0.0.1:`port`: the whole answer, head and body.
pub fn http_get(port: u16, path: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").as_bytes())
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

/// The `ws_echo.py` a test commits to its repository for [`serve_web_and_echo`].
pub const WS_ECHO_PY: &str = include_str!("../ports/ws_echo.py");

/// A shell line that starts, in the background, `python3 -m http.server` on port `web` and the
/// committed `ws_echo.py` on port `ws` (both on 127.0.0.1).
pub fn serve_web_and_echo(web: u16, ws: u16) -> String {
    format!(
        "nohup python3 -m http.server {web} --bind 127.0.0.1 >/dev/null 2>&1 & \
         nohup python3 ws_echo.py {ws} >/dev/null 2>&1 &"
    )
}

/// A child process killed when dropped.
pub struct Bg(pub std::process::Child);

impl Drop for Bg {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Send `texts` and a 200 kB binary message to the WebSocket echo at `url`; each must come back.
pub fn ws_echo_round_trip(url: &str, texts: &[&str]) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        use futures::{SinkExt, StreamExt};
        use tokio_tungstenite::tungstenite::Message;
        let (mut sock, _) = tokio_tungstenite::connect_async(url).await.unwrap();
        for text in texts {
            sock.send(Message::text(*text)).await.unwrap();
            let back = sock.next().await.unwrap().unwrap();
            assert_eq!(back, Message::text(*text));
        }
        let big = vec![7u8; 200_000];
        sock.send(Message::binary(big.clone())).await.unwrap();
        assert_eq!(sock.next().await.unwrap().unwrap(), Message::binary(big));
    });
}
