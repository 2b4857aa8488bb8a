//! Topic names and topic filters: validation, shared-subscription parsing and
//! matching (MQTT 5.0 section 4.7 / 4.8.2), pure functions.

/// Prefix of a shared subscription filter: `$share/{group}/{filter}`.
pub const SHARE_PREFIX: &str = "$share/";

/// First level of the topics a server reserves for its own information
/// (MQTT 5.0 section 4.7.2).
pub const SYS_LEVEL: &str = "$SYS";

/// Levels in a topic name or filter, counted as written: one more than its
/// `/` separators, so empty levels count (`"a//b"` has 3, `"/"` has 2) and
/// wildcards count like any level (`"a/#"` has 2). For a shared
/// subscription pass the filter part ([`SharedFilter::filter`]): the
/// `$share/{group}/` prefix is not part of the topic tree.
pub fn levels(s: &str) -> usize {
    1 + s.bytes().filter(|&b| b == b'/').count()
}

/// Whether a topic name is in the server's `$SYS` tree (`$SYS` itself or
/// below it), which clients should not be able to publish to (4.7.2).
pub fn is_sys_topic(topic: &str) -> bool {
    topic
        .strip_prefix(SYS_LEVEL)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// Whether a topic name starts like a shared subscription (`$share` or
/// `$share/...`): no subscription can ever match it, since every filter so
/// spelled is a shared subscription (or invalid) and matches the topic
/// after the group instead.
pub fn is_share_topic(topic: &str) -> bool {
    topic.starts_with(SHARE_PREFIX) || topic == "$share"
}

/// A topic name a PUBLISH may carry: non-empty, no wildcards.
pub fn is_valid_topic_name(topic: &str) -> bool {
    !topic.is_empty() && !topic.bytes().any(|b| b == b'+' || b == b'#')
}

/// A topic filter: non-empty; `+` stands alone in its level; `#` stands
/// alone in the last level.
pub fn is_valid_topic_filter(filter: &str) -> bool {
    if filter.is_empty() {
        return false;
    }
    let mut levels = filter.split('/').peekable();
    while let Some(level) = levels.next() {
        let is_last = levels.peek().is_none();
        if level.contains('#') && (level != "#" || !is_last) {
            return false;
        }
        if level.contains('+') && level != "+" {
            return false;
        }
    }
    true
}

/// Whether a valid filter contains a wildcard.
pub fn has_wildcard(filter: &str) -> bool {
    filter.bytes().any(|b| b == b'+' || b == b'#')
}

/// A `$share/{group}/{filter}` subscription split into its parts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SharedFilter<'a> {
    pub group: &'a str,
    pub filter: &'a str,
}

/// Why a `$share/...` filter is not valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SharedFilterError {
    /// Group name empty or containing `+`, `#` or `/`.
    InvalidGroup,
    /// Nothing valid after the group.
    InvalidFilter,
}

/// `Ok(None)` for an ordinary filter, `Ok(Some(..))` for a valid shared
/// subscription, `Err` for a malformed `$share/` filter.
pub fn parse_shared(filter: &str) -> Result<Option<SharedFilter<'_>>, SharedFilterError> {
    let Some(rest) = filter.strip_prefix(SHARE_PREFIX) else {
        if filter == "$share" {
            return Err(SharedFilterError::InvalidFilter);
        }
        return Ok(None);
    };
    let Some((group, inner)) = rest.split_once('/') else {
        return Err(SharedFilterError::InvalidFilter);
    };
    if group.is_empty() || group.bytes().any(|b| b == b'+' || b == b'#') {
        return Err(SharedFilterError::InvalidGroup);
    }
    if !is_valid_topic_filter(inner) {
        return Err(SharedFilterError::InvalidFilter);
    }
    Ok(Some(SharedFilter {
        group,
        filter: inner,
    }))
}

/// Whether `topic` (a valid topic name) matches `filter` (a valid, non-shared
/// filter). Topics starting with `$` are not matched by a filter whose first
/// level is a wildcard (MQTT-4.7.2-1).
pub fn matches(filter: &str, topic: &str) -> bool {
    if topic.starts_with('$') && (filter.starts_with('+') || filter.starts_with('#')) {
        return false;
    }
    let mut f = filter.split('/');
    let mut t = topic.split('/');
    loop {
        match (f.next(), t.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(fl), Some(tl)) if fl == tl => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// Splits off the first level of a topic or filter: `("a", Some("b/c"))` for
/// `"a/b/c"`, `("c", None)` for `"c"`. Borrowing, no allocation; the walks in
/// `TopicTrie` and `RetainedStore` advance through a topic with it.
#[inline]
pub fn split_level(s: &str) -> (&str, Option<&str>) {
    // Levels are short: a plain byte scan costs less than the general
    // `split_once` searcher, and runs twice per routed PUBLISH and level.
    // `/` is ASCII, so the split falls on a char boundary.
    match s.bytes().position(|b| b == b'/') {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters() {
        for ok in [
            "a", "a/b", "+", "#", "a/+/c", "a/#", "+/+", "/", "/#", "$SYS/#", "a//b",
        ] {
            assert!(is_valid_topic_filter(ok), "{ok}");
        }
        for bad in ["", "a/#/b", "a#", "a/b+", "+a", "##", "a/#/"] {
            assert!(!is_valid_topic_filter(bad), "{bad}");
        }
    }

    #[test]
    fn names() {
        assert!(is_valid_topic_name("a/b"));
        assert!(is_valid_topic_name("/"));
        assert!(!is_valid_topic_name(""));
        assert!(!is_valid_topic_name("a/+"));
        assert!(!is_valid_topic_name("#"));
    }

    #[test]
    fn shared() {
        assert_eq!(parse_shared("a/b"), Ok(None));
        assert_eq!(
            parse_shared("$share/g/a/+"),
            Ok(Some(SharedFilter {
                group: "g",
                filter: "a/+"
            }))
        );
        assert_eq!(
            parse_shared("$share/g"),
            Err(SharedFilterError::InvalidFilter)
        );
        assert_eq!(
            parse_shared("$share//a"),
            Err(SharedFilterError::InvalidGroup)
        );
        assert_eq!(
            parse_shared("$share/g+/a"),
            Err(SharedFilterError::InvalidGroup)
        );
        assert_eq!(
            parse_shared("$share/g/a/#/b"),
            Err(SharedFilterError::InvalidFilter)
        );
        assert_eq!(
            parse_shared("$share"),
            Err(SharedFilterError::InvalidFilter)
        );
    }

    #[test]
    fn level_counts() {
        for (s, n) in [
            ("a", 1),
            ("a/b", 2),
            ("a/#", 2),
            ("+/+/+", 3),
            ("/", 2),
            ("a//b", 3),
            ("//", 3),
            ("$SYS/x", 2),
        ] {
            assert_eq!(levels(s), n, "{s}");
        }
        // The filter part of a shared subscription, not the prefix.
        let shared = parse_shared("$share/group/a/b/+").unwrap().unwrap();
        assert_eq!(levels(shared.filter), 3);
        // 65535 bytes of separators: the 65,536 levels of the issue.
        assert_eq!(levels(&"/".repeat(65_535)), 65_536);
    }

    #[test]
    fn reserved_names() {
        for sys in ["$SYS", "$SYS/", "$SYS/broker/uptime"] {
            assert!(is_sys_topic(sys), "{sys}");
        }
        for not in ["$SYSTEM", "$SYSx/a", "$sys/a", "a/$SYS", "SYS/a", "$"] {
            assert!(!is_sys_topic(not), "{not}");
        }
        for share in ["$share", "$share/", "$share/g/a"] {
            assert!(is_share_topic(share), "{share}");
        }
        for not in ["$shared/a", "$SHARE/g/a", "a/$share/g", "$sharex"] {
            assert!(!is_share_topic(not), "{not}");
        }
    }

    #[test]
    fn split_levels() {
        assert_eq!(split_level("a/b/c"), ("a", Some("b/c")));
        assert_eq!(split_level("c"), ("c", None));
        assert_eq!(split_level("/"), ("", Some("")));
        assert_eq!(split_level(""), ("", None));
    }

    #[test]
    fn matching() {
        let cases = [
            ("a/b", "a/b", true),
            ("a/+", "a/b", true),
            ("a/+", "a/b/c", false),
            ("a/#", "a", true),
            ("a/#", "a/b/c", true),
            ("#", "a/b", true),
            ("+/+", "/a", true),
            ("+", "/a", false),
            ("/+", "/a", true),
            ("#", "$SYS/x", false),
            ("+/x", "$SYS/x", false),
            ("$SYS/#", "$SYS/x", true),
            ("a/b", "a/c", false),
            ("a//b", "a//b", true),
            ("a/+/b", "a//b", true),
        ];
        for (f, t, m) in cases {
            assert_eq!(matches(f, t), m, "{f} vs {t}");
        }
    }
}
