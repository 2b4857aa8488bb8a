//! The topic aliases of a connection (MQTT 5.0 section 3.3.2.3.4), both
//! directions in one value so a connection whose client uses none keeps
//! one pointer (a `Lazy<Aliases>`).

use std::collections::BTreeMap;

use crate::codec::ByteStr;
use crate::session::lazy::Empty;

#[derive(Debug, Default)]
pub(super) struct Aliases {
    /// Topic -> alias already sent on this connection.
    outbound: BTreeMap<ByteStr, u16>,
    /// Alias -> topic set by the client on this connection.
    inbound: BTreeMap<u16, ByteStr>,
}

impl Empty for Aliases {
    const EMPTY: &'static Self = &Aliases {
        outbound: BTreeMap::new(),
        inbound: BTreeMap::new(),
    };
    fn has_none(&self) -> bool {
        self.outbound.is_empty() && self.inbound.is_empty()
    }
}

/// The alias a PUBLISH to the client goes with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum OutboundAlias {
    /// Already sent for this topic: the PUBLISH carries the alias and an
    /// empty topic.
    Known(u16),
    /// Not sent yet and one is free: the PUBLISH carries the topic and this
    /// alias, which counts once the packet is written
    /// ([`Aliases::commit_outbound`]).
    New(u16),
}

impl Aliases {
    /// The topic the client set for `alias` on this connection.
    #[inline]
    pub(super) fn inbound(&self, alias: u16) -> Option<&ByteStr> {
        self.inbound.get(&alias)
    }

    /// The client set (or replaced) `alias`. Bounded by the caller: the
    /// alias is at most `cfg.max_topic_alias`.
    pub(super) fn set_inbound(&mut self, alias: u16, topic: ByteStr) {
        self.inbound.insert(alias, topic);
    }

    /// The alias for a PUBLISH to `topic`, when the client allows
    /// `max` (> 0) aliases: the one already sent, else the next unused one
    /// in first-send order; `None` once all are used (no replacement, see
    /// the session module's decisions).
    #[inline]
    pub(super) fn outbound(&self, topic: &ByteStr, max: u16) -> Option<OutboundAlias> {
        if let Some(&a) = self.outbound.get(topic) {
            return Some(OutboundAlias::Known(a));
        }
        let used = self.outbound.len();
        (used < usize::from(max)).then(|| OutboundAlias::New(used as u16 + 1))
    }

    /// A PUBLISH that set `alias` for `topic` was written.
    pub(super) fn commit_outbound(&mut self, topic: ByteStr, alias: u16) {
        self.outbound.insert(topic, alias);
    }
}
