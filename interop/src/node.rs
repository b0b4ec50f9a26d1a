//! Node: the pinned packages (`npm ci` under a file lock) and the child
//! processes the tests drive (killed and reaped on drop), and a check for
//! leaked ones.

use std::fs::{self, OpenOptions};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, OnceLock};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::Receiver;
use parking_lot::Mutex;

use crate::*;

static NODE_READY: OnceLock<()> = OnceLock::new();

/// Makes sure `node` and `npm` exist and `interop/node_modules` matches the
/// lockfile (running `npm ci` when it is missing or older than
/// `package-lock.json`). Once per process; parallel processes serialise the
/// install on `interop/.npm-install.lock`. Panics (fails the test) when a
/// tool is missing or the install fails.
pub fn ensure_node_deps() {
    NODE_READY.get_or_init(|| {
        let version = tool_version("node");
        let major: u32 = version
            .trim()
            .trim_start_matches('v')
            .split('.')
            .next()
            .and_then(|m| m.parse().ok())
            .unwrap_or(0);
        assert!(
            major >= 18,
            "the interop tests need Node 18+ (20 recommended); `node --version` says {version:?}"
        );
        tool_version("npm");
        if !node_modules_up_to_date() {
            let _lock = InstallLock::acquire(&interop_dir().join(".npm-install.lock"));
            // Another process may have installed while we waited.
            if !node_modules_up_to_date() {
                npm_ci();
            }
        }
        assert!(
            interop_dir()
                .join("node_modules/socket.io/package.json")
                .is_file()
                && interop_dir()
                    .join("node_modules/socket.io-client/package.json")
                    .is_file(),
            "interop/node_modules has no socket.io / socket.io-client after npm ci"
        );
    });
}

fn tool_version(tool: &str) -> String {
    match Command::new(tool).arg("--version").output() {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout).trim().to_owned(),
        Ok(out) => panic!(
            "`{tool} --version` failed ({}): {}. The interop tests need Node 20+ and npm; \
             a missing tool fails them, it never skips them.",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ),
        Err(e) => panic!(
            "`{tool}` is required by the interop tests but cannot be run ({e}). Install \
             Node.js 20+ with npm (they must be on PATH); a missing tool fails these \
             tests, it never skips them."
        ),
    }
}

fn mtime(path: &Path) -> Option<SystemTime> {
    fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// `node_modules/.package-lock.json` (written by every npm install) exists
/// and is not older than `package-lock.json`.
fn node_modules_up_to_date() -> bool {
    let lock = interop_dir().join("package-lock.json");
    let stamp = interop_dir().join("node_modules/.package-lock.json");
    match (mtime(&lock), mtime(&stamp)) {
        (Some(lock), Some(stamp)) => stamp >= lock,
        (None, _) => panic!("interop/package-lock.json is missing"),
        _ => false,
    }
}

fn npm_ci() {
    let out = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
        .current_dir(interop_dir())
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run `npm ci` in interop/: {e}"));
    assert!(
        out.status.success(),
        "`npm ci` in interop/ failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// An exclusive lock file (created with `create_new`, holding our pid),
/// removed on drop. A lock whose process is gone is stale and taken over.
struct InstallLock(PathBuf);

impl InstallLock {
    fn acquire(path: &Path) -> InstallLock {
        let deadline = Instant::now() + INSTALL_TIMEOUT;
        loop {
            match OpenOptions::new().write(true).create_new(true).open(path) {
                Ok(mut f) => {
                    let _ = writeln!(f, "{}", std::process::id());
                    return InstallLock(path.to_owned());
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let holder = fs::read_to_string(path)
                        .ok()
                        .and_then(|s| s.trim().parse::<u32>().ok());
                    if let Some(pid) = holder {
                        if !Path::new(&format!("/proc/{pid}")).exists() {
                            let _ = fs::remove_file(path); // stale: its holder died
                            continue;
                        }
                    }
                    assert!(
                        Instant::now() < deadline,
                        "waited {INSTALL_TIMEOUT:?} for the npm install lock {} (held by pid {holder:?})",
                        path.display()
                    );
                    // Retry pacing while another process runs `npm ci`.
                    thread::sleep(Duration::from_millis(100));
                }
                Err(e) => panic!("cannot create the lock file {}: {e}", path.display()),
            }
        }
    }
}

impl Drop for InstallLock {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

/// A Node script with piped stdio: stdout lines arrive on a channel (read by
/// a thread), stderr is kept for failure messages, stdin stays open until
/// drop. Dropping it kills and reaps the process.
pub(crate) struct NodeChild {
    pub(crate) name: String,
    pub(crate) child: Child,
    pub(crate) stdin: Mutex<Option<ChildStdin>>,
    pub(crate) lines: Receiver<String>,
    pub(crate) stderr: Arc<Mutex<String>>,
}

/// Most stderr kept per child (the tail).
const STDERR_KEEP: usize = 64 * 1024;

impl NodeChild {
    pub(crate) fn spawn(script: &str, args: &[String]) -> NodeChild {
        ensure_node_deps();
        let mut child = Command::new("node")
            .arg(script)
            .args(args)
            .current_dir(interop_dir())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start `node {script}`: {e}"));
        let name = format!("{script}[{}]", child.id());
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr_pipe = child.stderr.take().expect("piped stderr");
        let (tx, lines) = crossbeam_channel::unbounded();
        thread::Builder::new()
            .name(format!("stdout {name}"))
            .spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            })
            .expect("spawn a stdout reader");
        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = stderr.clone();
        thread::Builder::new()
            .name(format!("stderr {name}"))
            .spawn(move || {
                let mut pipe = stderr_pipe;
                let mut buf = [0u8; 4096];
                while let Ok(n) = pipe.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    let mut s = sink.lock();
                    s.push_str(&String::from_utf8_lossy(&buf[..n]));
                    if s.len() > STDERR_KEEP {
                        let mut cut = s.len() - STDERR_KEEP;
                        while !s.is_char_boundary(cut) {
                            cut += 1;
                        }
                        s.drain(..cut);
                    }
                }
            })
            .expect("spawn a stderr reader");
        let stdin = child.stdin.take();
        NodeChild {
            name,
            child,
            stdin: Mutex::new(stdin),
            lines,
            stderr,
        }
    }

    pub(crate) fn write_line(&self, line: &str) {
        let mut stdin = self.stdin.lock();
        let pipe = stdin
            .as_mut()
            .unwrap_or_else(|| panic!("{}: stdin is closed", self.name));
        pipe.write_all(line.as_bytes())
            .and_then(|()| pipe.write_all(b"\n"))
            .and_then(|()| pipe.flush())
            .unwrap_or_else(|e| {
                panic!(
                    "{}: cannot write to stdin ({e}); stderr:\n{}",
                    self.name,
                    self.stderr()
                )
            });
    }

    pub(crate) fn stderr(&self) -> String {
        self.stderr.lock().clone()
    }
}

impl Drop for NodeChild {
    fn drop(&mut self) {
        self.stdin.lock().take();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The processes whose command line mentions `needle` (Linux `/proc`), for
/// leak checks.
pub fn processes_matching(needle: &str) -> Vec<u32> {
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| {
        let e = e.ok()?;
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        let cmdline = fs::read(e.path().join("cmdline")).ok()?;
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        cmdline.contains(needle).then_some(pid)
    })
    .collect()
}
