//! Blocking daemon-side client for the VOLT control plane.
pub mod protocol;

pub use protocol::message::TeamClusterDaemonMessage;
