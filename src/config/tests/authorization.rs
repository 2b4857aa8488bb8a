//! `[authorization]`: rules in order, scalars from the environment, errors
//! naming the rule by index.

use super::*;

// ---------------------------------------------------------------- [authorization]

#[test]
fn authorization_rules_load_in_order() {
    let config = load(&format!(
        r#"
        [authorization]
        no_match = "deny"
        deny_action = "disconnect"
        [[authorization.rules]]
        permission = "allow"
        action = "all"
        topics = ["devices/${{clientid}}/#", "eq a/+"]
        {FULL_RULE}
        "#
    ))
    .unwrap();
    let section = &config.authorization;
    assert_eq!(section.no_match, Permission::Deny);
    assert_eq!(section.deny_action, DenyAction::Disconnect);
    assert_eq!(section.rules.len(), 2);
    let rules = section.rules();
    assert_eq!(rules[0].permission, Permission::Allow);
    assert_eq!(rules[0].action, RuleAction::All);
    assert_eq!(rules[0].topics, ["devices/${clientid}/#", "eq a/+"]);
    assert_eq!(rules[0].client_id, None);
    assert_eq!(rules[1].permission, Permission::Deny);
    assert_eq!(rules[1].action, RuleAction::Subscribe);
    assert_eq!(rules[1].client_id.as_deref(), Some("sensor-1"));
    assert_eq!(rules[1].username.as_deref(), Some("alice"));
    let authz = config.authz().unwrap();
    let who = Who {
        client_id: "d1",
        username: None,
    };
    assert!(authz.check_publish(&who, "devices/d1/t"));
    assert!(!authz.check_publish(&who, "devices/d2/t"));
}

#[test]
fn authorization_scalars_from_env() {
    let config = load_env(&[
        ("RINGMQ_AUTHORIZATION__NO_MATCH", "Deny"),
        ("RINGMQ_AUTHORIZATION__DENY_ACTION", "disconnect"),
        ("RINGMQ_AUTHORIZATION__DENY_REASON", "unspecified_error"),
    ])
    .unwrap();
    assert_eq!(config.authorization.no_match, Permission::Deny);
    assert_eq!(config.authorization.deny_action, DenyAction::Disconnect);
    assert_eq!(
        config.authorization.deny_reason,
        DenyReason::UnspecifiedError
    );
    // The file's rules stay when env sets the scalars.
    let config = Config::load_from(
        Some(FULL_RULE),
        &env(&[("RINGMQ_AUTHORIZATION__NO_MATCH", "deny")]),
    )
    .unwrap();
    assert_eq!(config.authorization.rules.len(), 1);
    message(
        load_env(&[("RINGMQ_AUTHORIZATION__RULES", "x")]),
        &[
            "invalid value for authorization.rules (from env RINGMQ_AUTHORIZATION__RULES): \"x\"",
            "no environment form",
        ],
    );
    message(
        load_env(&[("RINGMQ_AUTHORIZATION__RULES__0__ACTION", "all")]),
        &["invalid value for authorization.rules (from env", "a table"],
    );
}

fn rule_toml(body: &str) -> String {
    format!("[[authorization.rules]]\npermission = \"deny\"\naction = \"all\"\ntopics = [\"a\"]\n[[authorization.rules]]\n{body}\n")
}

#[test]
fn bad_rules_name_the_key_by_index() {
    let complete = "permission = \"deny\"\naction = \"all\"\ntopics = [\"a\"]";
    let cases: &[(&str, &[&str])] = &[
        (
            "permission = \"deny\"\naction = \"pub\"\ntopics = [\"a\"]",
            &[
                "invalid value for authorization.rules[1].action in the TOML text: \"pub\"",
                "allowed: one of \"publish\", \"subscribe\", \"all\"",
            ],
        ),
        (
            "permission = \"reject\"\naction = \"all\"\ntopics = [\"a\"]",
            &[
                "authorization.rules[1].permission",
                "one of \"allow\", \"deny\"",
            ],
        ),
        (
            "permission = \"deny\"\ntopics = [\"a\"]",
            &["invalid value for authorization.rules[1].action", "required"],
        ),
        (
            "permission = \"deny\"\naction = \"all\"",
            &["authorization.rules[1].topics", "required"],
        ),
        (
            "permission = \"deny\"\naction = \"all\"\ntopics = \"a\"",
            &["authorization.rules[1].topics", "an array of topic filter strings"],
        ),
        (
            "permission = \"deny\"\naction = \"all\"\ntopics = [\"a\", 7]",
            &["authorization.rules[1].topics[1]", ": 7; allowed: a string"],
        ),
        (
            "permission = \"deny\"\naction = \"all\"\ntopics = [\"ok\", \"a/#/b\"]",
            &[
                "invalid value for authorization.rules[1].topics[1] in the TOML text: \"a/#/b\"",
                "a topic filter",
            ],
        ),
        (
            "permission = \"deny\"\naction = \"all\"\ntopics = []",
            &["authorization.rules[1].topics", "an array of 1 to 100 topic filters"],
        ),
        (
            "permission = \"deny\"\naction = \"all\"\ntopics = [\"x/${ip}\"]",
            &["authorization.rules[1].topics[0]", "${clientid} or ${username}"],
        ),
        (
            &format!("{complete}\nclient_id = \"\""),
            &["authorization.rules[1].client_id", "a non-empty string"],
        ),
        (
            &format!("{complete}\nusername = 5"),
            &["authorization.rules[1].username", "a non-empty string"],
        ),
        (
            &format!("{complete}\nclientid = \"x\""),
            &[
                "unknown key authorization.rules[1].clientid in the TOML text",
                "known keys in [authorization.rules[1]]: permission, action, topics, client_id, username",
            ],
        ),
    ];
    for (body, fragments) in cases {
        let text = message(load(&rule_toml(body)), fragments);
        assert!(!text.contains('\n'), "{text}");
    }
    let path = PathBuf::from("/etc/ringmq.toml");
    let origin = Origin::File(path);
    let result = Config::load_layers(
        Some((
            &rule_toml("permission = \"deny\"\naction = \"all\"\ntopics = [\"$share/g/a\"]"),
            &origin,
        )),
        &[],
    );
    message(
        result,
        &["invalid value for authorization.rules[1].topics[0] in /etc/ringmq.toml: \"$share/g/a\""],
    );
    message(
        load("[authorization]\nrules = 5"),
        &["invalid value for authorization.rules in the TOML text: 5; allowed: an array of [[authorization.rules]] tables"],
    );
    message(
        load("[authorization]\nno_match = \"deny\"\nrule = []"),
        &[
            "unknown key authorization.rule",
            "known keys in [authorization]: no_match, deny_action, deny_reason, rules",
        ],
    );
}

#[test]
fn too_many_rules_is_refused() {
    let rule =
        "[[authorization.rules]]\npermission = \"deny\"\naction = \"all\"\ntopics = [\"a\"]\n";
    let text = rule.repeat(crate::authz::RULES_MAX + 1);
    message(
        load(&text),
        &["invalid value for authorization.rules in the TOML text: an array of 1001 rules; allowed: at most 1000 rules"],
    );
}

#[test]
fn listener_named_like_an_index_keeps_its_dotted_key() {
    message(
        load("[listeners.tcp.0]\nbind = \"x\""),
        &["invalid value for listeners.tcp.0.bind"],
    );
}
