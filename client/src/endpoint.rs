//! Where the client connects to, parsed from the URLs in the options: the
//! control socket's target and the enrollment URL. Pure parsing, kept out
//! of `connection` and `enrollment` so that validating the options does not
//! make `options` depend on the modules that read the options.

/// Where the socket goes, derived from `control_socket_url` and the options.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) tls: bool,
    pub(crate) url: String,
}

impl Target {
    /// Maps `http`/`https` to `ws`/`wss` and appends the Engine.IO query;
    /// `engine_path` is `SocketOptions::path`.
    pub(crate) fn parse(control_socket_url: &str, engine_path: &str) -> Result<Self, String> {
        let url = url::Url::parse(control_socket_url)
            .map_err(|e| format!("control_socket_url {control_socket_url:?} is not a URL: {e}"))?;
        let tls = match url.scheme() {
            "ws" | "http" => false,
            "wss" | "https" => true,
            other => {
                return Err(format!(
                    "control_socket_url scheme {other:?} is not ws, wss, http or https"
                ))
            }
        };
        let host = url
            .host_str()
            .ok_or_else(|| "control_socket_url has no host".to_owned())?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = url.port().unwrap_or(if tls { 443 } else { 80 });
        let path = if engine_path.starts_with('/') {
            engine_path.to_owned()
        } else {
            format!("/{engine_path}")
        };
        let scheme = if tls { "wss" } else { "ws" };
        let host_part = if host.contains(':') {
            format!("[{host}]")
        } else {
            host.clone()
        };
        Ok(Target {
            url: format!("{scheme}://{host_part}:{port}{path}?EIO=4&transport=websocket"),
            host,
            port,
            tls,
        })
    }
}

/// Resolves the enrollment URL against `server_url` (RFC 3986).
pub(crate) fn resolve_url(server_url: &str, reference: &str) -> Result<url::Url, String> {
    if let Ok(abs) = url::Url::parse(reference) {
        return Ok(abs);
    }
    let base = url::Url::parse(server_url).map_err(|e| format!("server_url is not a URL: {e}"))?;
    base.join(reference)
        .map_err(|e| format!("enrollment URL {reference:?} does not resolve: {e}"))
}
