//! The PostgreSQL engine, for several servers on one database. A small pool of connections
//! per `PgStore`; every write is one READ COMMITTED transaction that locks the rows it
//! changes (`FOR UPDATE`, `SKIP LOCKED` where any free row will do), so that allocations of
//! different clients proceed side by side. The generation is bumped last, just before the
//! commit: its row lock orders commits, so that generations are committed in order and a
//! reader of the change log never skips one. Serialization failures and deadlocks are
//! retried.

// What the noun files share: each starts with `use super::*;`.
use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::Ipv4Addr;
use std::sync::Mutex;

use ::postgres::error::SqlState;
use ::postgres::types::ToSql;
use ::postgres::{Client, NoTls, Row, Statement};
use novanet_core::config::{Config, Manager};
use novanet_core::model::{
    hostname_for, FixedIp, FloatingIp, Instance, InstanceAction, InstanceAddress, InstanceSpec,
    InstanceUpdate, Network, PowerAction, PowerReport, INSTANCE_ACTIONS_KEPT,
};
use novanet_core::net::Mac;
use novanet_core::planning::{plan_networks, NetworkRequest};
use novanet_core::{Error, Result};

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
mod schema;
mod secgroups;
mod services;

use changes::{bump_and_record, bump_generation, prune_changes_tx, record_touched, Touched};
pub use schema::TABLES;

/// Idle connections a store keeps for its next calls.
const IDLE_CONNECTIONS: usize = 16;
/// Tries of a transaction that lost a serialization race or a deadlock.
const WRITE_TRIES: u32 = 20;

/// The driver's error.
type PgError = ::postgres::Error;

/// Query parameters.
type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

pub struct PgStore {
    config: ::postgres::Config,
    pool: Mutex<Vec<Conn>>,
    hooks: Mutex<Vec<CommitHook>>,
}

/// One connection with its prepared statements (parsing and planning cost more than
/// running most of these).
pub(crate) struct Conn {
    client: Client,
    statements: HashMap<String, Statement>,
}

thread_local! {
    /// Set when a statement failed in a way that retrying the transaction may cure.
    static RETRYABLE: Cell<bool> = const { Cell::new(false) };
}

fn db(e: PgError) -> Error {
    if matches!(
        e.code(),
        Some(c) if *c == SqlState::T_R_SERIALIZATION_FAILURE || *c == SqlState::T_R_DEADLOCK_DETECTED
    ) {
        RETRYABLE.with(|r| r.set(true));
    }
    Error::Store(match e.as_db_error() {
        Some(d) => format!("postgres: {}", d.message()),
        None => format!("postgres: {e}"),
    })
}

fn is_unique_violation(e: &PgError) -> bool {
    e.code() == Some(&SqlState::UNIQUE_VIOLATION)
}

/// A connection in use, by reads and by the writes of one transaction. Its methods take
/// `&self` so that helpers pass it around as SQLite's engine passes its connection.
pub(crate) struct Db {
    conn: RefCell<Conn>,
}

impl Db {
    fn statement(&self, sql: &str) -> std::result::Result<Statement, PgError> {
        let mut c = self.conn.borrow_mut();
        if let Some(s) = c.statements.get(sql) {
            return Ok(s.clone());
        }
        let s = c.client.prepare(sql)?;
        c.statements.insert(sql.to_string(), s.clone());
        Ok(s)
    }

    /// Runs a statement; the driver's error, for callers that tell a unique violation.
    fn try_exec(&self, sql: &str, p: Params) -> std::result::Result<u64, PgError> {
        let st = self.statement(sql)?;
        self.conn.borrow_mut().client.execute(&st, p)
    }

    fn exec(&self, sql: &str, p: Params) -> Result<u64> {
        self.try_exec(sql, p).map_err(db)
    }

    fn try_rows(&self, sql: &str, p: Params) -> std::result::Result<Vec<Row>, PgError> {
        let st = self.statement(sql)?;
        self.conn.borrow_mut().client.query(&st, p)
    }

    fn rows(&self, sql: &str, p: Params) -> Result<Vec<Row>> {
        self.try_rows(sql, p).map_err(db)
    }

    fn opt(&self, sql: &str, p: Params) -> Result<Option<Row>> {
        Ok(self.rows(sql, p)?.into_iter().next())
    }

    fn one(&self, sql: &str, p: Params) -> Result<Row> {
        self.opt(sql, p)?
            .ok_or_else(|| Error::Store(format!("postgres: no row from {sql}")))
    }

    /// Statements without parameters or results (BEGIN, COMMIT, schema).
    fn batch(&self, sql: &str) -> Result<()> {
        self.conn.borrow_mut().client.batch_execute(sql).map_err(db)
    }
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

/// Texts of the first column.
fn strings(c: &Db, sql: &str, p: Params) -> Result<Vec<String>> {
    Ok(c.rows(sql, p)?.iter().map(|r| r.get(0)).collect())
}

/// Runs `f` outside the caller's async runtime. The driver blocks on a runtime of its own
/// for every statement (and when a connection closes), which tokio refuses inside another
/// one: the server's handlers run the store on a multi-thread runtime's threads (in
/// `spawn_blocking` under `Handle::block_on`, or in `block_in_place`). `block_in_place`
/// leaves the runtime for the duration of `f` (and is a plain call where no runtime is
/// entered, or where it already left one).
fn off_the_runtime<T>(f: impl FnOnce() -> T) -> T {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current() {
        Ok(h) if h.runtime_flavor() == RuntimeFlavor::MultiThread => tokio::task::block_in_place(f),
        _ => f(),
    }
}

impl Drop for PgStore {
    /// Closing a connection blocks on the driver's runtime too.
    fn drop(&mut self) {
        let idle = std::mem::take(self.pool.get_mut().unwrap_or_else(|p| p.into_inner()));
        off_the_runtime(|| drop(idle));
    }
}

impl PgStore {
    /// Connects to `url` (`postgres://user@host/db`, `postgresql://...`, or libpq's
    /// `key=value` form) and brings the schema up to date.
    pub fn open(url: &str) -> Result<PgStore> {
        let config: ::postgres::Config = url
            .parse()
            .map_err(|e| Error::Store(format!("cannot read database URL {url:?}: {e}")))?;
        let store = PgStore {
            config,
            pool: Mutex::new(Vec::new()),
            hooks: Mutex::new(Vec::new()),
        };
        store.with_db(schema::migrate)?;
        Ok(store)
    }

    fn connect(&self) -> Result<Conn> {
        let client = self.config.connect(NoTls).map_err(|e| {
            Error::Store(format!(
                "cannot connect to PostgreSQL at {:?}/{}: {e}",
                self.config.get_hosts(),
                self.config.get_dbname().unwrap_or("")
            ))
        })?;
        Ok(Conn {
            client,
            statements: HashMap::new(),
        })
    }

    /// Runs `f` on a pooled connection; a connection that broke is not put back.
    fn with_db<T>(&self, f: impl FnOnce(&Db) -> Result<T>) -> Result<T> {
        off_the_runtime(|| self.with_db_here(f))
    }

    fn with_db_here<T>(&self, f: impl FnOnce(&Db) -> Result<T>) -> Result<T> {
        let pooled = self.pool.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let conn = match pooled {
            Some(c) => c,
            None => self.connect()?,
        };
        let d = Db {
            conn: RefCell::new(conn),
        };
        let out = f(&d);
        let conn = d.conn.into_inner();
        if !conn.client.is_closed() {
            let mut pool = self.pool.lock().unwrap_or_else(|p| p.into_inner());
            if pool.len() < IDLE_CONNECTIONS {
                pool.push(conn);
            }
        }
        out
    }

    /// One transaction, tried again when it lost a race that PostgreSQL broke off.
    #[track_caller]
    fn write_raw<T>(&self, mut f: impl FnMut(&Db) -> Result<T>) -> Result<T> {
        let _timer = crate::timing::start("write");
        let mut tries = 0;
        loop {
            tries += 1;
            RETRYABLE.with(|r| r.set(false));
            let out = self.with_db(|d| {
                d.batch("BEGIN")?;
                let out = f(d).and_then(|o| d.batch("COMMIT").map(|_| o));
                if out.is_err() {
                    let _ = d.batch("ROLLBACK");
                }
                out
            });
            let retry = RETRYABLE.with(|r| r.replace(false));
            match out {
                Err(_) if retry && tries < WRITE_TRIES => {
                    std::thread::sleep(std::time::Duration::from_millis(u64::from(tries)));
                }
                other => return other,
            }
        }
    }

    /// One write transaction that changes no host's plan; bumps the generation (the
    /// metadata cache watches it).
    #[track_caller]
    fn write<T>(&self, mut f: impl FnMut(&Db) -> Result<T>) -> Result<T> {
        let (out, g) = self.write_raw(|tx| {
            let out = f(tx)?;
            let g = bump_generation(tx)?;
            Ok((out, g))
        })?;
        self.run_hooks(g);
        Ok(out)
    }

    /// One write transaction that may change hosts' plans: `f` says which in `Touched`,
    /// and they are recorded under the new generation. Hooks run after the commit.
    #[track_caller]
    fn write_touching<T>(&self, mut f: impl FnMut(&Db, &mut Touched) -> Result<T>) -> Result<T> {
        let (out, generation) = self.write_raw(|tx| {
            let mut t = Touched::default();
            let out = f(tx, &mut t)?;
            let generation = bump_and_record(tx, &t)?;
            Ok((out, generation))
        })?;
        self.run_hooks(generation);
        Ok(out)
    }

    fn run_hooks(&self, generation: u64) {
        let hooks: Vec<CommitHook> = self.hooks.lock().unwrap_or_else(|p| p.into_inner()).clone();
        for h in hooks {
            h(generation);
        }
    }

    #[track_caller]
    fn read<T>(&self, f: impl FnOnce(&Db) -> Result<T>) -> Result<T> {
        let _timer = crate::timing::start("read");
        self.with_db(f)
    }

    /// Drops the change log before `generation` (see `SqliteStore::prune_changes`).
    pub fn prune_changes(&self, generation: u64) -> Result<()> {
        self.write_raw(|tx| prune_changes_tx(tx, generation))
    }
}
