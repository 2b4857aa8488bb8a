//! `[node]`: identity and placement of this broker process.

use super::value;
use crate::limits;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::path::PathBuf;

/// `[node]`: identity and placement of this broker process.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NodeConfig {
    /// `node.name`: `name@host`, unique in a cluster.
    /// Default `"ringmq@127.0.0.1"`.
    #[serde(deserialize_with = "de_node_name")]
    pub name: String,
    /// `node.shards`: shard (thread) count, one shard per CPU. `None` (key
    /// absent): one per CPU in the process's affinity mask. 1 to
    /// `limits::SHARDS_MAX`; more than the mask holds fails in
    /// `Config::shard_cpus`.
    #[serde(
        deserialize_with = "de_shards",
        skip_serializing_if = "Option::is_none"
    )]
    pub shards: Option<usize>,
    /// `node.data_dir`: directory for durable state; relative paths are
    /// relative to the working directory. Default `"data"`.
    #[serde(deserialize_with = "de_data_dir")]
    pub data_dir: PathBuf,
    /// `node.idle_poll_us`, microseconds: how long a shard with nothing to
    /// do keeps polling its rings and channels before it sleeps. Polling
    /// answers a message that arrives within that time without a wake-up
    /// (no interrupt, no scheduler, no idle-to-busy transition of the
    /// CPU), at the price of a busy CPU while it lasts. 0: sleep at once.
    /// 0 to `limits::IDLE_POLL_MAX_US`. Default
    /// `limits::IDLE_POLL_DEFAULT_US`.
    #[serde(deserialize_with = "de_idle_poll_us")]
    pub idle_poll_us: u32,
    /// `node.cookie`: the cluster's shared secret; a node with another
    /// cookie is refused at the handshake. Default
    /// [`DEFAULT_NODE_COOKIE`], which a clustered node warns about at start
    /// (EMQX's default is `emqxsecretcookie`, with the same advice).
    #[serde(deserialize_with = "de_cookie")]
    pub cookie: String,
    /// `node.role`: `core` (holds cluster-wide coordination state, such as
    /// the home of a client id) or `replicant` (serves clients, never holds
    /// coordination state; joins `cluster.core_nodes` or the discovered
    /// nodes). Default `core`.
    #[serde(deserialize_with = "de_role", serialize_with = "ser_role")]
    pub role: NodeRole,
}

/// The default `node.cookie`. Running a cluster with it lets anyone who
/// knows ringmq join it, so a clustered node warns at start.
pub const DEFAULT_NODE_COOKIE: &str = "ringmqsecretcookie";

/// `node.role`: what a node does in a cluster (docs/clustering.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NodeRole {
    /// Holds cluster-wide coordination state (client-id homes).
    Core,
    /// Serves clients and routes; asks core nodes for coordination.
    Replicant,
}

impl NodeRole {
    pub const ALL: [NodeRole; 2] = [NodeRole::Core, NodeRole::Replicant];

    pub fn as_str(self) -> &'static str {
        match self {
            NodeRole::Core => "core",
            NodeRole::Replicant => "replicant",
        }
    }

    pub fn parse(text: &str) -> Option<NodeRole> {
        NodeRole::ALL
            .into_iter()
            .find(|role| role.as_str().eq_ignore_ascii_case(text.trim()))
    }
}

impl NodeConfig {
    /// The host part of `node.name` (after the `@`), brackets of an IPv6
    /// literal removed: where other nodes and clients reach this node, and
    /// the name a cluster certificate must carry.
    pub fn host(&self) -> &str {
        let host = self.name.split_once('@').map_or("", |(_, host)| host);
        crate::admission::strip_brackets(host)
    }

    /// Whether `node.cookie` is the built-in default.
    pub fn has_default_cookie(&self) -> bool {
        self.cookie == DEFAULT_NODE_COOKIE
    }
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            name: "ringmq@127.0.0.1".to_string(),
            shards: None,
            data_dir: PathBuf::from("data"),
            idle_poll_us: limits::IDLE_POLL_DEFAULT_US,
            cookie: DEFAULT_NODE_COOKIE.to_string(),
            role: NodeRole::Core,
        }
    }
}

fn is_node_name(name: &str) -> bool {
    let Some((local, host)) = name.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && !host.is_empty()
        && name.len() <= limits::NODE_NAME_LEN_MAX_BYTES
        && !name.chars().any(|c| c.is_whitespace() || c.is_control())
        && !host.contains('@')
}

fn de_node_name<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let allowed = format!(
        "a string name@host of at most {} bytes, without spaces, e.g. \"ringmq@10.0.0.1\"",
        limits::NODE_NAME_LEN_MAX_BYTES
    );
    value::string_matching(d, &allowed, is_node_name)
}

fn de_shards<'de, D: Deserializer<'de>>(d: D) -> Result<Option<usize>, D::Error> {
    let shards_max = u32::try_from(limits::SHARDS_MAX).expect("SHARDS_MAX fits u32");
    value::int_in(d, 1u32, shards_max).map(|shards| Some(shards as usize))
}

fn de_idle_poll_us<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    value::int_in(d, 0u32, limits::IDLE_POLL_MAX_US)
}

fn de_data_dir<'de, D: Deserializer<'de>>(d: D) -> Result<PathBuf, D::Error> {
    value::string_matching(d, "a non-empty directory path", |s| !s.trim().is_empty())
        .map(PathBuf::from)
}

fn de_cookie<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let allowed = format!(
        "a non-empty string of at most {} bytes without spaces or control characters",
        limits::NODE_COOKIE_LEN_MAX_BYTES
    );
    value::string_matching(d, &allowed, |s| {
        !s.is_empty()
            && s.len() <= limits::NODE_COOKIE_LEN_MAX_BYTES
            && !s.chars().any(|c| c.is_whitespace() || c.is_control())
    })
}

fn de_role<'de, D: Deserializer<'de>>(d: D) -> Result<NodeRole, D::Error> {
    value::one_of(d, &NodeRole::ALL.map(NodeRole::as_str), NodeRole::parse)
}

fn ser_role<S: Serializer>(role: &NodeRole, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(role.as_str())
}
