//! The accept loop: TCP (and TLS) connections served by hyper with the limits a server on a
//! network needs, and a graceful shutdown.
//!
//! Limits, and why:
//! - `header_read_timeout`: a client has this long to send a request's headers (also the
//!   idle time allowed between keep-alive requests), so a slow-loris client that trickles
//!   headers is cut off.
//! - `request_timeout`: the whole request, body and handler included. A client trickling a
//!   body is answered 408 and disconnected. A change already handed to the store commits or
//!   not as a whole; only the answer is lost.
//! - `handshake_timeout`: a TLS handshake that does not finish in time is dropped.
//! - `write_timeout`: a write to the client that makes no progress for this long ends the
//!   connection, so a client that stops reading an answer cannot keep its slot.
//! - `max_header_bytes`: hyper's read buffer; a larger header block is refused with 431.
//! - `max_connections`: connections over this number are closed at once, so memory stays
//!   bounded whatever clients do.
//! - `max_connections_per_address`: one client address (an IPv6 client: its /64, which one
//!   holder usually has whole) may hold no more, so that a single client cannot take every
//!   slot and lock everyone else out. Trusted proxies are exempt: every client behind one
//!   connects from its address.
//!
//! Shutdown: the listener closes, in-flight requests finish (up to `shutdown_grace`, after
//! which the connections still open are aborted and awaited), idle keep-alive connections
//! close, and only then is the last checkpoint signed and the ledger flushed.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::ConnectInfo;
use axum::http::{HeaderValue, Request, StatusCode, header};
use axum::response::IntoResponse;
use chaperone_core::net::Cidr;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::sync::Semaphore;
use tower_service::Service as _;

use crate::{ApiError, TlsCertificate};

/// How connections are served.
#[derive(Clone, Debug)]
pub struct ServeOptions {
    /// TLS, when set; plaintext HTTP otherwise.
    pub tls: Option<Arc<TlsCertificate>>,
    /// Time allowed for a request's headers (and between keep-alive requests).
    pub header_read_timeout: Duration,
    /// Time allowed for a whole request.
    pub request_timeout: Duration,
    /// Time allowed for a TLS handshake.
    pub handshake_timeout: Duration,
    /// Time a write to the client may make no progress.
    pub write_timeout: Duration,
    /// Largest header block, in bytes.
    pub max_header_bytes: usize,
    /// Most connections open at once.
    pub max_connections: usize,
    /// Most connections open at once from one client address (IPv6: one /64); trusted
    /// proxies (`AuthSettings::trusted_proxies`) are not limited by it.
    pub max_connections_per_address: usize,
    /// How long shutdown waits for in-flight requests.
    pub shutdown_grace: Duration,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            tls: None,
            header_read_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(60),
            handshake_timeout: Duration::from_secs(10),
            write_timeout: Duration::from_secs(30),
            max_header_bytes: 64 * 1024,
            max_connections: 4096,
            max_connections_per_address: 512,
            shutdown_grace: Duration::from_secs(30),
        }
    }
}

/// HSTS under TLS: two years, as browsers' preload lists expect. Subdomains are left to the
/// operator (a load balancer can add `includeSubDomains`), since Chaperone cannot know them.
const HSTS: &str = "max-age=63072000";

/// Serves `app` on `listener` until `shutdown` resolves; connections from `proxies` are not
/// held to `max_connections_per_address`.
pub(crate) async fn run(
    listener: tokio::net::TcpListener,
    app: Router,
    options: ServeOptions,
    proxies: Vec<Cidr>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let graceful = GracefulShutdown::new();
    let mut connections = tokio::task::JoinSet::new();
    let slots = Arc::new(Semaphore::new(options.max_connections));
    let per_address = Arc::new(PerAddress::default());
    let mut refusals = Refusals::default();
    let (mut accept_failures, mut last_accept_warning) = (0u64, None::<Instant>);
    let options = Arc::new(options);
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            biased;
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(error) => {
                    // Out of file descriptors and the like: back off instead of spinning,
                    // and say so at most once a second.
                    accept_failures += 1;
                    let now = Instant::now();
                    if last_accept_warning
                        .is_none_or(|at| now.duration_since(at) >= Duration::from_secs(1))
                    {
                        tracing::warn!(%error, failures = accept_failures, "accept failed");
                        last_accept_warning = Some(now);
                        accept_failures = 0;
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        // Finished connection tasks are reaped as new ones arrive.
        while connections.try_join_next().is_some() {}
        let address_slot = if proxies.iter().any(|p| p.contains(peer.ip())) {
            None
        } else {
            match per_address.take(peer.ip(), options.max_connections_per_address) {
                Some(slot) => Some(slot),
                None => {
                    refusals.note(peer, "max_connections_per_address", Instant::now());
                    continue;
                }
            }
        };
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            refusals.note(peer, "max_connections", Instant::now());
            continue;
        };
        let _ = stream.set_nodelay(true);
        let stream = WriteDeadline::new(stream, options.write_timeout);
        let watcher = graceful.watcher();
        let app = app.clone();
        let options = Arc::clone(&options);
        connections.spawn(async move {
            let _slots = (slot, address_slot);
            let (tls, timeout) = (options.tls.is_some(), options.request_timeout);
            let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                handle(app.clone(), peer, tls, timeout, request)
            });
            let mut http = hyper::server::conn::http1::Builder::new();
            http.timer(TokioTimer::new())
                .header_read_timeout(options.header_read_timeout)
                .max_buf_size(options.max_header_bytes);
            let served = match &options.tls {
                Some(certificate) => {
                    let acceptor = tokio_rustls::TlsAcceptor::from(certificate.config());
                    let stream = match tokio::time::timeout(
                        options.handshake_timeout,
                        acceptor.accept(stream),
                    )
                    .await
                    {
                        Ok(Ok(stream)) => stream,
                        Ok(Err(error)) => {
                            tracing::debug!(%peer, %error, "TLS handshake failed");
                            return;
                        }
                        Err(_) => {
                            tracing::debug!(%peer, "TLS handshake timed out");
                            return;
                        }
                    };
                    watcher
                        .watch(http.serve_connection(TokioIo::new(stream), service))
                        .await
                }
                None => {
                    watcher
                        .watch(http.serve_connection(TokioIo::new(stream), service))
                        .await
                }
            };
            if let Err(error) = served {
                tracing::debug!(%peer, %error, "connection ended with an error");
            }
        });
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(options.shutdown_grace) => {
            tracing::warn!("requests still running after the shutdown grace period were cut off");
        }
    }
    // Nothing may still be running when the caller signs the last checkpoint.
    connections.abort_all();
    while connections.join_next().await.is_some() {}
    Ok(())
}

/// Refused connections, logged at most once a second with how many were refused since the
/// last line: a client must not be able to grow the log as fast as it can connect.
#[derive(Debug, Default)]
struct Refusals {
    last: Option<Instant>,
    since: u64,
}

impl Refusals {
    /// Counts a connection from `peer` refused for `limit`; whether a line was logged.
    fn note(&mut self, peer: SocketAddr, limit: &'static str, now: Instant) -> bool {
        self.since += 1;
        if self
            .last
            .is_some_and(|last| now.duration_since(last) < Duration::from_secs(1))
        {
            return false;
        }
        tracing::warn!(%peer, refused = self.since, "connection refused: {limit} reached");
        self.last = Some(now);
        self.since = 0;
        true
    }
}

/// The connections open per client address (see [`client_key`]).
#[derive(Debug, Default)]
struct PerAddress(Mutex<HashMap<IpAddr, usize>>);

impl PerAddress {
    /// One more connection from `ip`, unless it already holds `max`.
    fn take(self: &Arc<Self>, ip: IpAddr, max: usize) -> Option<AddressSlot> {
        let key = client_key(ip);
        let mut open = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let count = open.get(&key).copied().unwrap_or(0);
        if count >= max {
            return None;
        }
        open.insert(key, count + 1);
        Some(AddressSlot {
            counts: Arc::clone(self),
            key,
        })
    }
}

/// A connection's place in its address's count, given back when the connection ends.
#[derive(Debug)]
struct AddressSlot {
    counts: Arc<PerAddress>,
    key: IpAddr,
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut open = self.counts.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = open.get_mut(&self.key) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.key);
            }
        }
    }
}

/// What connections are counted under: an IPv4 address (also when mapped into IPv6), or
/// the /64 of an IPv6 address, as login lockouts count failures.
fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !u128::from(u64::MAX))),
        },
    }
}

/// A stream whose writes fail once they make no progress for `timeout`: the client stopped
/// reading (or its window is closed), and it must not hold a connection slot for that.
struct WriteDeadline<T> {
    inner: T,
    timeout: Duration,
    stalled: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
}

impl<T> WriteDeadline<T> {
    fn new(inner: T, timeout: Duration) -> Self {
        Self {
            inner,
            timeout,
            stalled: None,
        }
    }

    /// Called when a write is pending: starts the clock, or reports that it ran out.
    fn check(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<std::io::Result<()>> {
        let timeout = self.timeout;
        let sleep = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        match sleep.as_mut().poll(cx) {
            std::task::Poll::Ready(()) => std::task::Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the client stopped reading",
            ))),
            std::task::Poll::Pending => std::task::Poll::Pending,
        }
    }
}

impl<T: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for WriteDeadline<T> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for WriteDeadline<T> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        match std::pin::Pin::new(&mut self.inner).poll_write(cx, buf) {
            std::task::Poll::Ready(result) => {
                self.stalled = None;
                std::task::Poll::Ready(result)
            }
            std::task::Poll::Pending => self.check(cx).map(|r| r.map(|()| 0)),
        }
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match std::pin::Pin::new(&mut self.inner).poll_flush(cx) {
            std::task::Poll::Ready(result) => {
                self.stalled = None;
                std::task::Poll::Ready(result)
            }
            std::task::Poll::Pending => self.check(cx),
        }
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

async fn handle(
    mut app: Router,
    peer: SocketAddr,
    tls: bool,
    timeout: Duration,
    mut request: Request<Incoming>,
) -> Result<axum::response::Response, std::convert::Infallible> {
    request.extensions_mut().insert(ConnectInfo(peer));
    let request = request.map(axum::body::Body::new);
    let mut response = match tokio::time::timeout(timeout, app.call(request)).await {
        Ok(response) => response?,
        Err(_) => {
            // Built here, outside the router: it gets the same headers as every answer.
            let mut response = ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "request_timeout",
                "the request took too long and was abandoned",
            )
            .into_response();
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            crate::observe::security_headers(response.headers_mut());
            response
        }
    };
    if tls {
        response.headers_mut().insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static(HSTS),
        );
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt as _;

    #[tokio::test]
    async fn a_client_that_stops_reading_is_cut_off() {
        // A pipe that holds 64 bytes, whose reader never reads.
        let (client, server) = tokio::io::duplex(64);
        let mut server = WriteDeadline::new(server, Duration::from_millis(200));
        let error = server.write_all(&[7u8; 4096]).await.unwrap_err();
        assert_eq!(error.kind(), std::io::ErrorKind::TimedOut);
        drop(client);

        // A reader that keeps reading is never cut off, however long the whole write takes.
        let (mut client, server) = tokio::io::duplex(64);
        let mut server = WriteDeadline::new(server, Duration::from_millis(200));
        let reader = tokio::spawn(async move {
            use tokio::io::AsyncReadExt as _;
            let mut total = 0;
            let mut buf = [0u8; 16];
            loop {
                tokio::time::sleep(Duration::from_millis(5)).await;
                match client.read(&mut buf).await {
                    Ok(0) | Err(_) => break total,
                    Ok(n) => total += n,
                }
            }
        });
        server.write_all(&[7u8; 2048]).await.unwrap();
        drop(server);
        assert_eq!(reader.await.unwrap(), 2048);
    }

    #[test]
    fn connections_are_counted_per_ipv4_address_and_per_ipv6_64() {
        let counts = Arc::new(PerAddress::default());
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let first = counts.take(ip("192.0.2.1"), 2).unwrap();
        let second = counts.take(ip("::ffff:192.0.2.1"), 2).unwrap();
        assert!(
            counts.take(ip("192.0.2.1"), 2).is_none(),
            "a third is refused"
        );
        assert!(
            counts.take(ip("192.0.2.2"), 2).is_some(),
            "another address is not"
        );
        let v6 = counts.take(ip("2001:db8:1:2::1"), 1).unwrap();
        assert!(
            counts.take(ip("2001:db8:1:2:ffff::9"), 1).is_none(),
            "the same /64"
        );
        assert!(
            counts.take(ip("2001:db8:1:3::1"), 1).is_some(),
            "another /64"
        );
        drop(first);
        let third = counts.take(ip("192.0.2.1"), 2).unwrap();
        drop((second, third, v6));
        assert!(
            counts.take(ip("192.0.2.7"), 0).is_none(),
            "a limit of 0 refuses all"
        );
        let open = counts.0.lock().unwrap();
        assert!(
            open.is_empty(),
            "closed or refused connections leave no count: {open:?}"
        );
    }

    #[test]
    fn refused_connections_are_logged_at_most_once_a_second() {
        let mut refusals = Refusals::default();
        let peer: SocketAddr = "192.0.2.1:4000".parse().unwrap();
        let start = Instant::now();
        assert!(refusals.note(peer, "max_connections", start));
        let logged = (1..=1000)
            .filter(|ms| refusals.note(peer, "max_connections", start + Duration::from_millis(*ms)))
            .count();
        assert_eq!(logged, 1, "one more line, at the first second");
        assert_eq!(refusals.since, 0);
        assert!(!refusals.note(peer, "max_connections", start + Duration::from_millis(1500)));
        assert_eq!(refusals.since, 1, "counted for the next line");
    }
}
