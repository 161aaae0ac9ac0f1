//! The change log: the generation every write moves on, and which hosts' plans a write
//! touches (found by indexed queries inside the writing transaction).

use super::floating::{floating_from_row, FLOATING_SELECT};
use super::*;
pub(super) use crate::touched::Touched;

/// Rows of the change log kept behind the newest generation; a server whose cursor falls
/// further behind recomputes every plan it keeps.
const CHANGES_KEPT: u64 = 50_000;
pub(super) fn bump_generation(tx: &Transaction) -> Result<u64> {
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
pub(super) fn record_touched(tx: &Transaction, generation: u64, t: &Touched) -> Result<bool> {
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
    let peers = segment_peers(tx, t)?;
    let rows = t.log_rows_with(&peers);
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

/// The other hosts of each VLAN network that a touched host may have joined or left with this
/// write (none of its instances on the network is left untouched): their VXLAN flood lists
/// name it. A boot on a host that already has the network touches no other host.
fn segment_peers(c: &Connection, t: &Touched) -> Result<BTreeSet<String>> {
    let mut touched_on: BTreeMap<(&str, i64), BTreeSet<&str>> = BTreeMap::new();
    for ((h, uuid), nets) in &t.instances {
        for n in nets {
            touched_on
                .entry((h.as_str(), *n))
                .or_default()
                .insert(uuid.as_str());
        }
    }
    let mut out = BTreeSet::new();
    for ((h, n), uuids) in touched_on {
        if !is_vlan_network(c, n)? {
            continue;
        }
        let on = strings(
            c,
            "SELECT DISTINCT i.uuid FROM fixed_ips f JOIN instances i ON i.uuid = f.instance_uuid \
             WHERE f.network_id = ?1 AND i.host = ?2 AND f.allocated = 1",
            params![n, h],
        )?;
        if on.iter().any(|u| !uuids.contains(u.as_str())) {
            continue;
        }
        out.extend(network_hosts(c, n)?.into_iter().filter(|x| x != h));
    }
    Ok(out)
}

fn is_vlan_network(c: &Connection, network_id: i64) -> Result<bool> {
    let vlan: Option<i64> = qrow(
        c,
        "SELECT json_extract(data, '$.vlan') FROM networks WHERE id = ?1",
        [network_id],
        |r| r.get(0),
    )
    .optional()
    .map_err(db)?
    .flatten();
    Ok(vlan.is_some())
}

/// The hosts that have a network: its own host and the hosts of its instances.
pub(super) fn network_hosts(c: &Connection, network_id: i64) -> Result<Vec<String>> {
    strings(
        c,
        "SELECT host FROM networks WHERE id = ?1 AND host IS NOT NULL \
         UNION SELECT DISTINCT i.host FROM fixed_ips f JOIN instances i ON i.uuid = f.instance_uuid \
         WHERE f.network_id = ?1 AND f.allocated = 1 AND i.host IS NOT NULL",
        [network_id],
    )
}

/// A VLAN network moved to another network host: its other hosts flood to the new one.
pub(super) fn touch_segment_peers(c: &Connection, t: &mut Touched, network_id: i64) -> Result<()> {
    if is_vlan_network(c, network_id)? {
        t.hosts(network_hosts(c, network_id)?);
    }
    Ok(())
}

/// The other hosts of every VLAN network `host` has: they flood to its address.
pub(super) fn segment_neighbours(c: &Connection, host: &str) -> Result<Vec<String>> {
    let nets: Vec<String> = strings(
        c,
        "SELECT CAST(id AS TEXT) FROM networks WHERE host = ?1 AND json_extract(data, '$.vlan') IS NOT NULL \
         UNION SELECT DISTINCT CAST(f.network_id AS TEXT) FROM fixed_ips f JOIN instances i ON i.uuid = f.instance_uuid \
           JOIN networks n ON n.id = f.network_id \
         WHERE i.host = ?1 AND f.allocated = 1 AND json_extract(n.data, '$.vlan') IS NOT NULL",
        [host],
    )?;
    let mut out = BTreeSet::new();
    for n in nets.iter().filter_map(|n| n.parse::<i64>().ok()) {
        out.extend(network_hosts(c, n)?.into_iter().filter(|x| x != host));
    }
    Ok(out.into_iter().collect())
}

pub(super) fn prune_changes_tx(tx: &Transaction, before: u64) -> Result<()> {
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

pub(super) fn host_generation_c(c: &Connection, host: &str) -> Result<u64> {
    let g: Option<i64> = qrow(
        c,
        "SELECT max(generation) FROM host_generations WHERE host IN (?1, '*')",
        [host],
        |r| r.get(0),
    )
    .map_err(db)?;
    Ok(g.unwrap_or(0) as u64)
}

pub(super) fn generation_c(c: &Connection) -> Result<u64> {
    let v: String = qrow(
        c,
        "SELECT value FROM meta WHERE key = 'generation'",
        [],
        |r| r.get(0),
    )
    .map_err(db)?;
    Ok(v.parse().unwrap_or(0))
}

pub(super) fn strings<P: rusqlite::Params>(c: &Connection, sql: &str, p: P) -> Result<Vec<String>> {
    let mut st = c.prepare_cached(sql).map_err(db)?;
    let rows = st
        .query_map(p, |r| r.get::<_, String>(0))
        .map_err(db)?
        .collect::<rusqlite::Result<Vec<_>>>()
        .map_err(db)?;
    Ok(rows)
}

pub(super) fn instance_host(c: &Connection, uuid: &str) -> Result<Option<String>> {
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
pub(super) fn touch_dhcp(
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
pub(super) fn touch_referrers(c: &Connection, t: &mut Touched, group_id: i64) -> Result<()> {
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
pub(super) fn touch_members(c: &Connection, t: &mut Touched, group_id: i64) -> Result<()> {
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
pub(super) fn touch_instance(c: &Connection, t: &mut Touched, uuid: &str) -> Result<()> {
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
pub(super) fn touch_network(c: &Connection, t: &mut Touched, n: &Network) -> Result<()> {
    t.host(n.host.as_deref());
    t.hosts(strings(
        c,
        "SELECT DISTINCT i.host FROM fixed_ips f JOIN instances i ON i.uuid = f.instance_uuid \
         WHERE f.network_id = ?1 AND i.host IS NOT NULL",
        [n.id],
    )?);
    Ok(())
}
