//! Periodic reports: for a period, the failed logins, the data transfers (secrets read and
//! written, share links, submissions, deliverables, unwrapped answers), the provisioning
//! changes (people, tokens, grants, vendors, classifications) and the anomalies, all read
//! from the ledger; and each vendor's compliance now, level by level, as the gate sees it.
//! The sweep sends a summary to security every `report_every` (weekly by default).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use chaperone_core::Timestamp;
use chaperone_core::governance::{Compliance, date, gate, parse_date};
use chaperone_store::Op;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::ApiQuery;
use super::governance::{agreements_of, evidence_of, levels, new_record};
use crate::notify::{notification, security_or_admins, skip_conflict};
use crate::{ApiError, AppState};

/// Requests that moved data in or out.
const TRANSFERS: &[&str] = &[
    "secret.read",
    "secret.write",
    "share.create",
    "share.open",
    "secret_request.submit",
    "deliverable.submit",
    "wrap.unwrap",
];

/// Changes to who may do what.
const PROVISIONING: &[&str] = &[
    "person.create",
    "person.disable",
    "person.enable",
    "person.unlock",
    "person.reset",
    "person.networks",
    "auth.enroll",
    "token.create",
    "token.revoke",
    "grant.create",
    "grant.extend",
    "grant.revoke",
    "grant.review",
    "review.decide",
    "review.close",
    "access.approve",
    "access.deny",
    "vendor.create",
    "vendor.update",
    "vendor.offboard",
    "person.offboard",
    "classification.set",
    "classification.remove",
    "level.set",
];

/// A total, and counts by person and by vendor.
type Tally = (u64, HashMap<String, u64>, HashMap<String, u64>);

/// Names listed per count, most first.
const TOP: usize = 20;
/// Distinct names counted per tally; the rest are counted under `(others)`, so that names an
/// attacker makes up (failed logins) cannot grow a report without bound.
const DISTINCT: usize = 10_000;
/// The longest period a report covers.
const MAX_PERIOD_SECS: i64 = 366 * 86_400;
/// Provisioning changes listed (all are counted).
const CHANGES_LISTED: usize = 1000;

#[derive(Deserialize)]
pub(crate) struct ReportQuery {
    from: Option<String>,
    to: Option<String>,
}

/// A name and how often.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct Count {
    name: String,
    count: u64,
}

#[derive(Debug, Default, Serialize, utoipa::ToSchema)]
pub(crate) struct FailedLogins {
    total: u64,
    /// By account name (an HMAC for an account that does not exist).
    by_account: Vec<Count>,
    by_address: Vec<Count>,
}

/// One kind of transfer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct Transfers {
    action: String,
    total: u64,
    by_person: Vec<Count>,
    by_vendor: Vec<Count>,
}

/// One provisioning change.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct Change {
    time: String,
    action: String,
    resource: String,
    /// Who made it (a person's name, `root`, or `chaperone` for the server itself).
    by: String,
}

#[derive(Debug, Default, Serialize, utoipa::ToSchema)]
pub(crate) struct Provisioning {
    counts: BTreeMap<String, u64>,
    /// The first 1,000 changes of the period, oldest first.
    changes: Vec<Change>,
}

/// Whether a vendor meets a level's agreement and evidence requirements now.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct LevelCheck {
    level: String,
    met: bool,
    /// The first requirement not met, as the gate names it.
    reason: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct VendorCompliance {
    vendor: String,
    status: String,
    levels: Vec<LevelCheck>,
    /// Agreements and evidence ending within 30 days.
    ending_soon: Vec<String>,
}

/// A report for one period.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct Report {
    from: String,
    to: String,
    /// Ledger entries of the period.
    entries: u64,
    failed_logins: FailedLogins,
    data_transfers: Vec<Transfers>,
    provisioning: Provisioning,
    /// Anomaly alerts raised, by kind.
    anomalies: BTreeMap<String, u64>,
    vendor_compliance: Vec<VendorCompliance>,
}

/// Counts one more for `name`, within [`DISTINCT`] names.
fn tally(counts: &mut HashMap<String, u64>, name: String) {
    let name = if counts.len() >= DISTINCT && !counts.contains_key(&name) {
        "(others)".to_owned()
    } else {
        name
    };
    *counts.entry(name).or_insert(0) += 1;
}

/// Counts per name, most first, at most [`TOP`].
fn top(counts: HashMap<String, u64>) -> Vec<Count> {
    let mut out: Vec<Count> = counts
        .into_iter()
        .map(|(name, count)| Count { name, count })
        .collect();
    out.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.name.cmp(&b.name)));
    out.truncate(TOP);
    out
}

/// The first entry recorded at or after `at`. Entries are appended in the order they
/// commit and stamped just before, so times rise with the sequence number but for requests
/// that overlapped: a minute earlier is searched for, and entries are filtered by time.
async fn first_at(state: &AppState, at: Timestamp, size: u64) -> Result<u64, ApiError> {
    let target = at.plus_secs(-60).unix_nanos();
    let (mut low, mut high) = (0, size);
    while low < high {
        let mid = low + (high - low) / 2;
        let time = match state.store.ledger_entries(mid, mid + 1).await?.first() {
            Some((_, bytes)) => serde_json::from_slice::<Value>(bytes)
                .ok()
                .and_then(|e| e["time"].as_str().and_then(|t| parse_date(t).ok()))
                .map_or(i128::MIN, |t| i128::from(t.unix_nanos())),
            None => i128::MAX,
        };
        if time < i128::from(target) {
            low = mid + 1;
        } else {
            high = mid;
        }
    }
    Ok(low)
}

impl AppState {
    /// The report for `from..to`.
    pub(crate) async fn report(&self, from: Timestamp, to: Timestamp) -> Result<Report, ApiError> {
        let people = self.store.list_people().await?;
        let names: HashMap<&str, &str> = people
            .iter()
            .map(|p| (p.id.as_str(), p.name.as_str()))
            .collect();
        let vendors = self.store.vendors().await?;
        let vendor_names: HashMap<&str, &str> = vendors
            .iter()
            .map(|v| (v.id.as_str(), v.name.as_str()))
            .collect();
        let name_of = |id: Option<&str>, table: &HashMap<&str, &str>| -> Option<String> {
            id.map(|id| table.get(id).map_or(id, |n| n).to_owned())
        };

        let size = self.store.ledger_size().await?;
        let mut seq = first_at(self, from, size).await?;
        let mut entries = 0;
        let mut failed = (0, HashMap::new(), HashMap::new());
        let mut transfers: BTreeMap<&str, Tally> = BTreeMap::new();
        let mut provisioning = Provisioning::default();
        let mut anomalies = BTreeMap::new();
        'read: while seq < size {
            let end = (seq + 4096).min(size);
            for (_, bytes) in self.store.ledger_entries(seq, end).await? {
                let entry: Value = serde_json::from_slice(&bytes).map_err(|e| {
                    chaperone_store::StoreError::Corrupt(format!("ledger entry: {e}"))
                })?;
                let Some(time) = entry["time"].as_str().and_then(|t| parse_date(t).ok()) else {
                    continue;
                };
                // A minute's margin either side: overlapping requests may be out of order.
                if time.unix_nanos() >= to.plus_secs(60).unix_nanos() {
                    break 'read;
                }
                if time < from || time >= to {
                    continue;
                }
                entries += 1;
                let action = entry["action"].as_str().unwrap_or_default();
                let success = entry["outcome"] == "success";
                let resource = entry["resource"].as_str().unwrap_or_default();
                let person = name_of(entry["actor"]["person"].as_str(), &names);
                let vendor = name_of(entry["actor"]["vendor"].as_str(), &vendor_names);
                if matches!(action, "auth.login" | "auth.verify" | "auth.enroll") && !success {
                    failed.0 += 1;
                    // An enrolment code never issued names no account.
                    let account = if resource.is_empty() {
                        "(an unknown enrolment code)"
                    } else {
                        resource
                    };
                    tally(&mut failed.1, account.to_owned());
                    // Addresses as the lockout counts them: an IPv6 client holds its /64.
                    let address = entry["client_ip"]
                        .as_str()
                        .and_then(|ip| ip.parse().ok())
                        .map(super::auth::ip_subject)
                        .unwrap_or_else(|| super::auth::address_subject(None));
                    tally(&mut failed.2, address.trim_start_matches("ip:").to_owned());
                } else if let Some(kind) = TRANSFERS.iter().find(|a| **a == action)
                    && success
                {
                    let slot = transfers.entry(kind).or_default();
                    slot.0 += 1;
                    if let Some(person) = person {
                        tally(&mut slot.1, person);
                    }
                    if let Some(vendor) = vendor {
                        tally(&mut slot.2, vendor);
                    }
                } else if PROVISIONING.contains(&action) && success {
                    *provisioning.counts.entry(action.to_owned()).or_insert(0) += 1;
                    if provisioning.changes.len() < CHANGES_LISTED {
                        let by = match (person, entry["actor"]["token"].as_str()) {
                            (Some(person), _) => person,
                            (None, Some(_)) => "root".to_owned(),
                            (None, None) => "chaperone".to_owned(),
                        };
                        provisioning.changes.push(Change {
                            time: time.to_rfc3339(),
                            action: action.to_owned(),
                            resource: resource.to_owned(),
                            by,
                        });
                    }
                } else if action == "anomaly.detect" {
                    let kind = entry["details"]["kind"].as_str().unwrap_or("other");
                    *anomalies.entry(kind.to_owned()).or_insert(0) += 1;
                }
            }
            seq = end;
        }

        Ok(Report {
            from: from.to_rfc3339(),
            to: to.to_rfc3339(),
            entries,
            failed_logins: FailedLogins {
                total: failed.0,
                by_account: top(failed.1),
                by_address: top(failed.2),
            },
            data_transfers: transfers
                .into_iter()
                .map(|(action, (total, by_person, by_vendor))| Transfers {
                    action: action.to_owned(),
                    total,
                    by_person: top(by_person),
                    by_vendor: top(by_vendor),
                })
                .collect(),
            provisioning,
            anomalies,
            vendor_compliance: self.vendor_compliance(&vendors).await?,
        })
    }

    /// Each vendor not terminated, against each level's agreement and evidence
    /// requirements, as of now.
    async fn vendor_compliance(
        &self,
        vendors: &[chaperone_store::VendorRecord],
    ) -> Result<Vec<VendorCompliance>, ApiError> {
        let now = self.clock.now();
        let levels = levels(self).await?;
        let soon = now.plus_secs(30 * 86_400);
        let mut out = Vec::new();
        for vendor in vendors.iter().filter(|v| v.status != "terminated") {
            let agreements = agreements_of(self, &vendor.id).await?;
            let evidence = evidence_of(self, &vendor.id).await?;
            let compliance = Compliance {
                vendor: Some(vendor.name.clone()),
                person: String::new(),
                agreements: agreements.iter().map(|(_, a)| a.facts()).collect(),
                evidence: evidence.iter().map(|(_, e)| e.facts()).collect(),
                acknowledgements: Vec::new(),
            };
            let checks = levels
                .iter()
                .filter(|l| !l.agreements.is_empty() || !l.evidence.is_empty())
                .map(|level| {
                    // Acknowledgements are each person's: not a vendor's.
                    let mut vendor_terms = level.clone();
                    vendor_terms.acknowledgements.clear();
                    let verdict = gate(&vendor_terms, &compliance, now);
                    LevelCheck {
                        level: level.name.clone(),
                        met: verdict.is_ok(),
                        reason: verdict.err(),
                    }
                })
                .collect();
            let mut ending_soon = Vec::new();
            for (_, a) in &agreements {
                let facts = a.facts();
                let end = match (facts.expires_at, facts.terminated_at) {
                    (Some(e), Some(t)) => Some(e.min(t)),
                    (e, t) => e.or(t),
                };
                if let Some(end) = end.filter(|e| *e > now && *e <= soon) {
                    ending_soon.push(format!(
                        "agreement {} ends on {}",
                        a.kind.label(),
                        date(end)
                    ));
                }
            }
            for (_, e) in &evidence {
                let facts = e.facts();
                let end = match (facts.expires_at, facts.revoked_at) {
                    (Some(x), Some(r)) => Some(x.min(r)),
                    (x, r) => x.or(r),
                };
                if let Some(end) = end.filter(|x| *x > now && *x <= soon) {
                    ending_soon.push(format!("evidence {} ends on {}", e.kind.label(), date(end)));
                }
            }
            out.push(VendorCompliance {
                vendor: vendor.name.clone(),
                status: vendor.status.clone(),
                levels: checks,
                ending_soon,
            });
        }
        Ok(out)
    }

    /// Sends the summary of the period that ended at the last multiple of `every` (counted
    /// from the epoch) to security (admins when nobody is in security), once; whether it
    /// sent one.
    pub(crate) async fn send_report(&self, now: Timestamp) -> Result<bool, ApiError> {
        let Some(every) = self.settings.notify.report_every else {
            return Ok(false);
        };
        let every = i64::try_from(every.as_secs()).unwrap_or(i64::MAX).max(3600);
        let period = now.unix_nanos().div_euclid(1_000_000_000).div_euclid(every);
        let key = format!("{every}/{period}");
        if self.store.record("report", &key).await?.is_some() {
            return Ok(false);
        }
        let people = self.store.list_people().await?;
        let to = security_or_admins(&people);
        if to.is_empty() {
            return Ok(false);
        }
        let end = Timestamp::from_unix_nanos(period * every * 1_000_000_000);
        // From when the server was initialised, if it was during the period; a period that
        // ended before is not reported (its counts would all be zero, and its dates would
        // say the server watched a week it did not exist in).
        let initialised = self.store.keyring().await?.map(|k| k.created_at);
        if initialised.is_some_and(|at| at >= end) {
            let ops = vec![Op::Put(new_record("report", key, None, &json!({}), now))];
            skip_conflict(self.store.apply(ops, Vec::new()).await)?;
            return Ok(false);
        }
        let start = initialised.map_or(end.plus_secs(-every), |at| at.max(end.plus_secs(-every)));
        let report = self.report(start, end).await?;
        let transferred: u64 = report.data_transfers.iter().map(|t| t.total).sum();
        let changed: u64 = report.provisioning.counts.values().sum();
        let anomalies: u64 = report.anomalies.values().sum();
        let short: Vec<&str> = report
            .vendor_compliance
            .iter()
            .filter(|v| v.levels.iter().any(|l| !l.met))
            .map(|v| v.vendor.as_str())
            .collect();
        let subject = format!(
            "report {} to {}: {} failed logins, {transferred} transfers, {changed} provisioning \
             changes, {anomalies} anomalies, {} vendors short of a level",
            date(start),
            date(end),
            report.failed_logins.total,
            short.len()
        );
        let details = json!({
            "from": report.from, "to": report.to,
            "failed_logins": report.failed_logins.total,
            "transfers": transferred, "provisioning_changes": changed,
            "anomalies": report.anomalies, "vendors_short": short,
        });
        let ops = vec![
            Op::Put(new_record("report", key, None, &json!({}), now)),
            notification("report", &to, &subject, details, now),
        ];
        Ok(!skip_conflict(self.store.apply(ops, Vec::new()).await)?)
    }
}

#[utoipa::path(get, path = "/api/v1/reports", params(("from" = Option<String>, Query, description = "start of the period (a date or an RFC 3339 instant; 7 days before `to` if not given)"), ("to" = Option<String>, Query, description = "end of the period, excluded (now if not given)")), responses((status = 200, body = Report), (status = 400, body = super::ErrorBody), (status = 401, body = super::ErrorBody), (status = 403, body = super::ErrorBody)), security(("bearer" = [])))]
/// A report for a period: failed logins, data transfers, provisioning changes and
/// anomalies from the ledger, and each vendor's compliance now.
pub(crate) async fn report(
    State(state): State<Arc<AppState>>,
    ApiQuery(query): ApiQuery<ReportQuery>,
) -> Result<Json<Report>, ApiError> {
    let parse = |text: Option<&str>| {
        text.map(parse_date)
            .transpose()
            .map_err(|e| ApiError::bad_request("invalid_request", e))
    };
    let to = parse(query.to.as_deref())?.unwrap_or_else(|| state.clock.now());
    let from = parse(query.from.as_deref())?.unwrap_or_else(|| to.plus_secs(-7 * 86_400));
    if from >= to {
        return Err(ApiError::bad_request(
            "invalid_request",
            "`from` must be before `to`",
        ));
    }
    // Each report reads its period's entries: a period is at most a year.
    if i128::from(to.unix_nanos()) - i128::from(from.unix_nanos())
        > i128::from(MAX_PERIOD_SECS) * 1_000_000_000
    {
        return Err(ApiError::bad_request(
            "invalid_request",
            "a report covers at most 366 days",
        ));
    }
    Ok(Json(state.report(from, to).await?))
}
