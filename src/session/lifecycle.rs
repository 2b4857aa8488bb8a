//! [`Lifecycle`]: the transitions of the sessions of one shard, and the
//! events a store can follow, sans-IO.
//!
//! ```text
//!              connect (no session, or Clean Start)
//!   (none) ─────────────────────────────────────────▶ online ──┐
//!      ▲   Created                                      ▲  │   │ taken over by
//!      │                                   connect      │  │   │ another shard
//!      │                              (resume) Resumed  │  │   ▼ (TakenOver: the
//!      │                                                │  │   snapshot moves)
//!      │ expiry passed (Expired)                        │  │
//!      ├───────────────────────── offline ◀─────────────┘──┘ connection closed,
//!      │                                                    expiry > 0 (Offline)
//!      └──── connection closed with expiry 0, or a Clean Start connect
//!            discarded the session (Ended)
//! ```
//!
//! The shard does the I/O of each transition (router, registry, channels,
//! wills); this type decides what the transition is, computes its
//! deadlines from `now`, and records it as a [`SessionEvent`]. Call order:
//! a `handle_*` per transition, then [`Lifecycle::poll_event`] until
//! `None`. Events carry wall-clock times (Unix ms, see [`WallClock`]) so a
//! store or another node can read them; with
//! [`Lifecycle::with_offline_snapshots`], `Offline` carries the whole
//! session as a [`SessionSnapshot`] (what a durable store writes).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::snapshot::{SessionSnapshot, WallClock};
use super::{Message, Session};
use crate::codec::ByteStr;
use crate::limits::SESSION_EVENTS_MAX;

/// Where a session lives: a shard of this node (a node id joins it with the
/// cluster).
pub type Location = u16;

/// Why a session ended without expiring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    /// Its connection closed and its Session Expiry Interval was 0.
    ExpiryZero,
    /// A connect with Clean Start discarded it.
    CleanStart,
}

/// One transition, as a store follows it.
#[derive(Debug, Clone, PartialEq)]
pub enum SessionEvent {
    /// A connect started a new session.
    Created {
        client_id: ByteStr,
        expiry_interval_s: u32,
        at_unix_ms: u64,
    },
    /// A connect resumed the existing session.
    Resumed {
        client_id: ByteStr,
        expiry_interval_s: u32,
        at_unix_ms: u64,
    },
    /// The session left this shard for `to` (takeover by a connect there).
    TakenOver {
        client_id: ByteStr,
        to: Location,
        at_unix_ms: u64,
    },
    /// The client left; the session stays until `expires_at_unix_ms`
    /// (`None`: never) and its will is due at `will_due_unix_ms`.
    Offline {
        client_id: ByteStr,
        at_unix_ms: u64,
        expires_at_unix_ms: Option<u64>,
        will_due_unix_ms: Option<u64>,
        /// With [`Lifecycle::with_offline_snapshots`] only.
        snapshot: Option<Box<SessionSnapshot>>,
    },
    /// The session's expiry passed while its client was away.
    Expired { client_id: ByteStr, at_unix_ms: u64 },
    /// The session ended without expiring.
    Ended {
        client_id: ByteStr,
        reason: EndReason,
        at_unix_ms: u64,
    },
}

impl SessionEvent {
    pub fn client_id(&self) -> &ByteStr {
        match self {
            SessionEvent::Created { client_id, .. }
            | SessionEvent::Resumed { client_id, .. }
            | SessionEvent::TakenOver { client_id, .. }
            | SessionEvent::Offline { client_id, .. }
            | SessionEvent::Expired { client_id, .. }
            | SessionEvent::Ended { client_id, .. } => client_id,
        }
    }

    /// The event's name, for logs and counters.
    pub fn kind(&self) -> &'static str {
        match self {
            SessionEvent::Created { .. } => "created",
            SessionEvent::Resumed { .. } => "resumed",
            SessionEvent::TakenOver { .. } => "taken_over",
            SessionEvent::Offline { .. } => "offline",
            SessionEvent::Expired { .. } => "expired",
            SessionEvent::Ended { .. } => "ended",
        }
    }
}

/// What a connect does with the session it acquired.
#[derive(Debug)]
pub struct Connect {
    /// Resumed: goes into `Connection::accept`.
    pub resume: Option<Session>,
    /// Discarded by Clean Start: the shard removes its subscriptions.
    pub discard: Option<Session>,
}

/// What becomes of the will when a client goes offline.
#[derive(Debug)]
pub enum WillPlan {
    None,
    PublishNow(Arc<Message>),
    /// Publish at this instant unless the client returns first.
    At(Arc<Message>, Instant),
}

/// A session that went offline: park it with its expiry, and do `will`.
#[derive(Debug)]
pub struct Offline {
    pub session: Session,
    pub expires_at: Option<Instant>,
    pub will: WillPlan,
}

/// The session transitions of one shard (module doc).
#[derive(Debug, Default)]
pub struct Lifecycle {
    events: VecDeque<SessionEvent>,
    /// Events dropped because nobody polled (see `SESSION_EVENTS_MAX`).
    events_dropped: u64,
    /// Put a snapshot in every `Offline` event (a store follows).
    offline_snapshots: bool,
}

impl Lifecycle {
    pub fn new() -> Lifecycle {
        Lifecycle::default()
    }

    /// A lifecycle whose `Offline` events carry the session's snapshot.
    pub fn with_offline_snapshots() -> Lifecycle {
        Lifecycle {
            offline_snapshots: true,
            ..Lifecycle::default()
        }
    }

    /// A connect acquired `existing` (taken over from wherever it was):
    /// Clean Start discards it (`Ended`), otherwise it is resumed.
    pub fn handle_connect(
        &mut self,
        client_id: &ByteStr,
        existing: Option<Session>,
        clean_start: bool,
        now: &WallClock,
    ) -> Connect {
        match existing {
            Some(s) if clean_start => {
                self.emit(SessionEvent::Ended {
                    client_id: client_id.clone(),
                    reason: EndReason::CleanStart,
                    at_unix_ms: now.unix_ms,
                });
                Connect {
                    resume: None,
                    discard: Some(s),
                }
            }
            resume => Connect {
                resume,
                discard: None,
            },
        }
    }

    /// The connection was accepted with `session` (`resumed`: the session
    /// it got from `handle_connect`).
    pub fn handle_online(&mut self, session: &Session, resumed: bool, now: &WallClock) {
        let client_id = event_id(session);
        let expiry_interval_s = session.expiry_interval_s();
        let at_unix_ms = now.unix_ms;
        self.emit(if resumed {
            SessionEvent::Resumed {
                client_id,
                expiry_interval_s,
                at_unix_ms,
            }
        } else {
            SessionEvent::Created {
                client_id,
                expiry_interval_s,
                at_unix_ms,
            }
        });
    }

    /// The connection closed and its session outlives it: when it expires
    /// and what happens to the will (`Connection::take_will`'s message and
    /// delay).
    pub fn handle_offline(
        &mut self,
        session: Session,
        will: Option<(Arc<Message>, Duration)>,
        now: &WallClock,
    ) -> Offline {
        let expires_at = expiry_deadline(now.instant, session.expiry_interval_s());
        let will = match will {
            None => WillPlan::None,
            Some((w, delay)) if delay.is_zero() => WillPlan::PublishNow(w),
            Some((w, delay)) => WillPlan::At(w, now.instant + delay),
        };
        let pending = match &will {
            WillPlan::At(w, due) => Some((&**w, *due)),
            _ => None,
        };
        let snapshot = self
            .offline_snapshots
            .then(|| Box::new(SessionSnapshot::of(&session, expires_at, pending, now)));
        self.emit(SessionEvent::Offline {
            client_id: event_id(&session),
            at_unix_ms: now.unix_ms,
            expires_at_unix_ms: expires_at.map(|t| now.to_unix_ms(t)),
            will_due_unix_ms: pending.map(|(_, due)| now.to_unix_ms(due)),
            snapshot,
        });
        Offline {
            session,
            expires_at,
            will,
        }
    }

    /// The session ended with its connection (Session Expiry Interval 0).
    pub fn handle_ended(&mut self, client_id: &ByteStr, now: &WallClock) {
        self.emit(SessionEvent::Ended {
            client_id: client_id.clone(),
            reason: EndReason::ExpiryZero,
            at_unix_ms: now.unix_ms,
        });
    }

    /// An offline session's expiry passed.
    pub fn handle_expired(&mut self, session: &Session, now: &WallClock) {
        self.emit(SessionEvent::Expired {
            client_id: session.client_id().clone(),
            at_unix_ms: now.unix_ms,
        });
    }

    /// The session goes to `to` (takeover): its snapshot is what moves. Any
    /// will was settled by the takeover rules before (`Connection::takeover`,
    /// the shard's cancelled delayed will), so none travels.
    pub fn handle_export(
        &mut self,
        session: Session,
        to: Location,
        now: &WallClock,
    ) -> Box<SessionSnapshot> {
        self.emit(SessionEvent::TakenOver {
            client_id: session.client_id().clone(),
            to,
            at_unix_ms: now.unix_ms,
        });
        Box::new(SessionSnapshot::of(&session, None, None, now))
    }

    /// A session moved here from another shard of this node: rebuilt from
    /// its snapshot. The connect that asked for it resumes or discards it
    /// next (`handle_connect`).
    pub fn handle_import(&mut self, snapshot: SessionSnapshot, now: &WallClock) -> Session {
        let (session, _, _) = snapshot
            .into_session(now)
            .expect("a snapshot made by this process is valid");
        session
    }

    /// The next event, oldest first.
    pub fn poll_event(&mut self) -> Option<SessionEvent> {
        self.events.pop_front()
    }

    /// Events lost because they were not polled in time.
    pub fn events_dropped(&self) -> u64 {
        self.events_dropped
    }

    fn emit(&mut self, event: SessionEvent) {
        if self.events.len() >= SESSION_EVENTS_MAX {
            self.events.pop_front();
            self.events_dropped += 1;
        }
        self.events.push_back(event);
    }
}

/// The client id an event carries about a session that stays: a copy,
/// not a clone. The session's id is a `Bytes` made from a `Vec`; its first
/// clone allocates a 24-byte shared header that stays with the session for
/// as long as it lives, i.e. in every idle connection and parked session
/// (docs/performance.md, "Idle connections after issue 12").
fn event_id(session: &Session) -> ByteStr {
    ByteStr::from(session.client_id().as_str())
}

/// When a session with this Session Expiry Interval ends if its client
/// stays away from `now`; `None` for `u32::MAX` (never, MQTT 5.0 section
/// 3.1.2.11.2).
pub fn expiry_deadline(now: Instant, expiry_interval_s: u32) -> Option<Instant> {
    match expiry_interval_s {
        u32::MAX => None,
        s => Some(now + Duration::from_secs(u64::from(s))),
    }
}
