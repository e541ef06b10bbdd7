//! `chaperone ledger ...`: the tamper-evident ledger.

use clap::Subcommand;

use crate::client::{Client, ClientArgs};

/// `chaperone ledger ...`
#[derive(Subcommand, Debug)]
pub(crate) enum LedgerCommand {
    /// Print the ledger's verifier key (`name+hex8+base64`), for offline verification.
    Key {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Print a fresh signed checkpoint of the ledger.
    Checkpoint {
        #[command(flatten)]
        client: ClientArgs,
    },
}

pub(crate) fn run(command: LedgerCommand) -> anyhow::Result<()> {
    match command {
        LedgerCommand::Key { client } => print!("{}", Client::new(&client).text("ledger/key")?),
        LedgerCommand::Checkpoint { client } => {
            print!(
                "{}",
                Client::authenticated(&client)?.text("ledger/checkpoint")?
            )
        }
    }
    Ok(())
}
