//! A ledger entry and its canonical bytes: JSON with keys sorted and no insignificant
//! whitespace, so that the same event always hashes the same and any JSON library can
//! re-derive the bytes. The schema is documented in `docs/ledger.md`.
//!
//! An entry never holds a secret value, a password, a TOTP code or a token: only ids (token
//! ids, person ids), paths and outcomes. Where a value must be matched later, callers put an
//! HMAC under the ledger key in `details`, never the value.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

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
        let mut actor = Map::new();
        for (key, value) in [
            ("person", &self.actor.person),
            ("token", &self.actor.token),
            ("vendor", &self.actor.vendor),
        ] {
            if let Some(value) = value {
                actor.insert(key.to_owned(), Value::String(value.clone()));
            }
        }
        let mut entry = Map::new();
        entry.insert("action".into(), Value::String(self.action.clone()));
        entry.insert("actor".into(), Value::Object(actor));
        entry.insert(
            "client_ip".into(),
            self.client_ip.clone().map_or(Value::Null, Value::String),
        );
        entry.insert(
            "details".into(),
            Value::Object(self.details.clone().into_iter().collect()),
        );
        entry.insert(
            "outcome".into(),
            Value::String(self.outcome.as_str().into()),
        );
        entry.insert(
            "reasons".into(),
            Value::Array(self.reasons.iter().cloned().map(Value::String).collect()),
        );
        entry.insert("request_id".into(), Value::String(self.request_id.clone()));
        entry.insert("resource".into(), Value::String(self.resource.clone()));
        entry.insert("seq".into(), Value::from(seq));
        entry.insert("time".into(), Value::String(self.time.clone()));
        entry.insert(
            "user_agent".into(),
            self.user_agent.clone().map_or(Value::Null, Value::String),
        );
        canonical(&Value::Object(entry))
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
    pub fn template(&self) -> EntryTemplate {
        const KEY: &[u8] = b"\"seq\":0";
        let bytes = self.to_entry(0);
        // Keys are sorted, so the top-level `seq` follows `details`; only the strings `time`
        // and `user_agent` come after it, and a quote inside a string is always escaped, so
        // the last `"seq":` is the top-level key.
        let at = bytes
            .windows(KEY.len())
            .rposition(|w| w == KEY)
            .expect("every entry has a seq");
        EntryTemplate {
            head: bytes[..at + KEY.len() - 1].to_vec(),
            tail: bytes[at + KEY.len()..].to_vec(),
        }
    }
}

/// Canonical JSON: object keys sorted by their UTF-8 bytes, no whitespace, serde_json's
/// shortest number and string escapes.
pub fn canonical(value: &Value) -> Vec<u8> {
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
    serde_json::to_vec(&sorted(value)).expect("a JSON value always serialises")
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
}
