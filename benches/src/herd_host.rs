//! What the machine does under the herd: open-files limit, the kernel's
//! listen-queue overflows, and scheduling stalls seen by a probe thread.
//! On a loaded 2-core machine the whole VM sometimes stops running a thread
//! for longer than the 100 ms window; every timestamp taken meanwhile lands
//! at the end of the stall, so a run that saw one is reported as such.
//!
//! ```
//! use std::time::Duration;
//! let probe = volt_benches::herd_host::StallProbe::start(Duration::from_millis(5));
//! let worst = probe.stop();
//! assert!(worst < Duration::from_secs(60));
//! ```

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// The soft `Max open files` of this process, from `/proc/self/limits`.
pub fn open_files_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// The kernel's `TcpExtListenOverflows` (system-wide, since boot), from
/// `/proc/net/netstat`: a name line then a value line per group.
pub fn listen_overflows() -> Option<u64> {
    let netstat = std::fs::read_to_string("/proc/net/netstat").ok()?;
    let mut lines = netstat.lines().filter(|l| l.starts_with("TcpExt:"));
    let (names, values) = (lines.next()?, lines.next()?);
    let at = names
        .split_whitespace()
        .position(|n| n == "ListenOverflows")?;
    values.split_whitespace().nth(at)?.parse().ok()
}

/// A thread that sleeps `tick` at a time and records how much later than
/// asked it woke up: the longest stall the scheduler imposed on it.
pub struct StallProbe {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Duration>,
}

impl StallProbe {
    /// Starts probing.
    pub fn start(tick: Duration) -> StallProbe {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = thread::spawn(move || {
            let mut worst = Duration::ZERO;
            while !flag.load(Ordering::Acquire) {
                let asked = Instant::now();
                thread::sleep(tick);
                worst = worst.max(asked.elapsed().saturating_sub(tick));
            }
            worst
        });
        StallProbe { stop, thread }
    }

    /// Stops probing; the longest stall beyond the tick.
    pub fn stop(self) -> Duration {
        self.stop.store(true, Ordering::Release);
        self.thread.join().unwrap_or(Duration::MAX)
    }
}
