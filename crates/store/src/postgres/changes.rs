//! The change log: the generation every write moves on, and which hosts' plans a write
//! touches (found by indexed queries inside the writing transaction). As SQLite's, with one
//! difference that several writers at once make: the generation is taken last, and its
//! row stays locked until the commit, so generations commit in the order they are taken.

use super::floating::{floating_from_row, FLOATING_SELECT};
use super::*;
pub(super) use crate::touched::Touched;

/// Rows of the change log kept behind the newest generation; a server whose cursor falls
/// further behind recomputes every plan it keeps.
const CHANGES_KEPT: u64 = 50_000;

/// Takes the next generation. Call it last in a transaction: other writers wait on its row
/// until this one commits.
pub(super) fn bump_generation(tx: &Db) -> Result<u64> {
    let g: i64 = tx
        .one(
            "UPDATE meta SET value = (value::bigint + 1)::text WHERE key = 'generation' \
             RETURNING value::bigint",
            &[],
        )?
        .get(0);
    Ok(g as u64)
}

/// Takes the next generation and records what the change touched under it, in one
/// statement: the generation's row is then locked for one round trip and the commit only.
/// A change that may make a host join or leave a VLAN network takes the generation first
/// and then looks for the network's other hosts: with the generation's row locked, every
/// earlier change is committed and seen, so two hosts joining at once each find the other.
pub(super) fn bump_and_record(tx: &Db, t: &Touched) -> Result<u64> {
    if !joins_or_leaves_are_possible(tx, t)? {
        return bump_and_record_rows(tx, t.log_rows());
    }
    let generation = bump_generation(tx)?;
    record_touched(tx, generation, t)?;
    Ok(generation)
}

fn bump_and_record_rows(tx: &Db, rows: Vec<(&str, ChangeScope)>) -> Result<u64> {
    let (hosts, whats): (Vec<&str>, Vec<String>) = rows
        .into_iter()
        .map(|(h, scope)| (h, scope.encode()))
        .unzip();
    let unique: Vec<&str> = hosts
        .iter()
        .copied()
        .collect::<BTreeSet<&str>>()
        .into_iter()
        .collect();
    let g: i64 = tx
        .one(
            "WITH g AS (UPDATE meta SET value = (value::bigint + 1)::text WHERE key = 'generation' \
                        RETURNING value::bigint AS generation), \
                  log AS (INSERT INTO host_changes(generation, host, what) \
                          SELECT g.generation, r.host, r.what FROM g, unnest($1::text[], $2::text[]) AS r(host, what) \
                          ON CONFLICT DO NOTHING), \
                  hosts AS (INSERT INTO host_generations(host, generation) \
                            SELECT u.host, g.generation FROM g, unnest($3::text[]) AS u(host) \
                            ON CONFLICT (host) DO UPDATE SET generation = excluded.generation) \
             SELECT generation FROM g",
            &[&hosts, &whats, &unique],
        )?
        .get(0);
    let generation = g as u64;
    if !hosts.is_empty() && generation.is_multiple_of(1024) && generation > CHANGES_KEPT {
        prune_changes_tx(tx, generation - CHANGES_KEPT)?;
    }
    Ok(generation)
}

/// Writes what a change touched into the change log and the hosts' generations; false
/// when it touched nothing. Call it with the generation's row locked (after
/// `bump_generation`), so that the VXLAN peers it looks for include every earlier change.
pub(super) fn record_touched(tx: &Db, generation: u64, t: &Touched) -> Result<bool> {
    if t.is_empty() {
        return Ok(false);
    }
    let g = generation as i64;
    let peers = segment_peers(tx, t)?;
    let mut hosts = BTreeSet::new();
    for (h, scope) in t.log_rows_with(&peers) {
        tx.exec(
            "INSERT INTO host_changes(generation, host, what) VALUES ($1, $2, $3) \
             ON CONFLICT DO NOTHING",
            &[&g, &h, &scope.encode()],
        )?;
        if hosts.insert(h) {
            tx.exec(
                "INSERT INTO host_generations(host, generation) VALUES ($1, $2) \
                 ON CONFLICT (host) DO UPDATE SET generation = excluded.generation",
                &[&h, &g],
            )?;
        }
    }
    if generation.is_multiple_of(1024) && generation > CHANGES_KEPT {
        prune_changes_tx(tx, generation - CHANGES_KEPT)?;
    }
    Ok(true)
}

/// The (host, network) pairs of instances this change touched on VLAN networks: the
/// only changes that can move a VXLAN flood list.
fn touched_on_vlan<'a>(
    c: &Db,
    t: &'a Touched,
) -> Result<BTreeMap<(&'a str, i64), BTreeSet<&'a str>>> {
    let mut touched_on: BTreeMap<(&str, i64), BTreeSet<&str>> = BTreeMap::new();
    for ((h, uuid), nets) in &t.instances {
        for n in nets {
            touched_on
                .entry((h.as_str(), *n))
                .or_default()
                .insert(uuid.as_str());
        }
    }
    let ids: Vec<i64> = touched_on
        .keys()
        .map(|(_, n)| *n)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    if ids.is_empty() {
        return Ok(touched_on);
    }
    let vlan: BTreeSet<i64> = c
        .rows(
            "SELECT id FROM networks WHERE id = ANY($1) AND vlan IS NOT NULL",
            &[&ids],
        )?
        .iter()
        .map(|r| r.get(0))
        .collect();
    touched_on.retain(|(_, n), _| vlan.contains(n));
    Ok(touched_on)
}

fn joins_or_leaves_are_possible(c: &Db, t: &Touched) -> Result<bool> {
    Ok(!t.all && !touched_on_vlan(c, t)?.is_empty())
}

/// The other hosts of each VLAN network that a touched host may have joined or left with this
/// write (none of its instances on the network is left untouched): their VXLAN flood lists
/// name it. A boot on a host that already has the network touches no other host.
fn segment_peers(c: &Db, t: &Touched) -> Result<BTreeSet<String>> {
    let mut out = BTreeSet::new();
    for ((h, n), uuids) in touched_on_vlan(c, t)? {
        let on = strings(
            c,
            "SELECT DISTINCT i.uuid FROM fixed_ips f JOIN instances i ON i.uuid = f.instance_uuid \
             WHERE f.network_id = $1 AND i.host = $2 AND f.allocated",
            &[&n, &h],
        )?;
        if on.iter().any(|u| !uuids.contains(u.as_str())) {
            continue;
        }
        out.extend(network_hosts(c, n)?.into_iter().filter(|x| x != h));
    }
    Ok(out)
}

/// The hosts that have a network: its own host and the hosts of its instances.
pub(super) fn network_hosts(c: &Db, network_id: i64) -> Result<Vec<String>> {
    strings(
        c,
        "SELECT host FROM networks WHERE id = $1 AND host IS NOT NULL \
         UNION SELECT DISTINCT i.host FROM fixed_ips f JOIN instances i ON i.uuid = f.instance_uuid \
         WHERE f.network_id = $1 AND f.allocated AND i.host IS NOT NULL",
        &[&network_id],
    )
}

/// A VLAN network moved to another network host: its other hosts flood to the new one.
pub(super) fn touch_segment_peers(c: &Db, t: &mut Touched, n: &Network) -> Result<()> {
    if n.vlan.is_some() {
        t.hosts(network_hosts(c, n.id)?);
    }
    Ok(())
}

/// The other hosts of every VLAN network `host` has: they flood to its address.
pub(super) fn segment_neighbours(c: &Db, host: &str) -> Result<Vec<String>> {
    let nets: Vec<i64> = c
        .rows(
            "SELECT id FROM networks WHERE host = $1 AND vlan IS NOT NULL \
             UNION SELECT DISTINCT f.network_id FROM fixed_ips f JOIN instances i ON i.uuid = f.instance_uuid \
               JOIN networks n ON n.id = f.network_id \
             WHERE i.host = $1 AND f.allocated AND n.vlan IS NOT NULL",
            &[&host],
        )?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let mut out = BTreeSet::new();
    for n in nets {
        out.extend(network_hosts(c, n)?.into_iter().filter(|x| x != host));
    }
    Ok(out.into_iter().collect())
}

pub(super) fn prune_changes_tx(tx: &Db, before: u64) -> Result<()> {
    tx.exec(
        "DELETE FROM host_changes WHERE generation < $1",
        &[&(before as i64)],
    )?;
    tx.exec(
        "INSERT INTO meta(key, value) VALUES ('changes_from', $1) \
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        &[&before.to_string()],
    )?;
    Ok(())
}

pub(super) fn host_generation_c(c: &Db, host: &str) -> Result<u64> {
    let g: Option<i64> = c
        .one(
            "SELECT max(generation) FROM host_generations WHERE host IN ($1, '*')",
            &[&host],
        )?
        .get(0);
    Ok(g.unwrap_or(0) as u64)
}

pub(super) fn generation_c(c: &Db) -> Result<u64> {
    let v: String = c
        .one("SELECT value FROM meta WHERE key = 'generation'", &[])?
        .get(0);
    Ok(v.parse().unwrap_or(0))
}

pub(super) fn instance_host(c: &Db, uuid: &str) -> Result<Option<String>> {
    Ok(
        c.opt("SELECT host FROM instances WHERE uuid = $1", &[&uuid])?
            .and_then(|r| r.get::<_, Option<String>>(0)),
    )
}

/// The DHCP entry of `address` on network `network_id`: on the network's host, or for a
/// multi-host network on the host of the instance holding it.
pub(super) fn touch_dhcp(
    c: &Db,
    t: &mut Touched,
    network_id: i64,
    address: &str,
    instance_uuid: Option<&str>,
) -> Result<()> {
    let Some(row) = c.opt(
        "SELECT host, (data::json ->> 'multi_host') = 'true' FROM networks WHERE id = $1",
        &[&network_id],
    )?
    else {
        return Ok(());
    };
    let host: Option<String> = row.get(0);
    let multi: Option<bool> = row.get(1);
    if multi.unwrap_or(false) {
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
pub(super) fn touch_referrers(c: &Db, t: &mut Touched, group_id: i64) -> Result<()> {
    t.hosts(strings(
        c,
        "SELECT DISTINCT i.host FROM security_group_rules r \
           JOIN instance_security_groups m ON m.group_id = r.parent_group_id \
           JOIN instances i ON i.uuid = m.instance_uuid \
         WHERE r.group_id = $1 AND i.host IS NOT NULL",
        &[&group_id],
    )?);
    Ok(())
}

/// A group's members, on their hosts: their entries carry its rules.
pub(super) fn touch_members(c: &Db, t: &mut Touched, group_id: i64) -> Result<()> {
    let rows = c.rows(
        "SELECT i.host, i.uuid FROM instance_security_groups m \
           JOIN instances i ON i.uuid = m.instance_uuid \
         WHERE m.group_id = $1 AND i.host IS NOT NULL",
        &[&group_id],
    )?;
    for r in rows {
        let (h, u): (String, String) = (r.get(0), r.get(1));
        t.instance(Some(&h), &u, &[]);
    }
    Ok(())
}

/// An instance (on its host, with the networks it is on), the hosts serving DHCP for its
/// addresses, the hosts its floating IPs are bound on and the hosts whose rules name one
/// of its groups as their source.
pub(super) fn touch_instance(c: &Db, t: &mut Touched, uuid: &str) -> Result<()> {
    let host = instance_host(c, uuid)?;
    let addrs: Vec<(i64, String)> = c
        .rows(
            "SELECT network_id, address FROM fixed_ips WHERE instance_uuid = $1",
            &[&uuid],
        )?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let networks: Vec<i64> = addrs.iter().map(|(n, _)| *n).collect();
    t.instance(host.as_deref(), uuid, &networks);
    for (n, a) in &addrs {
        touch_dhcp(c, t, *n, a, Some(uuid))?;
    }
    let floating = c.rows(
        &format!("{FLOATING_SELECT} WHERE f.instance_uuid = $1 AND fl.host IS NOT NULL"),
        &[&uuid],
    )?;
    for r in &floating {
        t.floating(&floating_from_row(r));
    }
    t.hosts(strings(
        c,
        "SELECT DISTINCT i.host FROM instance_security_groups mine \
           JOIN security_group_rules r ON r.group_id = mine.group_id \
           JOIN instance_security_groups m ON m.group_id = r.parent_group_id \
           JOIN instances i ON i.uuid = m.instance_uuid \
         WHERE mine.instance_uuid = $1 AND i.host IS NOT NULL",
        &[&uuid],
    )?);
    Ok(())
}

/// A network's own host and the hosts with instances on it.
pub(super) fn touch_network(c: &Db, t: &mut Touched, n: &Network) -> Result<()> {
    t.host(n.host.as_deref());
    t.hosts(strings(
        c,
        "SELECT DISTINCT i.host FROM fixed_ips f JOIN instances i ON i.uuid = f.instance_uuid \
         WHERE f.network_id = $1 AND i.host IS NOT NULL",
        &[&n.id],
    )?);
    Ok(())
}
