//! A ledger entry and its canonical bytes: JSON with keys sorted and no insignificant
//! whitespace, so that the same event always hashes the same and any JSON library can
//! re-derive the bytes. The schema is documented in `docs/ledger.md`.
//!
//! An entry never holds a secret value, a password, a TOTP code or a token: only ids (token
//! ids, person ids), paths and outcomes. Where a value must be matched later, callers put an
//! HMAC under the ledger key in `details`, never the value.

use std::collections::BTreeMap;

use serde::ser::{Serialize, SerializeMap as _, SerializeSeq as _, Serializer};
use serde_json::Value;

/// Who acted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Actor {
    /// Person id, if a person acted.
    pub person: Option<String>,
    /// Vendor id of that person, if any.
    pub vendor: Option<String>,
    /// Token id (never the token), if a token was used.
    pub token: Option<String>,
}

/// How the request ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Done.
    Success,
    /// Refused by the policy or by authentication.
    Denied,
    /// Failed for another reason (bad input, conflict, storage).
    Failure,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Denied => "denied",
            Outcome::Failure => "failure",
        }
    }
}

/// One recorded event, before it has a sequence number.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    /// When, as RFC 3339 UTC with nanoseconds.
    pub time: String,
    /// Who.
    pub actor: Actor,
    /// What, e.g. `secret.read`, `auth.login`, `token.create`.
    pub action: String,
    /// On what, e.g. a secret path or a person name; empty when none.
    pub resource: String,
    /// How it ended.
    pub outcome: Outcome,
    /// Why it was denied or failed (stable codes).
    pub reasons: Vec<String>,
    /// The request's id.
    pub request_id: String,
    /// The client's address.
    pub client_ip: Option<String>,
    /// The client's User-Agent.
    pub user_agent: Option<String>,
    /// Action-specific, non-secret details (versions, capabilities, ids).
    pub details: BTreeMap<String, Value>,
}

impl Event {
    /// The canonical entry bytes for this event at index `seq`.
    pub fn to_entry(&self, seq: u64) -> Vec<u8> {
        self.template().entry(seq)
    }
}

/// An event's canonical bytes with the sequence number left open, so that the costly part
/// (building and sorting the JSON) happens where the event is made, and the appender only
/// splices in the number it assigns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EntryTemplate {
    head: Vec<u8>,
    tail: Vec<u8>,
}

impl EntryTemplate {
    /// The entry at index `seq`: the same bytes as [`Event::to_entry`].
    pub fn entry(&self, seq: u64) -> Vec<u8> {
        let digits = seq.to_string();
        let mut out = Vec::with_capacity(self.head.len() + digits.len() + self.tail.len());
        out.extend_from_slice(&self.head);
        out.extend_from_slice(digits.as_bytes());
        out.extend_from_slice(&self.tail);
        out
    }

    /// The length of the entry at index `seq`.
    pub fn len_at(&self, seq: u64) -> usize {
        self.head.len() + seq.to_string().len() + self.tail.len()
    }
}

impl Event {
    /// The entry with its sequence number left open.
    ///
    /// The fields are written in their canonical (sorted) order straight from the event,
    /// without building a JSON tree first: this runs once per request on the hot path.
    pub fn template(&self) -> EntryTemplate {
        let mut head = Vec::with_capacity(320);
        head.push(b'{');
        field(&mut head, "action", &self.action);
        head.push(b',');
        field(&mut head, "actor", &ActorFields(&self.actor));
        head.push(b',');
        field(&mut head, "client_ip", &self.client_ip);
        head.push(b',');
        field(&mut head, "details", &CanonicalMap(self.details.iter()));
        head.push(b',');
        field(&mut head, "outcome", self.outcome.as_str());
        head.push(b',');
        field(&mut head, "reasons", &self.reasons);
        head.push(b',');
        field(&mut head, "request_id", &self.request_id);
        head.push(b',');
        field(&mut head, "resource", &self.resource);
        head.extend_from_slice(b",\"seq\":");
        let mut tail = Vec::with_capacity(96);
        tail.push(b',');
        field(&mut tail, "time", &self.time);
        tail.push(b',');
        field(&mut tail, "user_agent", &self.user_agent);
        tail.push(b'}');
        EntryTemplate { head, tail }
    }
}

/// Writes `"key":value`; `key` is one of the entry's fixed ASCII names, which need no escape.
fn field(out: &mut Vec<u8>, key: &str, value: &(impl Serialize + ?Sized)) {
    out.push(b'"');
    out.extend_from_slice(key.as_bytes());
    out.extend_from_slice(b"\":");
    serde_json::to_writer(out, value).expect("writing JSON to memory cannot fail");
}

/// The actor object: only the ids that are set, keys in sorted order.
struct ActorFields<'a>(&'a Actor);

impl Serialize for ActorFields<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let fields = [
            ("person", &self.0.person),
            ("token", &self.0.token),
            ("vendor", &self.0.vendor),
        ];
        let mut map = serializer.serialize_map(None)?;
        for (key, value) in fields {
            if let Some(value) = value {
                map.serialize_entry(key, value)?;
            }
        }
        map.end()
    }
}

/// A JSON value written canonically: object keys sorted by their UTF-8 bytes, at every depth.
struct Canonical<'a>(&'a Value);

impl Serialize for Canonical<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Value::Object(map) => CanonicalMap(map.iter()).serialize(serializer),
            Value::Array(items) => {
                let mut seq = serializer.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(&Canonical(item))?;
                }
                seq.end()
            }
            other => other.serialize(serializer),
        }
    }
}

/// An object's entries written in sorted key order, whatever order the iterator gives them
/// in (serde_json's map keeps insertion order when a dependency turns `preserve_order` on).
struct CanonicalMap<I>(I);

impl<'a, I> Serialize for CanonicalMap<I>
where
    I: Iterator<Item = (&'a String, &'a Value)> + Clone,
{
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut entries: Vec<(&String, &Value)> = self.0.clone().collect();
        if !entries.is_sorted_by(|a, b| a.0.as_bytes() <= b.0.as_bytes()) {
            entries.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
        }
        let mut map = serializer.serialize_map(Some(entries.len()))?;
        for (key, value) in entries {
            map.serialize_entry(key, &Canonical(value))?;
        }
        map.end()
    }
}

/// Canonical JSON: object keys sorted by their UTF-8 bytes, no whitespace, serde_json's
/// shortest number and string escapes.
pub fn canonical(value: &Value) -> Vec<u8> {
    serde_json::to_vec(&Canonical(value)).expect("a JSON value always serialises")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event() -> Event {
        Event {
            time: "2026-11-25T19:15:15.000000001Z".into(),
            actor: Actor {
                person: Some("per_1".into()),
                vendor: None,
                token: Some("tok_1".into()),
            },
            action: "secret.read".into(),
            resource: "team/db".into(),
            outcome: Outcome::Denied,
            reasons: vec!["step_up_required".into()],
            request_id: "req_1".into(),
            client_ip: Some("127.0.0.1".into()),
            user_agent: None,
            details: BTreeMap::from([
                ("version".into(), Value::from(3)),
                ("a".into(), Value::Bool(true)),
            ]),
        }
    }

    #[test]
    fn entries_are_canonical() {
        let bytes = event().to_entry(7);
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert_eq!(
            text,
            r#"{"action":"secret.read","actor":{"person":"per_1","token":"tok_1"},"client_ip":"127.0.0.1","details":{"a":true,"version":3},"outcome":"denied","reasons":["step_up_required"],"request_id":"req_1","resource":"team/db","seq":7,"time":"2026-11-25T19:15:15.000000001Z","user_agent":null}"#
        );
        // Re-canonicalising parsed bytes gives the same bytes.
        let parsed: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(canonical(&parsed), bytes);
        assert_ne!(event().to_entry(8), bytes);
    }

    #[test]
    fn templates_give_the_same_bytes() {
        let mut e = event();
        e.user_agent = Some("x \"seq\":0 y".into());
        e.details.insert("seq".into(), Value::from(0));
        let template = e.template();
        for seq in [0, 7, 10, 123_456_789_012] {
            assert_eq!(template.entry(seq), e.to_entry(seq));
            assert_eq!(template.len_at(seq), e.to_entry(seq).len());
        }
    }

    /// The entry as a JSON tree, sorted by rebuilding every object: the plain reading of the
    /// schema in `docs/ledger.md`, against which the direct writer is checked.
    fn tree_entry(e: &Event, seq: u64) -> Vec<u8> {
        fn sorted(value: &Value) -> Value {
            match value {
                Value::Object(map) => {
                    let ordered: BTreeMap<&String, Value> =
                        map.iter().map(|(k, v)| (k, sorted(v))).collect();
                    Value::Object(ordered.into_iter().map(|(k, v)| (k.clone(), v)).collect())
                }
                Value::Array(items) => Value::Array(items.iter().map(sorted).collect()),
                other => other.clone(),
            }
        }
        let actor: serde_json::Map<String, Value> = [
            ("person", &e.actor.person),
            ("token", &e.actor.token),
            ("vendor", &e.actor.vendor),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.clone().map(|v| (k.to_owned(), Value::String(v))))
        .collect();
        let entry = serde_json::json!({
            "action": e.action,
            "actor": actor,
            "client_ip": e.client_ip,
            "details": e.details,
            "outcome": e.outcome.as_str(),
            "reasons": e.reasons,
            "request_id": e.request_id,
            "resource": e.resource,
            "seq": seq,
            "time": e.time,
            "user_agent": e.user_agent,
        });
        serde_json::to_vec(&sorted(&entry)).unwrap()
    }

    fn json_value() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            (-1e12f64..1e12).prop_map(Value::from),
            any::<String>().prop_map(Value::String),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                proptest::collection::btree_map(any::<String>(), inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest::proptest! {
        #[test]
        fn direct_entries_match_the_sorted_tree(
            strings in proptest::collection::vec(proptest::prelude::any::<String>(), 7),
            ids in proptest::collection::vec(proptest::option::of(proptest::prelude::any::<String>()), 5),
            reasons in proptest::collection::vec(proptest::prelude::any::<String>(), 0..3),
            details in proptest::collection::btree_map(
                proptest::prelude::any::<String>(), json_value(), 0..5),
            outcome in 0..3u8,
            seq in proptest::prelude::any::<u64>(),
        ) {
            let e = Event {
                time: strings[0].clone(),
                actor: Actor {
                    person: ids[0].clone(),
                    vendor: ids[1].clone(),
                    token: ids[2].clone(),
                },
                action: strings[1].clone(),
                resource: strings[2].clone(),
                outcome: [Outcome::Success, Outcome::Denied, Outcome::Failure][usize::from(outcome)],
                reasons,
                request_id: strings[3].clone(),
                client_ip: ids[3].clone(),
                user_agent: ids[4].clone(),
                details,
            };
            let direct = e.to_entry(seq);
            proptest::prop_assert_eq!(&direct, &tree_entry(&e, seq));
            proptest::prop_assert_eq!(e.template().len_at(seq), direct.len());
        }
    }
}
