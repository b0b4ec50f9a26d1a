//! What the admin API and the in-process handle ask of the state:
//! clusters, responders, faults, enrollment, and acting on a cluster's
//! connections.

use serde_json::Value;
use volt_protocol::envelope::names;
use volt_protocol::socket::PacketType;

use super::{Action, State};
use crate::model::*;

impl State {
    /// The newest registered connection of a cluster.
    fn newest_conn(&self, cluster: &str) -> Result<u64, DispatchError> {
        self.newest(cluster)
            .ok_or_else(|| DispatchError::NotConnected(cluster.into()))
    }

    /// The newest registered connection of a cluster, if any.
    pub(super) fn newest(&self, cluster: &str) -> Option<u64> {
        self.by_cluster.get(cluster).and_then(|v| v.last().copied())
    }

    /// Every registered connection of a cluster; an error when none is.
    fn all_of(&self, cluster: &str) -> Result<Vec<u64>, DispatchError> {
        match self.by_cluster.get(cluster) {
            Some(v) if !v.is_empty() => Ok(v.clone()),
            _ => Err(DispatchError::NotConnected(cluster.into())),
        }
    }

    /// Sends a `message` to the cluster's newest connection.
    pub(crate) fn send_message(
        &mut self,
        cluster: &str,
        message: &Value,
    ) -> Result<(), DispatchError> {
        let id = self.newest_conn(cluster)?;
        let text = volt_protocol::envelope::event_frame(
            &self.cfg.namespace,
            names::MESSAGE,
            &message.to_string(),
            0,
        );
        self.send_text(id, text);
        Ok(())
    }

    /// Sends a raw frame to the cluster's newest connection.
    pub(crate) fn send_raw(&mut self, cluster: &str, frame: RawFrame) -> Result<(), DispatchError> {
        let id = self.newest_conn(cluster)?;
        self.send(id, frame);
        Ok(())
    }

    /// Kicks every connection of the cluster (`41<nsp>,`); how many.
    pub(crate) fn kick(&mut self, cluster: &str) -> Result<usize, DispatchError> {
        let ids = self.all_of(cluster)?;
        for &id in &ids {
            self.send_packet(id, PacketType::Disconnect, self.cfg.namespace.clone(), None);
            if let Some(cluster) = self.unregister(id, "server namespace disconnect") {
                self.emit(ServerEvent::Kicked { conn: id, cluster });
            }
        }
        Ok(ids.len())
    }

    /// Cuts every connection of the cluster (after what is queued for it).
    pub(crate) fn drop_cluster(&mut self, cluster: &str) -> Result<usize, DispatchError> {
        let ids = self.all_of(cluster)?;
        for &id in &ids {
            self.end_session(id, "server drop");
            self.out.push(Action::Cut {
                conn: id,
                flush: true,
            });
        }
        Ok(ids.len())
    }

    /// The registered daemons, oldest first.
    pub(crate) fn daemons(&self) -> Vec<DaemonInfo> {
        let mut out: Vec<DaemonInfo> = self
            .sessions
            .values()
            .filter_map(|s| s.reg.as_ref().map(|r| r.info.clone()))
            .collect();
        out.sort_by_key(|d| (d.connected_at, d.conn));
        out
    }

    /// Enrollment (contract section 1): answers `(status, body)`.
    pub(crate) fn enroll(
        &mut self,
        cluster: &str,
        authorization: Option<&str>,
        body: &[u8],
    ) -> (u16, Value) {
        let (status, body) = crate::admission::enroll(
            &mut self.enrollment,
            &mut self.clusters,
            cluster,
            authorization,
            body,
        );
        self.emit(ServerEvent::Enrollment {
            cluster: cluster.into(),
            status,
        });
        (status, body)
    }

    /// Sets how `command` is answered.
    pub(crate) fn set_responder(&mut self, command: String, responder: Responder) {
        self.responders.insert(command, responder);
    }

    /// Restores the default answer for `command`.
    pub(crate) fn clear_responder(&mut self, command: &str) {
        self.responders.remove(command);
    }

    /// The fault set in force.
    pub(crate) fn faults(&self) -> &Faults {
        &self.faults
    }

    /// Adds a cluster, or changes its password.
    pub(crate) fn add_cluster(&mut self, cluster: String, password: String) {
        self.clusters.insert(cluster, password);
    }

    /// A cluster's password.
    pub(crate) fn cluster_password(&self, cluster: &str) -> Option<&str> {
        self.clusters.get(cluster).map(String::as_str)
    }

    /// Replaces the enrollment settings.
    pub(crate) fn set_enrollment(&mut self, settings: EnrollmentSettings) {
        self.enrollment = settings;
    }

    /// The enrollment settings in force.
    pub(crate) fn enrollment(&self) -> &EnrollmentSettings {
        &self.enrollment
    }
}
