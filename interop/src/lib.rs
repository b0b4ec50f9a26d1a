//! Harness for the interoperability tests: our client and our mock server
//! against the real socket.io 4.8.4 packages, through the Node scripts in
//! this folder.
//!
//! - [`RefServer`]: `node ref-server.js` (the real socket.io server) on an
//!   ephemeral port, driven through its HTTP admin API ([`Admin`], the same
//!   API as our mock server's).
//! - [`RefDaemon`]: `node ref-daemon.js` (the real socket.io-client), driven
//!   by JSON lines on its stdin, its stdout events read by a thread into a
//!   channel and waited on with [`RefDaemon::expect`].
//! - [`client_options`], [`ClientEvents`], [`register_reference_handlers`]:
//!   our client set up like `ref-daemon.js`.
//! - [`transcript`]: frame transcripts, masking and the flows of the
//!   frame-level check.
//!
//! Every child process is killed and reaped on drop, and keeps its stdin
//! open while it lives (the Node scripts exit when it closes, so a test
//! process that dies never leaks them). The pinned Node packages are
//! installed with `npm ci` when `node_modules` is missing or older than the
//! lockfile, once per process and under a file lock. A missing `node` or
//! `npm` is a test failure (a panic), never a skip.
#![cfg(unix)]

mod events;
mod node;
mod our_client;
mod panics;
mod ref_daemon;
mod ref_server;
pub mod transcript;

pub use events::*;
pub use node::*;
pub use our_client::*;
pub use panics::*;
pub use ref_daemon::*;
pub use ref_server::*;

use std::path::Path;
use std::time::Duration;

/// How long any wait for something that must happen may take.
pub const WAIT: Duration = Duration::from_secs(5);
/// How long a Node script may take to start (cold caches, a loaded machine).
pub const START_TIMEOUT: Duration = Duration::from_secs(15);
/// How long `npm ci` may take (or another process's install may be waited for).
pub const INSTALL_TIMEOUT: Duration = Duration::from_secs(300);

/// `interop/` (this crate's folder, which is also the Node project).
pub fn interop_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}
