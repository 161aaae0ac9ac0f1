//! Networks (created with their fixed IPs), and which networks a project may use.

use super::changes::touch_network;
use super::*;

/// Networks matching `where_sql` (and any `tail`, as `FOR UPDATE`), by id.
pub(super) fn load_networks_tail(
    c: &Db,
    where_sql: &str,
    tail: &str,
    p: Params,
) -> Result<Vec<Network>> {
    let sql = format!("SELECT id, data FROM networks {where_sql} ORDER BY id {tail}");
    c.rows(&sql, p)?
        .iter()
        .map(|r| {
            let mut n: Network = from_json(r.get(1))?;
            n.id = r.get(0);
            Ok(n)
        })
        .collect()
}

pub(super) fn load_networks(c: &Db, where_sql: &str, p: Params) -> Result<Vec<Network>> {
    load_networks_tail(c, where_sql, "", p)
}

fn one_network(found: Vec<Network>, key: &str) -> Result<Network> {
    match found.len() {
        1 => Ok(found.into_iter().next().expect("one")),
        0 => Err(Error::not_found(format!("network {key} not found"))),
        _ => Err(Error::conflict(format!(
            "{key} names several networks; use the network's uuid"
        ))),
    }
}

pub(super) fn find_network(c: &Db, key: &str) -> Result<Network> {
    one_network(
        load_networks(c, "WHERE uuid = $1 OR cidr = $1 OR label = $1", &[&key])?,
        key,
    )
}

/// As `find_network`, locking the network's row until the transaction ends.
pub(super) fn find_network_locked(c: &Db, key: &str) -> Result<Network> {
    one_network(
        load_networks_tail(
            c,
            "WHERE uuid = $1 OR cidr = $1 OR label = $1",
            "FOR UPDATE",
            &[&key],
        )?,
        key,
    )
}

pub(super) fn save_network(c: &Db, n: &Network) -> Result<i64> {
    let data = to_json(n);
    let vlan = n.vlan.map(i64::from);
    if n.id == 0 {
        let rows = c
            .try_rows(
                "INSERT INTO networks(uuid, label, cidr, cidr_v6, vlan, project_id, host, data) \
                 VALUES ($1,$2,$3,$4,$5,$6,$7,$8) RETURNING id",
                &[
                    &n.uuid,
                    &n.label,
                    &n.cidr,
                    &n.cidr_v6,
                    &vlan,
                    &n.project_id,
                    &n.host,
                    &data,
                ],
            )
            .map_err(|e| {
                if is_unique_violation(&e) {
                    Error::conflict(format!(
                        "network {} conflicts with an existing one (uuid or vlan)",
                        n.label
                    ))
                } else {
                    db(e)
                }
            })?;
        Ok(rows[0].get(0))
    } else {
        c.exec(
            "UPDATE networks SET label=$2, cidr=$3, cidr_v6=$4, vlan=$5, project_id=$6, host=$7, data=$8 WHERE id=$1",
            &[&n.id, &n.label, &n.cidr, &n.cidr_v6, &vlan, &n.project_id, &n.host, &data],
        )?;
        Ok(n.id)
    }
}

/// Whether a project may put an instance on a network (see the SQLite engine's).
pub(super) fn usable_by(n: &Network, project_id: &str, manager: Manager) -> bool {
    match n.project_id.as_deref() {
        Some(p) => p == project_id,
        None => manager != Manager::Vlan,
    }
}

/// Serializes the writers of one project that may give it a network (its first
/// instances, booted at once, must get the same one).
pub(super) fn lock_project(tx: &Db, project_id: &str) -> Result<()> {
    tx.exec(
        "SELECT pg_advisory_xact_lock(hashtext('novanet project ' || $1))",
        &[&project_id],
    )?;
    Ok(())
}

/// The networks an instance is put on when it asks for none (nova's `_get_networks_for_instance`).
pub(super) fn default_networks(
    tx: &Db,
    manager: Manager,
    project_id: &str,
) -> Result<Vec<Network>> {
    match manager {
        Manager::Flat | Manager::FlatDhcp => load_networks(
            tx,
            "WHERE vlan IS NULL AND cidr IS NOT NULL AND (project_id IS NULL OR project_id = $1)",
            &[&project_id],
        ),
        Manager::Vlan => {
            lock_project(tx, project_id)?;
            let own = load_networks(tx, "WHERE project_id = $1", &[&project_id])?;
            if !own.is_empty() {
                return Ok(own);
            }
            Ok(vec![associate_free_network(tx, project_id, None)?])
        }
    }
}

pub(super) fn associate_free_network(
    tx: &Db,
    project_id: &str,
    uuid: Option<&str>,
) -> Result<Network> {
    let mut n = match uuid {
        Some(u) => find_network_locked(tx, u)?,
        // Another project's writer may be taking the first free one: take the next.
        None => load_networks_tail(
            tx,
            "WHERE project_id IS NULL AND vlan IS NOT NULL",
            "LIMIT 1 FOR UPDATE SKIP LOCKED",
            &[],
        )?
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

impl NetworkStore for PgStore {
    fn create_networks(
        &self,
        req: &NetworkRequest,
        cfg: &Config,
    ) -> Result<(Vec<Network>, Vec<String>)> {
        self.write_touching(|tx, t| {
            // Networks are planned against every existing one: one creator at a time.
            tx.exec("LOCK TABLE networks IN SHARE ROW EXCLUSIVE MODE", &[])?;
            let existing = load_networks(tx, "", &[])?;
            let plan = plan_networks(req, cfg.network_manager, cfg, &existing, new_uuid)?;
            // Fixed ranges must not overlap floating pools either.
            for p in &plan.networks {
                if let Some(c) = p.network.cidr_v4() {
                    let lo = i64::from(u32::from(c.network()));
                    let hi = i64::from(u32::from(c.broadcast()));
                    let clash: Option<String> = tx
                        .opt(
                            "SELECT address FROM floating_ips WHERE address_int BETWEEN $1 AND $2 LIMIT 1",
                            &[&lo, &hi],
                        )?
                        .map(|r| r.get(0));
                    if let Some(a) = clash {
                        return Err(Error::conflict(format!(
                            "fixed range {c} contains floating IP {a}"
                        )));
                    }
                }
            }
            let mut out = Vec::new();
            for p in &plan.networks {
                let mut n = p.network.clone();
                n.id = save_network(tx, &n)?;
                // One statement per network: a /16 is 65,536 rows.
                let addresses: Vec<String> = p.fixed_ips.iter().map(|(a, _)| a.to_string()).collect();
                let ints: Vec<i64> = p.fixed_ips.iter().map(|(a, _)| i64::from(u32::from(*a))).collect();
                let reserved: Vec<bool> = p.fixed_ips.iter().map(|(_, r)| *r).collect();
                if let Some(r) = tx.opt(
                    "SELECT address FROM fixed_ips WHERE address = ANY($1) LIMIT 1",
                    &[&addresses],
                )? {
                    let addr: String = r.get(0);
                    return Err(Error::conflict(format!(
                        "fixed IP {addr} already belongs to another network"
                    )));
                }
                tx.try_exec(
                    "INSERT INTO fixed_ips(network_id, address, address_int, reserved) \
                     SELECT $1, * FROM unnest($2::text[], $3::bigint[], $4::boolean[])",
                    &[&n.id, &addresses, &ints, &reserved],
                )
                .map_err(|e| {
                    if is_unique_violation(&e) {
                        Error::conflict(format!(
                            "a fixed IP of network {} already belongs to another network",
                            n.label
                        ))
                    } else {
                        db(e)
                    }
                })?;
                // A new network has no instances yet: only a host given at creation serves it.
                t.host(n.host.as_deref());
                out.push(n);
            }
            Ok((out, plan.warnings.clone()))
        })
    }

    fn networks(&self) -> Result<Vec<Network>> {
        self.read(|c| load_networks(c, "", &[]))
    }

    fn network(&self, key: &str) -> Result<Network> {
        self.read(|c| find_network(c, key))
    }

    fn network_by_id(&self, id: i64) -> Result<Option<Network>> {
        self.read(|c| Ok(load_networks(c, "WHERE id = $1", &[&id])?.pop()))
    }

    fn delete_network(&self, key: &str, require_disassociated: bool) -> Result<Network> {
        self.write_touching(|tx, t| {
            let n = find_network_locked(tx, key)?;
            touch_network(tx, t, &n)?;
            if require_disassociated {
                if let Some(p) = &n.project_id {
                    return Err(Error::conflict(format!(
                        "network {} is associated with project {p}; disassociate it first",
                        n.label
                    )));
                }
            }
            // Locked, so that no allocation takes one of them before they go.
            let used: i64 = tx
                .rows(
                    "SELECT instance_uuid IS NOT NULL OR allocated FROM fixed_ips \
                     WHERE network_id = $1 FOR UPDATE",
                    &[&n.id],
                )?
                .iter()
                .filter(|r| r.get::<_, bool>(0))
                .count() as i64;
            if used > 0 {
                return Err(Error::conflict(format!(
                    "network {} still has {used} allocated fixed IPs; delete its instances first",
                    n.label
                )));
            }
            tx.exec("DELETE FROM fixed_ips WHERE network_id = $1", &[&n.id])?;
            tx.exec("DELETE FROM vifs WHERE network_id = $1", &[&n.id])?;
            tx.exec("DELETE FROM networks WHERE id = $1", &[&n.id])?;
            Ok(n.clone())
        })
    }

    fn update_network(&self, key: &str, update: &NetworkUpdate) -> Result<Network> {
        self.write_touching(|tx, t| {
            let mut n = find_network_locked(tx, key)?;
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
                super::changes::touch_segment_peers(tx, t, &n)?;
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
            // Locked: two hosts claiming at once do not both take a network.
            let free = load_networks_tail(tx, "WHERE host IS NULL", "FOR UPDATE", &[])?;
            let mut n_claimed = 0;
            for mut n in free.into_iter().filter(|n| !n.multi_host) {
                t.host(Some(host));
                n.host = Some(host.to_string());
                save_network(tx, &n)?;
                super::changes::touch_segment_peers(tx, t, &n)?;
                n_claimed += 1;
            }
            Ok(n_claimed)
        })
    }
}
