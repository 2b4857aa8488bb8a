//! The config tests, by concern. Helpers shared by all of them are here.

use super::*;
use crate::authz::{DenyAction, DenyReason, Permission, RuleAction, Who};
use std::net::SocketAddr;
use std::path::PathBuf;

fn env(vars: &[(&str, &str)]) -> Vec<(String, String)> {
    vars.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn load(toml: &str) -> Result<Config, ConfigError> {
    Config::load_from(Some(toml), &[])
}

fn load_env(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
    Config::load_from(None, &env(vars))
}

/// The error message, asserting it names everything an operator needs.
fn message(result: Result<Config, ConfigError>, fragments: &[&str]) -> String {
    let error = result.expect_err("config must be refused");
    let text = error.to_string();
    for fragment in fragments {
        assert!(
            text.contains(fragment),
            "message {text:?} lacks {fragment:?}"
        );
    }
    text
}

/// A rule with every optional key set.
const FULL_RULE: &str = r#"
    [[authorization.rules]]
    permission = "deny"
    action = "subscribe"
    topics = ["test/nosubscribe", "secret/#"]
    client_id = "sensor-1"
    username = "alice"
"#;

fn toml_setting(key: &str, value: &str) -> String {
    let (table, leaf) = key.rsplit_once('.').unwrap();
    format!("[{table}]\n{leaf} = {value}\n")
}

fn env_name(key: &str) -> String {
    format!("RINGMQ_{}", key.replace('.', "__").to_ascii_uppercase())
}

mod authorization;
mod cluster;
mod coverage;
mod durable;
mod errors;
mod loading;
mod redirection;
