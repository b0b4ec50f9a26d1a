//! A minimal socket.io client on bare tungstenite: no threads, no pending
//! table, no JSON parsing of replies. It pipelines `echo` commands in
//! batches, to measure the mock server without our client in the way.

use std::net::{SocketAddr, TcpStream};

use tungstenite::{Message, WebSocket};

/// One raw connection, registered on `/daemon`.
pub struct RawClient {
    ws: WebSocket<TcpStream>,
    next_id: u64,
    payload_json: String,
}

fn io_err(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(e.to_string())
}

impl RawClient {
    /// Connects, opens Engine.IO and registers on `/daemon`.
    pub fn connect(
        addr: SocketAddr,
        cluster: &str,
        password: &str,
        payload: &serde_json::Value,
    ) -> std::io::Result<RawClient> {
        let stream = TcpStream::connect(addr)?;
        stream.set_nodelay(true)?;
        let url = format!("ws://{addr}/socket.io/?EIO=4&transport=websocket");
        let (ws, _) = tungstenite::client(url, stream).map_err(io_err)?;
        let mut c = RawClient {
            ws,
            next_id: 0,
            payload_json: payload.to_string(),
        };
        let open = c.read_text()?;
        if !open.starts_with('0') {
            return Err(io_err(format!("expected the open packet, got {open:?}")));
        }
        let auth = serde_json::json!({
            "teamClusterId": cluster,
            "daemonPassword": password,
            "installedVersion": null,
            "client": "volt-benches-raw/0.1.0",
        });
        c.ws.send(Message::text(format!("40/daemon,{auth}")))
            .map_err(io_err)?;
        loop {
            let t = c.read_text()?;
            if t.starts_with("40/daemon,") {
                return Ok(c);
            }
            if t.starts_with("44") {
                return Err(io_err(format!("registration rejected: {t}")));
            }
        }
    }

    /// The next text frame; answers pings on the way.
    fn read_text(&mut self) -> std::io::Result<String> {
        loop {
            match self.ws.read().map_err(io_err)? {
                Message::Text(t) if t.as_str() == "2" => {
                    self.ws.send(Message::text("3")).map_err(io_err)?;
                }
                Message::Text(t) => return Ok(t.as_str().to_owned()),
                _ => {}
            }
        }
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
