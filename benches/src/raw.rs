//! A minimal socket.io client on bare tungstenite: no threads, no pending
//! table, no JSON parsing of replies. It pipelines `echo` commands in
//! batches, to measure the mock server without our client in the way.

use std::net::{SocketAddr, TcpStream};

use tungstenite::protocol::WebSocketConfig;
use tungstenite::{Message, WebSocket};

/// One raw connection, registered on `/daemon`.
pub struct RawClient {
    ws: WebSocket<TcpStream>,
    next_id: u64,
    payload_json: String,
}

pub(crate) fn io_err(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(e.to_string())
}

/// The next text frame of a blocking socket; answers Engine.IO pings on
/// the way.
fn read_text(ws: &mut WebSocket<TcpStream>) -> std::io::Result<String> {
    loop {
        match ws.read().map_err(io_err)? {
            Message::Text(t) if t.as_str() == "2" => {
                ws.send(Message::text("3")).map_err(io_err)?;
            }
            Message::Text(t) => return Ok(t.as_str().to_owned()),
            _ => {}
        }
    }
}

/// Connects (blocking, `TCP_NODELAY`), opens Engine.IO over a WebSocket and
/// registers on `/daemon` as `client_name`; returns once the server
/// accepted the registration. `config` sets tungstenite's buffers (its
/// default reads in 128 KiB chunks: a fleet of a thousand wants less).
pub fn connect_registered(
    addr: SocketAddr,
    cluster: &str,
    password: &str,
    client_name: &str,
    config: Option<WebSocketConfig>,
) -> std::io::Result<WebSocket<TcpStream>> {
    let stream = TcpStream::connect(addr)?;
    stream.set_nodelay(true)?;
    let url = format!("ws://{addr}/socket.io/?EIO=4&transport=websocket");
    let (mut ws, _) =
        tungstenite::client::client_with_config(url, stream, config).map_err(io_err)?;
    let open = read_text(&mut ws)?;
    if !open.starts_with('0') {
        return Err(io_err(format!("expected the open packet, got {open:?}")));
    }
    let auth = serde_json::json!({
        "teamClusterId": cluster,
        "daemonPassword": password,
        "installedVersion": null,
        "client": client_name,
    });
    ws.send(Message::text(format!("40/daemon,{auth}")))
        .map_err(io_err)?;
    loop {
        let t = read_text(&mut ws)?;
        if t.starts_with("40/daemon,") {
            return Ok(ws);
        }
        if t.starts_with("44") {
            return Err(io_err(format!("registration rejected: {t}")));
        }
    }
}

/// The socket address of a server URL (`http://`, `ws://`, or a bare
/// `HOST:PORT`); TLS URLs are refused (the raw clients speak plain TCP).
pub fn socket_addr_of(url: &str) -> std::io::Result<SocketAddr> {
    use std::net::ToSocketAddrs;
    if url.starts_with("https://") || url.starts_with("wss://") {
        return Err(io_err(format!(
            "{url}: raw clients speak plain ws:// only, not TLS"
        )));
    }
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("ws://"))
        .unwrap_or(url);
    let authority = rest.split('/').next().unwrap_or(rest);
    authority
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| io_err(format!("{url}: no address")))
}

impl RawClient {
    /// Connects, opens Engine.IO and registers on `/daemon`.
    pub fn connect(
        addr: SocketAddr,
        cluster: &str,
        password: &str,
        payload: &serde_json::Value,
    ) -> std::io::Result<RawClient> {
        let ws = connect_registered(addr, cluster, password, "volt-benches-raw/0.1.0", None)?;
        Ok(RawClient {
            ws,
            next_id: 0,
            payload_json: payload.to_string(),
        })
    }

    /// The next text frame; answers pings on the way.
    fn read_text(&mut self) -> std::io::Result<String> {
        read_text(&mut self.ws)
    }

    /// Sends `n` `echo` commands back to back (one flush), then reads their
    /// `n` responses. Returns how many responses were `ok:true`.
    pub fn batch(&mut self, n: usize) -> std::io::Result<usize> {
        for _ in 0..n {
            self.next_id += 1;
            let frame = format!(
                r#"42/daemon,["command",{{"requestId":"raw-{}","command":"echo","payload":{}}}]"#,
                self.next_id, self.payload_json
            );
            self.ws.write(Message::text(frame)).map_err(io_err)?;
        }
        self.ws.flush().map_err(io_err)?;
        let mut ok = 0;
        let mut got = 0;
        while got < n {
            let t = self.read_text()?;
            if t.starts_with(r#"42/daemon,["command-response""#) {
                got += 1;
                if t.contains(r#""ok":true"#) {
                    ok += 1;
                }
            }
        }
        Ok(ok)
    }

    /// Closes the connection.
    pub fn close(mut self) {
        let _ = self.ws.close(None);
        let _ = self.ws.flush();
    }
}
