//! `[listeners.ssl.<name>]`, `[listeners.ws.<name>]` and
//! `[listeners.wss.<name>]`: MQTT over TLS, WebSocket and WebSocket over
//! TLS, shaped like EMQX's. A table that is present is a listener, enabled
//! unless it says `enable = false`; none exists by default. Also here: the
//! listeners as the node starts them (`Config::listener_plans`), which reads
//! the certificate files, so an unreadable one stops the start naming its
//! key.

use super::sections::{de_bind, de_max_connections};
use super::{value, Config, ConfigError};
use crate::limits;
use crate::transport::{tls, ws, TransportSpec};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// `[listeners.ssl.<name>]`: MQTT over TLS.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SslListenerConfig {
    /// `enable`: start this listener. Default `true`.
    #[serde(deserialize_with = "value::bool")]
    pub enable: bool,
    /// `bind`: `ip:port`, as for TCP listeners. Default `"0.0.0.0:8883"`.
    #[serde(deserialize_with = "de_bind")]
    pub bind: SocketAddr,
    /// `max_connections`: as for TCP listeners. Default 100_000.
    #[serde(deserialize_with = "de_max_connections")]
    pub max_connections: u32,
    /// `handshake_timeout`, seconds: how long the TLS handshake may take.
    /// 1 to `limits::HANDSHAKE_TIMEOUT_MAX_SECS`. Default 15 s.
    #[serde(
        deserialize_with = "de_handshake_timeout",
        serialize_with = "value::serialize_duration_secs"
    )]
    pub handshake_timeout: u32,
    pub ssl_options: SslOptionsConfig,
    /// `peer_cert_as_username`: `"cn"` makes the client certificate's
    /// Common Name the user name (CONNECT's is replaced); `"disabled"`.
    pub peer_cert_as_username: PeerCertAsUsername,
}

/// `[listeners.ws.<name>]`: MQTT over WebSocket.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WsListenerConfig {
    #[serde(deserialize_with = "value::bool")]
    pub enable: bool,
    /// Default `"0.0.0.0:8083"`.
    #[serde(deserialize_with = "de_bind")]
    pub bind: SocketAddr,
    #[serde(deserialize_with = "de_max_connections")]
    pub max_connections: u32,
    /// `handshake_timeout`: how long the HTTP upgrade may take.
    #[serde(
        deserialize_with = "de_handshake_timeout",
        serialize_with = "value::serialize_duration_secs"
    )]
    pub handshake_timeout: u32,
    pub websocket: WebsocketConfig,
}

/// `[listeners.wss.<name>]`: MQTT over WebSocket over TLS.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WssListenerConfig {
    #[serde(deserialize_with = "value::bool")]
    pub enable: bool,
    /// Default `"0.0.0.0:8084"`.
    #[serde(deserialize_with = "de_bind")]
    pub bind: SocketAddr,
    #[serde(deserialize_with = "de_max_connections")]
    pub max_connections: u32,
    /// `handshake_timeout`: the TLS handshake and the HTTP upgrade together.
    #[serde(
        deserialize_with = "de_handshake_timeout",
        serialize_with = "value::serialize_duration_secs"
    )]
    pub handshake_timeout: u32,
    pub websocket: WebsocketConfig,
    pub ssl_options: SslOptionsConfig,
    pub peer_cert_as_username: PeerCertAsUsername,
}

/// `ssl_options`: the server's certificate and how clients are verified.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SslOptionsConfig {
    /// `certfile`: PEM certificate chain, the server's first. Relative
    /// paths are relative to the working directory. Default
    /// `"etc/certs/cert.pem"`.
    #[serde(deserialize_with = "de_path")]
    pub certfile: PathBuf,
    /// `keyfile`: PEM private key of the certificate. Default
    /// `"etc/certs/key.pem"`.
    #[serde(deserialize_with = "de_path")]
    pub keyfile: PathBuf,
    /// `cacertfile`: PEM CA certificates client certificates must chain to;
    /// read only with `verify = "verify_peer"`. Default
    /// `"etc/certs/cacert.pem"`.
    #[serde(deserialize_with = "de_path")]
    pub cacertfile: PathBuf,
    /// `verify`: `"verify_peer"` asks for a client certificate and verifies
    /// it; `"verify_none"` asks for none. Default `"verify_none"`.
    pub verify: Verify,
    /// `fail_if_no_peer_cert`: with `verify_peer`, refuse a client that
    /// presents no certificate (otherwise it connects unverified). Default
    /// `false`.
    #[serde(deserialize_with = "value::bool")]
    pub fail_if_no_peer_cert: bool,
}

/// `websocket`: the WebSocket settings of `ws` and `wss` listeners.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebsocketConfig {
    /// `mqtt_path`: the HTTP path upgraded to MQTT; others get 404.
    /// Default `"/mqtt"`.
    #[serde(deserialize_with = "de_mqtt_path")]
    pub mqtt_path: String,
}

/// Generates a two-spelling enum read and written as its config string,
/// with an error listing the spellings.
macro_rules! config_enum {
    ($(#[$doc:meta])* $name:ident { $($variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
        pub enum $name {
            #[default]
            $($variant),+
        }

        impl $name {
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let allowed =
                    format!("one of {}", [$(concat!("\"", $text, "\"")),+].join(", "));
                let text = value::string_matching(d, &allowed, |s| {
                    [$($text),+].iter().any(|t| t.eq_ignore_ascii_case(s.trim()))
                })?;
                let text = text.trim();
                Ok([$($name::$variant),+]
                    .into_iter()
                    .find(|v| v.as_str().eq_ignore_ascii_case(text))
                    .expect("checked by string_matching"))
            }
        }
    };
}

config_enum!(
    /// `ssl_options.verify`.
    Verify { VerifyNone = "verify_none", VerifyPeer = "verify_peer" }
);

config_enum!(
    /// `peer_cert_as_username`.
    PeerCertAsUsername { Disabled = "disabled", Cn = "cn" }
);

impl Default for SslListenerConfig {
    fn default() -> Self {
        SslListenerConfig {
            enable: true,
            bind: SocketAddr::from(([0, 0, 0, 0], 8883)),
            max_connections: 100_000,
            handshake_timeout: limits::HANDSHAKE_TIMEOUT_DEFAULT_SECS,
            ssl_options: SslOptionsConfig::default(),
            peer_cert_as_username: PeerCertAsUsername::Disabled,
        }
    }
}

impl Default for WsListenerConfig {
    fn default() -> Self {
        WsListenerConfig {
            enable: true,
            bind: SocketAddr::from(([0, 0, 0, 0], 8083)),
            max_connections: 100_000,
            handshake_timeout: limits::HANDSHAKE_TIMEOUT_DEFAULT_SECS,
            websocket: WebsocketConfig::default(),
        }
    }
}

impl Default for WssListenerConfig {
    fn default() -> Self {
        WssListenerConfig {
            enable: true,
            bind: SocketAddr::from(([0, 0, 0, 0], 8084)),
            max_connections: 100_000,
            handshake_timeout: limits::HANDSHAKE_TIMEOUT_DEFAULT_SECS,
            websocket: WebsocketConfig::default(),
            ssl_options: SslOptionsConfig::default(),
            peer_cert_as_username: PeerCertAsUsername::Disabled,
        }
    }
}

impl Default for SslOptionsConfig {
    fn default() -> Self {
        SslOptionsConfig {
            certfile: PathBuf::from("etc/certs/cert.pem"),
            keyfile: PathBuf::from("etc/certs/key.pem"),
            cacertfile: PathBuf::from("etc/certs/cacert.pem"),
            verify: Verify::VerifyNone,
            fail_if_no_peer_cert: false,
        }
    }
}

impl Default for WebsocketConfig {
    fn default() -> Self {
        WebsocketConfig {
            mqtt_path: "/mqtt".to_string(),
        }
    }
}

fn de_handshake_timeout<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    value::duration_secs_in(d, 1, limits::HANDSHAKE_TIMEOUT_MAX_SECS)
}

fn de_path<'de, D: Deserializer<'de>>(d: D) -> Result<PathBuf, D::Error> {
    value::string_matching(d, "a non-empty file path", |s| !s.trim().is_empty()).map(PathBuf::from)
}

use crate::limits::WS_MQTT_PATH_LEN_MAX_BYTES as MQTT_PATH_LEN_MAX_BYTES;

fn de_mqtt_path<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let allowed = format!(
        "an HTTP path starting with '/', without spaces, '?' or '#', of at most \
         {MQTT_PATH_LEN_MAX_BYTES} bytes, e.g. \"/mqtt\""
    );
    value::string_matching(d, &allowed, |s| {
        s.starts_with('/')
            && s.len() <= MQTT_PATH_LEN_MAX_BYTES
            && !s
                .chars()
                .any(|c| c.is_whitespace() || c.is_control() || c == '?' || c == '#')
    })
}

/// One listener as the node starts it.
pub struct ListenerPlan {
    /// `listeners.<kind>.<name>`.
    pub key: String,
    pub bind: SocketAddr,
    pub max_connections: u32,
    /// `None` for plain TCP.
    pub transport: Option<Arc<TransportSpec>>,
}

impl Config {
    /// Every enabled listener of every kind: its key and address.
    pub(super) fn enabled_binds(&self) -> Vec<(String, SocketAddr)> {
        let l = &self.listeners;
        let key = |kind: &str, name: &str| format!("listeners.{kind}.{name}");
        let tcp = l
            .tcp
            .iter()
            .filter(|(_, c)| c.enable)
            .map(|(n, c)| (key("tcp", n), c.bind));
        let ssl = l
            .ssl
            .iter()
            .filter(|(_, c)| c.enable)
            .map(|(n, c)| (key("ssl", n), c.bind));
        let ws =
            l.ws.iter()
                .filter(|(_, c)| c.enable)
                .map(|(n, c)| (key("ws", n), c.bind));
        let wss = l
            .wss
            .iter()
            .filter(|(_, c)| c.enable)
            .map(|(n, c)| (key("wss", n), c.bind));
        tcp.chain(ssl).chain(ws).chain(wss).collect()
    }

    /// Every listener name of every kind, with its key.
    pub(super) fn listener_names(&self) -> Vec<(String, &str)> {
        let l = &self.listeners;
        let tcp = l.tcp.keys().map(|n| ("tcp", n));
        let ssl = l.ssl.keys().map(|n| ("ssl", n));
        let ws = l.ws.keys().map(|n| ("ws", n));
        let wss = l.wss.keys().map(|n| ("wss", n));
        tcp.chain(ssl)
            .chain(ws)
            .chain(wss)
            .map(|(kind, name)| (format!("listeners.{kind}.{name}"), name.as_str()))
            .collect()
    }

    /// The enabled listeners as the node starts them. Reads the TLS
    /// listeners' certificate and key files: a file that cannot be read or
    /// used is an error naming its key.
    pub fn listener_plans(&self) -> Result<Vec<ListenerPlan>, ConfigError> {
        let l = &self.listeners;
        let frame_bytes_max = self.mqtt.max_packet_size as usize + limits::WS_FRAME_OVERHEAD_BYTES;
        let ws_spec = |c: &WebsocketConfig| ws::WsSpec {
            mqtt_path: Arc::from(c.mqtt_path.as_str()),
            frame_bytes_max,
        };
        let mut plans = Vec::new();
        for (name, c) in l.tcp.iter().filter(|(_, c)| c.enable) {
            plans.push(ListenerPlan {
                key: format!("listeners.tcp.{name}"),
                bind: c.bind,
                max_connections: c.max_connections,
                transport: None,
            });
        }
        for (name, c) in l.ssl.iter().filter(|(_, c)| c.enable) {
            let key = format!("listeners.ssl.{name}");
            let tls = self.tls_spec(&key, &c.ssl_options, c.peer_cert_as_username)?;
            plans.push(ListenerPlan {
                bind: c.bind,
                max_connections: c.max_connections,
                transport: Some(Arc::new(TransportSpec {
                    tls: Some(tls),
                    ws: None,
                    handshake_timeout: Duration::from_secs(c.handshake_timeout.into()),
                })),
                key,
            });
        }
        for (name, c) in l.ws.iter().filter(|(_, c)| c.enable) {
            plans.push(ListenerPlan {
                key: format!("listeners.ws.{name}"),
                bind: c.bind,
                max_connections: c.max_connections,
                transport: Some(Arc::new(TransportSpec {
                    tls: None,
                    ws: Some(ws_spec(&c.websocket)),
                    handshake_timeout: Duration::from_secs(c.handshake_timeout.into()),
                })),
            });
        }
        for (name, c) in l.wss.iter().filter(|(_, c)| c.enable) {
            let key = format!("listeners.wss.{name}");
            let tls = self.tls_spec(&key, &c.ssl_options, c.peer_cert_as_username)?;
            plans.push(ListenerPlan {
                bind: c.bind,
                max_connections: c.max_connections,
                transport: Some(Arc::new(TransportSpec {
                    tls: Some(tls),
                    ws: Some(ws_spec(&c.websocket)),
                    handshake_timeout: Duration::from_secs(c.handshake_timeout.into()),
                })),
                key,
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
