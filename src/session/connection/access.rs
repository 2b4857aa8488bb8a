//! What this client may publish and subscribe to: the built-in refusal of
//! `$share` and `$SYS` names and the authorization rules.

use crate::authz::{DenyReason, Who};
use crate::codec::ReasonCode;
use crate::router::topic::{is_share_topic, is_sys_topic};

use super::Connection;

impl Connection {
    fn who(&self) -> Who<'_> {
        Who {
            client_id: &self.session.client_id,
            username: self.extras.as_ref().and_then(|e| e.username.as_deref()),
        }
    }

    /// Whether this client may publish to `topic` (a PUBLISH or the will):
    /// not to `$share` names, which no subscription can match, nor to the
    /// server's `$SYS` tree unless `allow_publish_sys` (MQTT 5.0 section
    /// 4.7.2: a server SHOULD prevent clients from using such names), and
    /// only where the authorization rules allow it. A refusal here is
    /// handled as an authorization denial (`refuse_publish`, `take_will`).
    pub(super) fn may_publish(&self, topic: &str) -> bool {
        if is_share_topic(topic) || (!self.cfg.allow_publish_sys && is_sys_topic(topic)) {
            return false;
        }
        self.cfg
            .authz
            .as_ref()
            .is_none_or(|authz| authz.check_publish(&self.who(), topic))
    }

    /// Whether the authorization rules let this client subscribe to
    /// `filter`.
    pub(super) fn may_subscribe(&self, filter: &str) -> bool {
        self.cfg
            .authz
            .as_ref()
            .is_none_or(|authz| authz.check_subscribe(&self.who(), filter))
    }

    /// The v5 reason code of an authorization refusal.
    pub(super) fn deny_reason_code(&self) -> ReasonCode {
        match self.cfg.authz_deny_reason {
            DenyReason::NotAuthorized => ReasonCode::NOT_AUTHORIZED,
            DenyReason::UnspecifiedError => ReasonCode::UNSPECIFIED_ERROR,
        }
    }
}
