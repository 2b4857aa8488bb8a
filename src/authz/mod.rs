//! Topic authorization (ACL): which client may publish to which topic and
//! subscribe to which filter, decided by an ordered list of rules, the EMQX
//! way. Pure: no I/O, no clock; built once from `[authorization]` and shared
//! by every shard behind an `Arc` (it is immutable, so `Send + Sync`).
//!
//! # Model
//!
//! - Rules are tried in order; the **first** rule that matches decides
//!   (allow or deny). When none matches, `no_match` decides.
//! - A rule matches a request when its action covers the request (`publish`,
//!   `subscribe` or `all`), its who-matchers (`client_id`, `username`; exact,
//!   all given ones must match) match the client, and one of its topics
//!   matches the topic (publish) or filter (subscribe).
//! - A rule topic is a topic filter. For PUBLISH it matches the topic name as
//!   a subscription would ([`crate::router::topic::matches`]). For SUBSCRIBE
//!   it matches a filter the rule filter *covers*: every topic the
//!   subscription could receive also matches the rule ([`covers`]). So a
//!   deny on `secret/#` refuses `secret/a`, `secret/+` and `secret/#`, but
//!   not `#` or `+/a`, which are wider than the rule (they would be refused
//!   by an `eq #` rule, or by an allow list with `no_match = deny`).
//! - `eq <text>` matches only that exact text: `eq a/+` refuses subscribing
//!   to the filter `a/+` but not to `a/b` (EMQX's `eq`). Placeholders are not
//!   substituted inside `eq`.
//! - `${clientid}` and `${username}` in a rule topic are replaced by the
//!   client's values before matching. A value that is missing (no user name),
//!   empty, or contains `+`, `#` or `/` makes that topic match nothing: a
//!   client id `+` must not turn `devices/${clientid}/#` into a wildcard.
//! - A shared subscription `$share/{group}/{filter}` is checked on `{filter}`;
//!   rule topics therefore may not start with `$share/`.

#[cfg(test)]
mod tests;

use std::fmt;

use crate::router::topic::{is_valid_topic_filter, matches, parse_shared, SHARE_PREFIX};

pub use crate::limits::{
    AUTHZ_RULES_MAX as RULES_MAX, AUTHZ_TOPICS_PER_RULE_MAX as TOPICS_PER_RULE_MAX,
};

/// The prefix of a topic that matches only its exact text.
const EQ_PREFIX: &str = "eq ";
const PLACEHOLDER_CLIENT_ID: &str = "${clientid}";
const PLACEHOLDER_USERNAME: &str = "${username}";

/// What a matching rule (or `no_match`) decides.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Permission {
    Allow,
    Deny,
}

impl Permission {
    pub const ALL: [Permission; 2] = [Permission::Allow, Permission::Deny];

    /// The spelling in the config file.
    pub fn as_str(self) -> &'static str {
        match self {
            Permission::Allow => "allow",
            Permission::Deny => "deny",
        }
    }

    /// Case-insensitive, surrounding spaces ignored.
    pub fn parse(text: &str) -> Option<Permission> {
        Self::ALL
            .into_iter()
            .find(|p| p.as_str().eq_ignore_ascii_case(text.trim()))
    }
}

/// Which requests a rule is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RuleAction {
    Publish,
    Subscribe,
    /// Both.
    All,
}

impl RuleAction {
    pub const ALL: [RuleAction; 3] = [RuleAction::Publish, RuleAction::Subscribe, RuleAction::All];

    /// The spelling in the config file.
    pub fn as_str(self) -> &'static str {
        match self {
            RuleAction::Publish => "publish",
            RuleAction::Subscribe => "subscribe",
            RuleAction::All => "all",
        }
    }

    /// Case-insensitive, surrounding spaces ignored.
    pub fn parse(text: &str) -> Option<RuleAction> {
        Self::ALL
            .into_iter()
            .find(|a| a.as_str().eq_ignore_ascii_case(text.trim()))
    }

    fn covers(self, request: Request) -> bool {
        matches!(
            (self, request),
            (RuleAction::All, _)
                | (RuleAction::Publish, Request::Publish)
                | (RuleAction::Subscribe, Request::Subscribe)
        )
    }
}

/// What happens to a PUBLISH the rules deny (EMQX's `deny_action`). The
/// session carries it out; the rules only decide.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DenyAction {
    /// Drop the message; v5 QoS 1/2 get PUBACK/PUBREC 0x87, the connection
    /// stays.
    #[default]
    Ignore,
    /// Close the connection (v5: DISCONNECT 0x87).
    Disconnect,
}

impl DenyAction {
    pub const ALL: [DenyAction; 2] = [DenyAction::Ignore, DenyAction::Disconnect];

    /// The spelling in the config file.
    pub fn as_str(self) -> &'static str {
        match self {
            DenyAction::Ignore => "ignore",
            DenyAction::Disconnect => "disconnect",
        }
    }

    /// Case-insensitive, surrounding spaces ignored.
    pub fn parse(text: &str) -> Option<DenyAction> {
        Self::ALL
            .into_iter()
            .find(|a| a.as_str().eq_ignore_ascii_case(text.trim()))
    }
}

/// The MQTT 5 reason code a refusal carries (SUBACK, PUBACK, PUBREC,
/// DISCONNECT). MQTT 3.1.1 has only SUBACK 0x80, whatever this says.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DenyReason {
    /// 0x87 Not authorized (EMQX's choice).
    #[default]
    NotAuthorized,
    /// 0x80 Unspecified error: the spec's code for a server that "does not
    /// wish to reveal the reason" (and the only SUBACK failure code some
    /// clients accept, e.g. the Paho test client).
    UnspecifiedError,
}

impl DenyReason {
    pub const ALL: [DenyReason; 2] = [DenyReason::NotAuthorized, DenyReason::UnspecifiedError];

    /// The spelling in the config file.
    pub fn as_str(self) -> &'static str {
        match self {
            DenyReason::NotAuthorized => "not_authorized",
            DenyReason::UnspecifiedError => "unspecified_error",
        }
    }

    /// Case-insensitive, surrounding spaces ignored.
    pub fn parse(text: &str) -> Option<DenyReason> {
        Self::ALL
            .into_iter()
            .find(|r| r.as_str().eq_ignore_ascii_case(text.trim()))
    }
}

/// One rule as configured (`[[authorization.rules]]`), before validation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    pub permission: Permission,
    pub action: RuleAction,
    /// Topic filters, `eq <text>` literals, with optional placeholders.
    pub topics: Vec<String>,
    /// When set, the rule applies only to this exact client id.
    pub client_id: Option<String>,
    /// When set, the rule applies only to clients with this exact user name.
    pub username: Option<String>,
}

/// The client a request comes from.
#[derive(Clone, Copy, Debug)]
pub struct Who<'a> {
    /// The final client id (an assigned one for an empty CONNECT id).
    pub client_id: &'a str,
    /// From CONNECT; `None` when the client sent none.
    pub username: Option<&'a str>,
}

/// Why a rule set was refused. Every variant names the rule (0-based index)
/// and the field, so the config layer can name the key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AuthzError {
    /// More than [`RULES_MAX`] rules.
    TooManyRules { count: usize },
    /// A field of one rule is invalid.
    InvalidRule {
        /// 0-based position in the rule list.
        index: usize,
        /// The field, e.g. `"topics"` or `"topics[2]"`.
        field: String,
        /// The value as given, quoted.
        value: String,
        /// What would have been accepted.
        allowed: String,
    },
}

impl fmt::Display for AuthzError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AuthzError::TooManyRules { count } => {
                write!(f, "{count} rules; allowed: at most {RULES_MAX}")
            }
            AuthzError::InvalidRule {
                index,
                field,
                value,
                allowed,
            } => write!(f, "rules[{index}].{field}: {value}; allowed: {allowed}"),
        }
    }
}

impl std::error::Error for AuthzError {}

/// The request being checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Request {
    Publish,
    Subscribe,
}

/// A validated rule topic.
#[derive(Clone, Debug)]
enum TopicRule {
    /// `eq <text>`: only this exact topic or filter.
    Eq(Box<str>),
    /// A topic filter without placeholders.
    Filter(Box<str>),
    /// A topic filter with `${clientid}` and/or `${username}`, rendered for
    /// each check.
    Template(Box<str>),
}

#[derive(Clone, Debug)]
struct CompiledRule {
    permission: Permission,
    action: RuleAction,
    client_id: Option<Box<str>>,
    username: Option<Box<str>>,
    topics: Vec<TopicRule>,
}

/// A validated rule set: answers "may this client publish to / subscribe to
/// this?".
#[derive(Clone, Debug)]
pub struct Authz {
    rules: Vec<CompiledRule>,
    no_match: Permission,
}

impl Authz {
    /// Validates `rules` (topics must be valid filters, placeholders known,
    /// at most [`RULES_MAX`] rules of at most [`TOPICS_PER_RULE_MAX`]
    /// topics) and builds the rule set.
    pub fn new(rules: &[Rule], no_match: Permission) -> Result<Authz, AuthzError> {
        if rules.len() > RULES_MAX {
            return Err(AuthzError::TooManyRules { count: rules.len() });
        }
        let rules = rules
            .iter()
            .enumerate()
            .map(|(index, rule)| compile(index, rule))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Authz { rules, no_match })
    }

    /// Allows everything (no rules, `no_match = allow`).
    pub fn allow_all() -> Authz {
        Authz {
            rules: Vec::new(),
            no_match: Permission::Allow,
        }
    }

    /// Whether every request is allowed whatever the client: nothing to
    /// check.
    pub fn allows_all(&self) -> bool {
        self.rules.is_empty() && self.no_match == Permission::Allow
    }

    /// May `who` publish to `topic` (a valid topic name)?
    pub fn check_publish(&self, who: &Who, topic: &str) -> bool {
        self.decide(who, Request::Publish, topic) == Permission::Allow
    }

    /// May `who` subscribe to `filter` (a valid filter, possibly
    /// `$share/{group}/{filter}`, which is checked on `{filter}`)?
    pub fn check_subscribe(&self, who: &Who, filter: &str) -> bool {
        let filter = match parse_shared(filter) {
            Ok(Some(shared)) => shared.filter,
            _ => filter,
        };
        self.decide(who, Request::Subscribe, filter) == Permission::Allow
    }

    /// What the first matching rule says about publishing `topic`; `None`
    /// when no rule matches (then the ACL file, if any, decides, else
    /// `no_match`).
    pub fn publish_rule(&self, who: &Who, topic: &str) -> Option<bool> {
        self.first_match(who, Request::Publish, topic)
            .map(|p| p == Permission::Allow)
    }

    /// [`Authz::publish_rule`] for subscribing to `filter`.
    pub fn subscribe_rule(&self, who: &Who, filter: &str) -> Option<bool> {
        let filter = match parse_shared(filter) {
            Ok(Some(shared)) => shared.filter,
            _ => filter,
        };
        self.first_match(who, Request::Subscribe, filter)
            .map(|p| p == Permission::Allow)
    }

    /// What a request no rule matches gets.
    pub fn no_match(&self) -> Permission {
        self.no_match
    }

    fn first_match(&self, who: &Who, request: Request, subject: &str) -> Option<Permission> {
        self.rules
            .iter()
            .find(|rule| rule.matches(who, request, subject))
            .map(|rule| rule.permission)
    }

    fn decide(&self, who: &Who, request: Request, subject: &str) -> Permission {
        self.rules
            .iter()
            .find(|rule| rule.matches(who, request, subject))
            .map_or(self.no_match, |rule| rule.permission)
    }
}

impl CompiledRule {
    fn matches(&self, who: &Who, request: Request, subject: &str) -> bool {
        self.action.covers(request)
            && self
                .client_id
                .as_deref()
                .is_none_or(|id| id == who.client_id)
            && self
                .username
                .as_deref()
                .is_none_or(|name| who.username == Some(name))
            && self
                .topics
                .iter()
                .any(|topic| topic.matches(who, request, subject))
    }
}

impl TopicRule {
    fn matches(&self, who: &Who, request: Request, subject: &str) -> bool {
        match self {
            TopicRule::Eq(text) => **text == *subject,
            TopicRule::Filter(filter) => filter_matches(filter, request, subject),
            TopicRule::Template(template) => render(template, who)
                .is_some_and(|filter| filter_matches(&filter, request, subject)),
        }
    }
}

fn filter_matches(rule_filter: &str, request: Request, subject: &str) -> bool {
    match request {
        Request::Publish => matches(rule_filter, subject),
        Request::Subscribe => covers(rule_filter, subject),
    }
}

/// Whether every topic matched by `filter` is also matched by `rule` (both
/// valid, non-shared filters): `covers("a/#", "a/+/b")`, `covers("a/+",
/// "a/b")`, not `covers("a/+", "a/#")`, not `covers("a/#", "#")`. A filter
/// with no wildcard is covered exactly when the rule matches it as a topic.
/// Follows MQTT-4.7.2-1: a rule starting with a wildcard does not cover
/// filters on `$` topics.
pub fn covers(rule: &str, filter: &str) -> bool {
    if filter.starts_with('$') && (rule.starts_with('+') || rule.starts_with('#')) {
        return false;
    }
    let mut rule_levels = rule.split('/');
    let mut filter_levels = filter.split('/');
    loop {
        match (rule_levels.next(), filter_levels.next()) {
            // `#` covers what is left, including nothing (`a/#` covers `a`).
            (Some("#"), _) => return true,
            // The filter reaches any depth here; only a rule `#` could cover.
            (_, Some("#")) => return false,
            (Some("+"), Some(_)) => {}
            (Some(rule_level), Some(filter_level)) if rule_level == filter_level => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// `template` with its placeholders replaced, or `None` when a value is
/// missing or would not be one literal level. One pass, so a client id that
/// spells `${username}` stays literal text.
fn render(template: &str, who: &Who) -> Option<String> {
    let literal_level =
        |value: &str| !value.is_empty() && !value.bytes().any(|b| matches!(b, b'+' | b'#' | b'/'));
    let mut rendered = String::with_capacity(template.len() + who.client_id.len());
    let mut rest = template;
    while let Some(start) = rest.find("${") {
        rendered.push_str(&rest[..start]);
        rest = &rest[start..];
        let value = if let Some(after) = rest.strip_prefix(PLACEHOLDER_CLIENT_ID) {
            rest = after;
            who.client_id
        } else if let Some(after) = rest.strip_prefix(PLACEHOLDER_USERNAME) {
            rest = after;
            who.username?
        } else {
            unreachable!("compile_topic admits only known placeholders")
        };
        if !literal_level(value) {
            return None;
        }
        rendered.push_str(value);
    }
    rendered.push_str(rest);
    Some(rendered)
}

fn compile(index: usize, rule: &Rule) -> Result<CompiledRule, AuthzError> {
    let invalid = |field: String, value: &str, allowed: &str| AuthzError::InvalidRule {
        index,
        field,
        value: format!("{value:?}"),
        allowed: allowed.to_string(),
    };
    for (field, value) in [("client_id", &rule.client_id), ("username", &rule.username)] {
        if value.as_deref() == Some("") {
            return Err(invalid(
                field.to_string(),
                "",
                "a non-empty string (leave the key out to match every client)",
            ));
        }
    }
    if rule.topics.is_empty() || rule.topics.len() > TOPICS_PER_RULE_MAX {
        return Err(AuthzError::InvalidRule {
            index,
            field: "topics".to_string(),
            value: format!("an array of {} topics", rule.topics.len()),
            allowed: format!("an array of 1 to {TOPICS_PER_RULE_MAX} topic filters"),
        });
    }
    let topics = rule
        .topics
        .iter()
        .enumerate()
        .map(|(i, topic)| {
            compile_topic(topic).map_err(|allowed| invalid(format!("topics[{i}]"), topic, allowed))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(CompiledRule {
        permission: rule.permission,
        action: rule.action,
        client_id: rule.client_id.as_deref().map(Box::from),
        username: rule.username.as_deref().map(Box::from),
        topics,
    })
}

const TOPIC_ALLOWED: &str = "a topic filter (\"a/+/c\", \"a/#\"), optionally with ${clientid} or \
     ${username}, or \"eq <text>\" for that exact text; not starting with $share/";

fn compile_topic(topic: &str) -> Result<TopicRule, &'static str> {
    if let Some(text) = topic.strip_prefix(EQ_PREFIX) {
        let text = text.trim_start();
        if text.is_empty() {
            return Err(TOPIC_ALLOWED);
        }
        return Ok(TopicRule::Eq(Box::from(text)));
    }
    if topic.starts_with(SHARE_PREFIX) || topic == "$share" || !is_valid_topic_filter(topic) {
        return Err(TOPIC_ALLOWED);
    }
    // Every `${` must open a known placeholder.
    let without_placeholders = topic
        .replace(PLACEHOLDER_CLIENT_ID, "")
        .replace(PLACEHOLDER_USERNAME, "");
    if without_placeholders.contains("${") {
        return Err(TOPIC_ALLOWED);
    }
    if without_placeholders.len() == topic.len() {
        Ok(TopicRule::Filter(Box::from(topic)))
    } else {
        Ok(TopicRule::Template(Box::from(topic)))
    }
}
