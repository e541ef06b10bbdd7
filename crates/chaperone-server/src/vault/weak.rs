//! Request fields read as OpenBao reads them: its field decoding is weakly typed (Go's
//! `mapstructure` with `WeaklyTypedInput`), so scripts that build bodies from text (curl,
//! shell, templating) send `"max_versions": "3"` or `"versions": "1,2"` and expect them to
//! work. These deserializers take what OpenBao takes for each kind of field and refuse what
//! it refuses (`" 1"` is not a version, `2` is not a boolean), with one deliberate
//! exception: integers in text are decimal only. OpenBao reads them as Go's
//! `strconv.ParseInt(s, 0, 64)` does, so `"010"` is 8 there and `"0x10"` 16; here those
//! are refused rather than read as another number (a destroyed version cannot come back).

use std::collections::BTreeMap;

use serde::Deserialize;
use serde::de::{Deserializer, Error as _};
use serde_json::Value;

/// An integer: a JSON integer or a decimal string, strictly (no spaces, no fraction). Null
/// or absent is `None`.
pub(crate) fn integer<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: TryFrom<i64>,
{
    let bad = || D::Error::custom("expected an integer");
    let n = match Option::<Value>::deserialize(deserializer)? {
        None | Some(Value::Null) => return Ok(None),
        Some(value) => int(&value).ok_or_else(bad)?,
    };
    T::try_from(n).map(Some).map_err(|_| bad())
}

/// A check-and-set version (`options.cas`), as OpenBao decodes it: present, it is an
/// integer ([`integer`]), a boolean (1 or 0), or null, which is 0 (the secret must not
/// exist yet). Go decodes a null into the integer's zero value; reading it as "no cas"
/// instead would let a write OpenBao refuses overwrite the secret. Absent, the field is
/// `None` (`#[serde(default)]`).
pub(crate) fn cas<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<u64>, D::Error> {
    let bad = || D::Error::custom("expected an integer");
    let n = match Value::deserialize(deserializer)? {
        Value::Null => 0,
        Value::Bool(b) => i64::from(b),
        value => int(&value).ok_or_else(bad)?,
    };
    u64::try_from(n).map(Some).map_err(|_| bad())
}

/// A duration in seconds, as OpenBao's duration fields take it: a number of seconds, or
/// text that [`super::wrapping::duration`] reads (`"0s"`, `"1h30m"`, `"90"`), the empty
/// text being zero. Null or absent is `None`.
pub(crate) fn duration<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<i64>, D::Error> {
    let bad = || D::Error::custom("expected a duration");
    match Option::<Value>::deserialize(deserializer)? {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) if text.is_empty() => Ok(Some(0)),
        Some(Value::String(text)) => super::wrapping::duration(&text)
            .map(Some)
            .map_err(|_| bad()),
        Some(value @ Value::Number(_)) => match int(&value) {
            Some(secs) if secs >= 0 => Ok(Some(secs)),
            _ => Err(bad()),
        },
        Some(_) => Err(bad()),
    }
}

/// A boolean: `true`/`false`, what Go's `strconv.ParseBool` reads (`1`, `t`, `TRUE`, `0`,
/// `f`, `False`, ...), or the numbers 1 and 0. Null or absent is `None`.
pub(crate) fn boolean<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<bool>, D::Error> {
    let text = match Option::<Value>::deserialize(deserializer)? {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Bool(b)) => return Ok(Some(b)),
        Some(Value::String(text)) => text,
        Some(Value::Number(n)) => n.to_string(),
        Some(_) => return Err(D::Error::custom("expected a boolean")),
    };
    go_bool(&text)
        .map(Some)
        .ok_or_else(|| D::Error::custom("expected a boolean"))
}

/// Go's `strconv.ParseBool`: `1`, `t`, `T`, `TRUE`, `true`, `True` and their `false` forms.
pub(crate) fn go_bool(text: &str) -> Option<bool> {
    match text {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// An integer written in decimal, with an optional sign: no spaces, no leading zeros, no
/// `_`, no base prefix (see the module's note).
pub(crate) fn decimal(text: &str) -> Option<i64> {
    let digits = text.strip_prefix(['+', '-']).unwrap_or(text);
    let plain = digits.bytes().all(|b| b.is_ascii_digit())
        && !digits.is_empty()
        && (digits == "0" || !digits.starts_with('0'));
    plain.then(|| text.parse().ok()).flatten()
}

/// [`boolean`], absent or null being `false`.
pub(crate) fn boolean_or_false<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<bool, D::Error> {
    boolean(deserializer).map(Option::unwrap_or_default)
}

/// A list of integers (OpenBao's comma-separated integer slice): a list of integers,
/// decimal strings or booleans (1 and 0), one integer, or one string of integers separated
/// by commas. Negative numbers are kept (they name nothing that exists, which the caller
/// tells apart from naming nothing at all); null or absent is an empty list.
pub(crate) fn integers<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<i64>, D::Error> {
    let bad = || D::Error::custom("expected integers");
    let all: Vec<i64> = match Option::<Value>::deserialize(deserializer)? {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| match item {
                Value::Bool(b) => Some(i64::from(*b)),
                other => int(other),
            })
            .collect::<Option<_>>()
            .ok_or_else(bad)?,
        Some(Value::String(text)) => text
            .split(',')
            .map(decimal)
            .collect::<Option<_>>()
            .ok_or_else(bad)?,
        Some(value @ Value::Number(_)) => vec![int(&value).ok_or_else(bad)?],
        Some(_) => return Err(bad()),
    };
    Ok(all)
}

/// A list of strings: a list, or one string of items separated by commas (Vault's
/// `policies`). Null or absent is `None`.
pub(crate) fn strings<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Vec<String>>, D::Error> {
    match Option::<Value>::deserialize(deserializer)? {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(
            text.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
        )),
        Some(Value::Array(items)) => items
            .into_iter()
            .map(|item| match item {
                Value::String(text) => Ok(text),
                _ => Err(D::Error::custom("expected a list of strings")),
            })
            .collect::<Result<_, _>>()
            .map(Some),
        Some(_) => Err(D::Error::custom("expected a list of strings")),
    }
}

/// Pairs of text (Vault's key-value pairs: `meta`, `custom_metadata`): values given as
/// numbers are their text, booleans `1` and `0`, null empty. `Some(None)` when the field is
/// given as null (which clears custom metadata), `None` when absent. An empty list is an
/// empty map, as OpenBao decodes it.
pub(crate) fn pairs<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Option<BTreeMap<String, String>>>, D::Error> {
    let bad = || D::Error::custom("expected an object of strings");
    match Value::deserialize(deserializer)? {
        Value::Null => Ok(Some(None)),
        Value::Array(items) if items.is_empty() => Ok(Some(Some(BTreeMap::new()))),
        Value::Object(fields) => fields
            .into_iter()
            .map(|(key, value)| {
                let text = match value {
                    Value::String(text) => text,
                    Value::Number(n) => n.to_string(),
                    Value::Bool(b) => if b { "1" } else { "0" }.to_owned(),
                    Value::Null => String::new(),
                    _ => return Err(bad()),
                };
                Ok((key, text))
            })
            .collect::<Result<_, _>>()
            .map(|map| Some(Some(map))),
        _ => Err(bad()),
    }
}

/// [`pairs`], also given as one `"k=v"` or a list of them, as OpenBao reads a token's
/// `meta` (the value is what follows the first `=`, commas and spaces included). An item
/// without `=` is refused in OpenBao's words.
pub(crate) fn key_value_pairs<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Option<BTreeMap<String, String>>>, D::Error> {
    let items = match Value::deserialize(deserializer)? {
        Value::String(text) => vec![Value::String(text)],
        Value::Array(items) if !items.is_empty() => items,
        other => return pairs(other).map_err(D::Error::custom),
    };
    items
        .into_iter()
        .enumerate()
        .map(|(index, item)| {
            item.as_str()
                .and_then(|pair| pair.split_once('='))
                .map(|(key, value)| (key.to_owned(), value.to_owned()))
                .ok_or_else(|| D::Error::custom(format!("invalid key pair at index {index}")))
        })
        .collect::<Result<_, _>>()
        .map(|map| Some(Some(map)))
}

/// Text as OpenBao's weak decoding reads it: a number is its digits, a boolean `1` or `0`,
/// null unset.
pub(crate) fn text<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    match Option::<Value>::deserialize(deserializer)? {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text)),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(Value::Bool(b)) => Ok(Some(if b { "1" } else { "0" }.to_owned())),
        Some(_) => Err(D::Error::custom("expected text")),
    }
}

/// [`integer`] in a merge patch: absent is `None`, null `Some(None)` (reset the setting).
pub(crate) fn patched_integer<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: TryFrom<i64>,
{
    integer(deserializer).map(Some)
}

/// [`boolean`] in a merge patch: absent is `None`, null `Some(None)` (reset the setting).
pub(crate) fn patched_boolean<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Option<bool>>, D::Error> {
    boolean(deserializer).map(Some)
}

/// A field whose null means something (clearing it): `Some(None)` when given as null, `None`
/// when absent.
pub(crate) fn nullable<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

/// A JSON integer or a strict decimal string.
fn int(value: &Value) -> Option<i64> {
    match value {
        Value::Number(n) => n.as_i64(),
        Value::String(text) => decimal(text),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[derive(Deserialize)]
    struct Body {
        #[serde(default, deserialize_with = "integer")]
        n: Option<u32>,
        #[serde(default, deserialize_with = "boolean")]
        b: Option<bool>,
        #[serde(default, deserialize_with = "integers")]
        versions: Vec<i64>,
        #[serde(default, deserialize_with = "strings")]
        policies: Option<Vec<String>>,
        #[serde(default, deserialize_with = "pairs")]
        meta: Option<Option<BTreeMap<String, String>>>,
        #[serde(default, deserialize_with = "cas")]
        cas: Option<u64>,
        #[serde(default, deserialize_with = "duration")]
        after: Option<i64>,
    }

    #[test]
    fn a_null_cas_is_zero_and_absent_is_none() {
        let cas = |value: Value| body(value).map(|b| b.cas);
        assert_eq!(cas(json!({})).unwrap(), None);
        assert_eq!(cas(json!({ "cas": null })).unwrap(), Some(0));
        assert_eq!(cas(json!({ "cas": true })).unwrap(), Some(1));
        assert_eq!(cas(json!({ "cas": "4" })).unwrap(), Some(4));
        for bad in [json!("x"), json!(-1), json!(1.5), json!([1])] {
            assert!(cas(json!({ "cas": bad })).is_err(), "{bad}");
        }
    }

    #[test]
    fn durations_are_seconds_or_go_text() {
        let after = |value: Value| body(json!({ "after": value })).map(|b| b.after);
        for (value, secs) in [
            (json!(0), 0),
            (json!(""), 0),
            (json!("0h"), 0),
            (json!("0m0s"), 0),
            (json!(90), 90),
            (json!("90"), 90),
            (json!("1h30m"), 5400),
        ] {
            assert_eq!(after(value.clone()).unwrap(), Some(secs), "{value}");
        }
        assert_eq!(after(Value::Null).unwrap(), None);
        for bad in [json!(-1), json!("soon"), json!(true), json!(1.5)] {
            assert!(after(bad.clone()).is_err(), "{bad}");
        }
    }

    fn body(value: Value) -> Result<Body, serde_json::Error> {
        serde_json::from_value(value)
    }

    #[test]
    fn fields_are_read_as_openbao_reads_them() {
        // Taken as OpenBao takes them.
        let b = body(
            json!({ "n": "3", "b": "t", "versions": "1,2", "policies": "default, x",
                             "meta": { "a": 1.5, "b": true, "c": "x" } }),
        )
        .unwrap();
        assert_eq!((b.n, b.b), (Some(3), Some(true)));
        assert_eq!(b.versions, [1, 2]);
        assert_eq!(b.policies.unwrap(), ["default", "x"]);
        let meta = b.meta.unwrap().unwrap();
        assert_eq!(
            meta.values().map(String::as_str).collect::<Vec<_>>(),
            ["1.5", "1", "x"]
        );
        let b = body(json!({ "b": 0, "versions": [3, "4", true, -1], "meta": null })).unwrap();
        assert_eq!(b.b, Some(false));
        assert_eq!(b.versions, [3, 4, 1, -1]);
        assert_eq!(b.meta, Some(None));
        let b = body(json!({ "n": "+7", "versions": ["0", "-3", "10"] })).unwrap();
        assert_eq!((b.n, b.versions), (Some(7), vec![0, -3, 10]));
        let b = body(json!({ "versions": 7, "meta": [] })).unwrap();
        assert_eq!(b.versions, [7]);
        assert_eq!(b.meta, Some(Some(BTreeMap::new())));
        let b = body(json!({})).unwrap();
        assert_eq!((b.n, b.b, b.versions.len(), b.meta), (None, None, 0, None));
        // Refused as OpenBao refuses them.
        for bad in [
            json!({ "n": "x" }),
            json!({ "n": 3.5 }),
            json!({ "n": -1 }),
            json!({ "b": 2 }),
            json!({ "b": "yes" }),
            json!({ "versions": [" 1"] }),
            json!({ "versions": "1, 2" }),
            json!({ "versions": [1.0] }),
            json!({ "versions": "010" }),
            json!({ "versions": ["0x10"] }),
            json!({ "versions": "1_0" }),
            json!({ "versions": "" }),
            json!({ "n": "010" }),
            json!({ "n": "" }),
            json!({ "versions": { "a": 1 } }),
            json!({ "policies": 3 }),
            json!({ "meta": "a=b" }),
            json!({ "meta": { "a": [1] } }),
        ] {
            assert!(body(bad.clone()).is_err(), "{bad}");
        }
    }
}
