//! A raw WebSocket client and HTTP helpers for the mock server's tests.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use serde_json::Value;
use tungstenite::{Message, WebSocket};
use volt_mock_server::{Server, ServerConfig};

pub fn server() -> Server {
    Server::start(
        ServerConfig::default()
            .cluster("c1", "pw1")
            .cluster("c2", "pw2"),
    )
    .unwrap()
}

pub fn fast_server(ping_ms: u64, timeout_ms: u64) -> Server {
    let mut cfg = ServerConfig::default().cluster("c1", "pw1");
    cfg.ping_interval = Duration::from_millis(ping_ms);
    cfg.ping_timeout = Duration::from_millis(timeout_ms);
    Server::start(cfg).unwrap()
}

pub struct Client {
    pub ws: WebSocket<TcpStream>,
}

impl Client {
    pub fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let url = format!("ws://{addr}/socket.io/?EIO=4&transport=websocket");
        let (ws, _) = tungstenite::client::client(url, stream).unwrap();
        Client { ws }
    }

    /// Connects and reads the open packet.
    pub fn open(addr: SocketAddr) -> (Client, Value) {
        let mut c = Client::connect(addr);
        let open = c.recv_text();
        assert!(open.starts_with('0'), "{open}");
        let h: Value = serde_json::from_str(&open[1..]).unwrap();
        (c, h)
    }

    /// Connects and registers; panics unless accepted.
    pub fn registered(addr: SocketAddr, cluster: &str, pw: &str) -> Client {
        let (mut c, _) = Client::open(addr);
        let reply = c.register(cluster, pw);
        assert!(reply.starts_with("40/daemon,{\"sid\":"), "{reply}");
        c
    }

    pub fn register(&mut self, cluster: &str, pw: &str) -> String {
        self.send(&format!(
            r#"40/daemon,{{"teamClusterId":"{cluster}","daemonPassword":"{pw}","installedVersion":"1.0.0","client":"test/0.1"}}"#
        ));
        self.recv_text()
    }

    pub fn send(&mut self, text: &str) {
        self.ws.send(Message::text(text)).unwrap();
    }

    pub fn send_binary(&mut self, b: &[u8]) {
        self.ws.send(Message::binary(b.to_vec())).unwrap();
    }

    /// The next data frame (text or binary), raw.
    pub fn recv(&mut self) -> Message {
        loop {
            let m = self.ws.read().unwrap();
            if matches!(m, Message::Text(_) | Message::Binary(_) | Message::Close(_)) {
                return m;
            }
        }
    }

    /// The next text frame, answering and skipping Engine.IO pings.
    pub fn recv_text(&mut self) -> String {
        loop {
            match self.recv() {
                Message::Text(t) if t.as_str() == "2" => self.send("3"),
                Message::Text(t) => return t.as_str().to_owned(),
                other => panic!("expected a text frame, got {other:?}"),
            }
        }
    }

    /// The next event `(name, arg)`, skipping pings.
    pub fn recv_event(&mut self) -> (String, Value) {
        let t = self.recv_text();
        let json = t
            .strip_prefix("42/daemon,")
            .unwrap_or_else(|| panic!("not an event: {t}"));
        let v: Value = serde_json::from_str(json).unwrap();
        (v[0].as_str().unwrap().to_owned(), v[1].clone())
    }

    /// Reads until the connection ends; returns the close frame, if one came.
    pub fn recv_close(&mut self) -> Option<tungstenite::protocol::CloseFrame> {
        loop {
            match self.ws.read() {
                Ok(Message::Close(f)) => return f,
                Ok(_) => {}
                Err(_) => return None,
            }
        }
    }
}

/// One HTTP request with a raw socket: `(status, body JSON)`.
pub fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, Value) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let status: u16 = out[9..12].parse().unwrap();
    let body = out.split_once("\r\n\r\n").map(|x| x.1).unwrap_or("");
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

pub fn admin(addr: SocketAddr, method: &str, path: &str, body: &str) -> (u16, Value) {
    http(
        addr,
        method,
        path,
        &[("Content-Type", "application/json")],
        body,
    )
}
