//! The authorisation decision: one pure function, [`decide`], that every route calls.
//!
//! Deny by default: a request is allowed only when a rule says yes. The rules, in order:
//!
//! 1. The person must be active and, if they belong to a vendor, the vendor must be active.
//! 2. The action must be among the capabilities of the person's role, or (for secret actions)
//!    among the capabilities of an unexpired grant whose prefix covers the path.
//! 3. A token with an explicit scope may only do what its scope lists, whatever its role.
//! 4. The path's classification level may restrict networks, and its continuous gate
//!    ([`crate::governance::gate`]) must pass: the vendor's agreements and evidence, and the
//!    person's acknowledgements, as they stand at this moment.
//! 5. Reading secret data at a level with step-up needs a TOTP verification on the session
//!    within the step-up window; a scoped automation token satisfies it with its scope
//!    instead.
//!
//! Reasons explain a denial without saying whether the resource exists.

use std::fmt;
use std::str::FromStr;

use std::net::IpAddr;

use crate::governance::{Compliance, LevelPolicy, gate};
use crate::{SecretPath, Timestamp};

/// A person's role.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    /// Runs the server: everything.
    Admin,
    /// Security and compliance: people, vendors, grants, classification; secret metadata.
    Security,
    /// Asset owner who approves access; secret metadata, data through grants.
    Approver,
    /// Internal staff: data on paths classified up to `internal`, more through grants.
    Member,
    /// External contractor: nothing but what grants give.
    Contractor,
    /// Reads metadata (and, later, the ledger); never secret data.
    Auditor,
}

impl Role {
    /// Every role, for tables and tests.
    pub const ALL: [Role; 6] = [
        Role::Admin,
        Role::Security,
        Role::Approver,
        Role::Member,
        Role::Contractor,
        Role::Auditor,
    ];

    /// The role's name as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Security => "security",
            Role::Approver => "approver",
            Role::Member => "member",
            Role::Contractor => "contractor",
            Role::Auditor => "auditor",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL.into_iter().find(|r| r.as_str() == s).ok_or_else(|| {
            format!(
                "unknown role `{s}` (roles: admin, security, approver, member, contractor, auditor)"
            )
        })
    }
}

/// Roles are stored and exchanged by name (`approver`).
impl serde::Serialize for Role {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for Role {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// What a request wants to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    /// Read a secret version's data.
    SecretRead,
    /// Write a new version.
    SecretWrite,
    /// Soft-delete or undelete versions.
    SecretDelete,
    /// Destroy versions or delete a secret with its metadata.
    SecretDestroy,
    /// List keys and read metadata and history.
    SecretList,
    /// Change a secret's own settings.
    SecretMetadataWrite,
    /// Seal the server.
    Seal,
    /// Rekey the unseal shares and rotate the key-encryption key.
    ManageKeys,
    /// Have a backup's manifest signed.
    Backup,
    /// Manage people, vendors and enrolments.
    ManagePeople,
    /// Add and remove grants.
    ManageGrants,
    /// Manage path classifications.
    ManageClassification,
    /// Create, list and revoke one's own tokens.
    OwnTokens,
    /// Look up, renew or revoke the very token presented (Vault's `lookup-self`,
    /// `renew-self`, `revoke-self`; the native `auth/self`). Every role, and scoped tokens
    /// too: a job must be able to check and end its own token.
    SelfToken,
    /// Read the ledger: checkpoints, proofs and entries (contractors see only their own).
    ReadLedger,
    /// Read the whole ledger as tlog tiles and entry bundles, for verification.
    AuditLedger,
    /// See which secrets engines are mounted (Vault clients ask before every call).
    ReadMounts,
    /// Read vendors, agreements, evidence, levels, review campaigns.
    ReadGovernance,
    /// Manage vendors, agreements, evidence, policy documents, levels, review campaigns.
    ManageGovernance,
    /// Ask for access, extend one's grants, read and acknowledge policies, read one's own
    /// requests and notifications.
    RequestAccess,
    /// Approve or deny access requests (the level says whose approval counts).
    ApproveAccess,
    /// Grant access at once without approval, flagged for review.
    BreakGlass,
    /// Certify or revoke items of an access review.
    ReviewAccess,
    /// Read and work on findings (everyone sees their own; security all).
    TrackFindings,
    /// Create, list and revoke one's share links.
    Share,
    /// Read deliverables and their review.
    Deliverables,
    /// Submit deliverables (contractors, for their vendor; staff name the vendor). Not
    /// auditors, who only read.
    SubmitDeliverable,
}

impl Action {
    /// The action's name in the ledger, e.g. `secret.read`.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::SecretRead => "secret.read",
            Action::SecretWrite => "secret.write",
            Action::SecretDelete => "secret.delete",
            Action::SecretDestroy => "secret.destroy",
            Action::SecretList => "secret.list",
            Action::SecretMetadataWrite => "secret.metadata_write",
            Action::Seal => "sys.seal",
            Action::ManageKeys => "sys.keys",
            Action::Backup => "sys.backup",
            Action::ManagePeople => "people.manage",
            Action::ManageGrants => "grants.manage",
            Action::ManageClassification => "classification.manage",
            Action::OwnTokens => "tokens.own",
            Action::SelfToken => "tokens.self",
            Action::ReadLedger => "ledger.read",
            Action::AuditLedger => "ledger.audit",
            Action::ReadMounts => "sys.mounts",
            Action::ReadGovernance => "governance.read",
            Action::ManageGovernance => "governance.manage",
            Action::RequestAccess => "access.request",
            Action::ApproveAccess => "access.approve",
            Action::BreakGlass => "grants.break_glass",
            Action::ReviewAccess => "reviews.decide",
            Action::TrackFindings => "findings.track",
            Action::Share => "shares.manage",
            Action::Deliverables => "deliverables.use",
            Action::SubmitDeliverable => "deliverables.submit",
        }
    }

    /// Whether the action is on secret paths (and so can be granted).
    pub fn is_secret_action(self) -> bool {
        self.capability().is_some()
    }

    /// The grantable capability this action needs, if it is a secret action.
    pub fn capability(self) -> Option<Capability> {
        match self {
            Action::SecretRead => Some(Capability::Read),
            Action::SecretWrite | Action::SecretMetadataWrite => Some(Capability::Write),
            Action::SecretDelete => Some(Capability::Delete),
            Action::SecretDestroy => Some(Capability::Destroy),
            Action::SecretList => Some(Capability::List),
            _ => None,
        }
    }
}

/// A capability on secret paths, as held in grants and token scopes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Capability {
    /// Read data.
    Read,
    /// Write versions and settings.
    Write,
    /// Soft-delete and undelete.
    Delete,
    /// Destroy data for good.
    Destroy,
    /// List keys and read metadata.
    List,
}

impl Capability {
    /// The capability's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Capability::Read => "read",
            Capability::Write => "write",
            Capability::Delete => "delete",
            Capability::Destroy => "destroy",
            Capability::List => "list",
        }
    }
}

impl FromStr for Capability {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "read" => Ok(Capability::Read),
            "write" => Ok(Capability::Write),
            "delete" => Ok(Capability::Delete),
            "destroy" => Ok(Capability::Destroy),
            "list" => Ok(Capability::List),
            _ => Err(format!(
                "unknown capability `{s}` (capabilities: read, write, delete, destroy, list)"
            )),
        }
    }
}

/// Capabilities on paths under a prefix, held by a grant or a token scope.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PathRule {
    /// Paths equal to this prefix or under it (`team/db` covers `team/db` and `team/db/x`;
    /// an empty prefix covers everything).
    pub prefix: String,
    /// What may be done there.
    pub capabilities: Vec<Capability>,
    /// When the rule stops applying, if ever.
    pub expires_at: Option<Timestamp>,
    /// For a grant approved through a request: what it was approved with, which the path's
    /// level must not ask more than (see [`PathRule::meets`]). `None` for scope rules,
    /// break-glass grants and grants made before this was kept.
    pub terms: Option<GrantTerms>,
}

/// What a grant (or its latest extension) was approved with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GrantTerms {
    /// How many distinct people approved it.
    pub approvals: u32,
    /// How long it was approved for, in seconds.
    pub secs: i64,
}

impl PathRule {
    /// Whether this rule allows `capability` on `path` at `now`.
    pub fn allows(
        &self,
        capability: Capability,
        path: Option<&SecretPath>,
        now: Timestamp,
    ) -> bool {
        if self.expires_at.is_some_and(|at| at <= now) || !self.capabilities.contains(&capability) {
            return false;
        }
        match path {
            Some(path) => covers(&self.prefix, path.as_str()),
            // Listing the root or a folder: allowed when the rule's prefix lies below it.
            None => true,
        }
    }
}

impl PathRule {
    /// Whether a grant's approval meets what `level` asks today. Security decision: a
    /// request is held to the strictest level under its prefix when it is approved, but a
    /// path classified stricter later (or a level made stricter) would otherwise be reached
    /// by a grant approved for less: one approval where two are needed, or 90 days where 7
    /// are allowed. The grant does not reach such paths until it is asked for again.
    pub fn meets(&self, level: &LevelPolicy) -> bool {
        self.terms
            .is_none_or(|t| t.approvals >= level.approvals && t.secs <= level.max_grant_secs)
    }
}

fn covers(prefix: &str, path: &str) -> bool {
    let prefix = prefix.trim_end_matches('/');
    prefix.is_empty()
        || path == prefix
        || path
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// Whether an account or vendor may act.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Standing {
    /// Active.
    Active,
    /// Disabled, suspended or terminated.
    Inactive,
}

/// Who is asking, as resolved from their token.
#[derive(Clone, Debug)]
pub struct Principal {
    /// The person's role.
    pub role: Role,
    /// The person's own standing.
    pub person: Standing,
    /// The standing of the person's vendor, if they belong to one.
    pub vendor: Option<Standing>,
    /// The person's unexpired and expired grants (expiry is checked here).
    pub grants: Vec<PathRule>,
    /// For a scoped (automation) token: the only things it may do.
    pub scope: Option<Vec<PathRule>>,
    /// For a scoped token, on a path whose level asks for step-up: whether a scope rule
    /// that allows the path names a prefix itself classified at a level with step-up. Only
    /// then does the token read there without a fresh verification (it was minted with
    /// one): a token scoped to a whole tree (`""`) or to a folder above the classified one
    /// was not minted for that sensitive data, and reads it only after a step-up like a
    /// session, which such a token cannot make.
    pub scope_steps_up: bool,
    /// When this session last verified a TOTP code.
    pub mfa_verified_at: Option<Timestamp>,
    /// Whether the client address is inside the person's and the vendor's allowlists.
    pub network_allowed: bool,
    /// What the continuous gate looks at, read for this request when the path's level has
    /// requirements (`None`: nothing to check, as for a token without a person).
    pub compliance: Option<Compliance>,
}

impl Principal {
    /// An active principal with `role` and nothing else: no vendor, grants, scope or MFA
    /// time, from an allowed network, with no compliance facts.
    pub fn of_role(role: Role) -> Self {
        Self {
            role,
            person: Standing::Active,
            vendor: None,
            grants: Vec::new(),
            scope: None,
            scope_steps_up: false,
            mfa_verified_at: None,
            network_allowed: true,
            compliance: None,
        }
    }
}

/// What the request touches.
#[derive(Clone, Copy, Debug)]
pub enum Resource<'a> {
    /// One secret path, with its classification level.
    Secret(&'a SecretPath, &'a LevelPolicy),
    /// A listing of the root or a folder.
    Listing,
    /// Server-wide administration.
    System,
}

/// The circumstances of the request.
#[derive(Clone, Copy, Debug)]
pub struct Context {
    /// The server clock's now.
    pub now: Timestamp,
    /// How long a TOTP verification satisfies step-up, in nanoseconds.
    pub step_up_window_nanos: i64,
    /// The client's address, as the server believes it.
    pub client: Option<IpAddr>,
}

/// Why a request was refused. The text is safe to show to the caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reason {
    /// The account is disabled.
    PersonInactive,
    /// The person's vendor is suspended or terminated.
    VendorInactive,
    /// Neither the role nor a grant allows the action here.
    NotPermitted,
    /// The token's scope does not include the action here.
    OutsideScope,
    /// A grant covers the path, but was approved with fewer approvals or for longer than
    /// the path's level now allows.
    GrantBelowLevel,
    /// A fresh TOTP verification is needed.
    StepUpRequired,
    /// The client address is outside the allowlist.
    NetworkNotAllowed,
    /// The path's level admits no access from this network.
    LevelNetworkNotAllowed,
    /// The continuous gate refused: the sentence says which requirement is unmet
    /// (`agreement DPA of vendor acme expired on 2026-10-01`).
    Compliance(String),
}

impl Reason {
    /// A stable code.
    pub fn code(&self) -> &'static str {
        match self {
            Reason::PersonInactive => "person_inactive",
            Reason::VendorInactive => "vendor_inactive",
            Reason::NotPermitted => "not_permitted",
            Reason::OutsideScope => "outside_scope",
            Reason::GrantBelowLevel => "grant_below_level",
            Reason::StepUpRequired => "step_up_required",
            Reason::NetworkNotAllowed => "network_not_allowed",
            Reason::LevelNetworkNotAllowed => "level_network_not_allowed",
            Reason::Compliance(_) => "compliance",
        }
    }

    /// An explanation that does not reveal whether the resource exists.
    pub fn message(&self) -> &str {
        match self {
            Reason::PersonInactive => "the account is disabled",
            Reason::VendorInactive => "the account's vendor is not active",
            Reason::NotPermitted => "neither your role nor a grant allows this here",
            Reason::OutsideScope => "the token's scope does not allow this here",
            Reason::GrantBelowLevel => {
                "your grant was approved for a less strict classification than this path now \
                 has: ask for access again"
            }
            Reason::StepUpRequired => {
                "this path needs a recent TOTP verification: run `chaperone verify` in a \
                 login session (the initial admin token and other tokens of no person have \
                 none: log in as a person)"
            }
            Reason::NetworkNotAllowed => {
                "requests from this network are not allowed for the account"
            }
            Reason::LevelNetworkNotAllowed => {
                "paths at this classification level are not reachable from this network"
            }
            Reason::Compliance(sentence) => sentence,
        }
    }
}

/// The outcome of [`decide`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    /// Whether the request may proceed.
    pub allowed: bool,
    /// Why not, when it may not.
    pub reasons: Vec<Reason>,
}

impl Decision {
    fn allow() -> Self {
        Self {
            allowed: true,
            reasons: Vec::new(),
        }
    }

    /// A refusal for `reason`.
    pub fn deny(reason: Reason) -> Self {
        Self {
            allowed: false,
            reasons: vec![reason],
        }
    }
}

/// Whether a TOTP code was verified at `at`, no longer than `window_nanos` before `now`.
/// A verification time after `now` is not fresh: with several nodes, one whose clock runs
/// ahead would otherwise stretch the window by the difference.
pub fn verified_within(at: Option<Timestamp>, now: Timestamp, window_nanos: i64) -> bool {
    at.is_some_and(|at| at <= now && now.unix_nanos() - at.unix_nanos() <= window_nanos)
}

/// Decides whether `principal` may do `action` on `resource`.
pub fn decide(
    principal: &Principal,
    action: Action,
    resource: Resource<'_>,
    context: Context,
) -> Decision {
    if principal.person == Standing::Inactive {
        return Decision::deny(Reason::PersonInactive);
    }
    if principal.vendor == Some(Standing::Inactive) {
        return Decision::deny(Reason::VendorInactive);
    }
    if !principal.network_allowed {
        return Decision::deny(Reason::NetworkNotAllowed);
    }
    let path = match resource {
        Resource::Secret(path, _) => Some(path),
        Resource::Listing | Resource::System => None,
    };
    let level = match resource {
        Resource::Secret(_, level) => Some(level),
        _ => None,
    };
    let staff_access = level.is_none_or(|l| l.staff_access);
    let by_role = role_allows(principal.role, action, staff_access);
    let covering = |cap| {
        principal
            .grants
            .iter()
            .filter(move |g| g.allows(cap, path, context.now))
    };
    let by_grant = action
        .capability()
        .is_some_and(|cap| covering(cap).any(|g| level.is_none_or(|l| g.meets(l))));
    if !by_role && !by_grant {
        // Say so when a grant covers the path but was approved for a laxer level; not to a
        // vendor's people, who are never told how a path is classified (that would let them
        // probe paths under their grant for the stricter ones).
        if let (Some(cap), Some(level), None) = (action.capability(), level, principal.vendor)
            && covering(cap).any(|g| !g.meets(level))
        {
            return Decision::deny(Reason::GrantBelowLevel);
        }
        return Decision::deny(Reason::NotPermitted);
    }
    if let Some(scope) = &principal.scope {
        let in_scope = match action.capability() {
            Some(cap) => scope.iter().any(|rule| rule.allows(cap, path, context.now)),
            // Scoped tokens are for automation on secrets: they never administer, and never
            // mint tokens (a new token could otherwise shed the scope). They may see the
            // mounts (Vault clients ask before every call) and look up or end themselves.
            None => matches!(action, Action::SelfToken | Action::ReadMounts),
        };
        if !in_scope {
            return Decision::deny(Reason::OutsideScope);
        }
    }
    if let Some(level) = level {
        if !level.network_allows(context.client) {
            return Decision::deny(Reason::LevelNetworkNotAllowed);
        }
        if let Some(compliance) = &principal.compliance
            && let Err(sentence) = gate(level, compliance, context.now)
        {
            return Decision::deny(Reason::Compliance(sentence));
        }
    }
    let step_up = level.is_some_and(|l| l.step_up);
    if action == Action::SecretRead
        && step_up
        && !(principal.scope.is_some() && principal.scope_steps_up)
        && !verified_within(
            principal.mfa_verified_at,
            context.now,
            context.step_up_window_nanos,
        )
    {
        return Decision::deny(Reason::StepUpRequired);
    }
    Decision::allow()
}

/// Whether a listed key (`full_key`, a path or a folder ending in `/`, classified `level`)
/// may be shown to `principal`: always when the role may list, otherwise only keys on the way
/// to, or under, a grant's prefix with the `list` capability. Keys under the prefix are
/// shown only by a grant approved for their level (`PathRule::meets`: a path classified
/// stricter after the approval is not listed either); the folders on the way to it are, as
/// they name nothing the grant's holder does not know. Listings never reveal paths outside
/// grants.
pub fn visible_in_listing(
    principal: &Principal,
    full_key: &str,
    level: &LevelPolicy,
    now: Timestamp,
) -> bool {
    let key = full_key.trim_end_matches('/');
    let folder = full_key.ends_with('/');
    let listable = |rule: &PathRule| {
        let prefix = rule.prefix.trim_end_matches('/');
        rule.expires_at.is_none_or(|at| at > now)
            && rule.capabilities.contains(&Capability::List)
            && ((covers(prefix, key) && rule.meets(level)) || (folder && covers(key, prefix)))
    };
    let allowed = role_allows(principal.role, Action::SecretList, true)
        || principal.grants.iter().any(listable);
    match &principal.scope {
        Some(scope) => allowed && scope.iter().any(listable),
        None => allowed,
    }
}

/// What each role may do without a grant; `staff_access` is the path level's (members
/// read and write only where it is set).
fn role_allows(role: Role, action: Action, staff_access: bool) -> bool {
    use Action::*;
    match role {
        Role::Admin => true,
        Role::Security => matches!(
            action,
            SecretList
                | ManagePeople
                | ManageGrants
                | ManageClassification
                | OwnTokens
                | SelfToken
                | ReadLedger
                | AuditLedger
                | ReadMounts
                | ReadGovernance
                | ManageGovernance
                | RequestAccess
                | ApproveAccess
                | ReviewAccess
                | TrackFindings
                | Share
                | Deliverables
                | SubmitDeliverable
        ),
        Role::Auditor => matches!(
            action,
            SecretList
                | OwnTokens
                | SelfToken
                | ReadLedger
                | AuditLedger
                | ReadMounts
                | ReadGovernance
                | RequestAccess
                | TrackFindings
                | Deliverables
        ),
        Role::Approver => matches!(
            action,
            SecretList
                | OwnTokens
                | SelfToken
                | ReadMounts
                | ReadGovernance
                | RequestAccess
                | ApproveAccess
                | ReviewAccess
                | TrackFindings
                | Share
        ),
        Role::Member => match action {
            SecretList | OwnTokens | SelfToken | ReadMounts | RequestAccess | TrackFindings
            | Share => true,
            SecretRead | SecretWrite | SecretDelete | SecretMetadataWrite => staff_access,
            _ => false,
        },
        // A contractor's ledger reads are filtered to entries about themselves.
        Role::Contractor => matches!(
            action,
            OwnTokens
                | SelfToken
                | ReadLedger
                | ReadMounts
                | RequestAccess
                | Deliverables
                | SubmitDeliverable
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000_000_000;

    fn at(minutes: i64) -> Timestamp {
        Timestamp::from_unix_nanos(1_800_000_000_000_000_000 + minutes * MIN)
    }

    fn ctx(minutes: i64) -> Context {
        Context {
            now: at(minutes),
            step_up_window_nanos: 15 * MIN,
            client: Some("192.0.2.7".parse().unwrap()),
        }
    }

    fn person(role: Role) -> Principal {
        Principal::of_role(role)
    }

    fn level(name: &str) -> &'static LevelPolicy {
        Box::leak(Box::new(
            LevelPolicy::defaults()
                .into_iter()
                .find(|l| l.name == name)
                .unwrap(),
        ))
    }

    fn rule(prefix: &str, caps: &[Capability], expires: Option<Timestamp>) -> PathRule {
        PathRule {
            prefix: prefix.into(),
            capabilities: caps.to_vec(),
            expires_at: expires,
            terms: None,
        }
    }

    fn path(p: &str) -> SecretPath {
        SecretPath::parse(p).unwrap()
    }

    #[test]
    fn a_verification_is_fresh_only_inside_its_window_and_never_from_the_future() {
        let window = 15 * MIN;
        assert!(verified_within(Some(at(0)), at(15), window));
        assert!(!verified_within(Some(at(0)), at(16), window));
        assert!(!verified_within(None, at(0), window));
        assert!(!verified_within(Some(at(5)), at(4), window));
    }

    #[test]
    fn contractors_start_with_nothing_and_get_exactly_their_grants() {
        let mut c = person(Role::Contractor);
        c.vendor = Some(Standing::Active);
        let db = path("acme/db");
        let secret = Resource::Secret(&db, level("internal"));
        assert_eq!(
            decide(&c, Action::SecretRead, secret, ctx(0)),
            Decision::deny(Reason::NotPermitted)
        );
        c.grants
            .push(rule("acme", &[Capability::Read], Some(at(60))));
        assert!(decide(&c, Action::SecretRead, secret, ctx(0)).allowed);
        assert!(!decide(&c, Action::SecretWrite, secret, ctx(0)).allowed);
        // The grant ends by itself.
        assert!(!decide(&c, Action::SecretRead, secret, ctx(60)).allowed);
        // A prefix covers whole segments only.
        let other = path("acmex/db");
        assert!(
            !decide(
                &c,
                Action::SecretRead,
                Resource::Secret(&other, level("internal")),
                ctx(0)
            )
            .allowed
        );
        assert!(!decide(&c, Action::ManagePeople, Resource::System, ctx(0)).allowed);
    }

    #[test]
    fn a_grant_reaches_only_paths_whose_level_asks_no_more_than_its_approval() {
        // Staff who read only through grants.
        let mut c = person(Role::Approver);
        let mut grant = rule("acme", &[Capability::Write], Some(at(60)));
        let terms = |approvals, days: i64| {
            Some(GrantTerms {
                approvals,
                secs: days * 86_400,
            })
        };
        grant.terms = terms(1, 30);
        c.grants.push(grant);
        let db = path("acme/prod/db");
        let write = |c: &Principal, name: &str| {
            decide(
                c,
                Action::SecretWrite,
                Resource::Secret(&db, level(name)),
                ctx(0),
            )
        };
        // Approved once for 30 days: enough where one approval and 30 days are allowed...
        assert!(write(&c, "internal").allowed);
        assert!(write(&c, "confidential").allowed);
        // ...not on a path regulated since (two approvals, at most 7 days).
        let below = Decision::deny(Reason::GrantBelowLevel);
        assert_eq!(write(&c, "regulated"), below);
        c.grants[0].terms = terms(2, 30);
        assert_eq!(write(&c, "regulated"), below, "approved for too long");
        c.grants[0].terms = terms(1, 7);
        assert_eq!(write(&c, "regulated"), below, "approved by one person");
        c.grants[0].terms = terms(2, 7);
        assert!(write(&c, "regulated").allowed);
        // A vendor's people are not told why: that would say how the path is classified.
        let mut contractor = person(Role::Contractor);
        contractor.vendor = Some(Standing::Active);
        contractor.grants = c.grants.clone();
        contractor.grants[0].terms = terms(1, 30);
        assert_eq!(
            write(&contractor, "regulated"),
            Decision::deny(Reason::NotPermitted)
        );
        assert!(write(&contractor, "internal").allowed);
        // A break-glass grant is held to no approval.
        c.grants[0].terms = None;
        assert!(write(&c, "regulated").allowed);
        // A role that allows it needs no grant at all.
        let admin = person(Role::Admin);
        assert!(write(&admin, "regulated").allowed);
    }

    #[test]
    fn inactive_people_and_vendors_are_refused_first() {
        let mut admin = person(Role::Admin);
        admin.person = Standing::Inactive;
        assert_eq!(
            decide(&admin, Action::Seal, Resource::System, ctx(0)).reasons,
            [Reason::PersonInactive]
        );
        let mut c = person(Role::Contractor);
        c.vendor = Some(Standing::Inactive);
        c.grants.push(rule("", &[Capability::Read], None));
        let p = path("x");
        assert_eq!(
            decide(
                &c,
                Action::SecretRead,
                Resource::Secret(&p, level("public")),
                ctx(0)
            )
            .reasons,
            [Reason::VendorInactive]
        );
    }

    #[test]
    fn outside_the_allowlist_nothing_is_allowed() {
        let mut admin = person(Role::Admin);
        admin.network_allowed = false;
        assert_eq!(
            decide(&admin, Action::OwnTokens, Resource::System, ctx(0)).reasons,
            [Reason::NetworkNotAllowed]
        );
    }

    #[test]
    fn confidential_reads_need_a_recent_totp_verification() {
        let mut m = person(Role::Member);
        m.grants.push(rule("fin", &[Capability::Read], None));
        let p = path("fin/ledger");
        let r = Resource::Secret(&p, level("confidential"));
        assert_eq!(
            decide(&m, Action::SecretRead, r, ctx(0)).reasons,
            [Reason::StepUpRequired]
        );
        m.mfa_verified_at = Some(at(0));
        assert!(decide(&m, Action::SecretRead, r, ctx(15)).allowed);
        assert_eq!(
            decide(&m, Action::SecretRead, r, ctx(16)).reasons,
            [Reason::StepUpRequired]
        );
        // Listing and metadata need no step-up.
        assert!(decide(&m, Action::SecretList, r, ctx(60)).allowed);
    }

    #[test]
    fn scoped_tokens_are_limited_to_their_scope_and_skip_step_up() {
        let mut admin = person(Role::Admin);
        admin.scope = Some(vec![rule("ci", &[Capability::Read], None)]);
        let ci = path("ci/deploy-key");
        let prod = path("prod/db");
        let r = Resource::Secret(&ci, level("regulated"));
        // Step-up is skipped only when the scope was made for the step-up level's data.
        assert_eq!(
            decide(&admin, Action::SecretRead, r, ctx(0)).reasons,
            [Reason::StepUpRequired]
        );
        admin.scope_steps_up = true;
        assert!(decide(&admin, Action::SecretRead, r, ctx(0)).allowed);
        assert_eq!(
            decide(&admin, Action::SecretWrite, r, ctx(0)).reasons,
            [Reason::OutsideScope]
        );
        let r = Resource::Secret(&prod, level("internal"));
        assert_eq!(
            decide(&admin, Action::SecretRead, r, ctx(0)).reasons,
            [Reason::OutsideScope]
        );
        assert_eq!(
            decide(&admin, Action::Seal, Resource::System, ctx(0)).reasons,
            [Reason::OutsideScope]
        );
        // Nor may it mint a token, which could shed the scope.
        assert_eq!(
            decide(&admin, Action::OwnTokens, Resource::System, ctx(0)).reasons,
            [Reason::OutsideScope]
        );
        // A scope never widens a role.
        let mut c = person(Role::Contractor);
        c.scope = Some(vec![rule("", &[Capability::Read], None)]);
        assert_eq!(
            decide(&c, Action::SecretRead, r, ctx(0)).reasons,
            [Reason::NotPermitted]
        );
    }

    #[test]
    fn role_matrix() {
        let p = path("team/x");
        let internal = Resource::Secret(&p, level("internal"));
        let confidential = Resource::Secret(&p, level("confidential"));
        let cases = [
            (Role::Admin, Action::Seal, Resource::System, true),
            (Role::Security, Action::Seal, Resource::System, false),
            (Role::Security, Action::ManageGrants, Resource::System, true),
            (Role::Security, Action::SecretRead, internal, false),
            (Role::Security, Action::SecretList, internal, true),
            (Role::Member, Action::SecretRead, internal, true),
            (Role::Member, Action::SecretWrite, internal, true),
            (Role::Member, Action::SecretWrite, confidential, false),
            (Role::Member, Action::SecretDestroy, internal, false),
            (Role::Auditor, Action::SecretRead, internal, false),
            (Role::Auditor, Action::SecretList, Resource::Listing, true),
            (
                Role::Approver,
                Action::ManageGrants,
                Resource::System,
                false,
            ),
            (
                Role::Contractor,
                Action::SecretList,
                Resource::Listing,
                false,
            ),
            (Role::Contractor, Action::OwnTokens, Resource::System, true),
        ];
        for (role, action, resource, allowed) in cases {
            let mut principal = person(role);
            principal.mfa_verified_at = Some(at(0));
            assert_eq!(
                decide(&principal, action, resource, ctx(0)).allowed,
                allowed,
                "{role} {action:?}"
            );
        }
    }

    #[test]
    fn listings_show_only_what_grants_cover() {
        let mut c = person(Role::Contractor);
        c.grants.push(rule(
            "acme/app",
            &[Capability::List, Capability::Read],
            None,
        ));
        let now = at(0);
        let internal = level("internal");
        assert!(visible_in_listing(&c, "acme/", internal, now));
        assert!(visible_in_listing(&c, "acme/app/", internal, now));
        assert!(visible_in_listing(&c, "acme/app/db", internal, now));
        assert!(!visible_in_listing(&c, "acme/other", internal, now));
        assert!(!visible_in_listing(&c, "globex/", internal, now));
        assert!(visible_in_listing(
            &person(Role::Auditor),
            "globex/",
            internal,
            now
        ));
        // A grant approved once for 30 days lists nothing classified regulated (two
        // approvals, 7 days at most).
        c.grants[0].terms = Some(GrantTerms {
            approvals: 1,
            secs: 30 * 24 * 3600,
        });
        assert!(visible_in_listing(&c, "acme/app/db", internal, now));
        assert!(!visible_in_listing(
            &c,
            "acme/app/db",
            level("regulated"),
            now
        ));
        // The folders on the way to the grant, whatever their own level.
        assert!(visible_in_listing(&c, "acme/", level("regulated"), now));
    }

    #[test]
    fn names_parse_back() {
        for role in Role::ALL {
            assert_eq!(role.as_str().parse::<Role>().unwrap(), role);
        }
        assert!("root".parse::<Role>().is_err());
        assert_eq!("list".parse::<Capability>().unwrap(), Capability::List);
    }

    #[test]
    fn the_gate_and_level_networks_apply_to_grants_too() {
        use crate::governance::{AgreementFacts, AgreementKind};
        let mut c = person(Role::Contractor);
        c.vendor = Some(Standing::Active);
        c.mfa_verified_at = Some(at(0));
        c.grants.push(rule("acme", &[Capability::Read], None));
        let p = path("acme/db");
        let confidential = level("confidential");
        c.compliance = Some(Compliance {
            vendor: Some("acme".into()),
            person: "cy".into(),
            ..Compliance::default()
        });
        let r = Resource::Secret(&p, confidential);
        assert_eq!(
            decide(&c, Action::SecretRead, r, ctx(0)).reasons,
            [Reason::Compliance(
                "vendor acme has no signed NDA agreement in effect".into()
            )]
        );
        c.compliance
            .as_mut()
            .unwrap()
            .agreements
            .push(AgreementFacts {
                kind: AgreementKind::Nda,
                signed_at: Some(at(-10)),
                effective_at: None,
                expires_at: Some(at(5)),
                terminated_at: None,
            });
        assert!(decide(&c, Action::SecretRead, r, ctx(0)).allowed);
        assert_eq!(
            decide(&c, Action::SecretRead, r, ctx(5)).reasons[0].code(),
            "compliance"
        );
        let mut fenced = confidential.clone();
        fenced.networks = vec!["10.0.0.0/8".parse().unwrap()];
        let r = Resource::Secret(&p, &fenced);
        assert_eq!(
            decide(&c, Action::SecretRead, r, ctx(0)).reasons,
            [Reason::LevelNetworkNotAllowed]
        );
    }
}
