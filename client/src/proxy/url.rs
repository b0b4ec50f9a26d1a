//! Parsing a proxy URL (`http://[user:password@]host[:port]`), as given in
//! `ProxyOptions::url` or an environment variable. Pure: no I/O. Errors
//! never quote the URL, which may hold a password.

use super::ProxyCredentials;

/// The port of a proxy URL without one (as Go and Python take it; curl
/// would take 1080).
pub(crate) const DEFAULT_PORT: u16 = 80;

/// Where the proxy is, and the credentials its URL carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ProxyUrl {
    /// A domain or an IP address, no brackets.
    pub(crate) host: String,
    pub(crate) port: u16,
    /// From the URL's user information, percent-decoded.
    pub(crate) credentials: Option<ProxyCredentials>,
}

impl ProxyUrl {
    /// `host:port` for messages and logs (brackets around IPv6).
    pub(crate) fn shown(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// Parses `text`; a URL without a scheme is taken as `http://`, as curl
/// takes it. Only `http` proxies are supported (a CONNECT tunnel over
/// plain TCP to the proxy).
pub(crate) fn parse(text: &str) -> Result<ProxyUrl, String> {
    let text = text.trim();
    let with_scheme = if text.contains("://") {
        text.to_owned()
    } else {
        format!("http://{text}")
    };
    let url =
        url::Url::parse(&with_scheme).map_err(|e| format!("the proxy URL is not a URL: {e}"))?;
    if url.scheme() != "http" {
        return Err(format!(
            "the proxy URL scheme {:?} is not supported (only http:// proxies are)",
            url.scheme()
        ));
    }
    let host = match url.host() {
        Some(url::Host::Domain(d)) if !d.is_empty() => d.to_owned(),
        Some(url::Host::Ipv4(a)) => a.to_string(),
        Some(url::Host::Ipv6(a)) => a.to_string(),
        _ => return Err("the proxy URL has no host".into()),
    };
    let credentials = if url.username().is_empty() && url.password().is_none() {
        None
    } else {
        Some(ProxyCredentials::new(
            decode(url.username()),
            decode(url.password().unwrap_or("")),
        ))
    };
    Ok(ProxyUrl {
        host,
        port: url.port_or_known_default().unwrap_or(DEFAULT_PORT),
        credentials,
    })
}

fn decode(s: &str) -> String {
    percent_decode(s.as_bytes())
}

/// `%XX` sequences to bytes, then UTF-8 (lossy); anything else as is.
fn percent_decode(bytes: &[u8]) -> String {
    let hex = |b: u8| (b as char).to_digit(16);
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match (bytes[i], bytes.get(i + 1), bytes.get(i + 2)) {
            (b'%', Some(&h), Some(&l)) if hex(h).is_some() && hex(l).is_some() => {
                let v = hex(h).unwrap_or(0) * 16 + hex(l).unwrap_or(0);
                out.push(v as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds(user: &str, password: &str) -> Option<ProxyCredentials> {
        Some(ProxyCredentials::new(user, password))
    }

    #[test]
    fn proxy_urls_parse_to_host_port_and_credentials() {
        let cases: &[(&str, &str, u16, Option<ProxyCredentials>)] = &[
            ("http://proxy.corp:3128", "proxy.corp", 3128, None),
            ("http://proxy.corp:3128/", "proxy.corp", 3128, None),
            ("proxy.corp:8080", "proxy.corp", 8080, None),
            ("proxy.corp", "proxy.corp", DEFAULT_PORT, None),
            ("  http://10.0.0.1:3128  ", "10.0.0.1", 3128, None),
            ("http://[fd00::1]:3128", "fd00::1", 3128, None),
            (
                "http://alice:s%40cr%3At@proxy:3128",
                "proxy",
                3128,
                creds("alice", "s@cr:t"),
            ),
            ("http://bob@proxy:1", "proxy", 1, creds("bob", "")),
            ("HTTP://Proxy.Corp:80", "proxy.corp", 80, None),
        ];
        for (text, host, port, credentials) in cases {
            let p = parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(
                (p.host.as_str(), p.port, &p.credentials),
                (*host, *port, credentials),
                "{text}"
            );
        }
        assert_eq!(parse("http://[::1]:9").unwrap().shown(), "[::1]:9");
        assert_eq!(parse("http://h:9").unwrap().shown(), "h:9");
    }

    #[test]
    fn unsupported_or_broken_proxy_urls_are_refused_without_quoting_them() {
        for text in [
            "https://u:hunter2@proxy:443",
            "socks5://u:hunter2@proxy:1080",
            "http://u:hunter2@:3128",
            "http://u:hunter2@proxy:99999",
            "",
        ] {
            let e = parse(text).unwrap_err();
            assert!(!e.contains("hunter2"), "{text}: {e}");
            assert!(e.contains("proxy URL"), "{text}: {e}");
        }
    }

    #[test]
    fn percent_decoding_leaves_stray_percent_signs() {
        assert_eq!(percent_decode(b"a%2Fb%zz%4"), "a/b%zz%4");
    }
}
