//! The running server: starting it, and stopping every thread it started.

use std::sync::atomic::Ordering;
use std::thread::JoinHandle;

use crate::config::ServerConfig;
use crate::event_loop;
use crate::handle::ServerHandle;
use crate::start_error::StartError;

/// A running mock server. Dropping it stops it (see [`Server::stop`]).
/// It dereferences to its [`ServerHandle`], so every call of the in-process
/// API works on it directly.
///
/// ```
/// use volt_mock_server::{Server, ServerConfig};
/// let server = Server::start(ServerConfig::default().cluster("c1", "pw")).unwrap();
/// assert!(server.url().starts_with("http://127.0.0.1:"));
/// assert!(server.daemons().is_empty());
/// server.stop();
/// ```
pub struct Server {
    handle: ServerHandle,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("addr", &self.handle.local_addr())
            .finish_non_exhaustive()
    }
}

impl Server {
    /// Binds and starts serving on a background event-loop thread.
    pub fn start(config: ServerConfig) -> Result<Server, StartError> {
        let tls = match &config.tls {
            Some(t) => Some(crate::tls::TlsAcceptor::new(
                t,
                config.tls_client_ca_pem.as_deref(),
            )?),
            None => None,
        };
        let (handle, thread) = event_loop::start(config, tls)?;
        log::info!("mock server listening on {}", handle.local_addr());
        Ok(Server {
            handle,
            thread: Some(thread),
        })
    }

    /// A handle for other threads.
    pub fn handle(&self) -> ServerHandle {
        self.handle.clone()
    }

    /// Stops the server: closes every connection, ends the event loop and
    /// joins every thread it started. Also done on drop.
    pub fn stop(mut self) {
        self.stop_inner();
    }

    fn stop_inner(&mut self) {
        let Some(thread) = self.thread.take() else {
            return;
        };
        let shared = self.handle.shared();
        shared.stopping.store(true, Ordering::Release);
        let _ = shared.waker.wake();
        let _ = thread.join();
        // HTTP threads: cut their sockets so none waits on a slow client.
        let threads = std::mem::take(&mut *shared.http_threads.lock());
        for (sock, _) in &threads {
            if let Some(s) = sock {
                let _ = s.shutdown(std::net::Shutdown::Both);
            }
        }
        for (_, h) in threads {
            let _ = h.join();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop_inner();
    }
}

impl std::ops::Deref for Server {
    type Target = ServerHandle;
    fn deref(&self) -> &ServerHandle {
        &self.handle
    }
}
