//! What `Router` takes and gives: the interest changes shards exchange,
//! where a PUBLISH must go (`Route`), who receives it (`Recipient`), and
//! the outcomes of subscribe and unsubscribe. The shard and session code
//! uses these; they are re-exported from `routing` and `router`.

use smallvec::SmallVec;

use super::location::{Location, NodeId, ShardId};
use crate::codec::{ByteStr, QoS};

/// A shared subscription's identity: `$share/{group}/{filter}`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SharedKey {
    pub group: ByteStr,
    pub filter: ByteStr,
}

/// Sent to every other shard when this shard's local subscriber count for a
/// key changes in a way others need to know: for ordinary filters only on
/// 0 <-> non-zero, for shared groups on every change (picks are weighted by
/// members). Applying one is idempotent: it carries the new count, not a delta.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InterestChange {
    /// The filter, without any `$share/{group}/` prefix.
    pub filter: ByteStr,
    /// The shared group, `None` for an ordinary subscription.
    pub group: Option<ByteStr>,
    /// Local subscribers (ordinary: 0 means none, any other value some) or
    /// local group members now on the sending shard.
    pub members: u32,
}

/// Where a PUBLISH must go, computed by `Router::route` on the shard where it
/// arrived. Reuse one across publishes: `route` clears it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Route {
    /// Shards of this node with at least one matching ordinary subscriber,
    /// each once, in ascending order; may include the routing shard itself.
    pub shards: SmallVec<[ShardId; 4]>,
    /// Other nodes with at least one matching ordinary subscriber, each
    /// once: the message is forwarded once per node, and that node's own
    /// routing finds its shards (docs/adr/0001-cluster.md). Empty on a
    /// single node.
    pub nodes: Vec<NodeId>,
    /// One entry per matching shared group: where it is delivered to one of
    /// its members (that shard calls `Router::pick_shared`; another node
    /// picks among its own members).
    pub shared: Vec<(Location, SharedKey)>,
}

/// A local session a message is delivered to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recipient {
    pub client: ByteStr,
    /// Maximum QoS granted by the matching subscriptions (the delivery QoS is
    /// the minimum of this and the message's QoS).
    pub qos: QoS,
    pub retain_as_published: bool,
    /// Identifiers of the matching subscriptions that have one.
    pub subscription_ids: SubscriptionIds,
}

/// What `Router::pick_shared_member` gives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SharedPick {
    pub recipient: Recipient,
    /// The group, shared by every delivery picked from it.
    pub key: std::sync::Arc<SharedKey>,
    /// Members of the group on this shard (the pick included).
    pub members: usize,
}

/// Result of `Router::subscribe`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubscribeOutcome {
    /// The client already had this exact filter; it was replaced.
    pub existed: bool,
    /// To broadcast to every other shard.
    pub interest: Option<InterestChange>,
}

/// Result of `Router::unsubscribe`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnsubscribeOutcome {
    /// The client had this filter.
    pub existed: bool,
    /// To broadcast to every other shard.
    pub interest: Option<InterestChange>,
}

/// A [`Recipient`] borrowing its client id from the router, as the
/// callback of [`Router::route_each`] gets it: delivering looks the client up
/// without cloning its id (a reference count) per delivery.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecipientRef<'a> {
    pub client: &'a ByteStr,
    pub qos: QoS,
    pub retain_as_published: bool,
    pub subscription_ids: SubscriptionIds,
}

impl RecipientRef<'_> {
    pub fn to_owned(&self) -> Recipient {
        Recipient {
            client: self.client.clone(),
            qos: self.qos,
            retain_as_published: self.retain_as_published,
            subscription_ids: self.subscription_ids.clone(),
        }
    }
}

/// The subscription identifiers a delivery carries (MQTT 5.0 3.3.4: one
/// per matching subscription that has one). None or one in nearly every
/// delivery, kept inline; the rest, for a client whose several overlapping
/// subscriptions each have one, in a box. 16 bytes where a
/// `SmallVec<[u32; 1]>` took 24, and building, moving and dropping one is a
/// few instructions on every delivery (docs/performance.md, "Publish path
/// after issue 12's parts").
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SubscriptionIds {
    first: Option<std::num::NonZeroU32>,
    /// After `first`, in the order they were added. Boxed on purpose: one
    /// pointer in every delivery, the `Vec`'s three words only in the rare
    /// one that has several identifiers.
    #[allow(clippy::box_collection)]
    rest: Option<Box<Vec<u32>>>,
}

impl SubscriptionIds {
    /// No identifier, or `id`.
    pub fn one(id: Option<u32>) -> SubscriptionIds {
        let mut ids = SubscriptionIds::default();
        ids.extend(id);
        ids
    }

    pub fn is_empty(&self) -> bool {
        self.first.is_none() && self.rest.is_none()
    }

    pub fn push(&mut self, id: u32) {
        match (self.first, &mut self.rest, std::num::NonZeroU32::new(id)) {
            (None, None, Some(id)) => self.first = Some(id),
            (_, Some(rest), _) => rest.push(id),
            (_, rest @ None, _) => *rest = Some(Box::new(vec![id])),
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        self.first
            .map(std::num::NonZeroU32::get)
            .into_iter()
            .chain(self.rest.iter().flat_map(|rest| rest.iter().copied()))
    }

    pub fn to_vec(&self) -> Vec<u32> {
        self.iter().collect()
    }
}

impl Extend<u32> for SubscriptionIds {
    fn extend<I: IntoIterator<Item = u32>>(&mut self, ids: I) {
        for id in ids {
            self.push(id);
        }
    }
}

impl FromIterator<u32> for SubscriptionIds {
    fn from_iter<I: IntoIterator<Item = u32>>(ids: I) -> SubscriptionIds {
        let mut all = SubscriptionIds::default();
        all.extend(ids);
        all
    }
}
