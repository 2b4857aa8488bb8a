//! Messages to the client: deliveries, the session queue and its
//! back-pressure, the QoS 1/2 inflight window and the acknowledgements of
//! our PUBLISHes.

use std::time::Instant;

use crate::codec::{PubAck, QoS, ReasonCode};
use crate::session::journal::Change;
use crate::session::pressure::{self, Pressure};
use crate::session::state::{is_expired, Awaiting};
use crate::session::store_quota::{self, Refusal};
use crate::session::{Delivery, TX_QOS0_MAX};

use super::{pubrel, Connection, Tx};

impl Connection {
    // An ack of the wrong kind for the flow its packet id is in is a
    // protocol error (3.1.1 MQTT-4.8.0-1, 5.0 section 4.13): left alone,
    // the message would hold its window slot for good. An ack for an id
    // with no flow is tolerated: a resend after a reconnect can produce one.

    pub(super) fn handle_puback(&mut self, ack: PubAck) {
        match self.out_state(ack.packet_id) {
            Some(Awaiting::PubAck) => self.complete(ack.packet_id),
            Some(Awaiting::PubRec | Awaiting::PubComp) => {
                self.protocol_error("PUBACK for a QoS 2 message")
            }
            None => {}
        }
    }

    pub(super) fn handle_pubcomp(&mut self, ack: PubAck) {
        match self.out_state(ack.packet_id) {
            Some(Awaiting::PubComp) => self.complete(ack.packet_id),
            Some(Awaiting::PubAck) => self.protocol_error("PUBCOMP for a QoS 1 message"),
            Some(Awaiting::PubRec) => self.protocol_error("PUBCOMP before PUBREC"),
            None => {}
        }
    }

    pub(super) fn handle_pubrec(&mut self, rec: PubAck) {
        let id = rec.packet_id;
        match self.out_state(id) {
            Some(Awaiting::PubRec) if rec.reason_code.is_error() => {
                // The receiver refused the message: the flow ends here
                // (MQTT 5.0 section 4.3.3) and the slot is free.
                self.complete(id);
            }
            Some(Awaiting::PubRec) => {
                let o = self.session.inflight.get_mut(&id).expect("state was read");
                o.state = Awaiting::PubComp;
                self.session.note_outbound(id);
                self.unbacklog(id);
                self.tx.push_back(pubrel(id, ReasonCode::SUCCESS));
            }
            // A repeated PUBREC: answer it again.
            Some(Awaiting::PubComp) => {
                self.tx.push_back(pubrel(id, ReasonCode::SUCCESS));
            }
            Some(Awaiting::PubAck) => self.protocol_error("PUBREC for a QoS 1 message"),
            None => {
                if self.is_v5() {
                    let rel = pubrel(id, ReasonCode::PACKET_IDENTIFIER_NOT_FOUND);
                    self.tx.push_back(rel);
                }
            }
        }
    }

    /// A routed message for this client. Retained messages matched at
    /// subscribe time come the same way with `d.retain = true` and count
    /// toward the window like any other. After the connection closed, the
    /// message goes to the session queue (as [`Session::deliver_offline`]).
    pub fn handle_delivery(&mut self, d: Delivery, now: Instant) {
        if self.closed {
            return self.session.deliver_offline(d, now);
        }
        self.last_now = now;
        if is_expired(&d, now) {
            self.session.extras.drops.expired += 1;
            return;
        }
        // Straight to the socket only when nothing older waits, to keep order.
        if self.session.queue.is_empty() && self.resend.is_empty() {
            if d.qos == QoS::AtMostOnce {
                if (self.tx_qos0_len as usize) < TX_QOS0_MAX {
                    self.tx_qos0_len += 1;
                    self.tx.push_back(Tx::Qos0(d));
                    return;
                }
            } else if self.has_window() && self.session.store_admits(&d, 2).is_ok() {
                let seq = self.session.take_seq();
                self.session.store_acquire(&d);
                let id = self.session.insert_inflight(seq, d, true);
                self.tx.push_back(Tx::Publish(id));
                return;
            }
        }
        self.enqueue_online(d);
    }

    /// Queues `d` for the live client: past the queue's bound only a QoS
    /// 1/2 message, when no QoS 0 message can make room and the client is
    /// not stalled; the client is then congested (see `session::pressure`).
    /// A durable session past half its store bound (`store_quota`) counts
    /// as past its queue's bound.
    fn enqueue_online(&mut self, d: Delivery) {
        let bound = self.session.queue_len_max as usize;
        let session = &mut self.session;
        let store = session.store_admits(&d, 2);
        if (session.queue.len() < bound && store != Err(Refusal::Session))
            || d.qos == QoS::AtMostOnce
            || session.queue_qos0_len > 0
            || self.pressure == Pressure::Stalled
            || self.cfg.max_publisher_hold_ms == 0
        {
            return session.enqueue(d);
        }
        self.pressure = Pressure::Congested;
        session.enqueue_within(d, pressure::queue_len_hard_max(bound));
    }

    /// Whether the queue is past its bound while the client still counts
    /// as reading: the shard pauses the publishers of what it delivers.
    pub fn is_congested(&self) -> bool {
        self.pressure == Pressure::Congested && !self.closed
    }

    /// True once when a congested (or stalled) client's queue is back at
    /// half its bound: the shard then resumes the publishers it paused.
    /// Call after `poll_transmit`, which is where the queue drains.
    pub fn poll_relieved(&mut self) -> bool {
        if self.pressure == Pressure::Free
            || self.session.queue.len() > pressure::resume_len(self.session.queue_len_max as usize)
            || !store_quota::is_relieved(self.session.stored_bytes())
        {
            return false;
        }
        self.pressure = Pressure::Free;
        true
    }

    /// A congested client made no progress for the hold time: it holds
    /// nobody back any more, and its queue is bounded by
    /// `max_mqueue_len` again (new messages are dropped and counted) until
    /// it drains to half of it.
    pub fn stall(&mut self) {
        if self.pressure == Pressure::Congested {
            self.pressure = Pressure::Stalled;
        }
    }

    /// Grows whenever the outbound window takes a new QoS 1/2 message, which
    /// for a congested client means an acknowledgement freed a slot: what
    /// `pressure::StallClock` watches.
    pub fn progress(&self) -> u64 {
        self.session.admitted()
    }

    /// The shard stops reading a paused publisher's socket, so the client
    /// may have sent packets (PINGREQ) that were not read: its keep-alive
    /// counts from the end of the pause.
    pub fn handle_resumed(&mut self, now: Instant) {
        if !self.closed {
            self.last_now = now;
            self.last_rx_at = now;
        }
    }

    /// Same as [`Connection::handle_delivery`]: named for the call site in
    /// the shard that feeds retained messages after [`Action::Subscribe`].
    pub fn handle_retained(&mut self, mut d: Delivery, now: Instant) {
        d.retain = true;
        self.handle_delivery(d, now);
    }

    fn out_state(&self, id: u16) -> Option<Awaiting> {
        self.session.inflight.get(&id).map(|o| o.state)
    }

    /// Room in the outbound window. Messages in the resend backlog hold ids
    /// but not yet window slots.
    pub(super) fn has_window(&self) -> bool {
        self.session
            .inflight
            .len()
            .saturating_sub(self.resend.len())
            < usize::from(self.window_len)
    }

    /// A QoS 1/2 PUBLISH larger than the client's Maximum Packet Size: not
    /// sent, and the flow behaves as completed (MQTT-3.1.2-25). A message
    /// transmitted before (on a connection that allowed larger packets)
    /// counts as delivered, not dropped; for QoS 2 it gets a PUBREL instead,
    /// so a client holding its packet id (awaiting PUBREL) releases it and
    /// cannot mistake a later message with that id for a duplicate.
    pub(super) fn drop_too_large(&mut self, id: u16, transmitted: bool) {
        if !transmitted {
            self.session.extras.drops.too_large += 1;
            return self.complete(id);
        }
        let o = self.session.inflight.get_mut(&id).expect("inflight");
        if o.state == Awaiting::PubRec {
            o.state = Awaiting::PubComp;
            self.session.note_outbound(id);
            let rel = pubrel(id, ReasonCode::SUCCESS);
            self.tx.push_front(rel);
        } else {
            self.complete(id);
        }
    }

    /// Ends an outbound QoS 1/2 flow: frees its id and window slot.
    pub(super) fn complete(&mut self, id: u16) {
        if let Some(o) = self.session.inflight.remove(&id) {
            self.session.note(|| Change::Remove { seq: o.seq });
            self.session.store_release(&o.delivery);
        }
        self.unbacklog(id);
    }

    fn unbacklog(&mut self, id: u16) {
        if !self.resend.is_empty() {
            self.resend.retain(|&r| r != id);
        }
    }

    /// Moves resends, then queued messages, to the transmit queue as far as
    /// the window and the QoS 0 bound allow, in order: the first message
    /// that has to wait blocks the ones behind it.
    pub(super) fn drain(&mut self, now: Instant) {
        if self.closed {
            return;
        }
        while let Some(&id) = self.resend.front() {
            if !self.has_window() {
                return;
            }
            self.resend.pop_front();
            self.tx.push_back(Tx::Publish(id));
        }
        while let Some((_, d)) = self.session.queue.front() {
            if is_expired(d, now) {
                let (seq, d) = self.session.queue_pop_front().expect("front exists");
                if d.qos != QoS::AtMostOnce {
                    self.session.note(|| Change::Remove { seq });
                    self.session.store_release(&d);
                }
                self.session.extras.drops.expired += 1;
                continue;
            }
            if d.qos == QoS::AtMostOnce {
                if self.tx_qos0_len as usize >= TX_QOS0_MAX {
                    return;
                }
                let (_, d) = self.session.queue_pop_front().expect("front exists");
                self.tx_qos0_len += 1;
                self.tx.push_back(Tx::Qos0(d));
            } else {
                if !self.has_window() {
                    return;
                }
                let (seq, d) = self.session.queue_pop_front().expect("front exists");
                let id = self.session.insert_inflight(seq, d, false);
                self.tx.push_back(Tx::Publish(id));
            }
        }
    }
}
