//! The reads hosts' plans are computed from, scoped to one host or instance, and the
//! change log as readers follow it.

use super::addresses::host_address;
use super::changes::{generation_c, host_generation_c, network_hosts};
use super::floating::{floating_from_row, FLOATING_SELECT};
use super::networks::load_networks;
use super::secgroups::{admin_rules_c, rules_of, AdminRules};
use super::*;

/// A bound address with its fixed IP's id and numeric address (for order and dedup). The
/// hostname is read from the instance's record in SQL, without parsing it here.
pub(super) const BOUND_COLS: &str = "f.id, f.address_int, f.network_id, f.address, v.mac, v.uuid, f.instance_uuid, i.id, \
     json_extract(i.data, '$.hostname'), i.host, f.allocated, f.leased, v.device, \
     (SELECT group_concat(group_id, ',') FROM instance_security_groups g WHERE g.instance_uuid = f.instance_uuid), \
     v.id = (SELECT min(w.id) FROM vifs w WHERE w.instance_uuid = v.instance_uuid), \
     json_extract(i.data, '$.project_id')";

pub(super) type BoundRow = ((i64, i64), BoundAddress);

pub(super) fn bound_row(r: &Row) -> rusqlite::Result<BoundRow> {
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
            project_id: r.get::<_, Option<String>>(15)?.unwrap_or_default(),
        },
    ))
}

pub(super) fn bound_rows<P: rusqlite::Params>(
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

pub(super) fn host_inputs_c(c: &Connection, host: &str) -> Result<HostInputs> {
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
    // Dual stack: a source group member's IPv6 address is computed from its network's
    // prefix, so the networks of members elsewhere are read too (the plan sets up none of
    // them here: this host is neither their gateway nor has instances on them).
    let members_nets: BTreeSet<i64> = rows
        .iter()
        .map(|(k, _)| k.0)
        .filter(|id| !ids.contains(id))
        .collect();
    for id in &members_nets {
        networks.extend(load_networks(c, "WHERE id = ?1", &[id])?);
    }
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
    let options = host_options_c(c, host)?;
    let mut segment_peers = BTreeMap::new();
    for n in networks.iter().filter(|n| n.vlan.is_some()) {
        segment_peers.insert(n.id, segment_peers_c(c, n)?);
    }
    let mut host_addresses = BTreeMap::new();
    for n in networks.iter().filter(|n| n.multi_host && !n.share_address) {
        if let Some(a) = host_address(c, n.id, host)? {
            host_addresses.insert(n.id, a);
        }
    }
    Ok(HostInputs {
        host_addresses,
        generation,
        networks,
        bound: rows.into_iter().map(|(_, b)| b).collect(),
        floating,
        rules,
        provider_rules: admin_rules_c(c, AdminRules::Provider)?,
        options,
        segment_peers,
    })
}

/// A host's own options, as its agent last reported them (none: the server's).
fn host_options_c(c: &Connection, host: &str) -> Result<novanet_core::config::HostOptions> {
    let options: Option<String> = qrow(
        c,
        "SELECT options FROM services WHERE host = ?1",
        [host],
        |r| r.get(0),
    )
    .optional()
    .map_err(db)?;
    Ok(options
        .and_then(|o| serde_json::from_str(&o).ok())
        .unwrap_or_default())
}

/// The management addresses (`my_ip` of their agents' reports) of every host that has a
/// VLAN network: its network host and the hosts of its instances.
fn segment_peers_c(c: &Connection, n: &Network) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for h in network_hosts(c, n.id)? {
        out.extend(host_options_c(c, &h)?.my_ip);
    }
    Ok(out)
}

impl PlanStore for SqliteStore {
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

    fn on_commit(&self, hook: CommitHook) {
        self.hooks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(hook);
    }
}
