//! Helpers shared by the end-to-end tests: the built binary as a server process on
//! 127.0.0.1 and a free port, and the CLI run against it.
#![allow(dead_code)]

use std::io::{BufRead as _, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_chaperone");

/// A running server process, killed on drop.
pub(crate) struct Server {
    pub(crate) child: Child,
    pub(crate) addr: String,
    pub(crate) banner: String,
}

impl Server {
    /// Starts `chaperone ARGS` and waits for its "Listening on" line.
    pub(crate) fn start(args: &[&str], cwd: &Path, env: &[(&str, &str)]) -> Self {
        Self::start_logging(args, cwd, env, Stdio::inherit())
    }

    /// Like [`Server::start`], with the server's log (stderr) going to `log`.
    pub(crate) fn start_logging(
        args: &[&str],
        cwd: &Path,
        env: &[(&str, &str)],
        log: impl Into<Stdio>,
    ) -> Self {
        let mut child = Command::new(BIN)
            .args(args)
            .current_dir(cwd)
            .env("CHAPERONE_LOG", "warn")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("start chaperone");
        let mut banner = String::new();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let addr = loop {
            let line = lines
                .next()
                .expect("server exited before listening")
                .unwrap();
            banner.push_str(&line);
            banner.push('\n');
            if let Some(rest) = line.strip_prefix("Listening on ") {
                break rest.split_whitespace().next().unwrap().to_owned();
            }
        };
        // Keep draining stdout so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Self {
            child,
            addr,
            banner,
        }
    }

    /// `chaperone up` in a new temporary directory (data in `DIR/data`).
    pub(crate) fn up() -> (tempfile::TempDir, Self) {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let args = [
            "up",
            "--data",
            data.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ];
        let server = Self::start(&args, dir.path(), &[]);
        (dir, server)
    }

    /// Runs a CLI command against this server with `token`.
    pub(crate) fn cli(&self, token: &str, args: &[&str], stdin: &str) -> Output {
        run_cli(&self.addr, token, args, stdin)
    }

    /// Sends `signal` (e.g. "TERM", "HUP") to the server process.
    pub(crate) fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([format!("-{signal}"), self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    pub(crate) fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn run_cli(addr: &str, token: &str, args: &[&str], stdin: &str) -> Output {
    // No session file from a login elsewhere may stand in for the token under test.
    let no_config = std::env::temp_dir().join("chaperone-e2e-no-config");
    run_cli_with(addr, token, &no_config, args, stdin)
}

pub(crate) fn run_cli_with(
    addr: &str,
    token: &str,
    config: &Path,
    args: &[&str],
    stdin: &str,
) -> Output {
    run_cli_env(addr, token, config, &[], args, stdin)
}

/// Like [`run_cli_with`], with more environment variables.
pub(crate) fn run_cli_env(
    addr: &str,
    token: &str,
    config: &Path,
    env: &[(&str, &Path)],
    args: &[&str],
    stdin: &str,
) -> Output {
    let mut command = Command::new(BIN);
    command.envs(env.iter().copied());
    if !token.is_empty() {
        command.env("CHAPERONE_TOKEN", token);
    }
    let mut child = command
        .args(args)
        .env("XDG_CONFIG_HOME", config)
        .env("CHAPERONE_ADDR", addr)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

/// The unseal shares printed by `chaperone init` or `chaperone operator rekey`.
pub(crate) fn shares_in(output: &str) -> Vec<String> {
    output
        .lines()
        .filter_map(|l| l.strip_prefix("Unseal share "))
        .map(|l| l.split(": ").nth(1).unwrap().to_owned())
        .collect()
}

/// Stdout of a command that must succeed.
pub(crate) fn ok(output: Output) -> String {
    let stdout = String::from_utf8(output.stdout).unwrap();
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(
        output.status.success(),
        "command failed\nstdout: {stdout}\nstderr: {stderr}"
    );
    stdout
}

/// Stderr of a command that must fail.
pub(crate) fn fails(output: Output) -> String {
    let stdout = String::from_utf8(output.stdout).unwrap();
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(
        !output.status.success(),
        "command should have failed\nstdout: {stdout}"
    );
    stderr
}

pub(crate) fn files_in(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect()
}

#[cfg(unix)]
pub(crate) fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// A database for a test: a SQLite file in a temporary directory, or a fresh database on the
/// PostgreSQL server at `CHAPERONE_TEST_POSTGRES_URL`.
pub(crate) struct Db {
    pub(crate) url: String,
    pub(crate) dir: tempfile::TempDir,
}

impl Db {
    pub(crate) fn sqlite() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("chaperone.db").display());
        Self { url, dir }
    }

    /// `None` (and a note) when PostgreSQL is not configured, unless
    /// `CHAPERONE_TEST_REQUIRE_POSTGRES=1`, which makes that a failure.
    pub(crate) fn postgres() -> Option<Self> {
        let Ok(base) = std::env::var("CHAPERONE_TEST_POSTGRES_URL") else {
            if std::env::var("CHAPERONE_TEST_REQUIRE_POSTGRES").as_deref() == Ok("1") {
                panic!(
                    "CHAPERONE_TEST_REQUIRE_POSTGRES=1 but CHAPERONE_TEST_POSTGRES_URL is unset"
                );
            }
            eprintln!("skipping PostgreSQL: CHAPERONE_TEST_POSTGRES_URL is unset");
            return None;
        };
        let mut id = [0u8; 8];
        getrandom(&mut id);
        let name = format!(
            "e2e_{}",
            id.iter().map(|b| format!("{b:02x}")).collect::<String>()
        );
        sql(&base, &[&format!("CREATE DATABASE {name}")]);
        let (root, _) = base.rsplit_once('/').expect("URL with a database name");
        Some(Self {
            url: format!("{root}/{name}"),
            dir: tempfile::tempdir().unwrap(),
        })
    }
}

fn getrandom(buf: &mut [u8]) {
    use std::io::Read as _;
    std::fs::File::open("/dev/urandom")
        .unwrap()
        .read_exact(buf)
        .unwrap();
}

/// Runs statements on the database at `url` (tests that tamper with storage).
pub(crate) fn sql(url: &str, statements: &[&str]) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        sqlx::any::install_default_drivers();
        let pool = sqlx::AnyPool::connect(url).await.unwrap();
        for statement in statements {
            sqlx::query(statement).execute(&pool).await.unwrap();
        }
        pool.close().await;
    });
}

/// A server initialised with one unseal share, restartable on the same database.
pub(crate) struct Node {
    pub(crate) db: Db,
    pub(crate) share: String,
    pub(crate) token: String,
    pub(crate) server: Option<Server>,
    /// Where it listens: a free port at the first start, the same one after a restart.
    listen: String,
}

impl Node {
    /// `chaperone init` on `db`, then starts and unseals the server.
    pub(crate) fn init(db: Db) -> Self {
        let out = ok(run_cli(
            "",
            "",
            &[
                "init",
                "--shares",
                "1",
                "--threshold",
                "1",
                "--database-url",
                &db.url,
            ],
            "",
        ));
        let share = out
            .lines()
            .find_map(|l| l.strip_prefix("Unseal share 1: "))
            .unwrap()
            .trim()
            .to_owned();
        let token = out
            .lines()
            .find_map(|l| l.strip_prefix("Initial admin token: "))
            .unwrap()
            .trim()
            .to_owned();
        let mut node = Self {
            db,
            share,
            token,
            server: None,
            listen: "127.0.0.1:0".to_owned(),
        };
        node.start();
        node
    }

    /// Starts the server (after a stop or a kill) and unseals it, at the address it had.
    pub(crate) fn start(&mut self) {
        let server = Server::start(
            &[
                "server",
                "--database-url",
                &self.db.url,
                "--listen",
                &self.listen,
            ],
            self.db.dir.path(),
            &[],
        );
        ok(server.cli("", &["unseal"], &format!("{}\n", self.share)));
        self.listen = server
            .addr
            .trim_start_matches("http://")
            .trim_start_matches("https://")
            .to_owned();
        self.server = Some(server);
    }

    /// Kills the server with SIGKILL.
    pub(crate) fn kill(&mut self) {
        if let Some(server) = self.server.take() {
            server.kill();
        }
    }

    pub(crate) fn addr(&self) -> &str {
        &self.server.as_ref().expect("running").addr
    }

    /// Runs the CLI as the admin against this server, with `config` as its config dir.
    pub(crate) fn cli(&self, config: &Path, args: &[&str]) -> Output {
        run_cli_with(self.addr(), &self.token, config, args, "")
    }
}

/// A person added and enrolled through the CLI (a contractor of `vendor` if given; the
/// vendor is added if missing): returns their password and TOTP secret (base32).
pub(crate) fn enrol(
    addr: &str,
    admin: &str,
    name: &str,
    role: &str,
    vendor: Option<&str>,
) -> (String, String) {
    let mut args = vec!["user", "add", name, "--role", role, "--json"];
    if let Some(vendor) = vendor {
        let _ = run_cli(
            addr,
            admin,
            &["vendor", "add", vendor, "--status", "active"],
            "",
        );
        args.extend(["--vendor", vendor]);
    }
    let added = ok(run_cli(addr, admin, &args, ""));
    let added: serde_json::Value = serde_json::from_str(&added).unwrap();
    let code = added["enrolment_code"].as_str().unwrap();
    let password = format!("{name}-password-Vb93kLm");
    let enrolled = ok(run_cli(
        addr,
        "",
        &["enroll", code, "--password-stdin", "--json"],
        &format!("{password}\n"),
    ));
    let enrolled: serde_json::Value = serde_json::from_str(&enrolled).unwrap();
    let secret = enrolled["totp_secret"].as_str().unwrap().to_owned();
    (password, secret)
}

/// The current TOTP code for a base32 secret.
pub(crate) fn totp_now(secret: &str) -> String {
    totp_steps_ahead(secret, 0)
}

/// The TOTP code `ahead` steps after the current one (the server takes one step of skew, and
/// a later code after an earlier one was used).
pub(crate) fn totp_steps_ahead(secret: &str, ahead: u64) -> String {
    let secret = chaperone_crypto::totp::TotpSecret::from_base32(secret).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    format!(
        "{:06}",
        chaperone_crypto::totp::code_at(&secret, chaperone_crypto::totp::step_at(now) + ahead, 6)
    )
}

/// A contractor of `vendor`, enrolled and logged in with TOTP: returns their session token.
pub(crate) fn contractor_token(addr: &str, admin: &str, name: &str, vendor: &str) -> String {
    let (password, secret) = enrol(addr, admin, name, "contractor", Some(vendor));
    let home = tempfile::tempdir().unwrap();
    ok(run_cli_with(
        addr,
        "",
        home.path(),
        &[
            "login",
            name,
            "--password-stdin",
            "--totp",
            &totp_now(&secret),
        ],
        &format!("{password}\n"),
    ));
    std::fs::read_to_string(home.path().join("chaperone/token"))
        .unwrap()
        .trim()
        .to_owned()
}

/// The Python with the Vault clients installed (`CHAPERONE_TEST_PYTHON`, set by `cargo
/// xtask test`); `None` (and a note) without it, unless `CHAPERONE_TEST_REQUIRE_CLIENTS=1`.
pub(crate) fn python() -> Option<PathBuf> {
    match std::env::var_os("CHAPERONE_TEST_PYTHON") {
        Some(python) => Some(PathBuf::from(python)),
        None => {
            if std::env::var("CHAPERONE_TEST_REQUIRE_CLIENTS").as_deref() == Ok("1") {
                panic!("CHAPERONE_TEST_REQUIRE_CLIENTS=1 but CHAPERONE_TEST_PYTHON is unset");
            }
            eprintln!("skipping: CHAPERONE_TEST_PYTHON is unset (cargo xtask test sets it)");
            None
        }
    }
}
