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

/// Asks for a secret on the terminal, without echo. Without a terminal the error says
/// which other way `hint` gives (a flag, an environment variable), not the operating
/// system's "No such device or address".
pub(crate) fn prompt_secret(
    prompt: &str,
    hint: &str,
) -> anyhow::Result<zeroize::Zeroizing<String>> {
    rpassword::prompt_password(prompt)
        .map(zeroize::Zeroizing::new)
        .map_err(|e| anyhow::anyhow!("cannot ask for it here ({e}): no terminal; {hint}"))
}
