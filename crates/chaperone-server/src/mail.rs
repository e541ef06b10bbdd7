//! A minimal SMTP client (RFC 5321) for notifications: one message to a relay. It speaks
//! EHLO, STARTTLS (RFC 3207), AUTH PLAIN or LOGIN (RFC 4954), MAIL, RCPT, DATA and QUIT,
//! nothing else. Messages carry names, paths and dates, never a secret value.
//!
//! Security decisions:
//! - The connection is TLS (`SmtpTls::StartTls`, `SmtpTls::Implicit`) unless the settings
//!   say plain SMTP, which the configuration allows by default only to a relay on loopback.
//!   STARTTLS is required, never opportunistic: a relay (or anyone between) that does not
//!   offer it gets no message, as stripping the offer is how a downgrade works.
//! - The relay's certificate is verified against the configured CA file or, without one, the
//!   Mozilla roots compiled in (`webpki-roots`, as the webhook's client uses), for the
//!   relay's host name.
//! - Credentials are sent only inside TLS; with plain SMTP they are refused before
//!   anything is sent. They never appear in an error.
//! - What the relay sent after agreeing to STARTTLS but before the handshake is not
//!   read as an answer: the connection is dropped (it could be injected by anyone between,
//!   to be taken for the relay's answer inside TLS).
//! - No answer line is read past 2,048 bytes, nor an answer past 100 lines.
//!
//! Typed text (a request's reason) cannot add headers or end the message early: addresses
//! with anything but plain address characters are refused; the subject loses its control
//! characters and is RFC 2047-encoded when not ASCII; the body's lines lose stray CRs, are
//! cut at 998 octets and are dot-stuffed (and base64-encoded when not ASCII).

use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::state::BearerToken;

/// How the connection to the relay is protected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SmtpTls {
    /// Plain SMTP: for a relay on loopback (or, said so explicitly, a private network).
    None,
    /// Plain SMTP upgraded with STARTTLS before anything else is said; a relay that does not
    /// offer it gets nothing.
    StartTls,
    /// TLS from the first byte ("implicit TLS", RFC 8314; port 465).
    Implicit,
}

/// Where, how and as whom mail is sent.
#[derive(Clone)]
pub struct SmtpSettings {
    /// The relay, `host:port`.
    pub relay: String,
    /// The sender address.
    pub from: String,
    tls: SmtpTls,
    /// The TLS client configuration (trust anchors) and the name the relay's certificate
    /// must hold; `None` with `SmtpTls::None`.
    client: Option<(Arc<rustls::ClientConfig>, ServerName<'static>)>,
    login: Option<(String, BearerToken)>,
}

impl std::fmt::Debug for SmtpSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpSettings")
            .field("relay", &self.relay)
            .field("from", &self.from)
            .field("tls", &self.tls)
            .field("username", &self.login.as_ref().map(|(user, _)| user))
            .finish_non_exhaustive()
    }
}

impl SmtpSettings {
    /// Plain SMTP to `relay`, without a login.
    pub fn new(relay: String, from: String) -> Self {
        Self {
            relay,
            from,
            tls: SmtpTls::None,
            client: None,
            login: None,
        }
    }

    /// Protects the connection with `tls`, verifying the relay's certificate against the
    /// certificates of `ca_pem` (only these) or, without it, the Mozilla roots compiled in.
    /// Fails when the PEM holds no usable certificate or the relay's host cannot be a
    /// certificate's name.
    pub fn with_tls(mut self, tls: SmtpTls, ca_pem: Option<&[u8]>) -> Result<Self, String> {
        self.tls = tls;
        if tls == SmtpTls::None {
            self.client = None;
            return Ok(self);
        }
        let host = crate::observe::host_name(&self.relay);
        let name = ServerName::try_from(host.clone())
            .map_err(|_| format!("`{host}` is not a host name to verify a certificate for"))?;
        let mut roots = rustls::RootCertStore::empty();
        match ca_pem {
            Some(pem) => {
                for cert in CertificateDer::pem_slice_iter(pem) {
                    let cert = cert.map_err(|e| format!("not a PEM certificate list: {e}"))?;
                    roots
                        .add(cert)
                        .map_err(|e| format!("a CA certificate cannot be used: {e}"))?;
                }
                if roots.is_empty() {
                    return Err("it holds no certificate".into());
                }
            }
            None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS: {e}"))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        self.client = Some((Arc::new(config), name));
        Ok(self)
    }

    /// Logs in to the relay as `username` with `password` (AUTH PLAIN, or LOGIN when the
    /// relay offers only that). Only inside TLS: without it, nothing is sent.
    pub fn with_login(mut self, username: String, password: BearerToken) -> Self {
        self.login = Some((username, password));
        self
    }

    /// How the connection to the relay is protected.
    pub fn tls(&self) -> SmtpTls {
        self.tls
    }
}

/// Whether `address` is a plain `local@domain` address with nothing that could break a
/// command or a header.
pub fn valid_address(address: &str) -> bool {
    let Some((local, domain)) = address.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && domain.contains('.')
        && address.len() <= 254
        && address.chars().all(|c| {
            c.is_ascii_graphic() && !matches!(c, '<' | '>' | '(' | ')' | ',' | ';' | '"' | '\\')
        })
}

/// What the relay said of each recipient of a message.
#[derive(Debug, Default)]
pub(crate) struct Delivery {
    /// Addresses the relay took the message for.
    pub(crate) accepted: Vec<String>,
    /// Addresses refused for now (a 4xx answer: greylisting, a full mailbox, too many
    /// recipients), each with the relay's answer: worth trying again later.
    pub(crate) deferred: Vec<(String, String)>,
    /// Addresses refused for good (a 5xx answer: a mistyped or deleted mailbox), each with
    /// the relay's answer: not tried again.
    pub(crate) refused: Vec<(String, String)>,
}

/// Whether a 5xx answer to RCPT is the relay refusing to relay for this server (its
/// policy, authentication, routing: enhanced status 5.3.x, 5.4.x or 5.7.x, or a 530 or 554,
/// or words saying so) rather than the mailbox not existing (5.1.x, 5.2.x, a bare 550). The
/// first fails every message, and is the relay's fault; the second is the address's.
pub(crate) fn refuses_relaying(answer: &str) -> bool {
    let code = answer.get(..3).unwrap_or_default();
    let enhanced = answer
        .get(4..)
        .and_then(|rest| rest.split_whitespace().next())
        .filter(|word| word.starts_with("5."));
    let lower = answer.to_ascii_lowercase();
    match enhanced {
        Some(status) => ["5.3.", "5.4.", "5.7."]
            .iter()
            .any(|p| status.starts_with(p)),
        None => {
            matches!(code, "530" | "554")
                || lower.contains("relay")
                || lower.contains("authenticat")
        }
    }
}

/// One message as sent.
pub(crate) struct Message<'a> {
    pub(crate) to: &'a [String],
    pub(crate) subject: &'a str,
    pub(crate) body: &'a str,
    /// Unique per message: the notification's id and attempt.
    pub(crate) id: &'a str,
    pub(crate) date: chaperone_core::Timestamp,
}

/// Sends one message. A recipient the relay refuses does not keep the message from the
/// others: each address's fate is returned (`Delivery`). The error, for a relay that could
/// not be reached or that refused the message itself, says which step failed and what the
/// relay answered.
pub(crate) async fn send(
    settings: &SmtpSettings,
    message: &Message<'_>,
) -> Result<Delivery, String> {
    tokio::time::timeout(Duration::from_secs(20), send_inner(settings, message))
        .await
        .map_err(|_| format!("SMTP relay {} timed out", settings.relay))?
}

/// A connection to the relay, plain or TLS, read through one buffer.
trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}
type Connection = BufReader<Box<dyn Io>>;

async fn send_inner(settings: &SmtpSettings, message: &Message<'_>) -> Result<Delivery, String> {
    let to = message.to;
    if !valid_address(&settings.from) || to.iter().any(|a| !valid_address(a)) || to.is_empty() {
        return Err("invalid sender or recipient address".into());
    }
    let tcp = TcpStream::connect(&settings.relay)
        .await
        .map_err(|e| format!("connecting to SMTP relay {}: {e}", settings.relay))?;
    let _ = tcp.set_nodelay(true);
    let mut conn: Connection = BufReader::new(Box::new(tcp));
    let mut secure = false;
    if settings.tls == SmtpTls::Implicit {
        conn = handshake(settings, conn).await?;
        secure = true;
    }
    expect(&mut conn, 220, "greeting").await?;
    let mut extensions = ehlo(&mut conn).await?;
    if settings.tls == SmtpTls::StartTls {
        if !extensions
            .iter()
            .any(|e| e.eq_ignore_ascii_case("STARTTLS"))
        {
            quit(conn);
            return Err(format!(
                "the SMTP relay {} does not offer STARTTLS, which smtp_tls requires",
                settings.relay
            ));
        }
        command(&mut conn, "STARTTLS").await?;
        expect(&mut conn, 220, "STARTTLS").await?;
        if !conn.buffer().is_empty() {
            return Err(
                "the SMTP relay sent more than its answer to STARTTLS before the TLS \
                 handshake; the connection was dropped"
                    .into(),
            );
        }
        conn = handshake(settings, conn).await?;
        secure = true;
        // What the relay offered before TLS is forgotten (RFC 3207, 4.2).
        extensions = ehlo(&mut conn).await?;
    }
    if let Some((username, password)) = &settings.login {
        if !secure {
            return Err("refusing to send SMTP credentials without TLS".into());
        }
        login(&mut conn, &extensions, username, password).await?;
    }
    command(&mut conn, &format!("MAIL FROM:<{}>", settings.from)).await?;
    expect(&mut conn, 250, "MAIL FROM").await?;
    let mut delivery = Delivery::default();
    for address in to {
        command(&mut conn, &format!("RCPT TO:<{address}>")).await?;
        let (code, line) = reply(&mut conn, "RCPT TO").await?;
        match code {
            250 | 251 => delivery.accepted.push(address.clone()),
            // 552 to RCPT is "too many recipients", which RFC 5321 (4.5.3.1.10) says to
            // treat as temporary.
            552 => delivery.deferred.push((address.clone(), line)),
            500..=599 => delivery.refused.push((address.clone(), line)),
            _ => delivery.deferred.push((address.clone(), line)),
        }
    }
    if delivery.accepted.is_empty() {
        quit(conn);
        return Ok(delivery);
    }
    command(&mut conn, "DATA").await?;
    expect(&mut conn, 354, "DATA").await?;
    conn.write_all(format_message(&settings.from, message).as_bytes())
        .await
        .map_err(|e| format!("sending the message: {e}"))?;
    conn.flush()
        .await
        .map_err(|e| format!("sending the message: {e}"))?;
    expect(&mut conn, 250, "end of DATA").await?;
    // The message is accepted: what follows cannot undo that, so it is not waited for (a
    // relay slow to answer QUIT must not make an accepted message look failed, and be
    // sent again).
    quit(conn);
    Ok(delivery)
}

/// Runs the TLS handshake over `conn`, verifying the relay's certificate.
async fn handshake(settings: &SmtpSettings, conn: Connection) -> Result<Connection, String> {
    let (config, name) = settings
        .client
        .clone()
        .ok_or("TLS is asked for without a TLS configuration")?;
    let tls = tokio_rustls::TlsConnector::from(config)
        .connect(name, conn.into_inner())
        .await
        .map_err(|e| {
            let hint = if e.to_string().contains("CaUsedAsEndEntity") {
                "; the relay's certificate is marked as a CA: give smtp_ca_file the CA that \
                 signed it, or make the relay's certificate with basicConstraints CA:FALSE"
            } else {
                ""
            };
            format!("TLS with SMTP relay {}: {e}{hint}", settings.relay)
        })?;
    Ok(BufReader::new(Box::new(tls)))
}

/// Says EHLO and returns the extensions the relay offers (`STARTTLS`, `AUTH PLAIN LOGIN`).
async fn ehlo(conn: &mut Connection) -> Result<Vec<String>, String> {
    command(conn, "EHLO chaperone").await?;
    let (code, lines) = reply_lines(conn, "EHLO").await?;
    if code != 250 {
        return Err(format!(
            "{REFUSED} EHLO: {}",
            lines.last().map_or("", String::as_str)
        ));
    }
    Ok(lines
        .iter()
        .skip(1)
        .filter_map(|line| line.get(4..))
        .map(|e| e.trim().to_owned())
        .collect())
}

/// Logs in with AUTH PLAIN, or LOGIN when the relay offers only that.
async fn login(
    conn: &mut Connection,
    extensions: &[String],
    username: &str,
    password: &BearerToken,
) -> Result<(), String> {
    use base64::Engine;
    let b64 = |bytes: &[u8]| {
        zeroize::Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(bytes))
    };
    let offered: Vec<String> = extensions
        .iter()
        .filter_map(|e| {
            let upper = e.to_ascii_uppercase();
            upper
                .strip_prefix("AUTH ")
                .or_else(|| upper.strip_prefix("AUTH="))
                .map(str::to_owned)
        })
        .flat_map(|m| m.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
        .collect();
    let refused = |line: String| format!("the SMTP relay refused the login: {line}");
    if offered.iter().any(|m| m == "PLAIN") {
        let mut credentials = zeroize::Zeroizing::new(Vec::new());
        credentials.push(0);
        credentials.extend_from_slice(username.as_bytes());
        credentials.push(0);
        credentials.extend_from_slice(password.expose().as_bytes());
        let line = zeroize::Zeroizing::new(format!("AUTH PLAIN {}", *b64(&credentials)));
        command(conn, &line).await?;
    } else if offered.iter().any(|m| m == "LOGIN") {
        command(conn, "AUTH LOGIN").await?;
        for (step, value) in [
            ("AUTH LOGIN", username),
            ("the username", password.expose()),
        ] {
            match reply(conn, step).await? {
                (334, _) => command(conn, &b64(value.as_bytes())).await?,
                (_, line) => return Err(refused(line)),
            }
        }
    } else {
        return Err("the SMTP relay offers neither AUTH PLAIN nor AUTH LOGIN".into());
    }
    match reply(conn, "AUTH").await? {
        (235, _) => Ok(()),
        (_, line) => Err(refused(line)),
    }
}

/// Says QUIT and waits a little for the answer, in a task of its own; its outcome changes
/// nothing.
fn quit(mut conn: Connection) {
    tokio::spawn(async move {
        let _ = tokio::time::timeout(Duration::from_secs(5), async {
            command(&mut conn, "QUIT").await?;
            expect(&mut conn, 221, "QUIT").await
        })
        .await;
    });
}

/// The message as sent after DATA, ending with the lone dot: the headers RFC 5322 requires
/// (`Date`, `From`) and those strict relays and filters look for (`Message-ID`,
/// `MIME-Version`), and the body as 7-bit text when it is ASCII, base64 otherwise (no relay
/// is relied on to carry 8-bit text).
fn format_message(from: &str, message: &Message<'_>) -> String {
    use base64::Engine;
    let subject = header_text(message.subject);
    // Recipients are in the envelope only: a reminder goes to a contractor and their
    // vendor's owner, who need not learn each other's addresses.
    let shown = match message.to {
        [one] => format!("<{one}>"),
        _ => "undisclosed-recipients:;".to_owned(),
    };
    let date =
        time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(message.date.unix_nanos()))
            .ok()
            .and_then(|d| {
                d.format(&time::format_description::well_known::Rfc2822)
                    .ok()
            })
            .unwrap_or_default();
    let domain = from.rsplit_once('@').map_or("localhost", |(_, d)| d);
    let id: String = message
        .id
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
        .collect();
    let lines = body_lines(message.body);
    let ascii = lines.iter().all(|l| l.is_ascii());
    let encoding = if ascii { "7bit" } else { "base64" };
    let mut out = format!(
        "Date: {date}\r\nFrom: Chaperone <{from}>\r\nTo: {shown}\r\nSubject: {subject}\r\n\
         Message-ID: <{id}@{domain}>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; \
         charset=utf-8\r\nContent-Transfer-Encoding: {encoding}\r\n\
         Auto-Submitted: auto-generated\r\n\r\n",
    );
    let body_lines: Vec<String> = if ascii {
        lines
    } else {
        let encoded = base64::engine::general_purpose::STANDARD.encode(lines.join("\r\n"));
        encoded
            .as_bytes()
            .chunks(76)
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .collect()
    };
    for line in body_lines {
        // Dot-stuffing (RFC 5321 §4.5.2): a line starting with a dot gets another.
        if line.starts_with('.') {
            out.push('.');
        }
        out.push_str(&line);
        out.push_str("\r\n");
    }
    out.push_str(".\r\n");
    out
}

/// How an answer the relay gave, but not the one expected, starts.
const REFUSED: &str = "the SMTP relay refused";

/// A header value: control characters become spaces, at most 200 characters, and RFC 2047
/// encoded words when it is not plain ASCII: each at most 60 characters (36 bytes of text,
/// whole characters), one per folded line, so that no line passes RFC 2047's 76, the
/// first's `Subject: ` included.
fn header_text(text: &str) -> String {
    use base64::Engine;
    let clean: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(200)
        .collect();
    if clean.is_ascii() {
        return clean;
    }
    let mut words = Vec::new();
    let mut rest = clean.as_str();
    while !rest.is_empty() {
        let mut cut = rest.len().min(36);
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        let (word, tail) = rest.split_at(cut);
        words.push(format!(
            "=?utf-8?B?{}?=",
            base64::engine::general_purpose::STANDARD.encode(word.as_bytes())
        ));
        rest = tail;
    }
    words.join("\r\n ")
}

/// The body's lines without CR or other line breaks, none longer than 998 octets.
fn body_lines(body: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in body.split('\n') {
        let line: String = line.chars().filter(|&c| c != '\r').collect();
        let mut rest = line.as_str();
        while rest.len() > 998 {
            let mut cut = 998;
            while !rest.is_char_boundary(cut) {
                cut -= 1;
            }
            out.push(rest[..cut].to_owned());
            rest = &rest[cut..];
        }
        out.push(rest.to_owned());
    }
    out
}

async fn command(conn: &mut Connection, line: &str) -> Result<(), String> {
    let mut bytes = zeroize::Zeroizing::new(Vec::with_capacity(line.len() + 2));
    bytes.extend_from_slice(line.as_bytes());
    bytes.extend_from_slice(b"\r\n");
    async {
        conn.write_all(&bytes).await?;
        conn.flush().await
    }
    .await
    .map_err(|e| format!("writing to the SMTP relay: {e}"))
}

/// The longest answer line read, and the most lines of one answer.
const MAX_LINE: u64 = 2048;
const MAX_LINES: usize = 100;

/// Reads one (possibly multi-line) reply: its code (0 when it has none) and its lines.
async fn reply_lines(conn: &mut Connection, step: &str) -> Result<(u16, Vec<String>), String> {
    let mut lines = Vec::new();
    loop {
        let mut line = String::new();
        let n = (&mut *conn)
            .take(MAX_LINE)
            .read_line(&mut line)
            .await
            .map_err(|e| format!("reading the SMTP relay's answer to {step}: {e}"))?;
        if n == 0 {
            return Err(format!("the SMTP relay closed the connection at {step}"));
        }
        if !line.ends_with('\n') || lines.len() == MAX_LINES {
            return Err(format!("the SMTP relay's answer to {step} is too long"));
        }
        let last = line.as_bytes().get(3) != Some(&b'-');
        lines.push(line.trim_end().to_owned());
        if last {
            let code = line.get(..3).and_then(|c| c.parse().ok()).unwrap_or(0);
            return Ok((code, lines));
        }
    }
}

/// Reads one reply: its code (0 when it has none) and last line.
async fn reply(conn: &mut Connection, step: &str) -> Result<(u16, String), String> {
    let (code, mut lines) = reply_lines(conn, step).await?;
    Ok((code, lines.pop().unwrap_or_default()))
}

/// Reads one reply and checks its code.
async fn expect(conn: &mut Connection, code: u16, step: &str) -> Result<(), String> {
    match reply(conn, step).await? {
        (got, _) if got == code || (code == 250 && got == 251) => Ok(()),
        (_, line) => Err(format!("{REFUSED} {step}: {line}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_text_cannot_break_out() {
        assert_eq!(header_text("a\r\nBcc: x"), "a  Bcc: x");
        assert_eq!(header_text("Grüße"), "=?utf-8?B?R3LDvMOfZQ==?=");
        // Long text becomes several encoded words, folded; with `Subject: ` before the first,
        // no line passes 76 characters.
        let long = header_text(&"🔑".repeat(200));
        let words: Vec<&str> = long.split("\r\n ").collect();
        assert!(words.len() > 1);
        for word in &words {
            assert!(
                "Subject: ".len() + word.len() <= 76 && word.starts_with("=?utf-8?B?"),
                "{word}"
            );
        }
        let decoded: Vec<u8> = words
            .iter()
            .flat_map(|w| {
                use base64::Engine;
                let b64 = &w["=?utf-8?B?".len()..w.len() - 2];
                base64::engine::general_purpose::STANDARD
                    .decode(b64)
                    .unwrap()
            })
            .collect();
        assert_eq!(String::from_utf8(decoded).unwrap(), "🔑".repeat(200));
        let lines = body_lines("one\r.\rtwo\nthree");
        assert_eq!(lines, ["one.two", "three"]);
        let long = "é".repeat(700);
        assert!(body_lines(&long).iter().all(|l| l.len() <= 998));
        assert_eq!(body_lines(&long).concat(), long);
    }

    #[test]
    fn messages_carry_the_headers_relays_require_and_non_ascii_text_as_base64() {
        let to = ["ann@example.com".to_owned()];
        let message = |body| Message {
            to: &to,
            subject: "Hello",
            body,
            id: "ntf_1.2",
            // 2026-11-27T09:00:00Z
            date: chaperone_core::Timestamp::from_unix_nanos(1_795_770_000 * 1_000_000_000),
        };
        let plain = format_message("chaperone@example.com", &message("one\n.two"));
        let (headers, body) = plain.split_once("\r\n\r\n").unwrap();
        for header in [
            "Date: Fri, 27 Nov 2026 09:00:00 +0000",
            "Message-ID: <ntf_1.2@example.com>",
            "MIME-Version: 1.0",
            "Content-Transfer-Encoding: 7bit",
            "To: <ann@example.com>",
        ] {
            assert!(headers.lines().any(|l| l == header), "{header}: {headers}");
        }
        assert_eq!(body, "one\r\n..two\r\n.\r\n");
        let accented = format_message("chaperone@example.com", &message("Grüße\nJosé"));
        let (headers, body) = accented.split_once("\r\n\r\n").unwrap();
        assert!(
            headers.contains("Content-Transfer-Encoding: base64"),
            "{headers}"
        );
        use base64::Engine;
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(body.trim_end_matches(".\r\n").replace("\r\n", ""))
            .unwrap();
        assert_eq!(String::from_utf8(decoded).unwrap(), "Grüße\r\nJosé");
    }

    #[test]
    fn a_relay_refusing_to_relay_is_told_from_a_missing_mailbox() {
        for relay in [
            "550 5.7.1 Relaying denied",
            "554 5.7.1 <x@y.z>: Relay access denied",
            "530 5.7.0 Authentication required",
            "550 5.4.1 Recipient address rejected: Access denied",
            "554 Transaction failed",
            "550 relaying not permitted",
        ] {
            assert!(refuses_relaying(relay), "{relay}");
        }
        for mailbox in [
            "550 5.1.1 no such mailbox",
            "550 5.2.1 mailbox disabled",
            "553 5.1.3 bad address syntax",
            "550 No such user",
        ] {
            assert!(!refuses_relaying(mailbox), "{mailbox}");
        }
    }

    #[test]
    fn addresses_that_could_inject_are_refused() {
        assert!(valid_address("ann@example.com"));
        for bad in [
            "ann",
            "@example.com",
            "ann@localhost",
            "ann@example.com\r\nRCPT TO:<x@y.z>",
            "a b@example.com",
            "<ann@example.com>",
        ] {
            assert!(!valid_address(bad), "{bad}");
        }
    }
}
