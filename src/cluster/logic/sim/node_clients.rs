//! A simulated node's clients: connect, subscribe, publish and the rest,
//! as its shards would carry them out.

use super::{message_of, Ctx, Purpose, SimNode};
use crate::cluster::logic::forward::PushOutcome;
use crate::cluster::logic::proto::MessageId;
use crate::cluster::logic::records::OutForward;
use crate::cluster::logic::sim::world::{Acked, MsgInfo, SessionModel, SubRecord};
use crate::cluster::logic::sim::Sabotage;
use crate::router::location::{Location, NodeId, ShardId};
use crate::router::topic::matches;

impl SimNode {
    // ------------------------------------------------------------ clients

    pub fn connect(&mut self, client: &str, shard: ShardId, cx: &mut Ctx<'_>) {
        let home = self.homes.home_of(client);
        let at = Location::new(self.id, shard);
        self.takeovers.connect(client, at, home, cx.world.now_ms);
        self.pump(cx);
    }

    pub fn disconnect(&mut self, client: &str) {
        if let Some(s) = self.sessions.get_mut(client) {
            s.online = false;
        }
    }

    /// The client's session, if it is online here and settled.
    pub fn online(&self, client: &str) -> Option<&SessionModel> {
        self.sessions
            .get(client)
            .filter(|s| s.online && !s.moving_out && !s.importing)
    }

    pub fn subscribe(&mut self, client: &str, filter: &str, cx: &mut Ctx<'_>) {
        let Some(s) = self.sessions.get_mut(client) else {
            return;
        };
        cx.world.next_sub_id += 1;
        let sub_id = cx.world.next_sub_id;
        s.subs.insert(
            filter.into(),
            SubRecord {
                id: sub_id,
                acked: None,
            },
        );
        let shard = s.at.shard;
        if self.sabotage == Some(Sabotage::SubackWithoutAcks) {
            let mut view = self.view.clone();
            view.insert(self.id);
            cx.world.fresh_subacks.push((filter.into(), self.id));
            s.subs.get_mut(filter).expect("just added").acked = Some(Acked {
                at_ms: cx.world.now_ms,
                fault_gen: cx.world.fault_gen,
                out_of_sync: Vec::new(),
                view,
            });
        }
        let purpose = Purpose::Subscribe {
            client: client.into(),
            filter: filter.into(),
            sub_id,
            fault_gen: cx.world.fault_gen,
        };
        self.set_interest(shard, filter, purpose, cx);
        self.pump(cx);
    }

    pub fn unsubscribe(&mut self, client: &str, filter: &str, cx: &mut Ctx<'_>) {
        let Some(s) = self.sessions.get_mut(client) else {
            return;
        };
        if s.subs.remove(filter).is_some() {
            let shard = s.at.shard;
            self.set_interest(shard, filter, Purpose::Other, cx);
            self.pump(cx);
        }
    }

    /// Publishes from `client`'s session; returns the message id.
    pub fn publish(
        &mut self,
        client: &str,
        topic: &str,
        qos: u8,
        cx: &mut Ctx<'_>,
    ) -> Option<MessageId> {
        let s = self.sessions.get_mut(client)?;
        s.published += 1;
        let shard = s.at.shard;
        self.msg_seq[usize::from(shard)] += 1;
        let id = MessageId {
            node: self.id.0,
            shard,
            seq: self.msg_seq[usize::from(shard)],
        };
        let info = MsgInfo {
            publisher: (s.incarnation, self.id.0, shard),
            pub_seq: s.published,
            topic: topic.into(),
            qos,
            published_at_ms: cx.world.now_ms,
            node: self.id,
        };
        cx.world.messages.insert(id, info);
        self.deliver_local(id, cx);
        let targets: Vec<NodeId> = self
            .remote
            .iter()
            .filter(|(n, filters)| {
                self.view.contains(n) && filters.iter().any(|f| matches(f, topic))
            })
            .map(|(&n, _)| n)
            .collect();
        let token = (qos > 0).then(|| {
            self.next_token += 1;
            self.pub_tokens.insert(self.next_token, id);
            self.next_token
        });
        let mut queued = Vec::new();
        for n in targets {
            let forward = OutForward {
                id,
                stream_seq: 0,
                message: message_of(&cx.world.messages[&id]),
                expires_at_unix_ms: None,
                shared: None,
            };
            match self
                .fwd_out
                .entry(n)
                .or_default()
                .push(shard, forward, token)
            {
                PushOutcome::Queued { .. } => queued.push(n),
                PushOutcome::Dropped(_) => {
                    cx.world.dropped.insert(id);
                }
            }
        }
        if let Some(token) = token {
            self.pub_acks.begin(token, queued);
        }
        self.pump(cx);
        Some(id)
    }
}
