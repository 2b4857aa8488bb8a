//! The CONNECT phase of a connection: read and check CONNECT, decide
//! admission (node and listener caps, redirection), refuse or redirect
//! with a CONNACK; then acquire the session (claim, takeover), make the
//! connection reachable and queue CONNACK.

use super::super::inspect::unix_ms;
use super::super::io::{Half, Stream};
use super::super::sessions::Slot;
use super::super::state::{ConnHandle, Shard};
use super::super::takeover_remote::Unavailable;
use super::super::ListenerCount;
use super::authn::authenticate;
use super::close::close;
use super::read::fill;
use super::Live;
use crate::admission::{self, Decision, Request};
use crate::codec::{self, ByteStr, ConnAck, ConnAckProperties, Packet, Protocol, ReasonCode};
use crate::limits::CONNECT_TIMEOUT;
use crate::metrics::ShardMetrics;
use crate::session::{Connection, WallClock};
use bytes::BytesMut;
use futures_lite::io::AsyncWriteExt;
use std::cell::RefCell;
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

pub(super) static ASSIGNED_IDS: AtomicU64 = AtomicU64::new(0);

pub(super) fn assign_client_id(shard: u16) -> ByteStr {
    let n = ASSIGNED_IDS.fetch_add(1, Ordering::Relaxed);
    ByteStr::from(format!("ringmq-{shard}-{n:x}-{:08x}", fastrand::u32(..)))
}

pub(super) async fn send_packet<S: Stream>(wr: &mut Half<S>, packet: &Packet, protocol: Protocol) {
    let mut out = BytesMut::with_capacity(64);
    if codec::encode(packet, protocol, &mut out).is_ok() {
        let _ = wr.write_all(&out).await;
    }
}

/// Sends a refusal CONNACK made to fit the client's Maximum Packet Size;
/// nothing when not even its reason code fits (the caller closes).
pub(super) async fn send_refusal<S: Stream>(
    wr: &mut Half<S>,
    connack: ConnAck,
    connect: &codec::Connect,
) {
    if let Some(connack) = Connection::fit_refusal(connack, connect) {
        let packet = Packet::ConnAck(Box::new(connack));
        send_packet(wr, &packet, connect.protocol).await;
    }
}

pub(super) fn refusal(protocol: Protocol, v5: ReasonCode, v3: ReasonCode) -> Packet {
    Packet::ConnAck(Box::new(ConnAck {
        session_present: false,
        reason_code: if protocol.is_v5() { v5 } else { v3 },
        properties: Default::default(),
    }))
}

/// What an admitted CONNECT hands to the rest of the connection.
pub(super) struct Admitted<S> {
    connect: Box<codec::Connect>,
    io: Rc<RefCell<S>>,
    /// Whatever the client sent after its CONNECT.
    buf: BytesMut,
    /// Authenticated as a superuser: the ACL file does not apply.
    superuser: bool,
}

/// Reads and checks CONNECT and decides admission (node and listener caps,
/// server redirection); redirects or refuses with CONNACK and closes, or
/// fills `admitted`.
pub(super) async fn admit<S: Stream>(
    shard: &Rc<Shard>,
    io: Rc<RefCell<S>>,
    listener: &ListenerCount,
    admitted: &mut Option<Admitted<S>>,
) {
    let peer = {
        let stream = io.borrow();
        let stream = stream.tcp();
        let _ = stream.set_nodelay(true);
        stream.peer_addr().ok()
    };
    let mut wr = Half(io.clone());
    let cfg = &shard.settings.session;
    let mut buf = BytesMut::new();

    // ---- CONNECT ----
    let _ = io.borrow().tcp().set_read_timeout(Some(CONNECT_TIMEOUT));
    let connect = loop {
        match codec::decode(&mut buf, None, cfg.max_packet_size) {
            Ok(Some(Packet::Connect(c))) => break c,
            Ok(Some(_)) => return close(&io).await,
            Ok(None) => {
                let before = buf.len();
                match fill(&shard.scratch, &io, &mut buf).await {
                    Ok(true) => {
                        let read = (buf.len() - before) as u64;
                        ShardMetrics::add(&shard.metrics.bytes_received, read);
                    }
                    ended => {
                        // EOF (a port probe, a client giving up) or a failed
                        // read (the CONNECT timeout among them).
                        let error = ended.err().map(|e| e.to_string());
                        tracing::debug!(
                            shard = shard.id,
                            ?peer,
                            ?error,
                            bytes = buf.len(),
                            "connection ended before its CONNECT"
                        );
                        return close(&io).await;
                    }
                }
            }
            Err(e) => {
                tracing::debug!(shard = shard.id, ?peer, error = %e, "bad CONNECT");
                match e.protocol_hint() {
                    Some(Protocol::V5) => {
                        let p = refusal(Protocol::V5, e.reason_code(), e.reason_code());
                        send_packet(&mut wr, &p, Protocol::V5).await;
                    }
                    Some(p) => {
                        if let Some(rc) = e.connack_v3() {
                            send_packet(&mut wr, &refusal(p, rc, rc), p).await;
                        }
                    }
                    None => {}
                }
                return close(&io).await;
            }
        }
    };
    let mut connect = connect;
    // The client certificate's CN is the user name when the listener says
    // so (`peer_cert_as_username = "cn"`), whatever CONNECT claimed; always
    // `None` on plain TCP.
    if let Some(name) = io.borrow().peer_username() {
        connect.username = Some(ByteStr::from(name));
    }
    let protocol = connect.protocol;
    if let Err(connack) = Connection::check_connect(&connect, cfg) {
        send_refusal(&mut wr, connack, &connect).await;
        return close(&io).await;
    }
    // Before admission takes a connection slot: a refused client holds none.
    let superuser = match authenticate(shard, peer, &connect).await {
        Ok(superuser) => superuser,
        Err(refused) => {
            let connack = ConnAck {
                session_present: false,
                reason_code: if protocol.is_v5() {
                    refused.v5
                } else {
                    refused.v3
                },
                properties: ConnAckProperties::default(),
            };
            send_refusal(&mut wr, connack, &connect).await;
            return close(&io).await;
        }
    };
    match decide_admission(shard, listener, protocol.is_v5()) {
        Decision::Admit => {}
        Decision::Redirect {
            reason,
            server_reference,
        } => {
            tracing::debug!(
                shard = shard.id,
                ?peer,
                reason = format_args!("0x{:02X}", reason.0),
                server_reference = %server_reference,
                "client redirected"
            );
            let connack = ConnAck {
                session_present: false,
                reason_code: reason,
                properties: ConnAckProperties {
                    server_reference: Some(ByteStr::from(server_reference)),
                    ..Default::default()
                },
            };
            send_refusal(&mut wr, connack, &connect).await;
            return close(&io).await;
        }
        Decision::Refuse { reason, cause } => {
            tracing::debug!(shard = shard.id, ?peer, ?cause, "client refused");
            let connack = ConnAck {
                session_present: false,
                reason_code: reason,
                properties: ConnAckProperties::default(),
            };
            send_refusal(&mut wr, connack, &connect).await;
            return close(&io).await;
        }
    }
    *admitted = Some(Admitted {
        connect,
        io,
        buf,
        superuser,
    });
}

/// Decides a CONNECT (`admission::decide`) and, for an admission, takes a
/// slot in the node-wide and the listener's counts by compare-and-swap. A
/// count another shard changed meanwhile means deciding again with the new
/// counts: no lock, and the caps stay exact.
pub(super) fn decide_admission(shard: &Shard, listener: &ListenerCount, v5: bool) -> Decision {
    let node = &shard.admission;
    // One load per CONNECT: a config replaced meanwhile applies to the next.
    let effective = node.effective();
    let config = &effective.redirection;
    let refusing = node.refusing();
    let decision = loop {
        let node_seen = node.connections.load();
        let listener_seen = listener.open.load();
        let request = Request {
            v5,
            node_connections: node_seen,
            listener_connections: listener_seen,
            listener_max: listener.max,
            evacuating: refusing.as_deref(),
            shutting_down: shard.is_shutting_down(),
        };
        let decision = admission::decide(&request, config, &mut |n| node.pick_in(&effective, n));
        if decision != Decision::Admit {
            break decision;
        }
        if !node.connections.try_take(node_seen) {
            continue;
        }
        if !listener.open.try_take(listener_seen) {
            node.connections.release();
            continue;
        }
        break decision;
    };
    shard.counters.record(&decision);
    decision
}

/// From an admitted CONNECT to a running connection: acquires the session
/// (claiming the client id, taking over an older connection), registers the
/// connection and queues CONNACK.
pub(super) async fn establish<S: Stream>(
    shard: &Rc<Shard>,
    admitted: Admitted<S>,
) -> Option<Live<S>> {
    let Admitted {
        connect,
        io,
        buf,
        superuser,
    } = admitted;
    let cfg = &shard.settings.session;
    let protocol = connect.protocol;
    let (client_id, assigned) = if connect.client_id.is_empty() {
        (assign_client_id(shard.id), true)
    } else {
        // A copy of its own: the decoded id shares the buffer of the whole
        // CONNECT read (and a larger reference count), which the session,
        // the registry keys and the subscriptions would keep alive for as
        // long as the client stays.
        (ByteStr::from(connect.client_id.to_string()), false)
    };
    // Before the session is acquired: a CONNECT that cannot be accepted
    // must not take over (and kick) the connection that holds it.
    let assigned_id = assigned.then_some(&client_id);
    if let Err(refusal) = Connection::check_connack_fits(&connect, cfg, assigned_id) {
        tracing::debug!(
            shard = shard.id,
            client_id = %client_id,
            "CONNACK larger than the client's Maximum Packet Size: refused"
        );
        if let Some(connack) = refusal {
            let packet = Packet::ConnAck(Box::new(connack));
            send_packet(&mut Half(io.clone()), &packet, protocol).await;
        }
        close(&io).await;
        return None;
    }
    // From here to the slot's insertion nothing awaits unless the session is
    // discarded: a delivery for it finds it wherever it is.
    let existing = match shard.acquire_session(&client_id, connect.clean_start).await {
        Ok(existing) => existing,
        Err(Unavailable) => {
            // The cluster could not settle who owns the id (no home, or
            // its claim was refused or timed out): the client may retry.
            tracing::info!(shard = shard.id, client_id = %client_id, "claim refused by the cluster");
            let v3 = codec::connack_v3::SERVER_UNAVAILABLE;
            let packet = refusal(protocol, ReasonCode::SERVER_UNAVAILABLE, v3);
            send_packet(&mut Half(io.clone()), &packet, protocol).await;
            close(&io).await;
            shard.claim_done(&client_id).await;
            shard.release_local(&client_id).await;
            return None;
        }
    };
    shard.cancel_will(&client_id);
    let clock = WallClock::now();
    let connected = shard
        .with_lifecycle(|l| l.handle_connect(&client_id, existing, connect.clean_start, &clock));
    if let Some(mut s) = connected.discard {
        shard.durable_forget(&mut s);
        shard.metrics.session_ended(s.drop_counts());
        shard.unsubscribe_session(&s).await;
        shard.redispatch_shared(s.take_shared_undelivered()).await;
    }
    let existing = connected.resume;
    let resumed = existing.is_some();
    let connected_at_ms = unix_ms(std::time::SystemTime::now());
    let now = Instant::now();
    // The session gets a copy of its own, never cloned while the client is
    // idle: `client_id` was cloned for the connects in progress
    // (`State::pending`), and a cloned `Bytes` keeps a 24-byte shared header
    // for as long as any copy lives.
    let session_id = ByteStr::from(client_id.as_str());
    let mut conn = Connection::accept(*connect, session_id, assigned, existing, cfg, now);
    if superuser {
        conn.set_superuser();
    }
    // A clustered node with redirection on lists the cluster's running
    // nodes in every v5 CONNACK (docs/redirection.md).
    if let Some(reference) = &shard.admission.effective().connack_reference {
        conn.set_connack_server_reference(reference.clone());
    }
    conn.set_socket_fd(io.borrow().tcp().as_raw_fd());
    if resumed {
        shard.durable_resumed(conn.session_mut(), &clock);
    } else {
        shard.durable_put_session(conn.session_mut(), &clock);
    }
    shard.with_lifecycle(|l| l.handle_online(conn.session(), resumed, &clock));
    let handle = Rc::new(ConnHandle::new(conn, connected_at_ms));
    shard
        .sessions
        .insert(client_id.as_str(), Slot::Online(handle.clone()));
    tracing::debug!(shard = shard.id, client_id = %client_id, "client connected");
    // The next connect of this id may now take over from this one.
    shard.claim_done(&client_id).await;
    // `sync = "always"`: the CONNACK of a persistent session waits for its
    // record to be synced.
    if let Some(ticket) = shard.durable.ack_ticket() {
        shard.durable.wait_synced(ticket).await;
    }

    shard.run_actions(&handle).await;
    // The CONNECT phase's other references to the stream (its write half)
    // are gone: the connection owns it from here on.
    let stream = Rc::try_unwrap(io)
        .unwrap_or_else(|_| unreachable!("the stream is shared after CONNECT"))
        .into_inner();
    Some(Live {
        shard: shard.clone(),
        handle,
        stream,
        buf: (!buf.is_empty()).then(|| Box::new(buf)),
        backlog: None,
        protocol,
        release: false,
        held: false,
        defer: false,
    })
}
