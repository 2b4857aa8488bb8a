//! What this client may publish and subscribe to: the built-in refusal of
//! `$share` and `$SYS` names, the authorization rules and the ACL file
//! (in that order; `session` module docs).

use crate::authn::Acl;
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
        let who = self.who();
        let guard = self.acl();
        match (&self.cfg.authz, guard.as_ref().and_then(|g| g.as_deref())) {
            (None, None) => true,
            (Some(authz), None) => authz.check_publish(&who, topic),
            (authz, Some(acl)) => authz
                .as_ref()
                .and_then(|authz| authz.publish_rule(&who, topic))
                .unwrap_or_else(|| acl.check_publish(who.client_id, who.username, topic)),
        }
    }

    /// Whether the authorization rules let this client subscribe to
    /// `filter`.
    pub(super) fn may_subscribe(&self, filter: &str) -> bool {
        let who = self.who();
        let guard = self.acl();
        match (&self.cfg.authz, guard.as_ref().and_then(|g| g.as_deref())) {
            (None, None) => true,
            (Some(authz), None) => authz.check_subscribe(&who, filter),
            (authz, Some(acl)) => authz
                .as_ref()
                .and_then(|authz| authz.subscribe_rule(&who, filter))
                .unwrap_or_else(|| acl.check_subscribe(who.client_id, who.username, filter)),
        }
    }

    /// The ACL file this client is held to: none for a superuser, or
    /// without `acl_file`.
    fn acl(&self) -> Option<arc_swap::Guard<Option<std::sync::Arc<Acl>>>> {
        let authn = self.cfg.authn.as_ref()?;
        if self.extras.as_ref().is_some_and(|e| e.superuser) || !authn.has_acl() {
            return None;
        }
        Some(authn.acl())
    }

    /// Marks this client a superuser (built-in database `is_superuser`): the
    /// ACL file does not apply to it. Set by the shard right after
    /// [`Connection::accept`], before any packet of the client is handled.
    pub fn set_superuser(&mut self) {
        if let Some(extras) = &mut self.extras {
            extras.superuser = true;
        }
    }

    /// The v5 reason code of an authorization refusal.
    pub(super) fn deny_reason_code(&self) -> ReasonCode {
        match self.cfg.authz_deny_reason {
            DenyReason::NotAuthorized => ReasonCode::NOT_AUTHORIZED,
            DenyReason::UnspecifiedError => ReasonCode::UNSPECIFIED_ERROR,
        }
    }
}
