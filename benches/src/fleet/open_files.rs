//! The open-files limit a fleet needs.

use crate::proc_stat;

/// Open files the fleet needs: one socket per daemon, two with the
/// embedded server (both ends in this process), plus slack.
pub fn files_needed(daemons: usize, embedded: bool) -> u64 {
    daemons as u64 * if embedded { 2 } else { 1 } + 64
}

/// Checks `ulimit -n` against [`files_needed`]; returns the soft limit.
///
/// Raising the soft limit needs `setrlimit`, which this crate cannot call
/// (no `unsafe`, no libc): the error asks the user to raise it in the shell.
pub fn check_open_files(daemons: usize, embedded: bool) -> Result<Option<u64>, String> {
    let need = files_needed(daemons, embedded);
    let Some((soft, hard)) = proc_stat::open_files_limit() else {
        return Ok(None);
    };
    match soft {
        Some(n) if n < need => {
            let target = need.next_power_of_two().max(4096);
            let hint = match hard {
                Some(h) if h < target => format!(
                    "the hard limit is {h}: raise it (e.g. in /etc/security/limits.conf) or run a smaller --fleet"
                ),
                _ => format!("run `ulimit -n {target}` in this shell first"),
            };
            Err(format!(
                "the open-files limit (ulimit -n) is {n}, and {daemons} daemons need about {need} \
                 descriptors{}: {hint}",
                if embedded {
                    " (two per daemon with the embedded server)"
                } else {
                    ""
                }
            ))
        }
        _ => Ok(soft),
    }
}
