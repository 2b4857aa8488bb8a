//! Password hashes in Mosquitto's formats (`mosquitto_passwd`, Mosquitto
//! 2.0's `password_mosq.c`), also used for the built-in database:
//!
//! - `$6$<salt_b64>$<hash_b64>`: SHA-512 of the password followed by the
//!   salt (Mosquitto 1.6 and `mosquitto_passwd -H sha512`);
//! - `$7$<iterations>$<salt_b64>$<hash_b64>`: PBKDF2-HMAC-SHA512 of the
//!   password with the salt, 64 bytes (`mosquitto_passwd`'s default since
//!   2.0, 101 iterations, 12-byte salt).
//!
//! Base64 is the standard alphabet with padding. The crypto is `ring`'s
//! (already the cluster's and rustls's provider, so no second crypto
//! crate); comparisons are constant-time.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use ring::{digest, pbkdf2};
use std::num::NonZeroU32;

use crate::limits::{AUTHN_HASH_ITERATIONS_MAX, AUTHN_PBKDF2_ITERATIONS};

/// Salt length Mosquitto writes (and the built-in database uses).
pub const SALT_LEN: usize = 12;
/// SHA-512 output, the length of both hash kinds.
const HASH_LEN: usize = 64;

/// One stored password hash.
#[derive(Clone, PartialEq, Eq)]
pub enum PasswordHash {
    /// `$6$`: SHA-512(password ‖ salt).
    Sha512 { salt: Vec<u8>, hash: Vec<u8> },
    /// `$7$`: PBKDF2-HMAC-SHA512(password, salt, iterations).
    Pbkdf2Sha512 {
        iterations: NonZeroU32,
        salt: Vec<u8>,
        hash: Vec<u8>,
    },
}

// Never print a hash, even in a debug log.
impl std::fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PasswordHash::Sha512 { .. } => f.write_str("PasswordHash::Sha512(..)"),
            PasswordHash::Pbkdf2Sha512 { iterations, .. } => {
                write!(f, "PasswordHash::Pbkdf2Sha512({iterations} iterations, ..)")
            }
        }
    }
}

impl PasswordHash {
    /// Parses `$6$...` or `$7$...`; `Err` says what is wrong (never
    /// echoing the hash).
    pub fn parse(text: &str) -> Result<PasswordHash, String> {
        let b64 = |part: &str, what: &str| {
            STANDARD
                .decode(part)
                .map_err(|e| format!("the {what} is not standard base64 ({e})"))
        };
        if let Some(rest) = text.strip_prefix("$6$") {
            let (salt, hash) = rest
                .split_once('$')
                .ok_or("a \"$6$\" hash needs \"$6$<salt>$<hash>\"")?;
            let (salt, hash) = (b64(salt, "salt")?, b64(hash, "hash")?);
            check_lengths(&salt, &hash)?;
            return Ok(PasswordHash::Sha512 { salt, hash });
        }
        if let Some(rest) = text.strip_prefix("$7$") {
            let mut parts = rest.splitn(3, '$');
            let (Some(iterations), Some(salt), Some(hash)) =
                (parts.next(), parts.next(), parts.next())
            else {
                return Err("a \"$7$\" hash needs \"$7$<iterations>$<salt>$<hash>\"".into());
            };
            let iterations = iterations
                .parse::<u32>()
                .ok()
                .filter(|&n| n <= AUTHN_HASH_ITERATIONS_MAX)
                .and_then(NonZeroU32::new)
                .ok_or_else(|| {
                    format!(
                        "the iteration count {iterations:?} is not an integer from 1 to \
                         {AUTHN_HASH_ITERATIONS_MAX}"
                    )
                })?;
            let (salt, hash) = (b64(salt, "salt")?, b64(hash, "hash")?);
            check_lengths(&salt, &hash)?;
            return Ok(PasswordHash::Pbkdf2Sha512 {
                iterations,
                salt,
                hash,
            });
        }
        Err(
            "not a Mosquitto password hash (\"$6$...\" or \"$7$...\"); plain-text password \
             files must be converted with mosquitto_passwd -U"
                .into(),
        )
    }

    /// A new PBKDF2-HMAC-SHA512 hash of `password` with a random salt and
    /// [`AUTHN_PBKDF2_ITERATIONS`] iterations (the built-in database).
    pub fn new_pbkdf2(password: &[u8]) -> PasswordHash {
        let mut salt = vec![0u8; SALT_LEN];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut salt)
            .expect("the system's random source works");
        let iterations = NonZeroU32::new(AUTHN_PBKDF2_ITERATIONS).expect("not zero");
        let mut hash = vec![0u8; HASH_LEN];
        pbkdf2::derive(
            pbkdf2::PBKDF2_HMAC_SHA512,
            iterations,
            &salt,
            password,
            &mut hash,
        );
        PasswordHash::Pbkdf2Sha512 {
            iterations,
            salt,
            hash,
        }
    }

    /// Whether `password` matches. Slow by design for `$7$` (its iteration
    /// count): never call it on a shard (`authn::worker`).
    pub fn verify(&self, password: &[u8]) -> bool {
        match self {
            PasswordHash::Sha512 { salt, hash } => {
                let mut ctx = digest::Context::new(&digest::SHA512);
                ctx.update(password);
                ctx.update(salt);
                constant_time_eq(ctx.finish().as_ref(), hash)
            }
            PasswordHash::Pbkdf2Sha512 {
                iterations,
                salt,
                hash,
            } => pbkdf2::verify(
                pbkdf2::PBKDF2_HMAC_SHA512,
                *iterations,
                salt,
                password,
                hash,
            )
            .is_ok(),
        }
    }

    /// The text form, as `mosquitto_passwd` writes it.
    pub fn encode(&self) -> String {
        match self {
            PasswordHash::Sha512 { salt, hash } => {
                format!("$6${}${}", STANDARD.encode(salt), STANDARD.encode(hash))
            }
            PasswordHash::Pbkdf2Sha512 {
                iterations,
                salt,
                hash,
            } => format!(
                "$7${iterations}${}${}",
                STANDARD.encode(salt),
                STANDARD.encode(hash)
            ),
        }
    }
}

fn check_lengths(salt: &[u8], hash: &[u8]) -> Result<(), String> {
    if salt.is_empty() {
        return Err("the salt is empty".into());
    }
    if hash.len() != HASH_LEN {
        return Err(format!(
            "the hash is {} bytes; a SHA-512 hash is {HASH_LEN}",
            hash.len()
        ));
    }
    Ok(())
}

/// No early exit on the first differing byte.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
