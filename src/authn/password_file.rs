//! Mosquitto's password file: one `username:hash` per line, the hash in
//! `$6$` or `$7$` form (`hash.rs`), as `mosquitto_passwd` writes it.
//! Blank lines and `#` comments are skipped; a user name is everything
//! before the first `:`.

use std::collections::HashMap;
use std::path::Path;

use super::file::{content_lines, line_error, read_text, FileError};
use super::hash::PasswordHash;

/// The users of one password file, immutable once loaded (a reload builds
/// a new one).
#[derive(Debug, Default)]
pub struct PasswordFile {
    users: HashMap<String, PasswordHash>,
}

impl PasswordFile {
    /// Reads and parses `path`; the first bad line stops it.
    pub fn load(path: &Path) -> Result<PasswordFile, FileError> {
        PasswordFile::parse(path, &read_text(path)?)
    }

    /// Parses `text` (read from `path`, named in errors).
    pub fn parse(path: &Path, text: &str) -> Result<PasswordFile, FileError> {
        let mut users = HashMap::new();
        for (n, line) in content_lines(text) {
            let Some((user, hash)) = line.split_once(':') else {
                return Err(line_error(
                    path,
                    n,
                    "expected \"username:hash\" (a plain-text password file must first be \
                     hashed with mosquitto_passwd -U)",
                ));
            };
            if user.is_empty() {
                return Err(line_error(path, n, "the user name is empty"));
            }
            let hash = PasswordHash::parse(hash)
                .map_err(|e| line_error(path, n, format!("user {user:?}: {e}")))?;
            if users.insert(user.to_string(), hash).is_some() {
                return Err(line_error(path, n, format!("user {user:?} appears twice")));
            }
        }
        Ok(PasswordFile { users })
    }

    /// The hash of `user`, if the file has that user.
    pub fn get(&self, user: &str) -> Option<&PasswordHash> {
        self.users.get(user)
    }

    pub fn len(&self) -> usize {
        self.users.len()
    }

    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }
}
