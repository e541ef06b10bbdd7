//! What operators see of a running server: a request id and a log line per request, the
//! security headers every answer carries, Prometheus metrics at `/metrics`, and readiness at
//! `/api/v1/ready`.
//!
//! What is logged, and why: the request id, method, the *route template* (for example
//! `/v1/secret/data/{*path}`, never the path itself, since secret names can say more than
//! they should), status and duration. Never a header, a query string or a body, so no token
//! or secret value can reach the logs through this layer.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use tracing::Instrument as _;

use crate::AppState;
use chaperone_store::LedgerStall;

/// The route template a request matched, put on the response by the authorisation layer.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RouteLabel(pub(crate) &'static str);

/// The request id given to a request on arrival; its ledger entries carry it too.
#[derive(Clone, Debug)]
pub(crate) struct RequestId(pub(crate) String);

/// The outermost layer: request id, log line, metrics and security headers.
pub(crate) async fn layer(
    State(state): State<Arc<AppState>>,
    mut request: Request,
    next: Next,
) -> Response {
    let id = crate::record::new_request_id();
    request.extensions_mut().insert(RequestId(id.clone()));
    let method = method_label(request.method());
    let started = Instant::now();
    let span = tracing::info_span!("request", id = %id);
    let mut response = match &state.settings.allowed_hosts {
        Some(allowed) if !host_allowed(request.headers(), allowed) => misdirected(),
        _ => next.run(request).instrument(span.clone()).await,
    };
    let elapsed = started.elapsed();
    let route = response
        .extensions()
        .get::<RouteLabel>()
        .map_or("unmatched", |r| r.0);
    let status = response.status().as_u16();
    state.metrics.observe(route, method, status, elapsed);
    // The ledger already records every request that matters, with this id; the access line
    // is for debugging (`chaperone_server::observe=debug`), except for server errors.
    let ms = elapsed.as_secs_f64() * 1000.0;
    // A status probe's 503 (sealed, database unreachable) or `sys/health`'s 501 (not
    // initialised) is its answer, not a failure: a load balancer asking every few seconds would
    // otherwise flood the warnings. Other 5xx answers of probes are failures, logged so.
    let probe = matches!(route, "/api/v1/ready" | "/v1/sys/health") && matches!(status, 501 | 503);
    span.in_scope(|| {
        if status >= 500 && !probe {
            tracing::warn!(method, route, status, ms, "request");
        } else {
            tracing::debug!(method, route, status, ms, "request");
        }
    });
    security_headers(response.headers_mut());
    if let Ok(value) = HeaderValue::from_str(&id) {
        response
            .headers_mut()
            .entry("x-request-id")
            .or_insert(value);
    }
    response
}

/// Whether the request's `Host` names this server: an IP address, `localhost` (or a name
/// under it), or one of `allowed`; a request without `Host` (HTTP/1.0) passes.
///
/// Security decision: over plain HTTP, a page on any site can make its own name resolve to
/// this server's address (DNS rebinding) and then call it as a page of its own origin:
/// `Sec-Fetch-Site` says `same-origin`, so the cross-site guard on requests without
/// credentials (`ApiJson`) would not hold, and a login or an unseal share could be sent from
/// a visitor's browser. Such a request carries the page's name in `Host`, which is none of
/// these: an IP address cannot be rebound, and browsers resolve `localhost` themselves.
/// With TLS the certificate, which no such name matches, already stops it.
pub(crate) fn host_allowed(headers: &HeaderMap, allowed: &[String]) -> bool {
    let Some(host) = headers.get(header::HOST) else {
        return true;
    };
    let Ok(host) = host.to_str() else {
        return false;
    };
    // On every request: compared without allocating.
    let name = host_part(host);
    let under_localhost = name.len() > ".localhost".len()
        && name.as_bytes()[name.len() - ".localhost".len()..].eq_ignore_ascii_case(b".localhost");
    name.parse::<std::net::IpAddr>().is_ok()
        || name.eq_ignore_ascii_case("localhost")
        || under_localhost
        || allowed.iter().any(|a| a.eq_ignore_ascii_case(name))
}

/// The host of `host[:port]` (`[v6]` or `[v6]:port` for an IPv6 address), without a
/// trailing dot, as written.
fn host_part(authority: &str) -> &str {
    let name = match authority.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or_default(),
        None => authority
            .rsplit_once(':')
            .map_or(authority, |(name, _)| name),
    };
    name.trim_end_matches('.')
}

/// The host of `host[:port]` (`[v6]` or `[v6]:port` for an IPv6 address), in lower case
/// and without a trailing dot.
pub fn host_name(authority: &str) -> String {
    host_part(authority).to_ascii_lowercase()
}

fn misdirected() -> Response {
    crate::ApiError::new(
        StatusCode::MISDIRECTED_REQUEST,
        "unknown_host",
        "this server does not answer to that host name without TLS: use its address or \
         localhost, or name it in allowed_hosts (or public_url) in the configuration of \
         `chaperone server` (`chaperone up` answers to addresses and localhost only)",
    )
    .into_response()
}

/// The Content-Security-Policy of an HTML answer that does not set its own: nothing loads,
/// nothing frames it.
const HTML_CSP: &str = "default-src 'none'; base-uri 'none'; form-action 'none'; \
     frame-ancestors 'none'";

pub(crate) fn security_headers(headers: &mut HeaderMap) {
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    // Answers carry secrets and personal data: no cache keeps them unless a route says so.
    headers
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    let html = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/html"));
    if html {
        headers
            .entry(header::CONTENT_SECURITY_POLICY)
            .or_insert(HeaderValue::from_static(HTML_CSP));
        headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    }
}

fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        _ if method.as_str() == "LIST" => "LIST",
        _ => "OTHER",
    }
}

/// Upper bounds of the latency histogram, in seconds.
const BUCKETS: [f64; 12] = [
    0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

#[derive(Default)]
struct Series {
    count: u64,
    sum: f64,
    buckets: [u64; BUCKETS.len()],
}

/// Counters kept in memory since the process started.
#[derive(Default)]
pub(crate) struct Metrics {
    requests: Mutex<HashMap<(&'static str, &'static str, u16), Series>>,
    login_failures: AtomicU64,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    fn observe(&self, route: &'static str, method: &'static str, status: u16, took: Duration) {
        let seconds = took.as_secs_f64();
        let mut requests = self.requests.lock().unwrap_or_else(|e| e.into_inner());
        let series = requests.entry((route, method, status)).or_default();
        series.count += 1;
        series.sum += seconds;
        for (bucket, bound) in series.buckets.iter_mut().zip(BUCKETS) {
            if seconds <= bound {
                *bucket += 1;
            }
        }
    }

    /// Counts a refused login.
    pub(crate) fn login_failed(&self) {
        self.login_failures.fetch_add(1, Ordering::Relaxed);
    }

    fn render_requests(&self, out: &mut String) {
        let requests = self.requests.lock().unwrap_or_else(|e| e.into_inner());
        let mut keys: Vec<_> = requests.keys().copied().collect();
        keys.sort_unstable();
        out.push_str(
            "# HELP chaperone_http_requests_total Requests answered, by route template, method and status.\n\
             # TYPE chaperone_http_requests_total counter\n",
        );
        for key @ (route, method, status) in &keys {
            let series = &requests[key];
            let _ = writeln!(
                out,
                "chaperone_http_requests_total{{route=\"{route}\",method=\"{method}\",status=\"{status}\"}} {}",
                series.count
            );
        }
        out.push_str(
            "# HELP chaperone_http_request_duration_seconds Time to answer, by route template, method and status.\n\
             # TYPE chaperone_http_request_duration_seconds histogram\n",
        );
        for key @ (route, method, status) in &keys {
            let series = &requests[key];
            let labels = format!("route=\"{route}\",method=\"{method}\",status=\"{status}\"");
            for (bound, count) in BUCKETS.iter().zip(series.buckets) {
                let _ = writeln!(
                    out,
                    "chaperone_http_request_duration_seconds_bucket{{{labels},le=\"{bound}\"}} {count}"
                );
            }
            let _ = writeln!(
                out,
                "chaperone_http_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {}\n\
                 chaperone_http_request_duration_seconds_sum{{{labels}}} {}\n\
                 chaperone_http_request_duration_seconds_count{{{labels}}} {}",
                series.count, series.sum, series.count
            );
        }
    }
}

fn gauge(out: &mut String, name: &str, help: &str, kind: &str, value: impl std::fmt::Display) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
    );
}

/// The Prometheus text exposition of every metric.
pub(crate) async fn render(state: &AppState) -> String {
    let mut out = String::new();
    state.metrics.render_requests(&mut out);
    gauge(
        &mut out,
        "chaperone_login_failures_total",
        "Refused logins since the process started.",
        "counter",
        state.metrics.login_failures.load(Ordering::Relaxed),
    );
    let sealed = state.keyring().is_none();
    gauge(
        &mut out,
        "chaperone_sealed",
        "1 while the server is sealed.",
        "gauge",
        u8::from(sealed),
    );
    let database_up = database_answers(state).await;
    gauge(
        &mut out,
        "chaperone_database_up",
        "1 when the database answered this scrape.",
        "gauge",
        u8::from(database_up),
    );
    if !database_up {
        return out;
    }
    if let Ok(size) = state.store.ledger_size().await {
        gauge(
            &mut out,
            "chaperone_ledger_entries",
            "Entries in the ledger.",
            "gauge",
            size,
        );
    }
    if let Ok(latest) = state.store.latest_checkpoint().await {
        let (size, age) = match latest {
            Some((size, _, at)) => {
                let now = state.clock.now().unix_nanos();
                (size, (now.saturating_sub(at)).max(0) as f64 / 1e9)
            }
            None => (0, f64::NAN),
        };
        gauge(
            &mut out,
            "chaperone_ledger_checkpoint_entries",
            "Entries covered by the latest signed checkpoint.",
            "gauge",
            size,
        );
        gauge(
            &mut out,
            "chaperone_ledger_checkpoint_age_seconds",
            "Seconds since the latest signed checkpoint was made.",
            "gauge",
            age,
        );
    }
    if let Ok(grants) = state.store.count_active_grants(state.clock.now()).await {
        gauge(
            &mut out,
            "chaperone_grants_active",
            "Grants in force now.",
            "gauge",
            grants,
        );
    }
    out
}

/// `/metrics`: with `metrics_token` set, the token is required as a bearer token; without it,
/// this route does not exist on the main listener (use `metrics_listen`).
pub(crate) async fn metrics(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let Some(expected) = state.settings.metrics_token.as_ref().map(|t| t.expose()) else {
        return crate::api::not_found_response();
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    if !bool::from(subtle::ConstantTimeEq::ct_eq(
        given.as_bytes(),
        expected.as_bytes(),
    )) {
        return crate::ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "the metrics token is missing or wrong",
        )
        .into_response();
    }
    exposition(&state).await
}

/// The router of a separate metrics listener: `/metrics` only, without a token.
pub fn metrics_router(state: Arc<AppState>) -> axum::Router {
    axum::Router::new()
        .route(
            "/metrics",
            axum::routing::get(|State(state): State<Arc<AppState>>| async move {
                exposition(&state).await
            }),
        )
        .with_state(state)
}

async fn exposition(state: &AppState) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        render(state).await,
    )
        .into_response()
}

/// Readiness.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct Ready {
    /// Whether this server can serve requests now.
    ready: bool,
    /// Why not, when not: `sealed`, `not_initialized`, `database_unreachable`,
    /// `ledger_stalled` (a ledger commit has run for 5 s or more: every request that records
    /// anything waits for it), `ledger_failing` (a commit failed in the last 5 s: a full
    /// disk, an I/O error), `database_moved` (the SQLite database or its lock file is no
    /// longer the file this server opened: restart it), `ledger_stopped`.
    reasons: Vec<&'static str>,
}

/// How long a ledger batch may run before the server is not ready. A batch commits in
/// milliseconds; one that runs for seconds waits on a lock another node holds (bounded by
/// PostgreSQL's `lock_timeout`) or on a disk that does not answer.
const LEDGER_STALLED_AFTER: Duration = Duration::from_secs(5);

/// How long readiness and a metrics scrape wait for the database. A database that does not
/// answer (a host gone, a network cut) would otherwise hold them for the pool's connect
/// timeout (30 s), past a load balancer's probe timeout and Prometheus' scrape timeout (10
/// s), which would then see a timeout instead of `database_unreachable` and
/// `chaperone_database_up 0`.
const DATABASE_ANSWER_WITHIN: Duration = Duration::from_secs(3);

/// Whether the database answers a query within [`DATABASE_ANSWER_WITHIN`].
async fn database_answers(state: &AppState) -> bool {
    matches!(
        tokio::time::timeout(DATABASE_ANSWER_WITHIN, state.store.ping()).await,
        Ok(Ok(()))
    )
}

/// Whether the server can serve: unsealed, its database answering and its ledger
/// committing. 503 otherwise, so a load balancer takes it out of rotation.
#[utoipa::path(get, path = "/api/v1/ready", responses((status = 200, body = Ready), (status = 503, body = Ready)))]
pub(crate) async fn ready(State(state): State<Arc<AppState>>) -> Response {
    let mut reasons = Vec::new();
    match state.store.ledger_committing(LEDGER_STALLED_AFTER) {
        Ok(()) => {}
        Err(LedgerStall::Stopped) => reasons.push("ledger_stopped"),
        Err(LedgerStall::Moved) => reasons.push("database_moved"),
        Err(LedgerStall::Failing) => reasons.push("ledger_failing"),
        Err(LedgerStall::Stalled(running)) => {
            tracing::warn!(seconds = running.as_secs(), "a ledger commit is stalled");
            reasons.push("ledger_stalled");
        }
    }
    if !database_answers(&state).await {
        reasons.push("database_unreachable");
    } else if state.keyring().is_none() {
        match state.seal_status().await {
            Ok(status) if !status.initialized => reasons.push("not_initialized"),
            _ => reasons.push("sealed"),
        }
    }
    let status = if reasons.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let ready = reasons.is_empty();
    (status, axum::Json(Ready { ready, reasons })).into_response()
}
