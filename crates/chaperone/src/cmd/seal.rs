//! `chaperone unseal` and `chaperone seal`.

use std::io::{BufRead as _, IsTerminal as _};

use anyhow::bail;
use serde_json::{Value, json};
use zeroize::Zeroizing;

use crate::client::{Client, ClientArgs, Method};

/// `chaperone unseal`.
#[derive(clap::Args, Debug)]
pub(crate) struct UnsealArgs {
    #[command(flatten)]
    client: ClientArgs,
}

pub(crate) fn unseal(args: UnsealArgs) -> anyhow::Result<()> {
    let client = Client::new(&args.client);
    let mut status = client.call(Method::Get, "sys/seal-status", None)?;
    if status["initialized"] != Value::Bool(true) {
        bail!("the server is not initialised; run `chaperone init` first");
    }
    if status["sealed"] == Value::Bool(false) {
        println!("The server is already unsealed.");
        return Ok(());
    }
    let interactive = std::io::stdin().is_terminal();
    let mut lines = std::io::stdin().lock().lines();
    let mut given = 0;
    while status["sealed"] == Value::Bool(true) {
        let progress = status["progress"].as_u64().unwrap_or(0);
        let threshold = status["threshold"].as_u64().unwrap_or(0);
        let next = if interactive {
            super::prompt_secret_or_end(
                &format!(
                    "Unseal share ({} of {threshold}; Ctrl-D when done): ",
                    progress + 1
                ),
                "give the shares on stdin, one per line",
            )?
        } else {
            lines.next().transpose()?.map(Zeroizing::new)
        };
        let Some(share) = next else {
            // Each holder may give their own share from their own machine: one given here
            // is a success, and the others follow.
            if given > 0 {
                println!(
                    "The server is still sealed: {} more share(s) needed, from other holders.",
                    threshold.saturating_sub(progress)
                );
                return Ok(());
            }
            bail!(
                "no share was given; the server is still sealed ({progress} of {threshold} \
                 given)"
            );
        };
        if share.trim().is_empty() {
            continue;
        }
        status = client.call(
            Method::Post,
            "sys/unseal",
            Some(&json!({ "share": share.trim() })),
        )?;
        given += 1;
        if status["sealed"] == Value::Bool(true) {
            println!(
                "Share accepted: {} of {} given.",
                status["progress"].as_u64().unwrap_or(0),
                status["threshold"].as_u64().unwrap_or(0)
            );
        }
    }
    println!("Unsealed.");
    Ok(())
}

pub(crate) fn seal(args: ClientArgs) -> anyhow::Result<()> {
    Client::authenticated(&args)?.call(Method::Post, "sys/seal", None)?;
    println!("Sealed. The server answers 503 until it is unsealed again.");
    Ok(())
}
