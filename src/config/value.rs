//! Field-level readers for scalar config values.
//!
//! Environment variables arrive as strings, so every reader accepts both the
//! TOML type and its string spelling (`64` and `"64"`, `true` and `"true"`).
//! Range checks happen here, during deserialization, so the error carries
//! figment's key path and source metadata; see `ConfigError::InvalidValue`.

use serde::de::{self, Deserializer, Unexpected, Visitor};
use serde::Serializer;
use std::fmt;

const KIB: u64 = 1 << 10;
const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

const SECS_PER_MINUTE: u64 = 60;
const SECS_PER_HOUR: u64 = 60 * SECS_PER_MINUTE;
const SECS_PER_DAY: u64 = 24 * SECS_PER_HOUR;

/// A scalar as written, before it is interpreted for a field.
enum Scalar {
    Unsigned(u64),
    Signed(i64),
    Float(f64),
    Bool(bool),
    Str(String),
}

impl Scalar {
    fn unexpected(&self) -> Unexpected<'_> {
        match self {
            Scalar::Unsigned(v) => Unexpected::Unsigned(*v),
            Scalar::Signed(v) => Unexpected::Signed(*v),
            Scalar::Float(v) => Unexpected::Float(*v),
            Scalar::Bool(v) => Unexpected::Bool(*v),
            Scalar::Str(v) => Unexpected::Str(v),
        }
    }

    fn invalid<E: de::Error>(&self, allowed: &str) -> E {
        E::invalid_value(self.unexpected(), &allowed)
    }

    /// As `invalid`, but a string spelling a number (always the case for
    /// env values) is shown as that number: `0`, not `"0"`.
    fn invalid_number<E: de::Error>(&self, allowed: &str) -> E {
        if let Scalar::Str(s) = self {
            if let Some(v) = parse_decimal(s) {
                return E::invalid_value(Unexpected::Unsigned(v), &allowed);
            }
            if let Ok(v) = s.trim().parse::<i64>() {
                return E::invalid_value(Unexpected::Signed(v), &allowed);
            }
        }
        self.invalid(allowed)
    }
}

struct ScalarVisitor<'a> {
    allowed: &'a str,
}

impl Visitor<'_> for ScalarVisitor<'_> {
    type Value = Scalar;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(self.allowed)
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Scalar, E> {
        Ok(Scalar::Bool(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Scalar, E> {
        Ok(Scalar::Unsigned(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Scalar, E> {
        Ok(match u64::try_from(v) {
            Ok(v) => Scalar::Unsigned(v),
            Err(_) => Scalar::Signed(v),
        })
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Scalar, E> {
        Ok(Scalar::Float(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Scalar, E> {
        Ok(Scalar::Str(v.to_string()))
    }
}

fn read_scalar<'de, D: Deserializer<'de>>(d: D, allowed: &str) -> Result<Scalar, D::Error> {
    // Tables and arrays are rejected by the visitor with `allowed` as the
    // expectation, which is what the error message shows.
    d.deserialize_any(ScalarVisitor { allowed })
}

fn parse_decimal(text: &str) -> Option<u64> {
    let text = text.trim();
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// Reads an integer in `min..=max` from a TOML integer or a decimal string.
pub(crate) fn int_in<'de, D, T>(d: D, min: T, max: T) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Copy + Into<u64> + TryFrom<u64>,
{
    let (min, max) = (min.into(), max.into());
    let allowed = format!("an integer from {min} to {max}");
    let scalar = read_scalar(d, &allowed)?;
    let value = match &scalar {
        Scalar::Unsigned(v) => Some(*v),
        Scalar::Str(s) => parse_decimal(s),
        _ => None,
    };
    match value {
        Some(v) if (min..=max).contains(&v) => {
            T::try_from(v).map_err(|_| unreachable!("{v} is within the bounds of its own type"))
        }
        _ => Err(scalar.invalid_number(&allowed)),
    }
}

/// Reads `true`/`false` from a TOML boolean or its string spelling.
pub(crate) fn bool<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    const ALLOWED: &str = "true or false";
    let scalar = read_scalar(d, ALLOWED)?;
    match &scalar {
        Scalar::Bool(v) => Ok(*v),
        Scalar::Str(s) if s.trim().eq_ignore_ascii_case("true") => Ok(true),
        Scalar::Str(s) if s.trim().eq_ignore_ascii_case("false") => Ok(false),
        _ => Err(scalar.invalid(ALLOWED)),
    }
}

/// Parses a byte size: digits with an optional unit `B`, `KB`, `MB` or `GB`
/// (case-insensitive, powers of 1024 as in EMQX), e.g. `"256KB"`, `"1MB"`.
pub fn parse_size_bytes(text: &str) -> Option<u64> {
    let text = text.trim();
    let digits_end = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(digits_end);
    let count: u64 = parse_decimal(digits)?;
    let unit_bytes = match unit.trim().to_ascii_uppercase().as_str() {
        "" | "B" => 1,
        "KB" => KIB,
        "MB" => MIB,
        "GB" => GIB,
        _ => return None,
    };
    count.checked_mul(unit_bytes)
}

/// The shortest exact spelling of a size: `"1MB"`, `"64KB"`, else the
/// integer.
pub fn format_size_bytes(bytes: u64) -> Option<String> {
    [(GIB, "GB"), (MIB, "MB"), (KIB, "KB")]
        .into_iter()
        .find(|(unit, _)| bytes != 0 && bytes % unit == 0)
        .map(|(unit, name)| format!("{}{name}", bytes / unit))
}

/// Reads a byte size in `min..=max` from an integer or a size string.
pub(crate) fn size_bytes_in<'de, D: Deserializer<'de>>(
    d: D,
    min: u32,
    max: u32,
) -> Result<u32, D::Error> {
    let allowed = format!(
        "a size from {min} to {max} bytes, as an integer or a string like \"256KB\" or \"1MB\""
    );
    let scalar = read_scalar(d, &allowed)?;
    let value = match &scalar {
        Scalar::Unsigned(v) => Some(*v),
        Scalar::Str(s) => parse_size_bytes(s),
        _ => None,
    };
    match value.and_then(|v| u32::try_from(v).ok()) {
        Some(v) if (min..=max).contains(&v) => Ok(v),
        _ => Err(scalar.invalid_number(&allowed)),
    }
}

/// [`size_bytes_in`] for sizes past 4 GiB (stores).
pub(crate) fn size_bytes_u64_in<'de, D: Deserializer<'de>>(
    d: D,
    min: u64,
    max: u64,
) -> Result<u64, D::Error> {
    let allowed = format!(
        "a size from {} to {}, as an integer (bytes) or a string like \"256MB\" or \"16GB\"",
        format_size_bytes(min).unwrap_or_else(|| min.to_string()),
        format_size_bytes(max).unwrap_or_else(|| max.to_string()),
    );
    let scalar = read_scalar(d, &allowed)?;
    let value = match &scalar {
        Scalar::Unsigned(v) => Some(*v),
        Scalar::Str(s) => parse_size_bytes(s),
        _ => None,
    };
    match value {
        Some(v) if (min..=max).contains(&v) => Ok(v),
        _ => Err(scalar.invalid_number(&allowed)),
    }
}

/// [`serialize_size_bytes`] for `u64` sizes.
pub(crate) fn serialize_size_bytes_u64<S: Serializer>(
    bytes: &u64,
    s: S,
) -> Result<S::Ok, S::Error> {
    match format_size_bytes(*bytes) {
        Some(text) => s.serialize_str(&text),
        None => s.serialize_u64(*bytes),
    }
}

/// Writes a size as `"1MB"` when that is exact, else as an integer.
pub(crate) fn serialize_size_bytes<S: Serializer>(bytes: &u32, s: S) -> Result<S::Ok, S::Error> {
    match format_size_bytes((*bytes).into()) {
        Some(text) => s.serialize_str(&text),
        None => s.serialize_u32(*bytes),
    }
}

/// Parses a duration in whole seconds: an integer (seconds) or one or more
/// `<n><unit>` terms with unit `s`, `m`, `h` or `d`, e.g. `"2h"`, `"1h30m"`.
pub fn parse_duration_secs(text: &str) -> Option<u64> {
    let text = text.trim();
    if let Some(secs) = parse_decimal(text) {
        return Some(secs);
    }
    if text.is_empty() {
        return None;
    }
    let mut total_secs: u64 = 0;
    let mut rest = text;
    while !rest.is_empty() {
        let digits_end = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let count = parse_decimal(&rest[..digits_end])?;
        rest = &rest[digits_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit_secs = match rest[..unit_end].to_ascii_lowercase().as_str() {
            "s" => 1,
            "m" => SECS_PER_MINUTE,
            "h" => SECS_PER_HOUR,
            "d" => SECS_PER_DAY,
            _ => return None,
        };
        rest = &rest[unit_end..];
        total_secs = total_secs.checked_add(count.checked_mul(unit_secs)?)?;
    }
    Some(total_secs)
}

/// The shortest exact single-unit spelling of a duration: `"2h"`, `"90s"`.
pub fn format_duration_secs(secs: u64) -> String {
    [
        (SECS_PER_DAY, "d"),
        (SECS_PER_HOUR, "h"),
        (SECS_PER_MINUTE, "m"),
    ]
    .into_iter()
    .find(|(unit, _)| secs != 0 && secs % unit == 0)
    .map(|(unit, name)| format!("{}{name}", secs / unit))
    .unwrap_or_else(|| format!("{secs}s"))
}

fn duration_allowed(min: u64, max: u64) -> String {
    format!(
        "a duration from {min} to {max} seconds, as an integer or a string like \"30s\", \"30m\" or \"2h\""
    )
}

fn duration_secs(scalar: &Scalar) -> Option<u64> {
    match scalar {
        Scalar::Unsigned(v) => Some(*v),
        Scalar::Str(s) => parse_duration_secs(s),
        _ => None,
    }
}

/// Reads a duration in `min..=max` seconds from an integer or a duration
/// string.
pub(crate) fn duration_secs_in<'de, D: Deserializer<'de>>(
    d: D,
    min: u32,
    max: u32,
) -> Result<u32, D::Error> {
    let allowed = duration_allowed(min.into(), max.into());
    let scalar = read_scalar(d, &allowed)?;
    match duration_secs(&scalar).and_then(|v| u32::try_from(v).ok()) {
        Some(v) if (min..=max).contains(&v) => Ok(v),
        _ => Err(scalar.invalid_number(&allowed)),
    }
}

/// Parses a duration in whole milliseconds: an integer (milliseconds) or
/// one or more `<n><unit>` terms with unit `ms`, `s`, `m`, `h` or `d`, e.g.
/// `"10ms"`, `"1s500ms"`.
pub fn parse_duration_ms(text: &str) -> Option<u64> {
    let text = text.trim();
    if let Some(ms) = parse_decimal(text) {
        return Some(ms);
    }
    if text.is_empty() {
        return None;
    }
    let mut total_ms: u64 = 0;
    let mut rest = text;
    while !rest.is_empty() {
        let digits_end = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let count = parse_decimal(&rest[..digits_end])?;
        rest = &rest[digits_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit_ms = match rest[..unit_end].to_ascii_lowercase().as_str() {
            "ms" => 1,
            "s" => 1_000,
            "m" => SECS_PER_MINUTE * 1_000,
            "h" => SECS_PER_HOUR * 1_000,
            "d" => SECS_PER_DAY * 1_000,
            _ => return None,
        };
        rest = &rest[unit_end..];
        total_ms = total_ms.checked_add(count.checked_mul(unit_ms)?)?;
    }
    Some(total_ms)
}

/// The shortest exact single-unit spelling of a duration in milliseconds:
/// `"10ms"`, `"2s"`, `"1m"`.
pub fn format_duration_ms(ms: u64) -> String {
    if ms != 0 && ms % 1_000 == 0 {
        format_duration_secs(ms / 1_000)
    } else {
        format!("{ms}ms")
    }
}

/// Reads a duration in `min..=max` milliseconds from an integer
/// (milliseconds) or a duration string (`"10ms"`, `"1s"`).
pub(crate) fn duration_ms_in<'de, D: Deserializer<'de>>(
    d: D,
    min: u32,
    max: u32,
) -> Result<u32, D::Error> {
    let allowed = format!(
        "a duration from {} to {}, as an integer of milliseconds or a string like \"10ms\" or \"1s\"",
        format_duration_ms(min.into()),
        format_duration_ms(max.into())
    );
    let scalar = read_scalar(d, &allowed)?;
    let ms = match &scalar {
        Scalar::Unsigned(v) => Some(*v),
        Scalar::Str(s) => parse_duration_ms(s),
        _ => None,
    };
    match ms.and_then(|v| u32::try_from(v).ok()) {
        Some(v) if (min..=max).contains(&v) => Ok(v),
        _ => Err(scalar.invalid_number(&allowed)),
    }
}

/// Writes a duration as `"2h"`-style text.
pub(crate) fn serialize_duration_secs<S: Serializer>(secs: &u32, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format_duration_secs((*secs).into()))
}

/// The spelling of "no value" for optional caps.
pub const DISABLED: &str = "disabled";

/// Reads an optional duration in `min..=max` seconds; `"disabled"` is
/// `None`.
pub(crate) fn optional_duration_secs_in<'de, D: Deserializer<'de>>(
    d: D,
    min: u16,
    max: u16,
) -> Result<Option<u16>, D::Error> {
    let allowed = format!(
        "\"{DISABLED}\" or {}",
        duration_allowed(min.into(), max.into())
    );
    let scalar = read_scalar(d, &allowed)?;
    if let Scalar::Str(s) = &scalar {
        if s.trim().eq_ignore_ascii_case(DISABLED) {
            return Ok(None);
        }
    }
    match duration_secs(&scalar).and_then(|v| u16::try_from(v).ok()) {
        Some(v) if (min..=max).contains(&v) => Ok(Some(v)),
        _ => Err(scalar.invalid_number(&allowed)),
    }
}

/// Writes `None` as `"disabled"` (TOML has no null) and `Some` as seconds.
pub(crate) fn serialize_optional_secs<S: Serializer>(
    secs: &Option<u16>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match secs {
        Some(secs) => s.serialize_u16(*secs),
        None => s.serialize_str(DISABLED),
    }
}

/// Reads a string; numbers and booleans are refused so that `name = 5` is
/// reported rather than silently stringified.
pub(crate) fn string_matching<'de, D: Deserializer<'de>>(
    d: D,
    allowed: &str,
    accept: impl Fn(&str) -> bool,
) -> Result<String, D::Error> {
    let scalar = read_scalar(d, allowed)?;
    match scalar {
        Scalar::Str(s) if accept(&s) => Ok(s),
        other => Err(other.invalid(allowed)),
    }
}

/// Reads one of a fixed set of names: the config spellings of an enum,
/// listed in `names` in the order the error shows them; `parse` decides,
/// so each enum keeps its own case and space rules. One reader for every
/// such key, so their errors all read `one of "a", "b"`.
pub(crate) fn one_of<'de, D: Deserializer<'de>, T>(
    d: D,
    names: &[&str],
    parse: impl Fn(&str) -> Option<T>,
) -> Result<T, D::Error> {
    let quoted: Vec<String> = names.iter().map(|n| format!("{n:?}")).collect();
    let allowed = format!("one of {}", quoted.join(", "));
    let text = string_matching(d, &allowed, |s| parse(s).is_some())?;
    Ok(parse(&text).expect("checked by string_matching"))
}

/// Visits a sequence of `T`; anything else is refused with `allowed` as
/// the expectation (so `RINGMQ_…=x` for an array key reads well).
struct SeqVisitor<'a, T> {
    allowed: &'a str,
    item: std::marker::PhantomData<T>,
}

impl<'de, T: serde::Deserialize<'de>> Visitor<'de> for SeqVisitor<'_, T> {
    type Value = Vec<T>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(self.allowed)
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(items)
    }
}

fn seq_of<'de, D: Deserializer<'de>, T: serde::Deserialize<'de>>(
    d: D,
    allowed: &str,
) -> Result<Vec<T>, D::Error> {
    d.deserialize_any(SeqVisitor {
        allowed,
        item: std::marker::PhantomData,
    })
}

/// A string only (numbers and booleans refused), for array items.
struct StrictString(String);

impl<'de> serde::Deserialize<'de> for StrictString {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        string_matching(d, "a string", |_| true).map(StrictString)
    }
}

/// Reads an array of strings.
pub(crate) fn string_array<'de, D: Deserializer<'de>>(
    d: D,
    allowed: &str,
) -> Result<Vec<String>, D::Error> {
    let items: Vec<StrictString> = seq_of(d, allowed)?;
    Ok(items.into_iter().map(|s| s.0).collect())
}

/// Reads an array of tables (`[[section.key]]`).
pub(crate) fn table_array<'de, D: Deserializer<'de>, T: serde::Deserialize<'de>>(
    d: D,
    allowed: &str,
) -> Result<Vec<T>, D::Error> {
    seq_of(d, allowed)
}

/// Visits an array of `T`, or a table whose keys are the indices 0, 1, ...
/// (how `RINGMQ_..__0__HOST`-style environment variables arrive).
struct IndexedVisitor<'a, T> {
    allowed: &'a str,
    item: std::marker::PhantomData<T>,
}

impl<'de, T: serde::Deserialize<'de>> Visitor<'de> for IndexedVisitor<'_, T> {
    type Value = Vec<T>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(self.allowed)
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, seq: A) -> Result<Vec<T>, A::Error> {
        SeqVisitor {
            allowed: self.allowed,
            item: std::marker::PhantomData,
        }
        .visit_seq(seq)
    }

    fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Vec<T>, A::Error> {
        let mut items: std::collections::BTreeMap<u64, T> = std::collections::BTreeMap::new();
        while let Some(key) = map.next_key::<String>()? {
            let Some(index) = parse_decimal(&key) else {
                return Err(de::Error::invalid_value(
                    Unexpected::Str(&key),
                    &"an index 0, 1, 2, ... (one per array item)",
                ));
            };
            items.insert(index, map.next_value()?);
        }
        // Indices must be 0..n, so no item is silently skipped.
        if let Some((missing, _)) = items.keys().enumerate().find(|(i, k)| *i as u64 != **k) {
            return Err(de::Error::invalid_value(
                Unexpected::Unsigned(missing as u64),
                &"indices 0, 1, 2, ... without gaps",
            ));
        }
        Ok(items.into_values().collect())
    }
}

/// Reads an array of tables, or (from the environment) a table of them
/// keyed by index.
pub(crate) fn table_array_or_indexed<'de, D: Deserializer<'de>, T: serde::Deserialize<'de>>(
    d: D,
    allowed: &str,
) -> Result<Vec<T>, D::Error> {
    d.deserialize_any(IndexedVisitor {
        allowed,
        item: std::marker::PhantomData,
    })
}

/// Visits a list of strings in any of its spellings: a TOML array, a table
/// keyed by index (`RINGMQ_..__SEEDS__0`), or one string of items
/// separated by commas, optionally in brackets with quoted items
/// (`RINGMQ_..__SEEDS="a:1,b:2"` or `'["a:1", "b:2"]'`, as EMQX's
/// environment takes arrays). An empty string is an empty list, so the
/// environment can clear a list the file set.
struct StringListVisitor<'a> {
    allowed: &'a str,
}

impl<'de> Visitor<'de> for StringListVisitor<'_> {
    type Value = Vec<String>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(self.allowed)
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<Vec<String>, E> {
        let trimmed = text.trim();
        let inner = trimmed
            .strip_prefix('[')
            .and_then(|t| t.strip_suffix(']'))
            .unwrap_or(trimmed)
            .trim();
        if inner.is_empty() {
            return Ok(Vec::new());
        }
        inner
            .split(',')
            .map(|item| {
                let item = item.trim();
                let unquoted = item
                    .strip_prefix('"')
                    .and_then(|i| i.strip_suffix('"'))
                    .unwrap_or(item);
                if unquoted.is_empty() {
                    Err(E::invalid_value(Unexpected::Str(text), &self.allowed))
                } else {
                    Ok(unquoted.to_string())
                }
            })
            .collect()
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, seq: A) -> Result<Vec<String>, A::Error> {
        let items: Vec<StrictString> = SeqVisitor {
            allowed: self.allowed,
            item: std::marker::PhantomData,
        }
        .visit_seq(seq)?;
        Ok(items.into_iter().map(|s| s.0).collect())
    }

    fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<Vec<String>, A::Error> {
        let items: Vec<StrictString> = IndexedVisitor {
            allowed: self.allowed,
            item: std::marker::PhantomData,
        }
        .visit_map(map)?;
        Ok(items.into_iter().map(|s| s.0).collect())
    }
}

/// Reads a list of strings from an array, an indexed table or a
/// comma-separated string (see `StringListVisitor`).
pub(crate) fn string_list<'de, D: Deserializer<'de>>(
    d: D,
    allowed: &str,
) -> Result<Vec<String>, D::Error> {
    d.deserialize_any(StringListVisitor { allowed })
}
