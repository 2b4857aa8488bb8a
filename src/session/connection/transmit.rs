//! `poll_transmit`: the transmit queue's entries encoded in write order,
//! PUBLISHes built only then (expiry, topic aliases and the client's
//! Maximum Packet Size apply to the exact packet written).

use std::time::Instant;

use bytes::BytesMut;

use crate::codec::{
    self, AckKind, AckProperties, ByteStr, Packet, PublishProperties, PublishRef, ReasonCode,
};
use crate::session::state::{is_expired, Awaiting};
use crate::session::Delivery;

use super::aliases::OutboundAlias;
use super::{ack, Connection, Tx};

impl Connection {
    /// Encodes the next packet to send to the client into `out` and returns
    /// true, or returns false when there is nothing to send (sans-IO: the
    /// shard calls it in a loop and writes `out` to the socket). A PUBLISH
    /// larger than the client's Maximum Packet Size is dropped and counted
    /// (QoS > 0 ones count as completed, MQTT-3.1.2-25); other packets lose
    /// Reason String and User Properties first, and if still too large are
    /// dropped and the connection closed with 0x95. Outbound topic aliases
    /// are applied here, in write order.
    pub fn poll_transmit(&mut self, now: Instant, out: &mut BytesMut) -> bool {
        if now > self.last_now && !self.closed {
            self.last_now = now;
        }
        loop {
            if self.tx.is_empty() {
                self.drain(now);
            }
            if matches!(self.tx.front(), Some(Tx::Held(..))) {
                // Everything behind a held ack waits for it (`held.rs`).
                return false;
            }
            let Some(tx) = self.tx.pop_front() else {
                return false;
            };
            match tx {
                Tx::Ack(kind, id, reason) => {
                    if self.client_packet_size_max >= 6 {
                        codec::encode_short_ack(kind, id, reason, self.protocol, out);
                        return true;
                    }
                    let a = ack(id, reason);
                    let packet = match kind {
                        AckKind::PubAck => Packet::PubAck(a),
                        AckKind::PubRec => Packet::PubRec(a),
                        AckKind::PubRel => Packet::PubRel(a),
                        AckKind::PubComp => Packet::PubComp(a),
                    };
                    if self.put_control(packet, out) {
                        return true;
                    }
                }
                Tx::Held(..) => unreachable!("checked above"),
                Tx::Control(packet) => {
                    if self.put_control(*packet, out) {
                        return true;
                    }
                }
                Tx::Qos0(d) => {
                    self.tx_qos0_len -= 1;
                    if is_expired(&d, now) {
                        self.session.extras.drops.expired += 1;
                        continue;
                    }
                    match self.put_publish(&d, 0, false, now, out) {
                        Some(new_alias) => {
                            self.commit_alias(new_alias);
                            return true;
                        }
                        None => self.session.extras.drops.too_large += 1,
                    }
                }
                Tx::Publish(id) => {
                    let Some(o) = self.session.inflight.get(&id) else {
                        continue; // completed before it was written (bogus ack)
                    };
                    if o.state == Awaiting::PubComp {
                        continue;
                    }
                    // Once transmitted, onward delivery has started
                    // (MQTT-3.3.2-5 deletes only messages not yet started),
                    // and the client may hold QoS 2 state for this id: the
                    // resend must happen even if the message has expired.
                    let transmitted = o.transmitted;
                    if !transmitted && is_expired(&o.delivery, now) {
                        self.session.extras.drops.expired += 1;
                        self.complete(id);
                        continue;
                    }
                    let Some(new_alias) = self.put_publish(&o.delivery, id, transmitted, now, out)
                    else {
                        self.drop_too_large(id, transmitted);
                        continue;
                    };
                    self.commit_alias(new_alias);
                    let o = self.session.inflight.get_mut(&id).expect("read above");
                    if !o.transmitted {
                        o.transmitted = true;
                        self.session.note_outbound(id);
                    }
                    return true;
                }
            }
        }
    }

    /// Encodes the outbound PUBLISH for `d` into `out`, straight from the
    /// shared message and this delivery's fields (no `Publish` value, no
    /// reference counts taken). `Some(alias it would establish)` when
    /// written (committed by the caller once the packet is sent), `None`
    /// when it exceeds the client's Maximum Packet Size (nothing written).
    fn put_publish(
        &self,
        d: &Delivery,
        packet_id: u16,
        dup: bool,
        now: Instant,
        out: &mut BytesMut,
    ) -> Option<Option<(ByteStr, u16)>> {
        let m = &*d.message;
        let mut topic: &str = &m.topic;
        let mut new_alias = None;
        // Only built when this delivery adds a property of its own.
        let own_properties;
        let mut properties = None;
        if self.is_v5() {
            let mut topic_alias = None;
            if self.alias_out_max > 0 {
                match self.aliases.outbound(&m.topic, self.alias_out_max) {
                    Some(OutboundAlias::Known(a)) => {
                        topic_alias = Some(a);
                        topic = "";
                    }
                    Some(OutboundAlias::New(a)) => {
                        topic_alias = Some(a);
                        new_alias = Some((m.topic.clone(), a));
                    }
                    None => {}
                }
            }
            let message_expiry_interval_s = m.expires_at.map(|at| remaining_s(at, now));
            if message_expiry_interval_s.is_none()
                && topic_alias.is_none()
                && d.subscription_ids.is_empty()
            {
                // The common case: the message's own properties, if any.
                properties = m.properties.as_deref();
            } else {
                let mp = m.properties();
                own_properties = PublishProperties {
                    payload_format_indicator: mp.payload_format_indicator,
                    message_expiry_interval_s,
                    topic_alias,
                    response_topic: mp.response_topic.clone(),
                    correlation_data: mp.correlation_data.clone(),
                    user_properties: mp.user_properties.clone(),
                    subscription_identifiers: d.subscription_ids.iter().collect(),
                    content_type: mp.content_type.clone(),
                };
                properties = Some(&own_properties);
            }
        }
        let publish = PublishRef {
            dup,
            qos: d.qos,
            retain: d.retain,
            topic,
            packet_id,
            payload: &m.payload,
            properties,
        };
        match codec::encode_publish(
            &publish,
            self.protocol,
            self.client_packet_size_max as usize,
            out,
        ) {
            Ok(true) => Some(new_alias),
            Ok(false) => None,
            Err(e) => {
                // A routed message was validated on the way in; this would be
                // a bug, and the message is dropped rather than sent broken.
                tracing::warn!(error = %e, "cannot encode an outbound PUBLISH");
                None
            }
        }
    }

    fn commit_alias(&mut self, new_alias: Option<(ByteStr, u16)>) {
        if let Some((topic, alias)) = new_alias {
            self.aliases.commit_outbound(topic, alias);
        }
    }

    /// Encodes a non-PUBLISH packet into `out`, made to fit the client's
    /// Maximum Packet Size: Reason String and User Properties go first
    /// (MQTT-3.2.2-19/20 and the same rule on every ack); a packet still too
    /// large is not sent and the connection is closed with 0x95. False when
    /// nothing was written.
    fn put_control(&mut self, mut packet: Packet, out: &mut BytesMut) -> bool {
        let protocol = self.protocol;
        let fits =
            |p: &Packet, max: usize| max == usize::MAX || codec::encoded_len(p, protocol) <= max;
        if !fits(&packet, self.client_packet_size_max as usize) {
            match &mut packet {
                Packet::ConnAck(c) => {
                    c.properties.reason_string = None;
                    c.properties.user_properties.clear();
                }
                Packet::PubAck(a) | Packet::PubRec(a) | Packet::PubRel(a) | Packet::PubComp(a) => {
                    a.properties = AckProperties::default();
                }
                Packet::SubAck(s) => s.properties = AckProperties::default(),
                Packet::UnsubAck(u) => u.properties = AckProperties::default(),
                Packet::Disconnect(d) => {
                    d.properties.reason_string = None;
                    d.properties.user_properties.clear();
                }
                _ => {}
            }
            if !fits(&packet, self.client_packet_size_max as usize) {
                match packet {
                    // Nothing may precede the CONNACK (MQTT-3.2.0-1), so no
                    // DISCONNECT; and the connection was never accepted, so
                    // no will. `check_connack_fits` refuses such a CONNECT
                    // before it gets here.
                    Packet::ConnAck(_) => {
                        self.close(ReasonCode::PACKET_TOO_LARGE, false, false, None)
                    }
                    Packet::Disconnect(_) => {}
                    _ => self
                        .close_error(ReasonCode::PACKET_TOO_LARGE, "packet too large for client"),
                }
                return false;
            }
        }
        match codec::encode(&packet, self.protocol, out) {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(error = %e, "cannot encode {}", packet.kind());
                false
            }
        }
    }
}

/// Message Expiry Interval to send: the whole seconds left, rounded up so a
/// message still alive never goes out with 0.
fn remaining_s(expires_at: Instant, now: Instant) -> u32 {
    let left = expires_at.saturating_duration_since(now);
    let s = left.as_secs() + u64::from(left.subsec_nanos() > 0);
    // An expired message is only ever resent (see poll_transmit); 1 keeps
    // it from reading as "expires immediately".
    s.clamp(1, u64::from(u32::MAX)) as u32
}
