//! Anomaly alerts. The sweep reads the ledger entries recorded since its last run (the
//! ledger holds every request, so nothing is watched that is not also recorded there) and
//! raises an alert for:
//!
//! - **failed-login bursts**: [`WatchSettings::login_burst`] failed logins (wrong passwords,
//!   step-up or enrolment codes) for one account, or
//!   from one address, within ten minutes;
//! - **off-hours access**: a contractor's secret read outside [`WatchSettings::business_hours`];
//! - **unusual volume**: a person's secret reads within any hour (a sliding window, not a
//!   clock hour, which a burst split across the hour's turn would stay under) past
//!   [`WatchSettings::reads_per_hour`];
//! - **new networks**: a person's successful request from a network (IPv4 /24, IPv6 /64) not
//!   seen for them before, once they have been seen from one.
//!
//! An alert is a finding (source `anomaly`, tracked until closed), a notification to
//! security (to admins when nobody is in security) and an `anomaly.detect` ledger entry,
//! each raised once: its key is kept as a record of kind `anomaly`. What the watch has
//! learnt (where it stopped, recent failures and reads, each person's networks) is one
//! record, written in the same transaction as the alerts, with a compare-and-swap, so two
//! nodes running the sweep never raise an alert twice. Entries recorded more than a day
//! before they are read (a server catching up on an older ledger) teach the watch but
//! raise nothing.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::net::IpAddr;

use chaperone_core::Timestamp;
use chaperone_core::governance::parse_date;
use chaperone_ledger::entry::Outcome;
use chaperone_store::Op;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::api::findings::{NewFinding, new_finding};
use crate::api::governance::{body, new_record, revise};
use crate::notify::{notification, security_or_admins, skip_conflict};
use crate::record::{Record as LedgerRecord, RequestInfo};
use crate::{ApiError, AppState};

/// The window of a failed-login burst.
const BURST_WINDOW_SECS: i64 = 600;
/// The window of an unusual volume of reads.
const VOLUME_WINDOW_SECS: i64 = 3600;
/// How long one sweep keeps reading: a flood of recorded requests (refused tokens cost an
/// attacker nothing) must not push entries past `STALE_SECS` unread.
const SWEEP_TIME: std::time::Duration = std::time::Duration::from_secs(15);

/// Networks remembered per person (the oldest is forgotten first).
const NETWORKS_PER_PERSON: usize = 64;
/// Entries older than this when read raise no alert.
const STALE_SECS: i64 = 86_400;

/// What the watch looks for.
#[derive(Clone, Debug)]
pub struct WatchSettings {
    /// Failed logins for one account or from one address within ten minutes that raise an
    /// alert; 0 turns the check off.
    pub login_burst: u32,
    /// Secret reads by one person within an hour (any hour: the window slides) above which
    /// an alert is raised; 0 turns the check off.
    pub reads_per_hour: u32,
    /// When contractors are expected to read secrets; `None` turns the check off.
    pub business_hours: Option<BusinessHours>,
    /// Alerts raised one by one per sweep at most; the rest are counted in one more alert,
    /// so that a flood of, say, failed logins from many networks cannot bury security in
    /// findings and notifications.
    pub alerts_per_sweep: usize,
}

impl Default for WatchSettings {
    fn default() -> Self {
        Self {
            login_burst: 10,
            reads_per_hour: 200,
            alerts_per_sweep: 50,
            business_hours: Some(
                "Mon-Fri 07:00-19:00 +00:00"
                    .parse()
                    .expect("the default business hours parse"),
            ),
        }
    }
}

/// Days of the week and hours of the day at a fixed UTC offset: `Mon-Fri 07:00-19:00
/// +01:00`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BusinessHours {
    /// Monday first.
    days: [bool; 7],
    /// Minutes after midnight, local: from `start` up to (not including) `end`.
    start: u32,
    end: u32,
    offset_secs: i64,
}

const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];

impl std::str::FromStr for BusinessHours {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let bad = || format!("`{text}` is not business hours like `Mon-Fri 07:00-19:00 +01:00`");
        let parts: Vec<&str> = text.split_whitespace().collect();
        let [days, hours, offset] = parts.as_slice() else {
            return Err(bad());
        };
        let day = |name: &str| DAYS.iter().position(|d| d.eq_ignore_ascii_case(name));
        let (first, last) = match days.split_once('-') {
            Some((a, b)) => (day(a).ok_or_else(bad)?, day(b).ok_or_else(bad)?),
            None => {
                let d = day(days).ok_or_else(bad)?;
                (d, d)
            }
        };
        let mut set = [false; 7];
        let mut d = first;
        loop {
            set[d] = true;
            if d == last {
                break;
            }
            d = (d + 1) % 7;
        }
        let minutes = |hm: &str| -> Option<u32> {
            let (h, m) = hm.split_once(':')?;
            let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
            (h <= 24 && m < 60 && h * 60 + m <= 24 * 60).then_some(h * 60 + m)
        };
        let (start, end) = hours.split_once('-').ok_or_else(bad)?;
        let (start, end) = (
            minutes(start).ok_or_else(bad)?,
            minutes(end).ok_or_else(bad)?,
        );
        if start >= end {
            return Err(format!("{}: the hours must start before they end", bad()));
        }
        let sign = match offset.as_bytes().first() {
            Some(b'+') => 1,
            Some(b'-') => -1,
            _ => return Err(bad()),
        };
        let offset = minutes(&offset[1..])
            .filter(|&m| m <= 14 * 60)
            .ok_or_else(bad)?;
        Ok(Self {
            days: set,
            start,
            end,
            offset_secs: sign * i64::from(offset) * 60,
        })
    }
}

impl BusinessHours {
    /// Whether `t` falls within these hours.
    pub fn contains(&self, t: Timestamp) -> bool {
        let local = t.unix_nanos().div_euclid(1_000_000_000) + self.offset_secs;
        let days = local.div_euclid(86_400);
        // 1970-01-01 was a Thursday (index 3, Monday first).
        let weekday = usize::try_from((days + 3).rem_euclid(7)).expect("in 0..7");
        let minute = u32::try_from(local.rem_euclid(86_400) / 60).expect("in a day");
        self.days[weekday] && (self.start..self.end).contains(&minute)
    }
}

/// What the watch has learnt, kept between sweeps (one record, `watch`/`state`).
#[derive(Debug, Default, Serialize, Deserialize)]
struct WatchState {
    /// The first ledger entry not read yet.
    next: u64,
    /// Failed-login times (Unix seconds) within the burst window, by subject.
    logins: BTreeMap<String, Vec<i64>>,
    /// Recent secret reads, by person. (Records written before the window slid hold a
    /// `reads` field instead, of counts per clock hour: it is ignored.)
    #[serde(default)]
    recent_reads: BTreeMap<String, RecentReads>,
    /// Networks each person was seen from, oldest first.
    networks: BTreeMap<String, Vec<String>>,
    /// For a token of no person made by another such token (the initial admin token's
    /// children, theirs, ...): the first of the chain, which is watched for all of them, and
    /// until when the token works (Unix seconds; forgotten then).
    #[serde(default)]
    token_roots: BTreeMap<String, (String, i64)>,
}

/// Tokens of no person whose chain is remembered at most (they are few: automation the
/// initial admin token set up); past it, a new one is watched on its own.
const MAX_TOKEN_ROOTS: usize = 10_000;

/// One person's secret reads within the last hour.
#[derive(Debug, Default, Serialize, Deserialize)]
struct RecentReads {
    /// Their times (Unix seconds), oldest first; at most one more than the limit, which
    /// is all it takes to know the limit was passed.
    times: VecDeque<i64>,
    /// Whether an alert was raised since the reads last went over the limit: one alert for
    /// a burst, however long it goes on.
    alerted: bool,
}

/// One alert, before it is raised.
struct Alert {
    /// Raised once per key.
    key: String,
    kind: &'static str,
    severity: &'static str,
    title: String,
    subject: String,
    vendor_id: Option<String>,
    seq: u64,
    details: Value,
}

/// Failed-login bursts from more addresses than this in one sweep are raised as one alert.
const ADDRESS_BURSTS: usize = 3;

/// `bursts` with those of addresses merged into one alert when there are more than
/// [`ADDRESS_BURSTS`]: guessing spread over many addresses (anyone can send it, without an
/// account) is one event for security to look at, not one finding and notification per
/// address. Bursts on accounts and share links stay one by one.
fn merge_address_bursts(bursts: Vec<Alert>) -> Vec<Alert> {
    let (addresses, mut merged): (Vec<Alert>, Vec<Alert>) = bursts
        .into_iter()
        .partition(|a| a.subject.starts_with("address "));
    if addresses.len() <= ADDRESS_BURSTS {
        merged.extend(addresses);
        return merged;
    }
    let named: Vec<&str> = addresses
        .iter()
        .take(MAX_NAMED)
        .map(|a| a.subject.trim_start_matches("address "))
        .collect();
    let first = addresses[0].seq;
    merged.push(Alert {
        key: format!("login-burst/addresses/{first}"),
        kind: "login_burst",
        severity: "high",
        title: format!(
            "failed logins, step-up or enrolment codes or share passphrases in bursts from {} \
             addresses",
            addresses.len()
        ),
        subject: "many addresses".into(),
        vendor_id: None,
        seq: first,
        details: json!({ "addresses": addresses.len(), "named": named }),
    });
    merged
}

/// Alerts in turns, one per subject a turn, each subject's in the order raised: a subject
/// with many alerts (someone who made them on purpose, from many networks) does not take the
/// places of others' under the per-sweep cap.
fn by_turns(alerts: Vec<Alert>) -> Vec<Alert> {
    let mut queues: Vec<std::collections::VecDeque<Alert>> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    for alert in alerts {
        let at = *index.entry(alert.subject.clone()).or_insert_with(|| {
            queues.push(std::collections::VecDeque::new());
            queues.len() - 1
        });
        queues[at].push_back(alert);
    }
    let mut turns = Vec::new();
    while queues.iter().any(|q| !q.is_empty()) {
        turns.extend(
            queues
                .iter_mut()
                .filter_map(std::collections::VecDeque::pop_front),
        );
    }
    turns
}

/// Subjects an overflow alert names at most.
const MAX_NAMED: usize = 20;

/// The network an address is counted in: its /24 (IPv4) or /64 (IPv6).
fn network(ip: &str) -> Option<String> {
    Some(match ip.parse::<IpAddr>().ok()?.to_canonical() {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            format!("{}.{}.{}.0/24", o[0], o[1], o[2])
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
    })
}

impl WatchState {
    /// Learns from one entry; the alerts it raises.
    fn learn(
        &mut self,
        settings: &WatchSettings,
        seq: u64,
        entry: &Value,
        names: &HashMap<String, String>,
    ) -> Vec<Alert> {
        let mut alerts = Vec::new();
        let Some(time) = entry["time"].as_str().and_then(|t| parse_date(t).ok()) else {
            return alerts;
        };
        let secs = time.unix_nanos().div_euclid(1_000_000_000);
        let action = entry["action"].as_str().unwrap_or_default();
        let success = entry["outcome"] == "success";
        let person = entry["actor"]["person"].as_str();
        let vendor = entry["actor"]["vendor"].as_str().map(str::to_owned);
        let name = |id: &str| names.get(id).cloned().unwrap_or_else(|| id.to_owned());
        let ip = entry["client_ip"].as_str();

        // A one-time link (a share link, or a Vault wrapping token) presented with its key
        // after it was used: whoever used it first may not be whom it was meant for. Once
        // per link.
        if !success
            && entry["reasons"] == json!(["used"])
            && matches!(action, "share.open" | "wrap.unwrap")
        {
            let (link, what) = if action == "share.open" {
                (entry["resource"].as_str().unwrap_or_default(), "share link")
            } else {
                (
                    entry["details"]["accessor"].as_str().unwrap_or_default(),
                    "Vault wrapping token",
                )
            };
            let by = person.map_or_else(
                || {
                    ip.map_or_else(
                        || "an unknown address".to_owned(),
                        |ip| format!("address {ip}"),
                    )
                },
                name,
            );
            alerts.push(Alert {
                key: format!("link-reused/{link}"),
                kind: "link_reused",
                severity: "high",
                title: format!(
                    "{what} {link} was presented by {by} after it was used: whoever used it \
                     first may not be its recipient"
                ),
                subject: by,
                vendor_id: vendor.clone(),
                seq,
                details: json!({ "link": link, "action": action, "client_ip": ip }),
            });
        }

        // The right password with a wrong second factor, or refused for something else (no
        // second factor given, a network outside the account's allowlist, the account not
        // active), from a network the person has not been seen acting from: someone else may
        // hold the password. (From a known network it is most likely the person's own
        // typing; failures count for bursts either way.)
        let wrong = entry["details"]["wrong"]
            .as_str()
            .filter(|w| matches!(*w, "totp" | "recovery_code"));
        let password_right = entry["details"]["password"] == "right";
        if action == "auth.login"
            && !success
            && (wrong.is_some() || password_right)
            && let (Some(person), Some(net)) = (person, ip.and_then(network))
            && self
                .networks
                .get(person)
                .is_some_and(|known| !known.is_empty() && !known.contains(&net))
        {
            let refused = entry["reasons"][0].as_str().unwrap_or_default();
            let (title, details) = match wrong {
                Some(wrong) => (
                    format!(
                        "{}'s password was given from a new network, {net}, with a wrong \
                         second factor",
                        name(person)
                    ),
                    json!({ "network": net, "wrong": wrong, "person_id": person }),
                ),
                None => (
                    format!(
                        "{}'s password was given from a new network, {net}, and the login was \
                         refused ({refused})",
                        name(person)
                    ),
                    json!({ "network": net, "refused": refused, "person_id": person }),
                ),
            };
            alerts.push(Alert {
                key: format!("password-known/{person}/{net}"),
                kind: "password_known",
                severity: "high",
                title,
                subject: name(person),
                vendor_id: vendor.clone(),
                seq,
                details,
            });
        }
        // Wrong step-up codes (a stolen session guessing the second factor), enrolment codes
        // and share links' passphrases count with wrong passwords.
        let passphrase = action == "share.open" && entry["reasons"][0] == "wrong_passphrase";
        if (matches!(action, "auth.login" | "auth.verify" | "auth.enroll") || passphrase)
            && !success
            && settings.login_burst > 0
        {
            let resource = entry["resource"].as_str().unwrap_or_default();
            // Names that belong to no account are one subject: each made-up name is a new
            // resource (a MAC of the name), and anyone could otherwise raise a high alert,
            // and notify security, for every ten requests. A share link is one by its id.
            let account = if passphrase {
                format!("share link {resource}")
            } else if person.is_some() {
                format!("account {resource}")
            } else {
                "accounts that do not exist".to_owned()
            };
            // An account's burst names its person and vendor (the vendor's owner hears of
            // it); an address's names nobody.
            let mut subjects = vec![(account, person, vendor.clone())];
            // Addresses as the lockout counts them: an IPv6 client holds its whole /64.
            if let Some(ip) = ip.and_then(|ip| ip.parse::<IpAddr>().ok()) {
                let subject = crate::api::auth::ip_subject(ip);
                subjects.push((
                    format!("address {}", subject.trim_start_matches("ip:")),
                    None,
                    None,
                ));
            }
            for (subject, person, vendor_id) in subjects {
                let times = self.logins.entry(subject.clone()).or_default();
                times.retain(|&t| t > secs - BURST_WINDOW_SECS);
                times.push(secs);
                if times.len() == settings.login_burst as usize {
                    alerts.push(Alert {
                        key: format!("login-burst/{subject}/{}", times[0]),
                        kind: "login_burst",
                        severity: "high",
                        title: format!(
                            "{} failed logins, step-up or enrolment codes or share passphrases \
                             within 10 minutes for {subject}",
                            times.len()
                        ),
                        subject,
                        vendor_id,
                        seq,
                        details: json!({ "failures": times.len(), "since": times[0],
                                         "person_id": person }),
                    });
                }
            }
            return alerts;
        }
        // Who acted: the person, or for a token of no person the first token of its chain
        // (the initial admin token, for the tokens it made and theirs), watched the same way:
        // a fresh child token is no fresh start for the read count or the networks.
        let token = entry["actor"]["token"].as_str();
        if success
            && action == "token.create"
            && person.is_none()
            && let (Some(maker), Some(made)) = (token, entry["resource"].as_str())
            && self.token_roots.len() < MAX_TOKEN_ROOTS
        {
            let root = self
                .token_roots
                .get(maker)
                .map_or_else(|| maker.to_owned(), |(root, _)| root.clone());
            // Every token expires; one that does not say when is kept a day.
            let until = entry["details"]["expires_time"]
                .as_str()
                .and_then(|t| parse_date(t).ok())
                .map_or(secs + 86_400, |t| t.unix_nanos().div_euclid(1_000_000_000));
            self.token_roots.insert(made.to_owned(), (root, until));
        }
        let token = token.map(|t| self.token_roots.get(t).map_or(t, |(root, _)| root.as_str()));
        let Some(person) = person.or(token).filter(|_| success) else {
            return alerts;
        };
        let person = person.to_owned();
        let person = person.as_str();

        // Networks: learnt from every success, an alert once a person has a history.
        if let Some(net) = ip.and_then(network) {
            let known = self.networks.entry(person.to_owned()).or_default();
            if !known.contains(&net) {
                if !known.is_empty() {
                    alerts.push(Alert {
                        key: format!("new-network/{person}/{net}"),
                        kind: "new_network",
                        severity: "medium",
                        title: format!("{} acted from a new network, {net}", name(person)),
                        subject: name(person),
                        vendor_id: vendor.clone(),
                        seq,
                        details: json!({ "network": net, "action": action,
                                         "resource": entry["resource"], "person_id": person }),
                    });
                }
                known.push(net);
                if known.len() > NETWORKS_PER_PERSON {
                    known.remove(0);
                }
            }
        }
        if action != "secret.read" {
            return alerts;
        }
        if settings.reads_per_hour > 0 {
            let limit = settings.reads_per_hour as usize;
            let reads = self.recent_reads.entry(person.to_owned()).or_default();
            while reads
                .times
                .front()
                .is_some_and(|&t| t <= secs - VOLUME_WINDOW_SECS)
            {
                reads.times.pop_front();
            }
            reads.times.push_back(secs);
            if reads.times.len() > limit + 1 {
                reads.times.pop_front();
            }
            if reads.times.len() <= limit {
                reads.alerted = false;
            } else if !reads.alerted {
                reads.alerted = true;
                alerts.push(Alert {
                    key: format!("volume/{person}/{seq}"),
                    kind: "unusual_volume",
                    severity: "high",
                    title: format!(
                        "{} read more than {} secrets within an hour",
                        name(person),
                        settings.reads_per_hour
                    ),
                    subject: name(person),
                    vendor_id: vendor.clone(),
                    seq,
                    details: json!({ "reads": reads.times.len(),
                                     "first_read": reads.times.front(),
                                     "person_id": person }),
                });
            }
        }
        if let Some(hours) = &settings.business_hours
            && vendor.is_some()
            && !hours.contains(time)
        {
            let day = secs.div_euclid(86_400);
            alerts.push(Alert {
                key: format!("off-hours/{person}/{day}"),
                kind: "off_hours",
                severity: "medium",
                title: format!(
                    "{} read {} outside business hours",
                    name(person),
                    entry["resource"].as_str().unwrap_or_default()
                ),
                subject: name(person),
                vendor_id: vendor,
                seq,
                details: json!({ "resource": entry["resource"], "time": entry["time"],
                                 "person_id": person }),
            });
        }
        alerts
    }

    /// Forgets the subjects with no failure, and the people with no read, within their
    /// windows before `secs`: once per page of entries, not per entry, so that many names
    /// tried at once cost no more than a pass over them per page.
    fn forget(&mut self, secs: i64) {
        self.logins
            .retain(|_, times| times.last().is_some_and(|&t| t > secs - BURST_WINDOW_SECS));
        self.recent_reads.retain(|_, reads| {
            reads
                .times
                .back()
                .is_some_and(|&t| t > secs - VOLUME_WINDOW_SECS)
        });
        // A token past its end acts no more: its chain need not be remembered.
        self.token_roots.retain(|_, (_, until)| *until > secs);
    }
}

impl AppState {
    /// Reads the ledger entries recorded since the last run and raises their alerts; how
    /// many were raised.
    pub(crate) async fn watch(&self, now: Timestamp) -> Result<usize, ApiError> {
        let settings = &self.settings.notify.watch;
        let stored = self.store.record("watch", "state").await?;
        let mut state: WatchState = match &stored {
            Some(record) => body(record)?,
            None => WatchState::default(),
        };
        let size = self.store.ledger_size().await?;
        if state.next >= size {
            return Ok(0);
        }
        let people = self.store.list_people().await?;
        let names: HashMap<String, String> = people
            .iter()
            .map(|p| (p.id.clone(), p.name.clone()))
            .collect();
        let mut alerts = Vec::new();
        // Alerts of entries read more than a day late, not raised one by one (by key).
        let mut late: HashSet<String> = HashSet::new();
        let first = state.next;
        let started = std::time::Instant::now();
        let mut start = first;
        // Pages of a thousand entries, until the ledger's end or the sweep's time is up.
        while start < size && (start == first || started.elapsed() < SWEEP_TIME) {
            let page = (start + 1000).min(size);
            let mut latest = None;
            for (seq, bytes) in self.store.ledger_entries(start, page).await? {
                let entry: Value = serde_json::from_slice(&bytes).map_err(|e| {
                    chaperone_store::StoreError::Corrupt(format!("ledger entry {seq}: {e}"))
                })?;
                let fresh = entry["time"]
                    .as_str()
                    .and_then(|t| parse_date(t).ok())
                    .is_some_and(|t| t.unix_nanos() > now.plus_secs(-STALE_SECS).unix_nanos());
                let raised = state.learn(settings, seq, &entry, &names);
                if fresh {
                    alerts.extend(raised);
                } else {
                    late.extend(raised.into_iter().map(|a| a.key));
                }
                latest = entry["time"]
                    .as_str()
                    .and_then(|t| parse_date(t).ok())
                    .or(latest);
            }
            if let Some(latest) = latest {
                state.forget(latest.unix_nanos().div_euclid(1_000_000_000));
            }
            start = page;
        }
        let end = start;
        state.next = end;
        if size > end {
            tracing::warn!(
                behind = size - end,
                "the anomaly watch is behind the ledger; entries more than a day old when read \
                 raise no alert"
            );
        }

        let to = security_or_admins(&people);
        let info = RequestInfo::new(None, Some("chaperone-watch".into()));
        let mut ops = Vec::new();
        let mut events = Vec::new();
        let mut raised = 0;
        // One alert per key, within this sweep too: two inserts of one key would conflict,
        // and the watch would never get past these entries.
        let mut queued = HashSet::new();
        let mut raising = Vec::new();
        // By kind: what was not raised one by one; and whom it was about (a few names).
        let mut not_raised: std::collections::BTreeMap<&'static str, usize> = Default::default();
        let mut not_raised_about = std::collections::BTreeSet::new();
        // Failed-login bursts last: anyone can cause them without an account, and they must
        // not take the places of alerts about what accounts did (a new network, off-hours
        // or unusual reads).
        let (bursts, others): (Vec<Alert>, Vec<Alert>) =
            alerts.into_iter().partition(|a| a.kind == "login_burst");
        let bursts = merge_address_bursts(bursts);
        for alert in by_turns(others).into_iter().chain(by_turns(bursts)) {
            if !queued.insert(alert.key.clone()) {
                continue;
            }
            // Past the cap, nothing more is looked up: counted, not raised.
            if raising.len() >= settings.alerts_per_sweep {
                *not_raised.entry(alert.kind).or_default() += 1;
                if not_raised_about.len() < MAX_NAMED {
                    not_raised_about.insert(alert.subject.clone());
                }
                continue;
            }
            if self.store.record("anomaly", &alert.key).await?.is_none() {
                raising.push(alert);
            }
        }
        let not_raised_total: usize = not_raised.values().sum();
        let late = late.len();
        // What was not raised one by one (past the cap, or read more than a day late) is
        // said in one alert, so that neither a flood of alerts nor a flood of entries goes
        // unseen.
        if not_raised_total > 0 || late > 0 {
            raising.push(Alert {
                key: format!("watch:{first}-{end}"),
                kind: "watch_overflow",
                severity: "high",
                title: format!(
                    "{} anomalies were not raised one by one: {not_raised_total} past the {} \
                     a sweep raises, {late} in entries read more than a day late",
                    not_raised_total + late,
                    settings.alerts_per_sweep
                ),
                subject: "ledger".into(),
                vendor_id: None,
                seq: end.saturating_sub(1),
                details: json!({
                    "not_raised": not_raised_total,
                    "not_raised_by_kind": not_raised,
                    "not_raised_about": not_raised_about,
                    "read_late": late,
                    "from_seq": first,
                    "to_seq": end,
                }),
            });
        }
        for alert in raising {
            let mut details = alert.details;
            details["kind"] = alert.kind.into();
            details["seq"] = alert.seq.into();
            let (op, finding) = new_finding(
                NewFinding {
                    source: "anomaly",
                    severity: alert.severity,
                    title: alert.title.clone(),
                    subject: alert.subject.clone(),
                    vendor_id: alert.vendor_id.clone(),
                    owner: None,
                    due: now.plus_secs(86_400),
                    details: details.clone(),
                },
                now,
            );
            ops.push(Op::Put(new_record(
                "anomaly",
                alert.key.clone(),
                None,
                &json!({ "finding_id": finding.id }),
                now,
            )));
            ops.push(op);
            if !to.is_empty() {
                ops.push(notification(
                    "anomaly",
                    &to,
                    &alert.title,
                    json!({ "finding_id": finding.id, "kind": alert.kind, "seq": alert.seq }),
                    now,
                ));
            }
            let mut entry = LedgerRecord::new("anomaly.detect", &alert.subject, Outcome::Success);
            entry.details.insert("kind".into(), alert.kind.into());
            entry.details.insert("finding_id".into(), finding.id.into());
            entry.details.insert("seq".into(), alert.seq.into());
            events.push(self.event(&info, chaperone_ledger::entry::Actor::default(), entry));
            raised += 1;
        }
        ops.insert(
            0,
            Op::Put(match &stored {
                Some(record) => revise(record, &state, now),
                None => new_record("watch", "state".into(), None, &state, now),
            }),
        );
        // Another node read the same entries first: it raised their alerts.
        if skip_conflict(self.store.apply(ops, events).await)? {
            return Ok(0);
        }
        if raised > 0 {
            tracing::warn!(raised, "anomalies detected");
        }
        Ok(raised)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn business_hours_parse_and_hold_at_their_offset() {
        let hours: BusinessHours = "Mon-Fri 07:00-19:00 +01:00".parse().unwrap();
        let at = |t: &str| hours.contains(parse_date(t).unwrap());
        // Friday 2027-01-15.
        assert!(at("2027-01-15T06:00:00Z"), "07:00 local");
        assert!(!at("2027-01-15T05:59:59Z"));
        assert!(at("2027-01-15T17:59:59Z"));
        assert!(!at("2027-01-15T18:00:00Z"), "19:00 local");
        assert!(!at("2027-01-16T10:00:00Z"), "a Saturday");
        let weekend: BusinessHours = "Sat-Sun 00:00-24:00 -05:00".parse().unwrap();
        assert!(weekend.contains(parse_date("2027-01-16T05:00:00Z").unwrap()));
        assert!(!weekend.contains(parse_date("2027-01-16T04:59:59Z").unwrap()));
        for bad in [
            "Mon-Fri 07:00-19:00",
            "Mon-Fri 19:00-07:00 +00:00",
            "Mon-Fry 07:00-19:00 +00:00",
            "Mon-Fri 07:00-19:00 01:00",
            "Mon-Fri 07:00-25:00 +00:00",
        ] {
            assert!(bad.parse::<BusinessHours>().is_err(), "{bad}");
        }
    }

    #[test]
    fn unusual_volume_is_counted_over_any_hour_not_a_clock_hour() {
        let settings = WatchSettings {
            reads_per_hour: 3,
            business_hours: None,
            ..WatchSettings::default()
        };
        let names = HashMap::new();
        let mut state = WatchState::default();
        let mut seq = 0;
        let mut read = |state: &mut WatchState, at: &str| {
            seq += 1;
            let entry = json!({ "time": at, "action": "secret.read", "outcome": "success",
                                "actor": { "person": "per_1" }, "resource": "acme/db" });
            let alerts = state.learn(&settings, seq, &entry, &names);
            assert!(alerts.iter().all(|a| a.kind == "unusual_volume"));
            alerts.len()
        };
        // Four reads within four seconds, two on each side of the hour's turn.
        for at in ["10:59:58", "10:59:59", "11:00:00"] {
            assert_eq!(read(&mut state, &format!("2027-01-15T{at}Z")), 0, "{at}");
        }
        assert_eq!(read(&mut state, "2027-01-15T11:00:01Z"), 1);
        // One alert for the burst, however long it goes on.
        assert_eq!(read(&mut state, "2027-01-15T11:00:02Z"), 0);
        // Reads spread over more than an hour stay under the limit; four within one hour,
        // none of them at its turn, go over it.
        for at in ["12:30:00", "13:00:00", "13:29:00", "13:31:00"] {
            assert_eq!(read(&mut state, &format!("2027-01-15T{at}Z")), 0, "{at}");
        }
        assert_eq!(read(&mut state, "2027-01-15T13:59:59Z"), 1);
        assert_eq!(read(&mut state, "2027-01-15T14:00:00Z"), 0);
        // The state stays bounded and forgets whoever stopped reading.
        assert_eq!(state.recent_reads["per_1"].times.len(), 4);
        state.forget(parse_date("2027-01-15T15:00:00Z").unwrap().unix_nanos() / 1_000_000_000);
        assert!(state.recent_reads.is_empty());
        // A state kept before the window slid (counts per clock hour) still loads.
        let old: WatchState = serde_json::from_value(json!({
            "next": 7, "logins": {}, "reads": { "per_1": [480_000, 3] }, "networks": {}
        }))
        .unwrap();
        assert_eq!(old.next, 7);
    }

    #[test]
    fn a_right_password_with_a_wrong_code_from_a_new_network_is_an_alert() {
        let settings = WatchSettings {
            business_hours: None,
            ..WatchSettings::default()
        };
        let names = HashMap::from([("per_1".to_owned(), "ann".to_owned())]);
        let mut state = WatchState::default();
        let login = |outcome: &str, ip: &str, wrong: Option<&str>| {
            let mut entry = json!({ "time": "2027-01-15T10:00:00Z", "action": "auth.login",
                                    "outcome": outcome, "resource": "ann", "client_ip": ip,
                                    "actor": { "person": "per_1" }, "details": {} });
            if let Some(wrong) = wrong {
                entry["details"]["wrong"] = json!(wrong);
            }
            entry
        };
        let kinds = |alerts: Vec<Alert>| -> Vec<(&'static str, String)> {
            alerts.into_iter().map(|a| (a.kind, a.key)).collect()
        };
        // Nothing is known of a person never seen: no network is new to them yet.
        let first = login("denied", "203.0.113.9", Some("totp"));
        assert!(kinds(state.learn(&settings, 1, &first, &names)).is_empty());
        state.learn(&settings, 2, &login("success", "203.0.113.9", None), &names);
        // From the known network: a typo, not an alert.
        let known = login("denied", "203.0.113.10", Some("totp"));
        assert!(kinds(state.learn(&settings, 3, &known, &names)).is_empty());
        // A wrong password from a new network says nothing of the password.
        let guess = login("denied", "198.51.100.7", Some("password"));
        assert!(kinds(state.learn(&settings, 4, &guess, &names)).is_empty());
        for (seq, wrong) in [(5, "totp"), (6, "recovery_code")] {
            let stolen = login("denied", "198.51.100.7", Some(wrong));
            assert_eq!(
                kinds(state.learn(&settings, seq, &stolen, &names)),
                [(
                    "password_known",
                    "password-known/per_1/198.51.100.0/24".to_owned()
                )],
                "{wrong}"
            );
        }
        // The right password refused for something else (no code sent, a network outside the
        // account's allowlist): the password is known just the same.
        for (seq, refused) in [(7, "mfa_required"), (8, "network_not_allowed")] {
            let mut entry = login("denied", "192.0.2.4", None);
            entry["details"]["password"] = json!("right");
            entry["reasons"] = json!([refused]);
            let alerts = state.learn(&settings, seq, &entry, &names);
            assert_eq!(alerts.len(), 1, "{refused}");
            assert_eq!(alerts[0].kind, "password_known");
            assert_eq!(alerts[0].details["refused"], refused);
        }
    }

    #[test]
    fn tokens_of_no_person_are_watched_by_the_first_of_their_chain() {
        let settings = WatchSettings {
            reads_per_hour: 3,
            business_hours: None,
            ..WatchSettings::default()
        };
        let names = HashMap::new();
        let mut state = WatchState::default();
        let entry = |token: &str, action: &str, resource: &str, ip: &str| {
            json!({ "time": "2027-01-15T10:00:00Z", "action": action, "outcome": "success",
                    "actor": { "token": token }, "resource": resource, "client_ip": ip })
        };
        let mut seq = 0;
        let mut learn = |state: &mut WatchState, e: Value| {
            seq += 1;
            state
                .learn(&settings, seq, &e, &names)
                .into_iter()
                .map(|a| a.kind)
                .collect::<Vec<_>>()
        };
        learn(
            &mut state,
            entry("tok_root", "secret.read", "a", "203.0.113.1"),
        );
        learn(
            &mut state,
            entry("tok_root", "token.create", "tok_child", "203.0.113.1"),
        );
        learn(
            &mut state,
            entry("tok_child", "token.create", "tok_grand", "203.0.113.1"),
        );
        assert!(
            learn(
                &mut state,
                entry("tok_child", "secret.read", "a", "203.0.113.1")
            )
            .is_empty()
        );
        assert!(
            learn(
                &mut state,
                entry("tok_grand", "secret.read", "a", "203.0.113.1")
            )
            .is_empty()
        );
        // The fourth read of the chain within the hour, and a network new to all of it.
        assert_eq!(
            learn(
                &mut state,
                entry("tok_grand", "secret.read", "a", "198.51.100.1")
            ),
            ["new_network", "unusual_volume"]
        );
    }

    #[test]
    fn guessing_a_share_links_passphrase_is_a_burst() {
        let settings = WatchSettings {
            business_hours: None,
            ..WatchSettings::default()
        };
        let names = HashMap::new();
        let mut state = WatchState::default();
        let mut raised = Vec::new();
        for n in 0..settings.login_burst {
            // From a new address each time: only the link counts them together.
            let entry = json!({ "time": "2027-01-15T10:00:00Z", "action": "share.open",
                                "outcome": "denied", "reasons": ["wrong_passphrase"],
                                "resource": "shr_1", "client_ip": format!("198.51.100.{n}"),
                                "actor": {} });
            raised.extend(state.learn(&settings, u64::from(n), &entry, &names));
        }
        assert_eq!(raised.len(), 1);
        assert_eq!(raised[0].kind, "login_burst");
        assert_eq!(raised[0].subject, "share link shr_1");
    }

    #[test]
    fn bursts_from_many_addresses_are_one_alert() {
        let burst = |subject: String, seq: u64| Alert {
            key: format!("login-burst/{subject}/{seq}"),
            kind: "login_burst",
            severity: "high",
            title: String::new(),
            subject,
            vendor_id: None,
            seq,
            details: Value::Null,
        };
        // A few addresses, and an account: one by one.
        let few: Vec<Alert> = (0..3)
            .map(|n| burst(format!("address 198.51.100.{n}"), n))
            .chain([burst("account ada".into(), 9)])
            .collect();
        assert_eq!(merge_address_bursts(few).len(), 4);
        // Fifty addresses: one alert naming twenty of them, and the account's own.
        let many: Vec<Alert> = (0..50)
            .map(|n| burst(format!("address 198.51.100.{n}"), 10 + n))
            .chain([burst("account ada".into(), 99)])
            .collect();
        let merged = merge_address_bursts(many);
        assert_eq!(merged.len(), 2);
        assert_eq!(merged[0].subject, "account ada");
        assert_eq!(merged[1].subject, "many addresses");
        assert_eq!(merged[1].details["addresses"], 50);
        assert_eq!(merged[1].details["named"].as_array().unwrap().len(), 20);
        assert_eq!(merged[1].key, "login-burst/addresses/10");
    }

    #[test]
    fn alerts_take_turns_by_subject() {
        let alert = |subject: &str, n: u64| Alert {
            key: format!("{subject}/{n}"),
            kind: "new_network",
            severity: "medium",
            title: String::new(),
            subject: subject.to_owned(),
            vendor_id: None,
            seq: n,
            details: Value::Null,
        };
        // One person's flood comes first in the ledger; another's alert still comes second.
        let mut alerts: Vec<Alert> = (0..5).map(|n| alert("dave", n)).collect();
        alerts.extend([alert("carol", 5), alert("erin", 6), alert("carol", 7)]);
        let keys: Vec<String> = by_turns(alerts).into_iter().map(|a| a.key).collect();
        assert_eq!(
            keys,
            [
                "dave/0", "carol/5", "erin/6", "dave/1", "carol/7", "dave/2", "dave/3", "dave/4"
            ]
        );
    }

    #[test]
    fn networks_are_counted_per_24_and_per_64() {
        assert_eq!(network("203.0.113.9").as_deref(), Some("203.0.113.0/24"));
        assert_eq!(
            network("::ffff:203.0.113.9").as_deref(),
            Some("203.0.113.0/24")
        );
        assert_eq!(
            network("2001:db8:1:2:3:4:5:6").as_deref(),
            Some("2001:db8:1:2::/64")
        );
        assert_eq!(network("unknown"), None);
    }
}
