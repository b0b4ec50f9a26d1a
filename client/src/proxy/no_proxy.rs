//! The hosts a proxy does not apply to, read the way curl reads `NO_PROXY`:
//! a list separated by commas (and white space); `*` alone matches every
//! host; a name matches itself and every subdomain (a leading `.` or `*.`
//! changes nothing); an IP address matches itself; a CIDR range
//! (`10.0.0.0/8`, `fd00::/8`) matches the addresses inside it; an entry
//! with a port (`host:8080`, `[::1]:8080`) matches that port only.
//! Names compare without case and without a trailing dot. Entries that are
//! none of these are ignored, as curl ignores them. Pure: no I/O.

use std::net::IpAddr;

/// One entry of the list.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Rule {
    /// A domain name and its subdomains.
    Domain(String, Option<u16>),
    /// One address.
    Address(IpAddr, Option<u16>),
    /// A CIDR range.
    Range(IpAddr, u8),
}

/// A parsed `NO_PROXY` list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct NoProxy {
    everything: bool,
    rules: Vec<Rule>,
}

impl NoProxy {
    /// Parses a list such as `localhost,.internal,10.0.0.0/8,[::1]:8080`.
    pub(crate) fn parse(list: &str) -> Self {
        let mut parsed = NoProxy::default();
        parsed.extend(list);
        parsed
    }

    /// Adds the entries of another list.
    pub(crate) fn extend(&mut self, list: &str) {
        for entry in list.split(|c: char| c == ',' || c.is_whitespace()) {
            if entry == "*" {
                self.everything = true;
            } else if let Some(rule) = parse_rule(entry) {
                self.rules.push(rule);
            }
        }
    }

    /// Whether a connection to `host` (a name or an address, IPv6 with or
    /// without brackets) on `port` goes around the proxy.
    pub(crate) fn matches(&self, host: &str, port: u16) -> bool {
        if self.everything {
            return true;
        }
        let host = normalize(host.trim_start_matches('[').trim_end_matches(']'));
        let address: Option<IpAddr> = host.parse().ok();
        self.rules.iter().any(|rule| match (rule, address) {
            (Rule::Domain(name, p), None) => {
                port_ok(*p, port)
                    && (host == *name
                        || (host.len() > name.len()
                            && host.ends_with(name.as_str())
                            && host.as_bytes()[host.len() - name.len() - 1] == b'.'))
            }
            (Rule::Address(a, p), Some(h)) => port_ok(*p, port) && same_address(*a, h),
            (Rule::Range(net, bits), Some(h)) => in_range(*net, *bits, h),
            _ => false,
        })
    }
}

fn port_ok(rule: Option<u16>, port: u16) -> bool {
    rule.is_none_or(|p| p == port)
}

/// Lower case, without a trailing dot.
fn normalize(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

fn parse_rule(entry: &str) -> Option<Rule> {
    if entry.is_empty() {
        return None;
    }
    if let Some((net, bits)) = entry.split_once('/') {
        let net: IpAddr = net
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse()
            .ok()?;
        let bits: u8 = bits.parse().ok()?;
        let max = if net.is_ipv4() { 32 } else { 128 };
        return (bits <= max).then_some(Rule::Range(net, bits));
    }
    let (host, port) = split_port(entry)?;
    if let Ok(address) = host.parse::<IpAddr>() {
        return Some(Rule::Address(address, port));
    }
    let name = normalize(host.trim_start_matches('*').trim_start_matches('.'));
    let valid = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_');
    valid.then_some(Rule::Domain(name, port))
}

/// `host`, `host:port`, `[v6]`, `[v6]:port` or a bare IPv6 address.
fn split_port(entry: &str) -> Option<(&str, Option<u16>)> {
    if let Some(rest) = entry.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        return match after {
            "" => Some((host, None)),
            _ => Some((host, Some(after.strip_prefix(':')?.parse().ok()?))),
        };
    }
    match entry.matches(':').count() {
        0 => Some((entry, None)),
        1 => {
            let (host, port) = entry.split_once(':')?;
            Some((host, Some(port.parse().ok()?)))
        }
        _ => Some((entry, None)),
    }
}

/// Equal, an IPv4-mapped IPv6 address counting as its IPv4 address.
fn same_address(a: IpAddr, b: IpAddr) -> bool {
    a.to_canonical() == b.to_canonical()
}

fn in_range(net: IpAddr, bits: u8, host: IpAddr) -> bool {
    match (net.to_canonical(), host.to_canonical()) {
        (IpAddr::V4(n), IpAddr::V4(h)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(bits)).unwrap_or(0);
            u32::from(n) & mask == u32::from(h) & mask
        }
        (IpAddr::V6(n), IpAddr::V6(h)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(bits)).unwrap_or(0);
            u128::from(n) & mask == u128::from(h) & mask
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_list_matches_as_curl_reads_no_proxy() {
        let list = NoProxy::parse(
            "localhost, .internal.example,*.corp.example  example.org:8443,\
             10.0.0.0/8,192.168.1.7,[::1],[fd00::5]:9000,fe80::/10,BAD/99,,:x",
        );
        let cases: &[(&str, u16, bool)] = &[
            // Names and their subdomains, without case or trailing dot.
            ("localhost", 80, true),
            ("LocalHost.", 443, true),
            ("a.localhost", 80, true),
            ("notlocalhost", 80, false),
            ("internal.example", 80, true),
            ("x.y.internal.example", 80, true),
            ("xinternal.example", 80, false),
            ("corp.example", 80, true),
            ("db.corp.example", 5432, true),
            // A port restricts the entry to that port.
            ("example.org", 8443, true),
            ("api.example.org", 8443, true),
            ("example.org", 443, false),
            // Addresses and ranges.
            ("10.1.2.3", 80, true),
            ("11.0.0.1", 80, false),
            ("192.168.1.7", 1, true),
            ("192.168.1.8", 1, false),
            ("::1", 80, true),
            ("[::1]", 80, true),
            ("::ffff:10.9.9.9", 80, true),
            ("fd00::5", 9000, true),
            ("fd00::5", 9001, false),
            ("fe80::1234", 80, true),
            ("fe00::1", 80, false),
            // A name is not an address, whatever it resolves to.
            ("volt.example.com", 443, false),
        ];
        for (host, port, want) in cases {
            assert_eq!(list.matches(host, *port), *want, "{host}:{port}");
        }
    }

    #[test]
    fn a_lone_star_matches_everything_and_an_empty_list_nothing() {
        assert!(NoProxy::parse("*").matches("volt.example.com", 443));
        assert!(NoProxy::parse("a.example, *").matches("10.0.0.1", 1));
        let empty = NoProxy::parse("");
        assert!(!empty.matches("localhost", 80));
        assert!(!empty.matches("127.0.0.1", 80));
    }

    #[test]
    fn ranges_of_every_width_and_invalid_entries() {
        assert!(NoProxy::parse("0.0.0.0/0").matches("203.0.113.9", 1));
        assert!(NoProxy::parse("::/0").matches("2001:db8::1", 1));
        assert!(NoProxy::parse("203.0.113.9/32").matches("203.0.113.9", 1));
        assert!(!NoProxy::parse("203.0.113.9/32").matches("203.0.113.8", 1));
        assert!(NoProxy::parse("[2001:db8::]/32").matches("2001:db8:ffff::1", 1));
        // Widths past the family, ports that are not numbers: ignored.
        for bad in [
            "10.0.0.0/33",
            "::/129",
            "host:port",
            "[::1]x",
            "a b/c",
            "ex ample",
        ] {
            let list = NoProxy::parse(bad);
            assert!(
                !list.matches("10.0.0.1", 80) && !list.matches("host", 80),
                "{bad}"
            );
        }
    }
}
