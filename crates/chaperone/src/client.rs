//! A small blocking client for the native API, used by the CLI's client commands.
//!
//! The token comes from `CHAPERONE_TOKEN` or from the session file `chaperone login` writes
//! (`$XDG_CONFIG_HOME/chaperone/token` or `~/.config/chaperone/token`, mode 0600), never
//! from a flag, so it does not show up in process listings or shell history. The server
//! address comes from `--addr`, `CHAPERONE_ADDR`, the address saved by `chaperone login`, or
//! `http://127.0.0.1:8420`, in that order. A saved session's token goes only to the server
//! it was saved for, and nothing is sent over plain HTTP to a host other than this machine.

use std::fmt::Write as _;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use serde_json::Value;

/// Percent-encodes a query value: everything but RFC 3986's unreserved characters.
pub(crate) fn query_value(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(char::from(b));
            }
            _ => {
                let _ = write!(out, "%{b:02X}");
            }
        }
    }
    out
}

/// Where the server is.
#[derive(clap::Args, Debug, Clone)]
pub(crate) struct ClientArgs {
    /// Server address (default: the one saved by `chaperone login`, else
    /// http://127.0.0.1:8420).
    #[arg(long, env = "CHAPERONE_ADDR")]
    pub(crate) addr: Option<String>,
    /// PEM file of the CA (or the self-signed certificate) that signs the server's TLS
    /// certificate, for private CAs; public servers are checked against Mozilla's roots.
    #[arg(long, env = "CHAPERONE_CACERT")]
    pub(crate) ca_cert: Option<std::path::PathBuf>,
}

/// An HTTP agent that verifies TLS certificates against `ca_cert` when given, else against
/// Mozilla's roots. Verification is never switched off: there is no `--insecure`.
fn agent(ca_cert: Option<&std::path::Path>) -> anyhow::Result<ureq::Agent> {
    let mut config = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(60)));
    if let Some(path) = ca_cert {
        let pem = std::fs::read(path)
            .with_context(|| format!("cannot read the CA certificate {}", path.display()))?;
        let certs = ureq::tls::parse_pem(&pem)
            .filter_map(|item| match item {
                Ok(ureq::tls::PemItem::Certificate(cert)) => Some(Ok(cert)),
                Ok(_) => None,
                Err(e) => Some(Err(e)),
            })
            .collect::<Result<Vec<_>, _>>()
            .with_context(|| format!("{} is not a PEM certificate file", path.display()))?;
        if certs.is_empty() {
            bail!("{} holds no PEM certificate", path.display());
        }
        config = config.tls_config(
            ureq::tls::TlsConfig::builder()
                .root_certs(ureq::tls::RootCerts::new_with_certs(&certs))
                .build(),
        );
    }
    Ok(config.build().into())
}

/// An address as compared and used: without trailing slashes, scheme and host lowercased.
fn same_server(addr: &str) -> String {
    let addr = addr.trim().trim_end_matches('/');
    match addr.split_once("://") {
        Some((scheme, rest)) => {
            let (host, path) = rest.split_once('/').map_or((rest, ""), |(h, p)| (h, p));
            let mut out = format!(
                "{}://{}",
                scheme.to_ascii_lowercase(),
                host.to_ascii_lowercase()
            );
            if !path.is_empty() {
                out.push('/');
                out.push_str(path);
            }
            out
        }
        None => addr.to_owned(),
    }
}

/// Whether `base` is `http://` to a host other than this machine.
pub(crate) fn plain_http_off_loopback(base: &str) -> bool {
    let Some(rest) = base.strip_prefix("http://") else {
        return false;
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    // The host is after any user information: `http://127.0.0.1:8420@evil.example/` goes to
    // evil.example.
    let authority = authority.rsplit('@').next().unwrap_or_default();
    // The host without the port: `[::1]:8420`, `127.0.0.1:8420`, `localhost:8420`.
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
    };
    let loopback = host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    !loopback
}

/// A connection to one server.
#[derive(Clone)]
pub(crate) struct Client {
    /// The agent, or why it could not be made (an unreadable CA file), reported at first use.
    agent: Result<ureq::Agent, String>,
    base: String,
    token: Option<zeroize::Zeroizing<String>>,
}

/// Which HTTP method a call uses.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Method {
    Get,
    Put,
    Post,
    Delete,
}

impl Client {
    /// A client for `args.addr`, with the token from `CHAPERONE_TOKEN` if set.
    pub(crate) fn new(args: &ClientArgs) -> Self {
        let ca_cert = args
            .ca_cert
            .clone()
            .or_else(|| std::env::var_os("CHAPERONE_CACERT").map(Into::into));
        let agent = agent(ca_cert.as_deref()).map_err(|e| format!("{e:#}"));
        let saved_addr = session::read("addr").map(|a| same_server(&a));
        let addr = args
            .addr
            .clone()
            // An empty CHAPERONE_ADDR is no address.
            .filter(|a| !a.trim().is_empty())
            .or_else(|| saved_addr.clone())
            .unwrap_or_else(|| "http://127.0.0.1:8420".to_owned());
        let base = same_server(&addr);
        // The saved session belongs to the server it was saved for: another address given
        // with --addr or CHAPERONE_ADDR does not get it (a token set in CHAPERONE_TOKEN is
        // sent wherever the caller says).
        let saved_token =
            || session::read("token").filter(|_| saved_addr.as_deref() == Some(base.as_str()));
        let token = std::env::var("CHAPERONE_TOKEN")
            .ok()
            .or_else(saved_token)
            .filter(|t| !t.trim().is_empty())
            .map(|t| zeroize::Zeroizing::new(t.trim().to_owned()));
        // Passwords, tokens and unseal shares do not cross a network in clear: the server
        // refuses plain HTTP off loopback, and so does the client.
        let agent = agent.and_then(|agent| match plain_http_off_loopback(&base) {
            true => Err(format!(
                "{base} is plain HTTP to another machine: use https:// (the server serves TLS \
                 off loopback)"
            )),
            false => Ok(agent),
        });
        Self { agent, base, token }
    }

    /// This client, presenting no token.
    pub(crate) fn without_token(mut self) -> Self {
        self.token = None;
        self
    }

    /// Like [`Client::new`], but fails when no token is set.
    pub(crate) fn authenticated(args: &ClientArgs) -> anyhow::Result<Self> {
        let client = Self::new(args);
        if client.token.is_none() {
            // A session saved for another address is not sent here: say so, rather than
            // that nobody logged in.
            if let Some(saved) = session::read("addr").map(|a| same_server(&a))
                && session::read("token").is_some()
                && saved != client.base
            {
                bail!(
                    "not logged in to {}: the saved session is for {saved}, and is sent only \
                     there. Run `chaperone login USER --server {}`, or set CHAPERONE_TOKEN",
                    client.base,
                    client.base
                );
            }
            bail!(
                "not logged in: run `chaperone login USER`, or set CHAPERONE_TOKEN (for a \
                 `chaperone up` server: export CHAPERONE_TOKEN=$(cat chaperone-data/admin.token))"
            );
        }
        Ok(client)
    }

    /// The error for a request that got no answer, with a hint at the likely cause.
    fn unreachable(&self, error: &ureq::Error) -> anyhow::Error {
        let text = error.to_string();
        // Never sent: a name given on the command line (a secret path, a person) holds a
        // character no URL carries.
        if text.contains("invalid uri") {
            return anyhow!(
                "invalid name or path: it holds a character a URL cannot carry (secret paths \
                 are letters, digits, `.`, `_`, `-` and `/`)"
            );
        }
        let hint = if text.contains("CaUsedAsEndEntity") {
            "the server's certificate is marked as a CA (basicConstraints CA:TRUE, OpenSSL's \
             default for `req -x509`), which TLS refuses as a server's own certificate: make it \
             again with `-addext basicConstraints=critical,CA:FALSE`, or let `chaperone up --tls` \
             make one"
        } else if text.contains("certificate") {
            "the server's TLS certificate is not trusted; for a private CA or a self-signed \
             certificate, pass --ca-cert FILE or set CHAPERONE_CACERT"
        } else if self.base.starts_with("http://") && text.contains("invalid HTTP version") {
            // A TLS server answers a plain request with a TLS record, not an HTTP status line.
            "the server speaks HTTPS: use an https:// address (for `chaperone up --tls`, the \
             CHAPERONE_ADDR and CHAPERONE_CACERT it prints)"
        } else {
            "is the server running?"
        };
        anyhow!("cannot reach Chaperone at {}: {error} ({hint})", self.base)
    }

    fn agent(&self) -> anyhow::Result<&ureq::Agent> {
        self.agent.as_ref().map_err(|e| anyhow!("{e}"))
    }

    /// Calls `path` (under `/api/v1`) and returns the JSON answer (`Null` for 204). Error
    /// answers become errors carrying the server's message and code.
    pub(crate) fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<Value> {
        let url = format!("{}/api/v1/{path}", self.base);
        let auth = self
            .token
            .as_ref()
            .map(|t| format!("Bearer {}", t.as_str()));
        let result = match method {
            Method::Get | Method::Delete => {
                let mut request = match method {
                    Method::Get => self.agent()?.get(&url),
                    _ => self.agent()?.delete(&url),
                };
                if let Some(auth) = &auth {
                    request = request.header("Authorization", auth);
                }
                request.call()
            }
            Method::Put | Method::Post => {
                let mut request = match method {
                    Method::Put => self.agent()?.put(&url),
                    _ => self.agent()?.post(&url),
                };
                if let Some(auth) = &auth {
                    request = request.header("Authorization", auth);
                }
                match body {
                    Some(body) => request.send_json(body),
                    None => request.send_empty(),
                }
            }
        };
        self.answer(result)
    }

    /// PUTs `content` to `path` (under `/api/v1`) as `content_type`, with `headers`; the
    /// JSON answer.
    pub(crate) fn upload(
        &self,
        path: &str,
        content: &[u8],
        content_type: &str,
        headers: &[(&str, &str)],
    ) -> anyhow::Result<Value> {
        let url = format!("{}/api/v1/{path}", self.base);
        let mut request = self.agent()?.put(&url).header("Content-Type", content_type);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(token) = &self.token {
            request = request.header("Authorization", &format!("Bearer {}", token.as_str()));
        }
        self.answer(request.send(content))
    }

    /// POSTs `body` (JSON) to `path` (under `/api/v1`) and returns the answer's bytes.
    pub(crate) fn post_for_bytes(&self, path: &str, body: &Value) -> anyhow::Result<Vec<u8>> {
        let url = format!("{}/api/v1/{path}", self.base);
        let mut request = self.agent()?.post(&url);
        if let Some(token) = &self.token {
            request = request.header("Authorization", &format!("Bearer {}", token.as_str()));
        }
        let mut response = request.send_json(body).map_err(|e| self.unreachable(&e))?;
        let status = response.status().as_u16();
        let bytes = response
            .body_mut()
            .with_config()
            .limit(64 * 1024 * 1024)
            .read_to_vec()
            .with_context(|| format!("reading {path} from {}", self.base))?;
        if !(200..300).contains(&status) {
            let error = serde_json::from_slice::<Value>(&bytes).ok();
            let message = error
                .as_ref()
                .and_then(|v| v["error"]["message"].as_str())
                .unwrap_or("the request failed");
            let code = error
                .as_ref()
                .and_then(|v| v["error"]["code"].as_str())
                .unwrap_or("error");
            bail!("{message} [{code}, HTTP {status}]");
        }
        Ok(bytes)
    }

    /// The JSON of a successful answer, or an error carrying the server's message and code.
    fn answer(
        &self,
        result: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> anyhow::Result<Value> {
        let mut response = result.map_err(|e| self.unreachable(&e))?;
        let status = response.status().as_u16();
        let text = response
            .body_mut()
            .read_to_string()
            .with_context(|| format!("reading the answer from {}", self.base))?;
        if (200..300).contains(&status) {
            if text.is_empty() {
                return Ok(Value::Null);
            }
            return serde_json::from_str(&text).context("the server answered with invalid JSON");
        }
        let error: Option<(String, String)> =
            serde_json::from_str::<Value>(&text).ok().and_then(|v| {
                let e = v.get("error")?;
                Some((
                    e.get("code")?.as_str()?.to_owned(),
                    e.get("message")?.as_str()?.to_owned(),
                ))
            });
        match error {
            Some((code, message)) => Err(Refused {
                status,
                code,
                message,
            }
            .into()),
            None => Err(anyhow!("the server answered HTTP {status}")),
        }
    }
}

/// An answer of the server's that refuses the request, with its error code and message:
/// callers that must tell refusals apart (`logout` after the session ended) downcast to it.
#[derive(Debug)]
pub(crate) struct Refused {
    pub(crate) status: u16,
    pub(crate) code: String,
    pub(crate) message: String,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} [{}, HTTP {}]", self.message, self.code, self.status)
    }
}

impl std::error::Error for Refused {}

impl Client {
    /// GETs `path` (under `/api/v1`) and returns the body as text (for signed notes and keys,
    /// at most 64 KiB).
    pub(crate) fn text(&self, path: &str) -> anyhow::Result<String> {
        let bytes = self
            .bytes(path, 64 * 1024)?
            .ok_or_else(|| anyhow!("{path} was not found [HTTP 404]"))?;
        String::from_utf8(bytes).with_context(|| format!("{path} is not text"))
    }

    /// GETs `path` (under `/api/v1`) as bytes, refused when longer than `limit` bytes;
    /// `None` for 404 (a tile not written yet).
    pub(crate) fn bytes(&self, path: &str, limit: u64) -> anyhow::Result<Option<Vec<u8>>> {
        let url = format!("{}/api/v1/{path}", self.base);
        let mut request = self.agent()?.get(&url);
        if let Some(token) = &self.token {
            request = request.header("Authorization", &format!("Bearer {}", token.as_str()));
        }
        let mut response = request.call().map_err(|e| self.unreachable(&e))?;
        let status = response.status().as_u16();
        let body = response
            .body_mut()
            .with_config()
            .limit(limit)
            .read_to_vec()
            .map_err(|e| match e {
                ureq::Error::BodyExceedsLimit(_) => {
                    anyhow!("{} answered {path} with more than {limit} bytes", self.base)
                }
                e => anyhow::Error::new(e).context(format!("reading {path} from {}", self.base)),
            })?;
        if status == 404 && path.starts_with("ledger/tile/") {
            return Ok(None);
        }
        if !(200..300).contains(&status) {
            let message = serde_json::from_slice::<Value>(&body)
                .ok()
                .and_then(|v| v["error"]["message"].as_str().map(str::to_owned))
                .unwrap_or_else(|| format!("HTTP {status}"));
            bail!("{message} [HTTP {status}]");
        }
        Ok(Some(body))
    }

    /// The server's base address.
    /// Whether a token is set.
    pub(crate) fn has_token(&self) -> bool {
        self.token.is_some()
    }

    /// The same client with `token` instead of its own.
    pub(crate) fn with_token(mut self, token: &str) -> Self {
        self.token = Some(zeroize::Zeroizing::new(token.trim().to_owned()));
        self
    }

    pub(crate) fn base(&self) -> &str {
        &self.base
    }
}

/// The session files `chaperone login` writes.
pub(crate) mod session {
    use std::path::PathBuf;

    use anyhow::Context as _;

    /// `$XDG_CONFIG_HOME/chaperone` or `~/.config/chaperone`.
    pub(crate) fn dir() -> Option<PathBuf> {
        std::env::var_os("XDG_CONFIG_HOME")
            .filter(|d| !d.is_empty())
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))
            .map(|d| d.join("chaperone"))
    }

    /// Reads a session file, if present.
    pub(crate) fn read(name: &str) -> Option<String> {
        std::fs::read_to_string(dir()?.join(name)).ok()
    }

    /// Writes a session file readable by the owner only.
    pub(crate) fn write(name: &str, contents: &str) -> anyhow::Result<PathBuf> {
        let dir = dir().context("neither XDG_CONFIG_HOME nor HOME is set")?;
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder
            .create(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        let path = dir.join(name);
        crate::cmd::server::write_private(&path, contents.as_bytes())?;
        Ok(path)
    }

    /// Removes a session file.
    pub(crate) fn remove(name: &str) {
        if let Some(dir) = dir() {
            let _ = std::fs::remove_file(dir.join(name));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_keep_only_unreserved_characters() {
        assert_eq!(query_value("Az09-._~"), "Az09-._~");
        assert_eq!(query_value("a b&c=d/é"), "a%20b%26c%3Dd%2F%C3%A9");
        assert_eq!(query_value(""), "");
    }

    #[test]
    fn addresses_compare_without_case_or_trailing_slashes() {
        assert_eq!(
            same_server("HTTPS://Vault.Example.com:8443/"),
            "https://vault.example.com:8443"
        );
        assert_eq!(
            same_server("http://127.0.0.1:8420//"),
            "http://127.0.0.1:8420"
        );
        assert_eq!(same_server("https://h/Base/"), "https://h/Base");
    }

    #[test]
    fn plain_http_is_for_this_machine_only() {
        for local in [
            "http://127.0.0.1:8420",
            "http://localhost:8420",
            "http://[::1]:8420",
            "https://vault.example.com",
        ] {
            assert!(!plain_http_off_loopback(local), "{local}");
        }
        for remote in [
            "http://vault.example.com:8420",
            "http://10.0.0.5",
            "http://[2001:db8::1]:80",
            "http://127.0.0.1:8420@evil.example/",
            "http://localhost@evil.example",
        ] {
            assert!(plain_http_off_loopback(remote), "{remote}");
        }
    }
}
