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

/// A text field of a server's answer, for a terminal (`missing` when it has none). Other
/// people write much of what is listed (a contractor's reason or note, a share's label), so
/// control characters and text direction controls are escaped: an escape sequence cannot
/// overwrite what a list shows, nor a line break forge a row of it.
pub(crate) fn shown<'a>(
    value: &'a serde_json::Value,
    missing: &'a str,
) -> std::borrow::Cow<'a, str> {
    chaperone_scan::output::printable(value.as_str().unwrap_or(missing))
}

/// The next line of stdin, which must hold `what` (stdin's buffer is shared, so a second
/// call reads the second line). For secrets a script hands over without putting them in the
/// process list.
pub(crate) fn line_of_stdin(what: &str) -> anyhow::Result<zeroize::Zeroizing<String>> {
    use std::io::BufRead as _;
    let mut line = zeroize::Zeroizing::new(String::new());
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| anyhow::anyhow!("reading the {what} from stdin: {e}"))?;
    let trimmed = zeroize::Zeroizing::new(line.trim_end_matches(['\r', '\n']).to_owned());
    if trimmed.is_empty() {
        anyhow::bail!("no {what} on stdin");
    }
    Ok(trimmed)
}

/// Asks for a secret on the terminal, without echo. Without a terminal the error says
/// which other way `hint` gives (a flag, an environment variable), not the operating
/// system's "No such device or address".
pub(crate) fn prompt_secret(
    prompt: &str,
    hint: &str,
) -> anyhow::Result<zeroize::Zeroizing<String>> {
    prompt_secret_or_end(prompt, hint)?
        .ok_or_else(|| anyhow::anyhow!("the input ended (Ctrl-D) before a value was given"))
}

/// [`prompt_secret`], with `None` when the person ends the input (Ctrl-D) instead of
/// answering: for prompts that ask again until they are told to stop.
pub(crate) fn prompt_secret_or_end(
    prompt: &str,
    hint: &str,
) -> anyhow::Result<Option<zeroize::Zeroizing<String>>> {
    match rpassword::prompt_password(prompt) {
        Ok(answer) => Ok(Some(zeroize::Zeroizing::new(answer))),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            eprintln!();
            Ok(None)
        }
        Err(e) => Err(anyhow::anyhow!(
            "cannot ask for it here ({e}): no terminal; {hint}"
        )),
    }
}
