//! The loop's membership half: foca's configuration, carrying out what
//! foca asks for (datagrams over the links, timers), and turning its
//! notifications into member events and the shared member list.

use std::num::{NonZeroU8, NonZeroUsize};

use foca::OwnedNotification;
use tracing::{debug, info, warn};

use super::{Inner, Node};
use crate::cluster::net::link::CLOSE_NORMAL;
use crate::cluster::net::member::{Member, MemberInfo, MemberState};
use crate::cluster::net::settings::{Discovery, NetSettings};
use crate::cluster::net::NetEvent;
use crate::limits;
use quinn::VarInt;

pub(super) fn swim_config(settings: &NetSettings) -> foca::Config {
    let mut config = foca::Config::simple();
    config.probe_period = settings.timing.probe_period;
    config.probe_rtt = settings.timing.probe_rtt;
    config.suspect_to_down_after = settings.timing.suspect_to_down;
    config.num_indirect_probes = NonZeroUsize::new(3).expect("non-zero");
    config.max_transmissions = NonZeroU8::new(10).expect("non-zero");
    config.max_packet_size =
        NonZeroUsize::new(limits::CLUSTER_SWIM_PACKET_MAX_BYTES).expect("non-zero");
    // A node declared down that still talks is told so (TurnUndead): it
    // renews its identity and rejoins (a false suspicion, a force-leave).
    config.notify_down_members = true;
    // A healed partition merges: members declared down are announced to
    // now and then, and gossip spreads updates beside the probes.
    config.periodic_announce_to_down_members = Some(foca::PeriodicParams {
        frequency: settings.timing.probe_period * 5,
        num_members: NonZeroUsize::new(2).expect("non-zero"),
    });
    config.periodic_gossip = Some(foca::PeriodicParams {
        frequency: settings.timing.probe_period / 5,
        num_members: NonZeroUsize::new(3).expect("non-zero"),
    });
    config
}

impl Node {
    /// Carries out what foca asked for: datagrams, timers, notifications.
    pub(super) fn drain_swim(&mut self) {
        while let Some((to, data)) = self.swim_io.to_send() {
            match self.links.get(&to.node_id()) {
                Some(link) => {
                    if let Err(e) = link.conn.send_datagram(data) {
                        debug!("cluster: SWIM datagram to {}: {e}", to.name);
                    }
                }
                None if !self.left => {
                    // No link yet (or any more): dial, and let SWIM count
                    // this probe as unanswered if the peer is gone.
                    self.dial(to.quic_addr);
                }
                None => {}
            }
        }
        while let Some((after, timer)) = self.swim_io.to_schedule() {
            let inbox = self.inbox.clone();
            tokio::spawn(async move {
                tokio::time::sleep(after).await;
                let _ = inbox.send(Inner::Timer(timer)).await;
            });
        }
        let mut changed = false;
        while let Some(note) = self.swim_io.to_notify() {
            changed = true;
            self.on_notification(note);
        }
        if changed {
            self.publish_members();
        }
    }

    pub(super) fn on_notification(&mut self, note: OwnedNotification<Member>) {
        match note {
            OwnedNotification::MemberUp(m) => self.member_up(m),
            // Only what was announced up is announced down.
            OwnedNotification::MemberDown(m) if self.up.get(&m.node_id()) == Some(&m) => {
                self.member_down(&m);
            }
            // A new incarnation (restart) of a member announced up: down
            // then up, so the consumer forgets what the old one had.
            OwnedNotification::Rename(old, new) if self.up.get(&old.node_id()) == Some(&old) => {
                self.member_down(&old);
                if self.swim.iter_members().any(|m| *m.id() == new) {
                    self.member_up(new);
                }
            }
            OwnedNotification::Rejoin(me) => {
                info!(
                    "cluster: this node was declared down while alive; rejoined as renewal {}",
                    me.renewal
                );
                self.me = me;
            }
            OwnedNotification::Defunct => warn!("cluster: this node was declared down"),
            OwnedNotification::Idle => info!("cluster: no other member is up"),
            OwnedNotification::Active => info!("cluster: joined"),
            #[allow(unreachable_patterns)]
            _ => {}
        }
    }

    pub(super) fn member_up(&mut self, m: Member) {
        if self.up.get(&m.node_id()) == Some(&m) {
            return;
        }
        if let Some(old) = self.up.get(&m.node_id()).cloned() {
            self.member_down(&old);
        }
        info!(
            "cluster: {} ({}) is up, epoch {}",
            m.name,
            m.node_id(),
            m.boot_epoch_ms
        );
        if matches!(self.settings.discovery, Discovery::Manual) && !self.left {
            self.remember(m.quic_addr);
        }
        // The list first: a consumer reading the event sees it listed.
        self.publish_members();
        self.emit(NetEvent::MemberUp {
            node: m.node_id(),
            name: m.name.clone(),
            role: m.role,
            mqtt_addr: m.mqtt_addr,
            epoch: m.boot_epoch_ms,
        });
        self.up.insert(m.node_id(), m);
    }

    pub(super) fn member_down(&mut self, m: &Member) {
        self.up.remove(&m.node_id());
        warn!("cluster: {} ({}) is down", m.name, m.node_id());
        self.publish_members();
        self.emit(NetEvent::MemberDown { node: m.node_id() });
        // A link with a node declared down is of no use; if the node is
        // in fact alive it renews its identity and the link is redialed.
        if let Some(link) = self.links.remove(&m.node_id()) {
            link.conn
                .close(VarInt::from_u32(CLOSE_NORMAL), b"declared down");
        }
    }

    pub(super) fn publish_members(&self) {
        let mut list = vec![MemberInfo {
            node: self.me.node_id(),
            name: self.me.name.clone(),
            role: self.me.role,
            state: if self.left {
                MemberState::Stopped
            } else {
                MemberState::Running
            },
            mqtt_addr: self.me.mqtt_addr,
            boot_epoch_ms: self.me.boot_epoch_ms,
        }];
        // After `leave` this node no longer follows the cluster: it lists
        // itself alone (stopped) rather than a stale view of the others.
        let others = self.swim.iter_membership_state().filter(|_| !self.left);
        for m in others {
            let id = m.id();
            list.push(MemberInfo {
                node: id.node_id(),
                name: id.name.clone(),
                role: id.role,
                state: if m.state() != foca::State::Down {
                    MemberState::Running
                } else {
                    MemberState::Stopped
                },
                mqtt_addr: id.mqtt_addr,
                boot_epoch_ms: id.boot_epoch_ms,
            });
        }
        list.sort_by(|a, b| a.name.cmp(&b.name));
        *self
            .shared
            .members
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = list;
    }
}
