//! Unit tests: hashes (known vectors), the password file, the ACL file,
//! the failure limiter, the database.

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::time::{Duration, Instant};

use super::acl::{overlaps_for_tests as overlaps, Acl};
use super::hash::PasswordHash;
use super::limiter::FailureLimiter;
use super::password_file::PasswordFile;
use super::UserDb;
use crate::limits::{AUTHN_FAILURES_PER_IP_MAX, AUTHN_FAILURE_WINDOW};

// Written by Debian's mosquitto_passwd 2.0.11 (`-c -b`, and `-H sha512`),
// password "secret".
const PBKDF2_LINE: &str =
    "alice:$7$101$anG9xaxFvdrv6JBe$o8loTEGVAg3MPXn3XjhlZ+4xv79knC62HyRsDAmTuXuy0JlwRy17tdRpb12m+NgG4N7AFkB9u6qN6KVDuTpzLA==";
const SHA512_LINE: &str =
    "bob:$6$4RC1Pxdtuieos9Gt$XF6QqBXX49ACC3H7Vy3lFgKishJzKbayE3wtYaWRPY+clZLqsO64BLajDOZBaj12EVr7ZKtB6dA0Ef96mRt0qw==";

fn file(text: &str) -> Result<PasswordFile, super::FileError> {
    PasswordFile::parse(Path::new("pw"), text)
}

#[test]
fn mosquitto_passwd_lines_verify() {
    let pw = file(&format!("# comment\n\n{PBKDF2_LINE}\n{SHA512_LINE}\r\n")).unwrap();
    assert_eq!(pw.len(), 2);
    let alice = pw.get("alice").unwrap();
    assert!(matches!(alice, PasswordHash::Pbkdf2Sha512 { .. }));
    assert!(alice.verify(b"secret"));
    assert!(!alice.verify(b"Secret"));
    let bob = pw.get("bob").unwrap();
    assert!(matches!(bob, PasswordHash::Sha512 { .. }));
    assert!(bob.verify(b"secret"));
    assert!(!bob.verify(b""));
}

#[test]
fn sha512_known_vector() {
    // SHA-512("abc") (FIPS 180-2), as password "a" + salt "bc".
    let hash = hex::decode(
        "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a\
         2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f",
    )
    .unwrap();
    let h = PasswordHash::Sha512 {
        salt: b"bc".to_vec(),
        hash,
    };
    assert!(h.verify(b"a"));
    assert!(!h.verify(b"b"));
    let again = PasswordHash::parse(&h.encode()).unwrap();
    assert!(again.verify(b"a"));
}

#[test]
fn pbkdf2_sha512_known_vector() {
    // The published PBKDF2-HMAC-SHA512 vector P="password", S="salt",
    // c=1, dkLen=64 (as Python's hashlib.pbkdf2_hmac gives it).
    let hash = hex::decode(
        "867f70cf1ade02cff3752599a3a53dc4af34c7a669815ae5d513554e1c8cf252\
         c02d470a285a0501bad999bfe943c08f050235d7d68b1da55e63f73b60a57fce",
    )
    .unwrap();
    let line = format!(
        "$7$1${}${}",
        base64::Engine::encode(&base64::engine::general_purpose::STANDARD, b"salt"),
        base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &hash)
    );
    let h = PasswordHash::parse(&line).unwrap();
    assert!(h.verify(b"password"));
    assert!(!h.verify(b"passwore"));
}

#[test]
fn new_pbkdf2_hashes_are_salted_and_verify() {
    let a = PasswordHash::new_pbkdf2(b"pw");
    let b = PasswordHash::new_pbkdf2(b"pw");
    assert_ne!(a.encode(), b.encode());
    assert!(a.verify(b"pw") && b.verify(b"pw"));
    assert!(!a.verify(b"pW"));
    assert!(a.encode().starts_with("$7$4096$"));
    // The debug form never shows the hash.
    assert!(!format!("{a:?}").contains('$'));
}

#[test]
fn bad_password_file_lines_name_the_line() {
    for (text, line, needle) in [
        ("alice:$7$101$AAAA$AAAA\n", 1, "hash is 3 bytes"),
        ("\n# c\nalice secret\n", 3, "username:hash"),
        ("alice:secret\n", 1, "plain-text"),
        (":$6$AAAA$AAAA\n", 1, "empty"),
        ("a:$7$x$AAAA$AAAA\n", 1, "iteration"),
        ("a:$7$99999999$AAAA$AAAA\n", 1, "iteration"),
        ("a:$6$!!$AAAA\n", 1, "base64"),
    ] {
        let e = file(text).unwrap_err();
        assert_eq!(e.line, Some(line), "{text:?}: {e}");
        assert!(e.to_string().contains(needle), "{text:?}: {e}");
        assert!(e.to_string().starts_with("pw, line"), "{e}");
    }
    let twice = format!("{SHA512_LINE}\n{SHA512_LINE}\n");
    assert_eq!(file(&twice).unwrap_err().line, Some(2));
}

fn acl(text: &str) -> Acl {
    Acl::parse(Path::new("acl"), text).unwrap()
}

#[test]
fn acl_grants_only_what_it_lists() {
    let a = acl("# anonymous\n\
         topic read public/#\n\
         user alice\n\
         topic readwrite alice/#\n\
         topic deny alice/secret\n\
         topic write logs\n\
         user bob\n\
         topic bob/#\n\
         pattern write devices/%c/up\n\
         pattern read users/%u/#\n");
    // Anonymous: only the lines before any user, and patterns.
    assert!(a.check_subscribe("c1", None, "public/#"));
    assert!(a.check_subscribe("c1", None, "public/a"));
    assert!(!a.check_publish("c1", None, "public/a"));
    assert!(!a.check_subscribe("c1", None, "#"));
    assert!(a.check_publish("c1", None, "devices/c1/up"));
    assert!(!a.check_publish("c1", None, "devices/c2/up"));
    assert!(!a.check_subscribe("c1", None, "users/x/#"));
    // alice.
    assert!(a.check_publish("c1", Some("alice"), "alice/x"));
    assert!(!a.check_publish("c1", Some("alice"), "alice/secret"));
    assert!(
        !a.check_subscribe("c1", Some("alice"), "alice/#"),
        "overlaps a deny"
    );
    assert!(a.check_subscribe("c1", Some("alice"), "alice/x/+"));
    assert!(!a.check_subscribe("c1", Some("alice"), "alice/+"));
    assert!(a.check_publish("c1", Some("alice"), "logs"));
    assert!(
        !a.check_subscribe("c1", Some("alice"), "logs"),
        "write only"
    );
    assert!(
        !a.check_subscribe("c1", Some("alice"), "public/#"),
        "anonymous lines"
    );
    assert!(a.check_subscribe("c1", Some("alice"), "users/alice/#"));
    assert!(!a.check_subscribe("c1", Some("alice"), "users/bob/#"));
    assert!(a.check_subscribe("c1", Some("alice"), "$share/g/users/alice/x"));
    // bob: readwrite by default.
    assert!(a.check_publish("c9", Some("bob"), "bob/1"));
    assert!(a.check_subscribe("c9", Some("bob"), "bob/#"));
    assert!(a.check_publish("c9", Some("bob"), "devices/c9/up"));
    // A user with no `user` block: patterns only.
    assert!(a.check_publish("c9", Some("carol"), "devices/c9/up"));
    assert!(!a.check_publish("c9", Some("carol"), "bob/1"));
}

#[test]
fn acl_patterns_with_wildcard_values_match_nothing() {
    let a = acl("pattern readwrite devices/%c/#\npattern read u/%u/#\n");
    assert!(!a.check_subscribe("#", None, "devices/#"));
    assert!(!a.check_subscribe("+", None, "devices/+/#"));
    assert!(!a.check_publish("a/b", None, "devices/a/b/x"));
    assert!(!a.check_subscribe("c", Some("+"), "u/+/#"));
    assert!(a.check_subscribe("c", None, "devices/c/#"));
}

#[test]
fn bad_acl_lines_name_the_line() {
    for (text, line) in [
        ("topic read\n", 1),
        ("user a\ntopic read a/#/b\n", 2),
        ("\n\nuser\n", 3),
        ("topc read a\n", 1),
        ("pattern deny\n", 1),
    ] {
        let e = Acl::parse(Path::new("acl"), text).unwrap_err();
        assert_eq!(e.line, Some(line), "{text:?}: {e}");
    }
}

#[test]
fn filters_overlap() {
    assert!(overlaps("a/#", "#"));
    assert!(overlaps("a/+", "+/b"));
    assert!(overlaps("a/b", "a/b"));
    assert!(!overlaps("a/b", "a/c"));
    assert!(!overlaps("a/b", "a/b/c"));
    assert!(overlaps("a/b", "a/b/#"));
    assert!(!overlaps("$SYS/x", "#"));
}

#[test]
fn limiter_throttles_one_address_for_a_window() {
    let mut l = FailureLimiter::default();
    let now = Instant::now();
    let a = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
    let b = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));
    for _ in 0..AUTHN_FAILURES_PER_IP_MAX - 1 {
        l.record_failure(a, now);
    }
    assert!(!l.is_throttled(a, now));
    l.record_failure(a, now);
    assert!(l.is_throttled(a, now));
    assert!(!l.is_throttled(b, now));
    let later = now + AUTHN_FAILURE_WINDOW + Duration::from_millis(1);
    assert!(!l.is_throttled(a, later));
    l.record_failure(a, later);
    assert!(!l.is_throttled(a, later), "a new window");
}

#[test]
fn database_stores_hashes_only_and_reopens() {
    let dir = std::env::temp_dir().join(format!("ringmq-authn-db-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let db = UserDb::open(&dir).unwrap();
    db.add("u1", "pw-one", false).unwrap();
    db.add("u2", "pw-two", true).unwrap();
    assert_eq!(db.add("u1", "x", false), Err(super::DbError::AlreadyExists));
    assert!(matches!(
        db.add("", "x", false),
        Err(super::DbError::Invalid("user_id", _))
    ));
    assert!(matches!(
        db.add("u3", "", false),
        Err(super::DbError::Invalid("password", _))
    ));
    let text = std::fs::read_to_string(dir.join(super::USERS_FILE)).unwrap();
    assert!(!text.contains("pw-one") && text.contains("$7$"));
    db.update("u1", Some("pw-new"), Some(true)).unwrap();
    db.delete("u2").unwrap();
    assert_eq!(db.delete("u2"), Err(super::DbError::NotFound));
    let again = UserDb::open(&dir).unwrap();
    let (users, count) = again.list(0, 10);
    assert_eq!(count, 1);
    assert_eq!(users[0].user_id, "u1");
    assert!(users[0].is_superuser);
    let (hash, superuser) = again.credentials("u1").unwrap();
    assert!(superuser && hash.verify(b"pw-new") && !hash.verify(b"pw-one"));
    let _ = std::fs::remove_dir_all(&dir);
}
