//! SUBSCRIBE and UNSUBSCRIBE: each filter checked (syntax, features, topic
//! levels, authorization, the subscription quota), the session's
//! subscriptions updated, the shard told through actions.

use crate::codec::{
    AckProperties, ByteStr, Packet, ReasonCode, SubAck, Subscribe, SubscriptionOptions, UnsubAck,
    Unsubscribe,
};
use crate::router::topic::{has_wildcard, is_valid_topic_filter, levels, parse_shared};
use crate::session::state::Subscription;
use crate::session::Action;

use super::{Connection, Tx};

impl Connection {
    pub(super) fn handle_subscribe(&mut self, s: Subscribe) {
        // Checked before anything is applied, so the packet is all or nothing.
        let no_local_shared = s
            .filters
            .iter()
            .any(|(f, o)| o.no_local && matches!(parse_shared(f), Ok(Some(_))));
        if no_local_shared {
            return self.protocol_error("No Local on a shared subscription"); // MQTT-3.8.3-4
        }
        let identifier = s.properties.subscription_identifier;
        let mut reason_codes = Vec::with_capacity(s.filters.len());
        for (filter, options) in s.filters {
            reason_codes.push(self.subscribe_one(filter, options, identifier));
        }
        let suback = SubAck {
            packet_id: s.packet_id,
            reason_codes,
            properties: AckProperties::default(),
        };
        self.tx
            .push_back(Tx::Control(Box::new(Packet::SubAck(suback))));
    }

    fn subscribe_one(
        &mut self,
        filter: ByteStr,
        options: SubscriptionOptions,
        identifier: Option<u32>,
    ) -> ReasonCode {
        let v5 = self.is_v5();
        let fail = |code: ReasonCode| if v5 { code } else { ReasonCode::SUBACK_FAILURE };
        // The filter that goes into the topic tree: for a shared
        // subscription the part after `$share/{group}/`.
        let tree_filter = match parse_shared(&filter) {
            Err(_) => return fail(ReasonCode::TOPIC_FILTER_INVALID),
            Ok(Some(_)) if !self.cfg.shared_subscription_available => {
                return fail(ReasonCode::SHARED_SUBSCRIPTIONS_NOT_SUPPORTED)
            }
            Ok(Some(shared)) => shared.filter,
            Ok(None) if !is_valid_topic_filter(&filter) => {
                return fail(ReasonCode::TOPIC_FILTER_INVALID)
            }
            Ok(None) => &filter,
        };
        // Refused here, so no router stores a deeper filter (the trie
        // asserts `limits::TOPIC_LEVELS_MAX`). As EMQX: 0x8F.
        if levels(tree_filter) > self.cfg.max_topic_levels {
            return fail(ReasonCode::TOPIC_FILTER_INVALID);
        }
        let wildcard = has_wildcard(tree_filter);
        if wildcard && !self.cfg.wildcard_subscription_available {
            return fail(ReasonCode::WILDCARD_SUBSCRIPTIONS_NOT_SUPPORTED);
        }
        if !self.may_subscribe(&filter) {
            return fail(self.deny_reason_code());
        }
        let subscriptions = &mut self.session.subscriptions;
        let existed = subscriptions.contains_key(&filter);
        let max = self.cfg.max_subscriptions;
        if !existed && max > 0 && subscriptions.len() >= max {
            return fail(ReasonCode::QUOTA_EXCEEDED);
        }
        subscriptions.insert(
            filter.clone(),
            Subscription {
                options,
                identifier,
            },
        );
        self.session.note_meta();
        self.actions.push_back(Action::Subscribe {
            filter,
            options,
            identifier,
            existed,
        });
        ReasonCode(options.qos as u8)
    }

    pub(super) fn handle_unsubscribe(&mut self, u: Unsubscribe) {
        let mut reason_codes = Vec::with_capacity(if self.is_v5() { u.filters.len() } else { 0 });
        for filter in u.filters {
            let code = if self.session.subscriptions.remove(&filter).is_some() {
                self.session.note_meta();
                self.actions.push_back(Action::Unsubscribe { filter });
                ReasonCode::SUCCESS
            } else if !is_valid_filter(&filter) {
                ReasonCode::TOPIC_FILTER_INVALID
            } else {
                ReasonCode::NO_SUBSCRIPTION_EXISTED
            };
            if self.is_v5() {
                reason_codes.push(code);
            }
        }
        let unsuback = UnsubAck {
            packet_id: u.packet_id,
            reason_codes,
            properties: AckProperties::default(),
        };
        self.tx
            .push_back(Tx::Control(Box::new(Packet::UnsubAck(unsuback))));
    }
}

fn is_valid_filter(filter: &str) -> bool {
    match parse_shared(filter) {
        Ok(Some(_)) => true,
        Ok(None) => is_valid_topic_filter(filter),
        Err(_) => false,
    }
}
