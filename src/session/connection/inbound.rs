//! PUBLISH from the client: topic aliases resolved, limits and
//! authorization applied, QoS 1/2 acknowledged (the QoS 2 receive state
//! lives in the session), the message handed to the shard to route.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::authz::DenyAction;
use crate::codec::{AckKind, PubAck, Publish, QoS, ReasonCode};
use crate::router::topic::{is_valid_topic_name, levels};
use crate::session::origin::Origin;
use crate::session::{Action, Message};

use super::{Connection, Tx};

impl Connection {
    pub(super) fn handle_publish(&mut self, mut p: Publish, now: Instant) {
        let alias = match p.properties.as_deref_mut() {
            Some(properties) if self.is_v5() => {
                let alias = properties.topic_alias.take();
                if properties.is_empty() {
                    p.properties = None;
                }
                alias
            }
            _ => None,
        };
        let topic = match alias {
            Some(a) if a == 0 || a > self.cfg.max_topic_alias => {
                return self
                    .close_error(ReasonCode::TOPIC_ALIAS_INVALID, "topic alias out of range");
            }
            Some(a) if p.topic.is_empty() => match self.aliases.inbound(a) {
                Some(topic) => topic.clone(),
                None => return self.protocol_error("unknown topic alias"),
            },
            _ => p.topic,
        };
        if topic.is_empty() {
            return self.protocol_error("empty topic name");
        }
        // The decoder refuses wildcards in a topic name (it finds them in the
        // same pass as the UTF-8 check), and an alias only ever stands for a
        // name that passed it: no second scan of the topic per PUBLISH.
        debug_assert!(is_valid_topic_name(&topic), "wildcard in topic name");
        if let Some(a) = alias {
            // Bounded: at most cfg.max_topic_alias entries.
            self.aliases.set_inbound(a, topic.clone());
        }
        // Counted on the topic as resolved, whether it came by name or alias.
        // A topic of n bytes has at most n + 1 levels: only a long one is
        // counted (with the default limit of 128, no topic under 128 bytes).
        if topic.len() >= self.cfg.max_topic_levels && levels(&topic) > self.cfg.max_topic_levels {
            return self.refuse_topic_levels(p.qos, p.packet_id);
        }
        if p.properties
            .as_ref()
            .is_some_and(|p| !p.subscription_identifiers.is_empty())
        {
            return self.protocol_error("subscription identifier in PUBLISH"); // MQTT-3.3.4-6
        }
        if p.retain && !self.cfg.retain_available {
            return self.close_error(ReasonCode::RETAIN_NOT_SUPPORTED, "retain not supported");
        }
        // A QoS 2 resend of a message already routed (so allowed then) keeps
        // its flow: refusing it now would strand its packet id.
        let qos2_resend =
            p.qos == QoS::ExactlyOnce && self.session.incoming_qos2.contains(&p.packet_id);
        if !qos2_resend && !self.may_publish(&topic) {
            return self.refuse_publish(p.qos, p.packet_id);
        }
        match p.qos {
            QoS::AtMostOnce => {}
            QoS::AtLeastOnce => {
                let puback = Tx::Ack(AckKind::PubAck, p.packet_id, ReasonCode::SUCCESS);
                self.tx.push_back(puback);
            }
            QoS::ExactlyOnce => {
                let pubrec = Tx::Ack(AckKind::PubRec, p.packet_id, ReasonCode::SUCCESS);
                if self.session.incoming_qos2.contains(&p.packet_id) {
                    // A resend of a message already routed (MQTT-4.3.3-10).
                    self.tx.push_back(pubrec);
                    return;
                }
                // v5 clients were told our Receive Maximum; v3.1.1 clients
                // never were, so only the packet-id space (65535 ids, a
                // bounded set) limits them, as in Mosquitto and EMQX.
                if self.is_v5()
                    && self.session.incoming_qos2.len() >= self.cfg.max_inflight.max(1) as usize
                {
                    return self.close_error(
                        ReasonCode::RECEIVE_MAXIMUM_EXCEEDED,
                        "receive maximum exceeded",
                    );
                }
                self.session.incoming_qos2.insert(p.packet_id);
                self.session.note_meta();
                self.tx.push_back(pubrec);
            }
        }
        let expires_at = p
            .properties
            .as_ref()
            .and_then(|p| p.message_expiry_interval_s)
            .map(|s| now + Duration::from_secs(u64::from(s)));
        let message = Message {
            topic,
            payload: p.payload,
            qos: p.qos,
            retain: p.retain,
            properties: p.properties,
            origin: Some(Origin::new(&self.session.client_id)),
            expires_at,
            // Given by the shard that routes it (`Shard::publish_here`).
            id: None,
        };
        self.actions.push_back(Action::Publish(Arc::new(message)));
    }

    /// The end of an inbound QoS 2 flow: the packet id is free again.
    pub(super) fn handle_pubrel(&mut self, rel: PubAck) {
        let released = self.session.incoming_qos2.remove(&rel.packet_id);
        if released {
            self.session.note_meta();
        }
        let reason = if released || !self.is_v5() {
            ReasonCode::SUCCESS
        } else {
            ReasonCode::PACKET_IDENTIFIER_NOT_FOUND
        };
        let pubcomp = Tx::Ack(AckKind::PubComp, rel.packet_id, reason);
        self.tx.push_back(pubcomp);
    }

    /// A PUBLISH the rules deny: never routed. `Ignore` acknowledges it (v5
    /// with 0x87 Not authorized; v3.1.1 cannot refuse, so as usual, and its
    /// QoS 2 PUBREL then gets PUBCOMP like any other); `Disconnect` closes
    /// the connection.
    fn refuse_publish(&mut self, qos: QoS, packet_id: u16) {
        if self.cfg.authz_deny_action == DenyAction::Disconnect {
            return self.close_error(self.deny_reason_code(), "not authorized");
        }
        let reason = if self.is_v5() {
            self.deny_reason_code()
        } else {
            ReasonCode::SUCCESS
        };
        match qos {
            QoS::AtMostOnce => {}
            QoS::AtLeastOnce => self
                .tx
                .push_back(Tx::Ack(AckKind::PubAck, packet_id, reason)),
            QoS::ExactlyOnce => self
                .tx
                .push_back(Tx::Ack(AckKind::PubRec, packet_id, reason)),
        }
    }

    /// A PUBLISH whose topic has more than `max_topic_levels` levels: never
    /// routed. v5 QoS 1/2 are refused with PUBACK/PUBREC 0x90 (Topic Name
    /// invalid) and the connection stays; where no acknowledgement can
    /// carry a refusal (v5 QoS 0, any 3.1.1 PUBLISH) the connection closes
    /// (v5: DISCONNECT 0x90; EMQX closes for every such PUBLISH) rather than
    /// let the client believe the message went out.
    fn refuse_topic_levels(&mut self, qos: QoS, packet_id: u16) {
        let kind = match qos {
            QoS::AtLeastOnce if self.is_v5() => AckKind::PubAck,
            QoS::ExactlyOnce if self.is_v5() => AckKind::PubRec,
            _ => return self.close_error(ReasonCode::TOPIC_NAME_INVALID, "too many topic levels"),
        };
        self.tx
            .push_back(Tx::Ack(kind, packet_id, ReasonCode::TOPIC_NAME_INVALID));
    }
}
