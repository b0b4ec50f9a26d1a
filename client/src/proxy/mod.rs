//! HTTP proxies (CONNECT tunnels) for the control socket and enrollment:
//! the options, which proxy a connection takes ([`route`], pure), and the
//! tunnel itself ([`connect`]).

use std::fmt;

pub(crate) mod connect;
pub(crate) mod env;
mod no_proxy;
mod url;

use no_proxy::NoProxy;
pub(crate) use url::ProxyUrl;

/// Basic credentials for a proxy. `Debug` shows the user name only.
///
/// ```
/// use volt_daemon_client::ProxyCredentials;
/// let c = ProxyCredentials::new("alice", "hunter2");
/// assert!(!format!("{c:?}").contains("hunter2"));
/// ```
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProxyCredentials {
    /// The user name (no `:`, no control characters).
    pub username: String,
    /// The password (no control characters).
    pub password: String,
}

impl ProxyCredentials {
    /// Credentials for `Proxy-Authorization: Basic`.
    pub fn new(username: impl Into<String>, password: impl Into<String>) -> Self {
        ProxyCredentials {
            username: username.into(),
            password: password.into(),
        }
    }
}

impl fmt::Debug for ProxyCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProxyCredentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// Which HTTP proxy the control socket (and, unless
/// `EnrollmentOptions::proxy` says otherwise, enrollment) goes through.
///
/// The default reads the environment at each connection attempt:
/// `HTTPS_PROXY` / `https_proxy` for `wss`/`https`, `HTTP_PROXY` /
/// `http_proxy` for `ws`/`http`, then `ALL_PROXY`, and `NO_PROXY` /
/// `no_proxy` (comma list; domain suffixes; `*`; IP addresses; CIDR
/// ranges; `host:port`). With none set, there is no proxy.
/// [`ProxyOptions::none`] ignores the environment; [`ProxyOptions::new`]
/// names the proxy explicitly (the environment is not read then).
///
/// Only `http://` proxies are supported; TLS to the server runs inside the
/// tunnel, verified against the server's name. `Debug` never shows the
/// password, nor credentials inside the URL.
///
/// ```
/// use volt_daemon_client::ProxyOptions;
/// let p = ProxyOptions::new("http://proxy.corp:3128")
///     .with_credentials("daemon", "hunter2")
///     .with_no_proxy(vec!["localhost".into(), "10.0.0.0/8".into()]);
/// assert!(!format!("{p:?}").contains("hunter2"));
/// assert!(!ProxyOptions::none().use_environment);
/// assert!(ProxyOptions::default().use_environment);
/// ```
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProxyOptions {
    /// The proxy, `http://[user:password@]host[:port]` (port 80 when
    /// absent). `None`: the environment decides, if `use_environment`.
    pub url: Option<String>,
    /// Basic credentials; they take precedence over any in the URL.
    pub credentials: Option<ProxyCredentials>,
    /// Hosts reached directly, in `NO_PROXY` syntax, one entry each (added
    /// to the environment's list when that is read).
    pub no_proxy: Vec<String>,
    /// Read the environment variables when `url` is `None` (true).
    pub use_environment: bool,
}

impl Default for ProxyOptions {
    fn default() -> Self {
        ProxyOptions {
            url: None,
            credentials: None,
            no_proxy: Vec::new(),
            use_environment: true,
        }
    }
}

impl ProxyOptions {
    /// Through the proxy at `url`; the environment is not read.
    pub fn new(url: impl Into<String>) -> Self {
        ProxyOptions {
            url: Some(url.into()),
            use_environment: false,
            ..ProxyOptions::default()
        }
    }

    /// No proxy at all, whatever the environment says.
    pub fn none() -> Self {
        ProxyOptions {
            use_environment: false,
            ..ProxyOptions::default()
        }
    }

    /// The proxy the environment names, if any (the default).
    pub fn from_environment() -> Self {
        ProxyOptions::default()
    }

    /// Sets basic credentials for the proxy.
    pub fn with_credentials(
        mut self,
        username: impl Into<String>,
        password: impl Into<String>,
    ) -> Self {
        self.credentials = Some(ProxyCredentials::new(username, password));
        self
    }

    /// Sets the hosts reached directly (`NO_PROXY` entries).
    pub fn with_no_proxy(mut self, no_proxy: Vec<String>) -> Self {
        self.no_proxy = no_proxy;
        self
    }

    /// Reads the environment when `url` is `None`, or not.
    pub fn with_use_environment(mut self, use_environment: bool) -> Self {
        self.use_environment = use_environment;
        self
    }

    /// Checks an explicit URL and the credentials (for validation).
    pub(crate) fn validate(&self) -> Result<(), String> {
        if let Some(url) = &self.url {
            url::parse(url)?;
        }
        if let Some(c) = &self.credentials {
            connect::check_credentials(c)?;
        }
        Ok(())
    }
}

impl fmt::Debug for ProxyOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The URL may carry a password: only its host and port are shown.
        let url = self
            .url
            .as_ref()
            .map(|u| url::parse(u).map_or_else(|_| "<invalid>".to_owned(), |p| p.shown()));
        f.debug_struct("ProxyOptions")
            .field("url", &url)
            .field("credentials", &self.credentials)
            .field("no_proxy", &self.no_proxy)
            .field("use_environment", &self.use_environment)
            .finish()
    }
}

/// The proxy a connection to `host:port` takes under `options`, with the
/// environment read through `var`: `None` to connect directly.
pub(crate) fn route(
    options: &ProxyOptions,
    var: &dyn Fn(&str) -> Option<String>,
    tls: bool,
    host: &str,
    port: u16,
) -> Result<Option<ProxyUrl>, String> {
    let mut bypass = NoProxy::parse(&options.no_proxy.join(","));
    let url = match (&options.url, options.use_environment) {
        (Some(url), _) => url.clone(),
        (None, true) => match env::proxy_url(var, tls) {
            Some(url) => {
                bypass.extend(&env::no_proxy(var).unwrap_or_default());
                url
            }
            None => return Ok(None),
        },
        (None, false) => return Ok(None),
    };
    if bypass.matches(host, port) {
        return Ok(None);
    }
    let mut proxy = url::parse(&url)?;
    if options.credentials.is_some() {
        proxy.credentials.clone_from(&options.credentials);
    }
    Ok(Some(proxy))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    const ENV: &[(&str, &str)] = &[
        ("HTTPS_PROXY", "http://env-user:env-pw@envproxy:3128"),
        ("NO_PROXY", "internal.example,127.0.0.1"),
    ];

    fn host_of(r: Result<Option<ProxyUrl>, String>) -> Option<String> {
        r.unwrap().map(|p| p.shown())
    }

    #[test]
    fn the_default_follows_the_environment_and_its_no_proxy_list() {
        let o = ProxyOptions::default();
        let env = vars(ENV);
        let p = route(&o, &env, true, "volt.example.com", 443)
            .unwrap()
            .unwrap();
        assert_eq!(p.shown(), "envproxy:3128");
        assert_eq!(
            p.credentials,
            Some(ProxyCredentials::new("env-user", "env-pw"))
        );
        assert_eq!(
            host_of(route(&o, &env, true, "a.internal.example", 443)),
            None
        );
        assert_eq!(host_of(route(&o, &env, true, "127.0.0.1", 443)), None);
        // ws takes HTTP_PROXY, which is not set: direct.
        assert_eq!(
            host_of(route(&o, &env, false, "volt.example.com", 80)),
            None
        );
        // The explicit list adds to the environment's.
        let o = o.with_no_proxy(vec!["volt.example.com".into()]);
        assert_eq!(
            host_of(route(&o, &env, true, "volt.example.com", 443)),
            None
        );
    }

    #[test]
    fn none_and_explicit_options_ignore_the_environment() {
        let env = vars(ENV);
        let none = ProxyOptions::none();
        assert_eq!(
            host_of(route(&none, &env, true, "volt.example.com", 443)),
            None
        );
        let explicit = ProxyOptions::new("proxy.corp:8080")
            .with_credentials("u", "p")
            .with_no_proxy(vec!["*.local".into()]);
        let p = route(&explicit, &env, false, "a.internal.example", 80)
            .unwrap()
            .unwrap();
        assert_eq!(p.shown(), "proxy.corp:8080");
        assert_eq!(p.credentials, Some(ProxyCredentials::new("u", "p")));
        assert_eq!(host_of(route(&explicit, &env, true, "x.local", 443)), None);
        // Explicit credentials win over the URL's.
        let both = ProxyOptions::new("http://a:b@proxy:1").with_credentials("c", "d");
        let p = route(&both, &env, true, "h", 1).unwrap().unwrap();
        assert_eq!(p.credentials, Some(ProxyCredentials::new("c", "d")));
    }

    #[test]
    fn a_bad_proxy_url_from_the_environment_is_an_error_without_its_password() {
        let env = vars(&[("ALL_PROXY", "socks5://u:hunter2@socks:1080")]);
        let e = route(&ProxyOptions::default(), &env, true, "h", 443).unwrap_err();
        assert!(e.contains("socks5") && !e.contains("hunter2"), "{e}");
    }

    #[test]
    fn debug_shows_neither_the_password_nor_credentials_in_the_url() {
        let o =
            ProxyOptions::new("http://alice:hunter2@proxy:3128").with_credentials("bob", "s3cret");
        let shown = format!("{o:?}");
        assert!(
            shown.contains("proxy:3128") && shown.contains("bob"),
            "{shown}"
        );
        assert!(
            !shown.contains("hunter2") && !shown.contains("s3cret"),
            "{shown}"
        );
        assert!(!shown.contains("alice"), "{shown}");
        let bad = format!("{:?}", ProxyOptions::new("https://x:hunter2@p"));
        assert!(!bad.contains("hunter2"), "{bad}");
    }

    #[test]
    fn validation_refuses_bad_urls_and_credentials_that_break_the_header() {
        assert!(ProxyOptions::new("http://proxy:3128").validate().is_ok());
        assert!(ProxyOptions::default().validate().is_ok());
        assert!(ProxyOptions::new("ftp://proxy").validate().is_err());
        let e = ProxyOptions::new("http://p:1")
            .with_credentials("a:b", "pw-x")
            .validate()
            .unwrap_err();
        assert!(!e.contains("pw-x"), "{e}");
        assert!(ProxyOptions::new("http://p:1")
            .with_credentials("a", "p\r\nX: y")
            .validate()
            .is_err());
    }
}
