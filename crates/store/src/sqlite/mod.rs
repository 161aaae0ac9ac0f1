//! The SQLite engine. One connection per `SqliteStore`, WAL journal, `BEGIN IMMEDIATE` for
//! every write so that writers queue on the database lock instead of failing half-way;
//! several processes may open the same file.

// What the noun files share: each starts with `use super::*;`.
use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use novanet_core::config::{Config, Manager};
use novanet_core::model::{
    hostname_for, FixedIp, FloatingIp, Instance, InstanceAction, InstanceAddress, InstanceSpec,
    InstanceUpdate, Network, PowerAction, PowerReport, INSTANCE_ACTIONS_KEPT,
};
use novanet_core::net::Mac;
use novanet_core::planning::{plan_networks, NetworkRequest};
use novanet_core::{Error, Result};
use rusqlite::{params, Connection, OptionalExtension, Row, Transaction, TransactionBehavior};

use crate::*;
use novanet_core::model::BoundAddress;

mod addresses;
mod changes;
mod floating;
mod identity;
mod instances;
mod keypairs;
mod networks;
mod plans;
mod quotas;
mod secgroups;
mod services;

use changes::{bump_generation, prune_changes_tx, record_touched, Touched};

const SCHEMA: &str = include_str!("schema.sql");
/// How long a writer waits for another process's transaction before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

pub struct SqliteStore {
    conn: Mutex<Connection>,
    hooks: Mutex<Vec<CommitHook>>,
}

fn db(e: rusqlite::Error) -> Error {
    Error::Store(e.to_string())
}

/// Statements are cached per connection: parsing SQL costs more than running these.
fn exec<P: rusqlite::Params>(c: &Connection, sql: &str, p: P) -> rusqlite::Result<usize> {
    c.prepare_cached(sql)?.execute(p)
}

fn qrow<T, P: rusqlite::Params, F: FnOnce(&Row) -> rusqlite::Result<T>>(
    c: &Connection,
    sql: &str,
    p: P,
    f: F,
) -> rusqlite::Result<T> {
    c.prepare_cached(sql)?.query_row(p, f)
}

fn is_unique_violation(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::ConstraintViolation)
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn random_bytes() -> [u8; 16] {
    uuid::Uuid::new_v4().into_bytes()
}

fn new_uuid() -> String {
    uuid::Uuid::new_v4().to_string()
}

fn to_json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).expect("records serialize")
}

fn from_json<T: serde::de::DeserializeOwned>(s: &str) -> Result<T> {
    serde_json::from_str(s).map_err(|e| Error::Store(format!("corrupt record: {e}")))
}

impl SqliteStore {
    /// Opens (creating if needed) `state.sqlite` under `data_dir`.
    pub fn open_dir(data_dir: &Path) -> Result<SqliteStore> {
        std::fs::create_dir_all(data_dir).map_err(|e| {
            Error::Store(format!(
                "cannot create data dir {}: {e}",
                data_dir.display()
            ))
        })?;
        Self::open(&data_dir.join("state.sqlite"))
    }

    pub fn open(path: &Path) -> Result<SqliteStore> {
        let conn = Connection::open(path).map_err(db)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(db)?;
        let mode: String = conn
            .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
            .map_err(db)?;
        if mode != "wal" && mode != "memory" {
            return Err(Error::Store(format!(
                "cannot use WAL journal on {}: got {mode}",
                path.display()
            )));
        }
        // NORMAL in WAL mode survives a crash of any process; only a power loss may lose
        // the last commits, never consistency.
        // A cache and a map big enough for a /16's addresses and their indexes: each
        // allocation then reads no page through a system call (bench alloc: see NOTES.md).
        conn.execute_batch(
            "PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON; \
             PRAGMA cache_size=-65536; PRAGMA mmap_size=268435456; PRAGMA wal_autocheckpoint=10000;",
        )
        .map_err(db)?;
        let store = SqliteStore {
            conn: Mutex::new(conn),
            hooks: Mutex::new(Vec::new()),
        };
        store.write_raw(|tx| {
            let had_counts: i64 = tx
                .query_row(
                    "SELECT count(*) FROM sqlite_master WHERE name = 'host_instance_counts'",
                    [],
                    |r| r.get(0),
                )
                .map_err(db)?;
            tx.execute_batch(SCHEMA).map_err(db)?;
            if had_counts == 0 {
                // A store made before the counts: the triggers keep them from now on.
                tx.execute_batch(
                    "INSERT INTO host_instance_counts(host, instances) \
                     SELECT host, count(*) FROM instances WHERE host IS NOT NULL GROUP BY host",
                )
                .map_err(db)?;
            }
            // Stores made before these columns existed.
            for (table, column, decl) in [
                ("services", "networks", "TEXT NOT NULL DEFAULT '[]'"),
                ("services", "options", "TEXT NOT NULL DEFAULT '{}'"),
                ("keypairs", "type", "TEXT NOT NULL DEFAULT 'ssh'"),
                ("keypairs", "created_at", "INTEGER NOT NULL DEFAULT 0"),
            ] {
                let has: i64 = tx
                    .query_row(
                        &format!("SELECT count(*) FROM pragma_table_info('{table}') WHERE name = ?1"),
                        [column],
                        |r| r.get(0),
                    )
                    .map_err(db)?;
                if has == 0 {
                    tx.execute_batch(&format!("ALTER TABLE {table} ADD COLUMN {column} {decl}"))
                        .map_err(db)?;
                }
            }
            exec(tx,
                "INSERT OR IGNORE INTO meta(key, value) VALUES ('generation', '0'), ('schema', '1')",
                [],
            )
            .map_err(db)?;
            Ok(())
        })?;
        Ok(store)
    }

    #[track_caller]
    fn write_raw<T>(&self, f: impl FnOnce(&Transaction) -> Result<T>) -> Result<T> {
        let _timer = crate::timing::start("write");
        let mut conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(db)?;
        let out = f(&tx)?;
        tx.commit().map_err(db)?;
        Ok(out)
    }

    /// One write transaction that changes no host's plan; bumps the generation (the
    /// metadata cache watches it).
    #[track_caller]
    fn write<T>(&self, f: impl FnOnce(&Transaction) -> Result<T>) -> Result<T> {
        let (out, g) = self.write_raw(|tx| {
            let out = f(tx)?;
            let g = bump_generation(tx)?;
            Ok((out, g))
        })?;
        // The hooks learn every new generation (the metadata cache keys on it), touched or not.
        self.run_hooks(g);
        Ok(out)
    }

    /// One write transaction that may change hosts' plans: `f` says which in `Touched`,
    /// and they are recorded under the new generation. Hooks run after the commit.
    #[track_caller]
    fn write_touching<T>(
        &self,
        f: impl FnOnce(&Transaction, &mut Touched) -> Result<T>,
    ) -> Result<T> {
        let (out, touched) = self.write_raw(|tx| {
            let mut t = Touched::default();
            let out = f(tx, &mut t)?;
            let generation = bump_generation(tx)?;
            record_touched(tx, generation, &t)?;
            Ok((out, generation))
        })?;
        // Run for every commit, touched or not: the metadata cache follows the generation.
        self.run_hooks(touched);
        Ok(out)
    }

    fn run_hooks(&self, generation: u64) {
        let hooks: Vec<CommitHook> = self.hooks.lock().unwrap_or_else(|p| p.into_inner()).clone();
        for h in hooks {
            h(generation);
        }
    }

    #[track_caller]
    fn read<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let _timer = crate::timing::start("read");
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        f(&conn)
    }
}

impl SqliteStore {
    /// Drops the change log before `generation`, as every write does every 1,024
    /// generations for what is older than the last 50,000: a server whose cursor is behind
    /// that recomputes every plan it keeps.
    pub fn prune_changes(&self, generation: u64) -> Result<()> {
        self.write_raw(|tx| prune_changes_tx(tx, generation))
    }
}
