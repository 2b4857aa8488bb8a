//! Configuration errors. Every message names the key, the offending value,
//! what is allowed, and where the value came from, so an operator can fix it
//! without reading the source.

use std::fmt;
use std::path::PathBuf;

/// Where a configuration value came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    /// The built-in default (no file or env var set the key).
    Default,
    /// The TOML file at this path.
    File(PathBuf),
    /// TOML text handed to [`super::Config::load_from`] (no file behind it).
    Text,
    /// This environment variable, e.g. `RINGMQ_MQTT__MAX_INFLIGHT`.
    Env(String),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Default => f.write_str("(default)"),
            Origin::File(path) => write!(f, "in {}", path.display()),
            Origin::Text => f.write_str("in the TOML text"),
            Origin::Env(var) => write!(f, "(from env {var})"),
        }
    }
}

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file could not be read.
    #[error("cannot read config file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// The TOML is malformed. `line` and `column` are 1-based.
    #[error("TOML syntax error {origin} at line {line}, column {column}: {message}")]
    Syntax {
        origin: Origin,
        line: usize,
        column: usize,
        message: String,
    },

    /// A key that is not part of the configuration schema (a typo, or a
    /// `RINGMQ_` variable that is not a config key).
    #[error("unknown key {key} {origin}; known keys {}: {}", section_label(section), known.join(", "))]
    UnknownKey {
        /// Dotted path of the unknown key, e.g. `mqtt.max_inflght`.
        key: String,
        origin: Origin,
        /// Dotted path of the table the key was found in; empty at top level.
        section: String,
        known: Vec<&'static str>,
    },

    /// A known key with a value outside what is allowed.
    #[error("invalid value for {key} {origin}: {value}; allowed: {allowed}")]
    InvalidValue {
        /// Dotted path, e.g. `mqtt.max_inflight`.
        key: String,
        origin: Origin,
        /// The value as given (strings quoted).
        value: String,
        /// What would have been accepted.
        allowed: String,
    },

    /// The process's CPU affinity mask could not be read.
    #[error("cannot read the CPU affinity mask (needed to place shards): {0}")]
    Affinity(#[source] std::io::Error),
}

fn section_label(section: &str) -> String {
    if section.is_empty() {
        "at the top level".to_string()
    } else {
        format!("in [{section}]")
    }
}

impl ConfigError {
    /// The dotted key path the error is about, if it is about one key.
    pub fn key(&self) -> Option<&str> {
        match self {
            ConfigError::UnknownKey { key, .. } | ConfigError::InvalidValue { key, .. } => {
                Some(key)
            }
            _ => None,
        }
    }
}
