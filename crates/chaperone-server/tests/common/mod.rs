//! The in-process test server: a real HTTP server over a temporary SQLite database with a
//! manual clock (time is moved, never slept), helpers to call it, and the captured logs.
#![allow(dead_code)]

pub(crate) mod browser;

use std::io::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use chaperone_core::policy::Role;
use chaperone_core::{Clock, Timestamp};
use chaperone_crypto::UnsealKey;
use chaperone_crypto::token::ApiToken;
use chaperone_crypto::totp::{self, TotpSecret};
use chaperone_server::{AppState, AuthSettings, ServeOptions, Settings};
use chaperone_store::{DatabaseUrl, SealConfig, Store};
use serde_json::{Value, json};

#[derive(Debug)]
pub(crate) struct ManualClock(pub(crate) AtomicI64);

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_unix_nanos(self.0.load(Ordering::SeqCst))
    }
}

impl ManualClock {
    pub(crate) fn advance_secs(&self, secs: i64) {
        self.0.fetch_add(secs * 1_000_000_000, Ordering::SeqCst);
    }
}

/// Everything any test logged, at debug level and above.
pub(crate) fn logs() -> &'static Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let writer = buffer.clone();
        tracing_subscriber::fmt()
            .with_env_filter("debug")
            .with_ansi(false)
            .with_writer(move || LogWriter(writer.clone()))
            .init();
        buffer
    })
}

struct LogWriter(Arc<Mutex<Vec<u8>>>);

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

pub(crate) struct Server {
    pub(crate) addr: String,
    pub(crate) admin: String,
    pub(crate) clock: Arc<ManualClock>,
    pub(crate) state: Arc<AppState>,
    pub(crate) key: UnsealKey,
    pub(crate) runtime: tokio::runtime::Runtime,
    pub(crate) agent: ureq::Agent,
    /// Ends the server as a signal does ([`Server::shut_down`]).
    stop: Mutex<Option<tokio::sync::oneshot::Sender<()>>>,
    served: Mutex<Option<tokio::task::JoinHandle<std::io::Result<()>>>>,
    /// Values that must never be logged.
    pub(crate) secrets: Mutex<Vec<String>>,
    pub(crate) _dir: tempfile::TempDir,
}

impl Server {
    pub(crate) fn start() -> Self {
        Self::start_with(|_| {})
    }

    /// Starts a server on which members, approvers and auditors log in with their password
    /// alone (`mfa_roles = admin,security,contractor`), as a deployment may choose.
    pub(crate) fn start_password_only() -> Self {
        Self::start_with(|settings| {
            settings.auth.mfa_roles = vec![Role::Admin, Role::Security, Role::Contractor];
        })
    }

    /// Starts a server whose settings `configure` may change first.
    pub(crate) fn start_with(configure: impl FnOnce(&mut Settings)) -> Self {
        Self::start_serving(configure, ServeOptions::default())
    }

    /// Starts a server with these settings and connection limits.
    pub(crate) fn start_serving(
        configure: impl FnOnce(&mut Settings),
        options: ServeOptions,
    ) -> Self {
        logs();
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock(AtomicI64::new(1_800_000_000_000_000_000)));
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let key = UnsealKey::generate();
        let admin = ApiToken::generate();
        let settings = Settings {
            auth: AuthSettings {
                failure_delay_ms: 1,
                trusted_proxies: vec!["127.0.0.1/32".parse().unwrap()],
                ..AuthSettings::default()
            },
            ..Settings::default()
        };
        let mut settings = settings;
        configure(&mut settings);
        let url = DatabaseUrl::sqlite_file(&dir.path().join("t.db"));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (state, addr, served) = runtime.block_on(async {
            let store = Store::connect(&url).await.unwrap();
            chaperone_server::initialize(
                &store,
                &key,
                SealConfig::KeyFile,
                &[],
                &admin,
                clock.now(),
            )
            .await
            .unwrap();
            let state = Arc::new(AppState::new(store, clock.clone(), settings));
            state.unseal_with_key(&key).await.unwrap();
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr: SocketAddr = listener.local_addr().unwrap();
            let served = tokio::spawn(chaperone_server::serve_with(
                listener,
                state.clone(),
                options,
                async move {
                    let _ = stopped.await;
                },
            ));
            (state, addr, served)
        });
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        let admin = admin.expose().to_owned();
        Server {
            addr: format!("http://{addr}"),
            secrets: Mutex::new(vec![admin.clone()]),
            admin,
            clock,
            state,
            key,
            runtime,
            agent,
            stop: Mutex::new(Some(stop)),
            served: Mutex::new(Some(served)),
            _dir: dir,
        }
    }

    /// Stops the server as `up` does on a signal, and waits until it has finished
    /// (the state stays, to look at what it left).
    pub(crate) fn shut_down(&self) {
        if let Some(stop) = self.stop.lock().unwrap().take() {
            let _ = stop.send(());
        }
        if let Some(served) = self.served.lock().unwrap().take() {
            self.runtime.block_on(served).unwrap().unwrap();
        }
    }

    /// Sends a request; `from` sets X-Forwarded-For (the test client is a trusted proxy).
    pub(crate) fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
        from: Option<&str>,
    ) -> (u16, Value) {
        let url = format!("{}{path}", self.addr);
        let send = || {
            let mut request = ureq::http::Request::builder().method(method).uri(&url);
            if let Some(t) = token {
                request = request.header("Authorization", format!("Bearer {t}"));
            }
            if let Some(ip) = from {
                request = request.header("X-Forwarded-For", ip);
            }
            // Vault's PATCH takes JSON merge patches only.
            let patch = method == "PATCH" && path.starts_with("/v1/");
            if patch {
                request = request.header("Content-Type", "application/merge-patch+json");
            }
            match &body {
                Some(body) if patch => self.agent.run(request.body(body.to_string()).unwrap()),
                Some(body) => self.agent.run(
                    request
                        .header("Content-Type", "application/json")
                        .body(body.to_string())
                        .unwrap(),
                ),
                None => self.agent.run(request.body(()).unwrap()),
            }
        };
        // One retry when the connection drops before any answer (seen rarely on a loaded
        // two-core machine); an answer of any status is never retried.
        let mut response = send()
            .or_else(|_| send())
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let status = response.status().as_u16();
        let text = response.body_mut().read_to_string().unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    pub(crate) fn ok(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Value {
        let (status, value) = self.call(method, path, token, body, None);
        assert!(
            (200..300).contains(&status),
            "{method} {path}: {status} {value}"
        );
        value
    }

    pub(crate) fn remember(&self, value: &str) {
        self.secrets.lock().unwrap().push(value.to_owned());
    }

    /// Adds and enrols a person; returns their password and TOTP secret.
    pub(crate) fn person(&self, name: &str, role: &str, vendor: Option<&str>) -> Person {
        self.person_with_email(name, role, vendor, None)
    }

    /// Like [`Server::person`], with an email address on file.
    pub(crate) fn person_with_email(
        &self,
        name: &str,
        role: &str,
        vendor: Option<&str>,
        email: Option<&str>,
    ) -> Person {
        self.person_made_by(&self.admin, name, role, vendor, email)
    }

    /// Like [`Server::person_with_email`], the account made by `maker` (who is then its
    /// creator, and approves none of its requests).
    pub(crate) fn person_made_by(
        &self,
        maker: &str,
        name: &str,
        role: &str,
        vendor: Option<&str>,
        email: Option<&str>,
    ) -> Person {
        let mut body = json!({ "name": name, "role": role, "email": email });
        if let Some(v) = vendor {
            body["vendor"] = json!(v);
        }
        let added = self.ok("POST", "/api/v1/people", Some(maker), Some(body));
        let code = added["enrolment_code"].as_str().unwrap().to_owned();
        let password = format!("pw-{name}-Zq81xK4mTr");
        let enrolled = self.ok(
            "POST",
            "/api/v1/auth/enroll",
            None,
            Some(json!({ "code": code, "password": password })),
        );
        let secret = enrolled["totp_secret"].as_str().unwrap().to_owned();
        let recovery: Vec<String> = enrolled["recovery_codes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap().to_owned())
            .collect();
        assert_eq!(recovery.len(), 10);
        assert!(
            enrolled["otpauth_uri"]
                .as_str()
                .unwrap()
                .starts_with("otpauth://totp/")
        );
        self.remember(&code);
        self.remember(&password);
        self.remember(&secret);
        recovery.iter().for_each(|c| self.remember(c));
        Person {
            name: name.to_owned(),
            password,
            totp: TotpSecret::from_base32(&secret).unwrap(),
            recovery,
        }
    }

    pub(crate) fn code(&self, person: &Person, offset_steps: i64) -> String {
        let step = (totp::step_at(self.clock.now().unix_secs()) as i64 + offset_steps) as u64;
        format!("{:06}", totp::code_at(&person.totp, step, 6))
    }

    /// Logs in (with the current TOTP code) and returns the session token.
    pub(crate) fn login(&self, person: &Person) -> String {
        let body = json!({ "user": person.name, "password": person.password, "totp": self.code(person, 0) });
        let token = self.ok("POST", "/api/v1/auth/login", None, Some(body))["token"]
            .as_str()
            .unwrap()
            .to_owned();
        // The next login must use a later step: codes are accepted once.
        self.clock.advance_secs(30);
        self.remember(&token);
        token
    }

    pub(crate) fn unseal(&self) {
        self.runtime
            .block_on(self.state.unseal_with_key(&self.key))
            .unwrap();
    }

    /// Every ledger entry so far, parsed, read from the store.
    pub(crate) fn ledger(&self) -> Vec<Value> {
        let store = self.state.store();
        let size = self.runtime.block_on(store.ledger_size()).unwrap();
        self.runtime
            .block_on(store.ledger_entries(0, size))
            .unwrap()
            .iter()
            .map(|(_, e)| serde_json::from_slice(e).unwrap())
            .collect()
    }

    /// The successful entries with this action and resource.
    pub(crate) fn recorded(&self, action: &str, resource: &str) -> Vec<Value> {
        self.ledger()
            .into_iter()
            .filter(|e| {
                e["action"] == action && e["resource"] == resource && e["outcome"] == "success"
            })
            .collect()
    }

    /// Checks the captured logs for every secret value this server handed out.
    pub(crate) fn assert_no_secret_logged(&self) {
        let logs = String::from_utf8_lossy(&logs().lock().unwrap()).into_owned();
        assert!(
            logs.contains("logged in") || logs.contains("enrolled"),
            "logs were not captured"
        );
        let size = self
            .runtime
            .block_on(self.state.store().ledger_size())
            .unwrap();
        let ledger = self
            .runtime
            .block_on(self.state.store().ledger_entries(0, size))
            .unwrap();
        let ledger: String = ledger
            .iter()
            .map(|(_, e)| String::from_utf8_lossy(e).into_owned())
            .collect();
        // One pass over each text for all the secrets at once.
        let secrets = aho_corasick::AhoCorasick::new(self.secrets.lock().unwrap().iter())
            .expect("an automaton over the secrets");
        assert!(
            !secrets.is_match(&logs),
            "a secret value appears in the logs"
        );
        assert!(
            !secrets.is_match(&ledger),
            "a secret value appears in the ledger"
        );
    }
}

pub(crate) struct Person {
    pub(crate) name: String,
    pub(crate) password: String,
    pub(crate) totp: TotpSecret,
    pub(crate) recovery: Vec<String>,
}

/// Adds an active vendor.
pub(crate) fn vendor(s: &Server, name: &str) {
    s.ok(
        "POST",
        "/api/v1/vendors",
        Some(&s.admin),
        Some(json!({ "name": name, "status": "active" })),
    );
}

/// Writes a secret `{"password": value}` as the admin (the value must never be logged).
pub(crate) fn write(s: &Server, path: &str, value: &str) {
    s.remember(value);
    s.ok(
        "PUT",
        &format!("/api/v1/secrets/data/{path}"),
        Some(&s.admin),
        Some(json!({ "data": { "password": value } })),
    );
}

/// A Vault KV v2 read of `path` wrapped for an hour: its `wrap_info` (the token remembered
/// as a secret).
pub(crate) fn wrapped_read(s: &Server, token: &str, path: &str) -> Value {
    wrapped(s, token, &format!("secret/data/{path}"))
}

/// A Vault `GET /v1/{route}` (`secret/metadata/F?list=true` for a listing) answered wrapped
/// for an hour: its `wrap_info` (the token remembered as a secret).
pub(crate) fn wrapped(s: &Server, token: &str, route: &str) -> Value {
    let request = ureq::http::Request::builder()
        .method("GET")
        .uri(format!("{}/v1/{route}", s.addr))
        .header("X-Vault-Token", token)
        .header("X-Vault-Wrap-TTL", "1h")
        .body(())
        .unwrap();
    let mut answer = s.agent.run(request).unwrap();
    assert_eq!(answer.status().as_u16(), 200);
    let body: Value = answer.body_mut().read_json().unwrap();
    s.remember(body["wrap_info"]["token"].as_str().unwrap());
    body["wrap_info"].clone()
}

/// A call's status and error code.
pub(crate) fn error(
    s: &Server,
    method: &str,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> (u16, String) {
    let (status, value) = s.call(method, path, Some(token), body, None);
    (
        status,
        value["error"]["code"].as_str().unwrap_or("").to_owned(),
    )
}
