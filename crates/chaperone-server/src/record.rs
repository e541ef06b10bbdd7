//! Recording events in the ledger before answering.
//!
//! Denials, secret reads and logins are appended (durably: the append commits before the
//! response is sent) and the request fails with a storage error if the append fails, so
//! nothing is returned that was not recorded. State changes (secrets, people, vendors,
//! grants, classifications, tokens, enrolments, a login's session) pass their events to the
//! store method that makes the change, which commits both in one transaction. What an event
//! carries is in `docs/ledger.md`: ids, paths and outcomes, never a secret, password, code or
//! token.

use std::collections::BTreeMap;
use std::net::IpAddr;

use chaperone_crypto::random_bytes;
use chaperone_ledger::entry::{Actor, Event, Outcome};

use crate::auth::Caller;
use crate::{ApiError, AppState};

/// Facts about the request that every event carries.
#[derive(Clone, Debug)]
pub(crate) struct RequestInfo {
    pub(crate) request_id: String,
    pub(crate) client_ip: Option<IpAddr>,
    pub(crate) user_agent: Option<String>,
}

impl RequestInfo {
    pub(crate) fn new(client_ip: Option<IpAddr>, user_agent: Option<String>) -> Self {
        Self::with_id(new_request_id(), client_ip, user_agent)
    }

    /// The facts of a request that already has its id.
    pub(crate) fn with_id(
        request_id: String,
        client_ip: Option<IpAddr>,
        user_agent: Option<String>,
    ) -> Self {
        // Bounded so a hostile User-Agent cannot bloat the ledger.
        let user_agent = user_agent.map(|ua| ua.chars().take(256).collect());
        Self {
            request_id,
            client_ip,
            user_agent,
        }
    }
}

/// A request id: a random (version 4) UUID, the form Vault clients see as `request_id`.
pub(crate) fn new_request_id() -> String {
    let mut id = [0u8; 16];
    random_bytes(&mut id);
    id[6] = (id[6] & 0x0f) | 0x40;
    id[8] = (id[8] & 0x3f) | 0x80;
    let digits = hex::encode(id);
    let mut text = String::with_capacity(36);
    for (i, group) in [0..8, 8..12, 12..16, 16..20, 20..32]
        .into_iter()
        .enumerate()
    {
        if i > 0 {
            text.push('-');
        }
        text.push_str(&digits[group]);
    }
    text
}

/// What happened, to be recorded.
pub(crate) struct Record<'a> {
    pub(crate) action: &'a str,
    pub(crate) resource: &'a str,
    pub(crate) outcome: Outcome,
    pub(crate) reasons: Vec<String>,
    pub(crate) details: BTreeMap<String, serde_json::Value>,
}

impl Record<'_> {
    pub(crate) fn new<'a>(action: &'a str, resource: &'a str, outcome: Outcome) -> Record<'a> {
        Record {
            action,
            resource,
            outcome,
            reasons: Vec::new(),
            details: BTreeMap::new(),
        }
    }

    /// The entry of a policy refusal: its reason codes and, for the continuous gate, its
    /// sentence (it names the unmet requirement, never a secret: auditors see why, not only
    /// that).
    pub(crate) fn denied<'a>(
        action: &'a str,
        resource: &'a str,
        decision: &chaperone_core::policy::Decision,
    ) -> Record<'a> {
        let mut record = Record::new(action, resource, Outcome::Denied);
        record.reasons = decision
            .reasons
            .iter()
            .map(|r| r.code().to_owned())
            .collect();
        if let Some(chaperone_core::policy::Reason::Compliance(sentence)) = decision.reasons.first()
        {
            record
                .details
                .insert("explanation".to_owned(), sentence.clone().into());
        }
        record
    }
}

impl Caller {
    /// The caller as a ledger actor.
    pub(crate) fn actor(&self) -> Actor {
        Actor {
            person: self.person_id.clone(),
            vendor: self.vendor_id.clone(),
            token: Some(self.token_id.clone()),
        }
    }
}

impl AppState {
    /// Appends one event; an error here must stop the request.
    pub(crate) async fn record(
        &self,
        info: &RequestInfo,
        actor: Actor,
        record: Record<'_>,
    ) -> Result<(), ApiError> {
        let event = self.event(info, actor, record);
        self.store.append_events(vec![event]).await?;
        Ok(())
    }

    /// The event for `record`, to append on its own or in a change's transaction.
    pub(crate) fn event(&self, info: &RequestInfo, actor: Actor, record: Record<'_>) -> Event {
        Event {
            time: self.clock.now().to_rfc3339(),
            actor,
            action: record.action.to_owned(),
            resource: record.resource.to_owned(),
            outcome: record.outcome,
            reasons: record.reasons,
            request_id: info.request_id.clone(),
            client_ip: info.client_ip.map(|ip| ip.to_string()),
            user_agent: info.user_agent.clone(),
            details: record.details,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_version_4_uuids() {
        let id = new_request_id();
        assert_eq!(id.len(), 36, "{id}");
        for (i, c) in id.char_indices() {
            if matches!(i, 8 | 13 | 18 | 23) {
                assert_eq!(c, '-', "{id}");
            } else {
                assert!(matches!(c, '0'..='9' | 'a'..='f'), "{id}");
            }
        }
        assert_eq!(&id[14..15], "4", "{id}");
        assert!(matches!(&id[19..20], "8" | "9" | "a" | "b"), "{id}");
        assert_ne!(new_request_id(), id);
    }
}
