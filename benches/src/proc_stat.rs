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

/// One thread of a process, from `/proc/PID/task/TID/{stat,status}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThreadStat {
    /// Thread id.
    pub tid: u64,
    /// Its name (`comm`, at most 15 bytes).
    pub name: String,
    /// `utime + stime`, clock ticks.
    pub ticks: u64,
    /// Time on a CPU, nanoseconds (first field of `schedstat`; `None` when
    /// the kernel has no schedstats). Far finer than `ticks`.
    pub cpu_ns: Option<u64>,
    /// `voluntary_ctxt_switches`: times it blocked (a wake-up each).
    pub voluntary: u64,
    /// `nonvoluntary_ctxt_switches`: times it was preempted.
    pub nonvoluntary: u64,
}

impl ThreadStat {
    /// CPU seconds: from `cpu_ns` when known, else from `ticks`.
    pub fn cpu_s(&self) -> f64 {
        match self.cpu_ns {
            Some(ns) => ns as f64 / 1e9,
            None => self.ticks as f64 / TICKS_PER_SECOND,
        }
    }
}

/// CPU seconds of the live threads of `pid` whose name matches, at
/// nanosecond resolution when the kernel has schedstats (see
/// [`ThreadStat::cpu_s`]). Threads that exited are not counted.
pub fn threads_cpu_fine_s(pid: &str, matches: impl Fn(&str) -> bool) -> f64 {
    threads(pid, matches).iter().map(ThreadStat::cpu_s).sum()
}

/// A counter (`voluntary_ctxt_switches`, …) from the text of a `status` file.
pub fn status_field(text: &str, field: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// The live threads of `pid` (`"self"` or a number) whose name matches.
pub fn threads(pid: &str, matches: impl Fn(&str) -> bool) -> Vec<ThreadStat> {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    let mut out: Vec<ThreadStat> = dir
        .flatten()
        .filter_map(|e| {
            let tid = e.file_name().to_str()?.parse().ok()?;
            let (name, ticks) = parse_stat(&std::fs::read_to_string(e.path().join("stat")).ok()?)?;
            if !matches(&name) {
                return None;
            }
            let status = std::fs::read_to_string(e.path().join("status")).ok()?;
            let cpu_ns = std::fs::read_to_string(e.path().join("schedstat"))
                .ok()
                .and_then(|t| t.split_whitespace().next()?.parse().ok());
            Some(ThreadStat {
                tid,
                name,
                ticks,
                cpu_ns,
                voluntary: status_field(&status, "voluntary_ctxt_switches")?,
                nonvoluntary: status_field(&status, "nonvoluntary_ctxt_switches")?,
            })
        })
        .collect();
    out.sort_by_key(|t| t.tid);
    out
}

/// The soft and hard limits on open files of this process (`Max open
/// files` in `/proc/self/limits`; `None` for unlimited).
pub fn open_files_limit() -> Option<(Option<u64>, Option<u64>)> {
    let text = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    let mut fields = line["Max open files".len()..].split_whitespace();
    let limit = |v: Option<&str>| -> Option<Option<u64>> {
        match v? {
            "unlimited" => Some(None),
            n => n.parse().ok().map(Some),
        }
    };
    Some((limit(fields.next())?, limit(fields.next())?))
}

/// Open file descriptors of this process now (`/proc/self/fd`).
pub fn open_fds() -> Option<u64> {
    Some(std::fs::read_dir("/proc/self/fd").ok()?.count() as u64)
}

/// A field of `/proc/self/status` in KiB (`VmHWM`, `VmRSS`).
pub fn status_kib(field: &str) -> Option<u64> {
    status_field(&std::fs::read_to_string("/proc/self/status").ok()?, field)
}

/// A field of `/proc/PID/status` in KiB (`VmHWM`, `VmRSS`).
pub fn status_kib_of(pid: &str, field: &str) -> Option<u64> {
    status_field(
        &std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?,
        field,
    )
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
        let me = threads("self", |_| true);
        assert!(!me.is_empty());
        let (soft, _hard) = open_files_limit().unwrap();
        assert!(soft.is_none_or(|n| n > 0));
        assert!(open_fds().unwrap() > 0);
    }
}
