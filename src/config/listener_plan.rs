//! The listeners as the node starts them (`Config::listener_plans`), and
//! the view of every listener, whatever its kind, that the checks across
//! listeners use (names, overlapping binds). Building a plan reads the
//! certificate files, so an unreadable one stops the start naming its key.

use super::listeners::{
    PeerCertAsUsername, SslListenerConfig, SslOptionsConfig, TcpListenerConfig, Verify,
    WebsocketConfig, WsListenerConfig, WssListenerConfig,
};
use super::{Config, ConfigError};
use crate::limits;
use crate::transport::{tls, ws, TransportSpec};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// One listener as the node starts it.
pub struct ListenerPlan {
    /// `listeners.<kind>.<name>`.
    pub key: String,
    pub bind: SocketAddr,
    pub max_connections: u32,
    /// `None` for plain TCP.
    pub transport: Option<Arc<TransportSpec>>,
}

/// One listener of any kind, as the checks across listeners and the plan
/// read it: what every kind has, plus its own table for the transport.
struct AnyListener<'a> {
    /// `listeners.<kind>.<name>`.
    key: String,
    name: &'a str,
    enable: bool,
    bind: SocketAddr,
    kind: Kind<'a>,
}

enum Kind<'a> {
    Tcp(&'a TcpListenerConfig),
    Ssl(&'a SslListenerConfig),
    Ws(&'a WsListenerConfig),
    Wss(&'a WssListenerConfig),
}

impl<'a> AnyListener<'a> {
    fn new(kind_name: &str, name: &'a str, enable: bool, bind: SocketAddr, kind: Kind<'a>) -> Self {
        AnyListener {
            key: format!("listeners.{kind_name}.{name}"),
            name,
            enable,
            bind,
            kind,
        }
    }
}

impl Config {
    /// Every listener, enabled or not: TCP, then TLS, WebSocket and
    /// WebSocket over TLS, each kind by name (the order plans and errors
    /// follow).
    fn all_listeners(&self) -> impl Iterator<Item = AnyListener<'_>> {
        let l = &self.listeners;
        let tcp = l
            .tcp
            .iter()
            .map(|(n, c)| AnyListener::new("tcp", n, c.enable, c.bind, Kind::Tcp(c)));
        let ssl = l
            .ssl
            .iter()
            .map(|(n, c)| AnyListener::new("ssl", n, c.enable, c.bind, Kind::Ssl(c)));
        let ws =
            l.ws.iter()
                .map(|(n, c)| AnyListener::new("ws", n, c.enable, c.bind, Kind::Ws(c)));
        let wss = l
            .wss
            .iter()
            .map(|(n, c)| AnyListener::new("wss", n, c.enable, c.bind, Kind::Wss(c)));
        tcp.chain(ssl).chain(ws).chain(wss)
    }

    /// Every enabled listener of every kind: its key and address.
    pub(super) fn enabled_binds(&self) -> Vec<(String, SocketAddr)> {
        self.all_listeners()
            .filter(|l| l.enable)
            .map(|l| (l.key, l.bind))
            .collect()
    }

    /// Every listener name of every kind, with its key.
    pub(super) fn listener_names(&self) -> Vec<(String, &str)> {
        self.all_listeners().map(|l| (l.key, l.name)).collect()
    }

    /// The enabled listeners as the node starts them. Reads the TLS
    /// listeners' certificate and key files: a file that cannot be read or
    /// used is an error naming its key.
    pub fn listener_plans(&self) -> Result<Vec<ListenerPlan>, ConfigError> {
        let frame_bytes_max = self.mqtt.max_packet_size as usize + limits::WS_FRAME_OVERHEAD_BYTES;
        let ws_spec = |c: &WebsocketConfig| ws::WsSpec {
            mqtt_path: Arc::from(c.mqtt_path.as_str()),
            frame_bytes_max,
        };
        let transport = |tls, ws, handshake_timeout_secs: u32| {
            Some(Arc::new(TransportSpec {
                tls,
                ws,
                handshake_timeout: Duration::from_secs(handshake_timeout_secs.into()),
            }))
        };
        let mut plans = Vec::new();
        for l in self.all_listeners().filter(|l| l.enable) {
            let (max_connections, transport) = match l.kind {
                Kind::Tcp(c) => (c.max_connections, None),
                Kind::Ssl(c) => {
                    let tls = self.tls_spec(&l.key, &c.ssl_options, c.peer_cert_as_username)?;
                    let spec = transport(Some(tls), None, c.handshake_timeout);
                    (c.max_connections, spec)
                }
                Kind::Ws(c) => {
                    let spec = transport(None, Some(ws_spec(&c.websocket)), c.handshake_timeout);
                    (c.max_connections, spec)
                }
                Kind::Wss(c) => {
                    let tls = self.tls_spec(&l.key, &c.ssl_options, c.peer_cert_as_username)?;
                    let ws = Some(ws_spec(&c.websocket));
                    (
                        c.max_connections,
                        transport(Some(tls), ws, c.handshake_timeout),
                    )
                }
            };
            plans.push(ListenerPlan {
                key: l.key,
                bind: l.bind,
                max_connections,
                transport,
            });
        }
        Ok(plans)
    }

    fn tls_spec(
        &self,
        listener_key: &str,
        options: &SslOptionsConfig,
        peer_cert_as_username: PeerCertAsUsername,
    ) -> Result<tls::TlsSpec, ConfigError> {
        let files = tls::TlsFiles {
            certfile: &options.certfile,
            keyfile: &options.keyfile,
            cacertfile: &options.cacertfile,
            verify_peer: options.verify == Verify::VerifyPeer,
            fail_if_no_peer_cert: options.fail_if_no_peer_cert,
        };
        let config = tls::server_config(&files).map_err(|e| {
            let key = format!("{listener_key}.ssl_options.{}", e.field);
            let path = match e.field {
                "certfile" => &options.certfile,
                "keyfile" => &options.keyfile,
                _ => &options.cacertfile,
            };
            ConfigError::InvalidValue {
                origin: self.origin_of(&key),
                value: format!("{:?}", path.display().to_string()),
                allowed: format!("a readable PEM file that fits the listener ({})", e.message),
                key,
            }
        })?;
        Ok(tls::TlsSpec {
            config,
            peer_cert_cn_as_username: peer_cert_as_username == PeerCertAsUsername::Cn,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::load_from(Some(text), &env)
    }

    #[test]
    fn no_transport_listener_by_default_and_a_present_table_is_enabled() {
        let config = Config::default();
        assert!(config.listeners.ssl.is_empty() && config.listeners.ws.is_empty());
        assert!(config.listeners.wss.is_empty());
        let config = load("[listeners.ws.default]\n", &[]).unwrap();
        let ws = &config.listeners.ws["default"];
        assert!(ws.enable);
        assert_eq!(ws.bind, SocketAddr::from(([0, 0, 0, 0], 8083)));
        assert_eq!(ws.websocket.mqtt_path, "/mqtt");
        assert_eq!(ws.handshake_timeout, 15);
        // The TCP default stays.
        assert!(config.listeners.tcp["default"].enable);
        let plans = config.listener_plans().unwrap();
        assert_eq!(plans.len(), 2);
        let ws_plan = plans
            .iter()
            .find(|p| p.key == "listeners.ws.default")
            .unwrap();
        let transport = ws_plan.transport.as_ref().unwrap();
        assert!(transport.tls.is_none());
        assert_eq!(
            transport.ws.as_ref().unwrap().frame_bytes_max,
            1024 * 1024 + limits::WS_FRAME_OVERHEAD_BYTES
        );
    }

    #[test]
    fn disabled_listener_is_not_started_and_its_files_are_not_read() {
        let config = load(
            "[listeners.ssl.default]\nenable = false\nssl_options.certfile = \"/nonexistent\"\n",
            &[],
        )
        .unwrap();
        let plans = config.listener_plans().unwrap();
        assert!(plans.iter().all(|p| p.transport.is_none()));
    }

    #[test]
    fn env_sets_nested_transport_keys() {
        let config = load(
            "",
            &[
                ("RINGMQ_LISTENERS__WSS__EDGE__BIND", "127.0.0.1:9443"),
                ("RINGMQ_LISTENERS__WSS__EDGE__WEBSOCKET__MQTT_PATH", "/ws"),
                (
                    "RINGMQ_LISTENERS__WSS__EDGE__SSL_OPTIONS__VERIFY",
                    "verify_peer",
                ),
                (
                    "RINGMQ_LISTENERS__WSS__EDGE__SSL_OPTIONS__FAIL_IF_NO_PEER_CERT",
                    "true",
                ),
                ("RINGMQ_LISTENERS__WSS__EDGE__PEER_CERT_AS_USERNAME", "cn"),
                ("RINGMQ_LISTENERS__WSS__EDGE__HANDSHAKE_TIMEOUT", "1m"),
            ],
        )
        .unwrap();
        let wss = &config.listeners.wss["edge"];
        assert_eq!(wss.bind, SocketAddr::from(([127, 0, 0, 1], 9443)));
        assert_eq!(wss.websocket.mqtt_path, "/ws");
        assert_eq!(wss.ssl_options.verify, Verify::VerifyPeer);
        assert!(wss.ssl_options.fail_if_no_peer_cert);
        assert_eq!(wss.peer_cert_as_username, PeerCertAsUsername::Cn);
        assert_eq!(wss.handshake_timeout, 60);
        // The dump loads back to the same config.
        assert_eq!(load(&config.to_toml(), &[]).unwrap(), config);
    }

    #[test]
    fn bad_values_name_their_key() {
        let cases = [
            (
                "[listeners.ssl.a]\nssl_options.verify = \"verify_all\"\n",
                "listeners.ssl.a.ssl_options.verify",
                "one of \"verify_none\", \"verify_peer\"",
            ),
            (
                "[listeners.wss.a]\npeer_cert_as_username = \"dn\"\n",
                "listeners.wss.a.peer_cert_as_username",
                "\"cn\"",
            ),
            (
                "[listeners.ws.a]\nwebsocket.mqtt_path = \"mqtt\"\n",
                "listeners.ws.a.websocket.mqtt_path",
                "starting with '/'",
            ),
            (
                "[listeners.ws.a]\nhandshake_timeout = 0\n",
                "listeners.ws.a.handshake_timeout",
                "from 1 to 3600",
            ),
            (
                "[listeners.ssl.a]\nssl_options.certfiles = \"x\"\n",
                "listeners.ssl.a.ssl_options.certfiles",
                "certfile",
            ),
            ("[listeners.ws.A]\n", "listeners.ws.A", "lowercase"),
        ];
        for (text, key, allowed) in cases {
            let e = load(text, &[]).unwrap_err();
            assert_eq!(e.key(), Some(key), "{e}");
            assert!(e.to_string().contains(allowed), "{e}");
        }
    }

    #[test]
    fn listeners_of_different_kinds_may_not_overlap() {
        let e = load(
            "[listeners.tcp.default]\nbind = \"127.0.0.1:7000\"\n\
             [listeners.ws.web]\nbind = \"0.0.0.0:7000\"\n",
            &[],
        )
        .unwrap_err();
        assert_eq!(e.key(), Some("listeners.ws.web.bind"));
        assert!(
            e.to_string()
                .contains("listeners.tcp.default.bind overlaps it"),
            "{e}"
        );
        let e = load(
            "[listeners.wss.web]\nbind = \"127.0.0.1:7001\"\n[api]\nbind = \"127.0.0.1:7001\"\n",
            &[],
        )
        .unwrap_err();
        assert_eq!(e.key(), Some("api.bind"));
        assert!(e.to_string().contains("listeners.wss.web.bind"), "{e}");
    }

    #[test]
    fn unreadable_certificate_names_the_key_and_where_it_was_set() {
        let config = load(
            "[listeners.ssl.default]\n",
            &[(
                "RINGMQ_LISTENERS__SSL__DEFAULT__SSL_OPTIONS__CERTFILE",
                "/nonexistent/cert.pem",
            )],
        )
        .unwrap();
        let e = config.listener_plans().err().expect("the file is missing");
        let text = e.to_string();
        assert_eq!(e.key(), Some("listeners.ssl.default.ssl_options.certfile"));
        assert!(
            text.contains("RINGMQ_LISTENERS__SSL__DEFAULT__SSL_OPTIONS__CERTFILE"),
            "{text}"
        );
        assert!(text.contains("/nonexistent/cert.pem"), "{text}");
    }
}
