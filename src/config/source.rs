//! The layers a configuration is built from (TOML, environment) and the
//! record of which layer set which key, used to say where a bad value came
//! from.

use super::error::{ConfigError, Origin};
use figment::error::{Actual, Kind};
use figment::value::{Dict, Map, Value};
use figment::{Metadata, Profile, Provider, Source};
use std::collections::BTreeMap;

/// Only variables with this prefix are read; all of them must be config
/// keys.
pub const ENV_PREFIX: &str = "RINGMQ_";
/// Separates key levels in a variable name: `RINGMQ_MQTT__MAX_INFLIGHT`.
pub const ENV_LEVEL_SEPARATOR: &str = "__";

const ENV_LAYER_NAME: &str = "ringmq environment variables";
const TEXT_LAYER_NAME: &str = "ringmq TOML text";

/// One parsed layer handed to figment.
pub(crate) struct Layer {
    metadata: Metadata,
    dict: Dict,
}

impl Provider for Layer {
    fn metadata(&self) -> Metadata {
        self.metadata.clone()
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        Ok(Map::from([(Profile::Default, self.dict.clone())]))
    }
}

/// Which layer last set each leaf key (dotted path).
#[derive(Clone, Debug, Default)]
pub(crate) struct Provenance {
    origins: BTreeMap<String, Origin>,
}

impl Provenance {
    /// Where `key` (a leaf or a table) was set; `Default` if nowhere.
    pub(crate) fn origin_of(&self, key: &str) -> Origin {
        self.candidates(key)
            .next()
            .cloned()
            .unwrap_or(Origin::Default)
    }

    /// Keys equal to `key` or below it, with their origins.
    fn candidates<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a Origin> + 'a {
        self.origins
            .range::<str, _>((std::ops::Bound::Included(key), std::ops::Bound::Unbounded))
            .take_while(move |(k, _)| k.starts_with(key))
            .filter(move |(k, _)| k.len() == key.len() || k[key.len()..].starts_with('.'))
            .map(|(_, origin)| origin)
    }

    /// The origin of a figment error: its metadata tells which layer the
    /// value came from, the recorded keys tell which env var or file.
    fn origin_of_error(&self, key: &str, metadata: Option<&Metadata>) -> Origin {
        let Some(metadata) = metadata else {
            return self.origin_of(key);
        };
        if let Some(Source::File(path)) = &metadata.source {
            return Origin::File(path.clone());
        }
        if metadata.name == TEXT_LAYER_NAME {
            return Origin::Text;
        }
        if metadata.name == ENV_LAYER_NAME {
            if let Some(origin) = self
                .candidates(key)
                .find(|origin| matches!(origin, Origin::Env(_)))
            {
                return origin.clone();
            }
        }
        self.origin_of(key)
    }

    fn record(&mut self, key: String, origin: Origin) {
        self.origins.insert(key, origin);
    }

    /// Turns figment's structured error into a message naming the key, the
    /// value, what is allowed and where the value came from.
    pub(crate) fn error_from_figment(&self, error: figment::Error) -> ConfigError {
        let key = display_key(&error.path);
        let origin = self.origin_of_error(&key, error.metadata.as_ref());
        // `RINGMQ_` or `RINGMQ_MQTT__` give empty key segments; quote the
        // path so the message does not show a blank.
        let key = if error.path.iter().any(String::is_empty) {
            format!("{key:?}")
        } else {
            key
        };
        match error.kind {
            Kind::UnknownField(_, known) => {
                let section = display_key(&error.path[..error.path.len().saturating_sub(1)]);
                ConfigError::UnknownKey {
                    key,
                    origin,
                    section,
                    known: known.to_vec(),
                }
            }
            Kind::InvalidType(actual, expected) | Kind::InvalidValue(actual, expected) => {
                ConfigError::InvalidValue {
                    key,
                    origin,
                    value: render_actual(&actual),
                    allowed: describe_expected(&expected),
                }
            }
            // A required key (only inside `[[authorization.rules]]`) left out.
            Kind::MissingField(field) => ConfigError::InvalidValue {
                key: format!("{key}.{field}"),
                origin,
                value: "nothing".to_string(),
                allowed: "a value: this key is required".to_string(),
            },
            Kind::UnknownVariant(variant, known) => ConfigError::InvalidValue {
                key,
                origin,
                value: format!("{variant:?}"),
                allowed: format!("one of {}", known.join(", ")),
            },
            other => ConfigError::InvalidValue {
                key,
                origin,
                value: "(see allowed)".to_string(),
                allowed: other.to_string(),
            },
        }
    }
}

/// A figment error path as a dotted key. Array items, which figment names
/// by their index, are shown as `rules[0]`: only `[authorization]`,
/// `[server_redirection]` and `[cluster]` have arrays, and they have no
/// maps with operator-chosen names that could be numbers
/// (`listeners.tcp.0` is a listener named "0").
fn display_key(path: &[String]) -> String {
    let in_arrays = path.first().is_some_and(|section| {
        section == "authorization" || section == "server_redirection" || section == "cluster"
    });
    let mut key = String::new();
    for segment in path {
        let is_index = !segment.is_empty() && segment.bytes().all(|b| b.is_ascii_digit());
        if in_arrays && is_index && !key.is_empty() {
            key.push('[');
            key.push_str(segment);
            key.push(']');
        } else {
            if !key.is_empty() {
                key.push('.');
            }
            key.push_str(segment);
        }
    }
    key
}

fn render_actual(actual: &Actual) -> String {
    match actual {
        Actual::Str(s) => format!("{s:?}"),
        Actual::Bool(v) => v.to_string(),
        Actual::Unsigned(v) => v.to_string(),
        Actual::Signed(v) => v.to_string(),
        Actual::Float(v) => v.to_string(),
        Actual::Map => "a table".to_string(),
        Actual::Seq => "an array".to_string(),
        Actual::Unit | Actual::Option => "nothing".to_string(),
        other => other.to_string(),
    }
}

/// serde's derived expectations ("struct MqttConfig", "a map") in the
/// operator's terms.
fn describe_expected(expected: &str) -> String {
    if expected.starts_with("struct ") || expected == "a map" {
        "a table of keys".to_string()
    } else {
        expected.to_string()
    }
}

/// Parses TOML text into a layer, recording every leaf key's origin.
pub(crate) fn toml_layer(
    text: &str,
    origin: &Origin,
    provenance: &mut Provenance,
) -> Result<Layer, ConfigError> {
    let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
        let offset = e.span().map_or(0, |span| span.start);
        let (line, column) = line_and_column(text, offset);
        ConfigError::Syntax {
            origin: origin.clone(),
            line,
            column,
            // The parser's message may span lines; keep the error one line.
            message: e
                .message()
                .lines()
                .map(str::trim)
                .filter(|line| !line.is_empty())
                .collect::<Vec<_>>()
                .join("; "),
        }
    })?;
    let mut dict = Dict::new();
    for (key, value) in table {
        let value = figment_value(value, &key, origin, provenance);
        dict.insert(key, value);
    }
    let metadata = match origin {
        Origin::File(path) => {
            Metadata::named(path.display().to_string()).source(Source::File(path.clone()))
        }
        _ => Metadata::named(TEXT_LAYER_NAME),
    };
    Ok(Layer { metadata, dict })
}

/// 1-based line and column (in characters) of a byte offset.
fn line_and_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}

fn figment_value(
    value: toml::Value,
    key: &str,
    origin: &Origin,
    provenance: &mut Provenance,
) -> Value {
    match value {
        toml::Value::Table(table) => {
            let mut dict = Dict::new();
            for (child, value) in table {
                let child_key = format!("{key}.{child}");
                dict.insert(child, figment_value(value, &child_key, origin, provenance));
            }
            // An empty table still counts as set here, for error origins.
            provenance.record(key.to_string(), origin.clone());
            Value::from(dict)
        }
        leaf => {
            provenance.record(key.to_string(), origin.clone());
            match leaf {
                toml::Value::String(s) => Value::from(s),
                toml::Value::Integer(i) => Value::from(i),
                toml::Value::Float(f) => Value::from(f),
                toml::Value::Boolean(b) => Value::from(b),
                // No key takes a date; as a string it is reported verbatim.
                toml::Value::Datetime(dt) => Value::from(dt.to_string()),
                toml::Value::Array(items) => Value::from(
                    items
                        .into_iter()
                        .map(|item| figment_value(item, key, origin, provenance))
                        .collect::<Vec<_>>(),
                ),
                toml::Value::Table(_) => unreachable!("handled above"),
            }
        }
    }
}

/// Builds the env layer from `RINGMQ_` variables. Values stay strings: the
/// field readers know the type they want (so `"1MB"`, `"[::]:1883"` and
/// `"64"` all arrive as written).
pub(crate) fn env_layer(
    env: &[(String, String)],
    provenance: &mut Provenance,
) -> Result<Layer, ConfigError> {
    let mut vars: Vec<&(String, String)> = env
        .iter()
        .filter(|(name, _)| name.starts_with(ENV_PREFIX))
        .collect();
    // Deterministic whatever order the caller's map had.
    vars.sort();
    let mut dict = Dict::new();
    let mut var_of_key: BTreeMap<String, &str> = BTreeMap::new();
    for (name, value) in vars {
        let path: Vec<String> = name[ENV_PREFIX.len()..]
            .split(ENV_LEVEL_SEPARATOR)
            .map(str::to_ascii_lowercase)
            .collect();
        let key = path.join(".");
        // Two variables for one key (or one for a table and one for a key
        // inside it) is ambiguous; refuse rather than pick one.
        let clash = var_of_key.iter().find(|(other, _)| {
            **other == key
                || other.starts_with(&format!("{key}."))
                || key.starts_with(&format!("{other}."))
        });
        if let Some((other_key, other_var)) = clash {
            return Err(ConfigError::InvalidValue {
                key,
                origin: Origin::Env(name.clone()),
                value: format!("{value:?}"),
                allowed: format!(
                    "one environment variable per key, but {other_var} also sets {other_key}"
                ),
            });
        }
        var_of_key.insert(key.clone(), name);
        provenance.record(key, Origin::Env(name.clone()));
        insert_nested(&mut dict, &path, Value::from(value.clone()));
    }
    Ok(Layer {
        metadata: Metadata::named(ENV_LAYER_NAME),
        dict,
    })
}

fn insert_nested(dict: &mut Dict, path: &[String], value: Value) {
    match path {
        [] => unreachable!("split yields at least one segment"),
        [leaf] => {
            dict.insert(leaf.clone(), value);
        }
        [head, rest @ ..] => {
            let child = dict
                .entry(head.clone())
                .or_insert_with(|| Value::from(Dict::new()));
            match child {
                Value::Dict(_, child) => insert_nested(child, rest, value),
                _ => unreachable!("clashing env keys are refused before insertion"),
            }
        }
    }
}
