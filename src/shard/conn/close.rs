//! The end of a connection: flush and close the socket (with a lingering
//! read), then the session goes offline, moves to the connection that took
//! it over, or ends, and the connection is no longer counted.

use super::super::io::Stream;
use super::super::sessions::{Parked, Slot};
use super::super::state::Shard;
use super::super::ListenerCount;
use super::read::fill;
use super::transmit::flush;
use super::Live;
use crate::codec::ByteStr;
use crate::limits::CLOSE_LINGER;
use crate::session::lifecycle::WillPlan;
use crate::session::WallClock;
use glommio::net::TcpStream;
use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The accounting at the end of an admitted connection.
pub(super) fn closed(shard: &Shard, listener: &ListenerCount) {
    shard.connection_closed();
    listener.open.release();
    shard.admission.connections.release();
}

/// The end of a connection: flush and close the socket, then the session
/// goes offline, moves to the connection that took it over, or ends; then
/// the connection is no longer counted.
pub(super) async fn finish<S: Stream>(live: Live<S>, eof: bool, listener: Arc<ListenerCount>) {
    let Live {
        shard,
        handle,
        mut stream,
        buf,
        mut backlog,
        protocol: _,
        release: _,
        held: _,
        defer: _,
    } = live;
    let shard = &shard;
    let mut buf = buf.map(|b| *b).unwrap_or_default();
    let client_id = handle.conn.borrow().client_id().clone();
    handle.request_close();
    // Flush what is left (DISCONNECT included) and half-close; a client
    // that stopped reading gets CLOSE_LINGER before the socket is shut.
    let flushed = futures_lite::future::or(
        async {
            if flush(shard, &handle, &mut stream, &mut backlog)
                .await
                .is_ok()
            {
                // The client reads EOF after our last packet.
                half_close_fd(stream.tcp());
            }
            true
        },
        async {
            glommio::timer::sleep(CLOSE_LINGER).await;
            false
        },
    )
    .await;
    if !flushed {
        shutdown_fd(stream.tcp());
    }
    if eof {
        shutdown_fd(stream.tcp());
    } else {
        // Lingering close, off the session's path: keep reading and
        // discarding so the client can read our last packets instead of
        // getting a reset for data it sent that we never read. Ends at the
        // client's FIN or after CLOSE_LINGER.
        let shard = shard.clone();
        glommio::spawn_local(async move {
            let _ = stream.tcp().set_read_timeout(Some(CLOSE_LINGER));
            let io = RefCell::new(stream);
            let started = Instant::now();
            loop {
                buf.clear();
                match fill(&shard.scratch, &io, &mut buf).await {
                    Ok(true) if started.elapsed() < CLOSE_LINGER => {}
                    _ => break,
                }
            }
            shutdown_fd(io.borrow().tcp());
        })
        .detach();
    }

    // ---- end of connection: the session goes offline, moves or ends ----
    // The slot keeps the closed connection reachable until its session has
    // its next place: deliveries meanwhile go into that session
    // (`Connection::handle_delivery` after the close), and a takeover
    // arriving meanwhile still finds it. Action tasks spawned for this
    // connection may hold the handle for a moment; they finish without
    // waiting on anything.
    let in_slot = |shard: &Shard| shard.sessions.holds_online(client_id.as_str(), &handle);
    while Rc::strong_count(&handle) > 1 + usize::from(in_slot(shard)) {
        glommio::timer::sleep(Duration::from_millis(1)).await;
    }
    // From here until the session is in its next place nothing awaits.
    if in_slot(shard) {
        shard.sessions.remove(client_id.as_str());
    }
    // A congested subscriber that leaves holds nobody back.
    shard.relieve(&handle);
    let handover = shard.sessions.take_handover(&handle);
    let Ok(handle) = Rc::try_unwrap(handle) else {
        unreachable!("the handle's other holders are gone and nothing awaited since");
    };
    let mut conn = handle.conn.into_inner();
    let drops = conn.drop_counts();
    let durable_epoch = conn.session().durable_epoch();
    let will = conn.take_will();
    let filters: Vec<ByteStr> = conn
        .session()
        .subscriptions()
        .map(|(f, _, _)| f.clone())
        .collect();
    // A session ending now hands its undelivered shared messages back to
    // their groups (MQTT 5.0 section 4.8.2), once it has left them.
    let undelivered_shared = conn.take_shared_undelivered();
    let session = conn.into_session();
    let clock = WallClock::now();
    if session.is_none() {
        shard.metrics.session_ended(drops);
    }
    // A session ending with its connection takes its subscriptions with it,
    // now: before a taker here could subscribe anew.
    let unrouted = session
        .is_none()
        .then(|| shard.unroute(&client_id, filters));
    match handover {
        Some(to) => {
            shard.hand_over(&client_id, to, session).await;
            // Taken over: `Connection::takeover` already applied the will
            // rules; what is left goes out now.
            if let Some((w, _)) = will {
                shard.publish(w).await;
            }
        }
        None => match session {
            Some(s) => {
                let offline = shard.with_lifecycle(|l| l.handle_offline(s, will, &clock));
                let will_due = match &offline.will {
                    WillPlan::At(w, due) => Some((&**w, clock.to_unix_ms(*due))),
                    _ => None,
                };
                let expires_at = offline.expires_at.map(|t| clock.to_unix_ms(t));
                shard.durable_offline(&offline.session, expires_at, will_due, &clock);
                shard.sessions.insert(
                    client_id.as_str(),
                    Slot::Offline(Box::new(Parked {
                        session: offline.session,
                        expires_at: offline.expires_at,
                    })),
                );
                match offline.will {
                    WillPlan::None => {}
                    WillPlan::PublishNow(w) => shard.publish(w).await,
                    WillPlan::At(w, due) => shard.schedule_will(&client_id, w, due),
                }
            }
            None => {
                shard.with_lifecycle(|l| l.handle_ended(&client_id, &clock));
                if let Some(epoch) = durable_epoch {
                    shard.durable_remove(client_id.as_str(), epoch);
                }
                // First: a connect of this shard claiming the id after this
                // point must not have its ownership released by this.
                shard.release(&client_id).await;
                if let Some((w, _)) = will {
                    shard.publish(w).await;
                }
            }
        },
    }
    shard.redispatch_shared(undelivered_shared).await;
    if let Some(changes) = unrouted {
        shard.announce_interest(changes).await;
    }
    tracing::debug!(
        shard = shard.id,
        client_id = %client_id,
        dropped_queue_full = drops.queue_full,
        dropped_expired = drops.expired,
        dropped_too_large = drops.too_large,
        "client disconnected"
    );
    closed(shard, &listener);
}

pub(super) async fn close<S: Stream>(io: &Rc<RefCell<S>>) {
    shutdown_fd(io.borrow().tcp());
}

/// shutdown(2) the write direction: the client reads EOF after our last bytes.
pub(super) fn half_close_fd(stream: &TcpStream) {
    use std::os::fd::AsRawFd;
    let fd = stream.as_raw_fd();
    // SAFETY: fd is owned by the stream, which outlives this call.
    unsafe {
        libc::shutdown(fd, libc::SHUT_WR);
    }
}

/// shutdown(2) both directions: a reader blocked on this socket wakes with EOF.
pub(super) fn shutdown_fd(stream: &TcpStream) {
    use std::os::fd::AsRawFd;
    let fd = stream.as_raw_fd();
    // SAFETY: fd is owned by the stream, which outlives this call.
    unsafe {
        libc::shutdown(fd, libc::SHUT_RDWR);
    }
}
