//! What the admin API asks a shard about its clients and counters, and the
//! shard's answers: built from the shard's own state, on the shard, when
//! asked (the shard services inbox carries the question and the answer).
//! Nothing here runs on the publish path; the counters it reads are plain
//! `Cell`s the publish path adds to (`metrics::ShardMetrics`).
//!
//! The few facts about a connection that its session does not keep cost
//! no allocation: the connect time is in `ConnHandle`, Clean Start and the
//! socket's descriptor in the padding of `Connection`, and the peer's
//! address is asked of the socket when the admin API wants it (`peer_of`).
//! A box of them cost 32 bytes per connection, a shard-side map about 67
//! (docs/performance.md, "Idle connections after issue 12").

use super::sessions::Slot;
use super::state::{ConnHandle, Shard};
use crate::codec::ReasonCode;
use crate::metrics::{ClientInfo, DropTotals, ShardStats, SubscriptionInfo};
use crate::session::{Connection, DropCounts, Session};
use std::net::SocketAddr;
use std::os::fd::BorrowedFd;
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A question from the admin thread to one shard.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AdminQuery {
    /// How many sessions (connected or offline) the shard holds.
    CountClients,
    /// Sessions `skip .. skip + take` in the shard's listing order (the
    /// order of its session map, stable while no session comes or goes).
    ListClients { skip: usize, take: usize },
    /// One client's record, if its session is here.
    Client(String),
    /// One client's subscriptions, if its session is here.
    ClientSubscriptions(String),
    /// How many subscriptions the shard's sessions hold.
    CountSubscriptions,
    /// Subscriptions `skip .. skip + take`: the sessions in listing order,
    /// each session's subscriptions by filter.
    ListSubscriptions { skip: usize, take: usize },
    /// End the client's connection with DISCONNECT 0x98 (v5) and discard
    /// its session; an offline session is discarded at once.
    Kick(String),
    /// Gauges and counters.
    Stats,
}

/// A shard's answer to an [`AdminQuery`], variant for variant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AdminAnswer {
    Count(usize),
    Clients(Vec<ClientInfo>),
    Client(Option<ClientInfo>),
    Subscriptions(Option<Vec<SubscriptionInfo>>),
    /// Whether the client's session was on this shard.
    Kicked(bool),
    Stats(Box<ShardStats>),
}

/// The peer's address of a connected client, asked of its socket: kept
/// per connection it cost 18 bytes and, boxed with the connect time, a
/// 32-byte allocation (docs/performance.md, "Idle connections after issue
/// 12", round 2). Read only while the connection is not `closing`: its task
/// closes the descriptor in `finish`, after `request_close`, so until then
/// the descriptor is this connection's (everything here runs on the shard's
/// thread). `None` once the peer is gone (the socket reports `ENOTCONN`).
fn peer_of(handle: &ConnHandle, conn: &Connection) -> Option<SocketAddr> {
    if handle.closing.get() {
        return None;
    }
    // SAFETY: the descriptor is open for as long as the connection is not
    // closing (above), and the borrow ends within this function.
    let fd = unsafe { BorrowedFd::borrow_raw(conn.socket_fd()?) };
    socket_peer(fd)
}

/// `getpeername` of a socket.
fn socket_peer(fd: BorrowedFd<'_>) -> Option<SocketAddr> {
    socket2::SockRef::from(&fd).peer_addr().ok()?.as_socket()
}

pub(super) fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The record of a session's subscriptions.
fn subscriptions_of(session: &Session) -> Vec<SubscriptionInfo> {
    session
        .subscriptions()
        .map(|(filter, options, id)| SubscriptionInfo {
            client_id: session.client_id().to_string(),
            topic: filter.to_string(),
            qos: options.qos as u8,
            no_local: options.no_local,
            retain_as_published: options.retain_as_published,
            retain_handling: options.retain_handling,
            subscription_id: id,
        })
        .collect()
}

/// The record of an offline session. `expires_at`: its deadline (`None`:
/// never expires); `now`, `wall_now`: the same moment on both clocks.
fn offline_info(
    shard: u16,
    session: &Session,
    expires_at: Option<Instant>,
    now: Instant,
    wall_now: SystemTime,
) -> ClientInfo {
    // The connection ended one expiry interval before the deadline.
    let disconnected_at_ms = expires_at.map(|at| {
        let interval = Duration::from_secs(u64::from(session.expiry_interval_s()));
        let ended = at.checked_sub(interval).unwrap_or(now);
        let ago = now.saturating_duration_since(ended);
        unix_ms(wall_now.checked_sub(ago).unwrap_or(UNIX_EPOCH))
    });
    ClientInfo {
        client_id: session.client_id().to_string(),
        shard,
        connected: false,
        username: None,
        proto_ver: 0,
        peer: None,
        keepalive_s: 0,
        clean_start: None,
        expiry_interval_s: session.expiry_interval_s(),
        subscriptions: session.subscription_count() as u64,
        mqueue_len: session.queued_len() as u64,
        mqueue_max: session.queue_len_max() as u64,
        mqueue_dropped: session.dropped_messages(),
        inflight_cnt: session.inflight_len() as u64,
        connected_at_ms: None,
        disconnected_at_ms,
    }
}

impl Shard {
    /// Answers one admin question from this shard's state. Everything but
    /// a kick is read-only and runs without awaiting; a kick starts the
    /// connection's close (or the offline session's end) and returns.
    pub fn answer_admin(self: &Rc<Self>, query: AdminQuery) -> AdminAnswer {
        match query {
            AdminQuery::CountClients => AdminAnswer::Count(self.listed_sessions().0),
            AdminQuery::ListClients { skip, take } => {
                AdminAnswer::Clients(self.list_clients(skip, take))
            }
            AdminQuery::Client(id) => AdminAnswer::Client(self.client_info(&id)),
            AdminQuery::ClientSubscriptions(id) => {
                AdminAnswer::Subscriptions(self.client_subscriptions(&id))
            }
            AdminQuery::CountSubscriptions => AdminAnswer::Count(self.listed_sessions().1),
            AdminQuery::ListSubscriptions { skip, take } => {
                AdminAnswer::Subscriptions(Some(self.list_subscriptions(skip, take)))
            }
            AdminQuery::Kick(id) => AdminAnswer::Kicked(self.kick_client(&id)),
            AdminQuery::Stats => AdminAnswer::Stats(Box::new(self.stats())),
        }
    }

    /// (sessions, their subscriptions) listed here. O(sessions).
    fn listed_sessions(&self) -> (usize, usize) {
        let mut sessions = 0;
        let mut subscriptions = 0;
        self.sessions.view(|slots| {
            for slot in slots.values() {
                match slot {
                    Slot::Online(h) => {
                        sessions += 1;
                        subscriptions += h.conn.borrow().session().subscription_count();
                    }
                    Slot::Offline(p) => {
                        sessions += 1;
                        subscriptions += p.session.subscription_count();
                    }
                    // Listed by the shard it is moving to, once there.
                    Slot::Exported(_) | Slot::Importing(_) => {}
                }
            }
        });
        (sessions, subscriptions)
    }

    fn online_info(&self, handle: &Rc<ConnHandle>) -> ClientInfo {
        let conn = handle.conn.borrow();
        let session = conn.session();
        ClientInfo {
            client_id: session.client_id().to_string(),
            shard: self.id,
            connected: true,
            username: conn.username().map(|u| u.to_string()),
            proto_ver: match conn.protocol() {
                crate::codec::Protocol::V31 => 3,
                crate::codec::Protocol::V311 => 4,
                crate::codec::Protocol::V5 => 5,
            },
            peer: peer_of(handle, &conn),
            keepalive_s: conn.keep_alive_s(),
            clean_start: Some(conn.clean_start()),
            expiry_interval_s: session.expiry_interval_s(),
            subscriptions: session.subscription_count() as u64,
            mqueue_len: session.queued_len() as u64,
            mqueue_max: session.queue_len_max() as u64,
            mqueue_dropped: session.dropped_messages(),
            inflight_cnt: session.inflight_len() as u64,
            connected_at_ms: Some(handle.connected_at_ms),
            disconnected_at_ms: None,
        }
    }

    fn slot_info(&self, slot: &Slot, now: Instant, wall_now: SystemTime) -> Option<ClientInfo> {
        match slot {
            Slot::Online(h) => Some(self.online_info(h)),
            Slot::Offline(p) => Some(offline_info(
                self.id,
                &p.session,
                p.expires_at,
                now,
                wall_now,
            )),
            Slot::Exported(_) | Slot::Importing(_) => None,
        }
    }

    fn list_clients(&self, skip: usize, take: usize) -> Vec<ClientInfo> {
        let (now, wall_now) = (Instant::now(), SystemTime::now());
        self.sessions.view(|slots| {
            slots
                .values()
                .filter(|s| matches!(s, Slot::Online(_) | Slot::Offline(_)))
                .skip(skip)
                .take(take)
                .filter_map(|s| self.slot_info(s, now, wall_now))
                .collect()
        })
    }

    fn client_info(&self, client_id: &str) -> Option<ClientInfo> {
        self.sessions.view(|slots| {
            let slot = slots.get(client_id)?;
            self.slot_info(slot, Instant::now(), SystemTime::now())
        })
    }

    fn client_subscriptions(&self, client_id: &str) -> Option<Vec<SubscriptionInfo>> {
        self.sessions.view(|slots| match slots.get(client_id)? {
            Slot::Online(h) => Some(subscriptions_of(h.conn.borrow().session())),
            Slot::Offline(p) => Some(subscriptions_of(&p.session)),
            Slot::Exported(_) | Slot::Importing(_) => None,
        })
    }

    fn list_subscriptions(&self, skip: usize, take: usize) -> Vec<SubscriptionInfo> {
        let mut out = Vec::new();
        let mut to_skip = skip;
        self.sessions.view(|slots| {
            for slot in slots.values() {
                if out.len() >= take {
                    break;
                }
                let conn;
                let session = match slot {
                    Slot::Online(h) => {
                        conn = h.conn.borrow();
                        conn.session()
                    }
                    Slot::Offline(p) => &p.session,
                    Slot::Exported(_) | Slot::Importing(_) => continue,
                };
                let n = session.subscription_count();
                if to_skip >= n {
                    to_skip -= n;
                    continue;
                }
                let mut subs = subscriptions_of(session);
                subs.drain(..to_skip);
                to_skip = 0;
                subs.truncate(take - out.len());
                out.extend(subs);
            }
        });
        out
    }

    /// Starts the end of `client_id`'s connection and session; false when
    /// its session is not on this shard.
    fn kick_client(self: &Rc<Self>, client_id: &str) -> bool {
        let online = self.sessions.view(|slots| match slots.get(client_id) {
            Some(Slot::Online(h)) => Some(Some(h.clone())),
            Some(Slot::Offline(_)) => Some(None),
            _ => None,
        });
        let Some(online) = online else {
            return false;
        };
        match online {
            Some(h) => {
                // The connection's task flushes the DISCONNECT and closes;
                // its end finds a session that ends with it (`finish`).
                h.conn
                    .borrow_mut()
                    .kick_ending_session(ReasonCode::ADMINISTRATIVE_ACTION);
                self.drain_sync_actions(&h);
                h.request_close();
            }
            None => {
                let parked = match self.sessions.remove(client_id) {
                    Some(Slot::Offline(p)) => p,
                    _ => unreachable!("an offline slot was there and nothing awaited"),
                };
                let me = self.clone();
                glommio::spawn_local(async move { me.end_session(parked.session).await }).detach();
            }
        }
        tracing::info!(
            shard = self.id,
            client_id,
            "client kicked through the admin API"
        );
        true
    }

    /// Ends an offline session taken out of `slots` (expired, or kicked):
    /// its delayed will goes out now, its subscriptions leave the router,
    /// the id's registry entry is released, its drops are kept.
    pub async fn end_session(self: &Rc<Self>, mut session: Session) {
        let id = session.client_id().clone();
        self.metrics.session_ended(session.drop_counts());
        // A delayed will is due at the latest when its session ends.
        let will = self.timers.take_will(&id);
        if let Some(w) = will {
            self.publish(w).await;
        }
        self.unsubscribe_session(&session).await;
        self.redispatch_shared(session.take_shared_undelivered())
            .await;
        self.release(&id).await;
        tracing::debug!(shard = self.id, client_id = %id, "session ended");
    }

    /// The shard's gauges and counters now. O(sessions): the gauges and the
    /// drops of live sessions are read from every session.
    pub fn stats(&self) -> ShardStats {
        let mut sessions = 0u64;
        let mut subscriptions = 0u64;
        let mut drops = self.metrics.ended_session_drops.get();
        let mut count = |session: &Session, drops: &mut DropCounts| {
            sessions += 1;
            subscriptions += session.subscription_count() as u64;
            drops.add(&session.drop_counts());
        };
        self.sessions.view(|slots| {
            for slot in slots.values() {
                match slot {
                    Slot::Online(h) => count(h.conn.borrow().session(), &mut drops),
                    Slot::Offline(p) => count(&p.session, &mut drops),
                    Slot::Exported(_) | Slot::Importing(_) => {}
                }
            }
        });
        let m = &self.metrics;
        ShardStats {
            shard: self.id,
            connections: self.sessions.connections() as u64,
            sessions,
            subscriptions,
            retained_messages: self.routes.retained_len() as u64,
            messages_received: m.messages_received.get(),
            messages_sent: m.messages_sent.get(),
            bytes_received: m.bytes_received.get(),
            bytes_sent: m.bytes_sent.get(),
            dropped: DropTotals {
                sessions: drops,
                no_recipient: self.routes.dropped_no_recipient(),
            },
            admission: self.counters.snapshot(),
            durable_store: crate::session::store_quota::usage(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The admin API's address of a client is its socket's peer, IPv4 or
    /// IPv6, and none once the socket has no peer.
    #[test]
    fn the_peer_is_asked_of_the_socket() {
        use std::os::fd::AsFd;
        for bind in ["127.0.0.1:0", "[::1]:0"] {
            let Ok(listener) = std::net::TcpListener::bind(bind) else {
                continue; // no IPv6 on this host
            };
            let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
            let (server, _) = listener.accept().unwrap();
            assert_eq!(
                socket_peer(server.as_fd()),
                Some(client.local_addr().unwrap())
            );
        }
        let unconnected =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        assert_eq!(socket_peer(unconnected.as_fd()), None);
    }

    #[test]
    fn an_offline_session_dates_its_disconnect_from_its_deadline() {
        let session = Session::new("c".into(), 60, 10);
        let now = Instant::now();
        let wall_now = UNIX_EPOCH + Duration::from_secs(1000);
        // Disconnected 15 s ago: 45 s left of 60.
        let info = offline_info(
            3,
            &session,
            Some(now + Duration::from_secs(45)),
            now,
            wall_now,
        );
        assert_eq!(info.disconnected_at_ms, Some(985_000));
        assert!(!info.connected);
        assert_eq!(info.shard, 3);
        assert_eq!(info.expiry_interval_s, 60);
        let never = offline_info(0, &session, None, now, wall_now);
        assert_eq!(never.disconnected_at_ms, None);
    }
}
