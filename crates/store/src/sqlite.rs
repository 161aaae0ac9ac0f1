//! The SQLite engine. One connection per `SqliteStore`, WAL journal, `BEGIN IMMEDIATE` for
//! every write so that writers queue on the database lock instead of failing half-way;
//! several processes may open the same file.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use novanet_core::config::{Config, Manager};
use novanet_core::model::{
    hostname_for, FixedIp, FloatingIp, Instance, InstanceAddress, InstanceSpec, Network,
};
use novanet_core::net::Mac;
use novanet_core::planning::{plan_networks, NetworkRequest};
use novanet_core::{Error, Result};
use rusqlite::{params, Connection, OptionalExtension, Row, Transaction, TransactionBehavior};
use sha2::{Digest, Sha256};

use crate::*;
use novanet_core::model::BoundAddress;

const SCHEMA: &str = include_str!("schema.sql");
/// How long a writer waits for another process's transaction before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// Rows of the change log kept behind the newest generation; a server whose cursor falls
/// further behind recomputes every plan it keeps.
const CHANGES_KEPT: u64 = 50_000;
/// More instances of one host changed by one write than this: the host's whole plan.
const INSTANCES_PER_PATCH: usize = 16;

pub struct SqliteStore {
    conn: Mutex<Connection>,
    hooks: Mutex<Vec<CommitHook>>,
}

/// The hosts whose plans one write may change, gathered inside its transaction and
/// recorded in the change log with its generation.
#[derive(Default)]
struct Touched {
    /// Every host's plan.
    all: bool,
    /// These hosts' plans, any part of them.
    hosts: BTreeSet<String>,
    /// Only the DHCP entry of (network id, address) on the host serving that network.
    addresses: BTreeSet<(String, i64, String)>,
    /// Only one instance of a host, (host, uuid), with the networks it was on.
    instances: BTreeMap<(String, String), BTreeSet<i64>>,
    /// Only one floating IP bound on a host, (host, address).
    floating: BTreeSet<(String, String)>,
}

impl Touched {
    fn host(&mut self, h: Option<&str>) {
        if let Some(h) = h {
            self.hosts.insert(h.to_string());
        }
    }

    fn hosts(&mut self, hs: Vec<String>) {
        self.hosts.extend(hs);
    }

    fn instance(&mut self, host: Option<&str>, uuid: &str, networks: &[i64]) {
        if let Some(h) = host {
            self.instances
                .entry((h.to_string(), uuid.to_string()))
                .or_default()
                .extend(networks);
        }
    }

    fn floating(&mut self, fl: &FloatingIp) {
        if let Some(h) = &fl.host {
            self.floating.insert((h.clone(), fl.address.clone()));
        }
    }

    fn is_empty(&self) -> bool {
        !self.all
            && self.hosts.is_empty()
            && self.addresses.is_empty()
            && self.instances.is_empty()
            && self.floating.is_empty()
    }
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

    fn write_raw<T>(&self, f: impl FnOnce(&Transaction) -> Result<T>) -> Result<T> {
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

    fn read<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        f(&conn)
    }
}

fn bump_generation(tx: &Transaction) -> Result<u64> {
    let g: i64 = qrow(
        tx,
        "UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'generation' \
         RETURNING CAST(value AS INTEGER)",
        [],
        |r| r.get(0),
    )
    .map_err(db)?;
    Ok(g as u64)
}

/// Writes what a change touched into the change log and the hosts' generations; false
/// when it touched nothing.
fn record_touched(tx: &Transaction, generation: u64, t: &Touched) -> Result<bool> {
    if t.is_empty() {
        return Ok(false);
    }
    let g = generation as i64;
    let mut log = tx
        .prepare_cached(
            "INSERT OR IGNORE INTO host_changes(generation, host, what) VALUES (?1, ?2, ?3)",
        )
        .map_err(db)?;
    let mut gen = tx
        .prepare_cached(
            "INSERT INTO host_generations(host, generation) VALUES (?1, ?2) \
             ON CONFLICT(host) DO UPDATE SET generation = excluded.generation",
        )
        .map_err(db)?;
    let mut rows: Vec<(&str, ChangeScope)> = Vec::new();
    // A host with many instances changed at once (a rule of a big group) is recomputed
    // whole: cheaper than one patch per instance.
    let mut per_host: BTreeMap<&str, usize> = BTreeMap::new();
    for (h, _) in t.instances.keys() {
        *per_host.entry(h.as_str()).or_default() += 1;
    }
    let whole: BTreeSet<&str> = t
        .hosts
        .iter()
        .map(String::as_str)
        .chain(
            per_host
                .into_iter()
                .filter(|(_, n)| *n > INSTANCES_PER_PATCH)
                .map(|(h, _)| h),
        )
        .collect();
    if t.all {
        rows.push(("*", ChangeScope::Plan));
    } else {
        rows.extend(whole.iter().map(|h| (*h, ChangeScope::Plan)));
        // A host whose whole plan changed needs no finer rows.
        for (h, n, a) in t
            .addresses
            .iter()
            .filter(|(h, _, _)| !whole.contains(h.as_str()))
        {
            let scope = ChangeScope::Address {
                network_id: *n,
                address: a.clone(),
            };
            rows.push((h.as_str(), scope));
        }
        for (h, a) in t
            .floating
            .iter()
            .filter(|(h, _)| !whole.contains(h.as_str()))
        {
            rows.push((h.as_str(), ChangeScope::Floating { address: a.clone() }));
        }
        for ((h, uuid), nets) in t
            .instances
            .iter()
            .filter(|((h, _), _)| !whole.contains(h.as_str()))
        {
            let scope = ChangeScope::Instance {
                uuid: uuid.clone(),
                networks: nets.iter().copied().collect(),
            };
            rows.push((h.as_str(), scope));
        }
    }
    let mut hosts = BTreeSet::new();
    for (h, scope) in rows {
        log.execute(params![g, h, scope.encode()]).map_err(db)?;
        if hosts.insert(h) {
            gen.execute(params![h, g]).map_err(db)?;
        }
    }
    if generation.is_multiple_of(1024) && generation > CHANGES_KEPT {
        prune_changes_tx(tx, generation - CHANGES_KEPT)?;
    }
    Ok(true)
}

fn prune_changes_tx(tx: &Transaction, before: u64) -> Result<()> {
    exec(
        tx,
        "DELETE FROM host_changes WHERE generation < ?1",
        [before as i64],
    )
    .map_err(db)?;
    exec(
        tx,
        "INSERT INTO meta(key, value) VALUES ('changes_from', ?1) \
         ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        [before.to_string()],
    )
    .map_err(db)?;
    Ok(())
}

fn host_generation_c(c: &Connection, host: &str) -> Result<u64> {
    let g: Option<i64> = qrow(
        c,
        "SELECT max(generation) FROM host_generations WHERE host IN (?1, '*')",
        [host],
        |r| r.get(0),
    )
    .map_err(db)?;
    Ok(g.unwrap_or(0) as u64)
}

fn generation_c(c: &Connection) -> Result<u64> {
    let v: String = qrow(
        c,
        "SELECT value FROM meta WHERE key = 'generation'",
        [],
        |r| r.get(0),
    )
    .map_err(db)?;
    Ok(v.parse().unwrap_or(0))
}

// ---- what a change touches -----------------------------------------------------------------

fn strings<P: rusqlite::Params>(c: &Connection, sql: &str, p: P) -> Result<Vec<String>> {
    let mut st = c.prepare_cached(sql).map_err(db)?;
    let rows = st
        .query_map(p, |r| r.get::<_, String>(0))
        .map_err(db)?
        .collect::<rusqlite::Result<Vec<_>>>()
        .map_err(db)?;
    Ok(rows)
}

fn instance_host(c: &Connection, uuid: &str) -> Result<Option<String>> {
    Ok(qrow(
        c,
        "SELECT host FROM instances WHERE uuid = ?1",
        [uuid],
        |r| r.get::<_, Option<String>>(0),
    )
    .optional()
    .map_err(db)?
    .flatten())
}

/// The DHCP entry of `address` on network `network_id`: on the network's host, or for a
/// multi-host network on the host of the instance holding it.
fn touch_dhcp(
    c: &Connection,
    t: &mut Touched,
    network_id: i64,
    address: &str,
    instance_uuid: Option<&str>,
) -> Result<()> {
    let row: Option<(Option<String>, Option<i64>)> = qrow(
        c,
        "SELECT host, json_extract(data, '$.multi_host') FROM networks WHERE id = ?1",
        [network_id],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
    .optional()
    .map_err(db)?;
    let Some((host, multi)) = row else {
        return Ok(());
    };
    if multi.unwrap_or(0) != 0 {
        if let Some(u) = instance_uuid {
            t.host(instance_host(c, u)?.as_deref());
        }
    } else if let Some(h) = host {
        t.addresses.insert((h, network_id, address.to_string()));
    }
    Ok(())
}

/// Hosts with members of groups whose rules name `group_id` as their source: their plans
/// list that group's member addresses.
fn touch_referrers(c: &Connection, t: &mut Touched, group_id: i64) -> Result<()> {
    t.hosts(strings(
        c,
        "SELECT DISTINCT i.host FROM security_group_rules r \
           JOIN instance_security_groups m ON m.group_id = r.parent_group_id \
           JOIN instances i ON i.uuid = m.instance_uuid \
         WHERE r.group_id = ?1 AND i.host IS NOT NULL",
        [group_id],
    )?);
    Ok(())
}

/// A group's members, on their hosts: their entries carry its rules.
fn touch_members(c: &Connection, t: &mut Touched, group_id: i64) -> Result<()> {
    let mut st = c
        .prepare_cached(
            "SELECT i.host, i.uuid FROM instance_security_groups m \
               JOIN instances i ON i.uuid = m.instance_uuid \
             WHERE m.group_id = ?1 AND i.host IS NOT NULL",
        )
        .map_err(db)?;
    let rows = st
        .query_map([group_id], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
        })
        .map_err(db)?
        .collect::<rusqlite::Result<Vec<_>>>()
        .map_err(db)?;
    for (h, u) in rows {
        t.instance(Some(&h), &u, &[]);
    }
    Ok(())
}

/// An instance (on its host, with the networks it is on), the hosts serving DHCP for its
/// addresses, the hosts its floating IPs
/// are bound on and the hosts whose rules name one of its groups as their source.
fn touch_instance(c: &Connection, t: &mut Touched, uuid: &str) -> Result<()> {
    let host = instance_host(c, uuid)?;
    let addrs: Vec<(i64, String)> = {
        let mut st = c
            .prepare_cached("SELECT network_id, address FROM fixed_ips WHERE instance_uuid = ?1")
            .map_err(db)?;
        let rows = st
            .query_map([uuid], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(db)?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(db)?;
        rows
    };
    let networks: Vec<i64> = addrs.iter().map(|(n, _)| *n).collect();
    t.instance(host.as_deref(), uuid, &networks);
    for (n, a) in &addrs {
        touch_dhcp(c, t, *n, a, Some(uuid))?;
    }
    let floating = {
        let mut st = c
            .prepare_cached(&format!(
                "{FLOATING_SELECT} WHERE f.instance_uuid = ?1 AND fl.host IS NOT NULL"
            ))
            .map_err(db)?;
        let rows = st
            .query_map([uuid], floating_from_row)
            .map_err(db)?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(db)?;
        rows
    };
    for fl in &floating {
        t.floating(fl);
    }
    t.hosts(strings(
        c,
        "SELECT DISTINCT i.host FROM instance_security_groups mine \
           JOIN security_group_rules r ON r.group_id = mine.group_id \
           JOIN instance_security_groups m ON m.group_id = r.parent_group_id \
           JOIN instances i ON i.uuid = m.instance_uuid \
         WHERE mine.instance_uuid = ?1 AND i.host IS NOT NULL",
        [uuid],
    )?);
    Ok(())
}

/// A network's own host and the hosts with instances on it.
fn touch_network(c: &Connection, t: &mut Touched, n: &Network) -> Result<()> {
    t.host(n.host.as_deref());
    t.hosts(strings(
        c,
        "SELECT DISTINCT i.host FROM fixed_ips f JOIN instances i ON i.uuid = f.instance_uuid \
         WHERE f.network_id = ?1 AND i.host IS NOT NULL",
        [n.id],
    )?);
    Ok(())
}

// ---- scoped reads --------------------------------------------------------------------------

/// A bound address with its fixed IP's id and numeric address (for order and dedup). The
/// hostname is read from the instance's record in SQL, without parsing it here.
const BOUND_COLS: &str = "f.id, f.address_int, f.network_id, f.address, v.mac, v.uuid, f.instance_uuid, i.id, \
     json_extract(i.data, '$.hostname'), i.host, f.allocated, f.leased, v.device, \
     (SELECT group_concat(group_id, ',') FROM instance_security_groups g WHERE g.instance_uuid = f.instance_uuid), \
     v.id = (SELECT min(w.id) FROM vifs w WHERE w.instance_uuid = v.instance_uuid)";

type BoundRow = ((i64, i64), BoundAddress);

fn bound_row(r: &Row) -> rusqlite::Result<BoundRow> {
    Ok((
        (r.get(2)?, r.get(1)?),
        BoundAddress {
            network_id: r.get(2)?,
            address: r.get(3)?,
            mac: r.get(4)?,
            vif_uuid: r.get(5)?,
            instance_uuid: r.get(6)?,
            instance_id: r.get::<_, Option<i64>>(7)?.unwrap_or(0),
            hostname: r.get::<_, Option<String>>(8)?.unwrap_or_default(),
            instance_host: r.get(9)?,
            allocated: r.get(10)?,
            leased: r.get(11)?,
            device: r.get(12)?,
            groups: r
                .get::<_, Option<String>>(13)?
                .map(|g| g.split(',').filter_map(|x| x.parse().ok()).collect())
                .unwrap_or_default(),
            default_route: r.get::<_, Option<bool>>(14)?.unwrap_or(true),
        },
    ))
}

fn bound_rows<P: rusqlite::Params>(
    c: &Connection,
    from_where: &str,
    p: P,
    out: &mut Vec<BoundRow>,
) -> Result<()> {
    let sql = format!("SELECT {BOUND_COLS} {from_where}");
    let mut st = c.prepare_cached(&sql).map_err(db)?;
    let rows = st.query_map(p, bound_row).map_err(db)?;
    for row in rows {
        out.push(row.map_err(db)?);
    }
    Ok(())
}

fn host_inputs_c(c: &Connection, host: &str) -> Result<HostInputs> {
    let generation = host_generation_c(c, host)?;
    let mut rows: Vec<BoundRow> = Vec::new();
    // The host's own instances' addresses.
    bound_rows(
        c,
        "FROM instances i JOIN fixed_ips f ON f.instance_uuid = i.uuid JOIN vifs v ON v.id = f.vif_id \
         WHERE i.host = ?1",
        [host],
        &mut rows,
    )?;
    let mut ids: BTreeSet<i64> = rows.iter().map(|(k, _)| k.0).collect();
    let served = load_networks(c, "WHERE host = ?1", &[&host])?;
    ids.extend(served.iter().map(|n| n.id));
    // Every address of the single-host networks it serves (their DHCP server is here).
    for n in served.iter().filter(|n| !n.multi_host) {
        bound_rows(
            c,
            "FROM fixed_ips f JOIN vifs v ON v.id = f.vif_id LEFT JOIN instances i ON i.uuid = f.instance_uuid \
             WHERE f.network_id = ?1 AND f.vif_id IS NOT NULL",
            [n.id],
            &mut rows,
        )?;
    }
    let mut networks = Vec::new();
    for id in &ids {
        networks.extend(load_networks(c, "WHERE id = ?1", &[id])?);
    }
    // The rules of its instances' groups, and the members of the groups they name.
    let groups: BTreeSet<i64> = rows
        .iter()
        .filter(|(_, b)| b.instance_host.as_deref() == Some(host))
        .flat_map(|(_, b)| b.groups.iter().copied())
        .collect();
    let mut rules = Vec::new();
    for g in &groups {
        rules.extend(rules_of(c, *g)?);
    }
    let sources: BTreeSet<i64> = rules.iter().filter_map(|r| r.group_id).collect();
    for g in &sources {
        bound_rows(
            c,
            "FROM instance_security_groups m JOIN fixed_ips f ON f.instance_uuid = m.instance_uuid \
               JOIN vifs v ON v.id = f.vif_id LEFT JOIN instances i ON i.uuid = f.instance_uuid \
             WHERE m.group_id = ?1 AND f.allocated = 1",
            [g],
            &mut rows,
        )?;
    }
    // In the order of the whole store's (network, then address), each address once.
    rows.sort_by_key(|(k, _)| *k);
    rows.dedup_by_key(|(k, _)| *k);
    let floating = {
        let mut st = c
            .prepare_cached(&format!(
                "{FLOATING_SELECT} WHERE fl.host = ?1 ORDER BY fl.address_int"
            ))
            .map_err(db)?;
        let rows = st
            .query_map([host], floating_from_row)
            .map_err(db)?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(db)?;
        rows
    };
    let options: Option<String> = qrow(
        c,
        "SELECT options FROM services WHERE host = ?1",
        [host],
        |r| r.get(0),
    )
    .optional()
    .map_err(db)?;
    let mut segment_peers = BTreeMap::new();
    for n in networks.iter().filter(|n| n.vlan.is_some()) {
        segment_peers.insert(n.id, segment_peers_c(c, n)?);
    }
    Ok(HostInputs {
        generation,
        networks,
        bound: rows.into_iter().map(|(_, b)| b).collect(),
        floating,
        rules,
        provider_rules: admin_rules_c(c, AdminRules::Provider)?,
        options: options
            .and_then(|o| serde_json::from_str(&o).ok())
            .unwrap_or_default(),
        segment_peers,
    })
}

/// The management addresses (`my_ip` of their agents' reports) of every host that has a
/// VLAN network: its network host and the hosts of its instances.
fn segment_peers_c(c: &Connection, n: &Network) -> Result<Vec<String>> {
    let mut hosts: BTreeSet<String> = n.host.iter().cloned().collect();
    let mut st = c
        .prepare_cached(
            "SELECT DISTINCT i.host FROM fixed_ips f JOIN instances i ON i.uuid = f.instance_uuid \
             WHERE f.network_id = ?1 AND f.allocated = 1 AND i.host IS NOT NULL",
        )
        .map_err(db)?;
    hosts.extend(
        st.query_map([n.id], |r| r.get::<_, String>(0))
            .map_err(db)?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(db)?,
    );
    let mut out = Vec::new();
    for h in &hosts {
        let options: Option<String> = qrow(
            c,
            "SELECT options FROM services WHERE host = ?1",
            [h],
            |r| r.get(0),
        )
        .optional()
        .map_err(db)?;
        let o: novanet_core::config::HostOptions = options
            .and_then(|o| serde_json::from_str(&o).ok())
            .unwrap_or_default();
        out.extend(o.my_ip);
    }
    Ok(out)
}

// ---- row helpers ---------------------------------------------------------------------------

fn network_from_row(r: &Row) -> rusqlite::Result<(i64, String)> {
    Ok((r.get(0)?, r.get(1)?))
}

fn load_networks(
    c: &Connection,
    where_sql: &str,
    p: &[&dyn rusqlite::ToSql],
) -> Result<Vec<Network>> {
    let sql = format!("SELECT id, data FROM networks {where_sql} ORDER BY id");
    let mut st = c.prepare_cached(&sql).map_err(db)?;
    let rows = st
        .query_map(p, network_from_row)
        .map_err(db)?
        .collect::<rusqlite::Result<Vec<_>>>()
        .map_err(db)?;
    rows.into_iter()
        .map(|(id, data)| {
            let mut n: Network = from_json(&data)?;
            n.id = id;
            Ok(n)
        })
        .collect()
}

fn find_network(c: &Connection, key: &str) -> Result<Network> {
    let found = load_networks(c, "WHERE uuid = ?1 OR cidr = ?1 OR label = ?1", &[&key])?;
    match found.len() {
        1 => Ok(found.into_iter().next().expect("one")),
        0 => Err(Error::not_found(format!("network {key} not found"))),
        _ => Err(Error::conflict(format!(
            "{key} names several networks; use the network's uuid"
        ))),
    }
}

fn save_network(c: &Connection, n: &Network) -> Result<i64> {
    let data = to_json(n);
    if n.id == 0 {
        exec(c,
            "INSERT INTO networks(uuid, label, cidr, cidr_v6, vlan, project_id, host, data) VALUES (?1,?2,?3,?4,?5,?6,?7,?8)",
            params![n.uuid, n.label, n.cidr, n.cidr_v6, n.vlan, n.project_id, n.host, data],
        )
        .map_err(|e| {
            if is_unique_violation(&e) {
                Error::conflict(format!("network {} conflicts with an existing one (uuid or vlan)", n.label))
            } else {
                db(e)
            }
        })?;
        Ok(c.last_insert_rowid())
    } else {
        exec(c,
            "UPDATE networks SET label=?2, cidr=?3, cidr_v6=?4, vlan=?5, project_id=?6, host=?7, data=?8 WHERE id=?1",
            params![n.id, n.label, n.cidr, n.cidr_v6, n.vlan, n.project_id, n.host, data],
        )
        .map_err(db)?;
        Ok(n.id)
    }
}

const FIXED_COLS: &str =
    "f.id, f.network_id, f.address, f.allocated, f.leased, f.reserved, f.instance_uuid, f.vif_id, f.host, f.updated_at";

fn fixed_from_row(r: &Row) -> rusqlite::Result<FixedIp> {
    Ok(FixedIp {
        id: r.get(0)?,
        network_id: r.get(1)?,
        address: r.get(2)?,
        allocated: r.get(3)?,
        leased: r.get(4)?,
        reserved: r.get(5)?,
        instance_uuid: r.get(6)?,
        vif_id: r.get(7)?,
        host: r.get(8)?,
        updated_at: r.get(9)?,
    })
}

fn get_fixed(c: &Connection, address: &str) -> Result<FixedIp> {
    if address.parse::<Ipv4Addr>().is_err() {
        return Err(Error::invalid(
            "address",
            format!("{address:?} is not an IPv4 address"),
        ));
    }
    qrow(
        c,
        &format!("SELECT {FIXED_COLS} FROM fixed_ips f WHERE f.address = ?1"),
        [address],
        fixed_from_row,
    )
    .optional()
    .map_err(db)?
    .ok_or_else(|| Error::not_found(format!("fixed IP {address} not found")))
}

fn load_instance(c: &Connection, uuid: &str) -> Result<Instance> {
    let row: Option<(i64, String)> = c
        .query_row(
            "SELECT id, data FROM instances WHERE uuid = ?1",
            [uuid],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()
        .map_err(db)?;
    let (id, data) = row.ok_or_else(|| Error::not_found(format!("instance {uuid} not found")))?;
    let mut i: Instance = from_json(&data)?;
    i.id = id;
    Ok(i)
}

fn floating_from_row(r: &Row) -> rusqlite::Result<FloatingIp> {
    Ok(FloatingIp {
        id: r.get(0)?,
        address: r.get(1)?,
        pool: r.get(2)?,
        interface: r.get(3)?,
        project_id: r.get(4)?,
        fixed_ip: r.get(5)?,
        instance_uuid: r.get(6)?,
        host: r.get(7)?,
        auto_assigned: r.get(8)?,
    })
}

const FLOATING_SELECT: &str = "SELECT fl.id, fl.address, fl.pool, fl.interface, fl.project_id, f.address, f.instance_uuid, fl.host, fl.auto_assigned \
     FROM floating_ips fl LEFT JOIN fixed_ips f ON f.id = fl.fixed_ip_id";

fn get_floating(c: &Connection, key: &str) -> Result<FloatingIp> {
    let by_id = key.parse::<i64>().ok();
    qrow(
        c,
        &format!("{FLOATING_SELECT} WHERE fl.address = ?1 OR fl.id = ?2"),
        params![key, by_id],
        floating_from_row,
    )
    .optional()
    .map_err(db)?
    .ok_or_else(|| Error::not_found(format!("floating IP {key} not found")))
}

fn check_owner(owner: Option<&str>, caller: Option<&str>, what: &str) -> Result<()> {
    match caller {
        None => Ok(()),
        Some(p) if owner == Some(p) => Ok(()),
        Some(_) => Err(Error::not_found(format!("{what} not found"))),
    }
}

/// Allocates one address on `network` for a VIF: the requested one, or the free one released
/// longest ago (never-used first, lowest address first).
fn allocate_address(
    tx: &Transaction,
    network: &Network,
    requested: Option<&str>,
    instance_uuid: &str,
    vif_id: i64,
    now: i64,
) -> Result<String> {
    let address = match requested {
        Some(a) => {
            let f = get_fixed(tx, a).map_err(|e| match e {
                Error::NotFound(_) => Error::invalid(
                    "fixed_ip",
                    format!("{a} is not an address of network {}", network.label),
                ),
                other => other,
            })?;
            if f.network_id != network.id {
                return Err(Error::invalid(
                    "fixed_ip",
                    format!("{a} is not an address of network {}", network.label),
                ));
            }
            if f.reserved {
                return Err(Error::conflict(format!("fixed IP {a} is reserved")));
            }
            if f.instance_uuid.is_some() || f.host.is_some() || f.leased {
                return Err(Error::conflict(format!("fixed IP {a} is already in use")));
            }
            f.address
        }
        None => tx
            .query_row(
                "SELECT address FROM fixed_ips WHERE network_id = ?1 AND instance_uuid IS NULL \
                 AND reserved = 0 AND host IS NULL AND leased = 0 ORDER BY updated_at, address_int LIMIT 1",
                [network.id],
                |r| r.get::<_, String>(0),
            )
            .optional()
            .map_err(db)?
            .ok_or_else(|| {
                Error::Exhausted(format!("no fixed IP left on network {} ({})", network.label,
                    network.cidr.as_deref().unwrap_or("-")))
            })?,
    };
    let n = tx
        .execute(
            "UPDATE fixed_ips SET instance_uuid = ?2, vif_id = ?3, allocated = 1, updated_at = ?4 \
             WHERE address = ?1 AND instance_uuid IS NULL",
            params![address, instance_uuid, vif_id, now],
        )
        .map_err(db)?;
    if n != 1 {
        return Err(Error::conflict(format!(
            "fixed IP {address} was taken concurrently"
        )));
    }
    Ok(address)
}

fn create_vif(
    tx: &Transaction,
    network_id: i64,
    instance_uuid: &str,
    attempts: u32,
) -> Result<(i64, String, String)> {
    for _ in 0..attempts.max(1) {
        let b = random_bytes();
        let mac = Mac::nova([b[0], b[1], b[2]]).to_string();
        let uuid = new_uuid();
        match exec(
            tx,
            "INSERT INTO vifs(uuid, mac, network_id, instance_uuid) VALUES (?1, ?2, ?3, ?4)",
            params![uuid, mac, network_id, instance_uuid],
        ) {
            Ok(_) => return Ok((tx.last_insert_rowid(), uuid, mac)),
            Err(e) if is_unique_violation(&e) => continue,
            Err(e) => return Err(db(e)),
        }
    }
    Err(Error::Exhausted(format!(
        "could not find a unique MAC address in {attempts} attempts"
    )))
}

/// The networks an instance is put on when it asks for none (nova's `_get_networks_for_instance`).
/// Whether a project may put an instance on a network: its own, or (outside VLAN mode,
/// where every network belongs to one project) a shared one. Another project's network is
/// answered as not found, so its existence is not told either.
fn usable_by(n: &Network, project_id: &str, manager: Manager) -> bool {
    match n.project_id.as_deref() {
        Some(p) => p == project_id,
        None => manager != Manager::Vlan,
    }
}

fn default_networks(tx: &Transaction, manager: Manager, project_id: &str) -> Result<Vec<Network>> {
    match manager {
        // nova took every network without a VLAN; a tenant network of another project is
        // not one to put this project's instance on.
        // Only networks with IPv4 addresses to give: an IPv6-only network has no fixed IP.
        Manager::Flat | Manager::FlatDhcp => load_networks(
            tx,
            "WHERE vlan IS NULL AND cidr IS NOT NULL AND (project_id IS NULL OR project_id = ?1)",
            &[&project_id],
        ),
        Manager::Vlan => {
            let own = load_networks(tx, "WHERE project_id = ?1", &[&project_id])?;
            if !own.is_empty() {
                return Ok(own);
            }
            Ok(vec![associate_free_network(tx, project_id, None)?])
        }
    }
}

fn associate_free_network(
    tx: &Transaction,
    project_id: &str,
    uuid: Option<&str>,
) -> Result<Network> {
    let mut n = match uuid {
        Some(u) => find_network(tx, u)?,
        None => load_networks(tx, "WHERE project_id IS NULL AND vlan IS NOT NULL", &[])?
            .into_iter()
            .next()
            .ok_or_else(|| {
                Error::Exhausted(format!(
                    "no free network left to associate with project {project_id}"
                ))
            })?,
    };
    n.project_id = Some(project_id.to_string());
    save_network(tx, &n)?;
    Ok(n)
}

fn instance_addresses_tx(c: &Connection, uuid: &str) -> Result<Vec<InstanceAddress>> {
    let mut st = c
        .prepare_cached(
            "SELECT n.uuid, n.label, v.mac, v.uuid, f.address, \
               (SELECT group_concat(fl.address, ',') FROM floating_ips fl WHERE fl.fixed_ip_id = f.id) \
             FROM fixed_ips f JOIN vifs v ON v.id = f.vif_id JOIN networks n ON n.id = f.network_id \
             WHERE f.instance_uuid = ?1 AND f.allocated = 1 ORDER BY v.id, f.address_int",
        )
        .map_err(db)?;
    let rows = st
        .query_map([uuid], |r| {
            let floating: Option<String> = r.get(5)?;
            Ok(InstanceAddress {
                network_uuid: r.get(0)?,
                network_label: r.get(1)?,
                mac: r.get(2)?,
                vif_uuid: r.get(3)?,
                address: r.get(4)?,
                floating: floating
                    .map(|s| s.split(',').map(str::to_string).collect())
                    .unwrap_or_default(),
            })
        })
        .map_err(db)?
        .collect::<rusqlite::Result<Vec<_>>>()
        .map_err(db)?;
    Ok(rows)
}

/// Frees a fixed IP (no instance, no VIF) and drops its VIF once nothing refers to it.
fn disassociate_fixed(tx: &Transaction, f: &FixedIp, now: i64) -> Result<()> {
    exec(tx,
        "UPDATE fixed_ips SET instance_uuid = NULL, vif_id = NULL, allocated = 0, leased = 0, updated_at = ?2 WHERE id = ?1",
        params![f.id, now],
    )
    .map_err(db)?;
    if let Some(vif) = f.vif_id {
        exec(tx,
            "DELETE FROM vifs WHERE id = ?1 AND NOT EXISTS (SELECT 1 FROM fixed_ips WHERE vif_id = ?1) \
             AND NOT EXISTS (SELECT 1 FROM instances i WHERE i.uuid = vifs.instance_uuid)",
            [vif],
        )
        .map_err(db)?;
    }
    Ok(())
}

/// Marks an instance's fixed IP deallocated; frees it at once unless a lease is still out
/// (then the DHCP release, or the disassociate timeout, frees it).
fn deallocate_fixed(tx: &Transaction, f: &FixedIp, now: i64) -> Result<()> {
    exec(
        tx,
        "UPDATE floating_ips SET fixed_ip_id = NULL, host = NULL WHERE fixed_ip_id = ?1",
        [f.id],
    )
    .map_err(db)?;
    if f.leased {
        exec(
            tx,
            "UPDATE fixed_ips SET allocated = 0, updated_at = ?2 WHERE id = ?1",
            params![f.id, now],
        )
        .map_err(db)?;
        Ok(())
    } else {
        disassociate_fixed(tx, f, now)
    }
}

fn rules_of(c: &Connection, group_id: i64) -> Result<Vec<SecurityGroupRule>> {
    let mut st = c
        .prepare_cached(
            "SELECT r.id, r.parent_group_id, r.protocol, r.from_port, r.to_port, r.cidr, r.group_id, g.name, g.project_id \
             FROM security_group_rules r LEFT JOIN security_groups g ON g.id = r.group_id \
             WHERE r.parent_group_id = ?1 ORDER BY r.id",
        )
        .map_err(db)?;
    let rows = st
        .query_map([group_id], rule_from_row)
        .map_err(db)?
        .collect::<rusqlite::Result<Vec<_>>>()
        .map_err(db)?;
    Ok(rows)
}

/// The two tables of rules an admin keeps outside any group, of the same shape.
#[derive(Clone, Copy)]
enum AdminRules {
    /// Copied into each new `default` group.
    Default,
    /// Dropped for every instance.
    Provider,
}

impl AdminRules {
    fn table(self) -> &'static str {
        match self {
            AdminRules::Default => "security_group_default_rules",
            AdminRules::Provider => "provider_fw_rules",
        }
    }

    fn noun(self) -> &'static str {
        match self {
            AdminRules::Default => "default security group rule",
            AdminRules::Provider => "provider firewall rule",
        }
    }
}

impl SqliteStore {
    fn admin_rules(&self, kind: AdminRules) -> Result<Vec<SecurityGroupRule>> {
        self.read(|c| admin_rules_c(c, kind))
    }
}

fn admin_rules_c(c: &Connection, kind: AdminRules) -> Result<Vec<SecurityGroupRule>> {
    let sql = format!(
        "SELECT id, 0, protocol, from_port, to_port, cidr, NULL, NULL, NULL FROM {} ORDER BY id",
        kind.table()
    );
    let mut st = c.prepare_cached(&sql).map_err(db)?;
    let rows = st
        .query_map([], rule_from_row)
        .map_err(db)?
        .collect::<rusqlite::Result<Vec<_>>>()
        .map_err(db)?;
    Ok(rows)
}

impl SqliteStore {
    fn add_admin_rule(&self, kind: AdminRules, rule: &NewRule) -> Result<SecurityGroupRule> {
        let id = self.write_touching(|tx, t| {
            // Provider rules are in every host's plan; default rules in none.
            t.all = matches!(kind, AdminRules::Provider);
            let sql = format!(
                "INSERT INTO {}(protocol, from_port, to_port, cidr) VALUES (?1,?2,?3,?4)",
                kind.table()
            );
            exec(
                tx,
                &sql,
                params![rule.protocol, rule.from_port, rule.to_port, rule.cidr],
            )
            .map_err(db)?;
            Ok(tx.last_insert_rowid())
        })?;
        self.admin_rules(kind)?
            .into_iter()
            .find(|r| r.id == id)
            .ok_or_else(|| Error::Store(format!("{} {id} vanished", kind.noun())))
    }

    fn delete_admin_rule(&self, kind: AdminRules, id: i64) -> Result<()> {
        self.write_touching(|tx, t| {
            t.all = matches!(kind, AdminRules::Provider);
            let sql = format!("DELETE FROM {} WHERE id = ?1", kind.table());
            let n = tx.execute(&sql, [id]).map_err(db)?;
            if n == 0 {
                return Err(Error::not_found(format!("{} {id} not found", kind.noun())));
            }
            Ok(())
        })
    }
}

fn rule_from_row(r: &Row) -> rusqlite::Result<SecurityGroupRule> {
    Ok(SecurityGroupRule {
        id: r.get(0)?,
        parent_group_id: r.get(1)?,
        protocol: r.get(2)?,
        from_port: r.get(3)?,
        to_port: r.get(4)?,
        cidr: r.get(5)?,
        group_id: r.get(6)?,
        group_name: r.get(7)?,
        group_project: r.get(8)?,
    })
}

fn load_groups(
    c: &Connection,
    where_sql: &str,
    p: &[&dyn rusqlite::ToSql],
) -> Result<Vec<SecurityGroup>> {
    let sql = format!(
        "SELECT id, project_id, name, description FROM security_groups {where_sql} ORDER BY project_id, name"
    );
    let mut st = c.prepare_cached(&sql).map_err(db)?;
    let groups = st
        .query_map(p, |r| {
            Ok(SecurityGroup {
                id: r.get(0)?,
                project_id: r.get(1)?,
                name: r.get(2)?,
                description: r.get(3)?,
                rules: Vec::new(),
            })
        })
        .map_err(db)?
        .collect::<rusqlite::Result<Vec<_>>>()
        .map_err(db)?;
    groups
        .into_iter()
        .map(|mut g| {
            g.rules = rules_of(c, g.id)?;
            Ok(g)
        })
        .collect()
}

fn ensure_default_group_tx(tx: &Transaction, project_id: &str) -> Result<SecurityGroup> {
    let existing = load_groups(
        tx,
        "WHERE project_id = ?1 AND name = 'default'",
        &[&project_id],
    )?;
    if let Some(g) = existing.into_iter().next() {
        return Ok(g);
    }
    exec(tx,
        "INSERT INTO security_groups(project_id, name, description) VALUES (?1, 'default', 'default')",
        [project_id],
    )
    .map_err(db)?;
    let id = tx.last_insert_rowid();
    exec(tx,
        "INSERT INTO security_group_rules(parent_group_id, protocol, from_port, to_port, cidr) \
         SELECT ?1, protocol, from_port, to_port, cidr FROM security_group_default_rules ORDER BY id",
        [id],
    )
    .map_err(db)?;
    Ok(load_groups(tx, "WHERE id = ?1", &[&id])?.remove(0))
}

/// The hash of the first versions: one salted SHA-256. Still read, so that old stores keep
/// working; replaced by Argon2id at the user's next login.
fn legacy_hash(salt: &str, password: &str) -> String {
    let mut h = Sha256::new();
    h.update(salt.as_bytes());
    h.update([0u8]);
    h.update(password.as_bytes());
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// Argon2id with OWASP's minimum (19 MiB, 2 passes, 1 lane): ~20 ms per login here, so a
/// guesser gets tens of tries a second per core instead of thousands. PHC string format.
fn hash_password(password: &str) -> Result<String> {
    use argon2::password_hash::{PasswordHasher, SaltString};
    let salt = SaltString::encode_b64(uuid::Uuid::new_v4().as_bytes())
        .map_err(|e| Error::Store(format!("password salt: {e}")))?;
    let params = argon2::Params::new(19 * 1024, 2, 1, None)
        .map_err(|e| Error::Store(format!("argon2 parameters: {e}")))?;
    argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| Error::Store(format!("password hash: {e}")))
}

/// Whether `password` matches the stored hash, and whether the hash is the legacy kind.
fn verify_password(hash: &str, salt: &str, password: &str) -> (bool, bool) {
    use argon2::password_hash::{PasswordHash, PasswordVerifier};
    match PasswordHash::new(hash) {
        Ok(h) => (
            argon2::Argon2::default()
                .verify_password(password.as_bytes(), &h)
                .is_ok(),
            false,
        ),
        Err(_) => (legacy_hash(salt, password) == hash, true),
    }
}

/// An Argon2id hash of a password nobody has, checked against when the user does not exist.
fn dummy_hash() -> &'static str {
    static H: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    H.get_or_init(|| hash_password("novanet: no such user").unwrap_or_default())
}

/// A project's or user's name: not blank, no control characters, at most 255 characters.
fn check_identity_name(what: &str, name: &str) -> Result<()> {
    if name.trim().is_empty() {
        return Err(Error::invalid("name", format!("a {what} needs a name")));
    }
    novanet_core::valid::check_name("name", name)
}

/// `(id, name)` rows of a query without parameters (projects, users).
fn id_name_rows(c: &Connection, sql: &str) -> Result<Vec<(String, String)>> {
    let mut st = c.prepare_cached(sql).map_err(db)?;
    let rows = st
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .map_err(db)?
        .collect::<rusqlite::Result<Vec<_>>>()
        .map_err(db)?;
    Ok(rows)
}

fn roles_of(c: &Connection, user_id: &str, project_id: &str) -> Result<Vec<String>> {
    let mut st = c
        .prepare_cached("SELECT role FROM role_assignments WHERE user_id = ?1 AND project_id = ?2 ORDER BY role")
        .map_err(db)?;
    let roles = st
        .query_map([user_id, project_id], |r| r.get(0))
        .map_err(db)?
        .collect::<rusqlite::Result<Vec<String>>>()
        .map_err(db)?;
    Ok(roles)
}

fn find_project(c: &Connection, key: &str) -> Result<Project> {
    qrow(
        c,
        "SELECT id, name FROM projects WHERE id = ?1 OR name = ?1",
        [key],
        |r| {
            Ok(Project {
                id: r.get(0)?,
                name: r.get(1)?,
            })
        },
    )
    .optional()
    .map_err(db)?
    .ok_or_else(|| Error::not_found(format!("project {key} not found")))
}

impl Store for SqliteStore {
    fn generation(&self) -> Result<u64> {
        self.read(|c| {
            let v: String = c
                .query_row("SELECT value FROM meta WHERE key = 'generation'", [], |r| {
                    r.get(0)
                })
                .map_err(db)?;
            Ok(v.parse().unwrap_or(0))
        })
    }

    fn host_generation(&self, host: &str) -> Result<u64> {
        self.read(|c| host_generation_c(c, host))
    }

    fn host_changes(&self, after: u64) -> Result<HostChanges> {
        self.read(|c| {
            // The generation first: a change committed after it is left for the next read,
            // never skipped.
            let upto = generation_c(c)?;
            let from: u64 = qrow(
                c,
                "SELECT value FROM meta WHERE key = 'changes_from'",
                [],
                |r| r.get::<_, String>(0),
            )
            .optional()
            .map_err(db)?
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
            let mut st = c
                .prepare_cached(
                    "SELECT generation, host, what FROM host_changes \
                     WHERE generation > ?1 AND generation <= ?2 ORDER BY generation",
                )
                .map_err(db)?;
            let changes = st
                .query_map([after as i64, upto as i64], |r| {
                    Ok(HostChange {
                        generation: r.get::<_, i64>(0)? as u64,
                        host: r.get(1)?,
                        scope: ChangeScope::decode(&r.get::<_, String>(2)?),
                    })
                })
                .map_err(db)?
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(db)?;
            Ok(HostChanges {
                upto,
                complete: after + 1 >= from,
                changes,
            })
        })
    }

    fn host_inputs(&self, host: &str) -> Result<HostInputs> {
        self.read(|c| host_inputs_c(c, host))
    }

    fn bound_address(&self, address: &str) -> Result<Option<BoundAddress>> {
        self.read(|c| {
            let mut rows = Vec::new();
            bound_rows(
                c,
                "FROM fixed_ips f JOIN vifs v ON v.id = f.vif_id LEFT JOIN instances i ON i.uuid = f.instance_uuid \
                 WHERE f.address = ?1",
                [address],
                &mut rows,
            )?;
            Ok(rows.pop().map(|(_, b)| b))
        })
    }

    fn instance_inputs(&self, uuid: &str) -> Result<InstanceInputs> {
        self.read(|c| {
            let mut rows = Vec::new();
            bound_rows(
                c,
                "FROM fixed_ips f JOIN vifs v ON v.id = f.vif_id LEFT JOIN instances i ON i.uuid = f.instance_uuid \
                 WHERE f.instance_uuid = ?1",
                [uuid],
                &mut rows,
            )?;
            rows.sort_by_key(|(k, _)| *k);
            let ids: BTreeSet<i64> = rows.iter().map(|(k, _)| k.0).collect();
            let mut networks = Vec::new();
            for id in &ids {
                networks.extend(load_networks(c, "WHERE id = ?1", &[id])?);
            }
            let groups: Vec<i64> = {
                let mut st = c
                    .prepare_cached(
                        "SELECT group_id FROM instance_security_groups WHERE instance_uuid = ?1",
                    )
                    .map_err(db)?;
                let rows = st
                    .query_map([uuid], |r| r.get(0))
                    .map_err(db)?
                    .collect::<rusqlite::Result<Vec<_>>>()
                    .map_err(db)?;
                rows
            };
            let mut rules = Vec::new();
            for g in groups {
                rules.extend(rules_of(c, g)?);
            }
            Ok(InstanceInputs {
                networks,
                bound: rows.into_iter().map(|(_, b)| b).collect(),
                rules,
            })
        })
    }

    fn host_on_network(&self, host: &str, network_id: i64) -> Result<bool> {
        self.read(|c| {
            qrow(
                c,
                "SELECT EXISTS(SELECT 1 FROM instances i JOIN fixed_ips f ON f.instance_uuid = i.uuid \
                 WHERE i.host = ?1 AND f.network_id = ?2 AND f.allocated = 1 AND f.vif_id IS NOT NULL)",
                params![host, network_id],
                |r| r.get(0),
            )
            .map_err(db)
        })
    }

    fn network_by_id(&self, id: i64) -> Result<Option<Network>> {
        self.read(|c| Ok(load_networks(c, "WHERE id = ?1", &[&id])?.pop()))
    }

    fn instance_counts(&self) -> Result<Vec<(String, u64)>> {
        self.read(|c| {
            let mut st = c
                .prepare_cached(
                    "SELECT host, instances FROM host_instance_counts WHERE instances > 0 ORDER BY host",
                )
                .map_err(db)?;
            let rows = st
                .query_map([], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64)))
                .map_err(db)?
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(db)?;
            Ok(rows)
        })
    }

    fn on_commit(&self, hook: CommitHook) {
        self.hooks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(hook);
    }

    fn create_networks(
        &self,
        req: &NetworkRequest,
        cfg: &Config,
    ) -> Result<(Vec<Network>, Vec<String>)> {
        self.write_touching(|tx, t| {
            let existing = load_networks(tx, "", &[])?;
            let plan = plan_networks(req, cfg.network_manager, cfg, &existing, new_uuid)?;
            // Fixed ranges must not overlap floating pools either.
            for p in &plan.networks {
                if let Some(c) = p.network.cidr_v4() {
                    let lo = i64::from(u32::from(c.network()));
                    let hi = i64::from(u32::from(c.broadcast()));
                    let clash: Option<String> = tx
                        .query_row(
                            "SELECT address FROM floating_ips WHERE address_int BETWEEN ?1 AND ?2 LIMIT 1",
                            [lo, hi],
                            |r| r.get(0),
                        )
                        .optional()
                        .map_err(db)?;
                    if let Some(a) = clash {
                        return Err(Error::conflict(format!(
                            "fixed range {c} contains floating IP {a}"
                        )));
                    }
                }
            }
            let mut out = Vec::new();
            let mut ins = tx
                .prepare_cached(
                    "INSERT INTO fixed_ips(network_id, address, address_int, reserved) VALUES (?1, ?2, ?3, ?4)",
                )
                .map_err(db)?;
            for p in plan.networks {
                let mut n = p.network;
                n.id = save_network(tx, &n)?;
                for (addr, reserved) in &p.fixed_ips {
                    ins.execute(params![n.id, addr.to_string(), i64::from(u32::from(*addr)), reserved])
                        .map_err(|e| {
                            if is_unique_violation(&e) {
                                Error::conflict(format!("fixed IP {addr} already belongs to another network"))
                            } else {
                                db(e)
                            }
                        })?;
                }
                // A new network has no instances yet: only a host given at creation serves it.
                t.host(n.host.as_deref());
                out.push(n);
            }
            Ok((out, plan.warnings))
        })
    }

    fn networks(&self) -> Result<Vec<Network>> {
        self.read(|c| load_networks(c, "", &[]))
    }

    fn network(&self, key: &str) -> Result<Network> {
        self.read(|c| find_network(c, key))
    }

    fn delete_network(&self, key: &str, require_disassociated: bool) -> Result<Network> {
        self.write_touching(|tx, t| {
            let n = find_network(tx, key)?;
            touch_network(tx, t, &n)?;
            if require_disassociated {
                if let Some(p) = &n.project_id {
                    return Err(Error::conflict(format!(
                        "network {} is associated with project {p}; disassociate it first",
                        n.label
                    )));
                }
            }
            let used: i64 = tx
                .query_row(
                    "SELECT count(*) FROM fixed_ips WHERE network_id = ?1 AND (instance_uuid IS NOT NULL OR allocated = 1)",
                    [n.id],
                    |r| r.get(0),
                )
                .map_err(db)?;
            if used > 0 {
                return Err(Error::conflict(format!(
                    "network {} still has {used} allocated fixed IPs; delete its instances first",
                    n.label
                )));
            }
            exec(tx, "DELETE FROM fixed_ips WHERE network_id = ?1", [n.id]).map_err(db)?;
            exec(tx, "DELETE FROM vifs WHERE network_id = ?1", [n.id]).map_err(db)?;
            exec(tx, "DELETE FROM networks WHERE id = ?1", [n.id]).map_err(db)?;
            Ok(n)
        })
    }

    fn update_network(&self, key: &str, update: &NetworkUpdate) -> Result<Network> {
        self.write_touching(|tx, t| {
            let mut n = find_network(tx, key)?;
            // The project is in no plan; the host decides who serves the network (gateway,
            // DHCP, NAT): the old and the new one.
            t.host(n.host.as_deref());
            if let Some(p) = &update.project_id {
                n.project_id = p.clone();
            }
            if let Some(h) = &update.host {
                n.host = h.clone();
            }
            t.host(n.host.as_deref());
            save_network(tx, &n)?;
            Ok(n)
        })
    }

    fn associate_project_network(&self, project_id: &str, uuid: Option<&str>) -> Result<Network> {
        self.write(|tx| associate_free_network(tx, project_id, uuid))
    }

    fn claim_networks(&self, host: &str) -> Result<usize> {
        // Most calls (every heartbeat) find nothing: they must not bump the generation,
        // which sends every agent for a new plan.
        let unclaimed = self.read(|c| {
            let free = load_networks(c, "WHERE host IS NULL", &[])?;
            Ok(free.iter().any(|n| !n.multi_host))
        })?;
        if !unclaimed {
            return Ok(0);
        }
        self.write_touching(|tx, t| {
            let free = load_networks(tx, "WHERE host IS NULL", &[])?;
            let mut n_claimed = 0;
            for mut n in free.into_iter().filter(|n| !n.multi_host) {
                t.host(Some(host));
                n.host = Some(host.to_string());
                save_network(tx, &n)?;
                n_claimed += 1;
            }
            Ok(n_claimed)
        })
    }

    fn fixed_ip(&self, address: &str) -> Result<FixedIpInfo> {
        self.read(|c| {
            let f = get_fixed(c, address)?;
            fixed_info(c, f)
        })
    }

    fn fixed_ips(&self, host: Option<&str>) -> Result<Vec<FixedIpInfo>> {
        self.read(|c| {
            let mut st = c
                .prepare_cached(&format!(
                    "SELECT {FIXED_COLS} FROM fixed_ips f LEFT JOIN instances i ON i.uuid = f.instance_uuid \
                     WHERE ?1 IS NULL OR i.host = ?1 ORDER BY f.network_id, f.address_int"
                ))
                .map_err(db)?;
            let rows = st
                .query_map([host], fixed_from_row)
                .map_err(db)?
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(db)?;
            rows.into_iter().map(|f| fixed_info(c, f)).collect()
        })
    }

    fn set_fixed_reserved(&self, address: &str, reserved: bool) -> Result<()> {
        self.write(|tx| {
            let f = get_fixed(tx, address)?;
            exec(
                tx,
                "UPDATE fixed_ips SET reserved = ?2 WHERE id = ?1",
                params![f.id, reserved],
            )
            .map_err(db)?;
            Ok(())
        })
    }

    fn lease_fixed_ip(&self, address: &str, _mac: Option<&str>) -> Result<bool> {
        self.write_touching(|tx, t| {
            let f = get_fixed(tx, address)?;
            if f.instance_uuid.is_none() {
                return Ok(false);
            }
            touch_dhcp(tx, t, f.network_id, &f.address, f.instance_uuid.as_deref())?;
            exec(tx, "UPDATE fixed_ips SET leased = 1 WHERE id = ?1", [f.id]).map_err(db)?;
            Ok(true)
        })
    }

    fn release_fixed_ip(&self, address: &str, mac: Option<&str>, now: i64) -> Result<bool> {
        self.write_touching(|tx, t| {
            let f = get_fixed(tx, address)?;
            let Some(owner) = f.instance_uuid.clone() else {
                return Ok(false);
            };
            touch_dhcp(tx, t, f.network_id, &f.address, Some(&owner))?;
            exec(tx, "UPDATE fixed_ips SET leased = 0 WHERE id = ?1", [f.id]).map_err(db)?;
            if f.allocated {
                return Ok(false);
            }
            if let Some(mac) = mac {
                // A late release for an address a new instance already took (nova bug 1249065).
                let vif_owner: Option<String> = tx
                    .query_row(
                        "SELECT instance_uuid FROM vifs WHERE mac = ?1",
                        [mac],
                        |r| r.get(0),
                    )
                    .optional()
                    .map_err(db)?;
                if vif_owner.is_some_and(|o| o != owner) {
                    return Ok(false);
                }
            }
            disassociate_fixed(tx, &f, now)?;
            Ok(true)
        })
    }

    fn disassociate_stale_fixed_ips(&self, now: i64, timeout: i64) -> Result<usize> {
        self.write_touching(|tx, t| {
            let stale: Vec<FixedIp> = {
                let mut st = tx
                    .prepare_cached(&format!(
                        "SELECT {FIXED_COLS} FROM fixed_ips f WHERE f.allocated = 0 AND f.instance_uuid IS NOT NULL AND f.updated_at < ?1"
                    ))
                    .map_err(db)?;
                let rows = st
                    .query_map([now - timeout], fixed_from_row)
                    .map_err(db)?
                    .collect::<rusqlite::Result<Vec<_>>>()
                    .map_err(db)?;
                rows
            };
            for f in &stale {
                touch_dhcp(tx, t, f.network_id, &f.address, f.instance_uuid.as_deref())?;
                disassociate_fixed(tx, f, now)?;
            }
            Ok(stale.len())
        })
    }

    fn bound_addresses(&self, network_ids: &[i64]) -> Result<Vec<BoundAddress>> {
        self.read(|c| {
            let mut st = c
                .prepare_cached(
                    "SELECT f.network_id, f.address, v.mac, v.uuid, f.instance_uuid, i.id, i.data, i.host, f.allocated, f.leased, v.device, \
                       (SELECT group_concat(group_id, ',') FROM instance_security_groups g WHERE g.instance_uuid = f.instance_uuid), \
                       v.id = (SELECT min(w.id) FROM vifs w WHERE w.instance_uuid = v.instance_uuid) \
                     FROM fixed_ips f JOIN vifs v ON v.id = f.vif_id LEFT JOIN instances i ON i.uuid = f.instance_uuid \
                     WHERE f.network_id = ?1 ORDER BY f.address_int",
                )
                .map_err(db)?;
            let mut out = Vec::new();
            for nid in network_ids {
                let rows = st
                    .query_map([nid], |r| {
                        let data: Option<String> = r.get(6)?;
                        Ok((
                            BoundAddress {
                                network_id: r.get(0)?,
                                address: r.get(1)?,
                                mac: r.get(2)?,
                                vif_uuid: r.get(3)?,
                                instance_uuid: r.get(4)?,
                                instance_id: r.get::<_, Option<i64>>(5)?.unwrap_or(0),
                                hostname: String::new(),
                                instance_host: r.get(7)?,
                                allocated: r.get(8)?,
                                leased: r.get(9)?,
                                device: r.get(10)?,
                                groups: r
                                    .get::<_, Option<String>>(11)?
                                    .map(|g| g.split(',').filter_map(|x| x.parse().ok()).collect())
                                    .unwrap_or_default(),
                                default_route: r.get(12)?,
                            },
                            data,
                        ))
                    })
                    .map_err(db)?
                    .collect::<rusqlite::Result<Vec<_>>>()
                    .map_err(db)?;
                for (mut b, data) in rows {
                    if let Some(d) = data {
                        let i: Instance = from_json(&d)?;
                        b.hostname = i.hostname;
                    }
                    out.push(b);
                }
            }
            Ok(out)
        })
    }

    fn create_instance(&self, spec: &InstanceSpec, cfg: &Config) -> Result<Instance> {
        let now = unix_now();
        self.write_touching(|tx, t| {
            let uuid = new_uuid();
            let mut inst = Instance {
                id: 0,
                uuid: uuid.clone(),
                hostname: hostname_for(&spec.name),
                launch_index: 0,
                reservation_id: format!("r-{}", &new_uuid()[..8]),
                created_at: now,
                password: None,
                updated_at: now,
                spec: spec.clone(),
            };
            if inst.spec.security_groups.is_empty() {
                inst.spec.security_groups.push("default".into());
            }
            // The row id is the record's id; the JSON keeps 0 there.
            exec(
                tx,
                "INSERT INTO instances(uuid, name, project_id, host, data) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![uuid, spec.name, spec.project_id, spec.host, to_json(&inst)],
            )
            .map_err(db)?;
            inst.id = tx.last_insert_rowid();
            // Security groups: the named ones of the project (default made on demand).
            for name in &inst.spec.security_groups {
                let found: Option<i64> = qrow(
                    tx,
                    "SELECT id FROM security_groups WHERE project_id = ?1 AND name = ?2",
                    params![spec.project_id, name],
                    |r| r.get(0),
                )
                .optional()
                .map_err(db)?;
                let gid = match found {
                    Some(id) => id,
                    None if name == "default" => ensure_default_group_tx(tx, &spec.project_id)?.id,
                    None => return Err(Error::not_found(format!("security group {name} not found"))),
                };
                exec(
                    tx,
                    "INSERT OR IGNORE INTO instance_security_groups(instance_uuid, group_id) VALUES (?1, ?2)",
                    params![uuid, gid],
                )
                .map_err(db)?;
            }
            let targets: Vec<(Network, Option<String>)> = if spec.networks.is_empty() {
                default_networks(tx, cfg.network_manager, &spec.project_id)?
                    .into_iter()
                    .map(|n| (n, None))
                    .collect()
            } else {
                let mut v = Vec::new();
                for r in &spec.networks {
                    let n = find_network(tx, &r.uuid)?;
                    if !usable_by(&n, &spec.project_id, cfg.network_manager) {
                        return Err(Error::not_found(format!("network {} not found", r.uuid)));
                    }
                    v.push((n, r.fixed_ip.clone()));
                }
                v
            };
            if targets.is_empty() {
                return Err(Error::Exhausted(
                    "no network to put the instance on: create one with network-create".into(),
                ));
            }
            let mut first_fixed = None;
            for (n, requested) in &targets {
                let (vif_id, _, _) = create_vif(tx, n.id, &uuid, cfg.create_unique_mac_address_attempts)?;
                let a = allocate_address(tx, n, requested.as_deref(), &uuid, vif_id, now)?;
                first_fixed.get_or_insert(a);
            }
            if cfg.auto_assign_floating_ip {
                let fixed = first_fixed.expect("at least one network");
                let fl = allocate_floating_tx(tx, &spec.project_id, &cfg.default_floating_pool, -1, true)?;
                associate_floating_tx(tx, &fl.address, &uuid, Some(&fixed), None)?;
            }
            touch_instance(tx, t, &uuid)?;
            Ok(inst)
        })
    }

    fn delete_instance(&self, uuid: &str, _cfg: &Config, now: i64) -> Result<Instance> {
        self.write_touching(|tx, t| {
            let inst = load_instance(tx, uuid)?;
            touch_instance(tx, t, uuid)?;
            let fixed: Vec<FixedIp> = {
                let mut st = tx
                    .prepare_cached(&format!("SELECT {FIXED_COLS} FROM fixed_ips f WHERE f.instance_uuid = ?1"))
                    .map_err(db)?;
                let rows = st
                    .query_map([uuid], fixed_from_row)
                    .map_err(db)?
                    .collect::<rusqlite::Result<Vec<_>>>()
                    .map_err(db)?;
                rows
            };
            // Auto-assigned floating IPs go back to the pool with the instance.
            exec(tx,
                "UPDATE floating_ips SET project_id = NULL, auto_assigned = 0, fixed_ip_id = NULL, host = NULL \
                 WHERE auto_assigned = 1 AND fixed_ip_id IN (SELECT id FROM fixed_ips WHERE instance_uuid = ?1)",
                [uuid],
            )
            .map_err(db)?;
            exec(tx, "DELETE FROM instances WHERE uuid = ?1", [uuid]).map_err(db)?;
            exec(tx, "DELETE FROM instance_security_groups WHERE instance_uuid = ?1", [uuid])
                .map_err(db)?;
            for f in &fixed {
                deallocate_fixed(tx, f, now)?;
            }
            exec(tx,
                "DELETE FROM vifs WHERE instance_uuid = ?1 AND id NOT IN (SELECT vif_id FROM fixed_ips WHERE vif_id IS NOT NULL)",
                [uuid],
            )
            .map_err(db)?;
            Ok(inst)
        })
    }

    fn instance(&self, uuid: &str) -> Result<Instance> {
        self.read(|c| load_instance(c, uuid))
    }

    fn instances(&self, project_id: Option<&str>) -> Result<Vec<Instance>> {
        self.read(|c| {
            let mut st = c
                .prepare_cached("SELECT id, data FROM instances WHERE ?1 IS NULL OR project_id = ?1 ORDER BY id")
                .map_err(db)?;
            let rows = st
                .query_map([project_id], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))
                .map_err(db)?
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(db)?;
            rows.into_iter()
                .map(|(id, d)| {
                    let mut i: Instance = from_json(&d)?;
                    i.id = id;
                    Ok(i)
                })
                .collect()
        })
    }

    fn instance_addresses(&self, uuid: &str) -> Result<Vec<InstanceAddress>> {
        self.read(|c| instance_addresses_tx(c, uuid))
    }

    fn instance_by_fixed_ip(&self, address: &str) -> Result<Option<Instance>> {
        self.read(|c| {
            let uuid: Option<String> = c
                .query_row(
                    "SELECT instance_uuid FROM fixed_ips WHERE address = ?1 AND allocated = 1",
                    [address],
                    |r| r.get(0),
                )
                .optional()
                .map_err(db)?
                .flatten();
            uuid.map(|u| load_instance(c, &u)).transpose()
        })
    }

    fn add_fixed_ip(&self, uuid: &str, network_key: &str, cfg: &Config) -> Result<InstanceAddress> {
        let now = unix_now();
        self.write_touching(|tx, t| {
            let inst = load_instance(tx, uuid)?;
            let n = find_network(tx, network_key)?;
            if !usable_by(&n, &inst.spec.project_id, cfg.network_manager) {
                return Err(Error::not_found(format!("network {network_key} not found")));
            }
            let (vif_id, _, _) =
                create_vif(tx, n.id, uuid, cfg.create_unique_mac_address_attempts)?;
            let a = allocate_address(tx, &n, None, uuid, vif_id, now)?;
            touch_instance(tx, t, uuid)?;
            instance_addresses_tx(tx, uuid)?
                .into_iter()
                .find(|x| x.address == a)
                .ok_or_else(|| Error::Store("new address vanished".into()))
        })
    }

    fn remove_fixed_ip(&self, uuid: &str, address: &str, now: i64) -> Result<()> {
        self.write_touching(|tx, t| {
            let f = get_fixed(tx, address)?;
            if f.instance_uuid.as_deref() != Some(uuid) || !f.allocated {
                return Err(Error::invalid(
                    "address",
                    format!("fixed IP {address} is not assigned to instance {uuid}"),
                ));
            }
            touch_instance(tx, t, uuid)?;
            deallocate_fixed(tx, &f, now)
        })
    }

    fn update_instance(&self, uuid: &str, u: &InstanceUpdate, now: i64) -> Result<Instance> {
        // Metadata reaches guests (the metadata service checks the generation): bump it.
        self.write(|tx| {
            let mut inst = load_instance(tx, uuid)?;
            if let Some(n) = &u.name {
                inst.spec.name = n.clone();
            }
            if let Some(v) = &u.access_ip_v4 {
                inst.spec.access_ip_v4 = v.clone();
            }
            if let Some(v) = &u.access_ip_v6 {
                inst.spec.access_ip_v6 = v.clone();
            }
            if let Some(v) = &u.description {
                inst.spec.description = v.clone();
            }
            if let Some(m) = &u.metadata {
                inst.spec.metadata = m.clone();
            }
            if let Some(t) = &u.tags {
                inst.spec.tags = t.clone();
            }
            inst.updated_at = now;
            let id = inst.id;
            let mut stored = inst.clone();
            stored.id = 0;
            exec(
                tx,
                "UPDATE instances SET name = ?2, data = ?3 WHERE id = ?1",
                params![id, stored.spec.name, to_json(&stored)],
            )
            .map_err(db)?;
            Ok(inst)
        })
    }

    fn set_instance_password(&self, uuid: &str, password: &str) -> Result<bool> {
        self.write(|tx| {
            let mut inst = load_instance(tx, uuid)?;
            if inst.password.as_deref().is_some_and(|p| !p.is_empty()) {
                return Ok(false);
            }
            inst.password = Some(password.to_string());
            let id = inst.id;
            inst.id = 0;
            exec(
                tx,
                "UPDATE instances SET data = ?2 WHERE id = ?1",
                params![id, to_json(&inst)],
            )
            .map_err(db)?;
            Ok(true)
        })
    }

    fn create_floating_ips(
        &self,
        pool: &str,
        interface: &str,
        addresses: &[Ipv4Addr],
    ) -> Result<usize> {
        if pool.is_empty() || pool.len() > 255 {
            return Err(Error::invalid("pool", "must be 1 to 255 characters"));
        }
        if interface.len() > 255 {
            return Err(Error::invalid(
                "interface",
                "must be at most 255 characters",
            ));
        }
        self.write(|tx| {
            let nets = load_networks(tx, "", &[])?;
            let mut ins = tx
                .prepare_cached(
                    "INSERT INTO floating_ips(address, address_int, pool, interface) VALUES (?1, ?2, ?3, ?4)",
                )
                .map_err(db)?;
            for a in addresses {
                if let Some(n) = nets.iter().find(|n| n.cidr_v4().is_some_and(|c| c.contains(*a))) {
                    return Err(Error::conflict(format!(
                        "floating IP {a} is inside fixed network {} ({})",
                        n.label,
                        n.cidr.as_deref().unwrap_or("")
                    )));
                }
                ins.execute(params![a.to_string(), i64::from(u32::from(*a)), pool, interface])
                    .map_err(|e| {
                        if is_unique_violation(&e) {
                            Error::conflict(format!("floating IP {a} already exists"))
                        } else {
                            db(e)
                        }
                    })?;
            }
            Ok(addresses.len())
        })
    }

    fn delete_floating_ips(&self, addresses: &[Ipv4Addr]) -> Result<usize> {
        self.write(|tx| {
            let mut n = 0;
            for a in addresses {
                let fl = get_floating(tx, &a.to_string())?;
                if fl.fixed_ip.is_some() {
                    return Err(Error::conflict(format!(
                        "floating IP {a} is associated with {}; disassociate it first",
                        fl.fixed_ip.unwrap_or_default()
                    )));
                }
                n += tx
                    .execute("DELETE FROM floating_ips WHERE id = ?1", [fl.id])
                    .map_err(db)?;
            }
            Ok(n)
        })
    }

    fn floating_ips(&self, project_id: Option<&str>) -> Result<Vec<FloatingIp>> {
        self.read(|c| {
            let mut st = c
                .prepare_cached(&format!(
                    "{FLOATING_SELECT} WHERE ?1 IS NULL OR fl.project_id = ?1 ORDER BY fl.address_int"
                ))
                .map_err(db)?;
            let rows = st
                .query_map([project_id], floating_from_row)
                .map_err(db)?
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(db)?;
            Ok(rows)
        })
    }

    fn floating_ip(&self, key: &str) -> Result<FloatingIp> {
        self.read(|c| get_floating(c, key))
    }

    fn floating_pools(&self) -> Result<Vec<String>> {
        self.read(|c| {
            let mut st = c
                .prepare_cached("SELECT DISTINCT pool FROM floating_ips ORDER BY pool")
                .map_err(db)?;
            let rows = st
                .query_map([], |r| r.get(0))
                .map_err(db)?
                .collect::<rusqlite::Result<Vec<String>>>()
                .map_err(db)?;
            Ok(rows)
        })
    }

    fn allocate_floating_ip(&self, project_id: &str, pool: &str, quota: i64) -> Result<FloatingIp> {
        self.write(|tx| allocate_floating_tx(tx, project_id, pool, quota, false))
    }

    fn release_floating_ip(&self, address: &str, project_id: Option<&str>) -> Result<()> {
        self.write_touching(|tx, t| {
            let fl = get_floating(tx, address)?;
            t.floating(&fl);
            if fl.project_id.is_none() {
                return Err(Error::not_found(format!("floating IP {address} is not allocated")));
            }
            check_owner(fl.project_id.as_deref(), project_id, &format!("floating IP {address}"))?;
            exec(tx,
                "UPDATE floating_ips SET project_id = NULL, fixed_ip_id = NULL, host = NULL, auto_assigned = 0 WHERE id = ?1",
                [fl.id],
            )
            .map_err(db)?;
            Ok(())
        })
    }

    fn associate_floating_ip(
        &self,
        address: &str,
        instance_uuid: &str,
        fixed_address: Option<&str>,
        project_id: Option<&str>,
    ) -> Result<FloatingIp> {
        self.write_touching(|tx, t| {
            t.floating(&get_floating(tx, address)?);
            let fl = associate_floating_tx(tx, address, instance_uuid, fixed_address, project_id)?;
            t.floating(&fl);
            Ok(fl)
        })
    }

    fn disassociate_floating_ip(
        &self,
        address: &str,
        instance_uuid: Option<&str>,
        project_id: Option<&str>,
    ) -> Result<()> {
        self.write_touching(|tx, t| {
            let fl = get_floating(tx, address)?;
            t.floating(&fl);
            check_owner(
                fl.project_id.as_deref(),
                project_id,
                &format!("floating IP {address}"),
            )?;
            // nova answers 409 here, which clients take as "already done".
            if fl.fixed_ip.is_none() {
                return Err(Error::conflict(format!(
                    "floating IP {address} is not associated"
                )));
            }
            if let Some(u) = instance_uuid {
                if fl.instance_uuid.as_deref() != Some(u) {
                    return Err(Error::conflict(format!(
                        "floating IP {address} is not associated with instance {u}"
                    )));
                }
            }
            exec(
                tx,
                "UPDATE floating_ips SET fixed_ip_id = NULL, host = NULL WHERE id = ?1",
                [fl.id],
            )
            .map_err(db)?;
            Ok(())
        })
    }

    fn security_groups(&self, project_id: Option<&str>) -> Result<Vec<SecurityGroup>> {
        self.read(|c| load_groups(c, "WHERE ?1 IS NULL OR project_id = ?1", &[&project_id]))
    }

    fn security_group(&self, id: i64) -> Result<SecurityGroup> {
        self.read(|c| {
            load_groups(c, "WHERE id = ?1", &[&id])?
                .into_iter()
                .next()
                .ok_or_else(|| Error::not_found(format!("security group {id} not found")))
        })
    }

    fn ensure_default_group(&self, project_id: &str) -> Result<SecurityGroup> {
        if let Some(g) = self
            .read(|c| {
                load_groups(
                    c,
                    "WHERE project_id = ?1 AND name = 'default'",
                    &[&project_id],
                )
            })?
            .into_iter()
            .next()
        {
            return Ok(g);
        }
        self.write(|tx| ensure_default_group_tx(tx, project_id))
    }

    fn create_security_group(
        &self,
        project_id: &str,
        name: &str,
        description: &str,
        quota: i64,
    ) -> Result<SecurityGroup> {
        self.write(|tx| {
            ensure_default_group_tx(tx, project_id)?;
            let count: i64 = tx
                .query_row("SELECT count(*) FROM security_groups WHERE project_id = ?1", [project_id], |r| r.get(0))
                .map_err(db)?;
            if quota >= 0 && count >= quota {
                return Err(Error::OverLimit(format!(
                    "quota exceeded: project {project_id} already has {count} security groups (quota_security_groups = {quota})"
                )));
            }
            exec(tx,
                "INSERT INTO security_groups(project_id, name, description) VALUES (?1, ?2, ?3)",
                params![project_id, name, description],
            )
            .map_err(|e| {
                if is_unique_violation(&e) {
                    Error::invalid("name", format!("security group {name} already exists"))
                } else {
                    db(e)
                }
            })?;
            let id = tx.last_insert_rowid();
            Ok(load_groups(tx, "WHERE id = ?1", &[&id])?.remove(0))
        })
    }

    fn update_security_group(
        &self,
        id: i64,
        name: &str,
        description: &str,
    ) -> Result<SecurityGroup> {
        // A name or a description changes no rule a host renders: no generation bump.
        self.write_raw(|tx| {
            let n = tx
                .execute(
                    "UPDATE security_groups SET name = ?1, description = ?2 WHERE id = ?3",
                    params![name, description, id],
                )
                .map_err(|e| {
                    if is_unique_violation(&e) {
                        Error::conflict(format!("security group {name} already exists"))
                    } else {
                        db(e)
                    }
                })?;
            if n == 0 {
                return Err(Error::not_found(format!("security group {id} not found")));
            }
            Ok(load_groups(tx, "WHERE id = ?1", &[&id])?.remove(0))
        })
    }

    fn delete_security_group(&self, id: i64) -> Result<()> {
        self.write_touching(|tx, t| {
            let g = load_groups(tx, "WHERE id = ?1", &[&id])?
                .into_iter()
                .next()
                .ok_or_else(|| Error::not_found(format!("security group {id} not found")))?;
            if g.name == "default" {
                return Err(Error::invalid(
                    "security_group",
                    "unable to delete system group 'default'",
                ));
            }
            let used: i64 = tx
                .query_row(
                    "SELECT count(*) FROM instance_security_groups WHERE group_id = ?1",
                    [id],
                    |r| r.get(0),
                )
                .map_err(db)?;
            if used > 0 {
                return Err(Error::invalid(
                    "security_group",
                    format!("security group {} is still in use", g.name),
                ));
            }
            // Unused, so only the groups whose rules name it as their source change.
            touch_referrers(tx, t, id)?;
            exec(
                tx,
                "DELETE FROM security_group_rules WHERE parent_group_id = ?1 OR group_id = ?1",
                [id],
            )
            .map_err(db)?;
            exec(tx, "DELETE FROM security_groups WHERE id = ?1", [id]).map_err(db)?;
            Ok(())
        })
    }

    fn add_security_group_rule(
        &self,
        group_id: i64,
        rule: &NewRule,
        quota: i64,
    ) -> Result<SecurityGroupRule> {
        self.write_touching(|tx, t| {
            touch_members(tx, t, group_id)?;
            let g = load_groups(tx, "WHERE id = ?1", &[&group_id])?
                .into_iter()
                .next()
                .ok_or_else(|| Error::not_found(format!("security group {group_id} not found")))?;
            if quota >= 0 && g.rules.len() as i64 >= quota {
                return Err(Error::OverLimit(format!(
                    "quota exceeded: group {} already has {} rules (quota_security_group_rules = {quota})",
                    g.name,
                    g.rules.len()
                )));
            }
            let dup = g.rules.iter().any(|r| {
                r.protocol == rule.protocol
                    && r.from_port == rule.from_port
                    && r.to_port == rule.to_port
                    && r.cidr == rule.cidr
                    && r.group_id == rule.group_id
            });
            if dup {
                return Err(Error::invalid("security_group_rule", "this rule already exists in the group"));
            }
            exec(tx,
                "INSERT INTO security_group_rules(parent_group_id, protocol, from_port, to_port, cidr, group_id) VALUES (?1,?2,?3,?4,?5,?6)",
                params![group_id, rule.protocol, rule.from_port, rule.to_port, rule.cidr, rule.group_id],
            )
            .map_err(db)?;
            let id = tx.last_insert_rowid();
            Ok(rules_of(tx, group_id)?.into_iter().find(|r| r.id == id).expect("just inserted"))
        })
    }

    fn delete_security_group_rule(&self, id: i64) -> Result<SecurityGroupRule> {
        self.write_touching(|tx, t| {
            let parent: i64 = tx
                .query_row(
                    "SELECT parent_group_id FROM security_group_rules WHERE id = ?1",
                    [id],
                    |r| r.get(0),
                )
                .optional()
                .map_err(db)?
                .ok_or_else(|| Error::not_found(format!("security group rule {id} not found")))?;
            let rule = rules_of(tx, parent)?
                .into_iter()
                .find(|r| r.id == id)
                .expect("exists");
            touch_members(tx, t, parent)?;
            exec(tx, "DELETE FROM security_group_rules WHERE id = ?1", [id]).map_err(db)?;
            Ok(rule)
        })
    }

    fn default_rules(&self) -> Result<Vec<SecurityGroupRule>> {
        self.admin_rules(AdminRules::Default)
    }

    fn add_default_rule(&self, rule: &NewRule) -> Result<SecurityGroupRule> {
        self.add_admin_rule(AdminRules::Default, rule)
    }

    fn delete_default_rule(&self, id: i64) -> Result<()> {
        self.delete_admin_rule(AdminRules::Default, id)
    }

    fn provider_rules(&self) -> Result<Vec<SecurityGroupRule>> {
        self.admin_rules(AdminRules::Provider)
    }

    fn add_provider_rule(&self, rule: &NewRule) -> Result<SecurityGroupRule> {
        self.add_admin_rule(AdminRules::Provider, rule)
    }

    fn delete_provider_rule(&self, id: i64) -> Result<()> {
        self.delete_admin_rule(AdminRules::Provider, id)
    }

    fn security_group_memberships(&self) -> Result<Vec<(String, i64)>> {
        self.read(|c| {
            let mut st = c
                .prepare_cached("SELECT instance_uuid, group_id FROM instance_security_groups ORDER BY group_id, instance_uuid")
                .map_err(db)?;
            let rows = st
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
                .map_err(db)?
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(db)?;
            Ok(rows)
        })
    }

    fn set_vif_device(&self, vif_uuid: &str, device: &str) -> Result<()> {
        if device.is_empty() || device.len() > 15 || device.contains(['/', ' ']) {
            return Err(Error::invalid(
                "device",
                format!("{device:?} is not an interface name"),
            ));
        }
        self.write_touching(|tx, t| {
            let owner: Option<(String, String)> = qrow(
                tx,
                "SELECT i.host, i.uuid FROM vifs v JOIN instances i ON i.uuid = v.instance_uuid \
                 WHERE v.uuid = ?1 AND i.host IS NOT NULL",
                [vif_uuid],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(db)?;
            if let Some((h, u)) = owner {
                t.instance(Some(&h), &u, &[]);
            }
            let n = exec(
                tx,
                "UPDATE vifs SET device = ?2 WHERE uuid = ?1",
                params![vif_uuid, device],
            )
            .map_err(db)?;
            if n == 0 {
                return Err(Error::not_found(format!(
                    "virtual interface {vif_uuid} not found"
                )));
            }
            Ok(())
        })
    }

    fn instance_security_groups(&self, uuid: &str) -> Result<Vec<SecurityGroup>> {
        self.read(|c| {
            load_groups(
                c,
                "WHERE id IN (SELECT group_id FROM instance_security_groups WHERE instance_uuid = ?1)",
                &[&uuid],
            )
        })
    }

    fn add_instance_security_group(&self, uuid: &str, group_id: i64) -> Result<()> {
        self.write_touching(|tx, t| {
            load_instance(tx, uuid)?;
            t.instance(instance_host(tx, uuid)?.as_deref(), uuid, &[]);
            touch_referrers(tx, t, group_id)?;
            exec(tx,
                "INSERT OR IGNORE INTO instance_security_groups(instance_uuid, group_id) VALUES (?1, ?2)",
                params![uuid, group_id],
            )
            .map_err(db)?;
            Ok(())
        })
    }

    fn remove_instance_security_group(&self, uuid: &str, group_id: i64) -> Result<()> {
        self.write_touching(|tx, t| {
            t.instance(instance_host(tx, uuid)?.as_deref(), uuid, &[]);
            touch_referrers(tx, t, group_id)?;
            let n = tx
                .execute(
                    "DELETE FROM instance_security_groups WHERE instance_uuid = ?1 AND group_id = ?2",
                    params![uuid, group_id],
                )
                .map_err(db)?;
            if n == 0 {
                return Err(Error::invalid("security_group", "the instance is not in that security group"));
            }
            Ok(())
        })
    }

    fn scrub_project(&self, project_id: &str) -> Result<ScrubReport> {
        self.write_touching(|tx, t| {
            // Rare and wide (networks lose their host, groups their members): every host.
            t.all = true;
            let nets = load_networks(tx, "WHERE project_id = ?1", &[&project_id])?;
            for mut n in nets.clone() {
                n.project_id = None;
                n.host = None;
                save_network(tx, &n)?;
            }
            let groups: Vec<i64> = load_groups(tx, "WHERE project_id = ?1", &[&project_id])?
                .into_iter()
                .map(|g| g.id)
                .collect();
            for g in &groups {
                exec(
                    tx,
                    "DELETE FROM security_group_rules WHERE parent_group_id = ?1 OR group_id = ?1",
                    [g],
                )
                .map_err(db)?;
                exec(
                    tx,
                    "DELETE FROM instance_security_groups WHERE group_id = ?1",
                    [g],
                )
                .map_err(db)?;
                exec(tx, "DELETE FROM security_groups WHERE id = ?1", [g]).map_err(db)?;
            }
            Ok(ScrubReport {
                networks: nets.len(),
                security_groups: groups.len(),
            })
        })
    }

    fn create_project(&self, name: &str) -> Result<Project> {
        check_identity_name("project", name)?;
        self.write(|tx| {
            let id = uuid::Uuid::new_v4().simple().to_string();
            exec(
                tx,
                "INSERT INTO projects(id, name) VALUES (?1, ?2)",
                [&id, name],
            )
            .map_err(|e| {
                if is_unique_violation(&e) {
                    Error::conflict(format!("project {name} already exists"))
                } else {
                    db(e)
                }
            })?;
            Ok(Project {
                id,
                name: name.into(),
            })
        })
    }

    fn project(&self, key: &str) -> Result<Project> {
        self.read(|c| find_project(c, key))
    }

    fn projects(&self) -> Result<Vec<Project>> {
        let rows = self.read(|c| id_name_rows(c, "SELECT id, name FROM projects ORDER BY name"))?;
        Ok(rows
            .into_iter()
            .map(|(id, name)| Project { id, name })
            .collect())
    }

    fn create_user(&self, name: &str, password: &str) -> Result<User> {
        check_identity_name("user", name)?;
        if password.is_empty() {
            return Err(Error::invalid("password", "must not be empty"));
        }
        let hash = hash_password(password)?;
        self.write(|tx| {
            let id = uuid::Uuid::new_v4().simple().to_string();
            exec(
                tx,
                "INSERT INTO users(id, name, password_hash, salt) VALUES (?1, ?2, ?3, '')",
                params![id, name, hash],
            )
            .map_err(|e| {
                if is_unique_violation(&e) {
                    Error::conflict(format!("user {name} already exists"))
                } else {
                    db(e)
                }
            })?;
            Ok(User {
                id,
                name: name.into(),
            })
        })
    }

    fn user(&self, name: &str) -> Result<User> {
        self.read(|c| {
            qrow(
                c,
                "SELECT id, name FROM users WHERE name = ?1 OR id = ?1",
                [name],
                |r| {
                    Ok(User {
                        id: r.get(0)?,
                        name: r.get(1)?,
                    })
                },
            )
            .optional()
            .map_err(db)?
            .ok_or_else(|| Error::not_found(format!("user {name} not found")))
        })
    }

    fn assign_role(&self, user_id: &str, project_id: &str, role: &str) -> Result<()> {
        if !matches!(role, "admin" | "member" | "reader") {
            return Err(Error::invalid(
                "role",
                format!("{role:?} is not one of admin, member, reader"),
            ));
        }
        self.write(|tx| {
            exec(tx,
                "INSERT OR IGNORE INTO role_assignments(user_id, project_id, role) VALUES (?1, ?2, ?3)",
                [user_id, project_id, role],
            )
            .map_err(db)?;
            Ok(())
        })
    }

    fn users(&self) -> Result<Vec<User>> {
        let rows = self.read(|c| id_name_rows(c, "SELECT id, name FROM users ORDER BY name"))?;
        Ok(rows
            .into_iter()
            .map(|(id, name)| User { id, name })
            .collect())
    }

    fn rename_project(&self, id: &str, name: &str) -> Result<Project> {
        check_identity_name("project", name)?;
        self.write_raw(|tx| {
            let n = tx
                .execute("UPDATE projects SET name = ?1 WHERE id = ?2", [name, id])
                .map_err(|e| {
                    if is_unique_violation(&e) {
                        Error::conflict(format!("project {name} already exists"))
                    } else {
                        db(e)
                    }
                })?;
            if n == 0 {
                return Err(Error::not_found(format!("project {id} not found")));
            }
            find_project(tx, id)
        })
    }

    fn delete_project(&self, id: &str) -> Result<()> {
        self.write_raw(|tx| {
            let n = tx
                .execute("DELETE FROM projects WHERE id = ?1", [id])
                .map_err(db)?;
            if n == 0 {
                return Err(Error::not_found(format!("project {id} not found")));
            }
            exec(
                tx,
                "DELETE FROM role_assignments WHERE project_id = ?1",
                [id],
            )
            .map_err(db)?;
            exec(tx, "DELETE FROM tokens WHERE project_id = ?1", [id]).map_err(db)?;
            Ok(())
        })
    }

    fn update_user(&self, id: &str, name: Option<&str>, password: Option<&str>) -> Result<User> {
        if let Some(n) = name {
            check_identity_name("user", n)?;
        }
        if password.is_some_and(str::is_empty) {
            return Err(Error::invalid("password", "must not be empty"));
        }
        let hash = password.map(hash_password).transpose()?;
        self.write_raw(|tx| {
            let exists: Option<String> = tx
                .query_row("SELECT id FROM users WHERE id = ?1", [id], |r| r.get(0))
                .optional()
                .map_err(db)?;
            if exists.is_none() {
                return Err(Error::not_found(format!("user {id} not found")));
            }
            if let Some(n) = name {
                tx.execute("UPDATE users SET name = ?1 WHERE id = ?2", [n, id])
                    .map_err(|e| {
                        if is_unique_violation(&e) {
                            Error::conflict(format!("user {n} already exists"))
                        } else {
                            db(e)
                        }
                    })?;
            }
            if let Some(h) = &hash {
                exec(
                    tx,
                    "UPDATE users SET password_hash = ?1, salt = '' WHERE id = ?2",
                    [h.as_str(), id],
                )
                .map_err(db)?;
                exec(tx, "DELETE FROM tokens WHERE user_id = ?1", [id]).map_err(db)?;
            }
            tx.query_row("SELECT id, name FROM users WHERE id = ?1", [id], |r| {
                Ok(User {
                    id: r.get(0)?,
                    name: r.get(1)?,
                })
            })
            .map_err(db)
        })
    }

    fn delete_user(&self, id: &str) -> Result<()> {
        self.write_raw(|tx| {
            let n = tx
                .execute("DELETE FROM users WHERE id = ?1", [id])
                .map_err(db)?;
            if n == 0 {
                return Err(Error::not_found(format!("user {id} not found")));
            }
            for t in ["role_assignments", "tokens", "keypairs"] {
                exec(tx, &format!("DELETE FROM {t} WHERE user_id = ?1"), [id]).map_err(db)?;
            }
            Ok(())
        })
    }

    fn role_assignments(
        &self,
        user_id: Option<&str>,
        project_id: Option<&str>,
    ) -> Result<Vec<(String, String, String)>> {
        self.read(|c| {
            let mut st = c
                .prepare_cached(
                    "SELECT user_id, project_id, role FROM role_assignments \
                     WHERE (?1 IS NULL OR user_id = ?1) AND (?2 IS NULL OR project_id = ?2) \
                     ORDER BY user_id, project_id, role",
                )
                .map_err(db)?;
            let rows = st
                .query_map(params![user_id, project_id], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                })
                .map_err(db)?
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(db)?;
            Ok(rows)
        })
    }

    fn remove_role(&self, user_id: &str, project_id: &str, role: &str) -> Result<()> {
        self.write_raw(|tx| {
            let n = tx
                .execute(
                    "DELETE FROM role_assignments WHERE user_id = ?1 AND project_id = ?2 AND role = ?3",
                    [user_id, project_id, role],
                )
                .map_err(db)?;
            if n == 0 {
                return Err(Error::not_found(format!(
                    "the user has no role {role} on that project"
                )));
            }
            Ok(())
        })
    }

    fn issue_token(
        &self,
        user: &str,
        password: &str,
        project: &str,
        now: i64,
        ttl: i64,
    ) -> Result<Token> {
        let unauthorized =
            || Error::Forbidden("the request you have made requires authentication".into());
        // The hash is checked outside any lock: it is slow on purpose.
        let row: Option<(String, String, String, String)> = self.read(|c| {
            c.query_row(
                "SELECT id, name, password_hash, salt FROM users WHERE name = ?1 OR id = ?1",
                [user],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .optional()
            .map_err(db)
        })?;
        let Some((uid, uname, hash, salt)) = row else {
            // As slow as a wrong password, so that timing does not tell which users exist.
            let _ = verify_password(dummy_hash(), "", password);
            return Err(unauthorized());
        };
        let (ok, legacy) = verify_password(&hash, &salt, password);
        if !ok {
            return Err(unauthorized());
        }
        let upgraded = if legacy {
            Some(hash_password(password)?)
        } else {
            None
        };
        // Tokens are not state agents render: issuing one does not bump the generation.
        self.write_raw(|tx| {
            if let Some(h) = &upgraded {
                exec(
                    tx,
                    "UPDATE users SET password_hash = ?1, salt = '' WHERE id = ?2 AND password_hash = ?3",
                    params![h, uid, hash],
                )
                .map_err(db)?;
            }
            let p = find_project(tx, project).map_err(|_| unauthorized())?;
            let roles = roles_of(tx, &uid, &p.id)?;
            if roles.is_empty() {
                return Err(unauthorized());
            }
            // Expired tokens are dropped as new ones are made.
            exec(tx, "DELETE FROM tokens WHERE expires_at < ?1", [now]).map_err(db)?;
            let id = format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple());
            exec(tx,
                "INSERT INTO tokens(id, user_id, project_id, issued_at, expires_at) VALUES (?1,?2,?3,?4,?5)",
                params![id, uid, p.id, now, now + ttl],
            )
            .map_err(db)?;
            Ok(Token {
                id,
                user: User { id: uid, name: uname },
                project: p,
                roles,
                issued_at: now,
                expires_at: now + ttl,
            })
        })
    }

    fn token(&self, id: &str, now: i64) -> Result<Token> {
        self.read(|c| {
            let row: Option<(String, String, i64, i64)> = c
                .query_row(
                    "SELECT user_id, project_id, issued_at, expires_at FROM tokens WHERE id = ?1",
                    [id],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
                )
                .optional()
                .map_err(db)?;
            let (uid, pid, issued_at, expires_at) = row.ok_or_else(|| {
                Error::not_found("the token is unknown or was revoked".to_string())
            })?;
            if expires_at <= now {
                return Err(Error::not_found("the token has expired".to_string()));
            }
            let user: User = c
                .query_row("SELECT id, name FROM users WHERE id = ?1", [&uid], |r| {
                    Ok(User {
                        id: r.get(0)?,
                        name: r.get(1)?,
                    })
                })
                .map_err(db)?;
            let project = find_project(c, &pid)?;
            // Roles are read now, not when the token was issued: a removed role takes
            // effect on live tokens at once, and a token with no role left is no token.
            let roles = roles_of(c, &uid, &pid)?;
            if roles.is_empty() {
                return Err(Error::not_found(
                    "the token's user no longer has a role on its project".to_string(),
                ));
            }
            Ok(Token {
                id: id.into(),
                user,
                project,
                roles,
                issued_at,
                expires_at,
            })
        })
    }

    fn revoke_token(&self, id: &str) -> Result<()> {
        self.write_raw(|tx| {
            let n = tx
                .execute("DELETE FROM tokens WHERE id = ?1", [id])
                .map_err(db)?;
            if n == 0 {
                return Err(Error::not_found(
                    "the token is unknown or was revoked".to_string(),
                ));
            }
            Ok(())
        })
    }

    fn create_keypair(&self, kp: &Keypair) -> Result<()> {
        self.write(|tx| {
            exec(
                tx,
                "INSERT INTO keypairs(user_id, name, public_key, fingerprint, type, created_at) VALUES (?1,?2,?3,?4,?5,?6)",
                params![kp.user_id, kp.name, kp.public_key, kp.fingerprint, kp.kind, kp.created_at],
            )
            .map_err(|e| {
                if is_unique_violation(&e) {
                    Error::conflict(format!("key pair {} already exists", kp.name))
                } else {
                    db(e)
                }
            })?;
            Ok(())
        })
    }

    fn keypairs(&self, user_id: &str) -> Result<Vec<Keypair>> {
        self.read(|c| {
            let mut st = c
                .prepare_cached("SELECT name, user_id, public_key, fingerprint, type, created_at, rowid FROM keypairs WHERE user_id = ?1 ORDER BY name")
                .map_err(db)?;
            let rows = st
                .query_map([user_id], |r| {
                    Ok(Keypair {
                        name: r.get(0)?,
                        user_id: r.get(1)?,
                        public_key: r.get(2)?,
                        fingerprint: r.get(3)?,
                        kind: r.get(4)?,
                        created_at: r.get(5)?,
                        id: r.get(6)?,
                    })
                })
                .map_err(db)?
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(db)?;
            Ok(rows)
        })
    }

    fn keypair(&self, user_id: &str, name: &str) -> Result<Keypair> {
        self.keypairs(user_id)?
            .into_iter()
            .find(|k| k.name == name)
            .ok_or_else(|| Error::not_found(format!("key pair {name} not found")))
    }

    fn delete_keypair(&self, user_id: &str, name: &str) -> Result<()> {
        self.write(|tx| {
            let n = tx
                .execute(
                    "DELETE FROM keypairs WHERE user_id = ?1 AND name = ?2",
                    [user_id, name],
                )
                .map_err(db)?;
            if n == 0 {
                return Err(Error::not_found(format!("key pair {name} not found")));
            }
            Ok(())
        })
    }

    fn report_service(&self, r: &ServiceReport, now: i64) -> Result<()> {
        let networks = to_json(&r.networks);
        let options = to_json(&r.options);
        let touched = self.write_raw(|tx| {
            let before: Option<String> = tx
                .query_row(
                    "SELECT options FROM services WHERE host = ?1",
                    [&r.host],
                    |row| row.get(0),
                )
                .optional()
                .map_err(db)?;
            exec(tx,
                "INSERT INTO services(host, network_host, last_seen, networks, options) VALUES (?1, ?2, ?3, ?4, ?5) \
                 ON CONFLICT(host) DO UPDATE SET network_host = excluded.network_host, last_seen = excluded.last_seen, \
                 networks = excluded.networks, options = excluded.options",
                params![r.host, r.network_host, now, networks, options],
            )
            .map_err(db)?;
            // Heartbeats do not bump the generation, unless the host's own options changed
            // (or are heard of first): then its plan did.
            if before.as_deref() == Some(options.as_str()) {
                return Ok(None);
            }
            let generation = bump_generation(tx)?;
            let t = Touched {
                hosts: BTreeSet::from([r.host.clone()]),
                ..Touched::default()
            };
            record_touched(tx, generation, &t)?;
            Ok(Some(generation))
        })?;
        if let Some(g) = touched {
            self.run_hooks(g);
        }
        Ok(())
    }

    fn quota_overrides(&self, project_id: &str) -> Result<Vec<(String, i64)>> {
        self.read(|c| {
            let mut st = c
                .prepare_cached("SELECT resource, hard_limit FROM quotas WHERE project_id = ?1 ORDER BY resource")
                .map_err(db)?;
            let rows = st
                .query_map([project_id], |r| Ok((r.get(0)?, r.get(1)?)))
                .map_err(db)?
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(db)?;
            Ok(rows)
        })
    }

    fn set_quota(&self, project_id: &str, resource: &str, limit: i64) -> Result<()> {
        // Limits are checked when something is made, not rendered: no generation bump.
        self.write_raw(|tx| {
            exec(
                tx,
                "INSERT INTO quotas(project_id, resource, hard_limit) VALUES (?1, ?2, ?3) \
                 ON CONFLICT(project_id, resource) DO UPDATE SET hard_limit = excluded.hard_limit",
                params![project_id, resource, limit],
            )
            .map_err(db)?;
            Ok(())
        })
    }

    fn delete_quotas(&self, project_id: &str) -> Result<()> {
        self.write_raw(|tx| {
            exec(tx, "DELETE FROM quotas WHERE project_id = ?1", [project_id]).map_err(db)?;
            Ok(())
        })
    }

    fn services(&self) -> Result<Vec<Service>> {
        self.read(|c| {
            let mut st = c
                .prepare_cached(
                    "SELECT host, network_host, last_seen, networks, options FROM services ORDER BY host",
                )
                .map_err(db)?;
            let rows = st
                .query_map([], |r| {
                    let networks: String = r.get(3)?;
                    let options: String = r.get(4)?;
                    Ok(Service {
                        host: r.get(0)?,
                        network_host: r.get(1)?,
                        last_seen: r.get(2)?,
                        networks: serde_json::from_str(&networks).unwrap_or_default(),
                        options: serde_json::from_str(&options).unwrap_or_default(),
                    })
                })
                .map_err(db)?
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(db)?;
            Ok(rows)
        })
    }
}

fn fixed_info(c: &Connection, f: FixedIp) -> Result<FixedIpInfo> {
    let (cidr, label): (Option<String>, String) = c
        .query_row(
            "SELECT cidr, label FROM networks WHERE id = ?1",
            [f.network_id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .map_err(db)?;
    let inst = match &f.instance_uuid {
        Some(u) => load_instance(c, u).ok(),
        None => None,
    };
    Ok(FixedIpInfo {
        network_cidr: cidr.unwrap_or_default(),
        network_label: label,
        hostname: inst.as_ref().map(|i| i.hostname.clone()),
        instance_host: inst.and_then(|i| i.spec.host),
        fixed: f,
    })
}

fn allocate_floating_tx(
    tx: &Transaction,
    project_id: &str,
    pool: &str,
    quota: i64,
    auto: bool,
) -> Result<FloatingIp> {
    let pool_exists: bool = tx
        .query_row(
            "SELECT EXISTS(SELECT 1 FROM floating_ips WHERE pool = ?1)",
            [pool],
            |r| r.get(0),
        )
        .map_err(db)?;
    if !pool_exists {
        return Err(Error::not_found(format!(
            "floating IP pool {pool} not found"
        )));
    }
    if quota >= 0 {
        let used: i64 = tx
            .query_row(
                "SELECT count(*) FROM floating_ips WHERE project_id = ?1 AND auto_assigned = 0",
                [project_id],
                |r| r.get(0),
            )
            .map_err(db)?;
        if used >= quota {
            return Err(Error::OverLimit(format!(
                "IP allocation over quota in pool {pool}: project has {used} (quota_floating_ips = {quota})"
            )));
        }
    }
    let id: i64 = tx
        .query_row(
            "SELECT id FROM floating_ips WHERE pool = ?1 AND project_id IS NULL ORDER BY address_int LIMIT 1",
            [pool],
            |r| r.get(0),
        )
        .optional()
        .map_err(db)?
        .ok_or_else(|| Error::Exhausted(format!("no more floating IPs in pool {pool}")))?;
    exec(
        tx,
        "UPDATE floating_ips SET project_id = ?2, auto_assigned = ?3 WHERE id = ?1",
        params![id, project_id, auto],
    )
    .map_err(db)?;
    get_floating(tx, &id.to_string())
}

fn associate_floating_tx(
    tx: &Transaction,
    address: &str,
    instance_uuid: &str,
    fixed_address: Option<&str>,
    project_id: Option<&str>,
) -> Result<FloatingIp> {
    let mut fl = get_floating(tx, address)?;
    let what = format!("floating IP {address}");
    let inst = load_instance(tx, instance_uuid)?;
    let admin = project_id.is_none();
    if fl.project_id.is_none() {
        if !admin {
            return Err(Error::not_found(format!(
                "{what} is not allocated to a project"
            )));
        }
        // An admin may associate an unallocated address: it goes to the instance's project.
        exec(
            tx,
            "UPDATE floating_ips SET project_id = ?1 WHERE id = ?2",
            params![inst.spec.project_id, fl.id],
        )
        .map_err(db)?;
        fl.project_id = Some(inst.spec.project_id.clone());
    }
    check_owner(fl.project_id.as_deref(), project_id, &what)?;
    check_owner(
        Some(&inst.spec.project_id),
        project_id,
        &format!("instance {instance_uuid}"),
    )?;
    // Admins may associate any project's address with any instance, as in nova.
    if !admin && fl.project_id.as_deref() != Some(inst.spec.project_id.as_str()) {
        return Err(Error::invalid(
            "address",
            format!("{what} belongs to another project than instance {instance_uuid}"),
        ));
    }
    let addrs = instance_addresses_tx(tx, instance_uuid)?;
    let fixed = match fixed_address {
        Some(fa) => addrs.iter().find(|a| a.address == fa).ok_or_else(|| {
            Error::invalid(
                "fixed_address",
                format!("{fa} is not assigned to instance {instance_uuid}"),
            )
        })?,
        None => addrs.first().ok_or_else(|| {
            Error::invalid(
                "server",
                format!("instance {instance_uuid} has no fixed IP"),
            )
        })?,
    };
    if fl.fixed_ip.as_deref() == Some(fixed.address.as_str()) {
        return Ok(fl);
    }
    // Associated elsewhere: nova-network moved it (disassociate, then associate), in one
    // transaction here, so the address is never on two instances.
    let f = get_fixed(tx, &fixed.address)?;
    let net: (String, Option<String>) = tx
        .query_row(
            "SELECT data, host FROM networks WHERE id = ?1",
            [f.network_id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .map_err(db)?;
    let n: Network = from_json(&net.0)?;
    // The floating IP lives where the instance's NAT lives: its own host for multi-host
    // networks, the network host otherwise.
    let host = if n.multi_host {
        inst.spec.host.clone()
    } else {
        net.1
    };
    exec(
        tx,
        "UPDATE floating_ips SET fixed_ip_id = ?2, host = ?3 WHERE id = ?1",
        params![fl.id, f.id, host],
    )
    .map_err(db)?;
    get_floating(tx, address)
}

/// For diagnostics and tests: a consistency check of the whole store.
impl SqliteStore {
    /// Drops the change log before `generation`, as every write does every 1,024
    /// generations for what is older than the last 50,000: a server whose cursor is behind
    /// that recomputes every plan it keeps.
    pub fn prune_changes(&self, generation: u64) -> Result<()> {
        self.write_raw(|tx| prune_changes_tx(tx, generation))
    }

    /// Returns every violated invariant (empty when consistent).
    pub fn check_consistency(&self) -> Result<Vec<String>> {
        self.read(|c| {
            let mut problems = Vec::new();
            let checks: BTreeMap<&str, &str> = BTreeMap::from([
                ("allocated fixed IP without a VIF", "SELECT count(*) FROM fixed_ips WHERE allocated = 1 AND vif_id IS NULL"),
                ("allocated fixed IP of a missing instance", "SELECT count(*) FROM fixed_ips f WHERE allocated = 1 AND NOT EXISTS (SELECT 1 FROM instances i WHERE i.uuid = f.instance_uuid)"),
                ("VIF shared by two fixed IPs of one network", "SELECT count(*) FROM (SELECT vif_id FROM fixed_ips WHERE vif_id IS NOT NULL GROUP BY vif_id HAVING count(*) > 1)"),
                ("VIF of a missing instance with no pending release", "SELECT count(*) FROM vifs v WHERE NOT EXISTS (SELECT 1 FROM instances i WHERE i.uuid = v.instance_uuid) AND NOT EXISTS (SELECT 1 FROM fixed_ips f WHERE f.vif_id = v.id)"),
                ("instance with no fixed IP", "SELECT count(*) FROM instances i WHERE NOT EXISTS (SELECT 1 FROM fixed_ips f WHERE f.instance_uuid = i.uuid)"),
                ("fixed IP pointing at a VIF of another instance", "SELECT count(*) FROM fixed_ips f JOIN vifs v ON v.id = f.vif_id WHERE v.instance_uuid != f.instance_uuid"),
            ]);
            for (what, sql) in checks {
                let n: i64 = qrow(c, sql, [], |r| r.get(0)).map_err(db)?;
                if n > 0 {
                    problems.push(format!("{n} x {what}"));
                }
            }
            let ok: String = qrow(c, "PRAGMA integrity_check", [], |r| r.get(0)).map_err(db)?;
            if ok != "ok" {
                problems.push(format!("sqlite integrity: {ok}"));
            }
            Ok(problems)
        })
    }
}
