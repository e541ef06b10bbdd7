//! Notifications and the governance sweep.
//!
//! A notification is written in the same transaction as the change it announces (an
//! access request, an approval, a break-glass grant, a reminder), so none is lost and none
//! announces something that did not happen. It waits in an outbox (records of kind
//! `notification` whose owner is `outbox`) until it is delivered to the configured webhook
//! as JSON and mailed through the configured SMTP relay; it is listed in the API either way. Notifications carry names, paths and
//! dates, never a secret value.
//!
//! The sweep closes review campaigns past their deadline (revoking what nobody decided)
//! and sends reminders: agreements and evidence expiring within 30, 7 and 1 days, grants
//! expiring within a day, each once, and raises anomaly alerts (`watch`). Access decisions
//! never depend on it: expiry and compliance are checked at every request.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chaperone_core::Timestamp;
use chaperone_core::governance::date;
use chaperone_ledger::entry::{Actor, Event, Outcome};
use chaperone_store::Op;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::api::access::{Campaign, revoke_item};
use crate::api::auth::new_id;
use crate::api::governance::{agreements_of, body, evidence_of, new_record, revise};
use crate::record::{Record as LedgerRecord, RequestInfo};
use crate::{ApiError, AppState};

const OUTBOX: &str = "outbox";
const SENT: &str = "sent";
/// Notifications that could not be delivered within [`GIVE_UP_SECS`].
const FAILED: &str = "failed";
/// How long a notification is retried before it is given up (it stays listed, and security
/// is told): a receiver down over a long weekend still gets what was queued.
const GIVE_UP_SECS: i64 = 72 * 3600;
/// The wait before a failed notification is tried again: a minute after the first failed
/// attempt, doubled after each further one, at most an hour. A notification waiting for its
/// next try is passed over, so what is queued behind it is still delivered.
const FIRST_RETRY_SECS: i64 = 60;
const LAST_RETRY_SECS: i64 = 3600;
/// How long a node that is delivering a notification holds it. Every node of a cluster runs
/// the delivery, so a node first claims a notification (a compare-and-swap on its record)
/// and the others leave it alone until the claim runs out. One attempt takes at most 30 s
/// (10 s for the webhook, 20 s for the mail relay); a claim four times that long outlives
/// the attempt, and a node that stopped in the middle of one delays the notification by at
/// most this long instead of losing it.
const CLAIM_SECS: i64 = 120;
/// Failures in a row of one channel (the webhook, the mail relay), after which a pass stops
/// using it: a receiver that is down (or drops connections until the timeout) would
/// otherwise hold the pass, and the sweep that runs after it, for a timeout per queued
/// notification. The other channel goes on; what is left for the channel waits for the next
/// pass, without an attempt counted.
const FAILURES_PER_PASS: usize = 3;
/// How long one pass goes on delivering; what is left waits for the next.
const PASS_TIME: std::time::Duration = std::time::Duration::from_secs(60);

/// `Ok(true)` when `result` lost a race with another change of the same record (which then
/// stands), `Ok(false)` when it was applied; other errors pass.
pub(crate) fn skip_conflict(
    result: Result<(), chaperone_store::StoreError>,
) -> Result<bool, ApiError> {
    match result {
        Ok(()) => Ok(false),
        Err(chaperone_store::StoreError::Conflict(what)) => {
            tracing::info!(%what, "sweep skipped a record changed meanwhile");
            Ok(true)
        }
        Err(other) => Err(other.into()),
    }
}

/// Whom the server tells when no one in particular is responsible: the enabled people in
/// security, or the enabled admins when nobody is in security.
pub(crate) fn security_or_admins(people: &[chaperone_store::PersonRecord]) -> Vec<String> {
    let staff = |role: &str| -> Vec<String> {
        people
            .iter()
            .filter(|p| p.disabled_at.is_none() && p.role == role)
            .map(|p| p.id.clone())
            .collect()
    };
    let security = staff("security");
    if security.is_empty() {
        staff("admin")
    } else {
        security
    }
}

/// A notification as stored.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub(crate) struct Notification {
    pub(crate) id: String,
    /// access_request, access_approved, access_denied, break_glass, expiry_reminder, ...
    pub(crate) kind: String,
    /// Person ids.
    pub(crate) to: Vec<String>,
    pub(crate) subject: String,
    pub(crate) details: Value,
    pub(crate) created_time: String,
    pub(crate) delivered_time: Option<String>,
    pub(crate) attempts: u32,
    pub(crate) last_error: Option<String>,
    /// The channels (`webhook`, `email`) that took it.
    #[serde(default)]
    pub(crate) channels_done: Vec<String>,
    /// Until when a node delivering it holds it (see [`CLAIM_SECS`]); absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub(crate) claimed_until: Option<Timestamp>,
    /// The tries that failed: the wait before the next grows with them, not with tries
    /// that went well on one channel while another was skipped.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub(crate) failures: u32,
    /// When a failed delivery is tried again (see [`FIRST_RETRY_SECS`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub(crate) next_attempt: Option<Timestamp>,
    /// The addresses done with: the relay took the message for them, or refused them for
    /// good. Those it refused for now are tried again, alone.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) emailed: Vec<String>,
    /// The addresses the relay refused for good, each with its answer.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) refused: Vec<String>,
}

impl Notification {
    /// Whether a delivery may try it at `now`: nobody holds it, or the claim ran out, and
    /// its next try is due.
    fn claimable(&self, now: Timestamp) -> bool {
        self.claimed_until.is_none_or(|until| until <= now)
            && self.next_attempt.is_none_or(|at| at <= now)
    }

    /// What its recipients see of it: delivery errors name internal endpoints, and the
    /// addresses written to are others' (a contractor and their vendor's owner share a
    /// reminder); both are for security's eyes.
    pub(crate) fn for_recipient(&mut self) {
        self.last_error = None;
        self.emailed.clear();
        self.refused.clear();
    }
}

/// What one channel made of one notification.
enum Sent {
    /// The channel took it.
    Delivered,
    /// Nothing to send on this channel (no address left to write to): done, and says
    /// nothing of the channel's health.
    NobodyToWrite,
    /// This notification is to be tried again (a mailbox refused it for now); the channel
    /// itself works.
    Retry(String),
    /// The channel failed (unreachable, refused the message): counts towards
    /// [`FAILURES_PER_PASS`].
    ChannelFailed(String),
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// The wait before the next try after `failures` failed ones.
fn retry_after(failures: u32) -> i64 {
    let doublings = failures.saturating_sub(1).min(12);
    (FIRST_RETRY_SECS << doublings).min(LAST_RETRY_SECS)
}

/// The longest subject, in characters: what a mail client or chat shows as a title.
const MAX_SUBJECT: usize = 300;

/// `text` as one line: line breaks and other control characters as spaces, at most
/// [`MAX_SUBJECT`] characters. A subject is shown as the server's own words (a mail's
/// subject and first line, a webhook's title): text someone typed never starts a line of it.
fn one_line(text: &str) -> String {
    let mut line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(MAX_SUBJECT)
        .collect();
    if text.chars().count() > MAX_SUBJECT {
        line.pop();
        line.push('…');
    }
    line
}

/// The change that queues a notification.
pub(crate) fn notification(
    kind: &str,
    to: &[String],
    subject: &str,
    details: Value,
    now: Timestamp,
) -> Op {
    let id = new_id("ntf");
    let note = Notification {
        id: id.clone(),
        kind: kind.to_owned(),
        to: to.to_vec(),
        subject: one_line(subject),
        details,
        created_time: now.to_rfc3339(),
        delivered_time: None,
        attempts: 0,
        last_error: None,
        channels_done: Vec::new(),
        claimed_until: None,
        failures: 0,
        next_attempt: None,
        emailed: Vec::new(),
        refused: Vec::new(),
    };
    Op::Put(new_record(
        "notification",
        id,
        Some(OUTBOX.into()),
        &note,
        now,
    ))
}

/// Where notifications go. Its `Debug` does not show the webhook's URL, which may carry a
/// credential (`https://hooks.example.com/services/T0/B0/XXXX`).
#[derive(Clone)]
pub struct NotifySettings {
    /// The URL notifications are POSTed to as JSON.
    pub webhook_url: Option<String>,
    /// The key the webhook's posts are signed with (see `webhook_signature`).
    pub webhook_secret: Option<crate::state::BearerToken>,
    /// The SMTP relay notifications are mailed through, to the recipients' addresses.
    pub smtp: Option<crate::mail::SmtpSettings>,
    /// The address people reach this server at (`https://chaperone.example.com`), for
    /// links in mail.
    pub public_url: Option<String>,
    /// How often the sweep and the delivery run.
    pub sweep_interval: Duration,
    /// Contractor accounts that do not log in for this long are disabled by the sweep.
    pub disable_after_inactive: Option<Duration>,
    /// What the sweep watches the ledger for (anomaly alerts).
    pub watch: crate::WatchSettings,
    /// How often the sweep sends security a report of the period just ended (`None`: never).
    pub report_every: Option<Duration>,
}

impl std::fmt::Debug for NotifySettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NotifySettings")
            .field("webhook_url", &self.webhook_url.as_ref().map(|_| "<set>"))
            .field("webhook_secret", &self.webhook_secret)
            .field("smtp", &self.smtp)
            .field("public_url", &self.public_url)
            .field("sweep_interval", &self.sweep_interval)
            .field("disable_after_inactive", &self.disable_after_inactive)
            .field("watch", &self.watch)
            .field("report_every", &self.report_every)
            .finish()
    }
}

impl Default for NotifySettings {
    fn default() -> Self {
        Self {
            webhook_url: None,
            webhook_secret: None,
            smtp: None,
            public_url: None,
            sweep_interval: Duration::from_secs(60),
            disable_after_inactive: None,
            watch: crate::WatchSettings::default(),
            report_every: None,
        }
    }
}

/// What one sweep did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct SweepReport {
    /// Review campaigns closed.
    pub campaigns_closed: usize,
    /// Undecided review items revoked.
    pub items_revoked: usize,
    /// Reminders queued.
    pub reminders: usize,
    /// Findings opened for attestations past their due date.
    pub attestations_overdue: usize,
    /// Contractor accounts disabled: their end date passed, or they did not log in for
    /// longer than allowed.
    pub accounts_disabled: usize,
    /// Share links past their expiry whose content was destroyed.
    pub shares_expired: usize,
    /// Rotation findings resolved because a new version was written.
    pub findings_resolved: usize,
    /// Wrapped responses (Vault API) that expired unopened and were removed.
    pub wrapped_expired: usize,
    /// Failed login attempts older than the lockout window, forgotten.
    pub failures_forgotten: u64,
    /// Refusals of requests without a known credential counted and not recorded one by one
    /// since the last sweep, now recorded in one `auth.suppressed` entry.
    pub refusals_suppressed: u64,
    /// Anomaly alerts raised (see `watch`).
    pub anomalies: usize,
    /// Whether a periodic report was sent.
    pub report_sent: bool,
}

fn system_event(
    state: &AppState,
    info: &RequestInfo,
    action: &str,
    resource: &str,
    details: Value,
) -> Event {
    let mut record = LedgerRecord::new(action, resource, Outcome::Success);
    if let Value::Object(map) = details {
        record.details = map.into_iter().collect();
    }
    state.event(info, Actor::default(), record)
}

impl AppState {
    /// Records the refusals counted since the last sweep as it would, when the server stops:
    /// they are in memory only, and would be lost with the process.
    pub(crate) async fn record_suppressed_at_exit(&self) -> Result<u64, ApiError> {
        let info = RequestInfo::new(None, Some("chaperone-shutdown".into()));
        self.record_suppressed(&info, self.clock.now()).await
    }

    /// Records, in one `auth.suppressed` entry, the refusals of requests without a known
    /// credential that were counted and not recorded one by one since the last sweep
    /// (`auth::AnonymousRefusals`): how many, since when, and the 20 addresses with the most.
    async fn record_suppressed(&self, info: &RequestInfo, now: Timestamp) -> Result<u64, ApiError> {
        let Some(suppressed) = self.anonymous_refusals.take() else {
            return Ok(0);
        };
        let total: u64 = suppressed.by_address.iter().map(|(_, n)| n).sum();
        let most: Vec<Value> = suppressed
            .by_address
            .iter()
            .take(20)
            .map(|(address, n)| json!({ "address": address, "refusals": n }))
            .collect();
        let mut record = LedgerRecord::new("auth.suppressed", "", Outcome::Denied);
        record.details.insert("refusals".into(), total.into());
        record
            .details
            .insert("since".into(), suppressed.since.to_rfc3339().into());
        record
            .details
            .insert("until".into(), now.to_rfc3339().into());
        record
            .details
            .insert("addresses".into(), suppressed.by_address.len().into());
        record.details.insert("most".into(), most.into());
        record.reasons.push("unauthenticated".into());
        if let Err(error) = self.record(info, Actor::default(), record).await {
            self.anonymous_refusals.restore(suppressed);
            return Err(error);
        }
        tracing::warn!(
            refusals = total,
            "refusals without a known credential past the budget"
        );
        Ok(total)
    }

    /// Whether a review item's grant is still in force (not revoked, not expired), or its
    /// account still enabled.
    async fn review_item_in_force(
        &self,
        item: &crate::api::access::ReviewItem,
        now: chaperone_core::Timestamp,
    ) -> Result<bool, ApiError> {
        Ok(if item.kind == "grant" {
            self.store
                .grant(&item.subject)
                .await?
                .is_some_and(|g| g.revoked_at.is_none() && g.expires_at > now)
        } else {
            self.store
                .person(&item.subject)
                .await?
                .is_some_and(|p| p.disabled_at.is_none())
        })
    }

    /// Runs the governance sweep once (see the module documentation).
    pub async fn sweep(&self) -> Result<SweepReport, ApiError> {
        let info = RequestInfo::new(None, Some("chaperone-sweep".into()));
        let now = self.clock.now();
        let mut report = SweepReport::default();
        for record in self.store.records("review", None).await? {
            let mut campaign: Campaign = body(&record)?;
            if campaign.status != "open" || campaign.deadline_nanos > now.unix_nanos() {
                continue;
            }
            let mut ops = Vec::new();
            let (mut revoked, mut ended) = (Vec::new(), Vec::new());
            for item in campaign.items.iter_mut().filter(|i| i.decision.is_none()) {
                item.decision = Some("expired".into());
                item.decided_time = Some(now.to_rfc3339());
                let mut summary =
                    json!({ "item": item.id, "kind": item.kind, "subject": item.subject });
                // The ledger says what the sweep revoked, not what had ended by itself.
                if self.review_item_in_force(item, now).await? {
                    item.note = Some("undecided at the deadline: revoked".into());
                    let (revoking, wrapped) =
                        revoke_item(self, item, "chaperone-sweep", now).await?;
                    ops.extend(revoking);
                    summary["wrappings_revoked"] = json!(wrapped);
                    revoked.push(summary);
                } else {
                    item.note = Some("undecided at the deadline: had already ended".into());
                    ended.push(summary);
                }
            }
            campaign.status = "closed".into();
            ops.insert(0, Op::Put(revise(&record, &campaign, now)));
            let count = revoked.len();
            let event = system_event(
                self,
                &info,
                "review.close",
                &campaign.id,
                json!({ "revoked": revoked, "already_ended": ended }),
            );
            // A decision made at this very moment wins; the next sweep closes the review.
            if skip_conflict(self.store.apply(ops, vec![event]).await)? {
                continue;
            }
            report.campaigns_closed += 1;
            report.items_revoked += count;
            tracing::warn!(review = %campaign.id, revoked = report.items_revoked, "review closed at its deadline");
        }
        report.reminders = self.remind(now).await?;
        report.attestations_overdue = crate::api::offboard::overdue_attestations(self, now).await?;
        report.accounts_disabled = self.disable_lapsed_accounts(now, &info).await?;
        report.shares_expired = crate::api::shares::expire_shares(self).await?;
        report.findings_resolved = crate::api::rotation::resolve_rotated(self, now).await?;
        report.wrapped_expired = crate::vault::wrapping::expire(self, &info, now).await?;
        report.failures_forgotten = self
            .store
            .prune_auth_failures(now.plus_secs(-self.settings.auth.lockout_window_secs))
            .await?;
        self.store
            .prune_login_networks(now.plus_secs(-crate::api::auth::FAMILIAR_FOR_SECS))
            .await?;
        report.refusals_suppressed = self.record_suppressed(&info, now).await?;
        report.anomalies = self.watch(now).await?;
        report.report_sent = self.send_report(now).await?;
        Ok(report)
    }

    /// Disables contractor accounts past their end date, or idle for longer than
    /// `disable_after_inactive` (counted from their last login, or their creation when they
    /// never logged in). Terminated vendors' accounts are disabled with the termination.
    async fn disable_lapsed_accounts(
        &self,
        now: Timestamp,
        info: &RequestInfo,
    ) -> Result<usize, ApiError> {
        let idle_limit = self.settings.notify.disable_after_inactive;
        let last = self.store.last_logins().await?;
        let mut disabled = 0;
        for person in self.store.list_people().await? {
            if person.disabled_at.is_some() || person.vendor_id.is_none() {
                continue;
            }
            let ended = person.ends_at.is_some_and(|end| end <= now);
            let last_seen = last
                .iter()
                .find(|(id, _)| id == &person.id)
                .and_then(|(_, at)| *at)
                .unwrap_or(person.created_at);
            let idle = idle_limit.is_some_and(|limit| {
                now.unix_nanos() - last_seen.unix_nanos()
                    > i64::try_from(limit.as_nanos()).unwrap_or(i64::MAX)
            });
            if !ended && !idle {
                continue;
            }
            let why = if ended { "end_date" } else { "inactive" };
            let event = system_event(
                self,
                info,
                "person.disable",
                &person.name,
                json!({
                    "person_id": person.id,
                    "why": why,
                    "last_login": last_seen,
                    // Deleted with their tokens; named as read here.
                    "wrappings_revoked": self.store.wrapped_by(&person.id, now).await?,
                }),
            );
            // Its pending requests close with it, as with `user disable`, also one filed
            // meanwhile: re-enabling the account brings none back.
            let closer = crate::api::access::Decision {
                by: "chaperone-sweep".into(),
                comment: Some(format!("the account was disabled ({why})")),
                time: now.to_rfc3339(),
            };
            let closed = crate::api::access::close_pending(self, &person.id, &closer, now).await?;
            // Its grants go too, so re-enabling it brings no access back without a new
            // approval.
            let grants_revoked = self
                .store
                .grants_of(&person.id)
                .await?
                .iter()
                .filter(|g| g.expires_at > now)
                .count();
            // And the links they made, as with `user disable`.
            let (link_ops, link_events, links_ended) = crate::api::shares::end_links_of(
                self,
                info,
                &Actor::default(),
                &person.id,
                "disable",
                now,
            )
            .await?;
            let event = {
                let mut event = event;
                event
                    .details
                    .insert("requests_closed".into(), closed.len().into());
                event
                    .details
                    .insert("grants_revoked".into(), grants_revoked.into());
                event
                    .details
                    .insert("links_ended".into(), links_ended.into());
                event
            };
            let mut ops = vec![
                Op::DisableLapsed {
                    id: person.id.clone(),
                    at: now,
                    ends_at: person.ends_at,
                },
                Op::RevokeTokensOf {
                    person_id: person.id.clone(),
                    at: now,
                },
                Op::RevokeGrantsOf {
                    person_id: person.id.clone(),
                    at: now,
                },
            ];
            ops.extend(closed);
            ops.extend(link_ops);
            let mut events = vec![event];
            events.extend(link_events);
            let applied = self.store.apply(ops, events).await;
            if skip_conflict(applied)? {
                continue;
            }
            crate::api::shares::end_late_links_of(
                self,
                info,
                &Actor::default(),
                &person.id,
                "disable",
                now,
            )
            .await;
            tracing::warn!(person = %person.name, why, "account disabled");
            disabled += 1;
        }
        Ok(disabled)
    }

    async fn remind(&self, now: Timestamp) -> Result<usize, ApiError> {
        let day = 86_400;
        let people = self.store.list_people().await?;
        let enabled = |id: &str| people.iter().any(|p| p.id == id && p.disabled_at.is_none());
        // Without an owner (or with one who has left), security hears of it; admins when
        // there is no one in security.
        let fallback = security_or_admins(&people);
        let owner_of = |vendor: &chaperone_store::VendorRecord| -> Option<String> {
            vendor
                .profile
                .get("owner")
                .and_then(Value::as_str)
                .filter(|owner| enabled(owner))
                .map(str::to_owned)
        };
        let mut due: Vec<(String, Vec<String>, String, Value)> = Vec::new();
        let threshold = |expires: Timestamp, days: &[i64]| {
            let left = expires.unix_nanos() - now.unix_nanos();
            days.iter()
                .copied()
                .filter(|d| left > 0 && left <= d * day * 1_000_000_000)
                .min()
        };
        let vendors = self.store.vendors().await?;
        for vendor in &vendors {
            if vendor.status == "terminated" {
                continue;
            }
            let owner: Vec<String> = match owner_of(vendor) {
                Some(owner) => vec![owner],
                None => fallback.clone(),
            };
            // Each item ends at the earlier of its expiry and a termination or revocation
            // still to come; one already past is not reminded of.
            let ends = |expires: Option<Timestamp>, cut: Option<Timestamp>| match cut {
                Some(cut) if cut <= now => None,
                Some(cut) => Some(expires.map_or(cut, |e| e.min(cut))),
                None => expires,
            };
            let mut items = Vec::new();
            for (record, a) in agreements_of(self, &vendor.id).await? {
                items.push((
                    record.id,
                    format!("agreement {}", a.kind.label()),
                    ends(a.expires_at, a.terminated_at),
                ));
            }
            for (record, e) in evidence_of(self, &vendor.id).await? {
                items.push((
                    record.id,
                    format!("evidence {}", e.kind.label()),
                    ends(e.expires_at, e.revoked_at),
                ));
            }
            for (id, what, expires) in items {
                let Some(expires) = expires else { continue };
                if let Some(days) = threshold(expires, &[30, 7, 1]) {
                    // Keyed by the end too: an end brought forward is reminded of again.
                    due.push((
                        format!("{id}/{}/{days}d", expires.unix_nanos()),
                        owner.clone(),
                        format!("{what} of vendor {} ends on {}", vendor.name, date(expires)),
                        json!({ "vendor_id": vendor.id, "record": id, "expires": date(expires), "within_days": days }),
                    ));
                }
            }
        }
        for grant in self.store.active_grants(now).await? {
            if threshold(grant.expires_at, &[1]).is_none() {
                continue;
            }
            let person = self.store.person(&grant.person_id).await?;
            let vendor = person
                .as_ref()
                .and_then(|p| p.vendor_id.as_ref())
                .and_then(|id| vendors.iter().find(|v| &v.id == id));
            let mut to = vec![grant.person_id.clone()];
            if let Some(owner) = vendor.and_then(owner_of) {
                to.push(owner);
            }
            // Keyed by the end too: an extended grant is reminded of again before its new end.
            due.push((
                format!("{}/{}/1d", grant.id, grant.expires_at.unix_nanos()),
                to,
                format!(
                    "grant on {} for {} ends at {}",
                    grant.prefix,
                    person.map_or(grant.person_id.clone(), |p| p.name),
                    grant.expires_at.to_rfc3339()
                ),
                json!({ "grant_id": grant.id, "expires_time": grant.expires_at.to_rfc3339() }),
            ));
        }
        let mut sent = 0;
        for (key, to, subject, details) in due {
            // Nobody to tell: no marker either, so it goes out once someone can take it.
            if to.is_empty() || self.store.record("reminder", &key).await?.is_some() {
                continue;
            }
            let marker = new_record("reminder", key, None, &json!({}), now);
            let queued = self
                .store
                .apply(
                    vec![
                        Op::Put(marker),
                        notification("expiry_reminder", &to, &subject, details, now),
                    ],
                    Vec::new(),
                )
                .await;
            // Another node queued it first.
            if !skip_conflict(queued)? {
                sent += 1;
            }
        }
        Ok(sent)
    }

    /// Delivers queued notifications to every configured channel (the webhook, email);
    /// returns how many were delivered. Each channel is tried until it succeeds once (for
    /// email: until every address took the message or was refused for good); a notification
    /// is delivered when every configured channel has taken it. Without any channel it does
    /// nothing. A notification another delivery holds (on this node or another), or whose
    /// next try is not due, is passed over. One that is still not delivered
    /// [`GIVE_UP_SECS`] after it was queued is given up, and security is told.
    pub async fn deliver_notifications(&self) -> Result<usize, ApiError> {
        let settings = &self.settings.notify;
        let configured: Vec<&str> = [
            settings.webhook_url.as_ref().map(|_| "webhook"),
            settings.smtp.as_ref().map(|_| "email"),
        ]
        .into_iter()
        .flatten()
        .collect();
        if configured.is_empty() {
            return Ok(0);
        }
        let mut delivered = 0;
        let started = std::time::Instant::now();
        // Failures in a row, by channel: a channel that reaches FAILURES_PER_PASS is not
        // used again in this pass.
        let mut failing: HashMap<&str, usize> = HashMap::new();
        let queued = self.store.records("notification", Some(OUTBOX)).await?;
        // One notice of given-up notifications waits at a time: a receiver down for days
        // must not turn every queued notification into a mail to security.
        let mut notice_waiting = queued
            .iter()
            .any(|r| body::<Notification>(r).is_ok_and(|n| n.kind == "notification_failed"));
        for record in queued {
            if started.elapsed() > PASS_TIME {
                break;
            }
            let mut note: Notification = body(&record)?;
            let now = self.clock.now();
            if !note.claimable(now) {
                continue;
            }
            let pending: Vec<&str> = configured
                .iter()
                .copied()
                .filter(|c| !note.channels_done.iter().any(|done| done == c))
                .collect();
            let usable: Vec<&str> = pending
                .iter()
                .copied()
                .filter(|c| failing.get(c).copied().unwrap_or(0) < FAILURES_PER_PASS)
                .collect();
            // Every configured channel took it (one was removed from the configuration
            // since): it is delivered.
            if pending.is_empty() {
                note.delivered_time = Some(now.to_rfc3339());
                note.next_attempt = None;
                let mut updated = revise(&record, &note, now);
                updated.owner = Some(SENT.into());
                if !skip_conflict(self.store.apply(vec![Op::Put(updated)], Vec::new()).await)? {
                    delivered += 1;
                }
                continue;
            }
            if usable.is_empty() {
                continue;
            }
            note.claimed_until = Some(now.plus_secs(CLAIM_SECS));
            let record = revise(&record, &note, now);
            if skip_conflict(
                self.store
                    .apply(vec![Op::Put(record.clone())], Vec::new())
                    .await,
            )? {
                continue;
            }
            let mut recipients = Vec::new();
            let mut emails = Vec::new();
            for id in &note.to {
                // Nobody disabled since the notification was queued is written to.
                if let Some(p) = self
                    .store
                    .person(id)
                    .await?
                    .filter(|p| p.disabled_at.is_none())
                {
                    if let Some(email) = p.email.as_ref().filter(|e| crate::mail::valid_address(e))
                    {
                        emails.push(email.clone());
                    }
                    recipients.push(json!({ "id": p.id, "name": p.name, "email": p.email }));
                }
            }
            let mut errors = Vec::new();
            for channel in usable {
                let outcome = match channel {
                    "webhook" => match self.post_webhook(&note, &recipients).await {
                        Ok(()) => Sent::Delivered,
                        Err(e) => Sent::ChannelFailed(e),
                    },
                    _ => self.mail_notification(&mut note, &emails).await,
                };
                let count = failing.entry(channel).or_default();
                match outcome {
                    Sent::Delivered => {
                        *count = 0;
                        note.channels_done.push(channel.into());
                    }
                    Sent::NobodyToWrite => note.channels_done.push(channel.into()),
                    Sent::Retry(e) => errors.push(e),
                    Sent::ChannelFailed(e) => {
                        *count += 1;
                        errors.push(e);
                    }
                }
            }
            let now = self.clock.now();
            note.attempts += 1;
            note.claimed_until = None;
            let done = configured
                .iter()
                .all(|c| note.channels_done.iter().any(|done| done == c));
            let mut ops = Vec::new();
            let mut owner = OUTBOX;
            if done {
                delivered += 1;
                owner = SENT;
                note.delivered_time = Some(now.to_rfc3339());
                note.last_error = None;
                note.next_attempt = None;
            } else if !errors.is_empty() {
                let error = errors.join("; ");
                tracing::warn!(notification = %note.id, %error, "notification delivery failed");
                note.last_error = Some(error);
                note.failures += 1;
                note.next_attempt = Some(now.plus_secs(retry_after(note.failures)));
                if now >= record.created_at.plus_secs(GIVE_UP_SECS) {
                    tracing::error!(notification = %note.id, kind = %note.kind, "notification given up: not delivered within {} hours", GIVE_UP_SECS / 3600);
                    owner = FAILED;
                    note.next_attempt = None;
                    // Security learns of it, by whichever channel works, once until that
                    // notice is delivered (never of a notice itself: that would not end).
                    // It names no recipient and carries no error text: it may go to a
                    // webhook many read, and the listing shows the rest to security.
                    if note.kind != "notification_failed" && !notice_waiting {
                        notice_waiting = true;
                        let people = self.store.list_people().await?;
                        ops.push(notification(
                            "notification_failed",
                            &security_or_admins(&people),
                            &format!(
                                "Notifications could not be delivered within {} hours: the \
                                 failed ones are listed at /api/v1/notifications",
                                GIVE_UP_SECS / 3600
                            ),
                            json!({ "notification_id": note.id, "kind": note.kind }),
                            now,
                        ));
                    }
                }
            }
            let mut updated = revise(&record, &note, now);
            updated.owner = Some(owner.into());
            ops.insert(0, Op::Put(updated));
            skip_conflict(self.store.apply(ops, Vec::new()).await)?;
        }
        Ok(delivered)
    }

    /// Posts `note` to the webhook.
    async fn post_webhook(&self, note: &Notification, recipients: &[Value]) -> Result<(), String> {
        let settings = &self.settings.notify;
        let Some(url) = &settings.webhook_url else {
            return Ok(());
        };
        let payload = json!({
            "id": note.id,
            "kind": note.kind,
            "subject": note.subject,
            "to": recipients,
            "details": note.details,
            "time": note.created_time,
        });
        let target = url.clone();
        let body = serde_json::to_vec(&payload).expect("a JSON value always serialises");
        let signed_at = self.clock.now().unix_secs();
        let signature = settings
            .webhook_secret
            .as_ref()
            .map(|key| webhook_signature(key.expose().as_bytes(), signed_at, &body));
        tokio::task::spawn_blocking(move || {
            // Security decision: redirects are not followed. ureq would turn the POST into a
            // body-less GET on a 301/302 and count its 2xx as delivered, and a receiver could
            // point the server at any address; only a 2xx answer of the configured URL itself
            // delivers.
            let agent: ureq::Agent = ureq::Agent::config_builder()
                .timeout_global(Some(Duration::from_secs(10)))
                .max_redirects(0)
                .build()
                .into();
            let mut request = agent
                .post(&target)
                .header("Content-Type", "application/json");
            if let Some(signature) = &signature {
                request = request
                    .header("X-Chaperone-Timestamp", signed_at.to_string())
                    .header("X-Chaperone-Signature", format!("sha256={signature}"));
            }
            let response = request
                .send(&body[..])
                .map_err(|e| format!("webhook: {e}"))?;
            if response.status().is_success() {
                Ok(())
            } else {
                Err(format!(
                    "webhook: answered HTTP {} (redirects are not followed)",
                    response.status().as_u16()
                ))
            }
        })
        .await
        .unwrap_or_else(|e| Err(e.to_string()))
    }

    /// Mails `note` to those of `emails` not done with yet. Done when every address took it
    /// or was refused for good (logged, and kept in `refused`); an address refused for now
    /// is tried again at the next try, alone. A relay that took it for nobody and refused
    /// everyone, at least once for a reason of its own rather than the mailbox's ("relaying
    /// denied", authentication required: see `mail::refuses_relaying`), is failing, not the
    /// recipients.
    async fn mail_notification(&self, note: &mut Notification, emails: &[String]) -> Sent {
        let Some(smtp) = &self.settings.notify.smtp else {
            return Sent::NobodyToWrite;
        };
        let pending: Vec<String> = emails
            .iter()
            .filter(|e| !note.emailed.contains(e))
            .cloned()
            .collect();
        if pending.is_empty() {
            return Sent::NobodyToWrite;
        }
        let text = format!(
            "{}\n\n{}\n\nSent by Chaperone ({}, {}).",
            note.subject,
            serde_json::to_string_pretty(&note.details).unwrap_or_default(),
            note.kind,
            note.created_time
        );
        let id = format!("{}.{}", note.id, note.attempts + 1);
        let message = crate::mail::Message {
            to: &pending,
            subject: &note.subject,
            body: &text,
            id: &id,
            date: self.clock.now(),
        };
        let delivery = match crate::mail::send(smtp, &message).await {
            Ok(delivery) => delivery,
            Err(e) => return Sent::ChannelFailed(format!("email: {e}")),
        };
        if delivery.accepted.is_empty()
            && delivery.deferred.is_empty()
            && delivery
                .refused
                .iter()
                .any(|(_, answer)| crate::mail::refuses_relaying(answer))
        {
            let answers: Vec<&str> = delivery.refused.iter().map(|(_, a)| a.as_str()).collect();
            return Sent::ChannelFailed(format!(
                "email: the relay refused every recipient: {}",
                answers.join("; ")
            ));
        }
        note.emailed.extend(delivery.accepted);
        for (address, answer) in delivery.refused {
            tracing::warn!(notification = %note.id, %address, %answer, "the mail relay refused a recipient for good");
            note.refused.push(format!("{address}: {answer}"));
            note.emailed.push(address);
        }
        if delivery.deferred.is_empty() {
            Sent::Delivered
        } else {
            let deferred: Vec<String> = delivery
                .deferred
                .iter()
                .map(|(address, answer)| format!("{address}: {answer}"))
                .collect();
            Sent::Retry(format!(
                "email: deferred by the relay for {}",
                deferred.join(", ")
            ))
        }
    }

    /// Notifications addressed to `person_id`, or all of them, newest first.
    pub(crate) async fn notifications(
        &self,
        person_id: Option<&str>,
    ) -> Result<Vec<Notification>, ApiError> {
        let mut out = Vec::new();
        for owner in [OUTBOX, SENT, FAILED] {
            for record in self.store.records("notification", Some(owner)).await? {
                let note: Notification = body(&record)?;
                if person_id.is_none_or(|id| note.to.iter().any(|t| t == id)) {
                    out.push((record.created_at, note));
                }
            }
        }
        out.sort_by_key(|(at, _)| std::cmp::Reverse(*at));
        Ok(out.into_iter().map(|(_, n)| n).collect())
    }
}

/// The signature of a webhook post: hex HMAC-SHA256 under the configured key of the
/// timestamp (Unix seconds, also sent as `X-Chaperone-Timestamp`), a dot, and the body.
/// Security decision: the receiver checks it to know the post came from this server and
/// was not changed, and checks the timestamp is recent so an old post cannot be replayed;
/// signing the timestamp with the body keeps it from being moved to another post.
pub(crate) fn webhook_signature(key: &[u8], timestamp: u64, body: &[u8]) -> String {
    use hmac::Mac as _;
    let mut mac =
        hmac::Hmac::<sha2::Sha256>::new_from_slice(key).expect("HMAC takes a key of any length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// Runs the sweep and the delivery every interval, for as long as the server runs.
pub(crate) async fn background(state: Arc<AppState>) {
    let mut ticker = tokio::time::interval(state.settings.notify.sweep_interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        if state.keyring().is_none() {
            continue;
        }
        if let Err(error) = state.sweep().await {
            tracing::error!(?error, "governance sweep failed");
        }
        if let Err(error) = state.deliver_notifications().await {
            tracing::error!(?error, "notification delivery failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_subject_is_one_line_of_bounded_length() {
        assert_eq!(one_line("a\r\nb\tc\u{1b}[2Jd"), "a  b c [2Jd");
        let long = one_line(&"x".repeat(1000));
        assert_eq!(long.chars().count(), MAX_SUBJECT);
        assert!(long.ends_with('…'));
        assert_eq!(one_line(&"y".repeat(MAX_SUBJECT)), "y".repeat(MAX_SUBJECT));
    }

    #[test]
    fn a_claim_holds_a_notification_until_it_runs_out() {
        let now = Timestamp::from_unix_nanos(1_800_000_000_000_000_000);
        let Op::Put(record) = notification("test", &[], "subject", json!({}), now) else {
            unreachable!("a notification is a record")
        };
        let mut note: Notification = body(&record).unwrap();
        assert!(note.claimable(now), "a new notification is free");
        note.claimed_until = Some(now.plus_secs(CLAIM_SECS));
        assert!(!note.claimable(now));
        assert!(!note.claimable(now.plus_secs(CLAIM_SECS - 1)));
        assert!(
            note.claimable(now.plus_secs(CLAIM_SECS)),
            "a claim runs out"
        );
        // The claim is stored with the record, and absent from a record that has none.
        let stored = serde_json::to_value(&note).unwrap();
        assert!(stored["claimed_until"].is_string(), "{stored}");
        note.claimed_until = None;
        assert!(
            serde_json::to_value(&note)
                .unwrap()
                .get("claimed_until")
                .is_none()
        );
    }
}
