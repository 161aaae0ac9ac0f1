//! A throwaway PostgreSQL server for tests: Debian's binaries, run in a new temporary
//! directory as the `postgres` user (its server refuses root), reachable only through a
//! Unix socket in that directory, stopped by its PID. Never the machine's own cluster.
//!
//! ```text
//! let Some(pg) = novanet_store::test_support::shared_postgres() else { return };
//! let url = pg.create_database("my_case");
//! ```
//!
//! Behind the `test-support` feature: tests enable it, nothing else builds it.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The socket's "port": only a file name in our directory, so any number does.
const PORT: u16 = 5432;

/// A running server; stopped (and its directory removed) when dropped.
pub struct TestPostgres {
    dir: PathBuf,
    pid: u32,
}

/// Why there is no server to test with.
fn unavailable(why: &str) {
    eprintln!("skipping the PostgreSQL tests: {why} (scripts/setup.sh installs PostgreSQL)");
}

/// The newest installed server's `bin` directory (Debian's /usr/lib/postgresql/N/bin).
pub fn postgres_bin() -> Option<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .filter_map(|e| {
            let v: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").is_file().then_some((v, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, b)| b)
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// A command of the server's, as the `postgres` user when we are root.
fn as_server_user(program: &Path) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

fn run(mut c: Command, what: &str) -> Result<(), String> {
    let out = c
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{what}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{what} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

impl TestPostgres {
    /// Starts a new server; `Err` says why it could not.
    pub fn start() -> Result<TestPostgres, String> {
        static SERIAL: AtomicUsize = AtomicUsize::new(0);
        let bin = postgres_bin().ok_or("PostgreSQL's server is not installed")?;
        let dir = std::env::temp_dir().join(format!(
            "novanet-pg-{}-{}",
            std::process::id(),
            SERIAL.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        if is_root() {
            let mut c = Command::new("chown");
            c.arg("postgres:").arg(&dir);
            run(c, "chown")?;
        }
        let data = dir.join("data");
        let mut initdb = as_server_user(&bin.join("initdb"));
        // C locale: text sorts byte by byte, as SQLite's does. No fsync: a test's data is
        // thrown away.
        initdb.arg("-D").arg(&data).args([
            "--auth=trust",
            "--username=postgres",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
        ]);
        run(initdb, "initdb")?;
        let options = format!(
            "-k {} -p {PORT} -c listen_addresses='' -c fsync=off -c synchronous_commit=off \
             -c full_page_writes=off -c max_connections=300",
            dir.display()
        );
        let mut pg_ctl = as_server_user(&bin.join("pg_ctl"));
        pg_ctl
            .arg("-D")
            .arg(&data)
            .arg("-l")
            .arg(dir.join("server.log"))
            .args(["-w", "-o", &options, "start"]);
        run(pg_ctl, "pg_ctl start")?;
        let pid = std::fs::read_to_string(data.join("postmaster.pid"))
            .ok()
            .and_then(|s| s.lines().next()?.trim().parse().ok())
            .ok_or("the server wrote no postmaster.pid")?;
        Ok(TestPostgres { dir, pid })
    }

    /// The URL of one database of this server (the socket's directory percent-encoded as
    /// the host, as libpq reads it).
    pub fn url(&self, database: &str) -> String {
        let host: String = self
            .dir
            .display()
            .to_string()
            .bytes()
            .map(|b| match b {
                b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect();
        format!("postgresql://postgres@{host}:{PORT}/{database}")
    }

    /// Makes a new, empty database and returns its URL. `name` is made unique and safe.
    pub fn create_database(&self, name: &str) -> String {
        static SERIAL: AtomicUsize = AtomicUsize::new(0);
        let clean: String = name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '_'
                }
            })
            .take(40)
            .collect();
        let db = format!("t{}_{clean}", SERIAL.fetch_add(1, Ordering::SeqCst));
        let mut c = ::postgres::Client::connect(&self.url("postgres"), ::postgres::NoTls)
            .expect("connect to the test server");
        c.batch_execute(&format!("CREATE DATABASE {db}"))
            .expect("create a test database");
        self.url(&db)
    }

    /// The server's PID.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Stops the server now (fast shutdown), waits for it, removes its directory.
    fn stop(&self) {
        let _ = Command::new("kill")
            .args(["-INT", &self.pid.to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Path::new(&format!("/proc/{}", self.pid)).exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }

    /// Stops the server when this process ends, however it ends: a watcher outside it
    /// polls for it, since a static is never dropped.
    fn stop_with_process(&self) {
        let script = format!(
            "while kill -0 {me} 2>/dev/null; do sleep 0.3; done; kill -INT {pg} 2>/dev/null; \
             while kill -0 {pg} 2>/dev/null; do sleep 0.1; done; rm -rf '{dir}'",
            me = std::process::id(),
            pg = self.pid,
            dir = self.dir.display()
        );
        let _ = Command::new("sh")
            .args(["-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
    }
}

impl Drop for TestPostgres {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One server for the whole test process, started on first use and stopped when the
/// process exits; None (with a message naming scripts/setup.sh) when PostgreSQL is not
/// installed.
pub fn shared_postgres() -> Option<&'static TestPostgres> {
    static SHARED: OnceLock<Option<TestPostgres>> = OnceLock::new();
    let pg = SHARED.get_or_init(|| {
        postgres_bin()?;
        match TestPostgres::start() {
            Ok(pg) => {
                pg.stop_with_process();
                Some(pg)
            }
            Err(e) => panic!("cannot start a test PostgreSQL: {e}"),
        }
    });
    if pg.is_none() {
        unavailable("PostgreSQL's server is not installed");
    }
    pg.as_ref()
}
