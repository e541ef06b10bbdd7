//! A minimal SMTP client (RFC 5321) for notifications: one message to a relay, in plain
//! SMTP, the way a local MTA (Postfix, an SMTP sidecar) accepts mail and carries it onward
//! over TLS. It speaks EHLO, MAIL, RCPT, DATA and QUIT, nothing else: no authentication and
//! no STARTTLS, so the relay belongs on loopback or a private network (see
//! `docs/governance.md`). Messages carry names, paths and dates, never a secret value.
//!
//! Typed text (a request's reason) cannot add headers or end the message early: addresses
//! with anything but plain address characters are refused; the subject loses its control
//! characters and is RFC 2047-encoded when not ASCII; the body's lines lose stray CRs, are
//! cut at 998 octets and are dot-stuffed (and base64-encoded when not ASCII).

use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// Where and as whom mail is sent.
#[derive(Clone, Debug)]
pub struct SmtpSettings {
    /// The relay, `host:port`.
    pub relay: String,
    /// The sender address.
    pub from: String,
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

async fn send_inner(settings: &SmtpSettings, message: &Message<'_>) -> Result<Delivery, String> {
    let to = message.to;
    if !valid_address(&settings.from) || to.iter().any(|a| !valid_address(a)) || to.is_empty() {
        return Err("invalid sender or recipient address".into());
    }
    let stream = TcpStream::connect(&settings.relay)
        .await
        .map_err(|e| format!("connecting to SMTP relay {}: {e}", settings.relay))?;
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    expect(&mut read, 220, "greeting").await?;
    command(&mut write, "EHLO chaperone").await?;
    expect(&mut read, 250, "EHLO").await?;
    command(&mut write, &format!("MAIL FROM:<{}>", settings.from)).await?;
    expect(&mut read, 250, "MAIL FROM").await?;
    let mut delivery = Delivery::default();
    for address in to {
        command(&mut write, &format!("RCPT TO:<{address}>")).await?;
        let (code, line) = reply(&mut read, "RCPT TO").await?;
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
        quit(read, write);
        return Ok(delivery);
    }
    command(&mut write, "DATA").await?;
    expect(&mut read, 354, "DATA").await?;
    write
        .write_all(format_message(&settings.from, message).as_bytes())
        .await
        .map_err(|e| format!("sending the message: {e}"))?;
    expect(&mut read, 250, "end of DATA").await?;
    // The message is accepted: what follows cannot undo that, so it is not waited for (a
    // relay slow to answer QUIT must not make an accepted message look failed, and be
    // sent again).
    quit(read, write);
    Ok(delivery)
}

/// Says QUIT and waits a little for the answer, in a task of its own; its outcome changes
/// nothing.
fn quit(
    mut read: BufReader<tokio::net::tcp::OwnedReadHalf>,
    mut write: tokio::net::tcp::OwnedWriteHalf,
) {
    tokio::spawn(async move {
        let _ = tokio::time::timeout(Duration::from_secs(5), async {
            command(&mut write, "QUIT").await?;
            expect(&mut read, 221, "QUIT").await
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

async fn command(write: &mut tokio::net::tcp::OwnedWriteHalf, line: &str) -> Result<(), String> {
    write
        .write_all(format!("{line}\r\n").as_bytes())
        .await
        .map_err(|e| format!("writing to the SMTP relay: {e}"))
}

/// Reads one (possibly multi-line) reply: its code (0 when it has none) and last line.
async fn reply(
    read: &mut BufReader<tokio::net::tcp::OwnedReadHalf>,
    step: &str,
) -> Result<(u16, String), String> {
    loop {
        let mut line = String::new();
        let n = read
            .read_line(&mut line)
            .await
            .map_err(|e| format!("reading the SMTP relay's answer to {step}: {e}"))?;
        if n == 0 {
            return Err(format!("the SMTP relay closed the connection at {step}"));
        }
        if line.as_bytes().get(3) != Some(&b'-') {
            let code = line.get(..3).and_then(|c| c.parse().ok()).unwrap_or(0);
            return Ok((code, line.trim_end().to_owned()));
        }
    }
}

/// Reads one reply and checks its code.
async fn expect(
    read: &mut BufReader<tokio::net::tcp::OwnedReadHalf>,
    code: u16,
    step: &str,
) -> Result<(), String> {
    match reply(read, step).await? {
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
