//! Third-party governance: the vendor lifecycle, agreements and evidence with their statuses
//! derived from dates, classification levels with their access policies, and the continuous
//! compliance gate ([`gate`]) that every secret access passes.
//!
//! Everything here is pure: the caller reads the vendor's records and the clock, and this
//! module decides. Statuses are never stored; they are computed from the dates at the moment
//! they are asked for, so an agreement that expired at midnight is expired at 00:00:01
//! whether or not any background job has run.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::Timestamp;
use crate::net::Cidr;
use crate::policy::Role;

macro_rules! named_enum {
    ($(#[$meta:meta])* $name:ident, $what:literal, { $($(#[$vmeta:meta])* $variant:ident => $text:literal / $label:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(rename_all = "kebab-case")]
        pub enum $name {
            $($(#[$vmeta])* #[serde(rename = $text)] $variant),+
        }

        impl $name {
            /// Every value, in order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The name as stored and typed.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }

            /// The name as a person reads it.
            pub fn label(self) -> &'static str {
                match self { $($name::$variant => $label),+ }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = String;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                let wanted = s.trim().to_ascii_lowercase();
                $name::ALL
                    .iter()
                    .copied()
                    .find(|v| v.as_str() == wanted)
                    .ok_or_else(|| {
                        let names: Vec<&str> = $name::ALL.iter().map(|v| v.as_str()).collect();
                        format!("unknown {} `{s}` ({}s: {})", $what, $what, names.join(", "))
                    })
            }
        }
    };
}

named_enum!(
    /// Where a vendor is in its relationship with the business.
    VendorStatus, "status", {
        /// Being evaluated; nobody of theirs gets in.
        Prospect => "prospect" / "prospect",
        /// Agreements and evidence being gathered; accounts may be set up.
        Onboarding => "onboarding" / "onboarding",
        /// Working.
        Active => "active" / "active",
        /// Temporarily cut off (a breach, a lapsed contract): all access stops.
        Suspended => "suspended" / "suspended",
        /// The relationship is ending: access stops, data return is under way.
        Offboarding => "offboarding" / "offboarding",
        /// Over for good.
        Terminated => "terminated" / "terminated",
    }
);

impl VendorStatus {
    /// The statuses a vendor may move to from this one. Terminated is final; a suspended
    /// vendor may be reinstated; nothing goes back to prospect.
    pub fn next(self) -> &'static [VendorStatus] {
        use VendorStatus::*;
        match self {
            Prospect => &[Onboarding, Terminated],
            Onboarding => &[Active, Suspended, Terminated],
            Active => &[Suspended, Offboarding],
            Suspended => &[Active, Offboarding, Terminated],
            Offboarding => &[Terminated],
            Terminated => &[],
        }
    }

    /// Checks a transition, explaining a refusal.
    pub fn check_transition(self, to: VendorStatus) -> Result<(), String> {
        if self.next().contains(&to) {
            return Ok(());
        }
        let allowed: Vec<&str> = self.next().iter().map(|s| s.as_str()).collect();
        Err(if allowed.is_empty() {
            format!("a {self} vendor cannot change status")
        } else {
            format!(
                "{} {self} vendor cannot become {to} (it can become: {})",
                if matches!(self, Self::Active | Self::Onboarding | Self::Offboarding) {
                    "an"
                } else {
                    "a"
                },
                allowed.join(", ")
            )
        })
    }

    /// Whether the vendor's people may act at all. Only these statuses let them in; every
    /// other status (and any added later) keeps them out.
    pub fn admits_people(self) -> bool {
        matches!(self, VendorStatus::Active | VendorStatus::Onboarding)
    }
}

named_enum!(
    /// How much harm a vendor's failure would do.
    Criticality, "criticality", {
        /// Little.
        Low => "low" / "low",
        /// The usual.
        Standard => "standard" / "standard",
        /// Important.
        Important => "important" / "important",
        /// The business depends on it.
        Critical => "critical" / "critical",
    }
);

named_enum!(
    /// What an agreement is.
    AgreementKind, "agreement kind", {
        /// Non-disclosure agreement.
        Nda => "nda" / "NDA",
        /// Master services agreement.
        Msa => "msa" / "MSA",
        /// Statement of work.
        Sow => "sow" / "SOW",
        /// Data processing agreement.
        Dpa => "dpa" / "DPA",
        /// Service level agreement.
        Sla => "sla" / "SLA",
        /// Business associate agreement (HIPAA).
        Baa => "baa" / "BAA",
        /// Source code escrow.
        Escrow => "escrow" / "escrow",
        /// Anything else.
        Other => "other" / "other agreement",
    }
);

named_enum!(
    /// What a piece of evidence is.
    EvidenceKind, "evidence kind", {
        /// SOC 2 Type I report.
        Soc2Type1 => "soc2-type1" / "SOC 2 Type I",
        /// SOC 2 Type II report.
        Soc2Type2 => "soc2-type2" / "SOC 2 Type II",
        /// ISO/IEC 27001 certificate.
        Iso27001 => "iso27001" / "ISO 27001",
        /// Penetration test report.
        PenTest => "pentest" / "pen-test report",
        /// Insurance certificate.
        Insurance => "insurance" / "insurance",
        /// Anything else.
        Other => "other" / "other evidence",
    }
);

/// An agreement's status, derived from its dates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AgreementStatus {
    /// Not signed yet.
    Draft,
    /// Signed, not yet in effect.
    Pending,
    /// In effect.
    Active,
    /// Past its expiry date.
    Expired,
    /// Ended early.
    Terminated,
}

/// The dates that decide an agreement's status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgreementFacts {
    /// What it is.
    pub kind: AgreementKind,
    /// When it was signed, if it was.
    pub signed_at: Option<Timestamp>,
    /// When it takes effect (when signed, if not given).
    pub effective_at: Option<Timestamp>,
    /// The first instant it no longer applies, if it ends.
    pub expires_at: Option<Timestamp>,
    /// When it was ended early.
    pub terminated_at: Option<Timestamp>,
}

impl AgreementFacts {
    /// When it binds: once signed and effective, the later of the two (an agreement dated
    /// to take effect before its signature binds nobody until it is signed).
    pub fn binds_from(&self) -> Option<Timestamp> {
        let signed = self.signed_at?;
        Some(self.effective_at.map_or(signed, |e| e.max(signed)))
    }

    /// The status at `now`.
    pub fn status(&self, now: Timestamp) -> AgreementStatus {
        if self.terminated_at.is_some_and(|t| t <= now) {
            return AgreementStatus::Terminated;
        }
        let Some(signed) = self.signed_at else {
            return AgreementStatus::Draft;
        };
        let starts = self.binds_from().unwrap_or(signed);
        if self.expires_at.is_some_and(|e| e <= now) {
            AgreementStatus::Expired
        } else if starts > now {
            AgreementStatus::Pending
        } else {
            AgreementStatus::Active
        }
    }
}

/// A piece of evidence's status, derived from its dates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EvidenceStatus {
    /// Its period has not started.
    Pending,
    /// Valid now.
    Valid,
    /// Past its expiry date.
    Expired,
    /// Withdrawn before its expiry.
    Revoked,
}

/// The dates that decide a piece of evidence's status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EvidenceFacts {
    /// What it is.
    pub kind: EvidenceKind,
    /// Start of the period it covers or of its validity.
    pub valid_from: Option<Timestamp>,
    /// The first instant it is no longer valid.
    pub expires_at: Option<Timestamp>,
    /// When it was withdrawn, if it was.
    pub revoked_at: Option<Timestamp>,
}

impl EvidenceFacts {
    /// The status at `now`.
    pub fn status(&self, now: Timestamp) -> EvidenceStatus {
        if self.revoked_at.is_some_and(|r| r <= now) {
            EvidenceStatus::Revoked
        } else if self.expires_at.is_some_and(|e| e <= now) {
            EvidenceStatus::Expired
        } else if self.valid_from.is_some_and(|f| f > now) {
            EvidenceStatus::Pending
        } else {
            EvidenceStatus::Valid
        }
    }
}

/// A classification level and the policy for access to paths at that level.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LevelPolicy {
    /// The level's name (`regulated`).
    pub name: String,
    /// Order among levels: higher is stricter.
    pub rank: u32,
    /// Whether internal members read and write here without a grant.
    #[serde(default)]
    pub staff_access: bool,
    /// Whether reading data needs a recent TOTP verification.
    #[serde(default)]
    pub step_up: bool,
    /// Agreement kinds the vendor must have in effect.
    #[serde(default)]
    pub agreements: Vec<AgreementKind>,
    /// Evidence the vendor must hold: every group must be satisfied by a valid item of one
    /// of its kinds (`[[soc2-type2, iso27001]]` is "SOC 2 Type II or ISO 27001").
    #[serde(default)]
    pub evidence: Vec<Vec<EvidenceKind>>,
    /// Policy documents whose latest version the person must have acknowledged.
    #[serde(default)]
    pub acknowledgements: Vec<String>,
    /// The longest grant that may be asked for, in seconds.
    pub max_grant_secs: i64,
    /// How many distinct people must approve a request.
    pub approvals: u32,
    /// Roles whose members may approve (never the requester).
    pub approver_roles: Vec<Role>,
    /// Networks accesses must come from (empty: any).
    #[serde(default)]
    pub networks: Vec<Cidr>,
}

/// The level of paths nobody classified.
pub const DEFAULT_LEVEL: &str = "internal";

impl LevelPolicy {
    /// The built-in levels: public, internal, confidential and regulated. Regulated needs
    /// an NDA, a DPA and SOC 2 Type II or ISO 27001, two approvals and at most 7 days;
    /// confidential needs an NDA, one approval and at most 30 days.
    pub fn defaults() -> Vec<LevelPolicy> {
        let approvers = vec![Role::Approver, Role::Security, Role::Admin];
        let base = |name: &str, rank: u32| LevelPolicy {
            name: name.to_owned(),
            rank,
            staff_access: true,
            step_up: false,
            agreements: Vec::new(),
            evidence: Vec::new(),
            acknowledgements: Vec::new(),
            max_grant_secs: 90 * 86_400,
            approvals: 1,
            approver_roles: approvers.clone(),
            networks: Vec::new(),
        };
        vec![
            base("public", 0),
            base("internal", 10),
            LevelPolicy {
                staff_access: false,
                step_up: true,
                agreements: vec![AgreementKind::Nda],
                max_grant_secs: 30 * 86_400,
                ..base("confidential", 20)
            },
            LevelPolicy {
                staff_access: false,
                step_up: true,
                agreements: vec![AgreementKind::Nda, AgreementKind::Dpa],
                evidence: vec![vec![EvidenceKind::Soc2Type2, EvidenceKind::Iso27001]],
                max_grant_secs: 7 * 86_400,
                approvals: 2,
                ..base("regulated", 30)
            },
        ]
    }

    /// Checks the policy's own consistency.
    pub fn validate(&self) -> Result<(), String> {
        let name_ok = (1..=32).contains(&self.name.len())
            && self
                .name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if !name_ok {
            return Err("level names are 1 to 32 of a-z 0-9 -".into());
        }
        if self.max_grant_secs <= 0 {
            return Err("max_grant_secs must be positive".into());
        }
        if self.approvals == 0 {
            return Err("a level needs at least one approval".into());
        }
        if self.approver_roles.is_empty() || self.approver_roles.contains(&Role::Contractor) {
            return Err("approver_roles must name internal roles".into());
        }
        if self.evidence.iter().any(Vec::is_empty) {
            return Err("an evidence group must name at least one kind".into());
        }
        Ok(())
    }

    /// Whether `ip` is inside the level's networks (always, when it names none).
    pub fn network_allows(&self, ip: Option<IpAddr>) -> bool {
        self.networks.is_empty()
            || ip.is_some_and(|ip| self.networks.iter().any(|n| n.contains(ip)))
    }
}

/// One policy document acknowledgement requirement's state for a person.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AcknowledgementFacts {
    /// The policy document's name.
    pub policy: String,
    /// Its latest version, if it exists.
    pub latest: Option<u32>,
    /// The highest version the person acknowledged.
    pub acknowledged: Option<u32>,
}

/// What the gate looks at: the vendor's records and the person's acknowledgements, read
/// at the moment of the access.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Compliance {
    /// The vendor's name, if the person belongs to one.
    pub vendor: Option<String>,
    /// The person's name.
    pub person: String,
    /// The vendor's agreements.
    pub agreements: Vec<AgreementFacts>,
    /// The vendor's evidence.
    pub evidence: Vec<EvidenceFacts>,
    /// The acknowledgements the level asks for.
    pub acknowledgements: Vec<AcknowledgementFacts>,
}

/// The continuous gate: whether the vendor and the person meet `level`'s requirements at
/// `now`. Agreement and evidence requirements apply to people of a vendor; acknowledgement
/// requirements to every person. The error is one sentence naming the first unmet
/// requirement, safe to show to the caller (it speaks of the caller's own vendor only).
pub fn gate(level: &LevelPolicy, compliance: &Compliance, now: Timestamp) -> Result<(), String> {
    if let Some(vendor) = &compliance.vendor {
        for &kind in &level.agreements {
            let of_kind: Vec<&AgreementFacts> = compliance
                .agreements
                .iter()
                .filter(|a| a.kind == kind)
                .collect();
            if of_kind
                .iter()
                .any(|a| a.status(now) == AgreementStatus::Active)
            {
                continue;
            }
            let label = kind.label();
            let last = |status| {
                of_kind
                    .iter()
                    .filter(|a| a.status(now) == status)
                    .max_by_key(|a| (a.expires_at, a.terminated_at, a.effective_at))
            };
            return Err(if let Some(a) = last(AgreementStatus::Expired) {
                format!(
                    "agreement {label} of vendor {vendor} expired on {}",
                    date(a.expires_at.expect("expired means an expiry"))
                )
            } else if let Some(a) = last(AgreementStatus::Terminated) {
                format!(
                    "agreement {label} of vendor {vendor} was terminated on {}",
                    date(a.terminated_at.expect("terminated means a date"))
                )
            } else if let Some(a) = last(AgreementStatus::Pending) {
                format!(
                    "agreement {label} of vendor {vendor} takes effect on {}",
                    date(a.binds_from().expect("pending means signed"))
                )
            } else {
                format!("vendor {vendor} has no signed {label} agreement in effect")
            });
        }
        for group in &level.evidence {
            let items: Vec<&EvidenceFacts> = compliance
                .evidence
                .iter()
                .filter(|e| group.contains(&e.kind))
                .collect();
            if items.iter().any(|e| e.status(now) == EvidenceStatus::Valid) {
                continue;
            }
            let wanted: Vec<&str> = group.iter().map(|k| k.label()).collect();
            let wanted = wanted.join(" or ");
            let ended = |status| {
                items
                    .iter()
                    .filter(move |e| e.status(now) == status)
                    .max_by_key(|e| e.expires_at)
            };
            return Err(
                match (
                    ended(EvidenceStatus::Expired),
                    ended(EvidenceStatus::Revoked),
                ) {
                    (Some(e), _) => format!(
                        "evidence {} of vendor {vendor} expired on {}",
                        e.kind.label(),
                        date(e.expires_at.expect("expired means an expiry"))
                    ),
                    (None, Some(e)) => format!(
                        "evidence {} of vendor {vendor} was revoked on {}",
                        e.kind.label(),
                        date(e.revoked_at.expect("revoked means a date"))
                    ),
                    (None, None) => format!("vendor {vendor} has no valid {wanted}"),
                },
            );
        }
    }
    for name in &level.acknowledgements {
        let facts = compliance
            .acknowledgements
            .iter()
            .find(|a| &a.policy == name);
        match facts.and_then(|f| f.latest.map(|latest| (latest, f.acknowledged))) {
            // A required policy that was never published cannot be acknowledged: refuse
            // rather than let a typo in a level open it.
            None => return Err(format!("policy {name} has not been published")),
            Some((latest, acked)) if acked.is_none_or(|v| v < latest) => {
                return Err(format!(
                    "{} has not acknowledged version {latest} of policy {name}",
                    compliance.person
                ));
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// The UTC date of `t`, as `2026-10-01`, when `t` is a midnight (what a date given alone
/// means); the RFC 3339 instant to the second otherwise, so that a time given (an agreement
/// ending at noon) is shown and recorded as it is, not as the day before or after it.
pub fn date(t: Timestamp) -> String {
    let nanos = t.unix_nanos();
    if nanos.rem_euclid(86_400 * 1_000_000_000) == 0 {
        t.to_rfc3339()[..10].to_owned()
    } else {
        Timestamp::from_unix_nanos(nanos - nanos.rem_euclid(1_000_000_000)).to_rfc3339()
    }
}

/// Parses a date (`2026-10-01`, midnight UTC) or an RFC 3339 instant.
pub fn parse_date(text: &str) -> Result<Timestamp, String> {
    use time::format_description::well_known::Rfc3339;
    let text = text.trim();
    let bad = || format!("`{text}` is not a date like 2026-10-01 or 2026-10-01T12:00:00Z");
    let parsed = if text.len() == 10 {
        time::OffsetDateTime::parse(&format!("{text}T00:00:00Z"), &Rfc3339)
    } else {
        time::OffsetDateTime::parse(text, &Rfc3339)
    }
    .map_err(|_| bad())?;
    i64::try_from(parsed.unix_timestamp_nanos())
        .map(Timestamp::from_unix_nanos)
        .map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(d: &str) -> Timestamp {
        parse_date(d).unwrap()
    }

    fn agreement(kind: AgreementKind, from: &str, to: Option<&str>) -> AgreementFacts {
        AgreementFacts {
            kind,
            signed_at: Some(day(from)),
            effective_at: Some(day(from)),
            expires_at: to.map(day),
            terminated_at: None,
        }
    }

    fn regulated() -> LevelPolicy {
        LevelPolicy::defaults()
            .into_iter()
            .find(|l| l.name == "regulated")
            .unwrap()
    }

    fn acme() -> Compliance {
        Compliance {
            vendor: Some("acme".into()),
            person: "cy".into(),
            agreements: vec![
                agreement(AgreementKind::Nda, "2026-01-01", None),
                agreement(AgreementKind::Dpa, "2026-01-01", Some("2026-10-01")),
            ],
            evidence: vec![EvidenceFacts {
                kind: EvidenceKind::Soc2Type2,
                valid_from: Some(day("2026-01-01")),
                expires_at: Some(day("2027-01-01")),
                revoked_at: None,
            }],
            acknowledgements: Vec::new(),
        }
    }

    #[test]
    fn vendor_lifecycle_is_validated() {
        use VendorStatus::*;
        assert!(Prospect.check_transition(Onboarding).is_ok());
        assert!(Suspended.check_transition(Active).is_ok());
        assert_eq!(
            Prospect.check_transition(Active).unwrap_err(),
            "a prospect vendor cannot become active (it can become: onboarding, terminated)"
        );
        assert_eq!(
            Terminated.check_transition(Active).unwrap_err(),
            "a terminated vendor cannot change status"
        );
        let admitted: Vec<_> = VendorStatus::ALL
            .iter()
            .filter(|s| s.admits_people())
            .collect();
        assert_eq!(admitted, [&Onboarding, &Active]);
        assert!("Suspended".parse::<VendorStatus>().is_ok());
        assert!("gone".parse::<VendorStatus>().is_err());
    }

    #[test]
    fn statuses_follow_the_dates() {
        let mut a = agreement(AgreementKind::Nda, "2026-02-01", Some("2026-10-01"));
        assert_eq!(a.status(day("2026-01-15")), AgreementStatus::Pending);
        assert_eq!(a.status(day("2026-02-01")), AgreementStatus::Active);
        assert_eq!(
            a.status(day("2026-10-01").plus_secs(-1)),
            AgreementStatus::Active
        );
        assert_eq!(a.status(day("2026-10-01")), AgreementStatus::Expired);
        a.terminated_at = Some(day("2026-05-01"));
        assert_eq!(a.status(day("2026-06-01")), AgreementStatus::Terminated);
        a.signed_at = None;
        a.terminated_at = None;
        assert_eq!(a.status(day("2026-06-01")), AgreementStatus::Draft);
        // Effective "as of" a date before it is signed: pending until the signature.
        a.signed_at = Some(day("2026-06-01"));
        a.effective_at = Some(day("2026-03-01"));
        assert_eq!(a.binds_from(), Some(day("2026-06-01")));
        assert_eq!(a.status(day("2026-05-15")), AgreementStatus::Pending);
        assert_eq!(a.status(day("2026-06-01")), AgreementStatus::Active);
        let mut e = EvidenceFacts {
            kind: EvidenceKind::Iso27001,
            valid_from: Some(day("2026-03-01")),
            expires_at: Some(day("2027-03-01")),
            revoked_at: None,
        };
        assert_eq!(e.status(day("2026-02-01")), EvidenceStatus::Pending);
        assert_eq!(e.status(day("2026-04-01")), EvidenceStatus::Valid);
        assert_eq!(e.status(day("2027-03-01")), EvidenceStatus::Expired);
        e.revoked_at = Some(day("2026-05-01"));
        assert_eq!(e.status(day("2026-04-30")), EvidenceStatus::Valid);
        assert_eq!(e.status(day("2026-05-01")), EvidenceStatus::Revoked);
    }

    #[test]
    fn the_gate_names_the_first_unmet_requirement() {
        let level = regulated();
        assert_eq!(gate(&level, &acme(), day("2026-09-30")), Ok(()));
        assert_eq!(
            gate(&level, &acme(), day("2026-10-02")).unwrap_err(),
            "agreement DPA of vendor acme expired on 2026-10-01"
        );
        // A renewal restores it.
        let mut renewed = acme();
        renewed.agreements.push(agreement(
            AgreementKind::Dpa,
            "2026-10-01",
            Some("2027-10-01"),
        ));
        assert_eq!(gate(&level, &renewed, day("2026-10-02")), Ok(()));
        let mut no_nda = acme();
        no_nda.agreements.remove(0);
        assert_eq!(
            gate(&level, &no_nda, day("2026-09-30")).unwrap_err(),
            "vendor acme has no signed NDA agreement in effect"
        );
        let mut no_audit = acme();
        no_audit.evidence.clear();
        assert_eq!(
            gate(&level, &no_audit, day("2026-09-30")).unwrap_err(),
            "vendor acme has no valid SOC 2 Type II or ISO 27001"
        );
        assert_eq!(
            gate(&level, &acme(), day("2027-01-05")).unwrap_err(),
            "agreement DPA of vendor acme expired on 2026-10-01"
        );
        // Internal staff are not held to vendor paperwork.
        let staff = Compliance {
            person: "ann".into(),
            ..Compliance::default()
        };
        assert_eq!(gate(&level, &staff, day("2026-09-30")), Ok(()));
    }

    #[test]
    fn acknowledgements_must_be_of_the_latest_version() {
        let mut level = regulated();
        level.acknowledgements = vec!["acceptable-use".into()];
        let mut c = acme();
        let now = day("2026-06-01");
        assert_eq!(
            gate(&level, &c, now).unwrap_err(),
            "policy acceptable-use has not been published"
        );
        c.acknowledgements.push(AcknowledgementFacts {
            policy: "acceptable-use".into(),
            latest: Some(2),
            acknowledged: Some(1),
        });
        assert_eq!(
            gate(&level, &c, now).unwrap_err(),
            "cy has not acknowledged version 2 of policy acceptable-use"
        );
        c.acknowledgements[0].acknowledged = Some(2);
        assert_eq!(gate(&level, &c, now), Ok(()));
    }

    #[test]
    fn levels_round_trip_and_validate() {
        for level in LevelPolicy::defaults() {
            level.validate().unwrap();
            let json = serde_json::to_string(&level).unwrap();
            assert_eq!(serde_json::from_str::<LevelPolicy>(&json).unwrap(), level);
        }
        let mut bad = regulated();
        bad.approver_roles = vec![Role::Contractor];
        assert!(bad.validate().is_err());
        assert_eq!(date(day("2026-10-01")), "2026-10-01");
        let noon = parse_date("2026-10-01T12:00:00Z").unwrap();
        assert_eq!(date(noon), "2026-10-01T12:00:00Z");
        assert_eq!(date(noon.plus_secs(1)), "2026-10-01T12:00:01Z");
        let later = Timestamp::from_unix_nanos(noon.unix_nanos() + 123_456_789);
        assert_eq!(date(later), "2026-10-01T12:00:00Z");
        assert!(parse_date("2026-13-01").is_err());
        assert!(parse_date("2026-10-01T12:00:00Z").is_ok());
    }
}
