//! `[log]`: diagnostics.

use super::value;
use serde::{Deserialize, Deserializer, Serialize};

/// `[log]`: diagnostics.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `log.level`: least severe level written. Default `"info"`.
    pub level: LogLevel,
}

/// `log.level` values, most to least severe.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Error,
    Warn,
    #[default]
    Info,
    Debug,
    Trace,
}

impl LogLevel {
    pub const ALL: [LogLevel; 5] = [
        LogLevel::Error,
        LogLevel::Warn,
        LogLevel::Info,
        LogLevel::Debug,
        LogLevel::Trace,
    ];

    /// The spelling in the config file, which is also a valid
    /// `tracing_subscriber::EnvFilter` directive.
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Error => "error",
            LogLevel::Warn => "warn",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
            LogLevel::Trace => "trace",
        }
    }

    fn parse(text: &str) -> Option<LogLevel> {
        let text = text.trim();
        LogLevel::ALL
            .into_iter()
            .find(|level| level.as_str().eq_ignore_ascii_case(text))
    }
}

impl<'de> Deserialize<'de> for LogLevel {
    // By hand rather than derived, so the error lists the levels in the
    // usual "allowed:" form and env values are case-insensitive.
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        value::one_of(d, &LogLevel::ALL.map(LogLevel::as_str), LogLevel::parse)
    }
}
