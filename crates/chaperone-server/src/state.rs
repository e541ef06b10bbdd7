//! `AppState`: everything a request handler may use. No globals: a test can run many servers
//! in one process, each with its own state.

use std::sync::Arc;

use chaperone_core::Clock;
use chaperone_core::net::Cidr;
use chaperone_core::policy::Role;
use chaperone_store::{KvSettings, Store};

use crate::seal::SealState;

/// Server settings that handlers read.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Key/value defaults (versions kept, check-and-set required).
    pub kv: KvSettings,
    /// Largest accepted request body, in bytes.
    pub max_request_bytes: usize,
    /// Login, MFA, lockout and session settings.
    pub auth: AuthSettings,
    /// Where notifications go and how often the governance sweep runs.
    pub notify: crate::notify::NotifySettings,
    /// The bearer token `/metrics` asks for on the main listener; without one, metrics are
    /// served only on a separate listener (`metrics_listen`).
    pub metrics_token: Option<BearerToken>,
}

/// A bearer token from the configuration. Its `Debug` output is redacted, so printing the
/// settings never prints it.
#[derive(Clone)]
pub struct BearerToken(zeroize::Zeroizing<String>);

impl BearerToken {
    /// Wraps `token`.
    pub fn new(token: String) -> Self {
        Self(zeroize::Zeroizing::new(token))
    }

    /// The token, for comparison.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BearerToken([redacted])")
    }
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            kv: KvSettings::default(),
            max_request_bytes: 1024 * 1024,
            auth: AuthSettings::default(),
            notify: crate::notify::NotifySettings::default(),
            metrics_token: None,
        }
    }
}

/// How people authenticate.
#[derive(Clone, Debug)]
pub struct AuthSettings {
    /// Roles that must give a TOTP code (or a recovery code) at login.
    pub mfa_roles: Vec<Role>,
    /// Failed attempts (per account and per client address) that lock logins.
    pub lockout_threshold: u64,
    /// The window in which failures count; a lockout lifts when it has passed.
    pub lockout_window_secs: i64,
    /// The delay after the first failure; it doubles with each further failure (capped at
    /// eight seconds).
    pub failure_delay_ms: u64,
    /// How long a login session lasts.
    pub session_ttl_secs: i64,
    /// The longest lifetime an API token may be given.
    pub max_token_ttl_secs: i64,
    /// How long a TOTP verification satisfies step-up on a session.
    pub step_up_secs: i64,
    /// How long an enrolment code stays valid.
    pub enrolment_ttl_secs: i64,
    /// Proxies whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<Cidr>,
}

impl Default for AuthSettings {
    fn default() -> Self {
        Self {
            mfa_roles: Role::ALL
                .into_iter()
                .filter(|r| r.mfa_required_by_default())
                .collect(),
            lockout_threshold: 10,
            lockout_window_secs: 15 * 60,
            failure_delay_ms: 250,
            session_ttl_secs: 12 * 3600,
            max_token_ttl_secs: 90 * 24 * 3600,
            step_up_secs: 15 * 60,
            enrolment_ttl_secs: 72 * 3600,
            trusted_proxies: Vec::new(),
        }
    }
}

/// Shared state of one server.
#[derive(Debug)]
pub struct AppState {
    pub(crate) store: Store,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) settings: Settings,
    pub(crate) seal: SealState,
    pub(crate) metrics: crate::observe::Metrics,
    pub(crate) rewrap: crate::keys::Rewrap,
    /// Parsed classification rules and the data generation they were read at.
    pub(crate) rules: std::sync::Mutex<Option<(u64, Arc<crate::auth::ClassificationRules>)>>,
}

impl AppState {
    /// A sealed server over `store`. It loads the keyring from the store on first use.
    pub fn new(store: Store, clock: Arc<dyn Clock>, settings: Settings) -> Self {
        Self {
            store,
            clock,
            settings,
            seal: SealState::default(),
            metrics: crate::observe::Metrics::default(),
            rewrap: crate::keys::Rewrap::default(),
            rules: std::sync::Mutex::new(None),
        }
    }

    /// The store, for the binary's own start-up steps.
    pub fn store(&self) -> &Store {
        &self.store
    }
}
