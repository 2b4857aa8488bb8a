//! Broker configuration: built-in defaults, overlaid by a TOML file, overlaid
//! by `RINGMQ_*` environment variables.
//!
//! Keys follow EMQX's names (`mqtt.max_inflight`, `listeners.tcp.default.bind`)
//! so operators can carry their knowledge over; `docs/configuration.md` lists
//! them all and `ringmq.example.toml` shows each with its default.
//!
//! Every problem is reported as a [`ConfigError`] naming the key, the value,
//! what is allowed and where the value came from. Unknown keys are errors,
//! in the file and in the environment alike: a typo must not silently fall
//! back to a default.

mod affinity;
mod api;
mod authentication;
mod authorization;
mod cluster;
mod durable;
mod error;
mod listener_plan;
mod listeners;
mod log;
mod mqtt;
mod node;
mod redirection;
mod source;
mod value;

#[cfg(test)]
mod tests;

pub use api::{ApiConfig, PrometheusConfig, DEFAULT_API_PASSWORD, DEFAULT_API_USERNAME};
pub use authentication::AuthenticationConfig;
pub use authorization::{AuthorizationConfig, AuthorizationRuleConfig};
pub use cluster::is_host_name;
pub use cluster::{
    ClusterConfig, ClusterSslOptionsConfig, DiscoveryStrategy, DnsDiscoveryConfig, DnsRecordType,
    HostPort, StaticDiscoveryConfig,
};
pub use durable::{Backend, DurableSessionsConfig, Engine, RedisConfig, RedisType, SyncMode};
pub use error::{ConfigError, Origin};
pub use listener_plan::ListenerPlan;
pub use listeners::{
    ListenersConfig, PeerCertAsUsername, SslListenerConfig, SslOptionsConfig, TcpListenerConfig,
    Verify, WebsocketConfig, WsListenerConfig, WssListenerConfig, DEFAULT_LISTENER_NAME,
};
pub use log::{LogConfig, LogLevel};
pub use mqtt::MqttConfig;
pub use node::{NodeConfig, NodeRole, DEFAULT_NODE_COOKIE};
pub use redirection::{FieldError, RedirectServerConfig, ServerRedirectionConfig};
pub use source::{ENV_LEVEL_SEPARATOR, ENV_PREFIX};
pub use value::{
    format_duration_ms, format_duration_secs, format_size_bytes, parse_duration_ms,
    parse_duration_secs, parse_size_bytes,
};

use crate::authz::{Authz, AuthzError};
use figment::Figment;
use serde::{Deserialize, Serialize};
use source::Provenance;
use std::net::SocketAddr;
use std::path::Path;

/// The whole broker configuration.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub node: NodeConfig,
    pub listeners: ListenersConfig,
    pub mqtt: MqttConfig,
    pub log: LogConfig,
    pub authentication: AuthenticationConfig,
    pub authorization: AuthorizationConfig,
    pub server_redirection: ServerRedirectionConfig,
    pub api: ApiConfig,
    pub prometheus: PrometheusConfig,
    pub cluster: ClusterConfig,
    pub durable_sessions: DurableSessionsConfig,
    pub redis: RedisConfig,
    /// Which file or env var set each key, so checks made after loading
    /// (`shard_cpus`) can still say where a bad value came from.
    #[serde(skip)]
    provenance: Provenance,
}

impl PartialEq for Config {
    // Equal settings are equal configs, wherever they came from.
    fn eq(&self, other: &Self) -> bool {
        self.node == other.node
            && self.cluster == other.cluster
            && self.listeners == other.listeners
            && self.mqtt == other.mqtt
            && self.log == other.log
            && self.authentication == other.authentication
            && self.authorization == other.authorization
            && self.server_redirection == other.server_redirection
            && self.api == other.api
            && self.prometheus == other.prometheus
            && self.durable_sessions == other.durable_sessions
            && self.redis == other.redis
    }
}

impl Eq for Config {}

impl Config {
    /// Load: defaults <- TOML file (if given) <- environment variables
    /// `RINGMQ_<PATH>` with `__` between levels, e.g.
    /// `RINGMQ_MQTT__MAX_INFLIGHT=64`. Every `RINGMQ_` variable must be a
    /// config key.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let file = match path {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.to_path_buf(),
                    source,
                })?;
                Some((text, Origin::File(path.to_path_buf())))
            }
            None => None,
        };
        let env: Vec<(String, String)> = std::env::vars_os()
            .map(|(name, value)| {
                (
                    name.to_string_lossy().into_owned(),
                    value.to_string_lossy().into_owned(),
                )
            })
            .filter(|(name, _)| name.starts_with(ENV_PREFIX))
            .collect();
        let file = file.as_ref().map(|(text, origin)| (text.as_str(), origin));
        Config::load_layers(file, &env)
    }

    /// Same as [`Config::load`] with the file's text and the environment
    /// given explicitly (tests never read the process environment). Errors
    /// in `toml_text` say "in the TOML text".
    pub fn load_from(
        toml_text: Option<&str>,
        env: &[(String, String)],
    ) -> Result<Config, ConfigError> {
        Config::load_layers(toml_text.map(|text| (text, &Origin::Text)), env)
    }

    fn load_layers(
        toml: Option<(&str, &Origin)>,
        env: &[(String, String)],
    ) -> Result<Config, ConfigError> {
        let mut provenance = Provenance::default();
        let mut figment = Figment::new();
        if let Some((text, origin)) = toml {
            figment = figment.merge(source::toml_layer(text, origin, &mut provenance)?);
        }
        figment = figment.merge(source::env_layer(env, &mut provenance)?);
        let mut config: Config = figment
            .extract()
            .map_err(|e| provenance.error_from_figment(e))?;
        config.provenance = provenance;
        // A file that adds listeners keeps the default one (as EMQX does);
        // `enable = false` turns it off.
        config
            .listeners
            .tcp
            .entry(DEFAULT_LISTENER_NAME.to_string())
            .or_default();
        config.validate()?;
        Ok(config)
    }

    /// Where `key` (dotted path) got its value.
    pub fn origin_of(&self, key: &str) -> Origin {
        self.provenance.origin_of(key)
    }

    /// Checks that span more than one key.
    fn validate(&self) -> Result<(), ConfigError> {
        for (key, name) in self.listener_names() {
            let is_valid_name = !name.is_empty()
                && name.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-'
                });
            if !is_valid_name {
                return Err(ConfigError::InvalidValue {
                    origin: self.origin_of(&key),
                    key,
                    value: format!("{name:?}"),
                    allowed: "a listener name of lowercase letters, digits, '_' and '-'"
                        .to_string(),
                });
            }
        }
        let enabled = self.enabled_binds();
        for (i, (listener, bind)) in enabled.iter().enumerate() {
            if let Some((other, _)) = enabled[..i]
                .iter()
                .find(|(_, other)| binds_overlap(*other, *bind))
            {
                let key = format!("{listener}.bind");
                return Err(ConfigError::InvalidValue {
                    origin: self.origin_of(&key),
                    key,
                    value: format!("{:?}", bind.to_string()),
                    allowed: format!(
                        "an address no other enabled listener binds; \
                         {other}.bind overlaps it"
                    ),
                });
            }
        }
        self.authz()?;
        self.validate_cluster()?;
        self.validate_durable()?;
        if let Err(e) = self
            .server_redirection
            .validate_in(self.cluster.is_clustered())
        {
            let key = format!("server_redirection.{}", e.field);
            // Array items are recorded under the array's key.
            let origin = match self.origin_of(&key) {
                Origin::Default => self.origin_of("server_redirection"),
                origin => origin,
            };
            return Err(ConfigError::InvalidValue {
                key,
                origin,
                value: e.value,
                allowed: e.allowed,
            });
        }
        if self.api.enable {
            if let Some((listener, _)) = self
                .enabled_binds()
                .into_iter()
                .find(|(_, bind)| binds_overlap(*bind, self.api.bind))
            {
                return Err(ConfigError::InvalidValue {
                    key: "api.bind".to_string(),
                    origin: self.origin_of("api.bind"),
                    value: format!("{:?}", self.api.bind.to_string()),
                    allowed: format!(
                        "an address no enabled MQTT listener binds; \
                         {listener}.bind overlaps it"
                    ),
                });
            }
        }
        Ok(())
    }

    /// The topic authorization rule set built from `[authorization]`.
    /// Loading validates it, so this is `Ok` for every loaded config; errors
    /// name the rule by index, e.g. `authorization.rules[2].topics[0]`.
    pub fn authz(&self) -> Result<Authz, ConfigError> {
        let section = &self.authorization;
        Authz::new(&section.rules(), section.no_match).map_err(|error| {
            // Array items are recorded under the array's key.
            let origin = self.origin_of("authorization.rules");
            match error {
                AuthzError::TooManyRules { count } => ConfigError::InvalidValue {
                    key: "authorization.rules".to_string(),
                    origin,
                    value: format!("an array of {count} rules"),
                    allowed: format!("at most {} rules", crate::authz::RULES_MAX),
                },
                AuthzError::InvalidRule {
                    index,
                    field,
                    value,
                    allowed,
                } => ConfigError::InvalidValue {
                    key: format!("authorization.rules[{index}].{field}"),
                    origin,
                    value,
                    allowed,
                },
            }
        })
    }

    /// The TCP listeners to start, by name (`enable = true` only).
    pub fn enabled_tcp_listeners(&self) -> impl Iterator<Item = (&String, &TcpListenerConfig)> {
        self.listeners
            .tcp
            .iter()
            .filter(|(_, listener)| listener.enable)
    }

    /// The CPUs to pin shards to, one per shard: the first `node.shards`
    /// CPUs of the process's affinity mask (all of them when `node.shards`
    /// is unset). Errors, naming `node.shards`, when the mask holds fewer
    /// CPUs than requested.
    pub fn shard_cpus(&self) -> Result<Vec<usize>, ConfigError> {
        let mask_cpus = affinity::cpus_in_affinity_mask().map_err(ConfigError::Affinity)?;
        self.pick_shard_cpus(&mask_cpus)
    }

    fn pick_shard_cpus(&self, mask_cpus: &[usize]) -> Result<Vec<usize>, ConfigError> {
        let Some(shards) = self.node.shards else {
            return Ok(mask_cpus.to_vec());
        };
        if shards > mask_cpus.len() {
            let cpu_list: Vec<String> = mask_cpus.iter().map(usize::to_string).collect();
            return Err(ConfigError::InvalidValue {
                key: "node.shards".to_string(),
                origin: self.origin_of("node.shards"),
                value: shards.to_string(),
                allowed: format!(
                    "an integer from 1 to {} (the CPUs in this process's affinity mask: {}), \
                     or unset for all of them",
                    mask_cpus.len(),
                    cpu_list.join(",")
                ),
            });
        }
        Ok(mask_cpus[..shards].to_vec())
    }

    /// The effective configuration as TOML (for `ringmq --print-config`);
    /// loading it back gives an equal `Config`.
    pub fn to_toml(&self) -> String {
        let body = toml::to_string(self).expect("every config type has a TOML form");
        format!("# ringmq effective configuration\n{body}")
    }
}

/// Whether two listeners would bind the same port on overlapping addresses
/// (one of them the wildcard address of the same family).
fn binds_overlap(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() == b.port()
        && a.is_ipv4() == b.is_ipv4()
        && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
}
