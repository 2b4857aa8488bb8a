//! `[authorization]`: topic authorization rules as the config file spells
//! them; `crate::authz` builds and checks the rule set.

use super::value;
use crate::authz::{DenyAction, DenyReason, Permission, Rule, RuleAction};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// `[authorization]`: topic authorization rules (ACL), EMQX-style; see
/// `docs/authorization.md` and [`crate::authz`]. The rules themselves are
/// checked when the whole config is validated (`Config::authz`), so errors
/// can name the rule by its index.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthorizationConfig {
    /// `no_match`: what a request no rule matches gets: `"allow"` or
    /// `"deny"`. Default `"allow"`.
    #[serde(deserialize_with = "de_permission", serialize_with = "ser_permission")]
    pub no_match: Permission,
    /// `deny_action`: what a denied PUBLISH causes: `"ignore"` (dropped; v5
    /// QoS 1/2 are acknowledged with 0x87) or `"disconnect"`. Default
    /// `"ignore"`.
    #[serde(
        deserialize_with = "de_deny_action",
        serialize_with = "ser_deny_action"
    )]
    pub deny_action: DenyAction,
    /// `deny_reason`: the MQTT 5 reason code of a refusal:
    /// `"not_authorized"` (0x87) or `"unspecified_error"` (0x80, reveals
    /// nothing; the Paho conformance run uses it). Default
    /// `"not_authorized"`.
    #[serde(
        deserialize_with = "de_deny_reason",
        serialize_with = "ser_deny_reason"
    )]
    pub deny_reason: DenyReason,
    /// `rules`: `[[authorization.rules]]` tables, tried in order, first match
    /// wins. Only settable in the file (an array of tables has no
    /// environment form). Default: none.
    #[serde(deserialize_with = "de_rules", skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<AuthorizationRuleConfig>,
}

impl Default for AuthorizationConfig {
    fn default() -> Self {
        AuthorizationConfig {
            no_match: Permission::Allow,
            deny_action: DenyAction::Ignore,
            deny_reason: DenyReason::NotAuthorized,
            rules: Vec::new(),
        }
    }
}

impl AuthorizationConfig {
    /// The rules in the form [`crate::authz::Authz::new`] takes.
    pub fn rules(&self) -> Vec<Rule> {
        self.rules
            .iter()
            .map(|rule| Rule {
                permission: rule.permission,
                action: rule.action,
                topics: rule.topics.clone(),
                client_id: rule.client_id.clone(),
                username: rule.username.clone(),
            })
            .collect()
    }
}

/// One `[[authorization.rules]]` table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthorizationRuleConfig {
    /// `permission`: `"allow"` or `"deny"`. Required.
    #[serde(deserialize_with = "de_permission", serialize_with = "ser_permission")]
    pub permission: Permission,
    /// `action`: `"publish"`, `"subscribe"` or `"all"`. Required.
    #[serde(
        deserialize_with = "de_rule_action",
        serialize_with = "ser_rule_action"
    )]
    pub action: RuleAction,
    /// `topics`: topic filters (with `${clientid}` / `${username}`), or
    /// `"eq <text>"` for that exact text. Required, 1 to
    /// `authz::TOPICS_PER_RULE_MAX`.
    #[serde(deserialize_with = "de_topics")]
    pub topics: Vec<String>,
    /// `client_id`: the rule applies only to this exact client id.
    #[serde(
        default,
        deserialize_with = "de_rule_name",
        skip_serializing_if = "Option::is_none"
    )]
    pub client_id: Option<String>,
    /// `username`: the rule applies only to this exact user name.
    #[serde(
        default,
        deserialize_with = "de_rule_name",
        skip_serializing_if = "Option::is_none"
    )]
    pub username: Option<String>,
}

fn de_permission<'de, D: Deserializer<'de>>(d: D) -> Result<Permission, D::Error> {
    value::one_of(
        d,
        &Permission::ALL.map(Permission::as_str),
        Permission::parse,
    )
}

fn ser_permission<S: Serializer>(p: &Permission, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(p.as_str())
}

fn de_rule_action<'de, D: Deserializer<'de>>(d: D) -> Result<RuleAction, D::Error> {
    value::one_of(
        d,
        &RuleAction::ALL.map(RuleAction::as_str),
        RuleAction::parse,
    )
}

fn ser_rule_action<S: Serializer>(a: &RuleAction, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(a.as_str())
}

fn de_deny_action<'de, D: Deserializer<'de>>(d: D) -> Result<DenyAction, D::Error> {
    value::one_of(
        d,
        &DenyAction::ALL.map(DenyAction::as_str),
        DenyAction::parse,
    )
}

fn ser_deny_action<S: Serializer>(a: &DenyAction, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(a.as_str())
}

fn de_deny_reason<'de, D: Deserializer<'de>>(d: D) -> Result<DenyReason, D::Error> {
    value::one_of(
        d,
        &DenyReason::ALL.map(DenyReason::as_str),
        DenyReason::parse,
    )
}

fn ser_deny_reason<S: Serializer>(r: &DenyReason, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(r.as_str())
}

fn de_rule_name<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    value::string_matching(d, "a non-empty string", |s| !s.is_empty()).map(Some)
}

fn de_topics<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    value::string_array(
        d,
        "an array of topic filter strings, e.g. [\"secret/#\", \"devices/${clientid}/#\"]",
    )
}

fn de_rules<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<AuthorizationRuleConfig>, D::Error> {
    value::table_array(
        d,
        "an array of [[authorization.rules]] tables (file only: rules have no environment form)",
    )
}
