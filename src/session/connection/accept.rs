//! Accepting a CONNECT: the checks before anything is taken over, the
//! CONNACK, and what a resumed session owes the client.

use std::sync::Arc;
use std::time::Instant;

use crate::codec::{
    connack_v3, ByteStr, ConnAck, ConnAckProperties, Connect, Packet, ReasonCode, Will,
};
use crate::router::topic::{is_valid_topic_name, levels};
use crate::session::connack;
use crate::session::lazy::Lazy;
use crate::session::pressure::Pressure;
use crate::session::state::{queue_len_max_u32, Awaiting, Session};
use crate::session::{SessionConfig, OUTBOUND_TOPIC_ALIAS_MAX};

use super::{pubrel, Connection, Tx};

/// What a CONNECT may carry beyond the client id, kept for the life of the
/// connection. One box for both, present only when the client set either:
/// most clients set no will (inline, a will took 200 bytes of every
/// connection), and the user name is only read by authorization rules.
#[derive(Debug)]
pub(super) struct ConnectExtras {
    pub(super) username: Option<ByteStr>,
    pub(super) will: Option<Will>,
    /// Authenticated as a built-in database superuser: the ACL file does
    /// not apply (a superuser always has a user name, so extras exist).
    pub(super) superuser: bool,
}

impl ConnectExtras {
    pub(super) fn of(username: Option<ByteStr>, will: Option<Will>) -> Option<Box<ConnectExtras>> {
        (username.is_some() || will.is_some()).then(|| {
            Box::new(ConnectExtras {
                username,
                will,
                superuser: false,
            })
        })
    }
}

impl Connection {
    /// Validates a CONNECT before anything else happens. `Err` is the
    /// refusal CONNACK (right code for the protocol) to send before closing.
    // The refusal CONNACK is the API's error type; it is built once per
    // refused connection, so its size does not matter.
    #[allow(clippy::result_large_err)]
    pub fn check_connect(connect: &Connect, cfg: &SessionConfig) -> Result<(), ConnAck> {
        let v5 = connect.protocol.is_v5();
        let refuse = |code_v5: ReasonCode, code_v3: ReasonCode| {
            Err(ConnAck {
                session_present: false,
                reason_code: if v5 { code_v5 } else { code_v3 },
                properties: ConnAckProperties::default(),
            })
        };
        let id = &connect.client_id;
        if id.len() > cfg.max_client_id_len || id.chars().any(char::is_control) {
            return refuse(
                ReasonCode::CLIENT_IDENTIFIER_NOT_VALID,
                connack_v3::IDENTIFIER_REJECTED,
            );
        }
        // MQTT-3.1.3-8 (3.1.1): an empty id needs Clean Session 1. v5 lets the
        // server assign one whatever Clean Start is.
        if !v5 && id.is_empty() && !connect.clean_start {
            return refuse(
                ReasonCode::CLIENT_IDENTIFIER_NOT_VALID,
                connack_v3::IDENTIFIER_REJECTED,
            );
        }
        if v5 {
            let p = &connect.properties;
            // No enhanced authentication method is supported (MQTT-4.12.0-1).
            if p.authentication_method.is_some() {
                return refuse(
                    ReasonCode::BAD_AUTHENTICATION_METHOD,
                    connack_v3::NOT_AUTHORIZED,
                );
            }
            // Both are protocol errors when 0 (sections 3.1.2.11.3 and .4).
            if p.receive_maximum == Some(0) || p.maximum_packet_size == Some(0) {
                return refuse(ReasonCode::PROTOCOL_ERROR, connack_v3::NOT_AUTHORIZED);
            }
        }
        if let Some(will) = &connect.will {
            // Deeper than `max_topic_levels`: the will could never be
            // published, so the client learns it now.
            if !is_valid_topic_name(&will.topic) || levels(&will.topic) > cfg.max_topic_levels {
                // 3.1.1 has no fitting return code; any non-zero one refuses.
                return refuse(ReasonCode::TOPIC_NAME_INVALID, connack_v3::NOT_AUTHORIZED);
            }
            // MQTT-3.2.2-14 (v5). A 3.1.1 client cannot know; its will simply
            // loses the retain flag (see `take_will`).
            if v5 && will.retain && !cfg.retain_available {
                return refuse(ReasonCode::RETAIN_NOT_SUPPORTED, connack_v3::NOT_AUTHORIZED);
            }
        }
        Ok(())
    }

    /// Whether the client can receive the CONNACK [`Connection::accept`]
    /// would send, with the final client id (`assigned_client_id` when the
    /// shard made one up). Checked before the session is acquired, so a
    /// CONNECT that cannot be accepted takes nothing over. `Err`: the
    /// refusal CONNACK to send before closing, or `None` to close without
    /// sending anything (see `connack::check_fits` for why).
    #[allow(clippy::result_large_err)] // built once per refused connection
    pub fn check_connack_fits(
        connect: &Connect,
        cfg: &SessionConfig,
        assigned_client_id: Option<&ByteStr>,
    ) -> Result<(), Option<ConnAck>> {
        connack::check_fits(connect, cfg, assigned_client_id)
    }

    /// A refusal CONNACK for `connect` made to fit the client's Maximum
    /// Packet Size (MQTT-3.1.2-24): optional properties go first; `None`
    /// when even the reason code alone does not fit (send nothing, close).
    pub fn fit_refusal(refusal: ConnAck, connect: &Connect) -> Option<ConnAck> {
        let size_max = connack::client_packet_size_max(connect);
        connack::fit(refusal, connect.protocol, size_max)
    }

    /// Accepts a CONNECT that passed [`Connection::check_connect`] and
    /// [`Connection::check_connack_fits`].
    ///
    /// `client_id` is the final id (`assigned` when the shard made it up for
    /// an empty one: v5 then returns it as Assigned Client Identifier).
    /// `existing` is the session for this id, already taken over from
    /// wherever it lived; it is discarded when Clean Start is set.
    ///
    /// Queues CONNACK, then the resends of the resumed session in original
    /// order (PUBLISH with DUP=1 if it was transmitted before, PUBREL for
    /// PUBREC'd ones), then queued messages, within the window.
    pub fn accept(
        connect: Connect,
        client_id: ByteStr,
        assigned: bool,
        existing: Option<Session>,
        cfg: &Arc<SessionConfig>,
        now: Instant,
    ) -> Connection {
        let v5 = connect.protocol.is_v5();
        let props = &connect.properties;
        let negotiated = connack::negotiate(&connect, cfg);
        let client_packet_size_max = connack::client_packet_size_max(&connect);
        let expiry_s = negotiated.expiry_s;

        // `client_id` is moved in, not cloned: the first clone of a `Bytes`
        // made from a `Vec` allocates a shared header (24 bytes), which an
        // idle connection would keep for nothing.
        let (mut session, session_present) = match existing {
            Some(mut s) if !connect.clean_start => {
                assert_eq!(s.client_id, client_id, "existing session of another client");
                s.client_id = client_id;
                (s, true)
            }
            _ => (Session::new(client_id, expiry_s, cfg.max_mqueue_len), false),
        };
        session.expiry_interval_s = expiry_s;
        session.queue_len_max = queue_len_max_u32(cfg.max_mqueue_len);

        let receive_maximum = connack::receive_maximum(cfg);
        let connack = if v5 {
            let assigned_client_id = assigned.then(|| session.client_id.clone());
            ConnAck {
                session_present,
                reason_code: ReasonCode::SUCCESS,
                properties: connack::properties(&negotiated, cfg, assigned_client_id),
            }
        } else {
            ConnAck {
                session_present,
                reason_code: connack_v3::ACCEPTED,
                properties: ConnAckProperties::default(),
            }
        };

        let client_receive_maximum = if v5 {
            props.receive_maximum.unwrap_or(u16::MAX)
        } else {
            u16::MAX
        };
        let mut conn = Connection {
            protocol: connect.protocol,
            cfg: Arc::clone(cfg),
            extras: ConnectExtras::of(connect.username, connect.will),
            keep_alive_s: negotiated.keep_alive_s,
            last_rx_at: now,
            last_now: now,
            window_len: client_receive_maximum.min(receive_maximum),
            client_packet_size_max,
            alias_out_max: if v5 {
                props
                    .topic_alias_maximum
                    .unwrap_or(0)
                    .min(OUTBOUND_TOPIC_ALIAS_MAX)
            } else {
                0
            },
            aliases: Lazy::new(),
            problem_info: !v5 || props.request_problem_information != Some(0),
            connect_expiry_zero: negotiated.expiry_requested_s == 0,
            will_delay_zero: false,
            publish_will: false,
            tx: Lazy::new(),
            tx_qos0_len: 0,
            resend: Lazy::new(),
            actions: Lazy::new(),
            closed: false,
            clean_start: connect.clean_start,
            socket_fd: -1,
            pressure: Pressure::Free,
            session,
        };
        conn.tx
            .push_back(Tx::Control(Box::new(Packet::ConnAck(Box::new(connack)))));
        conn.queue_resends();
        conn.drain(now);
        conn
    }

    /// Adds a Server Reference (other servers the client may use, MQTT 5
    /// §3.2.2.3.16) to the successful CONNACK still queued: a clustered
    /// node lists its running nodes there. Nothing for 3.1.1, or when the
    /// CONNACK would no longer fit the client's Maximum Packet Size (the
    /// reference is optional; the CONNACK is not). Whether it was added.
    pub fn set_connack_server_reference(&mut self, reference: ByteStr) -> bool {
        if !self.protocol.is_v5() {
            return false;
        }
        let size_max = self.client_packet_size_max;
        let protocol = self.protocol;
        let Some(Tx::Control(packet)) = self.tx.front_mut() else {
            return false;
        };
        let Packet::ConnAck(connack) = &mut **packet else {
            return false;
        };
        let mut with = (**connack).clone();
        with.properties.server_reference = Some(reference);
        if !connack::fits(&with, protocol, size_max) {
            return false;
        }
        **connack = with;
        true
    }

    /// Queues what a resumed session owes the client (MQTT-4.4.0-1): in
    /// original order, PUBREL for PUBREC'd messages and PUBLISH for the
    /// others, as far as the window allows; the remaining PUBLISHes go out
    /// as acknowledgements make room (see `drain`).
    fn queue_resends(&mut self) {
        let mut order: Vec<(u64, u16, Awaiting)> = self
            .session
            .inflight
            .iter()
            .map(|(&id, o)| (o.seq, id, o.state))
            .collect();
        order.sort_unstable_by_key(|e| e.0);
        // Every PUBLISH starts in the backlog, so the window counts only the
        // PUBREL'd messages while the loop admits them in order.
        self.resend.extend(
            order
                .iter()
                .filter(|e| e.2 != Awaiting::PubComp)
                .map(|e| e.1),
        );
        for (_, id, state) in order {
            if state == Awaiting::PubComp {
                self.tx.push_back(pubrel(id, ReasonCode::SUCCESS));
            } else if self.resend.front() == Some(&id) && self.has_window() {
                self.resend.pop_front();
                self.tx.push_back(Tx::Publish(id));
            }
        }
    }
}
