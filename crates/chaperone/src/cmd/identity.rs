//! People and access: `user`, `enroll`, `login`, `logout`, `verify`, `token`, `grant`,
//! `vendor` and `classify`.

use std::io::IsTerminal as _;

use anyhow::{Context as _, anyhow, bail};
use clap::{Args, Subcommand};
use serde_json::{Value, json};
use zeroize::Zeroizing;

use crate::client::{Client, ClientArgs, Method, Refused, session};

/// `chaperone user ...`
#[derive(Subcommand, Debug)]
pub(crate) enum UserCommand {
    /// Add a person; prints a one-time enrolment code (valid 72 h).
    Add {
        name: String,
        /// admin, security, approver, member, contractor or auditor.
        #[arg(long)]
        role: String,
        /// The vendor a contractor belongs to.
        #[arg(long)]
        vendor: Option<String>,
        #[arg(long)]
        email: Option<String>,
        /// When the account ends: a date (2027-03-31, which ends it as that day begins,
        /// midnight UTC) or an RFC 3339 instant; from then on, the account acts no more.
        #[arg(long)]
        ends: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Offboard a person: grants revoked, account disabled, tokens and sessions revoked,
    /// pending requests closed; prints the blast radius (secrets to rotate).
    Offboard {
        name: String,
        #[arg(long)]
        reason: String,
        /// How soon exposed secrets must be rotated (default 7d).
        #[arg(long)]
        rotate_within: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// List people.
    List {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Disable a person: logins and existing tokens stop working at once.
    Disable {
        name: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Re-enable a person.
    Enable {
        name: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Lift a login lockout: a person's, or with `--ip` a client address's (every login
    /// from an address counts towards its own lockout).
    #[command(group = clap::ArgGroup::new("whose").required(true).args(["name", "ip"]))]
    Unlock {
        name: Option<String>,
        /// The client address to unlock (an IPv6 address unlocks its /64).
        #[arg(long)]
        ip: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Reset a person's credentials (lost password or authenticator): password, TOTP and
    /// recovery codes cleared, sessions and tokens revoked; prints a new enrolment code.
    Reset {
        name: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Set the networks (CIDR) a person may connect from; none lifts the restriction.
    Networks {
        name: String,
        networks: Vec<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
}

/// `chaperone enroll`.
#[derive(Args, Debug)]
pub(crate) struct EnrollArgs {
    /// The enrolment code from `chaperone user add`; asked for when not given, so that it
    /// stays out of the shell's history and the process list.
    #[arg(env = "CHAPERONE_ENROLMENT_CODE")]
    code: Option<String>,
    /// Read the new password from the first line of stdin instead of prompting.
    #[arg(long)]
    password_stdin: bool,
    /// Print JSON (with the TOTP secret and recovery codes), for scripts.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    client: ClientArgs,
}

/// `chaperone login`.
#[derive(Args, Debug)]
pub(crate) struct LoginArgs {
    user: String,
    /// Server address; saved for later commands.
    #[arg(long)]
    server: Option<String>,
    /// Read the password from the first line of stdin instead of prompting.
    #[arg(long)]
    password_stdin: bool,
    /// The current TOTP code (prompted when needed and stdin is a terminal); `-` reads it
    /// from stdin (after the password's line with --password-stdin), out of the process
    /// list.
    #[arg(long)]
    totp: Option<String>,
    #[command(flatten)]
    client: ClientArgs,
}

/// `chaperone verify`.
#[derive(Args, Debug)]
pub(crate) struct VerifyArgs {
    /// The current TOTP code; prompted for on a terminal, else read from the first line of
    /// stdin (as with `-`), out of the process list.
    #[arg(long)]
    totp: Option<String>,
    #[command(flatten)]
    client: ClientArgs,
}

/// `chaperone token ...`
#[derive(Subcommand, Debug)]
pub(crate) enum TokenCommand {
    /// Make an API token (shown once; it always expires).
    Create {
        /// Lifetime, e.g. 8h or 30d.
        #[arg(long)]
        ttl: String,
        #[arg(long)]
        name: Option<String>,
        /// Limit the token to PREFIX:CAP[,CAP...] (repeatable), e.g. ci:read,list.
        #[arg(long)]
        scope: Vec<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// List your tokens (never their values).
    List {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Revoke a token by id.
    Revoke {
        id: String,
        #[command(flatten)]
        client: ClientArgs,
    },
}

/// Prints the one-time enrolment code of an answer and how it is used.
fn print_enrolment_code(answer: &serde_json::Value) {
    println!(
        "Enrolment code (one use, until {}):",
        str_of(&answer["expires_time"])
    );
    println!("  {}", str_of(&answer["enrolment_code"]));
    println!("They run: chaperone enroll CODE");
}

pub(crate) fn user(command: UserCommand) -> anyhow::Result<()> {
    match command {
        UserCommand::Add {
            name,
            role,
            vendor,
            email,
            ends,
            json: as_json,
            client,
        } => {
            let body = json!({ "name": name, "role": role, "vendor": vendor, "email": email, "ends": ends });
            let answer =
                Client::authenticated(&client)?.call(Method::Post, "people", Some(&body))?;
            if as_json {
                println!("{}", serde_json::to_string_pretty(&answer)?);
            } else {
                println!("Added {name} ({role}).");
                print_enrolment_code(&answer);
            }
        }
        UserCommand::Reset {
            name,
            json: as_json,
            client,
        } => {
            let answer = Client::authenticated(&client)?.call(
                Method::Post,
                &format!("people/{name}/reset"),
                None,
            )?;
            if as_json {
                println!("{}", serde_json::to_string_pretty(&answer)?);
            } else {
                println!(
                    "Reset {name}: password, authenticator and recovery codes cleared; \
                     sessions and tokens revoked."
                );
                print_enrolment_code(&answer);
            }
        }
        UserCommand::Offboard {
            name,
            reason,
            rotate_within,
            client,
        } => {
            let body = json!({ "reason": reason, "rotate_within": rotate_within });
            let report = Client::authenticated(&client)?.call(
                Method::Post,
                &format!("people/{name}/offboard"),
                Some(&body),
            )?;
            crate::cmd::governance::print_report(&report);
        }
        UserCommand::List { client } => {
            let answer = Client::authenticated(&client)?.call(Method::Get, "people", None)?;
            println!(
                "{:<24} {:<11} {:<9} {:<9} NETWORKS",
                "NAME", "ROLE", "ENROLLED", "DISABLED"
            );
            for p in answer.as_array().into_iter().flatten() {
                // A JSON value does not pad itself: its text does.
                let networks: Vec<&str> = p["allowed_networks"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(serde_json::Value::as_str)
                    .collect();
                println!(
                    "{:<24} {:<11} {:<9} {:<9} {}",
                    str_of(&p["name"]),
                    str_of(&p["role"]),
                    p["enrolled"].to_string(),
                    p["disabled"].to_string(),
                    if networks.is_empty() {
                        "any".to_owned()
                    } else {
                        networks.join(",")
                    }
                );
            }
        }
        UserCommand::Disable { name, client } => {
            Client::authenticated(&client)?.call(
                Method::Post,
                &format!("people/{name}/disable"),
                None,
            )?;
            println!("Disabled {name}: logins and existing tokens stop working now.");
        }
        UserCommand::Enable { name, client } => {
            Client::authenticated(&client)?.call(
                Method::Post,
                &format!("people/{name}/enable"),
                None,
            )?;
            println!("Enabled {name}.");
        }
        UserCommand::Unlock { name, ip, client } => {
            let client = Client::authenticated(&client)?;
            if let Some(name) = name {
                client.call(Method::Post, &format!("people/{name}/unlock"), None)?;
                println!("Unlocked {name}.");
            }
            if let Some(ip) = ip {
                let body = json!({ "address": ip });
                client.call(Method::Post, "auth/unlock-address", Some(&body))?;
                println!("Unlocked logins from {ip}.");
            }
        }
        UserCommand::Networks {
            name,
            networks,
            client,
        } => {
            let body = json!({ "networks": networks });
            Client::authenticated(&client)?.call(
                Method::Put,
                &format!("people/{name}/networks"),
                Some(&body),
            )?;
            println!("Set the networks of {name}.");
        }
    }
    Ok(())
}

pub(crate) fn enroll(args: EnrollArgs) -> anyhow::Result<()> {
    let code = match args.code {
        Some(code) => Zeroizing::new(code),
        None => super::prompt_secret(
            "Enrolment code: ",
            "give it as an argument or in CHAPERONE_ENROLMENT_CODE",
        )?,
    };
    let password = if args.password_stdin {
        first_line_of_stdin()?
    } else {
        let hint = "give the password on stdin with --password-stdin";
        let first = super::prompt_secret("New password (12+ characters): ", hint)?;
        let again = super::prompt_secret("Again: ", hint)?;
        if first != again {
            bail!("the passwords differ");
        }
        first
    };
    let body = json!({ "code": code.trim(), "password": password.as_str() });
    let answer =
        Client::new(&args.client)
            .without_token()
            .call(Method::Post, "auth/enroll", Some(&body))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&answer)?);
        return Ok(());
    }
    let uri = str_of(&answer["otpauth_uri"]);
    println!(
        "Enrolled {}. Add this account to your authenticator app:\n",
        str_of(&answer["person"])
    );
    println!("{}", qr(&uri)?);
    println!("  {uri}");
    println!("  secret: {}\n", str_of(&answer["totp_secret"]));
    println!("Recovery codes (each works once; keep them offline):");
    for code in answer["recovery_codes"].as_array().into_iter().flatten() {
        println!("  {}", str_of(code));
    }
    // The enrolment is done: a check that cannot run is a warning, not a failure.
    if !args.password_stdin
        && std::io::stdin().is_terminal()
        && let Err(error) = check_authenticator(&str_of(&answer["totp_secret"]))
    {
        eprintln!("The authenticator was not checked ({error}); the enrolment is done.");
    }
    Ok(())
}

/// Asks, at a terminal, for a code from the authenticator just set up and checks it here
/// against the secret the server returned, so a mistyped secret or a wrong clock shows now
/// rather than at the first login. Nothing is sent: the server checks codes at login.
fn check_authenticator(secret: &str) -> anyhow::Result<()> {
    use chaperone_crypto::totp;
    let secret = totp::TotpSecret::from_base32(secret)
        .map_err(|_| anyhow!("the server answered a TOTP secret that is not base32"))?;
    println!();
    for _ in 0..3 {
        let Some(code) = super::prompt_secret_or_end(
            "To check the authenticator, type the code it shows now (Enter to skip): ",
            "the check is skipped",
        )?
        else {
            return Ok(());
        };
        if code.trim().is_empty() {
            println!("Not checked.");
            return Ok(());
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        if totp::verify(&secret, &code, now, None).is_some() {
            println!("The authenticator's code matches.");
            return Ok(());
        }
        eprintln!(
            "That code does not match this computer's clock: check that the account above \
             was added (or the secret typed) whole, and that the device's clock is right."
        );
    }
    eprintln!(
        "The authenticator is not confirmed. The enrolment is done: if its codes never work \
         at login, log in with a recovery code and ask an administrator to reset the account."
    );
    Ok(())
}

pub(crate) fn login(args: LoginArgs) -> anyhow::Result<()> {
    let mut client_args = args.client.clone();
    if let Some(server) = &args.server {
        if let Some(addr) = client_args.addr.as_ref().filter(|a| *a != server) {
            bail!(
                "--server {server} and --addr (or CHAPERONE_ADDR) {addr} differ: give the \
                 server once"
            );
        }
        client_args.addr = Some(server.clone());
    }
    let password = if args.password_stdin {
        first_line_of_stdin()?
    } else {
        super::prompt_secret(
            &format!("Password for {}: ", args.user),
            "give the password on stdin with --password-stdin",
        )?
    };
    let totp = match args.totp {
        Some(code) => Some(totp_code(&code)?.to_string()),
        None if std::io::stdin().is_terminal() => {
            let code = super::prompt_secret(
                "TOTP code (empty if none): ",
                "use --totp - and give the code on stdin after the password",
            )?;
            (!code.trim().is_empty()).then(|| code.trim().to_owned())
        }
        None => None,
    };
    let mut body = json!({ "user": args.user, "password": password.as_str() });
    if let Some(code) = totp {
        body["totp"] = json!(code.trim());
    }
    // A login presents no token: a session saved for another server must not reach this one.
    let client = Client::new(&client_args).without_token();
    let answer = client.call(Method::Post, "auth/login", Some(&body))?;
    let token = Zeroizing::new(answer["token"].as_str().unwrap_or_default().to_owned());
    let path = session::write("token", &token)?;
    session::write("addr", client.base())?;
    println!(
        "Logged in as {} ({}); the session lasts until {}.\nSaved to {}.",
        str_of(&answer["person"]),
        str_of(&answer["role"]),
        str_of(&answer["expires_time"]),
        path.display()
    );
    Ok(())
}

pub(crate) fn logout(args: ClientArgs) -> anyhow::Result<()> {
    let client = Client::authenticated(&args)?;
    let me = match client.call(Method::Get, "auth/self", None) {
        Ok(me) => me,
        // Expired, revoked or idle: nothing is left to revoke, only the saved copy.
        Err(e) if e.downcast_ref::<Refused>().is_some_and(|r| r.status == 401) => {
            session::remove("token");
            println!("The session had already ended ({e}); removed it from this machine.");
            return Ok(());
        }
        Err(e) => return Err(e),
    };
    client.call(
        Method::Delete,
        &format!("auth/tokens/{}", str_of(&me["token_id"])),
        None,
    )?;
    session::remove("token");
    println!("Logged out; the session token is revoked.");
    Ok(())
}

pub(crate) fn verify(args: VerifyArgs) -> anyhow::Result<()> {
    let code = match &args.totp {
        Some(code) => totp_code(code)?,
        None if std::io::stdin().is_terminal() => {
            super::prompt_secret("TOTP code: ", "give the code on stdin")?
        }
        None => super::line_of_stdin("TOTP code")?,
    };
    let body = json!({ "totp": code.trim() });
    Client::authenticated(&args.client)?.call(Method::Post, "auth/verify", Some(&body))?;
    println!(
        "Verified: for the server's step-up window (`step_up_window`, 15 minutes by default), \
         this session may read paths that ask for a recent code."
    );
    Ok(())
}

pub(crate) fn token(command: TokenCommand) -> anyhow::Result<()> {
    match command {
        TokenCommand::Create {
            ttl,
            name,
            scope,
            client,
        } => {
            let mut body = json!({ "ttl": ttl, "name": name });
            if !scope.is_empty() {
                body["scope"] = Value::Array(
                    scope
                        .iter()
                        .map(|s| parse_scope(s))
                        .collect::<Result<_, _>>()?,
                );
            }
            let answer =
                Client::authenticated(&client)?.call(Method::Post, "auth/tokens", Some(&body))?;
            println!("{}", str_of(&answer["token"]));
            eprintln!(
                "Token {} (shown once) expires at {}.",
                str_of(&answer["id"]),
                str_of(&answer["expires_time"])
            );
        }
        TokenCommand::List { client } => {
            let answer = Client::authenticated(&client)?.call(Method::Get, "auth/tokens", None)?;
            // PARENT: the token whose revocation revokes this one (made through the Vault API).
            println!(
                "{:<22} {:<8} {:<32} {:<8} {:<22} NAME",
                "ID", "KIND", "EXPIRES", "REVOKED", "PARENT"
            );
            for t in answer.as_array().into_iter().flatten() {
                let parent = t["parent"].as_str().unwrap_or("-");
                println!(
                    "{:<22} {:<8} {:<32} {:<8} {:<22} {}",
                    str_of(&t["id"]),
                    str_of(&t["kind"]),
                    str_of(&t["expires_time"]),
                    t["revoked"].to_string(),
                    parent,
                    str_of(&t["name"])
                );
            }
        }
        TokenCommand::Revoke { id, client } => {
            Client::authenticated(&client)?.call(
                Method::Delete,
                &format!("auth/tokens/{id}"),
                None,
            )?;
            println!("Revoked {id}.");
        }
    }
    Ok(())
}

/// `PREFIX:CAP[,CAP...]` into a scope rule.
fn parse_scope(text: &str) -> anyhow::Result<Value> {
    let (prefix, caps) = text.rsplit_once(':').with_context(|| {
        format!("scope `{text}` must be PREFIX:CAP[,CAP...], e.g. ci:read,list")
    })?;
    Ok(
        json!({ "prefix": prefix, "capabilities": caps.split(',').map(str::trim).collect::<Vec<_>>() }),
    )
}

fn first_line_of_stdin() -> anyhow::Result<Zeroizing<String>> {
    super::line_of_stdin("password")
}

/// A TOTP code given as `--totp`: `-` reads it from the next line of stdin, which no other
/// user of the machine sees (a code on the command line is in the process list until it
/// is used).
fn totp_code(given: &str) -> anyhow::Result<Zeroizing<String>> {
    if given == "-" {
        return super::line_of_stdin("TOTP code");
    }
    Ok(Zeroizing::new(given.trim().to_owned()))
}

/// A text field of an answer, for a terminal (see [`super::shown`]).
fn str_of(value: &Value) -> std::borrow::Cow<'_, str> {
    super::shown(value, "")
}

/// The QR code of `text` in terminal block characters.
fn qr(text: &str) -> anyhow::Result<String> {
    let code = qrcode::QrCode::new(text.as_bytes()).context("making the QR code")?;
    Ok(code
        .render::<qrcode::render::unicode::Dense1x2>()
        .quiet_zone(true)
        .build())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_parse() {
        assert_eq!(
            parse_scope("ci/deploy:read,list").unwrap(),
            json!({ "prefix": "ci/deploy", "capabilities": ["read", "list"] })
        );
        assert!(parse_scope("nocolon").is_err());
        assert!(qr("otpauth://totp/x").unwrap().lines().count() > 10);
    }
}
