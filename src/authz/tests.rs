use super::*;
use proptest::prelude::*;

fn rule(permission: Permission, action: RuleAction, topics: &[&str]) -> Rule {
    Rule {
        permission,
        action,
        topics: topics.iter().map(|t| t.to_string()).collect(),
        client_id: None,
        username: None,
    }
}

fn deny(action: RuleAction, topics: &[&str]) -> Rule {
    rule(Permission::Deny, action, topics)
}

fn allow(action: RuleAction, topics: &[&str]) -> Rule {
    rule(Permission::Allow, action, topics)
}

const ALICE: Who = Who {
    client_id: "c1",
    username: Some("alice"),
};
const ANON: Who = Who {
    client_id: "c2",
    username: None,
};

fn authz(rules: &[Rule], no_match: Permission) -> Authz {
    Authz::new(rules, no_match).expect("valid rules")
}

#[test]
fn empty_rules_follow_no_match() {
    let open = authz(&[], Permission::Allow);
    assert!(open.allows_all());
    assert!(open.check_publish(&ALICE, "a/b"));
    assert!(open.check_subscribe(&ALICE, "#"));
    let closed = authz(&[], Permission::Deny);
    assert!(!closed.allows_all());
    assert!(!closed.check_publish(&ALICE, "a/b"));
    assert!(!closed.check_subscribe(&ALICE, "a/b"));
    assert!(Authz::allow_all().allows_all());
}

/// (rule topic, subscription filter, denied?) for a single
/// `deny subscribe` rule under `no_match = allow`.
const SUBSCRIBE_TABLE: &[(&str, &str, bool)] = &[
    ("test/nosubscribe", "test/nosubscribe", true),
    ("test/nosubscribe", "test/nosubscribe/x", false),
    ("test/nosubscribe", "test/+", false),
    ("test/nosubscribe", "#", false),
    ("secret/#", "secret", true),
    ("secret/#", "secret/a", true),
    ("secret/#", "secret/a/b", true),
    ("secret/#", "secret/+", true),
    ("secret/#", "secret/#", true),
    ("secret/#", "secret/+/x/#", true),
    ("secret/#", "#", false),
    ("secret/#", "+/a", false),
    ("secret/#", "public/a", false),
    ("a/+", "a/b", true),
    ("a/+", "a/+", true),
    ("a/+", "a/#", false),
    ("a/+", "a", false),
    ("a/+", "a/b/c", false),
    ("+/+", "a/+", true),
    ("#", "anything/at/all", true),
    ("#", "#", true),
    ("#", "$SYS/x", false),
    ("+/x", "$SYS/x", false),
    ("$SYS/#", "$SYS/broker/+", true),
    ("eq a/+", "a/+", true),
    ("eq a/+", "a/b", false),
    ("eq #", "#", true),
    ("eq #", "a/#", false),
    ("eq secret/#", "secret/a", false),
];

#[test]
fn subscribe_table() {
    for &(rule_topic, filter, denied) in SUBSCRIBE_TABLE {
        let a = authz(
            &[deny(RuleAction::Subscribe, &[rule_topic])],
            Permission::Allow,
        );
        assert_eq!(
            !a.check_subscribe(&ALICE, filter),
            denied,
            "rule {rule_topic:?} vs filter {filter:?}"
        );
        // A subscribe rule never touches publishing.
        if !filter.contains(['+', '#']) {
            assert!(a.check_publish(&ALICE, filter), "{rule_topic} {filter}");
        }
    }
}

/// (rule topic, topic name, denied?) for a single `deny publish` rule.
const PUBLISH_TABLE: &[(&str, &str, bool)] = &[
    ("secret/#", "secret", true),
    ("secret/#", "secret/a/b", true),
    ("secret/#", "public", false),
    ("a/+/c", "a/b/c", true),
    ("a/+/c", "a/b/d", false),
    ("#", "$SYS/x", false),
    ("eq a/b", "a/b", true),
    ("eq a/+", "a/b", false),
];

#[test]
fn publish_table() {
    for &(rule_topic, topic, denied) in PUBLISH_TABLE {
        let a = authz(
            &[deny(RuleAction::Publish, &[rule_topic])],
            Permission::Allow,
        );
        assert_eq!(
            !a.check_publish(&ALICE, topic),
            denied,
            "rule {rule_topic:?} vs topic {topic:?}"
        );
        assert!(a.check_subscribe(&ALICE, topic), "{rule_topic} {topic}");
    }
}

#[test]
fn action_all_covers_both() {
    let a = authz(&[deny(RuleAction::All, &["x/#"])], Permission::Allow);
    assert!(!a.check_publish(&ALICE, "x/1"));
    assert!(!a.check_subscribe(&ALICE, "x/1"));
    assert!(a.check_publish(&ALICE, "y"));
}

#[test]
fn first_match_wins() {
    let a = authz(
        &[
            allow(RuleAction::Subscribe, &["secret/open"]),
            deny(RuleAction::Subscribe, &["secret/#"]),
            allow(RuleAction::Subscribe, &["secret/closed"]),
        ],
        Permission::Allow,
    );
    assert!(a.check_subscribe(&ALICE, "secret/open"));
    assert!(!a.check_subscribe(&ALICE, "secret/closed"));
    assert!(!a.check_subscribe(&ALICE, "secret/+"));
}

#[test]
fn allow_list_with_no_match_deny() {
    let a = authz(
        &[
            allow(RuleAction::Publish, &["sensors/+/temp"]),
            allow(RuleAction::Subscribe, &["commands/#"]),
        ],
        Permission::Deny,
    );
    assert!(a.check_publish(&ALICE, "sensors/1/temp"));
    assert!(!a.check_publish(&ALICE, "sensors/1/humidity"));
    assert!(!a.check_publish(&ALICE, "commands/x"));
    assert!(a.check_subscribe(&ALICE, "commands/+/reboot"));
    assert!(!a.check_subscribe(&ALICE, "#"));
    assert!(!a.check_subscribe(&ALICE, "sensors/1/temp"));
}

#[test]
fn who_matchers_must_all_match() {
    let mut only_alice = deny(RuleAction::All, &["#"]);
    only_alice.username = Some("alice".to_string());
    let mut only_c2 = deny(RuleAction::All, &["#"]);
    only_c2.client_id = Some("c2".to_string());
    let mut both = deny(RuleAction::All, &["both/#"]);
    both.client_id = Some("c1".to_string());
    both.username = Some("bob".to_string());

    let a = authz(&[only_alice], Permission::Allow);
    assert!(!a.check_publish(&ALICE, "t"));
    assert!(
        a.check_publish(&ANON, "t"),
        "no user name: rule does not apply"
    );
    let bob = Who {
        client_id: "c1",
        username: Some("bob"),
    };
    assert!(a.check_publish(&bob, "t"));

    let a = authz(&[only_c2], Permission::Allow);
    assert!(a.check_publish(&ALICE, "t"));
    assert!(!a.check_subscribe(&ANON, "t"));

    let a = authz(&[both], Permission::Allow);
    assert!(!a.check_publish(&bob, "both/x"));
    assert!(a.check_publish(&ALICE, "both/x"), "user name differs");
}

#[test]
fn placeholders_are_substituted() {
    let a = authz(
        &[
            allow(RuleAction::All, &["devices/${clientid}/#"]),
            allow(RuleAction::Publish, &["users/${username}/out"]),
            allow(RuleAction::Subscribe, &["mixed/${username}-${clientid}"]),
        ],
        Permission::Deny,
    );
    assert!(a.check_publish(&ALICE, "devices/c1/state"));
    assert!(a.check_subscribe(&ALICE, "devices/c1/#"));
    assert!(!a.check_publish(&ALICE, "devices/c2/state"));
    assert!(!a.check_subscribe(&ALICE, "devices/+/state"));
    assert!(a.check_publish(&ALICE, "users/alice/out"));
    assert!(!a.check_publish(&ANON, "users/c2/out"));
    assert!(a.check_subscribe(&ALICE, "mixed/alice-c1"));
    assert!(!a.check_subscribe(&ALICE, "mixed/alice-c2"));
}

#[test]
fn placeholder_values_stay_one_literal_level() {
    let a = authz(
        &[allow(RuleAction::All, &["devices/${clientid}/#"])],
        Permission::Deny,
    );
    for client_id in ["+", "#", "a/b", "", "x+"] {
        let who = Who {
            client_id,
            username: None,
        };
        assert!(!a.check_publish(&who, "devices/a/b/c"), "{client_id:?}");
        assert!(!a.check_subscribe(&who, "devices/+/#"), "{client_id:?}");
    }
    // A client id that spells a placeholder is not substituted again.
    let a = authz(
        &[allow(RuleAction::All, &["d/${clientid}/${username}"])],
        Permission::Deny,
    );
    let who = Who {
        client_id: "${username}",
        username: Some("u"),
    };
    assert!(a.check_publish(&who, "d/${username}/u"));
    assert!(!a.check_publish(&who, "d/u/u"));
}

#[test]
fn shared_subscriptions_are_checked_on_the_inner_filter() {
    let a = authz(
        &[deny(RuleAction::Subscribe, &["secret/#"])],
        Permission::Allow,
    );
    assert!(!a.check_subscribe(&ALICE, "$share/g/secret/a"));
    assert!(a.check_subscribe(&ALICE, "$share/secret/public"));
    let a = authz(
        &[deny(RuleAction::Subscribe, &["eq jobs/+"])],
        Permission::Allow,
    );
    assert!(!a.check_subscribe(&ALICE, "$share/workers/jobs/+"));
}

fn error_of(rules: &[Rule]) -> AuthzError {
    Authz::new(rules, Permission::Allow).expect_err("must be refused")
}

#[test]
fn bad_rules_name_the_field() {
    for bad in [
        "a/#/b",
        "",
        "a+",
        "$share/g/a",
        "$share",
        "x/${peerhost}",
        "${clientid",
        "eq ",
    ] {
        let rules = [allow(RuleAction::All, &["ok", bad])];
        match error_of(&rules) {
            AuthzError::InvalidRule {
                index,
                field,
                value,
                allowed,
            } => {
                assert_eq!((index, field.as_str()), (0, "topics[1]"), "{bad:?}");
                assert_eq!(value, format!("{bad:?}"));
                assert!(allowed.contains("topic filter"), "{allowed}");
            }
            other => panic!("{other:?}"),
        }
    }
    let rules = [allow(RuleAction::All, &["a"]), allow(RuleAction::All, &[])];
    let text = error_of(&rules).to_string();
    assert_eq!(
        text,
        "rules[1].topics: an array of 0 topics; allowed: an array of 1 to 100 topic filters"
    );
    let mut empty_user = allow(RuleAction::All, &["a"]);
    empty_user.username = Some(String::new());
    assert!(error_of(&[empty_user])
        .to_string()
        .starts_with("rules[0].username: \"\""));
    let many = vec![allow(RuleAction::All, &["a"]); RULES_MAX + 1];
    assert_eq!(
        error_of(&many),
        AuthzError::TooManyRules {
            count: RULES_MAX + 1
        }
    );
    let topics: Vec<String> = (0..=TOPICS_PER_RULE_MAX).map(|i| i.to_string()).collect();
    let topics: Vec<&str> = topics.iter().map(String::as_str).collect();
    assert!(matches!(
        error_of(&[allow(RuleAction::All, &topics)]),
        AuthzError::InvalidRule { ref field, .. } if field == "topics"
    ));
}

#[test]
fn names_parse_case_insensitively() {
    assert_eq!(Permission::parse(" Deny "), Some(Permission::Deny));
    assert_eq!(RuleAction::parse("ALL"), Some(RuleAction::All));
    assert_eq!(
        DenyAction::parse("disconnect"),
        Some(DenyAction::Disconnect)
    );
    assert_eq!(RuleAction::parse("pub"), None);
    for p in Permission::ALL {
        assert_eq!(Permission::parse(p.as_str()), Some(p));
    }
    for a in RuleAction::ALL {
        assert_eq!(RuleAction::parse(a.as_str()), Some(a));
    }
    for a in DenyAction::ALL {
        assert_eq!(DenyAction::parse(a.as_str()), Some(a));
    }
    for r in DenyReason::ALL {
        assert_eq!(DenyReason::parse(r.as_str()), Some(r));
    }
    assert_eq!(
        DenyReason::parse("Unspecified_Error"),
        Some(DenyReason::UnspecifiedError)
    );
}

// ---------------------------------------------------------------- properties

/// Small alphabet so that filters and topics collide often.
fn level() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("a".to_string()),
        Just("b".to_string()),
        Just(String::new()),
        Just("$x".to_string()),
    ]
}

fn topic() -> impl Strategy<Value = String> {
    prop::collection::vec(level(), 1..5).prop_map(|levels| levels.join("/"))
}

fn filter() -> impl Strategy<Value = String> {
    let filter_level = prop_oneof![3 => level(), 1 => Just("+".to_string())];
    (prop::collection::vec(filter_level, 1..5), any::<bool>()).prop_map(|(mut levels, hash)| {
        if hash {
            levels.push("#".to_string());
        }
        levels.join("/")
    })
}

proptest! {
    /// The point of `covers`: whatever the subscription receives, the rule
    /// matches too, so a deny on the rule cannot be evaded by a narrower
    /// filter.
    #[test]
    fn covered_filters_receive_only_rule_topics(rule in filter(), sub in filter(), t in topic()) {
        prop_assume!(is_valid_topic_filter(&rule) && is_valid_topic_filter(&sub));
        if covers(&rule, &sub) && matches(&sub, &t) {
            prop_assert!(matches(&rule, &t), "rule {rule} covers {sub}, which matches {t}");
        }
    }

    /// A filter without wildcards is covered exactly when the rule matches
    /// it as a topic name.
    #[test]
    fn plain_filters_are_covered_as_topics(rule in filter(), t in topic()) {
        prop_assume!(is_valid_topic_filter(&rule));
        prop_assert_eq!(covers(&rule, &t), matches(&rule, &t));
    }

    /// Every filter covers itself, so a deny on a filter refuses that filter.
    #[test]
    fn filters_cover_themselves(f in filter()) {
        prop_assume!(is_valid_topic_filter(&f));
        prop_assert!(covers(&f, &f));
        let a = Authz::new(&[deny(RuleAction::Subscribe, &[&f])], Permission::Allow).unwrap();
        prop_assert!(!a.check_subscribe(&ALICE, &f));
    }
}
