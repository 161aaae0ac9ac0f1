//! Networks (created with their fixed IPs), and which networks a project may use.

use super::changes::touch_network;
use super::*;

pub(super) fn network_from_row(r: &Row) -> rusqlite::Result<(i64, String)> {
    Ok((r.get(0)?, r.get(1)?))
}

pub(super) fn load_networks(
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

pub(super) fn find_network(c: &Connection, key: &str) -> Result<Network> {
    let found = load_networks(c, "WHERE uuid = ?1 OR cidr = ?1 OR label = ?1", &[&key])?;
    match found.len() {
        1 => Ok(found.into_iter().next().expect("one")),
        0 => Err(Error::not_found(format!("network {key} not found"))),
        _ => Err(Error::conflict(format!(
            "{key} names several networks; use the network's uuid"
        ))),
    }
}

pub(super) fn save_network(c: &Connection, n: &Network) -> Result<i64> {
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

/// Whether a project may put an instance on a network: its own, or (outside VLAN mode,
/// where every network belongs to one project) a shared one. Another project's network is
/// answered as not found, so its existence is not told either.
pub(super) fn usable_by(n: &Network, project_id: &str, manager: Manager) -> bool {
    match n.project_id.as_deref() {
        Some(p) => p == project_id,
        None => manager != Manager::Vlan,
    }
}

/// The networks an instance is put on when it asks for none (nova's `_get_networks_for_instance`).
pub(super) fn default_networks(
    tx: &Transaction,
    manager: Manager,
    project_id: &str,
) -> Result<Vec<Network>> {
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

pub(super) fn associate_free_network(
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

impl NetworkStore for SqliteStore {
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

    fn network_by_id(&self, id: i64) -> Result<Option<Network>> {
        self.read(|c| Ok(load_networks(c, "WHERE id = ?1", &[&id])?.pop()))
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
            if let Some((address, port)) = &update.vpn_public {
                n.vpn_public_address = Some(address.clone());
                n.vpn_public_port = Some(*port);
            }
            t.host(n.host.as_deref());
            save_network(tx, &n)?;
            if update.host.is_some() || update.project_id.is_some() {
                super::changes::touch_segment_peers(tx, t, n.id)?;
            }
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
                super::changes::touch_segment_peers(tx, t, n.id)?;
                n_claimed += 1;
            }
            Ok(n_claimed)
        })
    }
}
