//! `[listeners]`: where clients connect, shaped like EMQX's: plain TCP
//! (`listeners.tcp.<name>`, of which `default` always exists), MQTT over
//! TLS (`listeners.ssl.<name>`), WebSocket (`listeners.ws.<name>`) and
//! WebSocket over TLS (`listeners.wss.<name>`). A table that is present is
//! a listener, enabled unless it says `enable = false`; only
//! `listeners.tcp.default` exists by default. What the node starts from
//! these tables is in `listener_plan.rs`.
//!
//! Every kind repeats `enable`, `bind`, `max_connections` (and the
//! transports `handshake_timeout`) as its own fields rather than through a
//! flattened common struct: serde's `flatten` cannot be combined with
//! `deny_unknown_fields`, and a typo in a listener table must stay an error
//! naming the key. The field readers are shared.

use super::value;
use crate::limits;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

/// `[listeners]`: where clients connect.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ListenersConfig {
    /// `listeners.tcp.<name>`: plain-TCP MQTT listeners by name. The
    /// `default` listener always exists (it is filled from defaults when the
    /// file does not mention it; set its `enable = false` to turn it off).
    /// Names are lowercase letters, digits, `_` and `-`, because env var
    /// keys are lowercased.
    pub tcp: BTreeMap<String, TcpListenerConfig>,
    /// `listeners.ssl.<name>`: MQTT over TLS (`config/listeners.rs`).
    /// None by default.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub ssl: BTreeMap<String, SslListenerConfig>,
    /// `listeners.ws.<name>`: MQTT over WebSocket. None by default.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub ws: BTreeMap<String, WsListenerConfig>,
    /// `listeners.wss.<name>`: MQTT over WebSocket over TLS. None by
    /// default.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub wss: BTreeMap<String, WssListenerConfig>,
}

/// The listener every install has.
pub const DEFAULT_LISTENER_NAME: &str = "default";

impl Default for ListenersConfig {
    fn default() -> Self {
        ListenersConfig {
            tcp: BTreeMap::from([(
                DEFAULT_LISTENER_NAME.to_string(),
                TcpListenerConfig::default(),
            )]),
            ssl: BTreeMap::new(),
            ws: BTreeMap::new(),
            wss: BTreeMap::new(),
        }
    }
}

/// `[listeners.tcp.<name>]`: one plain-TCP listener.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TcpListenerConfig {
    /// `enable`: start this listener. Default `true`.
    #[serde(deserialize_with = "value::bool")]
    pub enable: bool,
    /// `bind`: `ip:port` with an IPv4 or bracketed IPv6 literal (no host
    /// names: binding must not depend on DNS). Default `"0.0.0.0:1883"`.
    #[serde(deserialize_with = "de_bind")]
    pub bind: SocketAddr,
    /// `max_connections`: connections open at once on this listener;
    /// further ones are refused. 1 to `limits::CONNECTIONS_PER_LISTENER_MAX`.
    /// Default 100_000.
    #[serde(deserialize_with = "de_max_connections")]
    pub max_connections: u32,
}

impl Default for TcpListenerConfig {
    fn default() -> Self {
        TcpListenerConfig {
            enable: true,
            bind: SocketAddr::from(([0, 0, 0, 0], 1883)),
            max_connections: 100_000,
        }
    }
}

pub(super) fn de_bind<'de, D: Deserializer<'de>>(d: D) -> Result<SocketAddr, D::Error> {
    const ALLOWED: &str =
        "an address ip:port with an IPv4 or [IPv6] literal, e.g. \"0.0.0.0:1883\" or \"[::]:1883\"";
    let text = value::string_matching(d, ALLOWED, |s| s.trim().parse::<SocketAddr>().is_ok())?;
    Ok(text.trim().parse().expect("checked by string_matching"))
}

fn de_max_connections<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    value::int_in(d, 1, limits::CONNECTIONS_PER_LISTENER_MAX)
}

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
                value::one_of(d, &[$($text),+], |s| {
                    [$($name::$variant),+]
                        .into_iter()
                        .find(|v| v.as_str().eq_ignore_ascii_case(s.trim()))
                })
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
