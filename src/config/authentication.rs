//! `[authentication]`: who may connect (Mosquitto's `allow_anonymous`,
//! `password_file` and `acl_file`, EMQX's built-in database); the files are
//! read by `crate::authn` when the node starts and on reload.

use super::value;
use serde::{Deserialize, Deserializer, Serialize};
use std::path::PathBuf;

/// `[authentication]`; see docs/security.md.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthenticationConfig {
    /// `allow_anonymous`: a CONNECT without a user name is accepted.
    /// `false`: refused with v5 0x87 / 3.1.1 rc 5. Default `true`.
    #[serde(deserialize_with = "value::bool")]
    pub allow_anonymous: bool,
    /// `password_file`: a Mosquitto password file (`mosquitto_passwd`,
    /// `$6$` and `$7$` hashes); empty: none. Default `""`.
    #[serde(deserialize_with = "de_path")]
    pub password_file: PathBuf,
    /// `built_in_database`: users managed over the admin API, stored under
    /// `node.data_dir`. Default `false`.
    #[serde(deserialize_with = "value::bool")]
    pub built_in_database: bool,
    /// `acl_file`: a Mosquitto ACL file; what it does not grant is denied.
    /// Empty: none. Default `""`.
    #[serde(deserialize_with = "de_path")]
    pub acl_file: PathBuf,
}

impl Default for AuthenticationConfig {
    fn default() -> Self {
        AuthenticationConfig {
            allow_anonymous: true,
            password_file: PathBuf::new(),
            built_in_database: false,
            acl_file: PathBuf::new(),
        }
    }
}

impl AuthenticationConfig {
    /// Whether anything here changes the defaults' behaviour (everyone
    /// connects, nothing is checked).
    pub fn is_enabled(&self) -> bool {
        !self.allow_anonymous
            || !self.password_file.as_os_str().is_empty()
            || self.built_in_database
            || !self.acl_file.as_os_str().is_empty()
    }
}

fn de_path<'de, D: Deserializer<'de>>(d: D) -> Result<PathBuf, D::Error> {
    value::string_matching(d, "a file path, or \"\" for none", |s| {
        !s.chars().any(char::is_control)
    })
    .map(|s| PathBuf::from(s.trim()))
}
