//! Mosquitto's ACL file (`acl_file` in mosquitto.conf(5)): pure, built
//! once per load and swapped whole on reload.
//!
//! ```text
//! # lines before any `user` line apply to anonymous clients
//! topic read public/#
//! user alice
//! topic readwrite alice/#
//! topic deny alice/secret
//! pattern write devices/%c/up     # every client; %c client id, %u user name
//! ```
//!
//! - `topic [read|write|readwrite|deny] TOPIC` (access defaults to
//!   `readwrite`) belongs to the last `user` line above it, or to
//!   anonymous clients before any; `pattern ...` applies to every client,
//!   with `%c` and `%u` replaced. A pattern whose value is missing (no user
//!   name), empty or holds `+`, `#` or `/` applies to nobody, so a client id
//!   `#` does not turn `devices/%c/#` into a wildcard.
//! - What no line grants is denied (Mosquitto's default).
//! - PUBLISH to a topic needs `write` or `readwrite` on a filter matching
//!   it, and no `deny` matching it.
//! - SUBSCRIBE to a filter needs `read` or `readwrite` on a filter that
//!   covers it (every topic it can receive; `authz::covers`) and no `deny`
//!   that overlaps it: Mosquitto checks `read` again for each delivered
//!   message, ringmq refuses up front a subscription that could receive a
//!   denied topic, so nothing denied reaches a subscriber and delivery costs
//!   no check. `$share/{group}/{filter}` is checked on `{filter}`.

use std::collections::HashMap;
use std::path::Path;

use super::file::{content_lines, line_error, read_text, FileError};
use crate::authz::covers;
use crate::router::topic::{is_valid_topic_filter, matches, parse_shared};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Access {
    Read,
    Write,
    ReadWrite,
    Deny,
}

impl Access {
    fn parse(word: &str) -> Option<Access> {
        Some(match word {
            "read" => Access::Read,
            "write" => Access::Write,
            "readwrite" => Access::ReadWrite,
            "deny" => Access::Deny,
            _ => return None,
        })
    }

    fn reads(self) -> bool {
        matches!(self, Access::Read | Access::ReadWrite)
    }

    fn writes(self) -> bool {
        matches!(self, Access::Write | Access::ReadWrite)
    }
}

#[derive(Clone, Debug)]
struct Entry {
    access: Access,
    topic: Box<str>,
}

/// A loaded ACL file.
#[derive(Debug, Default)]
pub struct Acl {
    anonymous: Vec<Entry>,
    users: HashMap<String, Vec<Entry>>,
    patterns: Vec<Entry>,
}

impl Acl {
    /// Reads and parses `path`; the first bad line stops it.
    pub fn load(path: &Path) -> Result<Acl, FileError> {
        Acl::parse(path, &read_text(path)?)
    }

    /// Parses `text` (read from `path`, named in errors).
    pub fn parse(path: &Path, text: &str) -> Result<Acl, FileError> {
        let mut acl = Acl::default();
        let mut user: Option<String> = None;
        for (n, line) in content_lines(text) {
            let (keyword, rest) = line
                .split_once(char::is_whitespace)
                .map_or((line, ""), |(k, r)| (k, r.trim()));
            match keyword {
                "user" => {
                    if rest.is_empty() {
                        return Err(line_error(path, n, "\"user\" needs a user name"));
                    }
                    acl.users.entry(rest.to_string()).or_default();
                    user = Some(rest.to_string());
                }
                "topic" | "pattern" => {
                    let entry = parse_entry(rest)
                        .map_err(|e| line_error(path, n, format!("{keyword} {rest:?}: {e}")))?;
                    if keyword == "pattern" {
                        acl.patterns.push(entry);
                    } else if let Some(user) = &user {
                        acl.users.get_mut(user).expect("added").push(entry);
                    } else {
                        acl.anonymous.push(entry);
                    }
                }
                other => {
                    return Err(line_error(
                        path,
                        n,
                        format!("unknown keyword {other:?}; expected user, topic or pattern"),
                    ))
                }
            }
        }
        Ok(acl)
    }

    /// May this client publish to `topic` (a valid topic name)?
    pub fn check_publish(&self, client_id: &str, username: Option<&str>, topic: &str) -> bool {
        self.decide(client_id, username, |entry_filter, access| {
            if !matches(entry_filter, topic) {
                Verdict::Silent
            } else if access == Access::Deny {
                Verdict::Deny
            } else if access.writes() {
                Verdict::Grant
            } else {
                Verdict::Silent
            }
        })
    }

    /// May this client subscribe to `filter` (a valid filter, possibly
    /// shared)?
    pub fn check_subscribe(&self, client_id: &str, username: Option<&str>, filter: &str) -> bool {
        let filter = match parse_shared(filter) {
            Ok(Some(shared)) => shared.filter,
            _ => filter,
        };
        self.decide(client_id, username, |entry_filter, access| {
            if access == Access::Deny {
                if overlaps(entry_filter, filter) {
                    Verdict::Deny
                } else {
                    Verdict::Silent
                }
            } else if access.reads() && covers(entry_filter, filter) {
                Verdict::Grant
            } else {
                Verdict::Silent
            }
        })
    }

    /// Granted when some entry grants and none denies.
    fn decide(
        &self,
        client_id: &str,
        username: Option<&str>,
        judge: impl Fn(&str, Access) -> Verdict,
    ) -> bool {
        let own = match username {
            None => Some(&self.anonymous),
            Some(name) => self.users.get(name),
        };
        let mut granted = false;
        for entry in own.into_iter().flatten() {
            match judge(&entry.topic, entry.access) {
                Verdict::Deny => return false,
                Verdict::Grant => granted = true,
                Verdict::Silent => {}
            }
        }
        for entry in &self.patterns {
            let Some(topic) = render(&entry.topic, client_id, username) else {
                continue;
            };
            match judge(&topic, entry.access) {
                Verdict::Deny => return false,
                Verdict::Grant => granted = true,
                Verdict::Silent => {}
            }
        }
        granted
    }
}

enum Verdict {
    Grant,
    Deny,
    Silent,
}

fn parse_entry(rest: &str) -> Result<Entry, &'static str> {
    let (first, after) = rest
        .split_once(char::is_whitespace)
        .map_or((rest, ""), |(w, t)| (w, t.trim()));
    let (access, topic) = match Access::parse(first) {
        Some(access) => (access, after),
        None => (Access::ReadWrite, rest),
    };
    if topic.is_empty() {
        return Err("a topic filter is missing");
    }
    if !is_valid_topic_filter(topic) {
        return Err("not a valid topic filter");
    }
    Ok(Entry {
        access,
        topic: Box::from(topic),
    })
}

/// `pattern` with `%c` and `%u` replaced; `None` when a value is missing
/// or would not be one literal level.
fn render(pattern: &str, client_id: &str, username: Option<&str>) -> Option<String> {
    if !pattern.contains('%') {
        return Some(pattern.to_string());
    }
    let literal_level =
        |value: &str| !value.is_empty() && !value.bytes().any(|b| matches!(b, b'+' | b'#' | b'/'));
    let mut out = String::with_capacity(pattern.len() + client_id.len());
    let mut chars = pattern.chars().peekable();
    while let Some(c) = chars.next() {
        let value = match (c, chars.peek()) {
            ('%', Some('c')) => client_id,
            ('%', Some('u')) => username?,
            _ => {
                out.push(c);
                continue;
            }
        };
        chars.next();
        if !literal_level(value) {
            return None;
        }
        out.push_str(value);
    }
    Some(out)
}

/// Whether some topic matches both filters.
fn overlaps(a: &str, b: &str) -> bool {
    // `$` topics are not matched by a leading wildcard (MQTT-4.7.2-1).
    let dollar = |f: &str| f.starts_with('$');
    let wild = |f: &str| f.starts_with('+') || f.starts_with('#');
    if (dollar(a) && wild(b)) || (dollar(b) && wild(a)) {
        return false;
    }
    let mut a = a.split('/');
    let mut b = b.split('/');
    loop {
        match (a.next(), b.next()) {
            (Some("#"), _) | (_, Some("#")) => return true,
            (None, None) => return true,
            (Some(x), Some(y)) if x == "+" || y == "+" || x == y => {}
            _ => return false,
        }
    }
}

#[cfg(test)]
pub(super) fn overlaps_for_tests(a: &str, b: &str) -> bool {
    overlaps(a, b)
}
