//! `[api]` and `[prometheus]`: the admin HTTP API and its metrics
//! endpoint (`src/admin`).

use super::listeners::de_bind;
use super::value;
use serde::{Deserialize, Deserializer, Serialize};
use std::net::SocketAddr;

/// `[api]`: the admin HTTP API (`src/admin`), served by a control-plane
/// thread, never by a shard.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    /// `enable`: serve the API. Default `true`.
    #[serde(deserialize_with = "value::bool")]
    pub enable: bool,
    /// `bind`: `ip:port` as for listeners. Default `"127.0.0.1:18083"`.
    #[serde(deserialize_with = "de_api_bind")]
    pub bind: SocketAddr,
    /// `username` for HTTP basic auth. Default `"admin"` (a warning is
    /// logged at start while the defaults are in use).
    #[serde(deserialize_with = "de_api_username")]
    pub username: String,
    /// `password` for HTTP basic auth. Default `"public"`.
    #[serde(deserialize_with = "de_api_password")]
    pub password: String,
}

pub const DEFAULT_API_USERNAME: &str = "admin";
pub const DEFAULT_API_PASSWORD: &str = "public";

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            enable: true,
            bind: SocketAddr::from(([127, 0, 0, 1], 18083)),
            username: DEFAULT_API_USERNAME.to_string(),
            password: DEFAULT_API_PASSWORD.to_string(),
        }
    }
}

impl ApiConfig {
    /// Whether the well-known default credentials are in use.
    pub fn has_default_credentials(&self) -> bool {
        self.username == DEFAULT_API_USERNAME && self.password == DEFAULT_API_PASSWORD
    }
}

// ---------------------------------------------------------------- [prometheus]

/// `[prometheus]`: the metrics endpoint of the admin API
/// (`GET /api/v5/prometheus/stats`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PrometheusConfig {
    /// `enable_basic_auth`: the endpoint asks for the API's credentials
    /// (`api.username`, `api.password`) like every other route. Default
    /// `false`: a scraper needs none, as with EMQX.
    #[serde(deserialize_with = "value::bool")]
    pub enable_basic_auth: bool,
}

fn de_api_bind<'de, D: Deserializer<'de>>(d: D) -> Result<SocketAddr, D::Error> {
    de_bind(d)
}

fn de_api_username<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    // Basic auth splits user:password at the first ':'.
    value::string_matching(
        d,
        "a non-empty string of at most 255 bytes without ':' or control characters",
        |s| !s.is_empty() && s.len() <= 255 && !s.contains(':') && !s.chars().any(char::is_control),
    )
}

fn de_api_password<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    value::string_matching(
        d,
        "a non-empty string of at most 255 bytes without control characters",
        |s| !s.is_empty() && s.len() <= 255 && !s.chars().any(char::is_control),
    )
}
