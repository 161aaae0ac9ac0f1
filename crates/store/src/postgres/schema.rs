//! The schema and its migrations: numbered, applied in order, each once, the number kept in
//! `meta` under 'schema'. Servers starting together on one database take turns (an
//! advisory lock), so that only one of them migrates.

use super::*;

/// Migration N is `MIGRATIONS[N - 1]`. Append, never edit one that has shipped.
const MIGRATIONS: &[&str] = &[
    include_str!("schema.sql"),
    // 2: the tail of each VM's serial console, as its host's hypervisor driver last reported it.
    "CREATE TABLE consoles (\n\
         instance_uuid TEXT PRIMARY KEY REFERENCES instances(uuid) ON DELETE CASCADE,\n\
         text TEXT NOT NULL\n\
     );",
    // 3: each host's latest diagnosis, beside its heartbeat.
    "CREATE TABLE host_diagnoses (host TEXT COLLATE \"C\" PRIMARY KEY, \
     reported_at BIGINT NOT NULL, report TEXT NOT NULL);",
];

/// Any number of our own, so that migrations of several servers queue.
const MIGRATION_LOCK: i64 = 0x006e_6f76_616e_6574; // "novanet"

/// The tables of the store, in an order that copies them with every reference's target
/// first, each with its columns (for `manage db migrate` and its counts).
pub const TABLES: &[(&str, &[&str])] = &[
    ("meta", &["key", "value"]),
    (
        "networks",
        &[
            "id",
            "uuid",
            "label",
            "cidr",
            "cidr_v6",
            "vlan",
            "project_id",
            "host",
            "data",
        ],
    ),
    (
        "fixed_ips",
        &[
            "id",
            "network_id",
            "address",
            "address_int",
            "allocated",
            "leased",
            "reserved",
            "instance_uuid",
            "vif_id",
            "host",
            "updated_at",
        ],
    ),
    (
        "vifs",
        &["id", "uuid", "mac", "network_id", "instance_uuid", "device"],
    ),
    (
        "instances",
        &["id", "uuid", "name", "project_id", "host", "data"],
    ),
    ("consoles", &["instance_uuid", "text"]),
    (
        "floating_ips",
        &[
            "id",
            "address",
            "address_int",
            "pool",
            "interface",
            "project_id",
            "fixed_ip_id",
            "host",
            "auto_assigned",
        ],
    ),
    (
        "security_groups",
        &["id", "project_id", "name", "description"],
    ),
    (
        "security_group_rules",
        &[
            "id",
            "parent_group_id",
            "protocol",
            "from_port",
            "to_port",
            "cidr",
            "group_id",
        ],
    ),
    (
        "security_group_default_rules",
        &["id", "protocol", "from_port", "to_port", "cidr"],
    ),
    (
        "provider_fw_rules",
        &["id", "protocol", "from_port", "to_port", "cidr"],
    ),
    ("instance_security_groups", &["instance_uuid", "group_id"]),
    ("projects", &["id", "name"]),
    ("users", &["id", "name", "password_hash", "salt"]),
    ("role_assignments", &["user_id", "project_id", "role"]),
    (
        "tokens",
        &["id", "user_id", "project_id", "issued_at", "expires_at"],
    ),
    (
        "keypairs",
        &[
            "id",
            "user_id",
            "name",
            "public_key",
            "fingerprint",
            "type",
            "created_at",
        ],
    ),
    ("quotas", &["project_id", "resource", "hard_limit"]),
    (
        "services",
        &["host", "network_host", "last_seen", "networks", "options"],
    ),
    ("host_changes", &["generation", "host", "what"]),
    ("host_generations", &["host", "generation"]),
    ("host_instance_counts", &["host", "instances"]),
    ("host_diagnoses", &["host", "reported_at", "report"]),
];

/// The schema version this build writes.
pub(super) fn latest() -> i64 {
    MIGRATIONS.len() as i64
}

/// The schema's version in the database; 0 when it has none yet.
pub(super) fn version(c: &Db) -> Result<i64> {
    let has_meta: bool = c.one("SELECT to_regclass('meta') IS NOT NULL", &[])?.get(0);
    if !has_meta {
        return Ok(0);
    }
    let v: Option<String> = c
        .opt("SELECT value FROM meta WHERE key = 'schema'", &[])?
        .map(|r| r.get(0));
    Ok(v.and_then(|v| v.parse().ok()).unwrap_or(0))
}

/// Applies the migrations this database lacks, in one transaction.
pub(super) fn migrate(c: &Db) -> Result<()> {
    c.batch("BEGIN")?;
    let out = (|| {
        c.exec("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])?;
        let from = version(c)?;
        if from > latest() {
            return Err(Error::Store(format!(
                "the database's schema is version {from}, newer than this novanet's ({}): \
                 upgrade novanet",
                latest()
            )));
        }
        for sql in &MIGRATIONS[from as usize..] {
            c.batch(sql)?;
        }
        c.exec(
            "INSERT INTO meta(key, value) VALUES ('schema', $1) \
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            &[&latest().to_string()],
        )?;
        Ok(())
    })();
    match out {
        Ok(()) => c.batch("COMMIT"),
        Err(e) => {
            let _ = c.batch("ROLLBACK");
            Err(e)
        }
    }
}
