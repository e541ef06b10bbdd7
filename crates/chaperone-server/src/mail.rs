//! A minimal SMTP client (RFC 5321) for notifications: one message to a relay, in plain
//! SMTP, the way a local MTA (Postfix, an SMTP sidecar) accepts mail and carries it onward
//! over TLS. It speaks EHLO, MAIL, RCPT, DATA and QUIT, nothing else: no authentication and
//! no STARTTLS, so the relay belongs on loopback or a private network (see
//! `docs/governance.md`). Messages carry names, paths and dates, never a secret value.
//!
//! Typed text (a request's reason) cannot add headers or end the message early: addresses
//! with anything but plain address characters are refused; the subject loses its control
//! characters and is RFC 2047-encoded when not ASCII; the body's lines lose stray CRs, are
//! cut at 998 octets and are dot-stuffed.

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

/// Sends one message; the error says which step failed and what the relay answered. A
/// recipient the relay refuses (a mistyped or deleted mailbox) does not keep the message from
/// the others: the refused addresses are returned with the relay's answer, and only a
/// message nobody accepted fails.
pub(crate) async fn send(
    settings: &SmtpSettings,
    to: &[String],
    subject: &str,
    body: &str,
) -> Result<Vec<(String, String)>, String> {
    tokio::time::timeout(
        Duration::from_secs(20),
        send_inner(settings, to, subject, body),
    )
    .await
    .map_err(|_| format!("SMTP relay {} timed out", settings.relay))?
}

async fn send_inner(
    settings: &SmtpSettings,
    to: &[String],
    subject: &str,
    body: &str,
) -> Result<Vec<(String, String)>, String> {
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
    let mut refused = Vec::new();
    for address in to {
        command(&mut write, &format!("RCPT TO:<{address}>")).await?;
        match expect(&mut read, 250, "RCPT TO").await {
            Ok(()) => {}
            Err(e) if e.starts_with(REFUSED) => refused.push((address.clone(), e)),
            Err(e) => return Err(e),
        }
    }
    if refused.len() == to.len() {
        let answers: Vec<&str> = refused.iter().map(|(_, e)| e.as_str()).collect();
        return Err(answers.join("; "));
    }
    command(&mut write, "DATA").await?;
    expect(&mut read, 354, "DATA").await?;
    let subject = header_text(subject);
    // Recipients are in the envelope only: a reminder goes to a contractor and their
    // vendor's owner, who need not learn each other's addresses.
    let shown = match to {
        [one] => format!("<{one}>"),
        _ => "undisclosed-recipients:;".to_owned(),
    };
    let mut message = format!(
        "From: Chaperone <{}>\r\nTo: {shown}\r\nSubject: {subject}\r\nContent-Type: \
         text/plain; charset=utf-8\r\nAuto-Submitted: auto-generated\r\n\r\n",
        settings.from,
    );
    for line in body_lines(body) {
        // Dot-stuffing (RFC 5321 §4.5.2): a line starting with a dot gets another.
        if line.starts_with('.') {
            message.push('.');
        }
        message.push_str(&line);
        message.push_str("\r\n");
    }
    message.push_str(".\r\n");
    write
        .write_all(message.as_bytes())
        .await
        .map_err(|e| format!("sending the message: {e}"))?;
    expect(&mut read, 250, "end of DATA").await?;
    command(&mut write, "QUIT").await?;
    // The message is accepted; a relay that hangs up without answering QUIT changes nothing.
    let _ = expect(&mut read, 221, "QUIT").await;
    Ok(refused)
}

/// How an answer the relay gave, but not the one expected, starts.
const REFUSED: &str = "the SMTP relay refused";

/// A header value: control characters become spaces, at most 200 characters, and RFC 2047
/// encoded words when it is not plain ASCII: each at most 75 characters (45 bytes of text,
/// whole characters), one per folded line, as strict relays require.
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
        let mut cut = rest.len().min(45);
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

/// Reads one (possibly multi-line) reply and checks its code.
async fn expect(
    read: &mut BufReader<tokio::net::tcp::OwnedReadHalf>,
    code: u16,
    step: &str,
) -> Result<(), String> {
    loop {
        let mut line = String::new();
        let n = read
            .read_line(&mut line)
            .await
            .map_err(|e| format!("reading the SMTP relay's answer to {step}: {e}"))?;
        if n == 0 {
            return Err(format!("the SMTP relay closed the connection at {step}"));
        }
        let got: Option<u16> = line.get(..3).and_then(|c| c.parse().ok());
        let last = line.as_bytes().get(3) != Some(&b'-');
        if last {
            return match got {
                Some(got) if got == code || (code == 250 && got == 251) => Ok(()),
                _ => Err(format!("{REFUSED} {step}: {}", line.trim_end())),
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_text_cannot_break_out() {
        assert_eq!(header_text("a\r\nBcc: x"), "a  Bcc: x");
        assert_eq!(header_text("Grüße"), "=?utf-8?B?R3LDvMOfZQ==?=");
        // Long text becomes several encoded words of at most 75 characters, folded.
        let long = header_text(&"🔑".repeat(200));
        let words: Vec<&str> = long.split("\r\n ").collect();
        assert!(words.len() > 1);
        for word in &words {
            assert!(word.len() <= 75 && word.starts_with("=?utf-8?B?"), "{word}");
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
