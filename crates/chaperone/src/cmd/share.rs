//! `chaperone share ...`: one-time links. The content is sealed here, under a key that only
//! the printed link carries (after `#`); the server stores ciphertext it cannot open.

use std::io::{IsTerminal as _, Read};
use std::path::PathBuf;

use anyhow::{Context, bail};
use chaperone_crypto::share::{self, ShareKey};
use clap::Subcommand;
use serde_json::{Value, json};
use zeroize::Zeroizing;

use crate::client::{Client, ClientArgs, Method};

/// The largest file a link carries.
const MAX_FILE: u64 = 25 * 1024 * 1024;

/// `chaperone share ...`
#[derive(Subcommand, Debug)]
pub(crate) enum ShareCommand {
    /// Share a secret, text from standard input, or a file, through a one-time link.
    Create {
        /// A secret's path (its fields as JSON, or one field with --field).
        #[arg(long, conflicts_with_all = ["text_stdin", "file"])]
        secret: Option<String>,
        #[arg(long, requires = "secret")]
        field: Option<String>,
        /// Read the text to share from standard input.
        #[arg(long, conflicts_with = "file")]
        text_stdin: bool,
        /// A file of at most 25 MiB.
        #[arg(long)]
        file: Option<PathBuf>,
        /// What it is, shown to the recipient and in lists (never the content).
        #[arg(long)]
        label: Option<String>,
        /// How long the link works (default 24h, at most 30d).
        #[arg(long)]
        expires: Option<String>,
        /// How many times it can be opened (default 1).
        #[arg(long)]
        views: Option<i64>,
        /// Require a passphrase too: read from CHAPERONE_SHARE_PASSPHRASE, else prompted.
        #[arg(long)]
        passphrase: bool,
        /// The only person who may open it (they log in with TOTP to open it).
        #[arg(long)]
        recipient: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Open a link: text goes to standard output, a file to --out (or its own name).
    Open {
        /// The link; asked for when not given (read from stdin when it is no terminal, or
        /// given as `-`), so that its key stays out of the shell's history and the process
        /// list.
        url: Option<String>,
        #[arg(long)]
        out: Option<PathBuf>,
        /// The link needs a passphrase: read from CHAPERONE_SHARE_PASSPHRASE, else prompted.
        #[arg(long)]
        passphrase: bool,
        /// PEM file of the CA that signs the link's server's TLS certificate (for private
        /// CAs and self-signed servers).
        #[arg(long, env = "CHAPERONE_CACERT")]
        ca_cert: Option<PathBuf>,
    },
    /// Your links (security and admins: all of them).
    List {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Revoke a link: its content is destroyed now.
    Revoke {
        id: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Make a one-time link through which someone without an account puts a secret into
    /// PATH.
    Request {
        path: String,
        /// What to ask for, shown on the page.
        #[arg(long)]
        note: String,
        /// How long the link works (default 72h, at most 30d).
        #[arg(long)]
        expires: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Your request-a-secret links (security and admins: all of them), never their tokens.
    Requests {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Revoke an open request-a-secret link by its id (from `share requests`).
    RevokeRequest {
        id: String,
        #[command(flatten)]
        client: ClientArgs,
    },
}

fn passphrase() -> anyhow::Result<Zeroizing<String>> {
    if let Ok(p) = std::env::var("CHAPERONE_SHARE_PASSPHRASE") {
        return Ok(Zeroizing::new(p));
    }
    super::prompt_secret(
        "Passphrase: ",
        "set CHAPERONE_SHARE_PASSPHRASE to the link's passphrase",
    )
}

pub(crate) fn run(command: ShareCommand) -> anyhow::Result<()> {
    match command {
        ShareCommand::Create {
            secret,
            field,
            text_stdin,
            file,
            label,
            expires,
            views,
            passphrase: with_passphrase,
            recipient,
            client,
        } => {
            let client = Client::authenticated(&client)?;
            let (header, content, source, default_label) =
                content(&client, secret, field, text_stdin, file)?;
            let header = serde_json::to_vec(&header)?;
            let size = 1 + 12 + 16 + 4 + header.len() + content.len();
            let mut body = json!({
                "label": label.unwrap_or(default_label),
                "size": size,
                "source": source,
            });
            if let Some(e) = expires {
                body["expires"] = json!(e);
            }
            if let Some(v) = views {
                body["views"] = json!(v);
            }
            if let Some(r) = recipient {
                body["recipient"] = json!(r);
            }
            if with_passphrase {
                body["passphrase"] = json!(passphrase()?.as_str());
            }
            let created = client.call(Method::Post, "shares", Some(&body))?;
            let id = created["id"].as_str().context("the server gave no id")?;
            let key = ShareKey::generate();
            let sealed = share::seal(&key, id, &header, &content);
            let proof = share::open_proof(&key, id);
            if let Err(error) = client.upload(
                &format!("shares/{id}/content"),
                &sealed,
                "application/octet-stream",
                &[("X-Share-Proof", &proof)],
            ) {
                // A link without content opens nothing, but would count against the quota
                // until it expired: it goes.
                let _ = client.call(Method::Delete, &format!("shares/{id}"), None);
                return Err(error.context(format!(
                    "the content did not reach the server; share {id} was revoked"
                )));
            }
            let who = match created["recipient"].as_str() {
                Some(_) => "only its recipient can open it, after logging in",
                None => "whoever holds it can open it",
            };
            eprintln!(
                "Share {id}: {} view(s), until {}. Send the link over a channel you trust; \
                 {who}.",
                created["max_views"],
                created["expires_time"].as_str().unwrap_or("-")
            );
            println!("{}/s/{id}#{}", client.base(), key.to_fragment().as_str());
        }
        ShareCommand::Open {
            url,
            out,
            passphrase: with_passphrase,
            ca_cert,
        } => {
            let url = match url {
                Some(url) if url == "-" => super::line_of_stdin("link")?,
                Some(url) => Zeroizing::new(url),
                None if std::io::stdin().is_terminal() => {
                    super::prompt_secret("Link: ", "give the link on stdin")?
                }
                None => super::line_of_stdin("link")?,
            };
            open(&url, out, with_passphrase, ca_cert)?;
        }
        ShareCommand::List { client } => {
            let answer = Client::authenticated(&client)?.call(Method::Get, "shares", None)?;
            for s in answer.as_array().into_iter().flatten() {
                println!(
                    "{}  {:<8} {}/{} views  until {}  {}",
                    super::shown(&s["id"], "-"),
                    super::shown(&s["state"], "-"),
                    s["views"],
                    s["max_views"],
                    super::shown(&s["expires_time"], "-"),
                    super::shown(&s["label"], "")
                );
            }
        }
        ShareCommand::Requests { client } => {
            let answer =
                Client::authenticated(&client)?.call(Method::Get, "request-links", None)?;
            for r in answer.as_array().into_iter().flatten() {
                println!(
                    "{}  {:<8} {:<30} until {}  {}",
                    super::shown(&r["id"], "-"),
                    super::shown(&r["status"], "-"),
                    super::shown(&r["path"], "-"),
                    super::shown(&r["expires_time"], "-"),
                    super::shown(&r["note"], "")
                );
            }
        }
        ShareCommand::RevokeRequest { id, client } => {
            Client::authenticated(&client)?.call(
                Method::Delete,
                &format!("request-links/{id}"),
                None,
            )?;
            println!("Revoked request link {id}: it writes nothing any more.");
        }
        ShareCommand::Revoke { id, client } => {
            Client::authenticated(&client)?.call(Method::Delete, &format!("shares/{id}"), None)?;
            println!("Revoked {id}: its content is destroyed.");
        }
        ShareCommand::Request {
            path,
            note,
            expires,
            client,
        } => {
            let client = Client::authenticated(&client)?;
            let mut body = json!({ "note": note });
            if let Some(e) = expires {
                body["expires"] = json!(e);
            }
            let answer = client.call(
                Method::Post,
                &format!("secret-requests/{path}"),
                Some(&body),
            )?;
            eprintln!(
                "Whoever opens this link can write {path} once, until {}.",
                answer["expires_time"].as_str().unwrap_or("-")
            );
            println!(
                "{}{}",
                client.base(),
                answer["path"].as_str().context("no link")?
            );
        }
    }
    Ok(())
}

type Content = (Value, Zeroizing<Vec<u8>>, String, String);

fn content(
    client: &Client,
    secret: Option<String>,
    field: Option<String>,
    text_stdin: bool,
    file: Option<PathBuf>,
) -> anyhow::Result<Content> {
    if let Some(path) = secret {
        let answer = client.call(Method::Get, &format!("secrets/data/{path}"), None)?;
        let data = &answer["data"];
        let text = match &field {
            Some(f) => data[f]
                .as_str()
                .with_context(|| format!("{path} has no field `{f}`"))?
                .to_owned(),
            None => serde_json::to_string_pretty(data)?,
        };
        let version = answer["version"].as_u64().unwrap_or(0);
        return Ok((
            json!({ "type": "text" }),
            Zeroizing::new(text.into_bytes()),
            format!("secret:{path}@{version}"),
            format!("secret {path}"),
        ));
    }
    if let Some(file) = file {
        let size = std::fs::metadata(&file)
            .with_context(|| format!("reading {}", file.display()))?
            .len();
        if size > MAX_FILE {
            bail!("{} is larger than 25 MiB", file.display());
        }
        let bytes = Zeroizing::new(std::fs::read(&file)?);
        let name = file
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("file")
            .to_owned();
        // The recipient sees the name: one that shows as something else (a right-to-left
        // override makes `invoice_<RLO>fdp.exe` read `invoice_exe.pdf`) is refused.
        if name.chars().any(chaperone_scan::output::is_hidden) {
            bail!(
                "the file's name holds control, text direction or invisible characters, which \
                 would show it as another name: rename the file first"
            );
        }
        // The file's name goes inside the encrypted content, for the recipient; the label
        // the server stores and records does not name it (a name can say what the file is).
        return Ok((
            json!({ "type": "file", "name": name, "media_type": "application/octet-stream" }),
            bytes,
            "file".into(),
            "a file".to_owned(),
        ));
    }
    if text_stdin {
        let mut text = Zeroizing::new(Vec::new());
        std::io::stdin().take(MAX_FILE + 1).read_to_end(&mut text)?;
        if text.len() as u64 > MAX_FILE {
            bail!("the text is larger than 25 MiB");
        }
        return Ok((
            json!({ "type": "text" }),
            text,
            "text".into(),
            "text".into(),
        ));
    }
    bail!("say what to share: --secret PATH, --text-stdin or --file FILE")
}

fn open(
    url: &str,
    out: Option<PathBuf>,
    with_passphrase: bool,
    ca_cert: Option<PathBuf>,
) -> anyhow::Result<()> {
    let (link, fragment) = url
        .split_once('#')
        .context("the link has no key: the part after # is missing")?;
    let (base, id) = link
        .rsplit_once("/s/")
        .context("this is not a share link (…/s/<id>#<key>)")?;
    if id.is_empty()
        || !id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        bail!("this is not a share link (…/s/<id>#<key>)");
    }
    let key = ShareKey::from_fragment(fragment)?;
    // The session's token goes only to the server it belongs to: a link may point anywhere.
    let configured = Client::new(&ClientArgs {
        addr: std::env::var("CHAPERONE_ADDR").ok(),
        ca_cert: ca_cert.clone(),
    });
    let client = if configured.base() == base.trim_end_matches('/') {
        configured
    } else {
        Client::new(&ClientArgs {
            addr: Some(base.to_owned()),
            ca_cert,
        })
        .without_token()
    };
    // The last view destroys the content on the server: where it goes is made sure of first,
    // and removed again if nothing comes to fill it.
    let mut out_file = match &out {
        Some(target) => Some((target.clone(), create_new(target)?)),
        None => None,
    };
    let result = receive(&client, id, &key, with_passphrase, &mut out_file);
    // The file was made above, so it is this command's to remove: empty, or cut short by a
    // failed write.
    if result.is_err()
        && let Some(target) = &out
    {
        let _ = std::fs::remove_file(target);
    }
    result
}

/// Opens the share and writes what it holds (to `out_file` when given).
fn receive(
    client: &Client,
    id: &str,
    key: &ShareKey,
    with_passphrase: bool,
    out_file: &mut Option<(PathBuf, std::fs::File)>,
) -> anyhow::Result<()> {
    let proof = share::open_proof(key, id);
    let info = client.call(
        Method::Post,
        &format!("shares/{id}/info"),
        Some(&json!({ "proof": proof })),
    )?;
    let mut body = json!({ "proof": proof });
    if with_passphrase || info["needs_passphrase"] == true {
        body["passphrase"] = json!(passphrase()?.as_str());
    }
    let sealed = client.post_for_bytes(&format!("shares/{id}/open"), &body)?;
    let (header, content) =
        share::open(key, id, &sealed).context("the content does not decrypt with this link")?;
    let header: Value = serde_json::from_slice(&header).context("a damaged header")?;
    use std::io::Write;
    if header["type"] == "file" {
        let (target, mut written) = match out_file.take() {
            Some(opened) => opened,
            None => {
                let name = std::path::Path::new(header["name"].as_str().unwrap_or("download"))
                    .file_name()
                    .unwrap_or_else(|| std::ffi::OsStr::new("download"))
                    .to_owned();
                free_file(&name)?
            }
        };
        if let Err(error) = written.write_all(content.as_slice()) {
            let _ = std::fs::remove_file(&target);
            return Err(error).with_context(|| {
                format!(
                    "writing {} (the link may be used up: ask its maker for another)",
                    target.display()
                )
            });
        }
        // The name is the sender's choice.
        eprintln!(
            "Wrote {} ({} bytes).",
            chaperone_scan::output::printable(&target.display().to_string()),
            content.len()
        );
    } else {
        match out_file.take() {
            Some((target, mut written)) => {
                written.write_all(content.as_slice()).with_context(|| {
                    format!(
                        "writing {} (the link may be used up: ask its maker for another)",
                        target.display()
                    )
                })?;
            }
            None => std::io::stdout().write_all(&content)?,
        }
    }
    Ok(())
}

/// A new file, readable by its owner only: it will hold a secret.
fn new_file(path: &std::path::Path) -> std::io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)
}

/// Creates `target`, which must not exist yet.
fn create_new(target: &std::path::Path) -> anyhow::Result<std::fs::File> {
    new_file(target).with_context(|| {
        format!(
            "creating {} (it must not exist yet; nothing was opened)",
            target.display()
        )
    })
}

/// A new file for a received file named `name` (a name chosen by whoever made the link):
/// never over an existing file, so `name`, else `name.1` … `name.99`, in the current
/// directory, else in the temporary directory. The content is already opened and may be
/// gone from the server, so a taken name or a read-only directory must not lose it.
fn free_file(name: &std::ffi::OsStr) -> anyhow::Result<(PathBuf, std::fs::File)> {
    let mut last = None;
    for dir in [PathBuf::from("."), std::env::temp_dir()] {
        for n in 0..100 {
            let mut candidate = name.to_owned();
            if n > 0 {
                candidate.push(format!(".{n}"));
            }
            let path = dir.join(&candidate);
            match new_file(&path) {
                Ok(file) => return Ok((path, file)),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => {
                    last = Some(e);
                    break;
                }
            }
        }
    }
    Err(anyhow::anyhow!(
        "no file could be created for {} ({})",
        name.to_string_lossy(),
        last.map_or_else(|| "every name is taken".to_owned(), |e| e.to_string())
    ))
}
