//! Authentication (`[authentication]`): who may connect, and the
//! Mosquitto ACL file. Mosquitto- and EMQX-compatible: a Mosquitto password
//! file (`password_file.rs`, hashes in `hash.rs`), EMQX's built-in user
//! database over the admin API (`database.rs`), Mosquitto's ACL file
//! (`acl.rs`).
//!
//! # A CONNECT
//!
//! - No user name: accepted when `allow_anonymous`, else refused with v5
//!   0x87 / 3.1.1 rc 5. Decided on the shard ([`Authn::quick`]).
//! - A user name, and neither a password file nor the database enabled:
//!   accepted (nothing to check against, as Mosquitto without a
//!   `password_file`).
//! - Otherwise the password is checked by a password worker
//!   (`worker.rs`), never on a shard: the password file first, then the
//!   database. A user found in the password file is decided by it (a wrong
//!   password there does not fall through to the database); a user in
//!   neither, or a wrong password, is refused with v5 0x86 / 3.1.1 rc 4.
//!   Only database users can be superusers (`is_superuser`).
//! - Failures are counted ([`Authn::failures_total`], the Prometheus
//!   counter `ringmq_authentication_failures_total`) and logged with the
//!   user name and address, never the password. An address with
//!   `limits::AUTHN_FAILURES_PER_IP_MAX` failures within
//!   `limits::AUTHN_FAILURE_WINDOW` is throttled until that window ends:
//!   its CONNECTs with a user name wait `limits::AUTHN_THROTTLE_DELAY` on
//!   their own task and are refused with 0x86 / rc 4 without a password
//!   check.
//!
//! # Reload
//!
//! [`Authn::reload`] (SIGHUP, `POST /api/v5/authentication/reload`) reads
//! the password file and the ACL file again and swaps them in whole
//! (`ArcSwap`); connected clients stay. A bad file leaves the old one in
//! place and the error names the file and line. Nothing is cached: each
//! check reads the current files, so a changed password is refused from the
//! moment the reload returns.

mod acl;
mod database;
mod file;
pub mod hash;
mod limiter;
mod password_file;
mod worker;

#[cfg(test)]
mod tests;

pub use acl::Acl;
pub use database::{DbError, UserDb, UserInfo, USERS_FILE};
pub use file::FileError;
pub use password_file::PasswordFile;
pub use worker::{reply, Answer, Busy, Reply};

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use arc_swap::{ArcSwap, ArcSwapOption};

use crate::config::AuthenticationConfig;
use limiter::FailureLimiter;
use worker::Workers;

/// What a CONNECT's credentials get.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Accept {
        superuser: bool,
    },
    /// Unknown user or wrong password: v5 0x86 / 3.1.1 rc 4.
    BadCredentials,
    /// The address is throttled: wait `AUTHN_THROTTLE_DELAY`, then as
    /// `BadCredentials`.
    Throttled,
    /// Anonymous while `allow_anonymous = false`: v5 0x87 / 3.1.1 rc 5.
    NotAuthorized,
}

/// The node's authentication state, shared by every shard, the password
/// workers and the admin thread behind an `Arc`.
pub struct Authn {
    allow_anonymous: bool,
    password_file_path: Option<PathBuf>,
    password_file: ArcSwap<PasswordFile>,
    database: Option<UserDb>,
    acl_file_path: Option<PathBuf>,
    acl: ArcSwapOption<Acl>,
    limiter: Mutex<FailureLimiter>,
    workers: Option<Workers>,
    failures: AtomicU64,
}

/// Why the node cannot start its authentication.
#[derive(Debug)]
pub enum StartError {
    /// A file is bad: the config key that names it, and where.
    File {
        key: &'static str,
        error: FileError,
    },
    Threads(std::io::Error),
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::File { key, error } => write!(f, "authentication.{key}: {error}"),
            StartError::Threads(e) => write!(f, "cannot start the password workers: {e}"),
        }
    }
}

fn non_empty(path: &Path) -> Option<PathBuf> {
    (!path.as_os_str().is_empty()).then(|| path.to_path_buf())
}

impl Authn {
    /// Reads the configured files (a bad line stops the start) and starts
    /// the password workers when there are passwords to check. `None` when
    /// `[authentication]` is all defaults: nothing is checked.
    pub fn start(
        config: &AuthenticationConfig,
        data_dir: &Path,
    ) -> Result<Option<Arc<Authn>>, StartError> {
        if !config.is_enabled() {
            return Ok(None);
        }
        let password_file_path = non_empty(&config.password_file);
        let password_file = match &password_file_path {
            Some(path) => PasswordFile::load(path).map_err(|error| StartError::File {
                key: "password_file",
                error,
            })?,
            None => PasswordFile::default(),
        };
        let database = if config.built_in_database {
            Some(UserDb::open(data_dir).map_err(|error| StartError::File {
                key: "built_in_database",
                error,
            })?)
        } else {
            None
        };
        let acl_file_path = non_empty(&config.acl_file);
        let acl = match &acl_file_path {
            Some(path) => Some(Arc::new(Acl::load(path).map_err(|error| {
                StartError::File {
                    key: "acl_file",
                    error,
                }
            })?)),
            None => None,
        };
        let checks_passwords = password_file_path.is_some() || database.is_some();
        let workers = if checks_passwords {
            Some(Workers::start().map_err(StartError::Threads)?)
        } else {
            None
        };
        Ok(Some(Arc::new(Authn {
            allow_anonymous: config.allow_anonymous,
            password_file_path,
            password_file: ArcSwap::from_pointee(password_file),
            database,
            acl_file_path,
            acl: ArcSwapOption::new(acl),
            limiter: Mutex::new(FailureLimiter::default()),
            workers,
            failures: AtomicU64::new(0),
        })))
    }

    /// The verdict when it needs no password check (no user name, or no
    /// password source); `None`: submit it ([`Authn::submit`]).
    pub fn quick(&self, username: Option<&str>) -> Option<Verdict> {
        match username {
            None if self.allow_anonymous => Some(Verdict::Accept { superuser: false }),
            None => {
                self.failures.fetch_add(1, Ordering::Relaxed);
                Some(Verdict::NotAuthorized)
            }
            Some(_) if self.workers.is_none() => Some(Verdict::Accept { superuser: false }),
            Some(_) => None,
        }
    }

    /// Queues a password check on the workers; `done` gets the verdict on a
    /// worker thread. `Busy`: the queue is full, refuse now.
    pub fn submit(
        self: &Arc<Self>,
        addr: Option<IpAddr>,
        username: String,
        password: Option<Vec<u8>>,
        done: impl FnOnce(Verdict) + Send + 'static,
    ) -> Result<(), Busy> {
        let Some(workers) = &self.workers else {
            done(Verdict::Accept { superuser: false });
            return Ok(());
        };
        let this = Arc::clone(self);
        workers.try_submit(move || {
            let verdict = this.check(addr, &username, password.as_deref(), Instant::now());
            done(verdict)
        })
    }

    /// The password check itself (slow: run on a worker).
    pub fn check(
        &self,
        addr: Option<IpAddr>,
        username: &str,
        password: Option<&[u8]>,
        now: Instant,
    ) -> Verdict {
        if let Some(addr) = addr {
            if self.limiter().is_throttled(addr, now) {
                self.failures.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(%addr, username, "authentication throttled");
                return Verdict::Throttled;
            }
        }
        let found = match self.password_file.load().get(username) {
            Some(hash) => Some((hash.clone(), false)),
            None => self
                .database
                .as_ref()
                .and_then(|db| db.credentials(username)),
        };
        let verdict = match (found, password) {
            (Some((hash, superuser)), Some(password)) if hash.verify(password) => {
                Verdict::Accept { superuser }
            }
            _ => Verdict::BadCredentials,
        };
        if verdict == Verdict::BadCredentials {
            self.failures.fetch_add(1, Ordering::Relaxed);
            if let Some(addr) = addr {
                self.limiter().record_failure(addr, now);
            }
            tracing::info!(
                addr = ?addr,
                username,
                "authentication failed: unknown user or wrong password"
            );
        }
        verdict
    }

    fn limiter(&self) -> std::sync::MutexGuard<'_, FailureLimiter> {
        self.limiter.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Reads the password file and the ACL file again; on an error the old
    /// ones stay and the error names the file, the line and the key.
    pub fn reload(&self) -> Result<(), StartError> {
        let password_file = match &self.password_file_path {
            Some(path) => Some(PasswordFile::load(path).map_err(|error| StartError::File {
                key: "password_file",
                error,
            })?),
            None => None,
        };
        let acl = match &self.acl_file_path {
            Some(path) => Some(Acl::load(path).map_err(|error| StartError::File {
                key: "acl_file",
                error,
            })?),
            None => None,
        };
        // Both or neither: the second file's error must not leave the first
        // one swapped.
        if let Some(p) = password_file {
            self.password_file.store(Arc::new(p));
        }
        if let Some(acl) = acl {
            self.acl.store(Some(Arc::new(acl)));
        }
        tracing::info!("authentication files reloaded");
        Ok(())
    }

    /// The ACL file as loaded now, when one is configured.
    /// A guard, not an `Arc` clone: checked on every PUBLISH, and a
    /// reference count shared by every shard would bounce between CPUs.
    pub fn acl(&self) -> arc_swap::Guard<Option<Arc<Acl>>> {
        self.acl.load()
    }

    /// Whether an ACL file is configured (it may be reloaded, never
    /// removed).
    pub fn has_acl(&self) -> bool {
        self.acl_file_path.is_some()
    }

    /// The built-in database, when enabled.
    pub fn database(&self) -> Option<&UserDb> {
        self.database.as_ref()
    }

    /// Failed authentications since start (bad credentials, throttled
    /// attempts, refused anonymous clients).
    pub fn failures_total(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }
}

impl std::fmt::Debug for Authn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authn")
            .field("allow_anonymous", &self.allow_anonymous)
            .field("password_file", &self.password_file_path)
            .field("built_in_database", &self.database.is_some())
            .field("acl_file", &self.acl_file_path)
            .finish_non_exhaustive()
    }
}
