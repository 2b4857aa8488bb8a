//! Held acknowledgements: a QoS 1/2 PUBLISH forwarded to other nodes gets
//! its PUBACK/PUBREC only once every receiving node has it queued (issue
//! 13, ADR 0001 "Publishes"). Instead of the reader waiting for that (one
//! message in flight per publisher), its ack stays in the transmit queue
//! as `Tx::Held` and nothing behind it is written until it is released:
//! acks keep the order of the PUBLISHes (MQTT-4.6.0-2), and the reader
//! goes on with the next PUBLISH. `PUBLISH_ACKS_HELD_MAX` bounds how many
//! one connection holds: at the bound the shard stops reading it
//! (`acks_gate`), and a DISCONNECT is read only once none is held. No
//! counter is kept (every byte of `Connection` is paid by each idle
//! connection): the held entries are counted in the queue, which for a
//! publisher holds little more than its acks.
//!
//! `fail_held_acks` releases nothing: every held ack is dropped and the
//! connection closes, so the client sends those PUBLISHes again on its next
//! connection (at least once). The shard uses it when no answer will come
//! (the node is stopping); a forward that some node will never queue (it
//! died, a timeout) is released like a complete one, as before the window
//! (docs/clustering.md, "What is lost when a node dies").

use crate::codec::{AckKind, ReasonCode};
use crate::limits::PUBLISH_ACKS_HELD_MAX;

use super::{Connection, Tx};

impl Connection {
    /// Holds the ack of the PUBLISH just handled (the newest PUBACK/PUBREC
    /// in the transmit queue, queued by `handle_packet` in the same step):
    /// returns its packet id for `release_held_ack`, or `None` if there is
    /// none to hold (QoS 0, a refused PUBLISH, a closed connection).
    pub fn hold_last_ack(&mut self) -> Option<u16> {
        if self.closed {
            return None;
        }
        let held = self.tx.iter_mut().rev().find_map(|t| match *t {
            Tx::Ack(kind @ (AckKind::PubAck | AckKind::PubRec), id, reason)
                if reason == ReasonCode::SUCCESS =>
            {
                *t = Tx::Held(kind, id);
                Some(id)
            }
            _ => None,
        })?;
        Some(held)
    }

    /// The receiving nodes have the message of `packet_id` queued: its ack
    /// may go out once the acks before it have. Returns false if it was no
    /// longer held (the connection closed, or failed its held acks).
    pub fn release_held_ack(&mut self, packet_id: u16) -> bool {
        let released = self.tx.iter_mut().find_map(|t| match *t {
            Tx::Held(kind, id) if id == packet_id => {
                *t = Tx::Ack(kind, id, ReasonCode::SUCCESS);
                Some(())
            }
            _ => None,
        });
        released.is_some()
    }

    /// The held PUBLISHes will get no answer: no held ack goes out, the
    /// connection closes (v5: DISCONNECT 0x80) and the client sends them
    /// again. A QoS 2 id is forgotten too, so that its resend is routed
    /// again instead of being taken for a duplicate.
    pub fn fail_held_acks(&mut self) {
        self.drop_held_acks();
        self.close_error(
            ReasonCode::UNSPECIFIED_ERROR,
            "a node with subscribers did not receive the message",
        );
    }

    /// Drops every held ack (the close, `fail_held_acks`).
    pub(super) fn drop_held_acks(&mut self) {
        let qos2 = &mut self.session.incoming_qos2;
        let mut forgot = false;
        self.tx.retain(|t| match *t {
            Tx::Held(kind, id) => {
                if kind == AckKind::PubRec {
                    forgot |= qos2.remove(&id);
                }
                false
            }
            _ => true,
        });
        if forgot {
            self.session.note_meta();
        }
    }

    /// Acks held now (counted in the transmit queue).
    pub fn held_acks(&self) -> usize {
        self.tx.iter().filter(|t| matches!(t, Tx::Held(..))).count()
    }

    /// Whether the shard must stop reading this connection for its held
    /// acks (at `PUBLISH_ACKS_HELD_MAX`): 0 or 1, one pause.
    pub fn acks_gate(&self) -> u16 {
        u16::from(self.held_acks() >= PUBLISH_ACKS_HELD_MAX)
    }
}
