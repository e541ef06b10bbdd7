//! Third-party governance from the command line: `vendor`, `agreement`, `evidence`,
//! `policy`, `classification`, `request`, `grant` and `review`. Each subcommand is one API
//! call; lists print one line per item, `show` prints the JSON the server answered.

use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;
use serde_json::{Value, json};

use crate::client::{Client, ClientArgs, Method, query_value};

/// A text field of an answer, for a terminal, `-` when it has none (see [`super::shown`]).
fn str_of(value: &Value) -> std::borrow::Cow<'_, str> {
    super::shown(value, "-")
}

fn print_json(value: &Value) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

fn items(value: &Value) -> impl Iterator<Item = &Value> {
    value.as_array().into_iter().flatten()
}

fn joined(value: &Value) -> String {
    items(value).map(str_of).collect::<Vec<_>>().join(",")
}

/// Reads a JSON object given as itself (an argument starting with `{`), from a file, or
/// (`-`) from standard input.
fn json_file(path: &PathBuf) -> anyhow::Result<Value> {
    if let Some(json) = path.to_str().filter(|t| t.trim_start().starts_with('{')) {
        return serde_json::from_str(json).context("the argument is not a JSON object");
    }
    let text = if path.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin())?
    } else {
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?
    };
    serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))
}

/// Inserts the given options into a JSON body, leaving out those not given.
fn body(fields: &[(&str, Option<Value>)]) -> Value {
    let mut map = serde_json::Map::new();
    for (key, value) in fields {
        if let Some(value) = value {
            map.insert((*key).to_owned(), value.clone());
        }
    }
    Value::Object(map)
}

fn opt(text: &Option<String>) -> Option<Value> {
    text.as_ref().map(|t| json!(t))
}

/// Options shared by `vendor add` and `vendor set`.
#[derive(clap::Args, Debug)]
pub(crate) struct VendorFields {
    /// Networks (CIDR) the vendor's people may connect from.
    #[arg(long, value_delimiter = ',')]
    networks: Option<Vec<String>>,
    /// The accountable internal owner (a person's name).
    #[arg(long)]
    owner: Option<String>,
    /// low, standard, important or critical.
    #[arg(long)]
    criticality: Option<String>,
    /// ISO 3166-1 alpha-2 country code.
    #[arg(long)]
    country: Option<String>,
    #[arg(long)]
    legal_name: Option<String>,
    /// The vendor this one is a sub-processor of.
    #[arg(long)]
    parent: Option<String>,
    /// More profile fields as a JSON object (contacts, identifiers, processing_locations,
    /// storage_locations, functions, ports, protocols); `-` reads standard input.
    #[arg(long)]
    profile: Option<PathBuf>,
}

impl VendorFields {
    fn into_body(self, mut base: Value) -> anyhow::Result<Value> {
        if let Some(path) = &self.profile {
            let Value::Object(extra) = json_file(path)? else {
                anyhow::bail!("--profile must hold a JSON object");
            };
            base.as_object_mut().expect("an object").extend(extra);
        }
        let fields = body(&[
            ("networks", self.networks.map(|n| json!(n))),
            ("owner", opt(&self.owner)),
            ("criticality", opt(&self.criticality)),
            ("country", opt(&self.country)),
            ("legal_name", opt(&self.legal_name)),
            ("parent", opt(&self.parent)),
        ]);
        if let Value::Object(fields) = fields {
            base.as_object_mut().expect("an object").extend(fields);
        }
        Ok(base)
    }
}

/// `chaperone vendor ...`
#[derive(Subcommand, Debug)]
pub(crate) enum VendorCommand {
    /// Add a vendor (status prospect unless --status onboarding or active).
    Add {
        name: String,
        #[arg(long)]
        status: Option<String>,
        #[command(flatten)]
        fields: VendorFields,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// List vendors.
    List {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Show a vendor with its agreements, evidence and history.
    Show {
        name: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Offboard a vendor: every grant revoked, every account disabled, tokens and sessions
    /// revoked, pending requests closed; prints the blast radius and the attestation link.
    Offboard {
        name: String,
        #[arg(long)]
        reason: String,
        /// How soon exposed secrets must be rotated (default 7d).
        #[arg(long)]
        rotate_within: Option<String>,
        /// How long the vendor has to attest (default: its agreement's days, else 30d).
        #[arg(long)]
        attest_within: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Replace an offboarded vendor's pending attestation link (lost, or never received):
    /// the old link stops working; the new one is printed and mailed to the contacts.
    Attestation {
        name: String,
        /// A new deadline from now (default: the current one stays).
        #[arg(long)]
        within: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Change a vendor's profile or networks, or move it through its lifecycle
    /// (prospect, onboarding, active, suspended, terminated) with a reason. A vendor whose
    /// people had access is ended with `vendor offboard`, then terminated here.
    Set {
        name: String,
        #[arg(long, requires = "reason")]
        status: Option<String>,
        #[arg(long)]
        reason: Option<String>,
        #[command(flatten)]
        fields: VendorFields,
        #[command(flatten)]
        client: ClientArgs,
    },
}

pub(crate) fn vendor(command: VendorCommand) -> anyhow::Result<()> {
    match command {
        VendorCommand::Add {
            name,
            status,
            fields,
            client,
        } => {
            let base = body(&[("name", Some(json!(name))), ("status", opt(&status))]);
            let answer = Client::authenticated(&client)?.call(
                Method::Post,
                "vendors",
                Some(&fields.into_body(base)?),
            )?;
            println!(
                "Added vendor {name} ({}, {}).",
                str_of(&answer["status"]),
                str_of(&answer["id"])
            );
        }
        VendorCommand::List { client } => {
            let answer = Client::authenticated(&client)?.call(Method::Get, "vendors", None)?;
            for v in items(&answer) {
                println!(
                    "{:<24} {:<12} {:<10} {}",
                    str_of(&v["name"]),
                    str_of(&v["status"]),
                    v["criticality"].as_str().unwrap_or("-"),
                    str_of(&v["id"])
                );
            }
        }
        VendorCommand::Offboard {
            name,
            reason,
            rotate_within,
            attest_within,
            client,
        } => {
            let client = Client::authenticated(&client)?;
            let body = json!({ "reason": reason, "rotate_within": rotate_within,
                               "attest_within": attest_within });
            let report = client.call(
                Method::Post,
                &format!("vendors/{name}/offboard"),
                Some(&body),
            )?;
            print_report(&report);
            print_attestation_link(&client, &name, &report["attestation"]);
        }
        VendorCommand::Attestation {
            name,
            within,
            client,
        } => {
            let client = Client::authenticated(&client)?;
            let link = client.call(
                Method::Post,
                &format!("vendors/{name}/attestation"),
                Some(&json!({ "within": within })),
            )?;
            println!("The earlier attestation link of {name} no longer works.");
            print_attestation_link(&client, &name, &link);
        }
        VendorCommand::Show { name, client } => {
            print_json(&Client::authenticated(&client)?.call(
                Method::Get,
                &format!("vendors/{name}"),
                None,
            )?)?;
        }
        VendorCommand::Set {
            name,
            status,
            reason,
            fields,
            client,
        } => {
            let base = body(&[("status", opt(&status)), ("reason", opt(&reason))]);
            let answer = Client::authenticated(&client)?.call(
                Method::Put,
                &format!("vendors/{name}"),
                Some(&fields.into_body(base)?),
            )?;
            println!("Vendor {name} is {}.", str_of(&answer["status"]));
        }
    }
    Ok(())
}

/// `chaperone agreement ...`
#[derive(Subcommand, Debug)]
pub(crate) enum AgreementCommand {
    /// Record an agreement (a renewal is a new agreement of the same kind).
    Add {
        vendor: String,
        /// nda, msa, sow, dpa, sla, baa, escrow or other.
        #[arg(long)]
        kind: String,
        #[arg(long)]
        title: Option<String>,
        /// Dates as 2026-10-01.
        #[arg(long)]
        signed: Option<String>,
        #[arg(long)]
        effective: Option<String>,
        /// The first day it no longer applies.
        #[arg(long)]
        expires: Option<String>,
        /// Key clauses as a JSON object (audit_rights, ip_ownership,
        /// breach_notification_hours, sla_uptime_percent, incident_response_hours,
        /// termination_data, termination_data_days, escrow): the object itself, a file
        /// holding it, or `-` for standard input.
        #[arg(long)]
        clauses: Option<PathBuf>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// A vendor's agreements with their status today.
    List {
        vendor: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// End an agreement early.
    Terminate {
        id: String,
        #[arg(long)]
        reason: String,
        /// When (today if not given).
        #[arg(long)]
        date: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Upload the signed document (stored encrypted, with its SHA-256).
    Upload {
        id: String,
        file: PathBuf,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Download the signed document.
    Download {
        id: String,
        out: PathBuf,
        #[command(flatten)]
        client: ClientArgs,
    },
}

pub(crate) fn agreement(command: AgreementCommand) -> anyhow::Result<()> {
    match command {
        AgreementCommand::Add {
            vendor,
            kind,
            title,
            signed,
            effective,
            expires,
            clauses,
            client,
        } => {
            let clauses = clauses.as_ref().map(json_file).transpose()?;
            let request = body(&[
                ("kind", Some(json!(kind))),
                ("title", opt(&title)),
                ("signed", opt(&signed)),
                ("effective", opt(&effective)),
                ("expires", opt(&expires)),
                ("clauses", clauses),
            ]);
            let answer = Client::authenticated(&client)?.call(
                Method::Post,
                &format!("vendors/{vendor}/agreements"),
                Some(&request),
            )?;
            println!(
                "Recorded {} {} of {vendor} ({}).",
                str_of(&answer["kind"]),
                str_of(&answer["id"]),
                str_of(&answer["status"])
            );
        }
        AgreementCommand::List { vendor, client } => {
            let answer = Client::authenticated(&client)?.call(
                Method::Get,
                &format!("vendors/{vendor}/agreements"),
                None,
            )?;
            for a in items(&answer) {
                println!(
                    "{}  {:<7} {:<10} effective {}  expires {}  {}",
                    str_of(&a["id"]),
                    str_of(&a["kind"]),
                    str_of(&a["status"]),
                    str_of(&a["effective"]),
                    str_of(&a["expires"]),
                    a["document"]["sha256"]
                        .as_str()
                        .map_or("no document".to_owned(), |h| format!("sha256:{h}"))
                );
            }
        }
        AgreementCommand::Terminate {
            id,
            reason,
            date,
            client,
        } => {
            let request = body(&[("reason", Some(json!(reason))), ("date", opt(&date))]);
            Client::authenticated(&client)?.call(
                Method::Post,
                &format!("agreements/{id}/terminate"),
                Some(&request),
            )?;
            println!("Terminated {id}.");
        }
        AgreementCommand::Upload { id, file, client } => upload(&id, &file, &client)?,
        AgreementCommand::Download { id, out, client } => download(&id, &out, &client)?,
    }
    Ok(())
}

fn upload(id: &str, file: &PathBuf, client: &ClientArgs) -> anyhow::Result<()> {
    let content = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let name = file
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("document");
    let media_type = match file.extension().and_then(|e| e.to_str()) {
        Some("pdf") => "application/pdf",
        Some("txt" | "md") => "text/plain",
        _ => "application/octet-stream",
    };
    let answer = Client::authenticated(client)?.upload(
        &format!("documents/{id}?name={}", query_value(name)),
        &content,
        media_type,
        &[],
    )?;
    println!(
        "Stored {name} for {id} ({} bytes, sha256:{}).",
        answer["size"],
        str_of(&answer["sha256"])
    );
    Ok(())
}

fn download(id: &str, out: &PathBuf, client: &ClientArgs) -> anyhow::Result<()> {
    let bytes = Client::authenticated(client)?
        .bytes(&format!("documents/{id}"), 64 * 1024 * 1024)?
        .context("no document")?;
    std::fs::write(out, &bytes).with_context(|| format!("writing {}", out.display()))?;
    println!("Wrote {} ({} bytes).", out.display(), bytes.len());
    Ok(())
}

/// `chaperone evidence ...`
#[derive(Subcommand, Debug)]
pub(crate) enum EvidenceCommand {
    /// Record evidence: an audit report, a certificate, an insurance policy.
    Add {
        vendor: String,
        /// soc2-type1, soc2-type2, iso27001, pentest, insurance or other.
        #[arg(long)]
        kind: String,
        /// The first day it is no longer valid.
        #[arg(long)]
        expires: String,
        #[arg(long)]
        issuer: Option<String>,
        #[arg(long)]
        period_start: Option<String>,
        #[arg(long)]
        period_end: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// A vendor's evidence with its status today.
    List {
        vendor: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Withdraw evidence before its expiry (revoked by its issuer, a wrong date).
    Revoke {
        id: String,
        #[arg(long)]
        reason: String,
        /// From when (now if not given).
        #[arg(long)]
        date: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Upload the document (stored encrypted, with its SHA-256).
    Upload {
        id: String,
        file: PathBuf,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Download the document.
    Download {
        id: String,
        out: PathBuf,
        #[command(flatten)]
        client: ClientArgs,
    },
}

pub(crate) fn evidence(command: EvidenceCommand) -> anyhow::Result<()> {
    match command {
        EvidenceCommand::Add {
            vendor,
            kind,
            expires,
            issuer,
            period_start,
            period_end,
            client,
        } => {
            let request = body(&[
                ("kind", Some(json!(kind))),
                ("expires", Some(json!(expires))),
                ("issuer", opt(&issuer)),
                ("period_start", opt(&period_start)),
                ("period_end", opt(&period_end)),
            ]);
            let answer = Client::authenticated(&client)?.call(
                Method::Post,
                &format!("vendors/{vendor}/evidence"),
                Some(&request),
            )?;
            println!(
                "Recorded {} {} of {vendor} ({}).",
                str_of(&answer["kind"]),
                str_of(&answer["id"]),
                str_of(&answer["status"])
            );
        }
        EvidenceCommand::List { vendor, client } => {
            let answer = Client::authenticated(&client)?.call(
                Method::Get,
                &format!("vendors/{vendor}/evidence"),
                None,
            )?;
            for e in items(&answer) {
                println!(
                    "{}  {:<11} {:<8} expires {}  {}",
                    str_of(&e["id"]),
                    str_of(&e["kind"]),
                    str_of(&e["status"]),
                    str_of(&e["expires"]),
                    super::shown(&e["issuer"], "")
                );
            }
        }
        EvidenceCommand::Revoke {
            id,
            reason,
            date,
            client,
        } => {
            let request = body(&[("reason", Some(json!(reason))), ("date", opt(&date))]);
            let answer = Client::authenticated(&client)?.call(
                Method::Post,
                &format!("evidence/{id}/revoke"),
                Some(&request),
            )?;
            println!("Revoked {id} from {}.", str_of(&answer["revoked"]));
        }
        EvidenceCommand::Upload { id, file, client } => upload(&id, &file, &client)?,
        EvidenceCommand::Download { id, out, client } => download(&id, &out, &client)?,
    }
    Ok(())
}

/// `chaperone policy ...`
#[derive(Subcommand, Debug)]
pub(crate) enum PolicyCommand {
    /// Publish a policy document (again, for a new version).
    Publish {
        name: String,
        #[arg(long)]
        title: String,
        /// The text; `-` reads standard input.
        #[arg(long)]
        file: PathBuf,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// The latest version of every policy.
    List {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Print a policy's latest text.
    Show {
        name: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Acknowledge that you read a policy's latest version.
    Acknowledge {
        name: String,
        /// The version you read.
        #[arg(long)]
        version: u32,
        #[command(flatten)]
        client: ClientArgs,
    },
}

pub(crate) fn policy(command: PolicyCommand) -> anyhow::Result<()> {
    match command {
        PolicyCommand::Publish {
            name,
            title,
            file,
            client,
        } => {
            let text = if file.as_os_str() == "-" {
                std::io::read_to_string(std::io::stdin())?
            } else {
                std::fs::read_to_string(&file)
                    .with_context(|| format!("reading {}", file.display()))?
            };
            let answer = Client::authenticated(&client)?.call(
                Method::Post,
                "policies",
                Some(&json!({ "name": name, "title": title, "text": text })),
            )?;
            println!("Published {name} version {}.", answer["version"]);
        }
        PolicyCommand::List { client } => {
            let answer = Client::authenticated(&client)?.call(Method::Get, "policies", None)?;
            for p in items(&answer) {
                println!(
                    "{:<24} v{:<4} {}",
                    str_of(&p["name"]),
                    p["version"],
                    str_of(&p["title"])
                );
            }
        }
        PolicyCommand::Show { name, client } => {
            let answer = Client::authenticated(&client)?.call(Method::Get, "policies", None)?;
            let policy = items(&answer)
                .find(|p| p["name"] == name.as_str())
                .with_context(|| format!("no policy `{name}`"))?;
            println!(
                "{} (version {})\n\n{}",
                str_of(&policy["title"]),
                policy["version"],
                chaperone_scan::output::printable_lines(policy["text"].as_str().unwrap_or("-"))
            );
        }
        PolicyCommand::Acknowledge {
            name,
            version,
            client,
        } => {
            Client::authenticated(&client)?.call(
                Method::Post,
                &format!("policies/{name}/acknowledge"),
                Some(&json!({ "version": version })),
            )?;
            println!("Acknowledged {name} version {version}.");
        }
    }
    Ok(())
}

/// `chaperone classification ...`
#[derive(Subcommand, Debug)]
pub(crate) enum ClassificationCommand {
    /// Classify a path prefix at a level (public, internal, confidential, regulated, or
    /// one you defined).
    Set {
        prefix: String,
        level: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// List classified prefixes (others are internal).
    List {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Remove a prefix's classification.
    Remove {
        prefix: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Every level with its access policy.
    Levels {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Define a level or change its access policy, from a JSON file (see
    /// docs/governance.md); `-` reads standard input.
    Level {
        name: String,
        file: PathBuf,
        #[command(flatten)]
        client: ClientArgs,
    },
}

pub(crate) fn classification(command: ClassificationCommand) -> anyhow::Result<()> {
    match command {
        ClassificationCommand::Set {
            prefix,
            level,
            client,
        } => {
            let body = json!({ "prefix": prefix, "level": level });
            Client::authenticated(&client)?.call(Method::Put, "classifications", Some(&body))?;
            println!("{prefix} is {level}.");
        }
        ClassificationCommand::List { client } => {
            let answer =
                Client::authenticated(&client)?.call(Method::Get, "classifications", None)?;
            for c in items(&answer) {
                println!("{:<40} {}", str_of(&c["prefix"]), str_of(&c["level"]));
            }
        }
        ClassificationCommand::Remove { prefix, client } => {
            Client::authenticated(&client)?.call(
                Method::Delete,
                &format!("classifications/{prefix}"),
                None,
            )?;
            println!("{prefix} is no longer classified (internal).");
        }
        ClassificationCommand::Levels { client } => {
            print_json(&Client::authenticated(&client)?.call(Method::Get, "levels", None)?)?;
        }
        ClassificationCommand::Level { name, file, client } => {
            let mut level = json_file(&file)?;
            level["name"] = json!(name);
            Client::authenticated(&client)?.call(
                Method::Put,
                &format!("levels/{name}"),
                Some(&level),
            )?;
            println!("Level {name} set.");
        }
    }
    Ok(())
}

/// `chaperone request ...`
#[derive(Subcommand, Debug)]
pub(crate) enum RequestCommand {
    /// Ask for access to a path prefix.
    Create {
        prefix: String,
        /// read, list, write (comma-separated).
        #[arg(long, value_delimiter = ',', required = true)]
        capabilities: Vec<String>,
        /// How long, e.g. 3d.
        #[arg(long)]
        duration: String,
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Requests: approvers see all they could decide, others their own.
    List {
        /// pending, approved, denied.
        #[arg(long)]
        status: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Approve a request.
    Approve {
        id: String,
        #[arg(long)]
        comment: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Deny a request.
    Deny {
        id: String,
        #[arg(long)]
        comment: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Withdraw one's own pending request.
    Cancel {
        id: String,
        #[command(flatten)]
        client: ClientArgs,
    },
}

pub(crate) fn request(command: RequestCommand) -> anyhow::Result<()> {
    match command {
        RequestCommand::Create {
            prefix,
            capabilities,
            duration,
            reason,
            client,
        } => {
            let body = json!({ "prefix": prefix, "capabilities": capabilities, "duration": duration, "reason": reason });
            let answer =
                Client::authenticated(&client)?.call(Method::Post, "requests", Some(&body))?;
            println!(
                "Requested {} on {prefix} ({}): {}.",
                capabilities.join(","),
                str_of(&answer["id"]),
                needs(&answer)
            );
        }
        RequestCommand::List { status, client } => {
            let path = match &status {
                Some(s) => format!("requests?status={}", query_value(s)),
                None => "requests".to_owned(),
            };
            let answer = Client::authenticated(&client)?.call(Method::Get, &path, None)?;
            for r in items(&answer) {
                // A contractor is not told the level, nor so how many approvals it takes.
                let approvals = if str_of(&r["level"]).is_empty() {
                    String::new()
                } else {
                    format!(
                        "{}/{} approvals  ",
                        r["approvals"].as_array().map_or(0, Vec::len),
                        r["approvals_needed"]
                    )
                };
                let grant = r["grant_id"]
                    .as_str()
                    .map(|g| format!("  grant {g}"))
                    .unwrap_or_default();
                println!(
                    "{}  {:<9} {:<16} {:<30} {:<12} {approvals}{}{grant}",
                    str_of(&r["id"]),
                    str_of(&r["status"]),
                    str_of(&r["person"]),
                    str_of(&r["prefix"]),
                    joined(&r["capabilities"]),
                    str_of(&r["reason"])
                );
            }
        }
        RequestCommand::Approve {
            id,
            comment,
            client,
        } => {
            let answer = Client::authenticated(&client)?.call(
                Method::Post,
                &format!("requests/{id}/approve"),
                Some(&json!({ "comment": comment })),
            )?;
            match answer["grant_id"].as_str() {
                Some(grant) => println!("Approved {id}: grant {grant}."),
                None => println!(
                    "Approved {id}: {}/{} approvals.",
                    answer["approvals"].as_array().map_or(0, Vec::len),
                    answer["approvals_needed"]
                ),
            }
        }
        RequestCommand::Deny {
            id,
            comment,
            client,
        } => {
            Client::authenticated(&client)?.call(
                Method::Post,
                &format!("requests/{id}/deny"),
                Some(&json!({ "comment": comment })),
            )?;
            println!("Denied {id}.");
        }
        RequestCommand::Cancel { id, client } => {
            Client::authenticated(&client)?.call(
                Method::Post,
                &format!("requests/{id}/cancel"),
                None,
            )?;
            println!("Withdrew {id}.");
        }
    }
    Ok(())
}

/// `chaperone grant ...`
#[derive(Subcommand, Debug)]
pub(crate) enum GrantCommand {
    /// Break-glass: grant at once without approval (admin only); flagged for review.
    BreakGlass {
        person: String,
        prefix: String,
        /// read, write, delete, destroy, list (comma-separated).
        #[arg(long, value_delimiter = ',', required = true)]
        capabilities: Vec<String>,
        /// How long, e.g. 4h.
        #[arg(long)]
        ttl: String,
        /// Why this cannot wait for an approval.
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Active grants: one person's, all, or break-glass grants awaiting review.
    List {
        #[arg(long)]
        person: Option<String>,
        #[arg(long)]
        flagged: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Your own grants that have not ended, with their ids (for `grant extend`).
    Mine {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Revoke a grant by id.
    Revoke {
        id: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Ask for your grant to be extended (needs new approvals).
    Extend {
        id: String,
        #[arg(long)]
        duration: String,
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Mark a break-glass grant as reviewed.
    Review {
        id: String,
        #[arg(long)]
        note: String,
        #[command(flatten)]
        client: ClientArgs,
    },
}

/// What a new request waits for: the approvals and level for staff; a contractor is not told
/// the path's level, nor so the approvals it takes.
fn needs(request: &Value) -> String {
    let level = str_of(&request["level"]);
    if level.is_empty() {
        "waits for approval".to_owned()
    } else {
        format!(
            "needs {} approval(s) at level {level}",
            request["approvals_needed"]
        )
    }
}

pub(crate) fn grant(command: GrantCommand) -> anyhow::Result<()> {
    match command {
        GrantCommand::BreakGlass {
            person,
            prefix,
            capabilities,
            ttl,
            reason,
            client,
        } => {
            let body = json!({ "person": person, "prefix": prefix, "capabilities": capabilities, "ttl": ttl, "reason": reason });
            let answer =
                Client::authenticated(&client)?.call(Method::Post, "grants", Some(&body))?;
            println!(
                "Granted {} on {prefix} to {person} until {} ({}); flagged for review.",
                capabilities.join(","),
                str_of(&answer["expires_time"]),
                str_of(&answer["id"])
            );
        }
        GrantCommand::List {
            person,
            flagged,
            client,
        } => {
            let mut query = Vec::new();
            if let Some(p) = &person {
                query.push(format!("person={}", query_value(p)));
            }
            if flagged {
                query.push("flagged=true".to_owned());
            }
            let path = if query.is_empty() {
                "grants".to_owned()
            } else {
                format!("grants?{}", query.join("&"))
            };
            let answer = Client::authenticated(&client)?.call(Method::Get, &path, None)?;
            for g in items(&answer) {
                println!(
                    "{}  {}  {}  {}  until {}{}",
                    str_of(&g["id"]),
                    str_of(&g["person"]),
                    str_of(&g["prefix"]),
                    joined(&g["capabilities"]),
                    str_of(&g["expires_time"]),
                    if g["needs_review"] == true {
                        "  [break-glass, needs review]"
                    } else {
                        ""
                    }
                );
            }
        }
        GrantCommand::Mine { client } => {
            let answer = Client::authenticated(&client)?.call(Method::Get, "auth/grants", None)?;
            let grants: Vec<&serde_json::Value> = items(&answer).collect();
            if grants.is_empty() {
                eprintln!("You hold no grant now.");
            }
            for g in grants {
                println!(
                    "{}  {}  {}  until {}",
                    str_of(&g["id"]),
                    str_of(&g["prefix"]),
                    joined(&g["capabilities"]),
                    str_of(&g["expires_time"]),
                );
            }
        }
        GrantCommand::Revoke { id, client } => {
            Client::authenticated(&client)?.call(Method::Delete, &format!("grants/{id}"), None)?;
            println!("Revoked {id}.");
        }
        GrantCommand::Extend {
            id,
            duration,
            reason,
            client,
        } => {
            let answer = Client::authenticated(&client)?.call(
                Method::Post,
                &format!("grants/{id}/extend"),
                Some(&json!({ "duration": duration, "reason": reason })),
            )?;
            println!(
                "Asked to extend {id} ({}): {}.",
                str_of(&answer["id"]),
                needs(&answer)
            );
        }
        GrantCommand::Review { id, note, client } => {
            Client::authenticated(&client)?.call(
                Method::Post,
                &format!("grants/{id}/review"),
                Some(&json!({ "note": note })),
            )?;
            println!("Reviewed {id}.");
        }
    }
    Ok(())
}

/// `chaperone review ...`
#[derive(Subcommand, Debug)]
pub(crate) enum ReviewCommand {
    /// Open an access review of one vendor (or all): undecided items are revoked at the
    /// deadline.
    Create {
        #[arg(long)]
        vendor: Option<String>,
        /// A date (2026-12-15) or a duration from now (14d).
        #[arg(long)]
        deadline: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Review campaigns.
    List {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// A campaign with its items.
    Show {
        id: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Certify or revoke one item.
    Decide {
        id: String,
        item: String,
        /// certify or revoke.
        decision: String,
        #[arg(long)]
        note: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
}

pub(crate) fn review(command: ReviewCommand) -> anyhow::Result<()> {
    match command {
        ReviewCommand::Create {
            vendor,
            deadline,
            client,
        } => {
            let body = body(&[
                ("vendor", opt(&vendor)),
                ("deadline", Some(json!(deadline))),
            ]);
            let answer =
                Client::authenticated(&client)?.call(Method::Post, "reviews", Some(&body))?;
            println!(
                "Opened review {} with {} items, due {}.",
                str_of(&answer["id"]),
                answer["items"].as_array().map_or(0, Vec::len),
                str_of(&answer["deadline"])
            );
        }
        ReviewCommand::List { client } => {
            let answer = Client::authenticated(&client)?.call(Method::Get, "reviews", None)?;
            for r in items(&answer) {
                let all = r["items"].as_array().map_or(0, Vec::len);
                let open = items(&r["items"])
                    .filter(|i| i["decision"].is_null())
                    .count();
                println!(
                    "{}  {:<7} due {}  {open}/{all} undecided",
                    str_of(&r["id"]),
                    str_of(&r["status"]),
                    str_of(&r["deadline"])
                );
            }
        }
        ReviewCommand::Show { id, client } => {
            print_json(&Client::authenticated(&client)?.call(
                Method::Get,
                &format!("reviews/{id}"),
                None,
            )?)?;
        }
        ReviewCommand::Decide {
            id,
            item,
            decision,
            note,
            client,
        } => {
            Client::authenticated(&client)?.call(
                Method::Post,
                &format!("reviews/{id}/items/{item}"),
                Some(&json!({ "decision": decision, "note": note })),
            )?;
            println!("{item}: {decision}.");
        }
    }
    Ok(())
}

/// Prints an offboarding report: what was cut, and the blast radius.
/// Prints an attestation link (`path`, `due`, `mailed_to`) and whether it was mailed.
fn print_attestation_link(client: &Client, name: &str, link: &Value) {
    let Some(path) = link["path"].as_str() else {
        return;
    };
    let mailed: Vec<&str> = link["mailed_to"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    if !mailed.is_empty() {
        // The server hands the token to the vendor's contacts alone once mailed.
        println!(
            "Attestation link for {name}'s contact (due {}): mailed to {}; only they hold it.",
            str_of(&link["due"]),
            mailed.join(", ")
        );
        return;
    }
    println!(
        "Attestation link for {name}'s contact (due {}): {}{path}",
        str_of(&link["due"]),
        client.base()
    );
    println!(
        "It was not mailed (no mail relay or public_url set, no contact address, or the relay \
         refused: see the server's log). Send it to the vendor yourself: it is shown only now, \
         and works once."
    );
}

pub(crate) fn print_report(report: &Value) {
    println!(
        "Offboarded {} ({}): {} grant(s) revoked, {} request(s) closed, accounts disabled and \
         tokens revoked: {}.",
        str_of(&report["subject"]),
        str_of(&report["id"]),
        report["grants_revoked"],
        report["requests_closed"],
        joined(&report["people"])
    );
    let exposed = report["blast_radius"].as_array().map_or(0, Vec::len);
    println!("Blast radius: {exposed} secret(s) to rotate.");
    for e in items(&report["blast_radius"]) {
        // `read v1,2  held v3`: only what they did.
        let versions = |what: &str, v: &Value| {
            let list: Vec<String> = items(v).map(|n| n.to_string()).collect();
            if list.is_empty() {
                String::new()
            } else {
                format!("{what} v{}  ", list.join(","))
            }
        };
        println!(
            "  {:<40} {:<12} {}{}{}finding {}",
            str_of(&e["path"]),
            str_of(&e["level"]),
            versions("read", &e["versions_read"]),
            versions("wrote", &e["versions_written"]),
            versions("held", &e["versions_held"]),
            str_of(&e["finding_id"])
        );
    }
}

/// `chaperone finding ...`
#[derive(Subcommand, Debug)]
pub(crate) enum FindingCommand {
    /// Findings (yours; security and auditors see all).
    List {
        /// open, in_progress, resolved or risk_accepted.
        #[arg(long)]
        status: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// One finding with its history.
    Show {
        id: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Move a finding (a note is required to resolve it or accept its risk), or reassign it.
    Update {
        id: String,
        #[arg(long)]
        status: Option<String>,
        #[arg(long)]
        note: Option<String>,
        #[arg(long)]
        owner: Option<String>,
        #[arg(long)]
        due: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
}

pub(crate) fn finding(command: FindingCommand) -> anyhow::Result<()> {
    match command {
        FindingCommand::List { status, client } => {
            let path = match &status {
                Some(s) => format!("findings?status={}", query_value(s)),
                None => "findings".to_owned(),
            };
            let answer = Client::authenticated(&client)?.call(Method::Get, &path, None)?;
            for f in items(&answer) {
                println!(
                    "{}  {:<13} {:<8} due {}  {}",
                    str_of(&f["id"]),
                    str_of(&f["status"]),
                    str_of(&f["severity"]),
                    &str_of(&f["due"])[..10.min(str_of(&f["due"]).len())],
                    // Titles name archive members, which the submitter chose.
                    str_of(&f["title"])
                );
            }
        }
        FindingCommand::Show { id, client } => {
            print_json(&Client::authenticated(&client)?.call(
                Method::Get,
                &format!("findings/{id}"),
                None,
            )?)?;
        }
        FindingCommand::Update {
            id,
            status,
            note,
            owner,
            due,
            client,
        } => {
            let request = body(&[
                ("status", opt(&status)),
                ("note", opt(&note)),
                ("owner", opt(&owner)),
                ("due", opt(&due)),
            ]);
            let answer = Client::authenticated(&client)?.call(
                Method::Post,
                &format!("findings/{id}"),
                Some(&request),
            )?;
            println!("{id} is {}.", str_of(&answer["status"]));
        }
    }
    Ok(())
}

/// `chaperone report`
#[derive(clap::Args, Debug)]
pub(crate) struct ReportArgs {
    /// Start of the period (a date or an RFC 3339 instant; 7 days before --to if not given).
    #[arg(long)]
    from: Option<String>,
    /// End of the period, excluded (now if not given).
    #[arg(long)]
    to: Option<String>,
    /// Print the whole report as JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    client: ClientArgs,
}

pub(crate) fn report(args: ReportArgs) -> anyhow::Result<()> {
    let mut query = Vec::new();
    for (key, value) in [("from", &args.from), ("to", &args.to)] {
        if let Some(value) = value {
            query.push(format!("{key}={}", query_value(value)));
        }
    }
    let path = if query.is_empty() {
        "reports".to_owned()
    } else {
        format!("reports?{}", query.join("&"))
    };
    let report = Client::authenticated(&args.client)?.call(Method::Get, &path, None)?;
    if args.json {
        return print_json(&report);
    }
    println!(
        "From {} to {}: {} ledger entries.",
        str_of(&report["from"]),
        str_of(&report["to"]),
        report["entries"]
    );
    let counts = |list: &Value| -> String {
        items(list)
            .take(5)
            .map(|c| format!("{} ({})", str_of(&c["name"]), c["count"]))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let failed = &report["failed_logins"];
    println!("\nFailed logins: {}", failed["total"]);
    if failed["total"].as_u64().unwrap_or(0) > 0 {
        println!("  accounts: {}", counts(&failed["by_account"]));
        println!("  addresses: {}", counts(&failed["by_address"]));
    }
    println!("\nData transfers:");
    for t in items(&report["data_transfers"]) {
        println!(
            "  {:<22} {:>7}  {}",
            str_of(&t["action"]),
            t["total"],
            counts(&t["by_person"])
        );
    }
    println!("\nProvisioning changes:");
    if let Some(map) = report["provisioning"]["counts"].as_object() {
        for (action, count) in map {
            println!("  {action:<22} {count:>7}");
        }
    }
    println!("\nAnomalies:");
    if let Some(map) = report["anomalies"].as_object() {
        for (kind, count) in map {
            println!("  {kind:<22} {count:>7}");
        }
    }
    println!("\nVendor compliance (now):");
    for v in items(&report["vendor_compliance"]) {
        let short: Vec<String> = items(&v["levels"])
            .filter(|l| l["met"] == false)
            .map(|l| format!("{}: {}", str_of(&l["level"]), str_of(&l["reason"])))
            .collect();
        println!(
            "  {} ({}): {}",
            str_of(&v["vendor"]),
            str_of(&v["status"]),
            if short.is_empty() {
                "meets every level".to_owned()
            } else {
                short.join("; ")
            }
        );
        for soon in items(&v["ending_soon"]) {
            println!("    {}", soon.as_str().unwrap_or_default());
        }
    }
    Ok(())
}
