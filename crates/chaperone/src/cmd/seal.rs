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
    while status["sealed"] == Value::Bool(true) {
        let progress = status["progress"].as_u64().unwrap_or(0);
        let threshold = status["threshold"].as_u64().unwrap_or(0);
        let share = if interactive {
            Zeroizing::new(rpassword::prompt_password(format!(
                "Unseal share ({} of {threshold}): ",
                progress + 1
            ))?)
        } else {
            match lines.next() {
                Some(line) => Zeroizing::new(line?),
                None => bail!(
                    "stdin ended after {progress} of {threshold} shares; the server is still sealed"
                ),
            }
        };
        if share.trim().is_empty() {
            continue;
        }
        status = client.call(
            Method::Post,
            "sys/unseal",
            Some(&json!({ "share": share.trim() })),
        )?;
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
