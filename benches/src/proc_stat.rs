//! CPU time and peak RSS from `/proc`, without libc.
//!
//! CPU times come from `stat`'s `utime + stime`, in clock ticks; Linux
//! exposes them at `USER_HZ` = 100 on every architecture this runs on, so
//! their resolution is 10 ms per thread: measure for seconds, not
//! milliseconds.

/// Clock ticks per second of `/proc/*/stat` times (`USER_HZ`).
pub const TICKS_PER_SECOND: f64 = 100.0;

/// `(comm, utime + stime in ticks)` from the text of a `stat` file.
pub fn parse_stat(text: &str) -> Option<(String, u64)> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let comm = text.get(open + 1..close)?.to_owned();
    // Fields after the comm: state is field 3, utime 14, stime 15.
    let rest: Vec<&str> = text.get(close + 1..)?.split_whitespace().collect();
    let utime: u64 = rest.get(11)?.parse().ok()?;
    let stime: u64 = rest.get(12)?.parse().ok()?;
    Some((comm, utime + stime))
}

/// CPU seconds (user + system) used so far by process `pid` (`"self"` or a
/// number), all threads, live and exited.
pub fn process_cpu_s(pid: &str) -> Option<f64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&text).map(|(_, t)| t as f64 / TICKS_PER_SECOND)
}

/// CPU seconds used so far by the live threads of `pid` whose name matches.
pub fn threads_cpu_s(pid: &str, matches: impl Fn(&str) -> bool) -> f64 {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0.0;
    };
    let ticks: u64 = dir
        .flatten()
        .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
        .filter_map(|t| parse_stat(&t))
        .filter(|(comm, _)| matches(comm))
        .map(|(_, t)| t)
        .sum();
    ticks as f64 / TICKS_PER_SECOND
}

/// A field of `/proc/self/status` in KiB (`VmHWM`, `VmRSS`).
pub fn status_kib(field: &str) -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/status").ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// Peak resident set size of this process (`VmHWM`), KiB.
pub fn peak_rss_kib() -> Option<u64> {
    status_kib("VmHWM")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_stat_line_with_spaces_in_comm() {
        let line = "42 (volt mock) S 1 42 42 0 -1 4194560 100 0 0 0 7 5 0 0 20 0 3 0 1 1 1";
        assert_eq!(parse_stat(line), Some(("volt mock".into(), 12)));
    }

    #[test]
    fn reads_this_process() {
        assert!(process_cpu_s("self").is_some());
        assert!(peak_rss_kib().unwrap() > 0);
    }
}
