//! Which environment variables name the proxy, read through a lookup
//! function so that the choice is a pure function, tested with a map.
//!
//! For `wss`/`https`: `https_proxy`, then `HTTPS_PROXY`; for `ws`/`http`:
//! `http_proxy`, then `HTTP_PROXY`; then, for both, `all_proxy` and
//! `ALL_PROXY`. The hosts it does not apply to: `no_proxy`, then
//! `NO_PROXY`. The lower-case name wins, as in curl; an empty value counts
//! as unset.

/// The proxy URL the environment names for a `tls` (or plain) connection.
pub(crate) fn proxy_url(var: &dyn Fn(&str) -> Option<String>, tls: bool) -> Option<String> {
    let names: [&str; 4] = if tls {
        ["https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"]
    } else {
        ["http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"]
    };
    first_set(var, &names)
}

/// The `NO_PROXY` list the environment holds.
pub(crate) fn no_proxy(var: &dyn Fn(&str) -> Option<String>) -> Option<String> {
    first_set(var, &["no_proxy", "NO_PROXY"])
}

fn first_set(var: &dyn Fn(&str) -> Option<String>, names: &[&str]) -> Option<String> {
    names
        .iter()
        .filter_map(|name| var(name))
        .find(|value| !value.trim().is_empty())
}

/// The process environment as a lookup function.
pub(crate) fn process(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn lookup(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |name| map.get(name).cloned()
    }

    #[test]
    fn each_scheme_reads_its_own_variable_then_all_proxy() {
        let env = lookup(&[
            ("HTTPS_PROXY", "http://secure:1"),
            ("HTTP_PROXY", "http://plain:2"),
            ("ALL_PROXY", "http://all:3"),
        ]);
        assert_eq!(proxy_url(&env, true).as_deref(), Some("http://secure:1"));
        assert_eq!(proxy_url(&env, false).as_deref(), Some("http://plain:2"));
        let only_all = lookup(&[("ALL_PROXY", "http://all:3")]);
        assert_eq!(proxy_url(&only_all, true).as_deref(), Some("http://all:3"));
        assert_eq!(proxy_url(&only_all, false).as_deref(), Some("http://all:3"));
        // A wss connection never takes HTTP_PROXY, nor ws HTTPS_PROXY.
        let plain_only = lookup(&[("HTTP_PROXY", "http://plain:2")]);
        assert_eq!(proxy_url(&plain_only, true), None);
        let secure_only = lookup(&[("https_proxy", "http://secure:1")]);
        assert_eq!(proxy_url(&secure_only, false), None);
    }

    #[test]
    fn lower_case_wins_and_empty_values_count_as_unset() {
        let env = lookup(&[
            ("https_proxy", "http://lower:1"),
            ("HTTPS_PROXY", "http://upper:2"),
            ("http_proxy", ""),
            ("HTTP_PROXY", "http://upper:3"),
            ("all_proxy", "  "),
            ("no_proxy", "lower.example"),
            ("NO_PROXY", "upper.example"),
        ]);
        assert_eq!(proxy_url(&env, true).as_deref(), Some("http://lower:1"));
        assert_eq!(proxy_url(&env, false).as_deref(), Some("http://upper:3"));
        assert_eq!(no_proxy(&env).as_deref(), Some("lower.example"));
        let upper = lookup(&[("NO_PROXY", "upper.example")]);
        assert_eq!(no_proxy(&upper).as_deref(), Some("upper.example"));
    }

    #[test]
    fn an_empty_environment_names_no_proxy() {
        let env = lookup(&[("PATH", "/bin")]);
        assert_eq!(proxy_url(&env, true), None);
        assert_eq!(proxy_url(&env, false), None);
        assert_eq!(no_proxy(&env), None);
    }
}
