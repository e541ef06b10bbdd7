//! Server configuration from three layers: a TOML file, `CHAPERONE_*` environment variables
//! and command-line flags. Flags win over the environment, which wins over the file. Every
//! value is validated at start; an error names the key and where its value came from.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use chaperone_core::net::Cidr;
use chaperone_core::policy::Role;
use chaperone_core::{MaxVersions, parse_duration};
use chaperone_server::{AuthSettings, NotifySettings, SmtpSettings, SmtpTls};
use chaperone_store::{DatabaseUrl, KvSettings};

/// Every configuration key, with its environment variable and meaning.
pub(crate) const KEYS: &[(&str, &str, &str)] = &[
    (
        "listen",
        "CHAPERONE_LISTEN",
        "address to listen on (default 127.0.0.1:8420)",
    ),
    (
        "tls_cert",
        "CHAPERONE_TLS_CERT",
        "PEM certificate chain (leaf first) to serve TLS with; reloaded on SIGHUP",
    ),
    (
        "tls_key",
        "CHAPERONE_TLS_KEY",
        "PEM private key of tls_cert",
    ),
    (
        "dangerously_allow_plaintext",
        "CHAPERONE_DANGEROUSLY_ALLOW_PLAINTEXT",
        "listen without TLS on a non-loopback address (behind a TLS-terminating proxy only)",
    ),
    (
        "request_timeout",
        "CHAPERONE_REQUEST_TIMEOUT",
        "time allowed for a whole request (default 60s)",
    ),
    (
        "header_read_timeout",
        "CHAPERONE_HEADER_READ_TIMEOUT",
        "time allowed for a request's headers and between keep-alive requests (default 10s)",
    ),
    (
        "max_connections",
        "CHAPERONE_MAX_CONNECTIONS",
        "connections open at once (default 4096)",
    ),
    (
        "max_connections_per_address",
        "CHAPERONE_MAX_CONNECTIONS_PER_ADDRESS",
        "connections open at once from one client address or IPv6 /64; trusted proxies are not limited (default 512)",
    ),
    (
        "metrics_listen",
        "CHAPERONE_METRICS_LISTEN",
        "a separate address serving Prometheus metrics at /metrics without a token",
    ),
    (
        "metrics_token",
        "CHAPERONE_METRICS_TOKEN",
        "bearer token for /metrics on the main listener (without it, /metrics is not served there)",
    ),
    (
        "log_format",
        "CHAPERONE_LOG_FORMAT",
        "text (default) or json",
    ),
    (
        "database_url",
        "CHAPERONE_DATABASE_URL",
        "sqlite://PATH or postgres://USER@HOST/DB",
    ),
    (
        "unseal_key_file",
        "CHAPERONE_UNSEAL_KEY_FILE",
        "unseal automatically from this key file (evaluation only)",
    ),
    (
        "max_versions",
        "CHAPERONE_MAX_VERSIONS",
        "versions kept per secret (default 10)",
    ),
    (
        "cas_required",
        "CHAPERONE_CAS_REQUIRED",
        "require check-and-set on every write",
    ),
    (
        "max_request_bytes",
        "CHAPERONE_MAX_REQUEST_BYTES",
        "largest request body (default 1 MiB)",
    ),
    (
        "notify_webhook",
        "CHAPERONE_NOTIFY_WEBHOOK",
        "URL notifications (requests, approvals, reminders) are POSTed to as JSON",
    ),
    (
        "notify_webhook_secret",
        "CHAPERONE_NOTIFY_WEBHOOK_SECRET",
        "key (at least 32 characters) the webhook's posts are signed with (X-Chaperone-Signature)",
    ),
    (
        "smtp_relay",
        "CHAPERONE_SMTP_RELAY",
        "host:port of an SMTP relay notifications are mailed through (plain SMTP: a local MTA)",
    ),
    (
        "smtp_from",
        "CHAPERONE_SMTP_FROM",
        "the sender address of notification mail (required with smtp_relay)",
    ),
    (
        "smtp_tls",
        "CHAPERONE_SMTP_TLS",
        "starttls, tls (implicit, port 465) or none (default: none to a relay on loopback, starttls otherwise)",
    ),
    (
        "smtp_ca_file",
        "CHAPERONE_SMTP_CA_FILE",
        "PEM certificates the relay's certificate is verified against (default: the Mozilla roots built in)",
    ),
    (
        "smtp_username",
        "CHAPERONE_SMTP_USERNAME",
        "user to log in to the relay as (AUTH PLAIN or LOGIN, over TLS only)",
    ),
    (
        "smtp_password",
        "CHAPERONE_SMTP_PASSWORD",
        "password of smtp_username",
    ),
    (
        "public_url",
        "CHAPERONE_PUBLIC_URL",
        "the address people reach this server at, for links in mail (https://...)",
    ),
    (
        "disable_after_inactive",
        "CHAPERONE_DISABLE_AFTER_INACTIVE",
        "disable contractor accounts that do not log in for this long (e.g. 90d)",
    ),
    (
        "sweep_interval",
        "CHAPERONE_SWEEP_INTERVAL",
        "how often reviews are closed and reminders sent (default 1m)",
    ),
    (
        "report_every",
        "CHAPERONE_REPORT_EVERY",
        "how often security is sent a report of the period just ended (default 7d; off: never)",
    ),
    (
        "watch_login_burst",
        "CHAPERONE_WATCH_LOGIN_BURST",
        "failed logins for an account or from an address within 10 minutes that raise an alert (default 10; 0: off)",
    ),
    (
        "watch_reads_per_hour",
        "CHAPERONE_WATCH_READS_PER_HOUR",
        "secret reads by one person within an hour above which an alert is raised (default 200; 0: off)",
    ),
    (
        "watch_business_hours",
        "CHAPERONE_WATCH_BUSINESS_HOURS",
        "when contractors are expected to read secrets (default \"Mon-Fri 07:00-19:00 +00:00\"; off: no check)",
    ),
    (
        "log_level",
        "CHAPERONE_LOG",
        "log filter, e.g. info or chaperone_server=debug",
    ),
    (
        "mfa_roles",
        "CHAPERONE_MFA_ROLES",
        "roles that need TOTP at login (default: every role)",
    ),
    (
        "dangerously_allow_contractors_without_mfa",
        "CHAPERONE_DANGEROUSLY_ALLOW_CONTRACTORS_WITHOUT_MFA",
        "needed to leave contractor out of mfa_roles",
    ),
    (
        "lockout_threshold",
        "CHAPERONE_LOCKOUT_THRESHOLD",
        "failures (per account, per address) before logins are refused (default 10)",
    ),
    (
        "lockout_window",
        "CHAPERONE_LOCKOUT_WINDOW",
        "window failures count in (default 15m)",
    ),
    (
        "auth_failure_delay_ms",
        "CHAPERONE_AUTH_FAILURE_DELAY_MS",
        "delay after a first failed login, doubling per failure (default 250)",
    ),
    (
        "session_ttl",
        "CHAPERONE_SESSION_TTL",
        "login session lifetime (default 12h)",
    ),
    (
        "session_idle",
        "CHAPERONE_SESSION_IDLE",
        "a login session unused this long ends (default 30m, at least 2m)",
    ),
    (
        "step_up_window",
        "CHAPERONE_STEP_UP_WINDOW",
        "how long a TOTP step-up allows confidential reads (default 15m)",
    ),
    (
        "trusted_proxies",
        "CHAPERONE_TRUSTED_PROXIES",
        "CIDRs of proxies whose X-Forwarded-For is believed",
    ),
    (
        "allowed_hosts",
        "CHAPERONE_ALLOWED_HOSTS",
        "host names (comma-separated) a listener without TLS answers to, besides IP addresses, localhost and public_url's host",
    ),
];

/// Keys whose values are secrets, never repeated in an error. A webhook URL often carries
/// its receiver's credential in its path (Slack, Teams), so it is one.
const SECRET_KEYS: &[&str] = &[
    "metrics_token",
    "notify_webhook",
    "notify_webhook_secret",
    "smtp_password",
];

/// Where a value came from, for error messages.
#[derive(Clone, Debug)]
pub(crate) enum Source {
    File(PathBuf),
    Env(&'static str),
    Flag(&'static str),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::File(path) => write!(f, "config file {}", path.display()),
            Source::Env(var) => write!(f, "environment variable {var}"),
            Source::Flag(flag) => write!(f, "flag {flag}"),
        }
    }
}

/// Raw values by key, before validation. Its `Debug` shows where each key came from, never
/// a value (some are secrets).
#[derive(Default)]
pub(crate) struct Layers(
    BTreeMap<&'static str, (String, Source)>,
    /// The secrets read from config files, by file: kept apart from the values in force, as
    /// a file holds its secret even when the environment or a flag overrides it.
    Vec<(PathBuf, &'static str)>,
);

/// Whether `key` with `text` is a secret: a key of [`SECRET_KEYS`], or a database URL with
/// a password.
fn holds_secret(key: &str, text: &str) -> bool {
    SECRET_KEYS.contains(&key)
        || (key == "database_url"
            && DatabaseUrl::parse(text.trim()).is_ok_and(|url| url.holds_password()))
}

impl std::fmt::Debug for Layers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map()
            .entries(self.0.iter().map(|(key, (_, source))| (key, source)))
            .finish()
    }
}

impl Layers {
    /// Reads the file (if any), then the environment, then applies `flags`.
    pub(crate) fn load(
        file: Option<&Path>,
        flags: &[(&'static str, &'static str, Option<String>)],
    ) -> anyhow::Result<Self> {
        let mut layers = Self::default();
        if let Some(path) = file {
            layers.read_file(path)?;
        }
        for &(key, var, _) in KEYS {
            if let Ok(value) = std::env::var(var) {
                layers.0.insert(key, (value, Source::Env(var)));
            }
        }
        for (key, flag, value) in flags {
            if let Some(value) = value {
                layers.0.insert(key, (value.clone(), Source::Flag(flag)));
            }
        }
        Ok(layers)
    }

    fn read_file(&mut self, path: &Path) -> anyhow::Result<()> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config file {}", path.display()))?;
        // Security decision: the TOML parser's own error text quotes the offending line,
        // which may be `notify_webhook_secret = "...` with its value; only where, and the
        // parser's short message, are shown.
        let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
            let at = e.span().map_or(0, |span| span.start);
            let before = &text[..at.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.len() - before.rfind('\n').map_or(0, |n| n + 1) + 1;
            anyhow::anyhow!(
                "config file {} is not valid TOML at line {line}, column {column}: {}",
                path.display(),
                e.message().lines().next().unwrap_or("syntax error")
            )
        })?;
        for (name, value) in table {
            let Some(&(key, _, _)) = KEYS.iter().find(|(k, _, _)| *k == name) else {
                let known: Vec<&str> = KEYS.iter().map(|(k, _, _)| *k).collect();
                bail!(
                    "config file {}: unknown key `{name}` (known keys: {})",
                    path.display(),
                    known.join(", ")
                );
            };
            let text = match value {
                toml::Value::String(s) => s,
                toml::Value::Integer(i) => i.to_string(),
                toml::Value::Boolean(b) => b.to_string(),
                other => bail!(
                    "config key `{key}` in {}: expected a string, number or boolean, found {}",
                    path.display(),
                    other.type_str()
                ),
            };
            if holds_secret(key, &text) {
                self.1.push((path.to_owned(), key));
            }
            self.0.insert(key, (text, Source::File(path.to_owned())));
        }
        Ok(())
    }

    /// The config files that hold a secret (a key of [`SECRET_KEYS`], or a database URL
    /// with a password), each with the keys that make it one.
    pub(crate) fn files_holding_secrets(&self) -> BTreeMap<&Path, Vec<&'static str>> {
        let mut files: BTreeMap<&Path, Vec<&'static str>> = BTreeMap::new();
        for (path, key) in &self.1 {
            files.entry(path.as_path()).or_default().push(key);
        }
        files
    }

    fn parse<T>(
        &self,
        key: &'static str,
        expected: &str,
        parse: impl FnOnce(&str) -> Option<T>,
    ) -> anyhow::Result<Option<T>> {
        let Some((text, source)) = self.0.get(key) else {
            return Ok(None);
        };
        // A password is taken as written: a space it starts or ends with is its own.
        let text_in = if key == "smtp_password" {
            text.as_str()
        } else {
            text.trim()
        };
        match parse(text_in) {
            Some(value) => Ok(Some(value)),
            // A secret's value is never repeated in an error (errors reach terminals and logs).
            None if SECRET_KEYS.contains(&key) => {
                bail!("config key `{key}` (from {source}): the value is not {expected}")
            }
            None => bail!("config key `{key}` (from {source}): {text:?} is not {expected}"),
        }
    }

    /// The SMTP settings for `relay`: its TLS, trust anchors and login.
    ///
    /// Security decision: mail is sent over TLS unless the relay is on loopback or plain
    /// SMTP is asked for (`smtp_tls = "none"`, for a relay on a private network): mail names
    /// people, vendors, paths and one-time links. A password is sent only over TLS.
    fn smtp(&self, relay: String, from: String) -> anyhow::Result<SmtpSettings> {
        let host = chaperone_server::host_name(&relay);
        let loopback = host.eq_ignore_ascii_case("localhost")
            || host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback());
        let tls = self
            .parse("smtp_tls", "starttls, tls or none", |s| match s {
                "starttls" => Some(SmtpTls::StartTls),
                "tls" => Some(SmtpTls::Implicit),
                "none" => Some(SmtpTls::None),
                _ => None,
            })?
            .unwrap_or(if loopback {
                SmtpTls::None
            } else {
                SmtpTls::StartTls
            });
        let ca_file = self.parse("smtp_ca_file", "a path", |s| Some(PathBuf::from(s)))?;
        let ca_pem = match &ca_file {
            Some(path) if tls == SmtpTls::None => {
                bail!(
                    "config key `smtp_ca_file` ({}) is for TLS, but smtp_tls is none",
                    path.display()
                )
            }
            Some(path) => Some(
                std::fs::read(path)
                    .with_context(|| format!("cannot read smtp_ca_file {}", path.display()))?,
            ),
            None => None,
        };
        let mut smtp = SmtpSettings::new(relay, from)
            .with_tls(tls, ca_pem.as_deref())
            .map_err(|e| match &ca_file {
                Some(path) if !e.contains("host name") => {
                    anyhow::anyhow!("smtp_ca_file {}: {e}", path.display())
                }
                _ => anyhow::anyhow!("config key `smtp_relay`: {e}"),
            })?;
        let username = self.parse("smtp_username", "a user name", |s| {
            (!s.is_empty() && !s.contains(['\0', '\r', '\n'])).then(|| s.to_owned())
        })?;
        let password = self.parse("smtp_password", "a password", |s| {
            (!s.is_empty() && !s.contains('\0'))
                .then(|| chaperone_server::BearerToken::new(s.to_owned()))
        })?;
        match (username, password) {
            (Some(_), Some(_)) if tls == SmtpTls::None => bail!(
                "config keys `smtp_username` and `smtp_password`: a password is sent to the \
                 relay only over TLS; set smtp_tls to starttls or tls"
            ),
            (Some(username), Some(password)) => smtp = smtp.with_login(username, password),
            (None, None) => {}
            _ => bail!("config keys `smtp_username` and `smtp_password` go together"),
        }
        Ok(smtp)
    }

    /// Validates every key into a [`Config`].
    pub(crate) fn validate(&self) -> anyhow::Result<Config> {
        let listen = self
            .parse("listen", "a socket address like 127.0.0.1:8420", |s| {
                s.parse().ok()
            })?
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8420)));
        let database_url = match self.0.get("database_url") {
            None => bail!(
                "config key `database_url` is required: set it in the config file, \
                 CHAPERONE_DATABASE_URL or --database-url (sqlite://PATH or postgres://...)"
            ),
            Some((text, source)) => DatabaseUrl::parse(text.trim())
                .map_err(|e| anyhow::anyhow!("config key `database_url` (from {source}): {e}"))?,
        };
        let unseal_key_file = self.parse("unseal_key_file", "a path", |s| {
            (!s.is_empty()).then(|| PathBuf::from(s))
        })?;
        let max_versions = self
            .parse("max_versions", "a number from 1 to 10000", |s| {
                s.parse().ok().and_then(|n| MaxVersions::new(n).ok())
            })?
            .unwrap_or_default();
        let cas_required = self
            .parse("cas_required", "true or false", |s| s.parse().ok())?
            .unwrap_or(false);
        let max_request_bytes = self
            .parse(
                "max_request_bytes",
                "a number of bytes from 1024 to 67108864",
                |s| {
                    s.parse()
                        .ok()
                        .filter(|n| (1024..=64 * 1024 * 1024).contains(n))
                },
            )?
            .unwrap_or(1024 * 1024);
        let log_level = self
            .parse("log_level", "a log filter like `info`", |s| {
                tracing_subscriber::EnvFilter::try_new(s)
                    .ok()
                    .map(|_| s.to_owned())
            })?
            .unwrap_or_else(|| "info".to_owned());
        let mut auth = AuthSettings::default();
        if let Some(roles) = self.parse("mfa_roles", "a comma-separated list of roles", |s| {
            s.split(',')
                .map(str::trim)
                .filter(|r| !r.is_empty())
                .map(|r| r.parse::<Role>().ok())
                .collect::<Option<Vec<_>>>()
        })? {
            auth.mfa_roles = roles;
        }
        let dangerous = self
            .parse(
                "dangerously_allow_contractors_without_mfa",
                "true or false",
                |s| s.parse().ok(),
            )?
            .unwrap_or(false);
        if !auth.mfa_roles.contains(&Role::Contractor) && !dangerous {
            bail!(
                "config key `mfa_roles` leaves out `contractor`; contractors without MFA also need \
                 dangerously_allow_contractors_without_mfa = true"
            );
        }
        if let Some(n) = self.parse("lockout_threshold", "a number from 1 to 1000", |s| {
            s.parse().ok().filter(|n| (1..=1000).contains(n))
        })? {
            auth.lockout_threshold = n;
        }
        let duration = |key| {
            self.parse(key, "a duration like 15m or 12h", |s| {
                parse_duration(s).ok()
            })
        };
        if let Some(secs) = duration("lockout_window")? {
            auth.lockout_window_secs = secs;
        }
        if let Some(secs) = duration("session_ttl")? {
            auth.session_ttl_secs = secs;
        }
        // Use is recorded to the minute, so a shorter idle limit would end sessions in use.
        if let Some(secs) = self.parse("session_idle", "a duration of 2m or more", |s| {
            parse_duration(s).ok().filter(|&secs| secs >= 120)
        })? {
            auth.session_idle_secs = secs;
        }
        if let Some(secs) = duration("step_up_window")? {
            auth.step_up_secs = secs;
        }
        if let Some(ms) = self.parse(
            "auth_failure_delay_ms",
            "a number of milliseconds up to 10000",
            |s| s.parse().ok().filter(|&n| n <= 10_000),
        )? {
            auth.failure_delay_ms = ms;
        }
        if let Some(proxies) = self.parse(
            "trusted_proxies",
            "comma-separated CIDRs like 10.0.0.5/32,10.0.1.0/28",
            |s| {
                s.split(',')
                    .map(str::trim)
                    .filter(|p| !p.is_empty())
                    .map(|p| p.parse::<Cidr>().ok())
                    .collect::<Option<Vec<_>>>()
            },
        )? {
            auth.trusted_proxies = proxies;
        }
        let mut notify = NotifySettings {
            // Security decision: posts carry names, addresses and what happened, and the URL
            // may carry a credential: plain HTTP only to this machine (a local relay).
            webhook_url: self.parse(
                "notify_webhook",
                "an https:// URL (http:// only to this machine)",
                |s| {
                    (s.starts_with("https://")
                        || (s.starts_with("http://") && !crate::client::plain_http_off_loopback(s)))
                    .then(|| s.to_owned())
                },
            )?,
            webhook_secret: self.parse(
                "notify_webhook_secret",
                "a key of at least 32 characters",
                |s| (s.len() >= 32).then(|| chaperone_server::BearerToken::new(s.to_owned())),
            )?,
            ..NotifySettings::default()
        };
        let relay = self.parse("smtp_relay", "host:port", |s| {
            s.rsplit_once(':')
                .filter(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok())
                .map(|_| s.to_owned())
        })?;
        let from = self.parse("smtp_from", "an address like chaperone@example.com", |s| {
            chaperone_server::valid_mail_address(s).then(|| s.to_owned())
        })?;
        notify.smtp = match (relay, from) {
            (Some(relay), Some(from)) => Some(self.smtp(relay, from)?),
            (None, None) => {
                for key in ["smtp_tls", "smtp_ca_file", "smtp_username", "smtp_password"] {
                    if let Some((_, source)) = self.0.get(key) {
                        bail!("config key `{key}` (from {source}) needs `smtp_relay`");
                    }
                }
                None
            }
            _ => bail!("config keys `smtp_relay` and `smtp_from` go together"),
        };
        notify.public_url = self.parse("public_url", "an http:// or https:// URL", |s| {
            (s.starts_with("http://") || s.starts_with("https://"))
                .then(|| s.trim_end_matches('/').to_owned())
        })?;
        if let Some(secs) = duration("disable_after_inactive")? {
            notify.disable_after_inactive =
                Some(std::time::Duration::from_secs(secs.unsigned_abs()));
        }
        if let Some(secs) = duration("sweep_interval")? {
            notify.sweep_interval = std::time::Duration::from_secs(secs.unsigned_abs());
        }
        // Reports are on unless turned off; the library's default (tests, embedding) is off.
        notify.report_every = Some(std::time::Duration::from_secs(7 * 86_400));
        if let Some(every) = self.parse(
            "report_every",
            "a duration from 1h to 366d, or off",
            |s| match s {
                "off" => Some(None),
                text => chaperone_core::parse_duration(text)
                    .ok()
                    .filter(|secs| (3600..=366 * 86_400).contains(secs))
                    .map(|secs| Some(std::time::Duration::from_secs(secs.unsigned_abs()))),
            },
        )? {
            notify.report_every = every;
        }
        if let Some(n) = self.parse("watch_login_burst", "a number from 0 to 100000", |s| {
            s.parse::<u32>().ok().filter(|n| *n <= 100_000)
        })? {
            notify.watch.login_burst = n;
        }
        if let Some(n) = self.parse("watch_reads_per_hour", "a number from 0 to 10000000", |s| {
            s.parse::<u32>().ok().filter(|n| *n <= 10_000_000)
        })? {
            notify.watch.reads_per_hour = n;
        }
        if let Some(hours) = self.parse(
            "watch_business_hours",
            "business hours like \"Mon-Fri 07:00-19:00 +01:00\", or off",
            |s| match s {
                "off" => Some(None),
                hours => hours
                    .parse::<chaperone_server::BusinessHours>()
                    .ok()
                    .map(Some),
            },
        )? {
            notify.watch.business_hours = hours;
        }
        let tls_cert = self.parse("tls_cert", "a path", |s| {
            (!s.is_empty()).then(|| PathBuf::from(s))
        })?;
        let tls_key = self.parse("tls_key", "a path", |s| {
            (!s.is_empty()).then(|| PathBuf::from(s))
        })?;
        let tls = match (tls_cert, tls_key) {
            (Some(cert), Some(key)) => Some((cert, key)),
            (None, None) => None,
            _ => bail!("config keys `tls_cert` and `tls_key` go together"),
        };
        let allow_plaintext = self
            .parse("dangerously_allow_plaintext", "true or false", |s| {
                s.parse().ok()
            })?
            .unwrap_or(false);
        check_transport(listen, tls.is_some(), allow_plaintext)?;
        let mut serve = chaperone_server::ServeOptions::default();
        if let Some(secs) = duration("request_timeout")? {
            serve.request_timeout = positive(secs, "request_timeout")?;
        }
        if let Some(secs) = duration("header_read_timeout")? {
            serve.header_read_timeout = positive(secs, "header_read_timeout")?;
        }
        if let Some(n) = self.parse("max_connections", "a number from 1 to 1000000", |s| {
            s.parse().ok().filter(|n| (1..=1_000_000).contains(n))
        })? {
            serve.max_connections = n;
        }
        if let Some(n) = self.parse(
            "max_connections_per_address",
            "a number from 1 to 1000000",
            |s| s.parse().ok().filter(|n| (1..=1_000_000).contains(n)),
        )? {
            serve.max_connections_per_address = n;
        }

        let metrics_listen = self.parse(
            "metrics_listen",
            "a socket address like 127.0.0.1:9420",
            |s| s.parse().ok(),
        )?;
        let metrics_token =
            self.parse("metrics_token", "a token of at least 16 characters", |s| {
                (s.len() >= 16).then(|| chaperone_server::BearerToken::new(s.to_owned()))
            })?;
        let log_format = self
            .parse("log_format", "text or json", |s| match s {
                "text" => Some(LogFormat::Text),
                "json" => Some(LogFormat::Json),
                _ => None,
            })?
            .unwrap_or_default();
        let mut allowed_hosts = self
            .parse(
                "allowed_hosts",
                "host names separated by commas, like vault.example.com",
                |s| {
                    s.split(',')
                        .map(|h| h.trim().trim_end_matches('.').to_ascii_lowercase())
                        .map(|h| {
                            (!h.is_empty()
                                && h.len() <= 253
                                && h.chars()
                                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-')))
                            .then_some(h)
                        })
                        .collect::<Option<Vec<String>>>()
                },
            )?
            .unwrap_or_default();
        if let Some(host) = notify
            .public_url
            .as_deref()
            .and_then(|url| url.split_once("://"))
            .and_then(|(_, rest)| rest.split(['/', '?', '#']).next())
        {
            let host = host.rsplit_once('@').map_or(host, |(_, host)| host);
            allowed_hosts.push(chaperone_server::host_name(host));
        }
        Ok(Config {
            allowed_hosts,
            tls,
            serve,
            metrics_listen,
            metrics_token,
            log_format,
            auth,
            notify,
            listen,
            database_url,
            unseal_key_file,
            kv: KvSettings {
                max_versions,
                cas_required,
            },
            max_request_bytes,
            log_level,
        })
    }
}

/// How log lines are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

/// Refuses plaintext HTTP on an address other hosts can reach: tokens and secrets would
/// cross the network in the clear. A TLS-terminating proxy on the same host is the one
/// reason to allow it, and it must be said explicitly.
pub(crate) fn check_transport(
    listen: SocketAddr,
    tls: bool,
    allow_plaintext: bool,
) -> anyhow::Result<()> {
    if !tls && !listen.ip().is_loopback() && !allow_plaintext {
        bail!(
            "refusing to listen on {listen} without TLS: set tls_cert and tls_key (or use \
             `chaperone up --tls`), listen on 127.0.0.1, or, behind a TLS-terminating proxy, \
             set dangerously_allow_plaintext = true"
        );
    }
    Ok(())
}

fn positive(secs: i64, key: &str) -> anyhow::Result<std::time::Duration> {
    if secs <= 0 {
        bail!("config key `{key}` must be longer than zero");
    }
    Ok(std::time::Duration::from_secs(secs.unsigned_abs()))
}

/// A validated configuration.
#[derive(Debug)]
pub(crate) struct Config {
    pub(crate) listen: SocketAddr,
    pub(crate) tls: Option<(PathBuf, PathBuf)>,
    pub(crate) serve: chaperone_server::ServeOptions,
    pub(crate) metrics_listen: Option<SocketAddr>,
    pub(crate) metrics_token: Option<chaperone_server::BearerToken>,
    pub(crate) log_format: LogFormat,
    pub(crate) database_url: DatabaseUrl,
    pub(crate) unseal_key_file: Option<PathBuf>,
    pub(crate) kv: KvSettings,
    pub(crate) max_request_bytes: usize,
    pub(crate) log_level: String,
    pub(crate) auth: AuthSettings,
    pub(crate) notify: NotifySettings,
    /// The host names a listener without TLS answers to besides IP addresses and
    /// `localhost`: `allowed_hosts` and `public_url`'s host.
    pub(crate) allowed_hosts: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layers(entries: &[(&'static str, &str, Source)]) -> Layers {
        let in_files = entries
            .iter()
            .filter(|(k, v, _)| holds_secret(k, v))
            .filter_map(|(k, _, s)| match s {
                Source::File(path) => Some((path.clone(), *k)),
                _ => None,
            })
            .collect();
        Layers(
            entries
                .iter()
                .map(|(k, v, s)| (*k, (v.to_string(), s.clone())))
                .collect(),
            in_files,
        )
    }

    #[test]
    fn a_toml_error_says_where_without_quoting_the_line() {
        let dir = std::env::temp_dir().join(format!("chaperone-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("bad.toml");
        std::fs::write(
            &path,
            "listen = \"127.0.0.1:8420\"\nnotify_webhook_secret = \"whsec-Kq81-unterminated\n",
        )
        .unwrap();
        let error = format!("{:#}", Layers::default().read_file(&path).unwrap_err());
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(error.contains("line 2"), "{error}");
        assert!(!error.contains("whsec-Kq81"), "{error}");
    }

    #[test]
    fn webhooks_go_over_https_or_to_this_machine() {
        let base = (
            "database_url",
            "sqlite://x.db",
            Source::Flag("--database-url"),
        );
        let with = |url: &str| {
            layers(&[
                base.clone(),
                (
                    "notify_webhook",
                    url,
                    Source::Env("CHAPERONE_NOTIFY_WEBHOOK"),
                ),
            ])
            .validate()
        };
        assert!(with("https://hooks.example.com/T0/B0/XXXX").is_ok());
        assert!(with("http://127.0.0.1:9000/hook").is_ok());
        let error = with("http://hooks.example.com/T0/B0/XXXX")
            .unwrap_err()
            .to_string();
        assert!(error.contains("notify_webhook"), "{error}");
        assert!(!error.contains("XXXX"), "the URL is never echoed: {error}");
    }

    #[test]
    fn mail_goes_over_tls_off_loopback_and_a_password_only_over_tls() {
        let with = |entries: &[(&'static str, &str)]| {
            let mut all = vec![
                (
                    "database_url",
                    "sqlite://x.db",
                    Source::Flag("--database-url"),
                ),
                ("smtp_from", "chaperone@example.com", Source::Env("X")),
            ];
            all.extend(entries.iter().map(|&(k, v)| (k, v, Source::Env("X"))));
            layers(&all).validate().map(|c| c.notify.smtp.unwrap())
        };
        let tls = |relay: &str| with(&[("smtp_relay", relay)]).unwrap().tls();
        assert_eq!(tls("127.0.0.1:25"), SmtpTls::None);
        assert_eq!(tls("localhost:25"), SmtpTls::None);
        assert_eq!(tls("[::1]:25"), SmtpTls::None);
        assert_eq!(tls("10.0.0.5:25"), SmtpTls::StartTls);
        assert_eq!(tls("smtp.example.com:587"), SmtpTls::StartTls);
        let relay = ("smtp_relay", "smtp.example.com:587");
        let set = with(&[relay, ("smtp_tls", "tls")]).unwrap();
        assert_eq!(set.tls(), SmtpTls::Implicit);
        let plain = with(&[relay, ("smtp_tls", "none")]).unwrap();
        assert_eq!(plain.tls(), SmtpTls::None);
        let login = [
            ("smtp_username", "mailer"),
            ("smtp_password", "Kq81-s3cret"),
        ];
        assert!(with(&[relay, login[0], login[1]]).is_ok());
        assert!(with(&[relay, login[0], ("smtp_password", " spaced out ")]).is_ok());
        let error = with(&[relay, ("smtp_tls", "none"), login[0], login[1]])
            .unwrap_err()
            .to_string();
        assert!(error.contains("only over TLS"), "{error}");
        assert!(!error.contains("Kq81"), "{error}");
        let error = with(&[relay, login[1]]).unwrap_err().to_string();
        assert!(error.contains("go together"), "{error}");
        let error = with(&[relay, ("smtp_password", "")])
            .unwrap_err()
            .to_string();
        assert!(error.contains("smtp_password") && error.contains("the value is not"));
        let error = layers(&[
            ("database_url", "sqlite://x.db", Source::Env("X")),
            ("smtp_username", "mailer", Source::Env("X")),
        ])
        .validate()
        .unwrap_err()
        .to_string();
        assert!(error.contains("needs `smtp_relay`"), "{error}");
        let error = with(&[relay, ("smtp_tls", "maybe")])
            .unwrap_err()
            .to_string();
        assert!(error.contains("starttls, tls or none"), "{error}");
        // A CA file: read at start, and only for TLS.
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        let ca_path = ca.to_str().unwrap();
        let error = with(&[relay, ("smtp_ca_file", ca_path)])
            .unwrap_err()
            .to_string();
        assert!(error.contains("cannot read smtp_ca_file"), "{error}");
        std::fs::write(&ca, "not a certificate\n").unwrap();
        let error = with(&[relay, ("smtp_ca_file", ca_path)])
            .unwrap_err()
            .to_string();
        assert!(error.contains("holds no certificate"), "{error}");
        let key = rcgen::generate_simple_self_signed(vec!["smtp.example.com".to_owned()]).unwrap();
        std::fs::write(&ca, key.cert.pem()).unwrap();
        assert!(with(&[relay, ("smtp_ca_file", ca_path)]).is_ok());
        let error = with(&[relay, ("smtp_tls", "none"), ("smtp_ca_file", ca_path)])
            .unwrap_err()
            .to_string();
        assert!(error.contains("is for TLS"), "{error}");
    }

    #[test]
    fn allowed_hosts_hold_the_configured_names_and_public_urls_host() {
        let with = |entries: &[(&'static str, &str)]| {
            let mut all = vec![(
                "database_url",
                "sqlite://x.db",
                Source::Flag("--database-url"),
            )];
            all.extend(entries.iter().map(|&(k, v)| (k, v, Source::Env("X"))));
            layers(&all).validate().map(|c| c.allowed_hosts)
        };
        assert!(with(&[]).unwrap().is_empty());
        assert_eq!(
            with(&[
                ("allowed_hosts", "Vault.Example.com, ci.internal."),
                ("public_url", "https://user@[2001:db8::1]:8443/base"),
            ])
            .unwrap(),
            ["vault.example.com", "ci.internal", "2001:db8::1"]
        );
        assert_eq!(
            with(&[("public_url", "https://chaperone.example.com:8443")]).unwrap(),
            ["chaperone.example.com"]
        );
        for bad in ["", "a,,b", "evil.example/x", "white space"] {
            let error = with(&[("allowed_hosts", bad)]).unwrap_err().to_string();
            assert!(error.contains("allowed_hosts"), "{bad}: {error}");
        }
    }

    #[test]
    fn files_holding_secrets_are_named_with_their_keys() {
        let file = || Source::File("c.toml".into());
        let l = layers(&[
            ("database_url", "postgres://app:pw@db/chaperone", file()),
            ("notify_webhook_secret", "whsec-x", file()),
            (
                "metrics_token",
                "0123456789abcdef",
                Source::Env("CHAPERONE_METRICS_TOKEN"),
            ),
            (
                "listen",
                "127.0.0.1:8420",
                Source::File("other.toml".into()),
            ),
        ]);
        let files = l.files_holding_secrets();
        assert_eq!(
            files.into_iter().collect::<Vec<_>>(),
            [(
                Path::new("c.toml"),
                vec!["database_url", "notify_webhook_secret"]
            )]
        );
        for url in ["postgres://app@db/chaperone", "sqlite://x.db"] {
            let l = layers(&[("database_url", url, file())]);
            assert!(l.files_holding_secrets().is_empty(), "{url}");
        }
        let l = layers(&[("database_url", "postgres://app@db/c?password=x", file())]);
        assert_eq!(l.files_holding_secrets().len(), 1);
        // A file's secret counts even when the environment overrides it.
        let l = layers(&[
            ("metrics_token", "0123456789abcdef", file()),
            (
                "metrics_token",
                "fedcba9876543210",
                Source::Env("CHAPERONE_METRICS_TOKEN"),
            ),
        ]);
        assert_eq!(l.files_holding_secrets().len(), 1);
    }

    #[test]
    fn errors_name_the_key_and_its_source() {
        let l = layers(&[
            (
                "database_url",
                "sqlite://x.db",
                Source::Flag("--database-url"),
            ),
            ("listen", "nowhere", Source::Env("CHAPERONE_LISTEN")),
        ]);
        let err = l.validate().unwrap_err().to_string();
        assert!(
            err.contains("`listen`") && err.contains("CHAPERONE_LISTEN"),
            "{err}"
        );
        let l = layers(&[("database_url", "mysql://x", Source::File("c.toml".into()))]);
        let err = l.validate().unwrap_err().to_string();
        assert!(
            err.contains("`database_url`") && err.contains("c.toml"),
            "{err}"
        );
        let err = Layers::default().validate().unwrap_err().to_string();
        assert!(err.contains("`database_url` is required"), "{err}");
        let l = layers(&[
            (
                "database_url",
                "sqlite://x.db",
                Source::Flag("--database-url"),
            ),
            ("max_versions", "0", Source::Env("CHAPERONE_MAX_VERSIONS")),
        ]);
        assert!(
            l.validate()
                .unwrap_err()
                .to_string()
                .contains("`max_versions`")
        );
    }

    #[test]
    fn contractors_keep_mfa_unless_dangerously_told_otherwise() {
        let base = (
            "database_url",
            "sqlite://x.db",
            Source::Flag("--database-url"),
        );
        let mfa = |roles| ("mfa_roles", roles, Source::Env("CHAPERONE_MFA_ROLES"));
        let err = layers(&[base.clone(), mfa("admin,security")])
            .validate()
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("dangerously_allow_contractors_without_mfa"),
            "{err}"
        );
        let dangerous = (
            "dangerously_allow_contractors_without_mfa",
            "true",
            Source::Env("X"),
        );
        let config = layers(&[base.clone(), mfa("admin"), dangerous])
            .validate()
            .unwrap();
        assert_eq!(config.auth.mfa_roles, [Role::Admin]);
        let err = layers(&[base.clone(), mfa("admin,root")])
            .validate()
            .unwrap_err()
            .to_string();
        assert!(err.contains("`mfa_roles`"), "{err}");
        let proxies = (
            "trusted_proxies",
            "10.0.0.0/8, ::1",
            Source::Env("CHAPERONE_TRUSTED_PROXIES"),
        );
        let config = layers(&[base.clone(), proxies]).validate().unwrap();
        assert_eq!(config.auth.trusted_proxies.len(), 2);
        assert_eq!(config.serve.max_connections_per_address, 512);
        let per_address = (
            "max_connections_per_address",
            "64",
            Source::Env("CHAPERONE_MAX_CONNECTIONS_PER_ADDRESS"),
        );
        let config = layers(&[base.clone(), per_address]).validate().unwrap();
        assert_eq!(config.serve.max_connections_per_address, 64);
        let zero = (
            "max_connections_per_address",
            "0",
            Source::Env("CHAPERONE_MAX_CONNECTIONS_PER_ADDRESS"),
        );
        let err = layers(&[base, zero]).validate().unwrap_err().to_string();
        assert!(err.contains("max_connections_per_address"), "{err}");
    }

    #[test]
    fn the_watch_is_on_by_default_and_each_check_can_be_turned_off() {
        let base = (
            "database_url",
            "sqlite://x.db",
            Source::Flag("--database-url"),
        );
        let config = layers(std::slice::from_ref(&base)).validate().unwrap();
        let watch = &config.notify.watch;
        assert_eq!((watch.login_burst, watch.reads_per_hour), (10, 200));
        assert!(watch.business_hours.is_some());
        let key = |k, v| (k, v, Source::Env("X"));
        let config = layers(&[
            base.clone(),
            key("watch_login_burst", "0"),
            key("watch_reads_per_hour", "0"),
            key("watch_business_hours", "off"),
        ])
        .validate()
        .unwrap();
        let watch = &config.notify.watch;
        assert_eq!((watch.login_burst, watch.reads_per_hour), (0, 0));
        assert!(watch.business_hours.is_none());
        let config = layers(&[
            base.clone(),
            key("watch_business_hours", "Mon-Sat 06:00-22:00 +02:00"),
        ])
        .validate()
        .unwrap();
        assert_eq!(
            config.notify.watch.business_hours,
            Some("Mon-Sat 06:00-22:00 +02:00".parse().unwrap())
        );
        let err = layers(&[base.clone(), key("watch_business_hours", "9 to 5")])
            .validate()
            .unwrap_err()
            .to_string();
        assert!(err.contains("`watch_business_hours`"), "{err}");
        // Reports: weekly unless told, never more often than hourly nor rarer than yearly.
        let every = |value| {
            layers(&[base.clone(), key("report_every", value)])
                .validate()
                .map(|c| c.notify.report_every.map(|d| d.as_secs()))
        };
        assert_eq!(
            layers(std::slice::from_ref(&base))
                .validate()
                .unwrap()
                .notify
                .report_every
                .map(|d| d.as_secs()),
            Some(7 * 86_400)
        );
        assert_eq!(every("off").unwrap(), None);
        assert_eq!(every("1d").unwrap(), Some(86_400));
        for bad in ["30m", "400d", "weekly"] {
            assert!(every(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sessions_idle_out_after_half_an_hour_unless_told_and_never_under_two_minutes() {
        let base = (
            "database_url",
            "sqlite://x.db",
            Source::Flag("--database-url"),
        );
        let idle = |value| ("session_idle", value, Source::Env("CHAPERONE_SESSION_IDLE"));
        let config = layers(std::slice::from_ref(&base)).validate().unwrap();
        assert_eq!(config.auth.session_idle_secs, 30 * 60);
        let config = layers(&[base.clone(), idle("2h")]).validate().unwrap();
        assert_eq!(config.auth.session_idle_secs, 2 * 3600);
        let err = layers(&[base, idle("90s")])
            .validate()
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("`session_idle`") && err.contains("2m or more"),
            "{err}"
        );
    }

    #[test]
    fn file_then_env_then_flags() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(
            &file,
            "listen = \"127.0.0.1:1\"\ndatabase_url = \"sqlite://a.db\"\nmax_versions = 3\n",
        )
        .unwrap();
        let mut l = Layers::default();
        l.read_file(&file).unwrap();
        let config = l.validate().unwrap();
        assert_eq!(config.listen.port(), 1);
        assert_eq!(config.kv.max_versions.get(), 3);
        // A later layer overrides an earlier one.
        l.0.insert("listen", ("127.0.0.1:2".into(), Source::Flag("--listen")));
        assert_eq!(l.validate().unwrap().listen.port(), 2);
        std::fs::write(&file, "lisen = 1\n").unwrap();
        let err = Layers::default().read_file(&file).unwrap_err().to_string();
        assert!(err.contains("unknown key `lisen`"), "{err}");
    }

    #[test]
    fn plaintext_is_for_loopback_unless_dangerously_allowed() {
        let file = Source::File("c.toml".into());
        let base = [("database_url", "sqlite://a.db", file.clone())];
        let with = |extra: &[(&'static str, &str, Source)]| {
            let mut entries = base.to_vec();
            entries.extend_from_slice(extra);
            layers(&entries).validate()
        };
        assert!(with(&[("listen", "127.0.0.1:8420", file.clone())]).is_ok());
        assert!(with(&[("listen", "[::1]:8420", file.clone())]).is_ok());
        let err = with(&[("listen", "0.0.0.0:8420", file.clone())])
            .unwrap_err()
            .to_string();
        assert!(err.contains("without TLS"), "{err}");
        let allowed = with(&[
            ("listen", "0.0.0.0:8420", file.clone()),
            ("dangerously_allow_plaintext", "true", file.clone()),
        ]);
        assert!(allowed.is_ok());
        // TLS needs both halves; a certificate alone is an error, not plaintext.
        let err = with(&[("tls_cert", "c.pem", file.clone())])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("`tls_cert` and `tls_key` go together"),
            "{err}"
        );
        let tls = with(&[
            ("listen", "0.0.0.0:8420", file.clone()),
            ("tls_cert", "c.pem", file.clone()),
            ("tls_key", "k.pem", file.clone()),
        ])
        .unwrap();
        assert!(tls.tls.is_some());
        let err = with(&[("metrics_token", "short", file.clone())])
            .unwrap_err()
            .to_string();
        assert!(err.contains("at least 16"), "{err}");
        assert!(!err.contains("short\""), "the token is not echoed: {err}");
    }

    #[test]
    fn every_key_is_documented_for_operators() {
        let doc = include_str!("../../../docs/operators.md");
        for (key, var, _) in KEYS {
            let row = format!("| `{key}` | `{var}` |");
            assert!(doc.contains(&row), "docs/operators.md has no row {row}");
        }
        // And every documented key is accepted.
        for line in doc.lines().filter(|l| l.starts_with("| `")) {
            let Some(key) = line.split('`').nth(1) else {
                continue;
            };
            if line.contains("`CHAPERONE_") {
                assert!(
                    KEYS.iter().any(|(k, _, _)| *k == key),
                    "docs/operators.md documents `{key}`, which the configuration refuses"
                );
            }
        }
    }
}
