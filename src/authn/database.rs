//! The built-in user database (`built_in_database = true`): users managed
//! over the admin API (EMQX's `password_based:built_in_database`), each
//! with a salted PBKDF2-HMAC-SHA512 hash (`hash.rs`) and a superuser flag,
//! kept in memory and in `node.data_dir/authn/users.json`, rewritten whole
//! on every change (a temporary file, fsync, rename: a crash leaves the old
//! file or the new one, never half of one). Passwords are never stored or
//! returned in clear.
//!
//! Only the admin thread changes it and only password workers read it
//! (never a shard), so a mutex is fine; it is never held across a hash.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use super::file::{read_text, FileError};
use super::hash::PasswordHash;
use crate::limits::{AUTHN_FILE_LINES_MAX, AUTHN_PASSWORD_MAX_BYTES, AUTHN_USER_ID_MAX_BYTES};

/// The file under `node.data_dir`.
pub const USERS_FILE: &str = "authn/users.json";
const FORMAT_VERSION: u32 = 1;

#[derive(Clone, Debug)]
struct User {
    hash: PasswordHash,
    is_superuser: bool,
}

/// A user as listed (never with its password or hash).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct UserInfo {
    pub user_id: String,
    pub is_superuser: bool,
}

/// Why a change was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum DbError {
    /// A field is missing or bad: (field, message).
    Invalid(&'static str, String),
    AlreadyExists,
    NotFound,
    /// The file could not be written; nothing changed.
    Storage(String),
}

#[derive(Serialize, Deserialize)]
struct StoredFile {
    version: u32,
    users: Vec<StoredUser>,
}

#[derive(Serialize, Deserialize)]
struct StoredUser {
    user_id: String,
    password_hash: String,
    is_superuser: bool,
}

pub struct UserDb {
    path: PathBuf,
    users: Mutex<BTreeMap<String, User>>,
}

impl UserDb {
    /// Opens the database under `data_dir` (empty when the file does not
    /// exist yet; created with the first user).
    pub fn open(data_dir: &Path) -> Result<UserDb, FileError> {
        let path = data_dir.join(USERS_FILE);
        let mut users = BTreeMap::new();
        if path.exists() {
            let text = read_text(&path)?;
            let stored: StoredFile = serde_json::from_str(&text).map_err(|e| FileError {
                path: path.clone(),
                line: Some(e.line()),
                message: format!("not a ringmq user database: {e}"),
            })?;
            for (i, u) in stored.users.into_iter().enumerate() {
                let hash = PasswordHash::parse(&u.password_hash).map_err(|e| FileError {
                    path: path.clone(),
                    line: None,
                    message: format!("users[{i}] ({:?}): {e}", u.user_id),
                })?;
                users.insert(
                    u.user_id,
                    User {
                        hash,
                        is_superuser: u.is_superuser,
                    },
                );
            }
        }
        Ok(UserDb {
            path,
            users: Mutex::new(users),
        })
    }

    /// One page (`skip`, `take`) in user id order, and the total count.
    pub fn list(&self, skip: usize, take: usize) -> (Vec<UserInfo>, usize) {
        let users = self.users.lock().expect("not poisoned");
        let page = users
            .iter()
            .skip(skip)
            .take(take)
            .map(|(id, u)| UserInfo {
                user_id: id.clone(),
                is_superuser: u.is_superuser,
            })
            .collect();
        (page, users.len())
    }

    pub fn get(&self, user_id: &str) -> Option<UserInfo> {
        let users = self.users.lock().expect("not poisoned");
        users.get(user_id).map(|u| UserInfo {
            user_id: user_id.to_string(),
            is_superuser: u.is_superuser,
        })
    }

    /// The hash and superuser flag of `user_id`, cloned out so the check
    /// runs without the lock.
    pub fn credentials(&self, user_id: &str) -> Option<(PasswordHash, bool)> {
        let users = self.users.lock().expect("not poisoned");
        users.get(user_id).map(|u| (u.hash.clone(), u.is_superuser))
    }

    pub fn add(&self, user_id: &str, password: &str, is_superuser: bool) -> Result<(), DbError> {
        check_user_id(user_id)?;
        check_password(password)?;
        let hash = PasswordHash::new_pbkdf2(password.as_bytes());
        let mut users = self.users.lock().expect("not poisoned");
        if users.contains_key(user_id) {
            return Err(DbError::AlreadyExists);
        }
        if users.len() >= AUTHN_FILE_LINES_MAX {
            return Err(DbError::Invalid(
                "user_id",
                format!("the database holds {AUTHN_FILE_LINES_MAX} users, its limit"),
            ));
        }
        let mut next = users.clone();
        next.insert(user_id.to_string(), User { hash, is_superuser });
        self.store(&next)?;
        *users = next;
        Ok(())
    }

    /// Changes the password and/or the superuser flag.
    pub fn update(
        &self,
        user_id: &str,
        password: Option<&str>,
        is_superuser: Option<bool>,
    ) -> Result<UserInfo, DbError> {
        let hash = match password {
            Some(p) => {
                check_password(p)?;
                Some(PasswordHash::new_pbkdf2(p.as_bytes()))
            }
            None => None,
        };
        let mut users = self.users.lock().expect("not poisoned");
        let mut next = users.clone();
        let user = next.get_mut(user_id).ok_or(DbError::NotFound)?;
        if let Some(hash) = hash {
            user.hash = hash;
        }
        if let Some(s) = is_superuser {
            user.is_superuser = s;
        }
        let info = UserInfo {
            user_id: user_id.to_string(),
            is_superuser: user.is_superuser,
        };
        self.store(&next)?;
        *users = next;
        Ok(info)
    }

    pub fn delete(&self, user_id: &str) -> Result<(), DbError> {
        let mut users = self.users.lock().expect("not poisoned");
        if !users.contains_key(user_id) {
            return Err(DbError::NotFound);
        }
        let mut next = users.clone();
        next.remove(user_id);
        self.store(&next)?;
        *users = next;
        Ok(())
    }

    /// Writes `users` to a temporary file, syncs it and renames it over the
    /// database file.
    fn store(&self, users: &BTreeMap<String, User>) -> Result<(), DbError> {
        let stored = StoredFile {
            version: FORMAT_VERSION,
            users: users
                .iter()
                .map(|(id, u)| StoredUser {
                    user_id: id.clone(),
                    password_hash: u.hash.encode(),
                    is_superuser: u.is_superuser,
                })
                .collect(),
        };
        let text = serde_json::to_vec_pretty(&stored).expect("serializes");
        let storage = |e: std::io::Error| {
            DbError::Storage(format!("cannot write {}: {e}", self.path.display()))
        };
        crate::atomic_file::write(&self.path, &text).map_err(storage)?;
        Ok(())
    }
}

fn check_user_id(user_id: &str) -> Result<(), DbError> {
    if user_id.is_empty() || user_id.len() > AUTHN_USER_ID_MAX_BYTES {
        return Err(DbError::Invalid(
            "user_id",
            format!("a user id of 1 to {AUTHN_USER_ID_MAX_BYTES} bytes"),
        ));
    }
    if user_id.chars().any(char::is_control) {
        return Err(DbError::Invalid(
            "user_id",
            "a user id without control characters".into(),
        ));
    }
    Ok(())
}

fn check_password(password: &str) -> Result<(), DbError> {
    if password.is_empty() || password.len() > AUTHN_PASSWORD_MAX_BYTES {
        return Err(DbError::Invalid(
            "password",
            format!("a password of 1 to {AUTHN_PASSWORD_MAX_BYTES} bytes"),
        ));
    }
    Ok(())
}
