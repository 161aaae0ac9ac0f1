//! The binary on PostgreSQL: `manage db sync`, `manage db migrate --to`, `--db` and nova.conf's
//! `[database] connection` choosing the store. Skipped, with a message, where PostgreSQL is
//! not installed (scripts/setup.sh installs it).

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use novanet_store::test_support::shared_postgres;

const BIN: &str = env!("CARGO_BIN_EXE_novanet");

struct TempDir(PathBuf);
impl TempDir {
    fn new(name: &str) -> TempDir {
        let d = std::env::temp_dir().join(format!("novanet-pgcli-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        TempDir(d)
    }
}
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn novanet(args: &[&str]) -> Output {
    let mut c = Command::new(BIN);
    c.args(args).stdin(Stdio::null());
    for k in ["NOVANET_DATA_DIR", "NOVANET_CONFIG", "NOVANET_DB"] {
        c.env_remove(k);
    }
    c.output().unwrap()
}

fn ok(args: &[&str]) -> String {
    let o = novanet(args);
    assert!(
        o.status.success(),
        "{args:?} failed: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn dir_arg(d: &Path) -> String {
    d.display().to_string()
}

#[test]
fn db_sync_makes_the_schema_and_db_selects_postgresql() {
    let Some(pg) = shared_postgres() else { return };
    let url = pg.create_database("cli_sync");
    ok(&["manage", "--db", &url, "db", "sync"]);
    // Again: nothing to do.
    ok(&["manage", "--db", &url, "db", "sync"]);
    ok(&[
        "manage",
        "--db",
        &url,
        "bootstrap",
        "--bootstrap-password",
        "pw",
    ]);
    ok(&[
        "manage",
        "--db",
        &url,
        "network",
        "create",
        "--label",
        "vmnet",
        "--fixed_range_v4",
        "10.0.0.0/24",
        "--bridge",
        "br100",
    ]);
    assert!(ok(&["manage", "--db", &url, "network", "list"]).contains("10.0.0.0/24"));
    // nova.conf's [database] connection names the same database.
    let t = TempDir::new("conf");
    let conf = t.0.join("nova.conf");
    std::fs::write(
        &conf,
        format!("[DEFAULT]\n[database]\nconnection = {url}\n"),
    )
    .unwrap();
    let listed = ok(&["manage", "--config", &dir_arg(&conf), "project", "list"]);
    assert!(listed.contains("admin"), "{listed}");
    // Not a PostgreSQL URL: said so.
    let o = novanet(&["manage", "--db", "mysql://nova@db/nova", "project", "list"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("PostgreSQL"));
}

#[test]
fn db_migrate_copies_an_sqlite_store_once() {
    let Some(pg) = shared_postgres() else { return };
    let t = TempDir::new("migrate");
    let d = dir_arg(&t.0);
    ok(&[
        "manage",
        "--data-dir",
        &d,
        "bootstrap",
        "--bootstrap-password",
        "pw",
    ]);
    ok(&[
        "manage",
        "--data-dir",
        &d,
        "network",
        "create",
        "--label",
        "vmnet",
        "--fixed_range_v4",
        "10.0.0.0/24",
        "--bridge",
        "br100",
    ]);
    ok(&[
        "manage",
        "--data-dir",
        &d,
        "floating",
        "create",
        "--ip_range",
        "172.24.4.0/30",
    ]);
    let url = pg.create_database("cli_migrate");
    let table = ok(&["manage", "--data-dir", &d, "db", "migrate", "--to", &url]);
    let fixed = table
        .lines()
        .find(|l| l.starts_with("fixed_ips"))
        .unwrap_or_else(|| panic!("{table}"));
    let counts: Vec<&str> = fixed.split_whitespace().collect();
    assert_eq!(counts[1..], ["256", "256"], "{fixed}");
    assert_eq!(
        ok(&["manage", "--db", &url, "network", "list"]),
        ok(&["manage", "--data-dir", &d, "network", "list"])
    );
    assert_eq!(
        ok(&["manage", "--db", &url, "floating", "list"]),
        ok(&["manage", "--data-dir", &d, "floating", "list"])
    );
    // A second copy into the same database is refused, and changes nothing.
    let o = novanet(&["manage", "--data-dir", &d, "db", "migrate", "--to", &url]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("empty database"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}
