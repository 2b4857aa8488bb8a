//! The parameters of an evacuation and of a rebalance, as the HTTP API's
//! JSON bodies and `ringmq ctl rebalance start` give them: EMQX's names,
//! EMQX's defaults, every value checked with an error naming its field.
//!
//! Durations are whole seconds and rates whole counts per second, as in
//! EMQX's API; node lists are node names (`name@host`).

use crate::admission::{format_reference, strip_brackets};
use crate::limits;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// EMQX's defaults.
pub const DEFAULT_EVICT_RATE: u64 = 500;
pub const DEFAULT_WAIT_S: u64 = 60;
pub const DEFAULT_ABS_THRESHOLD: u64 = 1000;
pub const DEFAULT_REL_THRESHOLD: f64 = 1.1;

/// A refused parameter: which field, and why.
#[derive(Clone, Debug, PartialEq)]
pub struct ParamError {
    pub field: String,
    pub message: String,
}

impl ParamError {
    fn new(field: &str, message: impl Into<String>) -> ParamError {
        ParamError {
            field: field.to_string(),
            message: format!("{field}: {}", message.into()),
        }
    }
}

impl std::fmt::Display for ParamError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// `POST /api/v5/load_rebalance/{node}/evacuation/start`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EvacuationParams {
    /// Server References given to MQTT 5 clients (`host:port` each), in
    /// order; empty: none (0x9C without a reference).
    pub redirect_to: Vec<String>,
    pub conn_evict_rate: u64,
    /// Nodes the sessions left after `wait_takeover` move to; empty: every
    /// other running node.
    pub migrate_to: Vec<String>,
    pub wait_takeover_s: u64,
    pub sess_evict_rate: u64,
    /// How long the node reports itself unavailable to load balancers
    /// while it still accepts clients, before it refuses them.
    pub wait_health_check_s: u64,
}

impl Default for EvacuationParams {
    fn default() -> Self {
        EvacuationParams {
            redirect_to: Vec::new(),
            conn_evict_rate: DEFAULT_EVICT_RATE,
            migrate_to: Vec::new(),
            wait_takeover_s: DEFAULT_WAIT_S,
            sess_evict_rate: DEFAULT_EVICT_RATE,
            wait_health_check_s: DEFAULT_WAIT_S,
        }
    }
}

/// The fields an evacuation body may have.
pub const EVACUATION_FIELDS: [&str; 6] = [
    "redirect_to",
    "conn_evict_rate",
    "migrate_to",
    "wait_takeover",
    "sess_evict_rate",
    "wait_health_check",
];

impl EvacuationParams {
    /// From a JSON body: absent fields take their defaults, unknown ones
    /// are refused.
    pub fn from_json(body: &Value) -> Result<EvacuationParams, ParamError> {
        let fields = object(body, &EVACUATION_FIELDS)?;
        let d = EvacuationParams::default();
        Ok(EvacuationParams {
            redirect_to: match fields.get("redirect_to") {
                None | Some(Value::Null) => d.redirect_to,
                Some(v) => references("redirect_to", v)?,
            },
            conn_evict_rate: rate(fields, "conn_evict_rate")?.unwrap_or(d.conn_evict_rate),
            migrate_to: node_list(fields, "migrate_to")?.unwrap_or(d.migrate_to),
            wait_takeover_s: wait(fields, "wait_takeover")?.unwrap_or(d.wait_takeover_s),
            sess_evict_rate: rate(fields, "sess_evict_rate")?.unwrap_or(d.sess_evict_rate),
            wait_health_check_s: wait(fields, "wait_health_check")?
                .unwrap_or(d.wait_health_check_s),
        })
    }

    /// The Server Reference property of a redirect: the references
    /// separated by one space [MQTT 5 §4.11].
    pub fn server_reference(&self) -> Option<String> {
        (!self.redirect_to.is_empty()).then(|| self.redirect_to.join(" "))
    }
}

/// `POST /api/v5/load_rebalance/{node}/start`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RebalanceParams {
    /// The participating nodes; empty: every running node.
    pub nodes: Vec<String>,
    pub wait_health_check_s: u64,
    pub conn_evict_rate: u64,
    pub abs_conn_threshold: u64,
    pub rel_conn_threshold: f64,
    pub wait_takeover_s: u64,
    pub sess_evict_rate: u64,
    pub abs_sess_threshold: u64,
    pub rel_sess_threshold: f64,
}

impl Default for RebalanceParams {
    fn default() -> Self {
        RebalanceParams {
            nodes: Vec::new(),
            wait_health_check_s: DEFAULT_WAIT_S,
            conn_evict_rate: DEFAULT_EVICT_RATE,
            abs_conn_threshold: DEFAULT_ABS_THRESHOLD,
            rel_conn_threshold: DEFAULT_REL_THRESHOLD,
            wait_takeover_s: DEFAULT_WAIT_S,
            sess_evict_rate: DEFAULT_EVICT_RATE,
            abs_sess_threshold: DEFAULT_ABS_THRESHOLD,
            rel_sess_threshold: DEFAULT_REL_THRESHOLD,
        }
    }
}

/// The fields a rebalance body may have.
pub const REBALANCE_FIELDS: [&str; 9] = [
    "nodes",
    "wait_health_check",
    "conn_evict_rate",
    "abs_conn_threshold",
    "rel_conn_threshold",
    "wait_takeover",
    "sess_evict_rate",
    "abs_sess_threshold",
    "rel_sess_threshold",
];

impl RebalanceParams {
    pub fn from_json(body: &Value) -> Result<RebalanceParams, ParamError> {
        let fields = object(body, &REBALANCE_FIELDS)?;
        let d = RebalanceParams::default();
        Ok(RebalanceParams {
            nodes: node_list(fields, "nodes")?.unwrap_or(d.nodes),
            wait_health_check_s: wait(fields, "wait_health_check")?
                .unwrap_or(d.wait_health_check_s),
            conn_evict_rate: rate(fields, "conn_evict_rate")?.unwrap_or(d.conn_evict_rate),
            abs_conn_threshold: positive(fields, "abs_conn_threshold")?
                .unwrap_or(d.abs_conn_threshold),
            rel_conn_threshold: relative(fields, "rel_conn_threshold")?
                .unwrap_or(d.rel_conn_threshold),
            wait_takeover_s: wait(fields, "wait_takeover")?.unwrap_or(d.wait_takeover_s),
            sess_evict_rate: rate(fields, "sess_evict_rate")?.unwrap_or(d.sess_evict_rate),
            abs_sess_threshold: positive(fields, "abs_sess_threshold")?
                .unwrap_or(d.abs_sess_threshold),
            rel_sess_threshold: relative(fields, "rel_sess_threshold")?
                .unwrap_or(d.rel_sess_threshold),
        })
    }
}

fn object<'a>(body: &'a Value, known: &[&str]) -> Result<&'a Map<String, Value>, ParamError> {
    static EMPTY: std::sync::OnceLock<Map<String, Value>> = std::sync::OnceLock::new();
    let fields = match body {
        Value::Object(m) => m,
        // An empty body: every default.
        Value::Null => EMPTY.get_or_init(Map::new),
        _ => {
            return Err(ParamError {
                field: String::new(),
                message: "the body must be a JSON object".into(),
            })
        }
    };
    if let Some(unknown) = fields.keys().find(|k| !known.contains(&k.as_str())) {
        return Err(ParamError::new(
            unknown,
            format!("unknown field; known fields: {}", known.join(", ")),
        ));
    }
    Ok(fields)
}

fn integer(fields: &Map<String, Value>, field: &str) -> Result<Option<u64>, ParamError> {
    match fields.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_u64()
            .map(Some)
            .ok_or_else(|| ParamError::new(field, format!("{n} is not a whole number >= 0"))),
        Some(other) => Err(ParamError::new(
            field,
            format!("{other} is not a whole number"),
        )),
    }
}

fn rate(fields: &Map<String, Value>, field: &str) -> Result<Option<u64>, ParamError> {
    let Some(n) = integer(fields, field)? else {
        return Ok(None);
    };
    check_rate(field, n).map(Some)
}

/// A rate per second: 1 to `REBALANCE_EVICT_RATE_MAX`.
pub fn check_rate(field: &str, n: u64) -> Result<u64, ParamError> {
    if n == 0 || n > limits::REBALANCE_EVICT_RATE_MAX {
        return Err(ParamError::new(
            field,
            format!(
                "{n} is out of range: a rate per second from 1 to {}",
                limits::REBALANCE_EVICT_RATE_MAX
            ),
        ));
    }
    Ok(n)
}

fn wait(fields: &Map<String, Value>, field: &str) -> Result<Option<u64>, ParamError> {
    let Some(n) = integer(fields, field)? else {
        return Ok(None);
    };
    check_wait(field, n).map(Some)
}

/// Seconds: 0 to `REBALANCE_WAIT_MAX_S`.
pub fn check_wait(field: &str, n: u64) -> Result<u64, ParamError> {
    if n > limits::REBALANCE_WAIT_MAX_S {
        return Err(ParamError::new(
            field,
            format!(
                "{n} is out of range: seconds from 0 to {}",
                limits::REBALANCE_WAIT_MAX_S
            ),
        ));
    }
    Ok(n)
}

fn positive(fields: &Map<String, Value>, field: &str) -> Result<Option<u64>, ParamError> {
    let Some(n) = integer(fields, field)? else {
        return Ok(None);
    };
    check_positive(field, n).map(Some)
}

/// An absolute threshold: at least 1.
pub fn check_positive(field: &str, n: u64) -> Result<u64, ParamError> {
    if n == 0 {
        return Err(ParamError::new(field, "must be at least 1"));
    }
    Ok(n)
}

fn relative(fields: &Map<String, Value>, field: &str) -> Result<Option<f64>, ParamError> {
    match fields.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => {
            let x = n.as_f64().unwrap_or(f64::NAN);
            check_relative(field, x).map(Some)
        }
        Some(other) => Err(ParamError::new(field, format!("{other} is not a number"))),
    }
}

/// A relative threshold: a finite number above 1.0 (1.0 or less would
/// never call a cluster balanced, or always).
pub fn check_relative(field: &str, x: f64) -> Result<f64, ParamError> {
    if !x.is_finite() || x <= 1.0 {
        return Err(ParamError::new(
            field,
            format!("{x} must be a number above 1.0"),
        ));
    }
    Ok(x)
}

/// A node list: a JSON array of names, or one string separated by spaces
/// or commas (the CLI's form, which EMQX's API also takes).
fn node_list(fields: &Map<String, Value>, field: &str) -> Result<Option<Vec<String>>, ParamError> {
    let names: Vec<String> = match fields.get(field) {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(s)) => split_list(s),
        Some(Value::Array(items)) => {
            let mut out = Vec::with_capacity(items.len());
            for item in items {
                match item {
                    Value::String(s) => out.push(s.trim().to_string()),
                    other => {
                        return Err(ParamError::new(
                            field,
                            format!("{other} is not a node name"),
                        ))
                    }
                }
            }
            out
        }
        Some(other) => {
            return Err(ParamError::new(
                field,
                format!("{other} is not a list of node names"),
            ))
        }
    };
    check_nodes(field, names).map(Some)
}

/// Node names: `name@host` each, at most `REBALANCE_LIST_MAX`, no repeats.
pub fn check_nodes(field: &str, names: Vec<String>) -> Result<Vec<String>, ParamError> {
    if names.len() > limits::REBALANCE_LIST_MAX {
        return Err(ParamError::new(
            field,
            format!("at most {} nodes", limits::REBALANCE_LIST_MAX),
        ));
    }
    let mut out: Vec<String> = Vec::with_capacity(names.len());
    for name in names {
        let valid = name
            .split_once('@')
            .is_some_and(|(n, h)| !n.is_empty() && !h.is_empty() && !h.contains('@'));
        if !valid {
            return Err(ParamError::new(
                field,
                format!("{name:?} is not a node name (name@host)"),
            ));
        }
        if !out.contains(&name) {
            out.push(name);
        }
    }
    Ok(out)
}

/// `"a b,c"` → `["a", "b", "c"]`.
pub fn split_list(text: &str) -> Vec<String> {
    text.split([' ', ','])
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

fn references(field: &str, value: &Value) -> Result<Vec<String>, ParamError> {
    let items = match value {
        Value::String(s) => split_list(s),
        Value::Array(items) => items
            .iter()
            .map(|v| match v {
                Value::String(s) => Ok(s.trim().to_string()),
                other => Err(ParamError::new(
                    field,
                    format!("{other} is not a host:port"),
                )),
            })
            .collect::<Result<_, _>>()?,
        other => {
            return Err(ParamError::new(
                field,
                format!("{other} is not a list of host:port"),
            ))
        }
    };
    check_references(field, &items)
}

/// Server References: `host:port` or `[v6]:port` each, normalised.
pub fn check_references(field: &str, items: &[String]) -> Result<Vec<String>, ParamError> {
    if items.len() > limits::REBALANCE_LIST_MAX {
        return Err(ParamError::new(
            field,
            format!("at most {} servers", limits::REBALANCE_LIST_MAX),
        ));
    }
    items
        .iter()
        .map(|item| {
            let bad = || ParamError::new(field, format!("{item:?} is not host:port"));
            let (host, port) = item.rsplit_once(':').ok_or_else(bad)?;
            let port: u16 = port.parse().map_err(|_| bad())?;
            let host = strip_brackets(host);
            if host.is_empty() || port == 0 || host.contains(char::is_whitespace) {
                return Err(bad());
            }
            Ok(format_reference(host, port))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn defaults_are_emqx_s() {
        let e = EvacuationParams::from_json(&json!({})).unwrap();
        assert_eq!(e, EvacuationParams::default());
        assert_eq!((e.conn_evict_rate, e.sess_evict_rate), (500, 500));
        assert_eq!((e.wait_takeover_s, e.wait_health_check_s), (60, 60));
        let r = RebalanceParams::from_json(&Value::Null).unwrap();
        assert_eq!((r.abs_conn_threshold, r.abs_sess_threshold), (1000, 1000));
        assert_eq!((r.rel_conn_threshold, r.rel_sess_threshold), (1.1, 1.1));
    }

    #[test]
    fn evacuation_fields_are_read() {
        let e = EvacuationParams::from_json(&json!({
            "redirect_to": "a.example:1883 [::1]:1884",
            "conn_evict_rate": 10,
            "migrate_to": ["b@127.0.0.2", "c@127.0.0.3"],
            "wait_takeover": 0,
            "sess_evict_rate": 7,
            "wait_health_check": 2,
        }))
        .unwrap();
        assert_eq!(e.redirect_to, ["a.example:1883", "[::1]:1884"]);
        assert_eq!(
            e.server_reference().as_deref(),
            Some("a.example:1883 [::1]:1884")
        );
        assert_eq!(e.migrate_to, ["b@127.0.0.2", "c@127.0.0.3"]);
        assert_eq!((e.conn_evict_rate, e.sess_evict_rate), (10, 7));
        assert_eq!((e.wait_takeover_s, e.wait_health_check_s), (0, 2));
        let nodes = EvacuationParams::from_json(&json!({"migrate_to": "b@h, c@h"})).unwrap();
        assert_eq!(nodes.migrate_to, ["b@h", "c@h"]);
    }

    #[test]
    fn bad_values_name_their_field() {
        let cases = [
            (json!({"conn_evict_rate": 0}), "conn_evict_rate"),
            (json!({"sess_evict_rate": -1}), "sess_evict_rate"),
            (json!({"conn_evict_rate": "fast"}), "conn_evict_rate"),
            (json!({"wait_takeover": 1.5}), "wait_takeover"),
            (
                json!({"wait_health_check": 100_000_000}),
                "wait_health_check",
            ),
            (json!({"redirect_to": "nohost"}), "redirect_to"),
            (json!({"redirect_to": "h:0"}), "redirect_to"),
            (json!({"migrate_to": ["nodename"]}), "migrate_to"),
            (json!({"migrate_to": [1]}), "migrate_to"),
            (json!({"speed": 1}), "speed"),
        ];
        for (body, field) in cases {
            let err = EvacuationParams::from_json(&body).unwrap_err();
            assert_eq!(err.field, field, "{body}");
            assert!(err.message.starts_with(field), "{}", err.message);
        }
        let cases = [
            (json!({"rel_conn_threshold": 1.0}), "rel_conn_threshold"),
            (json!({"rel_sess_threshold": 0.5}), "rel_sess_threshold"),
            (json!({"abs_conn_threshold": 0}), "abs_conn_threshold"),
            (json!({"nodes": "a@h b"}), "nodes"),
            (json!({"redirect_to": "h:1"}), "redirect_to"),
        ];
        for (body, field) in cases {
            let err = RebalanceParams::from_json(&body).unwrap_err();
            assert_eq!(err.field, field, "{body}");
        }
        assert!(EvacuationParams::from_json(&json!([1])).is_err());
    }
}
