//! Load figures between nodes (sans-IO): every running peer is sent this
//! node's MQTT connection count and release every
//! `limits::CLUSTER_LOAD_INTERVAL` on the control stream
//! (`proto::LoadFigures`), and what the peers sent is kept in a shared
//! table ([`PeerLoads`]) that `/api/v5/nodes` (`connections`, `version`)
//! and the `least_connections` redirect strategy read.
//!
//! The cluster's event loop drives it: `handle_frame` for a peer frame of
//! the load kind, `handle_member_down` when a peer goes, and
//! `poll_transmit` (due at `poll_timeout`) for the frame to send to each
//! running peer.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::control::{PeerFigures, PeerReport};
use super::logic::proto::{self, Message, ProtoError};
use crate::limits;
use crate::router::location::NodeId;

/// What the peers last reported, by node; written by the event loop, read
/// by the admin and the cluster view threads.
#[derive(Default)]
pub struct PeerLoads {
    reports: Mutex<HashMap<NodeId, PeerReport>>,
}

impl PeerLoads {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<NodeId, PeerReport>> {
        self.reports.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl PeerFigures for PeerLoads {
    fn figures(&self, node: NodeId) -> Option<PeerReport> {
        self.lock().get(&node).cloned()
    }
}

/// The sans-IO exchange of load figures.
pub struct LoadFigures {
    shared: Arc<PeerLoads>,
    interval: Duration,
    next_send: Option<Instant>,
}

impl LoadFigures {
    pub fn new(shared: Arc<PeerLoads>) -> LoadFigures {
        LoadFigures {
            shared,
            interval: limits::CLUSTER_LOAD_INTERVAL,
            next_send: None,
        }
    }

    /// The table peers' reports go to.
    pub fn figures(&self) -> Arc<PeerLoads> {
        self.shared.clone()
    }

    /// A frame of `kind` from `from`: `Ok(false)` when it is not a load
    /// frame (someone else's), `Err` for a malformed one (the peer's
    /// fault).
    pub fn handle_frame(
        &mut self,
        from: NodeId,
        kind: u8,
        body: &[u8],
    ) -> Result<bool, ProtoError> {
        if kind != proto::kind::LoadFigures {
            return Ok(false);
        }
        let Message::LoadFigures(figures) = Message::decode(proto::PROTO_VERSION, kind, body)?
        else {
            unreachable!("decoded by its kind")
        };
        let mut version = figures.version;
        if version.len() > limits::CLUSTER_VERSION_LEN_MAX_BYTES {
            version.truncate(
                (0..=limits::CLUSTER_VERSION_LEN_MAX_BYTES)
                    .rev()
                    .find(|&i| version.is_char_boundary(i))
                    .unwrap_or(0),
            );
        }
        self.shared.lock().insert(
            from,
            PeerReport {
                connections: figures.connections,
                version,
            },
        );
        Ok(true)
    }

    /// A peer went down or left: its figures are gone with it.
    pub fn handle_member_down(&mut self, node: NodeId) {
        self.shared.lock().remove(&node);
    }

    /// When `poll_transmit` next has a frame.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.next_send
    }

    /// This node's figures as a frame body for every running peer, when
    /// one is due (at once the first time, then every interval).
    pub fn poll_transmit(
        &mut self,
        now: Instant,
        connections: u64,
        connections_max: u64,
    ) -> Option<Bytes> {
        if self.next_send.is_some_and(|at| now < at) {
            return None;
        }
        self.next_send = Some(now + self.interval);
        let message = Message::LoadFigures(proto::LoadFigures {
            connections,
            connections_max,
            version: env!("CARGO_PKG_VERSION").to_string(),
        });
        Some(Bytes::from(
            message
                .encode()
                .expect("load figures are far below the body limit"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_go_out_every_interval_and_come_back_per_peer() {
        let mut a = LoadFigures::new(Arc::default());
        let mut b = LoadFigures::new(Arc::default());
        let t0 = Instant::now();
        let body = a.poll_transmit(t0, 7, 100).expect("due at once");
        assert!(a
            .poll_transmit(t0 + Duration::from_millis(10), 7, 100)
            .is_none());
        assert_eq!(a.poll_timeout(), Some(t0 + limits::CLUSTER_LOAD_INTERVAL));
        assert!(a
            .poll_transmit(t0 + limits::CLUSTER_LOAD_INTERVAL, 8, 100)
            .is_some());

        let peer = NodeId::from_name("a@127.0.0.1");
        assert!(b
            .handle_frame(peer, proto::kind::LoadFigures, &body)
            .unwrap());
        let report = b.figures().figures(peer).unwrap();
        assert_eq!(report.connections, 7);
        assert_eq!(report.version, env!("CARGO_PKG_VERSION"));
        // Someone else's kind is left alone; garbage is the peer's fault.
        assert!(!b.handle_frame(peer, proto::kind::Forward, &body).unwrap());
        assert!(b
            .handle_frame(peer, proto::kind::LoadFigures, b"garbage")
            .is_err());
        b.handle_member_down(peer);
        assert!(b.figures().figures(peer).is_none());
    }
}
