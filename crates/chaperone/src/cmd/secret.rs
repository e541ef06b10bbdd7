//! `chaperone secret ...`: store and read secrets through the API.

use std::collections::BTreeMap;

use anyhow::{Context, bail};
use clap::{Subcommand, ValueEnum};
use serde_json::{Value, json};

use crate::client::{Client, ClientArgs, Method};

#[derive(Subcommand, Debug)]
pub(crate) enum SecretCommand {
    /// Write a new version: `key=value`, `key=@file` (the file, exactly) or `key=-` (stdin,
    /// less one trailing newline).
    Put {
        path: String,
        /// Fields as key=value, key=@file or key=-.
        #[arg(required = true)]
        fields: Vec<String>,
        /// Check-and-set: the current version this write replaces (0: only if absent).
        #[arg(long)]
        cas: Option<u64>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Read a version (the current one by default).
    Get {
        path: String,
        #[arg(long)]
        version: Option<u64>,
        /// Print only this field's value.
        #[arg(long)]
        field: Option<String>,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// List keys under a prefix (folders end with `/`).
    List {
        #[arg(default_value = "")]
        prefix: String,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Soft-delete versions (the current one by default); undelete restores them.
    Delete {
        path: String,
        /// Versions, comma-separated.
        #[arg(long, value_delimiter = ',')]
        versions: Vec<u64>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Restore soft-deleted versions.
    Undelete {
        path: String,
        #[arg(long, value_delimiter = ',', required = true)]
        versions: Vec<u64>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Destroy versions' data for good (their metadata stays).
    Destroy {
        path: String,
        #[arg(long, value_delimiter = ',', required = true)]
        versions: Vec<u64>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Secrets due for rotation: past their maximum age, or exposed (read or granted to
    /// someone who lost access since).
    Stale {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Set a secret's rotation policy: the longest a version may stay current.
    Rotation {
        path: String,
        #[arg(long)]
        max_age: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Show a secret's metadata, or change it: `--set owner=ann` names who rotates it after
    /// an offboarding (custom metadata is not secret: listings and reads show it).
    Metadata {
        path: String,
        /// Set a custom metadata key (`key=value`; repeat for several).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
        /// Remove a custom metadata key (repeat for several).
        #[arg(long = "unset", value_name = "KEY")]
        unset: Vec<String>,
        /// Versions to keep (0: the server's default).
        #[arg(long)]
        max_versions: Option<u32>,
        /// Whether every write must name the version it replaces (check-and-set).
        #[arg(long)]
        cas_required: Option<bool>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Show a secret's versions and their states.
    History {
        path: String,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum Format {
    Table,
    Json,
}

pub(crate) fn run(command: SecretCommand) -> anyhow::Result<()> {
    match command {
        SecretCommand::Put {
            path,
            fields,
            cas,
            client,
        } => {
            let data = parse_fields(&fields, &mut std::io::stdin().lock())?;
            let mut body = json!({ "data": data });
            if let Some(cas) = cas {
                body["cas"] = json!(cas);
            }
            let answer = Client::authenticated(&client)?.call(
                Method::Put,
                &format!("secrets/data/{path}"),
                Some(&body),
            )?;
            println!("Wrote version {} of {path}.", answer["version"]);
        }
        SecretCommand::Get {
            path,
            version,
            field,
            format,
            client,
        } => {
            let query = version.map(|v| format!("?version={v}")).unwrap_or_default();
            let answer = Client::authenticated(&client)?.call(
                Method::Get,
                &format!("secrets/data/{path}{query}"),
                None,
            )?;
            if let Some(field) = field {
                match answer["data"].get(&field).and_then(Value::as_str) {
                    Some(value) => println!("{value}"),
                    None => bail!(
                        "version {} of {path} has no field `{field}`",
                        answer["version"]
                    ),
                }
            } else if format == Format::Json {
                println!("{}", serde_json::to_string_pretty(&answer)?);
            } else {
                println!("path     {path}");
                println!("version  {}", answer["version"]);
                println!("created  {}", answer["created_time"].as_str().unwrap_or(""));
                println!();
                if let Some(data) = answer["data"].as_object() {
                    // For a person at a terminal: whoever may write the secret (a contractor
                    // under a grant, a request link's holder) chose its keys and values, so
                    // what would change how they are shown is escaped; a value's lines stay.
                    // `--field` prints a value exactly.
                    let width = data.keys().map(String::len).max().unwrap_or(0);
                    for (key, value) in data {
                        println!(
                            "{:width$}  {}",
                            chaperone_scan::output::printable(key),
                            chaperone_scan::output::printable_lines(
                                value.as_str().unwrap_or_default()
                            )
                        );
                    }
                }
            }
        }
        SecretCommand::List {
            prefix,
            format,
            client,
        } => {
            let route = if prefix.is_empty() {
                "secrets/list".to_owned()
            } else {
                format!("secrets/list/{prefix}")
            };
            let answer = Client::authenticated(&client)?.call(Method::Get, &route, None)?;
            if format == Format::Json {
                println!("{}", serde_json::to_string_pretty(&answer["keys"])?);
            } else {
                for key in answer["keys"].as_array().into_iter().flatten() {
                    println!("{}", key.as_str().unwrap_or_default());
                }
            }
        }
        SecretCommand::Delete {
            path,
            versions,
            client,
        } => {
            if versions.is_empty() {
                Client::authenticated(&client)?.call(
                    Method::Delete,
                    &format!("secrets/data/{path}"),
                    None,
                )?;
                println!("Deleted the current version of {path} (undelete restores it).");
            } else {
                post_versions(&client, "delete", &path, &versions)?;
                println!("Deleted versions {versions:?} of {path} (undelete restores them).");
            }
        }
        SecretCommand::Undelete {
            path,
            versions,
            client,
        } => {
            post_versions(&client, "undelete", &path, &versions)?;
            println!("Restored versions {versions:?} of {path}.");
        }
        SecretCommand::Destroy {
            path,
            versions,
            client,
        } => {
            post_versions(&client, "destroy", &path, &versions)?;
            println!("Destroyed the data of versions {versions:?} of {path}.");
        }
        SecretCommand::Stale { client } => {
            let answer =
                Client::authenticated(&client)?.call(Method::Get, "secrets/stale", None)?;
            for s in answer.as_array().into_iter().flatten() {
                let reason = match s["reason"].as_str() {
                    Some("exposed") => "exposed — rotate",
                    _ => "overdue",
                };
                println!(
                    "{:<40} {:<17} v{} written {}  due {}",
                    s["path"].as_str().unwrap_or("-"),
                    reason,
                    s["version"],
                    s["version_time"].as_str().unwrap_or("-"),
                    s["due"].as_str().unwrap_or("-")
                );
            }
        }
        SecretCommand::Rotation {
            path,
            max_age,
            client,
        } => {
            Client::authenticated(&client)?.call(
                Method::Put,
                &format!("rotation/{path}"),
                Some(&serde_json::json!({ "max_age": max_age })),
            )?;
            println!("{path} must be rotated every {max_age}.");
        }
        SecretCommand::Metadata {
            path,
            set,
            unset,
            max_versions,
            cas_required,
            client,
        } => {
            let client = Client::authenticated(&client)?;
            let route = format!("secrets/metadata/{path}");
            let current = client.call(Method::Get, &route, None)?;
            if set.is_empty()
                && unset.is_empty()
                && max_versions.is_none()
                && cas_required.is_none()
            {
                println!("{}", serde_json::to_string_pretty(&current)?);
                return Ok(());
            }
            let mut body = json!({});
            if !set.is_empty() || !unset.is_empty() {
                // The server replaces custom metadata whole: the keys not named are kept.
                let mut custom: BTreeMap<String, String> =
                    serde_json::from_value(current["custom_metadata"].clone()).unwrap_or_default();
                for (index, pair) in set.iter().enumerate() {
                    let Some((key, value)) = pair.split_once('=') else {
                        bail!("--set {} (counting from 1) must be key=value", index + 1);
                    };
                    custom.insert(key.to_owned(), value.to_owned());
                }
                for key in &unset {
                    custom.remove(key);
                }
                body["custom_metadata"] = json!(custom);
            }
            if let Some(max) = max_versions {
                body["max_versions"] = json!(max);
            }
            if let Some(cas) = cas_required {
                body["cas_required"] = json!(cas);
            }
            client.call(Method::Put, &route, Some(&body))?;
            println!("Updated the metadata of {path}.");
        }
        SecretCommand::History {
            path,
            format,
            client,
        } => {
            let answer = Client::authenticated(&client)?.call(
                Method::Get,
                &format!("secrets/metadata/{path}"),
                None,
            )?;
            if format == Format::Json {
                println!("{}", serde_json::to_string_pretty(&answer)?);
            } else {
                println!("{:<8} {:<32} STATE", "VERSION", "CREATED");
                for v in answer["versions"].as_array().into_iter().flatten() {
                    let state = if v["destroyed"] == Value::Bool(true) {
                        "destroyed".to_owned()
                    } else if let Some(at) = v["deletion_time"].as_str().filter(|s| !s.is_empty()) {
                        format!("deleted {at}")
                    } else {
                        "active".to_owned()
                    };
                    let current = if v["version"] == answer["current_version"] {
                        " (current)"
                    } else {
                        ""
                    };
                    println!(
                        "{:<8} {:<32} {state}{current}",
                        v["version"].as_u64().unwrap_or_default(),
                        v["created_time"].as_str().unwrap_or_default()
                    );
                }
            }
        }
    }
    Ok(())
}

/// Calls `secrets/{action}/{path}` with a list of versions.
fn post_versions(
    client: &ClientArgs,
    action: &str,
    path: &str,
    versions: &[u64],
) -> anyhow::Result<()> {
    let body = json!({ "versions": versions });
    Client::authenticated(client)?.call(
        Method::Post,
        &format!("secrets/{action}/{path}"),
        Some(&body),
    )?;
    Ok(())
}

/// Parses `key=value`, `key=@file` and `key=-` arguments. Only one field may read `stdin`.
fn parse_fields(
    fields: &[String],
    stdin: &mut impl std::io::Read,
) -> anyhow::Result<BTreeMap<String, String>> {
    let mut data = BTreeMap::new();
    let mut stdin_used = false;
    for (index, field) in fields.iter().enumerate() {
        // An argument without `=` may be a value typed without its key: never shown.
        let Some((key, value)) = field.split_once('=') else {
            bail!(
                "field {} (counting from 1) must be key=value, key=@file or key=-",
                index + 1
            );
        };
        if key.is_empty() {
            bail!("a field has an empty key");
        }
        let value = if value == "-" {
            if stdin_used {
                bail!("only one field can be read from stdin");
            }
            stdin_used = true;
            let mut text = String::new();
            stdin
                .read_to_string(&mut text)
                .context("reading a value from stdin")?;
            // A value typed or piped with `echo` ends with one newline that is not part of it.
            if text.ends_with('\n') {
                text.pop();
                if text.ends_with('\r') {
                    text.pop();
                }
            }
            text
        } else if let Some(file) = value.strip_prefix('@') {
            std::fs::read_to_string(file)
                .with_context(|| format!("reading the value of `{key}` from {file}"))?
        } else {
            value.to_owned()
        };
        if data.insert(key.to_owned(), value).is_some() {
            bail!("field `{key}` is given twice");
        }
    }
    Ok(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_from_arguments_files_and_stdin() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("key.pem");
        std::fs::write(&file, "-----BEGIN-----\nabc\n").unwrap();
        let args = vec![
            "user=app".to_owned(),
            format!("cert=@{}", file.display()),
            "password=-".to_owned(),
            "url=a=b".to_owned(),
        ];
        let data = parse_fields(&args, &mut "s3cr3t\n".as_bytes()).unwrap();
        assert_eq!(data["user"], "app");
        assert_eq!(data["cert"], "-----BEGIN-----\nabc\n");
        assert_eq!(data["password"], "s3cr3t");
        assert_eq!(data["url"], "a=b");
    }

    #[test]
    fn bad_fields_are_refused_without_echoing_values() {
        let err =
            parse_fields(&["a=1".into(), "Hunter2Secret".into()], &mut "".as_bytes()).unwrap_err();
        assert!(err.to_string().contains("field 2 "), "{err}");
        assert!(err.to_string().contains("key=value"));
        assert!(!err.to_string().contains("Hunter2"), "{err}");
        let err = parse_fields(&["a=-".into(), "b=-".into()], &mut "x".as_bytes()).unwrap_err();
        assert!(err.to_string().contains("only one"));
        let err = parse_fields(&["a=1".into(), "a=2".into()], &mut "".as_bytes()).unwrap_err();
        assert!(err.to_string().contains("twice"));
        let err = parse_fields(&["k=@/nonexistent/file".into()], &mut "".as_bytes()).unwrap_err();
        assert!(format!("{err:#}").contains("/nonexistent/file"));
        let err = parse_fields(&["hunter2-secret".into()], &mut "".as_bytes()).unwrap_err();
        assert!(!err.to_string().contains("-secret"));
    }
}
