//! The `chaperone` command: runs the server (`up`, `init`, `server`) and talks to one
//! (`unseal`, `seal`, `secret ...`). It parses arguments and wires the library crates
//! together; the logic lives in those crates.

mod client;
mod cmd;
mod config;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Work safely with outside developers, contractors and vendors.
#[derive(Parser, Debug)]
#[command(name = "chaperone", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run an evaluation server on SQLite in a data directory (created and unsealed for you).
    Up(cmd::server::UpArgs),
    /// Initialise a production database: print unseal shares and the first admin token once.
    Init(cmd::server::InitArgs),
    /// Run the server from a configuration file; it starts sealed.
    Server(cmd::server::ServerArgs),
    /// Give unseal shares to a sealed server (prompted, or one per line on stdin).
    Unseal(cmd::seal::UnsealArgs),
    /// Seal a running server: its keys leave memory until the next unseal.
    Seal(client::ClientArgs),
    /// Store and read secrets.
    #[command(subcommand)]
    Secret(cmd::secret::SecretCommand),
    /// Manage people (admin, security).
    #[command(subcommand)]
    User(cmd::identity::UserCommand),
    /// Set your password and TOTP with an enrolment code.
    Enroll(cmd::identity::EnrollArgs),
    /// Log in; the session token is saved for later commands.
    Login(cmd::identity::LoginArgs),
    /// Revoke the saved session and forget it.
    Logout(client::ClientArgs),
    /// Verify a TOTP code on this session (step-up for confidential paths).
    Verify(cmd::identity::VerifyArgs),
    /// Create, list and revoke API tokens.
    #[command(subcommand)]
    Token(cmd::identity::TokenCommand),
    /// Vendors: profile, lifecycle, history (admin, security; read: approver, auditor).
    #[command(subcommand)]
    Vendor(cmd::governance::VendorCommand),
    /// Agreements with vendors and their signed documents.
    #[command(subcommand)]
    Agreement(cmd::governance::AgreementCommand),
    /// Evidence from vendors (SOC 2, ISO 27001, pen tests, insurance).
    #[command(subcommand)]
    Evidence(cmd::governance::EvidenceCommand),
    /// Policy documents and acknowledgements.
    #[command(subcommand)]
    Policy(cmd::governance::PolicyCommand),
    /// Path classification and level policies.
    #[command(subcommand, alias = "classify")]
    Classification(cmd::governance::ClassificationCommand),
    /// Ask for access; approve or deny requests.
    #[command(subcommand)]
    Request(cmd::governance::RequestCommand),
    /// Grants: list, revoke, extend, break-glass, review.
    #[command(subcommand)]
    Grant(cmd::governance::GrantCommand),
    /// Access review campaigns.
    #[command(subcommand)]
    Review(cmd::governance::ReviewCommand),
    /// Findings: secrets to rotate, overdue attestations, anomalies, ...
    #[command(subcommand)]
    Finding(cmd::governance::FindingCommand),
    /// A period's failed logins, data transfers, provisioning changes and anomalies, and
    /// each vendor's compliance now (admin, security, auditor).
    Report(cmd::governance::ReportArgs),
    /// One-time share links and request-a-secret links.
    #[command(subcommand)]
    Share(cmd::share::ShareCommand),
    /// Read the tamper-evident ledger: verifier key and signed checkpoints.
    #[command(subcommand)]
    Ledger(cmd::ledger::LedgerCommand),
    /// Scan files and directories for leaked credentials (exit 1 on findings).
    Scan(cmd::scan::ScanArgs),
    /// Key management: rekey the unseal shares, rotate the key-encryption key (admin).
    #[command(subcommand)]
    Operator(cmd::operator::OperatorCommand),
    /// Take a consistent online backup of the database, with a manifest.
    Backup(cmd::backup::BackupArgs),
    /// Restore a backup into an empty data directory or database, verifying its ledger.
    Restore(cmd::backup::RestoreArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Not for the server, whose output goes on while it runs: there a closed stdout stays a
    // panic, logged.
    if !matches!(cli.command, Command::Up(_) | Command::Server(_)) {
        end_quietly_when_stdout_closes();
    }
    let result = match cli.command {
        Command::Up(args) => cmd::server::up(args),
        Command::Backup(args) => cmd::backup::backup(args),
        Command::Operator(command) => cmd::operator::run(command),
        Command::Restore(args) => cmd::backup::restore(args),
        Command::Init(args) => cmd::server::init(args),
        Command::Server(args) => cmd::server::server(args),
        Command::Unseal(args) => cmd::seal::unseal(args),
        Command::Seal(args) => cmd::seal::seal(args),
        Command::Secret(command) => cmd::secret::run(command),
        Command::User(command) => cmd::identity::user(command),
        Command::Enroll(args) => cmd::identity::enroll(args),
        Command::Login(args) => cmd::identity::login(args),
        Command::Logout(args) => cmd::identity::logout(args),
        Command::Verify(args) => cmd::identity::verify(args),
        Command::Token(command) => cmd::identity::token(command),
        Command::Vendor(command) => cmd::governance::vendor(command),
        Command::Agreement(command) => cmd::governance::agreement(command),
        Command::Evidence(command) => cmd::governance::evidence(command),
        Command::Policy(command) => cmd::governance::policy(command),
        Command::Classification(command) => cmd::governance::classification(command),
        Command::Request(command) => cmd::governance::request(command),
        Command::Grant(command) => cmd::governance::grant(command),
        Command::Review(command) => cmd::governance::review(command),
        Command::Finding(command) => cmd::governance::finding(command),
        Command::Report(args) => cmd::governance::report(args),
        Command::Share(command) => cmd::share::run(command),
        Command::Ledger(command) => cmd::ledger::run(command),
        Command::Scan(args) => {
            return match cmd::scan::run(args) {
                Ok(code) => code,
                Err(err) => {
                    eprintln!("error: {err:#}");
                    ExitCode::from(2)
                }
            };
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// Where `chaperone up` keeps its data by default.
fn default_data_dir() -> PathBuf {
    PathBuf::from("chaperone-data")
}

/// A reader that stops early (`chaperone restore ... | head -1`) closes standard output, and
/// the next `println!` panics. The command then ends there, as Unix tools do (exit status
/// 141, as for SIGPIPE), with one line on standard error rather than a panic message and a
/// backtrace. Commands print what they did once it is done, so what is left unprinted only
/// describes it.
fn end_quietly_when_stdout_closes() {
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or_default();
        if message.starts_with("failed printing to stdout") && message.contains("Broken pipe") {
            eprintln!("chaperone: standard output was closed; stopped there");
            std::process::exit(141);
        }
        default_hook(info);
    }));
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    #[test]
    fn the_command_line_is_well_formed() {
        super::Cli::command().debug_assert();
    }
}
