//! One module per group of subcommands.

pub(crate) mod backup;
pub(crate) mod governance;
pub(crate) mod identity;
pub(crate) mod ledger;
pub(crate) mod operator;
pub(crate) mod scan;
pub(crate) mod seal;
pub(crate) mod secret;
pub(crate) mod server;
pub(crate) mod share;
