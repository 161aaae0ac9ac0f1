//! Instances, their VIFs and the fixed IPs allocated to them in the same transaction.

use super::addresses::{
    allocate_address, deallocate_fixed, ensure_host_address, fixed_from_row, get_fixed_locked,
    FIXED_COLS,
};
use super::changes::touch_instance;
use super::floating::{allocate_floating_tx, associate_floating_tx};
use super::networks::{default_networks, find_network, usable_by};
use super::secgroups::ensure_default_group_tx;
use super::*;

fn load_instance_tail(c: &Db, uuid: &str, tail: &str) -> Result<Instance> {
    let r = c
        .opt(
            &format!("SELECT id, data FROM instances WHERE uuid = $1 {tail}"),
            &[&uuid],
        )?
        .ok_or_else(|| Error::not_found(format!("instance {uuid} not found")))?;
    let mut i: Instance = from_json(r.get(1))?;
    i.id = r.get(0);
    Ok(i)
}

pub(super) fn load_instance(c: &Db, uuid: &str) -> Result<Instance> {
    load_instance_tail(c, uuid, "")
}

/// As `load_instance`, locking the instance until the transaction ends: writers that
/// change an instance or what it holds take turns on it.
pub(super) fn load_instance_locked(c: &Db, uuid: &str) -> Result<Instance> {
    load_instance_tail(c, uuid, "FOR UPDATE")
}

pub(super) fn create_vif(
    tx: &Db,
    network_id: i64,
    instance_uuid: &str,
    attempts: u32,
) -> Result<(i64, String, String)> {
    for _ in 0..attempts.max(1) {
        let b = random_bytes();
        let mac = Mac::nova([b[0], b[1], b[2]]).to_string();
        let uuid = new_uuid();
        // A taken MAC inserts nothing (an error would end the transaction): try another.
        let row = tx.opt(
            "INSERT INTO vifs(uuid, mac, network_id, instance_uuid) VALUES ($1, $2, $3, $4) \
             ON CONFLICT DO NOTHING RETURNING id",
            &[&uuid, &mac, &network_id, &instance_uuid],
        )?;
        if let Some(r) = row {
            return Ok((r.get(0), uuid, mac));
        }
    }
    Err(Error::Exhausted(format!(
        "could not find a unique MAC address in {attempts} attempts"
    )))
}

pub(super) fn instance_addresses_tx(c: &Db, uuid: &str) -> Result<Vec<InstanceAddress>> {
    let rows = c.rows(
        "SELECT n.uuid, n.label, v.mac, v.uuid, f.address, \
           (SELECT string_agg(fl.address, ',') FROM floating_ips fl WHERE fl.fixed_ip_id = f.id) \
         FROM fixed_ips f JOIN vifs v ON v.id = f.vif_id JOIN networks n ON n.id = f.network_id \
         WHERE f.instance_uuid = $1 AND f.allocated ORDER BY v.id, f.address_int",
        &[&uuid],
    )?;
    Ok(rows
        .iter()
        .map(|r| {
            let floating: Option<String> = r.get(5);
            InstanceAddress {
                network_uuid: r.get(0),
                network_label: r.get(1),
                mac: r.get(2),
                vif_uuid: r.get(3),
                address: r.get(4),
                floating: floating
                    .map(|s| s.split(',').map(str::to_string).collect())
                    .unwrap_or_default(),
            }
        })
        .collect())
}

/// Stores an instance's record (the row id is the record's id; the JSON keeps 0 there).
fn save_instance_data(tx: &Db, inst: &Instance) -> Result<()> {
    let mut stored = inst.clone();
    stored.id = 0;
    tx.exec(
        "UPDATE instances SET name = $2, data = $3 WHERE id = $1",
        &[&inst.id, &stored.spec.name, &to_json(&stored)],
    )?;
    Ok(())
}

impl InstanceStore for PgStore {
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
            inst.id = tx
                .one(
                    "INSERT INTO instances(uuid, name, project_id, host, data) VALUES ($1, $2, $3, $4, $5) \
                     RETURNING id",
                    &[&uuid, &spec.name, &spec.project_id, &spec.host, &to_json(&inst)],
                )?
                .get(0);
            // Security groups: the named ones of the project (default made on demand).
            for name in &inst.spec.security_groups {
                let found: Option<i64> = tx
                    .opt(
                        "SELECT id FROM security_groups WHERE project_id = $1 AND name = $2",
                        &[&spec.project_id, name],
                    )?
                    .map(|r| r.get(0));
                let gid = match found {
                    Some(id) => id,
                    None if name == "default" => ensure_default_group_tx(tx, &spec.project_id)?.id,
                    None => return Err(Error::not_found(format!("security group {name} not found"))),
                };
                tx.exec(
                    "INSERT INTO instance_security_groups(instance_uuid, group_id) VALUES ($1, $2) \
                     ON CONFLICT DO NOTHING",
                    &[&uuid, &gid],
                )?;
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
            Ok(inst.clone())
        })
    }

    fn delete_instance(&self, uuid: &str, _cfg: &Config, now: i64) -> Result<Instance> {
        self.write_touching(|tx, t| {
            let inst = load_instance_locked(tx, uuid)?;
            touch_instance(tx, t, uuid)?;
            let fixed: Vec<FixedIp> = tx
                .rows(
                    &format!("SELECT {FIXED_COLS} FROM fixed_ips f WHERE f.instance_uuid = $1 FOR UPDATE"),
                    &[&uuid],
                )?
                .iter()
                .map(fixed_from_row)
                .collect();
            // Auto-assigned floating IPs go back to the pool with the instance.
            tx.exec(
                "UPDATE floating_ips SET project_id = NULL, auto_assigned = false, fixed_ip_id = NULL, host = NULL \
                 WHERE auto_assigned AND fixed_ip_id IN (SELECT id FROM fixed_ips WHERE instance_uuid = $1)",
                &[&uuid],
            )?;
            tx.exec("DELETE FROM instances WHERE uuid = $1", &[&uuid])?;
            tx.exec("DELETE FROM instance_security_groups WHERE instance_uuid = $1", &[&uuid])?;
            for f in &fixed {
                deallocate_fixed(tx, f, now)?;
            }
            tx.exec(
                "DELETE FROM vifs WHERE instance_uuid = $1 \
                 AND id NOT IN (SELECT vif_id FROM fixed_ips WHERE vif_id IS NOT NULL)",
                &[&uuid],
            )?;
            Ok(inst)
        })
    }

    fn instance(&self, uuid: &str) -> Result<Instance> {
        self.read(|c| load_instance(c, uuid))
    }

    fn instances(&self, project_id: Option<&str>) -> Result<Vec<Instance>> {
        self.read(|c| {
            c.rows(
                "SELECT id, data FROM instances WHERE $1::text IS NULL OR project_id = $1 ORDER BY id",
                &[&project_id],
            )?
            .iter()
            .map(|r| {
                let mut i: Instance = from_json(r.get(1))?;
                i.id = r.get(0);
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
                .opt(
                    "SELECT instance_uuid FROM fixed_ips WHERE address = $1 AND allocated",
                    &[&address],
                )?
                .and_then(|r| r.get(0));
            uuid.map(|u| load_instance(c, &u)).transpose()
        })
    }

    fn add_fixed_ip(&self, uuid: &str, network_key: &str, cfg: &Config) -> Result<InstanceAddress> {
        let now = unix_now();
        self.write_touching(|tx, t| {
            let inst = load_instance_locked(tx, uuid)?;
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
            let f = get_fixed_locked(tx, address)?;
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
            let mut inst = load_instance_locked(tx, uuid)?;
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
            save_instance_data(tx, &inst)?;
            Ok(inst)
        })
    }

    fn set_instance_password(&self, uuid: &str, password: &str) -> Result<bool> {
        self.write(|tx| {
            let mut inst = load_instance_locked(tx, uuid)?;
            if inst.password.as_deref().is_some_and(|p| !p.is_empty()) {
                return Ok(false);
            }
            inst.password = Some(password.to_string());
            save_instance_data(tx, &inst)?;
            Ok(true)
        })
    }

    fn request_power_action(&self, uuid: &str, action: PowerAction, now: i64) -> Result<Instance> {
        self.write(|tx| {
            let mut inst = load_instance_locked(tx, uuid)?;
            inst.power.request(action);
            inst.updated_at = now;
            save_instance_data(tx, &inst)?;
            Ok(inst)
        })
    }

    fn report_power(&self, host: &str, reports: &[PowerReport]) -> Result<usize> {
        // Most reports change nothing: read first, write (and bump the generation) only
        // when something did.
        let changed: Vec<String> = self.read(|c| {
            let mut out = Vec::new();
            for r in reports {
                let Ok(mut inst) = load_instance(c, &r.uuid) else {
                    continue;
                };
                if inst.spec.host.as_deref() == Some(host) && inst.power.take_report(r) {
                    out.push(inst.uuid);
                }
            }
            Ok(out)
        })?;
        let consoles: Vec<&PowerReport> = reports.iter().filter(|r| r.console.is_some()).collect();
        if changed.is_empty() && consoles.is_empty() {
            return Ok(0);
        }
        let write = |tx: &Db| -> Result<usize> {
            let mut n = 0;
            for uuid in &changed {
                let mut now = load_instance_locked(tx, uuid)?;
                let report = reports.iter().find(|r| &r.uuid == uuid).expect("reported");
                if now.power.take_report(report) {
                    save_instance_data(tx, &now)?;
                    n += 1;
                }
            }
            for r in &consoles {
                tx.exec(
                    "INSERT INTO consoles(instance_uuid, text) \
                     SELECT uuid, $2 FROM instances WHERE uuid = $1 AND host = $3 \
                     ON CONFLICT (instance_uuid) DO UPDATE SET text = excluded.text",
                    &[&r.uuid, &r.console, &host],
                )?;
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
            save_instance_data(tx, &inst)?;
            Ok(())
        })
    }

    fn console_output(&self, uuid: &str) -> Result<Option<String>> {
        self.read(|c| {
            load_instance(c, uuid)?;
            Ok(c.opt(
                "SELECT text FROM consoles WHERE instance_uuid = $1",
                &[&uuid],
            )?
            .map(|r| r.get(0)))
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
            let owner = tx.opt(
                "SELECT i.host, i.uuid FROM vifs v JOIN instances i ON i.uuid = v.instance_uuid \
                 WHERE v.uuid = $1 AND i.host IS NOT NULL",
                &[&vif_uuid],
            )?;
            if let Some(r) = owner {
                let (h, u): (String, String) = (r.get(0), r.get(1));
                t.instance(Some(&h), &u, &[]);
            }
            let n = tx.exec(
                "UPDATE vifs SET device = $2 WHERE uuid = $1",
                &[&vif_uuid, &device],
            )?;
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
            Ok(c.rows(
                "SELECT host, instances FROM host_instance_counts WHERE instances > 0 ORDER BY host",
                &[],
            )?
            .iter()
            .map(|r| (r.get(0), r.get::<_, i64>(1) as u64))
            .collect())
        })
    }

    fn check_consistency(&self) -> Result<Vec<String>> {
        self.read(|c| {
            let mut problems = Vec::new();
            let checks: BTreeMap<&str, &str> = BTreeMap::from([
                ("allocated fixed IP without a VIF", "SELECT count(*) FROM fixed_ips WHERE allocated AND vif_id IS NULL"),
                ("allocated fixed IP of a missing instance", "SELECT count(*) FROM fixed_ips f WHERE allocated AND NOT EXISTS (SELECT 1 FROM instances i WHERE i.uuid = f.instance_uuid)"),
                ("VIF shared by two fixed IPs of one network", "SELECT count(*) FROM (SELECT vif_id FROM fixed_ips WHERE vif_id IS NOT NULL GROUP BY vif_id HAVING count(*) > 1) AS shared"),
                ("VIF of a missing instance with no pending release", "SELECT count(*) FROM vifs v WHERE NOT EXISTS (SELECT 1 FROM instances i WHERE i.uuid = v.instance_uuid) AND NOT EXISTS (SELECT 1 FROM fixed_ips f WHERE f.vif_id = v.id)"),
                ("instance with no fixed IP", "SELECT count(*) FROM instances i WHERE NOT EXISTS (SELECT 1 FROM fixed_ips f WHERE f.instance_uuid = i.uuid)"),
                ("fixed IP pointing at a VIF of another instance", "SELECT count(*) FROM fixed_ips f JOIN vifs v ON v.id = f.vif_id WHERE v.instance_uuid != f.instance_uuid"),
                ("host count that disagrees with its instances", "SELECT count(*) FROM (SELECT host, count(*) AS n FROM instances WHERE host IS NOT NULL GROUP BY host) AS i FULL JOIN (SELECT host, instances FROM host_instance_counts WHERE instances <> 0) AS h ON h.host = i.host WHERE i.n IS DISTINCT FROM h.instances"),
            ]);
            for (what, sql) in checks {
                let n: i64 = c.one(sql, &[])?.get(0);
                if n > 0 {
                    problems.push(format!("{n} x {what}"));
                }
            }
            Ok(problems)
        })
    }
}
