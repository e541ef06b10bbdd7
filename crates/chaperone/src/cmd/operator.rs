//! `chaperone operator rekey` and `chaperone operator rotate`: key management on a running
//! server (admin).

use std::io::{BufRead as _, IsTerminal as _, Write as _};
use std::time::Duration;

use anyhow::bail;
use serde_json::{Value, json};
use zeroize::Zeroizing;

use crate::client::{Client, ClientArgs, Method};

/// `chaperone operator ...`.
#[derive(clap::Subcommand, Debug)]
pub(crate) enum OperatorCommand {
    /// Issue new unseal shares for the same root key; the current shares stop working.
    /// A quorum of current shares is asked for (prompted, or one per line on stdin). Shown
    /// on a terminal, the new shares are put in force at once; written anywhere else (a
    /// file, a pipe), they are put in force only by `--verify NONCE` with a quorum of them.
    Rekey {
        /// Number of new shares.
        #[arg(long, required_unless_present = "verify")]
        shares: Option<u8>,
        /// Number of new shares needed to unseal.
        #[arg(long, required_unless_present = "verify")]
        threshold: Option<u8>,
        /// Put in force the rekey with this nonce: a quorum of its new shares is asked for
        /// (prompted, or on stdin: one per line, or the lines the rekey printed).
        #[arg(long, value_name = "NONCE", conflicts_with_all = ["shares", "threshold"])]
        verify: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Start a new key-encryption-key generation and re-wrap every stored key under it.
    Rotate {
        /// Only show the generation and the progress of re-wrapping.
        #[arg(long)]
        status: bool,
        /// Return once the generation has started, without waiting for the re-wrapping.
        #[arg(long)]
        no_wait: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
}

pub(crate) fn run(command: OperatorCommand) -> anyhow::Result<()> {
    match command {
        OperatorCommand::Rekey {
            shares,
            threshold,
            verify,
            client,
        } => {
            let client = Client::authenticated(&client)?;
            match (verify, shares, threshold) {
                (Some(nonce), _, _) => verify_rekey(&client, &nonce, None),
                (None, Some(shares), Some(threshold)) => rekey(&client, shares, threshold),
                _ => bail!("give --shares and --threshold, or --verify NONCE"),
            }
        }
        OperatorCommand::Rotate {
            status,
            no_wait,
            client,
        } => rotate(&Client::authenticated(&client)?, status, no_wait),
    }
}

fn rekey(client: &Client, shares: u8, threshold: u8) -> anyhow::Result<()> {
    let status = client.call(Method::Get, "sys/seal-status", None)?;
    if status["seal_kind"] != "shamir" {
        bail!(
            "this server unseals from a key file; rekeying is for servers made with `chaperone init`"
        );
    }
    let needed = status["threshold"].as_u64().unwrap_or(0);
    let interactive = std::io::stdin().is_terminal();
    let mut lines = std::io::stdin().lock().lines();
    let mut current: Vec<Zeroizing<String>> = Vec::new();
    while (current.len() as u64) < needed {
        let share = if interactive {
            super::prompt_secret(
                &format!("Current unseal share ({} of {needed}): ", current.len() + 1),
                "give the shares on stdin, one per line",
            )?
        } else {
            match lines.next() {
                Some(line) => Zeroizing::new(line?),
                None => bail!(
                    "stdin ended after {} of {needed} current shares; nothing was changed",
                    current.len()
                ),
            }
        };
        if !share.trim().is_empty() {
            current.push(Zeroizing::new(share.trim().to_owned()));
        }
    }
    let body = json!({
        "current_shares": current.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
        "shares": shares,
        "threshold": threshold,
    });
    let answer = client.call(Method::Post, "sys/rekey", Some(&body))?;
    let new: Vec<&str> = answer["shares"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let nonce = answer["nonce"].as_str().unwrap_or_default().to_owned();
    // The shares are written out before they are put in force: if they cannot be shown,
    // nothing changes and the current shares keep working.
    let on_terminal = std::io::stdout().is_terminal();
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "New unseal shares: any {threshold} of these {shares} unseal this server once the rekey \
         completes.\nGive each to a different person; they are shown only now and stored \
         nowhere.\n"
    )?;
    for (i, share) in new.iter().enumerate() {
        writeln!(out, "Unseal share {}: {share}", i + 1)?;
    }
    out.flush()?;
    if !on_terminal {
        // Security decision: written to a file or a pipe, the shares may be lost without
        // this process knowing (a reader that stops early, a disk that fills up at the far
        // end). Put in force then, they would lock the server out for good. So they are put
        // in force only when a quorum of them comes back from wherever they were written.
        writeln!(
            out,
            "\nRekey nonce: {nonce}\nNot in force yet: the current shares still unseal. Within ten \
             minutes, run `chaperone operator rekey --verify {nonce}` against this same server \
             with {threshold} of the shares above (at the prompt, or on stdin)."
        )?;
        out.flush()?;
        // Said on stderr too, and as a failure: a script that hands the new shares out and
        // destroys the old ones must stop here, not after the rekey has lapsed.
        bail!(
            "the new shares are NOT in force yet (rekey nonce {nonce}): run `chaperone operator \
             rekey --verify {nonce}` against this same server within ten minutes, with \
             {threshold} of them; until then the current shares still unseal"
        );
    }
    drop(out);
    let quorum: Vec<Zeroizing<String>> = new
        .iter()
        .take(usize::from(threshold))
        .map(|s| Zeroizing::new((*s).to_owned()))
        .collect();
    verify_rekey(client, &nonce, Some(quorum))
}

/// The second step of a rekey: a quorum of its new shares (given, or asked for) puts them in
/// force.
fn verify_rekey(
    client: &Client,
    nonce: &str,
    given: Option<Vec<Zeroizing<String>>>,
) -> anyhow::Result<()> {
    let shares = match given {
        Some(shares) => shares,
        None => new_shares_from_holders()?,
    };
    let verified = client.call(
        Method::Post,
        "sys/rekey/verify",
        Some(&json!({
            "nonce": nonce,
            "shares": shares.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
        })),
    );
    match verified {
        Ok(_) => {
            // Said, if it can be: a closed output changes nothing done.
            let _ = writeln!(
                std::io::stdout(),
                "\nRekeyed: the new shares are in force; the old shares open nothing."
            );
            Ok(())
        }
        // Only a refusal the server answered before storing anything is a sure "no". A lost
        // connection or a timeout says nothing: the server may have stored the new wrapping
        // after the client gave up, and an operator told otherwise would throw away the
        // only shares that unseal it.
        Err(error)
            if error
                .downcast_ref::<crate::client::Refused>()
                .is_some_and(|r| {
                    matches!(
                        r.code.as_str(),
                        "wrong_shares" | "no_rekey" | "invalid_share"
                    )
                }) =>
        {
            bail!(
                "the new shares were NOT put in force ({error}); the current shares still \
                 unseal"
            )
        }
        Err(error) => bail!(
            "the rekey's outcome is unknown ({error}): the new shares may be in force. Keep \
             BOTH the current shares and the new ones until `chaperone ledger search \
             --action sys.rekey` shows whether a rekey was recorded just now (if it was, the \
             new shares unseal and the current ones do not; if not, `chaperone operator rekey \
             --verify {nonce}` puts them in force within ten minutes of the first step)"
        ),
    }
}

/// New shares for `--verify`: at the prompt until an empty answer, or every share on stdin
/// (one per line, or the `Unseal share N: ...` lines a rekey printed; other lines are
/// ignored).
fn new_shares_from_holders() -> anyhow::Result<Vec<Zeroizing<String>>> {
    let mut shares = Vec::new();
    if std::io::stdin().is_terminal() {
        loop {
            let share = super::prompt_secret_or_end(
                &format!(
                    "New unseal share ({}; Enter alone or Ctrl-D when done): ",
                    shares.len() + 1
                ),
                "give the shares on stdin, one per line",
            )?;
            let Some(share) = share.filter(|s| !s.trim().is_empty()) else {
                break;
            };
            shares.push(Zeroizing::new(share.trim().to_owned()));
        }
    } else {
        for line in std::io::stdin().lock().lines() {
            let line = Zeroizing::new(line?);
            let text = line.trim();
            let share = match text.strip_prefix("Unseal share ") {
                Some(rest) => rest.split_once(": ").map(|(_, share)| share.trim()),
                None if !text.is_empty() && !text.contains(' ') => Some(text),
                None => None,
            };
            if let Some(share) = share {
                shares.push(Zeroizing::new(share.to_owned()));
            }
        }
    }
    if shares.is_empty() {
        bail!("no new share was given; nothing was changed, and the current shares still unseal");
    }
    Ok(shares)
}

fn rotate(client: &Client, status_only: bool, no_wait: bool) -> anyhow::Result<()> {
    let mut status = if status_only {
        client.call(Method::Get, "sys/rotate", None)?
    } else {
        let status = client.call(Method::Post, "sys/rotate", None)?;
        println!(
            "Key-encryption key generation {} started: new keys are wrapped under it.",
            status["generation"]
        );
        status
    };
    if status_only || no_wait {
        print_status(&status);
        return Ok(());
    }
    let progress_line = std::io::stderr().is_terminal();
    // Bounded: a pass that makes no progress for ten minutes is reported, not waited for.
    let mut stalled = 0;
    let mut last_scanned = 0;
    while status["rewrapped_generation"] != status["generation"] {
        std::thread::sleep(Duration::from_millis(500));
        status = client.call(Method::Get, "sys/rotate", None)?;
        let scanned = status["progress"]["scanned"].as_u64().unwrap_or(0);
        if progress_line {
            eprint!(
                "\rRe-wrapping: {scanned} of {} keys looked at, {} re-wrapped",
                status["progress"]["total"], status["progress"]["rewrapped"]
            );
        }
        if let Some(error) = status["progress"]["error"].as_str() {
            eprintln!();
            bail!("re-wrapping stopped: {error} (the server retries; check with --status)");
        }
        stalled = if scanned == last_scanned {
            stalled + 1
        } else {
            0
        };
        last_scanned = scanned;
        if stalled > 1200 {
            bail!("re-wrapping has made no progress for ten minutes; check with --status");
        }
    }
    if progress_line {
        eprintln!();
    }
    print_status(&status);
    Ok(())
}

fn print_status(status: &Value) {
    println!(
        "Generation {}; every stored key is wrapped under generation {} or later.",
        status["generation"], status["rewrapped_generation"]
    );
    let progress = &status["progress"];
    if progress["target"].as_u64().is_some_and(|t| t > 0) {
        println!(
            "Last pass{}: {} of {} keys looked at, {} re-wrapped.",
            if progress["running"] == true {
                " (running)"
            } else {
                ""
            },
            progress["scanned"],
            progress["total"],
            progress["rewrapped"]
        );
    }
}
