//! `AppState`: everything a request handler may use. No globals: a test can run many servers
//! in one process, each with its own state.

use std::sync::Arc;

use chaperone_core::Clock;
use chaperone_core::net::Cidr;
use chaperone_core::policy::Role;
use chaperone_store::{KvSettings, Store};

use crate::ApiError;
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
    /// How long one deliverable's scan may run (see `Scanner::deadline`). Well under the
    /// request timeout, so that the submitter hears the outcome, and an upload queued behind
    /// another still has time for its own scan.
    pub scan_time_limit: std::time::Duration,
    /// The host names a request's `Host` may give besides IP addresses and `localhost`,
    /// lower case; `None` answers any (see `observe::host_allowed`). Set for a listener
    /// without TLS, where it is what stops DNS rebinding.
    pub allowed_hosts: Option<Vec<String>>,
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
            scan_time_limit: std::time::Duration::from_secs(20),
            allowed_hosts: None,
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
    /// How long a login session may go unused before it ends (to the minute; see
    /// `auth::SESSION_MARK_SECS`). API tokens have none: they are for unattended scripts.
    pub session_idle_secs: i64,
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
            // Security decision: every role needs its TOTP code at login. Each one reaches
            // something worth a phished password: members and auditors read secrets or the
            // ledger, and approvers hand out contractors' access.
            mfa_roles: Role::ALL.to_vec(),
            lockout_threshold: 10,
            lockout_window_secs: 15 * 60,
            failure_delay_ms: 250,
            session_ttl_secs: 12 * 3600,
            // Security decision: 30 minutes, as NIST SP 800-63B asks of AAL2 sessions
            // (re-authentication after 30 minutes of inactivity, and at most every 12 hours).
            session_idle_secs: 30 * 60,
            max_token_ttl_secs: 90 * 24 * 3600,
            step_up_secs: 15 * 60,
            enrolment_ttl_secs: 72 * 3600,
            trusted_proxies: Vec::new(),
        }
    }
}

/// Work that runs to its end whatever becomes of its request ([`crate::api::to_the_end`]):
/// how much is running, so that a server stopping waits for it before its last entries and
/// checkpoint.
#[derive(Debug, Default)]
pub(crate) struct Unfinished {
    running: std::sync::atomic::AtomicUsize,
    done: tokio::sync::Notify,
}

/// One piece of [`Unfinished`] work; done when dropped.
pub(crate) struct Running(Arc<Unfinished>);

impl Unfinished {
    pub(crate) fn enter(self: &Arc<Self>) -> Running {
        self.running
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Running(Arc::clone(self))
    }

    /// Waits until nothing is running, or `limit` has passed.
    pub(crate) async fn wait(&self, limit: std::time::Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let notified = self.done.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.running.load(std::sync::atomic::Ordering::SeqCst) == 0 {
                return;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return;
            }
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if self
            .0
            .running
            .fetch_sub(1, std::sync::atomic::Ordering::SeqCst)
            == 1
        {
            self.0.done.notify_waiters();
        }
    }
}

/// Argon2 runs running or waiting, per slot (a core): about two seconds of waiting at most.
const PASSWORD_QUEUE_PER_SLOT: usize = 32;

/// Deliverables read or waiting for the scan at once; more are answered 429.
pub(crate) const MAX_QUEUED_UPLOADS: usize = 4;

/// Shared state of one server.
#[derive(Debug)]
pub struct AppState {
    pub(crate) store: Store,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) settings: Settings,
    pub(crate) seal: SealState,
    pub(crate) metrics: crate::observe::Metrics,
    pub(crate) rewrap: crate::keys::Rewrap,
    /// Parsed classification rules.
    pub(crate) rules: Derived<(), Arc<crate::auth::ClassificationRules>>,
    /// What the compliance gate reads of a person and their vendor (see `compliance`).
    pub(crate) compliance: Derived<ComplianceKey, chaperone_core::governance::Compliance>,
    /// The largest tree head (size, root) this process signed or checked a checkpoint for:
    /// what the database's checkpoints are held to, so that deleting them does not let the
    /// server sign a fork (see `checkpoint_now`).
    pub(crate) ledger_pin: std::sync::Mutex<Option<(u64, chaperone_ledger::merkle::Hash)>>,
    /// One deliverable scan at a time: a scan holds its upload expanded in memory and runs
    /// on a blocking thread that outlives a timed-out request, so concurrent uploads would
    /// otherwise pile up memory and CPU without bound.
    pub(crate) scans: Arc<tokio::sync::Semaphore>,
    /// Uploads of deliverables being read, waiting for the scan or scanned, at most
    /// [`MAX_QUEUED_UPLOADS`]: a slot is taken before the body is read, so
    /// that uploads waiting for the one scan cannot hold their bodies in memory without
    /// bound (64 MiB each).
    pub(crate) upload_slots: Arc<tokio::sync::Semaphore>,
    /// Share contents being read or stored, at most [`MAX_QUEUED_UPLOADS`] (25 MiB each):
    /// a slot is taken before the body is read, apart from deliverables' slots.
    pub(crate) share_upload_slots: Arc<tokio::sync::Semaphore>,
    /// Who is uploading a share's content now: one upload an uploader (`api::Uploading`).
    pub(crate) share_uploaders: std::sync::Mutex<std::collections::HashSet<String>>,
    /// Who is uploading a deliverable now: one upload an uploader (`api::Uploading`).
    pub(crate) deliverable_uploaders: std::sync::Mutex<std::collections::HashSet<String>>,
    /// The bytes of request bodies over `api::SMALL_BODY` being read or handled at once,
    /// apart from uploads (which have slots of their own); see `api::body_budget`.
    pub(crate) body_budget: Arc<crate::api::BodyBudget>,
    /// The same for request links' submissions, whose bodies are read before anyone is
    /// known: whoever fills it holds up no other route.
    pub(crate) submit_budget: Arc<crate::api::BodyBudget>,
    /// Argon2 runs (password and passphrase hashes and checks) at once: one per core, at most
    /// eight. Each
    /// takes 19 MiB and tens of milliseconds of CPU; see [`AppState::password_work`].
    pub(crate) password_slots: Arc<tokio::sync::Semaphore>,
    /// Work running to its end whatever becomes of its request.
    pub(crate) unfinished: Arc<Unfinished>,
    /// Argon2 runs running or waiting for a slot: [`PASSWORD_QUEUE_PER_SLOT`] a slot.
    pub(crate) password_queue: Arc<tokio::sync::Semaphore>,
    /// When this process last recorded each session's use in the store, so that requests
    /// arriving together record it once (see `auth::note_session_use`).
    pub(crate) session_marks:
        std::sync::Mutex<std::collections::HashMap<String, chaperone_core::Timestamp>>,
    /// Refusals of requests that showed no credential the server knows, recorded up to a
    /// budget (see `auth::AnonymousRefusals`).
    pub(crate) anonymous_refusals: crate::auth::AnonymousRefusals,
}

/// What a person's compliance facts are read for: the person, their vendor when the level
/// asks for agreements or evidence, and the policies the level asks them to acknowledge.
/// Everything the facts depend on besides the store's data is in it, so a level read under
/// an older generation than the facts can never file them for a level that asks for more.
pub(crate) type ComplianceKey = (String, Option<String>, Vec<String>);

/// What authorisation derives from the store (parsed classification rules, a person's
/// compliance facts), kept while the store's access generation stays the same (see
/// `Store::access_generation`): a change that could alter it moves the generation, and the
/// next request reads afresh. Without a generation (PostgreSQL) nothing is kept.
///
/// Callers take the generation *before* reading the store, so a value read while a change
/// commits is filed under a generation that change has left, and never served.
#[derive(Debug)]
pub(crate) struct Derived<K, V> {
    kept: std::sync::Mutex<(u64, std::collections::HashMap<K, V>)>,
}

impl<K, V> Default for Derived<K, V> {
    fn default() -> Self {
        Self {
            kept: std::sync::Mutex::new((0, std::collections::HashMap::new())),
        }
    }
}

impl<K: std::hash::Hash + Eq, V: Clone> Derived<K, V> {
    /// Most values kept; a full cache is emptied.
    const CAPACITY: usize = 10_000;

    /// What is kept for `key` under `generation`.
    pub(crate) fn get(&self, generation: Option<u64>, key: &K) -> Option<V> {
        let generation = generation?;
        let kept = self.lock();
        if kept.0 != generation {
            return None;
        }
        kept.1.get(key).cloned()
    }

    /// Keeps `value`, read under `generation`. A newer generation empties what was kept; a
    /// value read under an older one than is kept is dropped.
    pub(crate) fn put(&self, generation: Option<u64>, key: K, value: V) {
        let Some(generation) = generation else {
            return;
        };
        let mut kept = self.lock();
        if generation < kept.0 {
            return;
        }
        if generation > kept.0 || kept.1.len() >= Self::CAPACITY {
            kept.1.clear();
            kept.0 = generation;
        }
        kept.1.insert(key, value);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (u64, std::collections::HashMap<K, V>)> {
        self.kept.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl AppState {
    /// Runs an Argon2 hash or check (`work`) on a blocking thread, at most one per core at
    /// once. Security decision: unauthenticated requests (logins, enrolments, passphrase
    /// guesses) each cost a 19 MiB Argon2 run; on the request workers a burst of them from
    /// many addresses stalls every other request, and unbounded on blocking threads it would
    /// take memory without bound. Queued here, they wait for each other, not the server.
    pub(crate) async fn password_work<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, ApiError> {
        let failed = || {
            ApiError::new(
                axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "the password check did not run; try again",
            )
        };
        // The queue is bounded too: past it, a burst of guesses from many addresses would
        // make every login wait for minutes, past the request timeout. Refused at once,
        // a caller can try again shortly.
        let Ok(_queued) = Arc::clone(&self.password_queue).try_acquire_owned() else {
            return Err(ApiError::new(
                axum::http::StatusCode::TOO_MANY_REQUESTS,
                "busy",
                "the server is checking as many passwords as it takes at once; try again shortly",
            ));
        };
        // The slot goes with the work: a request that times out or is dropped while its
        // hash runs does not free a slot the hash still uses.
        let slot = Arc::clone(&self.password_slots)
            .acquire_owned()
            .await
            .map_err(|_| failed())?;
        tokio::task::spawn_blocking(move || {
            let out = work();
            drop(slot);
            out
        })
        .await
        .map_err(|_| failed())
    }
}

impl AppState {
    /// A sealed server over `store`. It loads the keyring from the store on first use.
    pub fn new(store: Store, clock: Arc<dyn Clock>, settings: Settings) -> Self {
        let largest = settings.max_request_bytes;
        let body_budget = crate::api::body_budget_bytes(largest);
        let password_slots = std::thread::available_parallelism().map_or(1, |n| n.get().min(8));
        Self {
            store,
            clock,
            settings,
            seal: SealState::default(),
            metrics: crate::observe::Metrics::default(),
            rewrap: crate::keys::Rewrap::default(),
            rules: Derived::default(),
            compliance: Derived::default(),
            ledger_pin: std::sync::Mutex::new(None),
            scans: Arc::new(tokio::sync::Semaphore::new(1)),
            upload_slots: Arc::new(tokio::sync::Semaphore::new(MAX_QUEUED_UPLOADS)),
            share_upload_slots: Arc::new(tokio::sync::Semaphore::new(MAX_QUEUED_UPLOADS)),
            share_uploaders: std::sync::Mutex::default(),
            deliverable_uploaders: std::sync::Mutex::default(),
            body_budget: crate::api::BodyBudget::new(body_budget, largest),
            submit_budget: crate::api::BodyBudget::new(body_budget / 4, largest),
            password_slots: Arc::new(tokio::sync::Semaphore::new(password_slots)),
            unfinished: Arc::default(),
            password_queue: Arc::new(tokio::sync::Semaphore::new(
                password_slots * PASSWORD_QUEUE_PER_SLOT,
            )),
            session_marks: std::sync::Mutex::default(),
            anonymous_refusals: crate::auth::AnonymousRefusals::default(),
        }
    }

    /// The store, for the binary's own start-up steps.
    pub fn store(&self) -> &Store {
        &self.store
    }
}

#[cfg(test)]
mod tests {
    use super::Derived;

    #[test]
    fn derived_values_are_served_only_under_the_generation_they_were_read_at() {
        let derived: Derived<&str, u32> = Derived::default();
        assert_eq!(derived.get(Some(0), &"a"), None);
        derived.put(Some(3), "a", 1);
        assert_eq!(derived.get(Some(3), &"a"), Some(1));
        assert_eq!(derived.get(Some(4), &"a"), None, "a newer generation");
        assert_eq!(derived.get(None, &"a"), None, "no generation, nothing kept");
        // A slower reader's value, read under an older generation, is dropped.
        derived.put(Some(2), "b", 2);
        assert_eq!(derived.get(Some(2), &"b"), None);
        assert_eq!(derived.get(Some(3), &"b"), None);
        // A newer generation empties what was kept under the older one.
        derived.put(Some(5), "c", 3);
        assert_eq!(derived.get(Some(5), &"c"), Some(3));
        assert_eq!(derived.get(Some(5), &"a"), None);
        derived.put(None, "d", 4);
        assert_eq!(derived.get(Some(5), &"d"), None);
    }
}
