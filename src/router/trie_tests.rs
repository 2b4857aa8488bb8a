//! `TopicTrie` unit and property tests; `filter` and `topic` strategies
//! are shared with the retained store's tests.

use super::*;
use crate::router::topic::matches;
use proptest::prelude::*;
use std::collections::BTreeMap;

fn matched<V>(trie: &TopicTrie<V>, topic: &str) -> Vec<String> {
    let mut out = Vec::new();
    trie.for_each_match(topic, |filter, _| out.push(filter.to_string()));
    out.sort();
    out
}

#[test]
fn insert_get_match_remove() {
    let mut trie: TopicTrie<u32> = TopicTrie::new();
    for (i, f) in ["a/b", "a/+", "a/#", "#", "+/b", "+", "$SYS/#", "a/b/#"]
        .iter()
        .enumerate()
    {
        *trie.entry(f) = i as u32;
    }
    assert_eq!(trie.len(), 8);
    assert_eq!(trie.get("a/+"), Some(&1));
    assert_eq!(trie.get("a/c"), None);
    assert_eq!(trie.get("a/+/c"), None);
    *trie.get_mut("#").unwrap() += 10;
    assert_eq!(trie.get("#"), Some(&13));

    assert_eq!(
        matched(&trie, "a/b"),
        ["#", "+/b", "a/#", "a/+", "a/b", "a/b/#"]
    );
    assert_eq!(matched(&trie, "a"), ["#", "+", "a/#"]);
    assert_eq!(matched(&trie, "$SYS/x"), ["$SYS/#"]);
    assert_eq!(matched(&trie, "$SYS"), ["$SYS/#"]);

    assert_eq!(trie.remove("a/#"), Some(2));
    assert_eq!(trie.remove("a/#"), None);
    assert_eq!(trie.remove("x/+"), None);
    assert_eq!(matched(&trie, "a"), ["#", "+"]);
    for f in ["a/b", "a/+", "#", "+/b", "+", "$SYS/#", "a/b/#"] {
        assert!(trie.remove(f).is_some(), "{f}");
    }
    assert!(trie.is_empty());
    assert!(trie.root.is_empty(), "every branch pruned");
}

#[test]
fn pruning_keeps_shared_prefixes() {
    let mut trie: TopicTrie<()> = TopicTrie::new();
    trie.entry("a/+/c/#");
    trie.entry("a/+");
    trie.remove("a/+/c/#");
    // "a" -> "+" must stay (it holds "a/+"), its "c" child must go.
    let plus = trie
        .root
        .children
        .get("a")
        .unwrap()
        .plus
        .as_deref()
        .unwrap();
    assert!(plus.children.is_empty());
    assert!(plus.value.is_some());
    trie.remove("a/+");
    assert!(trie.root.is_empty());
}

#[test]
fn empty_levels() {
    let mut trie: TopicTrie<()> = TopicTrie::new();
    for f in ["/", "+/+", "/+", "+", "//#"] {
        trie.entry(f);
    }
    assert_eq!(matched(&trie, "/"), ["+/+", "/", "/+", "//#"]);
    assert_eq!(matched(&trie, "//"), ["//#"]);
    assert_eq!(matched(&trie, "x"), ["+"]);
}

#[test]
fn retain_and_for_each() {
    let mut trie: TopicTrie<u32> = TopicTrie::new();
    for (i, f) in ["a", "a/+", "b/#", "+/c"].iter().enumerate() {
        *trie.entry(f) = i as u32;
    }
    trie.retain(|_, v| {
        *v += 1;
        *v % 2 == 0
    });
    let mut all = Vec::new();
    trie.for_each(|f, v| all.push((f.to_string(), *v)));
    all.sort();
    assert_eq!(all, [("+/c".to_string(), 4), ("a/+".to_string(), 2)]);
    assert_eq!(trie.len(), 2);
}

#[test]
fn stores_filters_up_to_the_level_cap() {
    let mut trie: TopicTrie<()> = TopicTrie::new();
    let deepest = vec!["+"; TOPIC_LEVELS_MAX as usize].join("/");
    trie.entry(&deepest);
    let exact = vec!["a"; TOPIC_LEVELS_MAX as usize].join("/");
    trie.entry(&exact);
    assert_eq!(trie.len(), 2);
}

#[test]
#[should_panic(expected = "levels reached the router")]
fn refuses_a_filter_deeper_than_the_cap() {
    let mut trie: TopicTrie<()> = TopicTrie::new();
    trie.entry(&vec!["+"; TOPIC_LEVELS_MAX as usize + 1].join("/"));
}

#[test]
#[should_panic(expected = "levels reached the router")]
fn refuses_an_exact_filter_deeper_than_the_cap() {
    let mut trie: TopicTrie<()> = TopicTrie::new();
    trie.entry(&"/".repeat(65_535));
}

/// A level over the small alphabet the properties use.
pub(crate) fn level() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec!["a", "b", "c", "", "$s"])
}

pub(crate) fn topic() -> impl Strategy<Value = String> {
    // A single empty level is not a valid topic; "/" is.
    prop::collection::vec(level(), 1..5).prop_map(|levels| non_empty(levels.join("/")))
}

pub(crate) fn filter() -> impl Strategy<Value = String> {
    let level = prop_oneof![3 => level(), 1 => Just("+")];
    (prop::collection::vec(level, 1..5), any::<bool>()).prop_map(|(mut levels, hash)| {
        if hash {
            let last = levels.len() - 1;
            levels[last] = "#";
        }
        non_empty(levels.join("/"))
    })
}

fn non_empty(s: String) -> String {
    if s.is_empty() {
        "/".to_string()
    } else {
        s
    }
}

proptest! {
    #[test]
    fn matches_like_naive_scan(
        ops in prop::collection::vec((filter(), any::<bool>()), 1..40),
        topics in prop::collection::vec(topic(), 1..20),
    ) {
        let mut trie: TopicTrie<u32> = TopicTrie::new();
        let mut model: BTreeMap<String, u32> = BTreeMap::new();
        for (i, (filter, insert)) in ops.iter().enumerate() {
            if *insert {
                *trie.entry(filter) = i as u32;
                model.insert(filter.clone(), i as u32);
            } else {
                prop_assert_eq!(trie.remove(filter), model.remove(filter));
            }
            prop_assert_eq!(trie.len(), model.len());
        }
        for (filter, value) in &model {
            prop_assert_eq!(trie.get(filter), Some(value));
        }
        for topic in &topics {
            let mut got: Vec<(String, u32)> = Vec::new();
            trie.for_each_match(topic, |f, v| got.push((f.to_string(), *v)));
            got.sort();
            let want: Vec<(String, u32)> = model
                .iter()
                .filter(|(f, _)| matches(f, topic))
                .map(|(f, v)| (f.clone(), *v))
                .collect();
            prop_assert_eq!(got, want, "topic {}", topic);
        }
        for filter in model.keys() {
            trie.remove(filter);
        }
        prop_assert!(trie.is_empty());
        prop_assert!(trie.root.is_empty(), "tree pruned after removing everything");
    }
}
