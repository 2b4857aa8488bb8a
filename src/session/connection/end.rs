//! The end of a connection: DISCONNECT, kicks and takeover, the will, the
//! one `close` every end goes through, and the session it leaves.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::codec::{
    ByteStr, Disconnect, DisconnectProperties, Packet, PublishProperties, ReasonCode, Will,
};
use crate::session::origin::Origin;
use crate::session::state::Session;
use crate::session::{Action, Delivery, Message};

use super::{Connection, Tx};

impl Connection {
    fn will(&self) -> Option<&Will> {
        self.extras.as_ref()?.will.as_ref()
    }

    fn drop_will(&mut self) {
        if let Some(e) = &mut self.extras {
            e.will = None;
        }
    }

    pub(super) fn handle_disconnect(&mut self, d: Disconnect) {
        if let (true, Some(expiry_s)) = (self.is_v5(), d.properties.session_expiry_interval_s) {
            if self.connect_expiry_zero && expiry_s != 0 {
                return self.protocol_error("session expiry raised from 0"); // MQTT-3.14.2-2
            }
            self.session.expiry_interval_s = expiry_s.min(self.cfg.max_session_expiry_interval_s);
        }
        // Only a normal disconnection discards the will (MQTT-3.14.4-3); 0x04
        // and the error codes publish it.
        let will = d.reason_code != ReasonCode::NORMAL_DISCONNECTION;
        self.close(d.reason_code, will, false, None);
    }

    /// Server-initiated end (takeover 0x8E, shutdown 0x8B, admin 0x98):
    /// queues DISCONNECT with that reason (v5 only) and `Action::Close` with
    /// `will = true`: the client did not disconnect normally. For a takeover
    /// prefer [`Connection::takeover`], which applies the will delay rules.
    pub fn kick(&mut self, reason: ReasonCode) {
        self.close(reason, true, true, None);
    }

    /// An administrator's kick (`DELETE /api/v5/clients/{clientid}`):
    /// `kick` with `reason` (0x98 Administrative action), and the session
    /// ends with the connection whatever its expiry interval, so the will
    /// (if any) goes out with no delay. On a connection already closing,
    /// only the session's end is added.
    pub fn kick_ending_session(&mut self, reason: ReasonCode) {
        self.session.expiry_interval_s = 0;
        self.kick(reason);
    }

    /// The server is stopping, which ends every session: the will, if any,
    /// is due now whatever its delay (MQTT-3.1.3-9) and is returned for
    /// the shard to publish before it disconnects anyone, so that clients
    /// still connected on any shard receive it. The connection stays open
    /// (`kick_after_queued` closes it).
    pub fn take_will_at_stop(&mut self) -> Option<Arc<Message>> {
        if self.closed || self.will().is_none() {
            return None;
        }
        self.will_delay_zero = true;
        self.publish_will = true;
        self.take_will().map(|(will, _)| will)
    }

    /// `kick` for a stopping server: what is already queued for the client
    /// (the wills of the other clients among it) is sent before the
    /// DISCONNECT instead of being left in the session.
    pub fn kick_after_queued(&mut self, reason: ReasonCode) {
        if self.closed {
            return;
        }
        let queued = std::mem::take(&mut self.tx);
        let qos0 = self.tx_qos0_len;
        self.kick(reason);
        let mut disconnect = std::mem::replace(&mut self.tx, queued);
        self.tx.extend(disconnect.drain(..));
        self.tx_qos0_len = qos0;
    }

    /// Evacuation or rebalance: DISCONNECT (v5) with `reason` (0x9C Use
    /// another server, 0x9D Server moved) and, when given, a Server
    /// Reference; a v3 client's connection is closed. The session stays for
    /// its expiry interval, so the client that reconnects elsewhere takes
    /// it over; the will follows the usual rules (published unless its
    /// delay outlasts the reconnection).
    pub fn evict(&mut self, reason: ReasonCode, server_reference: Option<ByteStr>) {
        if self.closed {
            return;
        }
        self.close(reason, true, false, None);
        if self.is_v5() {
            let disconnect = Disconnect {
                reason_code: reason,
                properties: DisconnectProperties {
                    server_reference,
                    ..DisconnectProperties::default()
                },
            };
            self.tx
                .push_back(Tx::Control(Box::new(Packet::Disconnect(Box::new(
                    disconnect,
                )))));
        }
    }

    /// Session takeover by a new connection for the same client id:
    /// `kick(0x8E)` with the will rules of MQTT 5.0 sections 3.1.3.2.2 and
    /// 3.1.4. The will is published only when the session ends now or the
    /// will has no delay:
    /// - new connection with Clean Start: the old session ends, so the will
    ///   goes out now (delay 0), whatever its delay;
    /// - new connection resuming the session: a will with a (session-capped)
    ///   delay > 0 is discarded, since a new connection arrived before the
    ///   delay passed (MQTT-3.1.3-9); a will with no delay goes out now.
    ///
    /// The shard applies the same rule to a will still pending from an
    /// earlier connection when the client reconnects.
    pub fn takeover(&mut self, new_clean_start: bool) {
        if !self.closed {
            if new_clean_start {
                self.will_delay_zero = true;
            } else if self.will_delay_s() > 0 {
                self.drop_will();
            }
        }
        self.kick(ReasonCode::SESSION_TAKEN_OVER);
    }

    /// Takeover by a connect on another node: `kick(0x8E)`, and the will
    /// is not published whatever its delay: the session moves on, it does
    /// not end (docs/adr/0001-cluster.md, "Will"; EMQX #18565).
    pub fn taken_over_by_peer(&mut self) {
        if !self.closed {
            self.drop_will();
        }
        self.kick(ReasonCode::SESSION_TAKEN_OVER);
    }

    /// The socket is gone (read EOF or error) without a DISCONNECT: the will
    /// must be published. Emits `Action::Close` (reason 0x80, nothing sent)
    /// so every connection ends with exactly one Close.
    pub fn handle_connection_lost(&mut self, now: Instant) {
        if self.closed {
            return;
        }
        self.last_now = now;
        self.close(ReasonCode::UNSPECIFIED_ERROR, true, false, None);
    }

    /// After Close: the will to publish, if any, with its delay (Will Delay
    /// Interval min()'d with the session expiry; 0 when the session ends
    /// with the connection, MQTT-3.1.3-9). Its Message Expiry counts from
    /// the moment the will is due (close + delay). A will whose topic the
    /// authorization rules deny for publishing is dropped here (EMQX checks
    /// the will when it is published, not at CONNECT).
    pub fn take_will(&mut self) -> Option<(Arc<Message>, Duration)> {
        if !self.publish_will {
            return None;
        }
        let delay_s = self.will_delay_s();
        let will = self.extras.as_mut()?.will.take()?;
        self.publish_will = false;
        if !self.may_publish(&will.topic) {
            return None;
        }
        let delay = Duration::from_secs(u64::from(delay_s));
        let p = will.properties;
        let message = Message {
            topic: will.topic,
            payload: will.payload,
            qos: will.qos,
            retain: will.retain && self.cfg.retain_available,
            expires_at: p
                .message_expiry_interval_s
                .map(|s| self.last_now + delay + Duration::from_secs(u64::from(s))),
            properties: PublishProperties {
                payload_format_indicator: p.payload_format_indicator,
                message_expiry_interval_s: p.message_expiry_interval_s,
                content_type: p.content_type,
                response_topic: p.response_topic,
                correlation_data: p.correlation_data,
                user_properties: p.user_properties,
                ..PublishProperties::default()
            }
            .boxed(),
            origin: Some(Origin::new(&self.session.client_id)),
            // Given when the will is routed (`Shard::publish_here`).
            id: None,
        };
        Some((Arc::new(message), delay))
    }

    /// Consumes the connection, keeping the session if it outlives the
    /// connection (Session Expiry Interval > 0); `None` if it ends now.
    /// QoS 1/2 messages not yet acknowledged stay in the session and are
    /// resent on resume.
    pub fn into_session(self) -> Option<Session> {
        (self.session.expiry_interval_s > 0).then_some(self.session)
    }

    /// After Close, when the session ends with the connection (`into_session`
    /// will give `None`): the shared QoS 1/2 messages it did not deliver
    /// (see [`Session::take_shared_undelivered`]), for the shard to hand to
    /// another member of their group. Empty when the session outlives the
    /// connection: they wait for the client's return like the others.
    pub fn take_shared_undelivered(&mut self) -> Vec<Delivery> {
        debug_assert!(self.closed, "called after Close");
        if self.session.expiry_interval_s > 0 {
            return Vec::new();
        }
        self.session.take_shared_undelivered()
    }

    fn will_delay_s(&self) -> u32 {
        match self.will() {
            Some(_) if self.will_delay_zero => 0,
            Some(w) => w
                .properties
                .will_delay_interval_s
                .unwrap_or(0)
                .min(self.session.expiry_interval_s),
            None => 0,
        }
    }

    pub(super) fn protocol_error(&mut self, why: &'static str) {
        self.close_error(ReasonCode::PROTOCOL_ERROR, why);
    }

    /// Closes for the client's fault: DISCONNECT (v5) with a short Reason
    /// String unless the client asked for no problem information, and the
    /// will is published.
    pub(super) fn close_error(&mut self, reason: ReasonCode, why: &'static str) {
        self.close(reason, true, true, Some(why));
    }

    /// The one way a connection ends. Untransmitted QoS 1/2 PUBLISHes stay
    /// inflight in the session for the resume; untransmitted QoS 0 ones are
    /// dropped and counted. Control packets already queued (acks) are still
    /// flushed, before the DISCONNECT.
    pub(super) fn close(
        &mut self,
        reason: ReasonCode,
        will: bool,
        send_disconnect: bool,
        why: Option<&'static str>,
    ) {
        if self.closed {
            return;
        }
        self.closed = true;
        self.publish_will = will && self.will().is_some();
        if !will {
            self.drop_will();
        }
        // Acks still held never go out: the client sends those PUBLISHes
        // again (`held.rs`).
        self.drop_held_acks();
        let drops = &mut self.session.extras.drops;
        self.tx.retain(|t| match t {
            Tx::Ack(..) | Tx::Control(_) => true,
            Tx::Held(..) => false,
            Tx::Publish(_) => false,
            Tx::Qos0(_) => {
                drops.closed += 1;
                false
            }
        });
        self.tx_qos0_len = 0;
        self.resend.clear();
        if send_disconnect && self.is_v5() {
            let reason_string = why.filter(|_| self.problem_info).map(ByteStr::from_static);
            let disconnect = Disconnect {
                reason_code: reason,
                properties: DisconnectProperties {
                    reason_string,
                    ..DisconnectProperties::default()
                },
            };
            self.tx
                .push_back(Tx::Control(Box::new(Packet::Disconnect(Box::new(
                    disconnect,
                )))));
        }
        self.actions.push_back(Action::Close {
            reason,
            will: self.publish_will,
        });
    }
}
