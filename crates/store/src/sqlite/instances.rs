//! Instances, their VIFs and the fixed IPs allocated to them in the same transaction.

use super::addresses::{
    allocate_address, deallocate_fixed, ensure_host_address, fixed_from_row, get_fixed, FIXED_COLS,
};
use super::changes::touch_instance;
use super::floating::{allocate_floating_tx, associate_floating_tx};
use super::networks::{default_networks, find_network, usable_by};
use super::secgroups::ensure_default_group_tx;
use super::*;

pub(super) fn load_instance(c: &Connection, uuid: &str) -> Result<Instance> {
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

fn save_instance(tx: &Transaction, inst: &Instance) -> Result<()> {
    let mut stored = inst.clone();
    stored.id = 0;
    exec(
        tx,
        "UPDATE instances SET name = ?2, data = ?3 WHERE id = ?1",
        params![inst.id, stored.spec.name, to_json(&stored)],
    )
    .map_err(db)?;
    Ok(())
}

pub(super) fn create_vif(
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

pub(super) fn instance_addresses_tx(c: &Connection, uuid: &str) -> Result<Vec<InstanceAddress>> {
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

impl InstanceStore for SqliteStore {
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
                power: Default::default(),
                locked_by: None,
                actions: Vec::new(),
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
                let a = allocate_address(tx, n, requested.as_deref(), spec.vpn, &uuid, vif_id, now)?;
                first_fixed.get_or_insert(a);
                // Its host serves it there (multi-host): the host's own gateway address.
                if let Some(h) = &spec.host {
                    ensure_host_address(tx, t, n, h, now)?;
                }
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
            let a = allocate_address(tx, &n, None, false, uuid, vif_id, now)?;
            if let Some(h) = &inst.spec.host {
                ensure_host_address(tx, t, &n, h, now)?;
            }
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
            if let Some(l) = &u.locked_by {
                inst.locked_by = l.clone();
            }
            inst.updated_at = now;
            save_instance(tx, &inst)?;
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
            save_instance(tx, &inst)?;
            Ok(true)
        })
    }

    fn request_power_action(&self, uuid: &str, action: PowerAction, now: i64) -> Result<Instance> {
        self.write(|tx| {
            let mut inst = load_instance(tx, uuid)?;
            inst.power.request(action);
            inst.updated_at = now;
            save_instance(tx, &inst)?;
            Ok(inst)
        })
    }

    fn report_power(&self, host: &str, reports: &[PowerReport]) -> Result<usize> {
        // Most reports change nothing: read first, write (and bump the generation) only
        // when something did.
        let changed: Vec<Instance> = self.read(|c| {
            let mut out = Vec::new();
            for r in reports {
                let Ok(mut inst) = load_instance(c, &r.uuid) else {
                    continue;
                };
                if inst.spec.host.as_deref() == Some(host) && inst.power.take_report(r) {
                    out.push(inst);
                }
            }
            Ok(out)
        })?;
        let consoles: Vec<&PowerReport> = reports.iter().filter(|r| r.console.is_some()).collect();
        if changed.is_empty() && consoles.is_empty() {
            return Ok(0);
        }
        let write = |tx: &Transaction| -> Result<usize> {
            let mut n = 0;
            for c in &changed {
                let mut now = load_instance(tx, &c.uuid)?;
                let report = reports.iter().find(|r| r.uuid == c.uuid).expect("reported");
                if now.power.take_report(report) {
                    save_instance(tx, &now)?;
                    n += 1;
                }
            }
            for r in consoles {
                exec(
                    tx,
                    "INSERT INTO consoles(instance_uuid, text) \
                     SELECT uuid, ?2 FROM instances WHERE uuid = ?1 AND host = ?3 \
                     ON CONFLICT(instance_uuid) DO UPDATE SET text = excluded.text",
                    params![r.uuid, r.console, host],
                )
                .map_err(db)?;
            }
            Ok(n)
        };
        if changed.is_empty() {
            // Console text reaches no guest and no plan: no new generation for it.
            self.write_raw(write)
        } else {
            self.write(write)
        }
    }

    fn record_instance_action(&self, uuid: &str, action: &InstanceAction) -> Result<()> {
        self.write_raw(|tx| {
            let mut inst = load_instance(tx, uuid)?;
            inst.actions.push(action.clone());
            let over = inst.actions.len().saturating_sub(INSTANCE_ACTIONS_KEPT);
            inst.actions.drain(..over);
            save_instance(tx, &inst)?;
            Ok(())
        })
    }

    fn console_output(&self, uuid: &str) -> Result<Option<String>> {
        self.read(|c| {
            load_instance(c, uuid)?;
            c.query_row(
                "SELECT text FROM consoles WHERE instance_uuid = ?1",
                [uuid],
                |r| r.get(0),
            )
            .optional()
            .map_err(db)
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

    fn check_consistency(&self) -> Result<Vec<String>> {
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
