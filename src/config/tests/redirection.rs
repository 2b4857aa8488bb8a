//! `[server_redirection]` and `[api]`.

use super::*;

// ---------------------------------------------------------------- [server_redirection], [api]

const REDIRECTION: &str = r#"
    [server_redirection]
    enable = true
    redirect_strategy = "round_robin"
    max_connections = 500
    [[server_redirection.redirect_servers]]
    host = "server1.example.com"
    description = "Primary backup"
    [[server_redirection.redirect_servers]]
    host = "fd00::2"
    port = 1884
"#;

#[test]
fn redirection_defaults() {
    let c = load("").unwrap();
    let r = &c.server_redirection;
    assert!(!r.enable);
    assert_eq!(r.redirect_strategy, crate::admission::Strategy::Random);
    assert_eq!(r.max_connections, 1000);
    assert!(r.redirect_servers.is_empty());
    assert!(c.api.enable);
    assert_eq!(c.api.bind.to_string(), "127.0.0.1:18083");
    assert!(c.api.has_default_credentials());
}

#[test]
fn redirection_from_file() {
    let c = load(REDIRECTION).unwrap();
    let live = c.server_redirection.to_redirection();
    assert!(live.enable);
    assert_eq!(live.strategy, crate::admission::Strategy::RoundRobin);
    assert_eq!(live.max_connections, 500);
    let refs: Vec<&str> = live.servers.iter().map(|s| s.reference()).collect();
    assert_eq!(refs, ["server1.example.com:1883", "[fd00::2]:1884"]);
    assert_eq!(
        live.servers[0].description.as_deref(),
        Some("Primary backup")
    );
}

#[test]
fn redirection_env_overlay() {
    let c = Config::load_from(
        Some(REDIRECTION),
        &env(&[
            ("RINGMQ_SERVER_REDIRECTION__ENABLE", "false"),
            ("RINGMQ_SERVER_REDIRECTION__MAX_CONNECTIONS", "7"),
            ("RINGMQ_SERVER_REDIRECTION__REDIRECT_STRATEGY", "random"),
        ]),
    )
    .unwrap();
    let r = &c.server_redirection;
    assert_eq!((r.enable, r.max_connections), (false, 7));
    assert_eq!(r.redirect_strategy, crate::admission::Strategy::Random);
    assert_eq!(r.redirect_servers.len(), 2, "the file's servers stay");
}

#[test]
fn redirection_servers_from_env_by_index() {
    let c = load_env(&[
        ("RINGMQ_SERVER_REDIRECTION__ENABLE", "true"),
        ("RINGMQ_SERVER_REDIRECTION__REDIRECT_SERVERS__1__HOST", "b"),
        ("RINGMQ_SERVER_REDIRECTION__REDIRECT_SERVERS__0__HOST", "a"),
        (
            "RINGMQ_SERVER_REDIRECTION__REDIRECT_SERVERS__0__PORT",
            "2000",
        ),
    ])
    .unwrap();
    let refs: Vec<String> = c
        .server_redirection
        .to_redirection()
        .servers
        .iter()
        .map(|s| s.reference().to_string())
        .collect();
    assert_eq!(refs, ["a:2000", "b:1883"]);
    let gap = load_env(&[("RINGMQ_SERVER_REDIRECTION__REDIRECT_SERVERS__1__HOST", "b")]);
    assert!(gap.is_err());
}

fn redirection_error(toml: &str) -> String {
    let e = load(toml).unwrap_err();
    e.key().expect("names a key").to_string()
}

#[test]
fn redirection_bad_values_name_the_key() {
    let cases = [
        (
            "[server_redirection]\nredirect_strategy = \"weighted\"",
            "server_redirection.redirect_strategy",
        ),
        (
            "[server_redirection]\nenable = true",
            "server_redirection.redirect_servers",
        ),
        (
            "[[server_redirection.redirect_servers]]\nhost = \"\"",
            "server_redirection.redirect_servers[0].host",
        ),
        (
            "[[server_redirection.redirect_servers]]\nhost = \"a b\"",
            "server_redirection.redirect_servers[0].host",
        ),
        (
            "[[server_redirection.redirect_servers]]\nhost = \"a\"\nport = 0",
            "server_redirection.redirect_servers[0].port",
        ),
        (
            "[[server_redirection.redirect_servers]]\nhost = \"a\"\n\
             [[server_redirection.redirect_servers]]\nhost = \"b\"\nport = 65536",
            "server_redirection.redirect_servers[1].port",
        ),
        (
            "[[server_redirection.redirect_servers]]\nport = 1",
            "server_redirection.redirect_servers[0].host",
        ),
        (
            "[server_redirection]\nmax_connections = -1",
            "server_redirection.max_connections",
        ),
        (
            "[server_redirection]\nredirect_strategy = \"least_connections\"",
            "server_redirection.redirect_strategy",
        ),
        ("[api]\nbind = \"localhost:80\"", "api.bind"),
        ("[api]\nusername = \"a:b\"", "api.username"),
        ("[api]\npassword = \"\"", "api.password"),
    ];
    for (toml, key) in cases {
        assert_eq!(redirection_error(toml), key, "{toml}");
    }
}

#[test]
fn a_clustered_node_may_redirect_to_its_peers_by_load() {
    let c = load(
        "[cluster]\ndiscovery_strategy = \"manual\"\n\
         [server_redirection]\nenable = true\nredirect_strategy = \"least_connections\"",
    )
    .unwrap();
    assert!(c.server_redirection.enable && c.server_redirection.redirect_servers.is_empty());
    assert_eq!(
        c.server_redirection.redirect_strategy,
        crate::admission::Strategy::LeastConnections
    );
}

#[test]
fn api_bind_must_not_overlap_a_listener() {
    let e =
        load("[listeners.tcp.default]\nbind = \"0.0.0.0:1883\"\n[api]\nbind = \"127.0.0.1:1883\"")
            .unwrap_err();
    assert_eq!(e.key(), Some("api.bind"));
    assert!(e.to_string().contains("listeners.tcp.default.bind"), "{e}");
    // A disabled API may say anything.
    load("[api]\nenable = false\nbind = \"0.0.0.0:1883\"").unwrap();
}

#[test]
fn redirection_hosts() {
    for host in [
        "a",
        "server1.example.com",
        "10.0.0.1",
        "::1",
        "[fd00::2]",
        "xn--bcher-kva.example.",
    ] {
        let toml = format!("[[server_redirection.redirect_servers]]\nhost = {host:?}");
        load(&toml).unwrap_or_else(|e| panic!("{host}: {e}"));
    }
    for host in ["-a", "a..b", "a_b", "[a]", "http://a", "a:1883"] {
        let toml = format!("[[server_redirection.redirect_servers]]\nhost = {host:?}");
        assert!(load(&toml).is_err(), "{host} accepted");
    }
}
