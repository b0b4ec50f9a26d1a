//! The password each enrollment and registration uses: the stored one
//! (initial, or rotated by enrollment), or what the password provider
//! says; and the enrollment request that may rotate it.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;

use crate::connection_state::ConnectionState;
use crate::enrollment;
use crate::error::DaemonClientError;
use crate::events::{ClientEvent, EventSink};
use crate::Shared;

impl Shared {
    /// Enrolls on the first connect() that has a token. Runs on the caller's
    /// thread; a disconnect() meanwhile fails this connect() once the request
    /// returns, but a password the server rotated is kept (the token is spent).
    /// A rotated password no event thread was there to report is left in
    /// `unreported`, for the caller to report once it let its lock go.
    pub(crate) fn enroll_once(
        &self,
        unreported: &mut Option<String>,
    ) -> Result<(), DaemonClientError> {
        if !self.enrollment_due() {
            return Ok(());
        }
        let generation = self.generation.load(Ordering::Acquire);
        let sink = self.runtime.lock().as_ref().map(|r| r.sink.clone());
        if let Some(sink) = &sink {
            self.set_state(sink, ConnectionState::Enrolling, "enrollment due");
        }
        if let Some(new_password) = self.enroll_if_due()? {
            let sink = self.runtime.lock().as_ref().map(|r| r.sink.clone());
            match sink {
                Some(sink) => self.report_rotation(&sink, new_password),
                // Disconnected meanwhile: the daemon must still learn it,
                // on this thread once connect() let its lock go.
                None => *unreported = Some(new_password),
            }
        }
        if self.generation.load(Ordering::Acquire) != generation {
            return Err(DaemonClientError::connect_interrupted());
        }
        Ok(())
    }

    /// Whether an enrollment request is still to be made.
    pub(crate) fn enrollment_due(&self) -> bool {
        !self.enrolled.load(Ordering::Acquire) && enrollment::wanted(&self.options).is_some()
    }

    /// Makes the enrollment request when it is due; stores and returns the
    /// rotated password, if the server sent one.
    pub(crate) fn enroll_if_due(&self) -> Result<Option<String>, DaemonClientError> {
        if self.enrolled.load(Ordering::Acquire) {
            return Ok(None);
        }
        let Some((enrollment, token)) = enrollment::wanted(&self.options) else {
            return Ok(None);
        };
        let current = self.current_password();
        let rotated = enrollment::enroll(&self.options, enrollment, token, &current)?;
        self.enrolled.store(true, Ordering::Release);
        if let Some(new_password) = &rotated {
            log::info!("enrollment rotated the daemon password");
            *self.password.write() = new_password.clone();
        }
        Ok(rotated)
    }

    /// Reports a rotated password to `on_password_rotated`. With a password
    /// provider, the next registration waits until those callbacks ran.
    pub(crate) fn report_rotation(&self, sink: &EventSink, new_password: String) {
        let ack = self
            .options
            .credentials
            .password_provider
            .as_ref()
            .map(|_| {
                let (tx, rx) = crossbeam_channel::bounded(0);
                *self.rotation_ack.lock() = Some(rx);
                tx
            });
        sink.post(ClientEvent::PasswordRotated(new_password, ack));
    }

    /// The provider's password, or the stored one (also when the provider
    /// panics: logged, without the password).
    pub(crate) fn current_password(&self) -> String {
        let stored = || self.password.read().clone();
        let Some(provider) = &self.options.credentials.password_provider else {
            return stored();
        };
        match catch_unwind(AssertUnwindSafe(|| provider())) {
            Ok(password) => password,
            Err(_) => {
                log::error!(
                    "the password provider panicked; this attempt uses the stored password"
                );
                stored()
            }
        }
    }

    /// The password for the registration being sent: with a provider,
    /// asked once the callbacks of a rotation ran (at most
    /// `connect_timeout` later).
    pub(crate) fn registration_password(&self) -> String {
        if self.options.credentials.password_provider.is_some() {
            let ack = self.rotation_ack.lock().take();
            if let Some(rx) = ack {
                // Never sent on: it ends when the event is dropped.
                let _ = rx.recv_timeout(self.options.socket.connect_timeout);
            }
        }
        self.current_password()
    }
}
