//! `[server_redirection]`: where MQTT 5 clients are sent when the node is
//! full. One `validate` serves the config file, the environment and the
//! admin API, so all three give the same messages.

use super::value;
use crate::admission::{RedirectServer, Redirection, Strategy};
use crate::limits;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// `[server_redirection]`: when the node holds `max_connections` MQTT
/// connections, MQTT 5 clients are sent to another server (CONNACK 0x9C
/// with a Server Reference), v3.1.1 clients refused (return code 3). See
/// docs/redirection.md. Also readable and replaceable at run time through
/// the admin API (`/api/v5/config/server_redirection`), which goes through
/// the same readers and [`ServerRedirectionConfig::validate`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerRedirectionConfig {
    /// `enable`: redirect at the cap. Default `false`.
    #[serde(deserialize_with = "value::bool")]
    pub enable: bool,
    /// `redirect_strategy`: `"random"` (uniform), `"round_robin"` (the
    /// configured order, node-wide) or `"least_connections"` (the running
    /// cluster node with the fewest connections; a clustered node only).
    /// Default `"random"`.
    #[serde(
        deserialize_with = "de_redirect_strategy",
        serialize_with = "ser_redirect_strategy"
    )]
    pub redirect_strategy: Strategy,
    /// `max_connections`: MQTT connections on the whole node (every
    /// listener, every shard) at which redirection starts. 0 to
    /// `limits::CONNECTIONS_PER_NODE_MAX` (0 sends every new client away).
    /// Default 1000.
    #[serde(deserialize_with = "de_redirection_max_connections")]
    pub max_connections: u32,
    /// `redirect_servers`: `[[server_redirection.redirect_servers]]` tables,
    /// in order (round robin follows it). Required when `enable = true`.
    /// From the environment: `RINGMQ_SERVER_REDIRECTION__REDIRECT_SERVERS__0__HOST`
    /// and so on, indices from 0 (they replace the file's list).
    #[serde(deserialize_with = "de_redirect_servers")]
    pub redirect_servers: Vec<RedirectServerConfig>,
}

impl Default for ServerRedirectionConfig {
    fn default() -> Self {
        ServerRedirectionConfig {
            enable: false,
            redirect_strategy: Strategy::Random,
            max_connections: 1000,
            redirect_servers: Vec::new(),
        }
    }
}

/// One `[[server_redirection.redirect_servers]]` table. Host and port are
/// read leniently and checked by [`ServerRedirectionConfig::validate`], so
/// the config file and the admin API give the same messages.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedirectServerConfig {
    /// `host`: host name, IPv4 or IPv6 address (brackets optional).
    /// Required.
    #[serde(deserialize_with = "de_redirect_host")]
    pub host: String,
    /// `port`: 1 to 65535. Default 1883.
    #[serde(
        default = "default_redirect_port",
        deserialize_with = "de_redirect_port"
    )]
    pub port: u32,
    /// `description`: for operators; never sent to clients.
    #[serde(
        default,
        deserialize_with = "de_redirect_description",
        skip_serializing_if = "Option::is_none"
    )]
    pub description: Option<String>,
}

fn default_redirect_port() -> u32 {
    1883
}

/// A bad `[server_redirection]` value: the field (relative to the section,
/// e.g. `redirect_servers[1].host`), the value and what is allowed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub value: String,
    pub allowed: String,
}

impl ServerRedirectionConfig {
    /// Checks that the readers leave open (host syntax, port range, a
    /// server list when enabled). The one validation of this section, for
    /// the config file, the environment and the admin API alike.
    pub fn validate(&self) -> Result<(), FieldError> {
        self.validate_in(false)
    }

    /// [`Self::validate`] for a node that is `clustered` or not: a
    /// clustered node redirects to its running peers when it lists no
    /// servers, and only a clustered node has the load figures
    /// `least_connections` needs.
    pub fn validate_in(&self, clustered: bool) -> Result<(), FieldError> {
        if !clustered && self.redirect_strategy == Strategy::LeastConnections {
            return Err(FieldError {
                field: "redirect_strategy".to_string(),
                value: "\"least_connections\"".to_string(),
                allowed: "\"random\" or \"round_robin\" on a node alone; \"least_connections\" \
                          needs a cluster (cluster.discovery_strategy other than \"singleton\")"
                    .to_string(),
            });
        }
        if self.redirect_servers.len() > limits::REDIRECT_SERVERS_MAX {
            return Err(FieldError {
                field: "redirect_servers".to_string(),
                value: format!("{} servers", self.redirect_servers.len()),
                allowed: format!("at most {} servers", limits::REDIRECT_SERVERS_MAX),
            });
        }
        for (i, server) in self.redirect_servers.iter().enumerate() {
            if !is_redirect_host(&server.host) {
                return Err(FieldError {
                    field: format!("redirect_servers[{i}].host"),
                    value: format!("{:?}", server.host),
                    allowed: REDIRECT_HOST_ALLOWED.to_string(),
                });
            }
            if !(1..=u32::from(u16::MAX)).contains(&server.port) {
                return Err(FieldError {
                    field: format!("redirect_servers[{i}].port"),
                    value: server.port.to_string(),
                    allowed: "a port from 1 to 65535".to_string(),
                });
            }
        }
        if self.enable && self.redirect_servers.is_empty() && !clustered {
            return Err(FieldError {
                field: "redirect_servers".to_string(),
                value: "no servers".to_string(),
                allowed: "at least one server when server_redirection.enable is true \
                          (add [[server_redirection.redirect_servers]] with a host; a clustered \
                          node redirects to its running peers instead)"
                    .to_string(),
            });
        }
        Ok(())
    }

    /// The live form the shards read. Call on a validated config.
    pub fn to_redirection(&self) -> Redirection {
        Redirection {
            enable: self.enable,
            strategy: self.redirect_strategy,
            max_connections: self.max_connections as usize,
            servers: self
                .redirect_servers
                .iter()
                .map(|s| {
                    let port = u16::try_from(s.port).expect("validated port");
                    RedirectServer::new(&s.host, port, s.description.clone())
                })
                .collect(),
        }
    }
}

const REDIRECT_HOST_ALLOWED: &str =
    "a host name, an IPv4 address or an IPv6 address (optionally in brackets), e.g. \
     \"server1.example.com\", \"10.0.0.2\" or \"fd00::2\"";

/// A DNS host name (letters, digits, '-' inside labels, dots between
/// labels) or an IP literal.
fn is_redirect_host(host: &str) -> bool {
    let bare = crate::admission::strip_brackets(host);
    if bare.parse::<std::net::IpAddr>().is_ok() {
        return true;
    }
    if host.starts_with('[') {
        return false;
    }
    let name = host.strip_suffix('.').unwrap_or(host);
    !name.is_empty()
        && name.len() <= limits::REDIRECT_HOST_LEN_MAX_BYTES
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

fn de_redirect_strategy<'de, D: Deserializer<'de>>(d: D) -> Result<Strategy, D::Error> {
    value::one_of(d, &Strategy::ALL.map(Strategy::as_str), Strategy::parse)
}

fn ser_redirect_strategy<S: Serializer>(s: &Strategy, ser: S) -> Result<S::Ok, S::Error> {
    ser.serialize_str(s.as_str())
}

fn de_redirection_max_connections<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    value::int_in(d, 0, limits::CONNECTIONS_PER_NODE_MAX)
}

fn de_redirect_servers<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Vec<RedirectServerConfig>, D::Error> {
    value::table_array_or_indexed(
        d,
        "an array of [[server_redirection.redirect_servers]] tables with host, port, description",
    )
}

fn de_redirect_host<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    // Any string here; `validate` checks the syntax and names the server.
    value::string_matching(d, "a string: a host name, IPv4 or IPv6 address", |_| true)
        .map(|s| s.trim().to_string())
}

fn de_redirect_port<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    // Wide here so `validate` reports 0 and 65536 with the section's message.
    value::int_in(d, 0, u32::MAX)
}

fn de_redirect_description<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let allowed = format!(
        "a string of at most {} bytes",
        limits::REDIRECT_DESCRIPTION_LEN_MAX_BYTES
    );
    value::string_matching(d, &allowed, |s| {
        s.len() <= limits::REDIRECT_DESCRIPTION_LEN_MAX_BYTES
    })
    .map(Some)
}
