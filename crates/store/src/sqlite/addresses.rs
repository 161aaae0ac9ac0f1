//! Fixed IPs: allocation on a network, reservation, DHCP leases and releases, and the
//! addresses bound to VIFs.

use super::changes::{touch_dhcp, Touched};
use super::instances::load_instance;
use super::networks::find_network;
use super::*;

pub(super) const FIXED_COLS: &str =
    "f.id, f.network_id, f.address, f.allocated, f.leased, f.reserved, f.instance_uuid, f.vif_id, f.host, f.updated_at";

pub(super) fn fixed_from_row(r: &Row) -> rusqlite::Result<FixedIp> {
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

pub(super) fn get_fixed(c: &Connection, address: &str) -> Result<FixedIp> {
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

/// Allocates one address on `network` for a VIF: the requested one, or the free one released
/// longest ago (never-used first, lowest address first). A project's VPN instance (`vpn`)
/// may take its network's reserved VPN address, as nova's `allocate_fixed_ip(vpn=True)` did.
pub(super) fn allocate_address(
    tx: &Transaction,
    network: &Network,
    requested: Option<&str>,
    vpn: bool,
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
            let vpn_address = vpn && network.vpn_private_address.as_deref() == Some(a);
            if f.reserved && !vpn_address {
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

/// Frees a fixed IP (no instance, no VIF) and drops its VIF once nothing refers to it.
pub(super) fn disassociate_fixed(tx: &Transaction, f: &FixedIp, now: i64) -> Result<()> {
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

/// Whether a lease event's MAC is that of the VIF holding the address (an event without a
/// MAC is believed). A lease of another MAC is a previous owner's that outlived it: it
/// neither leases nor releases the address for its present owner.
fn lease_is_the_vifs(tx: &Transaction, f: &FixedIp, mac: Option<&str>) -> Result<bool> {
    let (Some(mac), Some(vif)) = (mac, f.vif_id) else {
        return Ok(true);
    };
    let held: Option<String> = tx
        .query_row("SELECT mac FROM vifs WHERE id = ?1", [vif], |r| r.get(0))
        .optional()
        .map_err(db)?;
    Ok(held.is_none_or(|h| h.eq_ignore_ascii_case(mac)))
}

/// Marks an instance's fixed IP deallocated; frees it at once unless a lease is still out
/// (then the DHCP release, or the disassociate timeout, frees it).
pub(super) fn deallocate_fixed(tx: &Transaction, f: &FixedIp, now: i64) -> Result<()> {
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

/// `host`'s own address in a multi-host network whose address is not shared: the one it
/// holds, else the free one released longest ago, marked as the host's (`fixed_ips.host`,
/// which keeps it out of the pool). A new one changes the host's whole plan (its bridge's
/// address, its DHCP server). None for any other network.
pub(super) fn ensure_host_address(
    tx: &Transaction,
    t: &mut Touched,
    network: &Network,
    host: &str,
    now: i64,
) -> Result<Option<String>> {
    if !network.multi_host || network.share_address {
        return Ok(None);
    }
    if let Some(a) = host_address(tx, network.id, host)? {
        return Ok(Some(a));
    }
    let address: String = tx
        .query_row(
            "SELECT address FROM fixed_ips WHERE network_id = ?1 AND instance_uuid IS NULL \
             AND reserved = 0 AND host IS NULL AND leased = 0 ORDER BY updated_at, address_int LIMIT 1",
            [network.id],
            |r| r.get(0),
        )
        .optional()
        .map_err(db)?
        .ok_or_else(|| {
            Error::Exhausted(format!(
                "no fixed IP left on network {} for host {host}'s gateway",
                network.label
            ))
        })?;
    exec(
        tx,
        "UPDATE fixed_ips SET host = ?2, updated_at = ?3 WHERE address = ?1",
        params![address, host, now],
    )
    .map_err(db)?;
    t.host(Some(host));
    Ok(Some(address))
}

/// The address `host` holds in the network as its own (not an instance's).
pub(super) fn host_address(c: &Connection, network_id: i64, host: &str) -> Result<Option<String>> {
    qrow(
        c,
        "SELECT address FROM fixed_ips WHERE network_id = ?1 AND host = ?2 AND instance_uuid IS NULL \
         ORDER BY address_int LIMIT 1",
        params![network_id, host],
        |r| r.get(0),
    )
    .optional()
    .map_err(db)
}

pub(super) fn fixed_info(c: &Connection, f: FixedIp) -> Result<FixedIpInfo> {
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

impl FixedIpStore for SqliteStore {
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

    fn reserve_host_address(&self, network_key: &str, host: &str) -> Result<String> {
        let now = unix_now();
        self.write_touching(|tx, t| {
            let n = find_network(tx, network_key)?;
            ensure_host_address(tx, t, &n, host, now)?.ok_or_else(|| not_per_host(&n))
        })
    }

    fn release_host_address(&self, network_key: &str, host: &str) -> Result<Option<String>> {
        let now = unix_now();
        self.write_touching(|tx, t| {
            let n = find_network(tx, network_key)?;
            let Some(a) = host_address(tx, n.id, host)? else {
                return Ok(None);
            };
            exec(
                tx,
                "UPDATE fixed_ips SET host = NULL, updated_at = ?2 WHERE address = ?1",
                params![a, now],
            )
            .map_err(db)?;
            t.host(Some(host));
            Ok(Some(a))
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

    fn lease_fixed_ip(&self, address: &str, mac: Option<&str>) -> Result<bool> {
        self.write_touching(|tx, t| {
            let f = get_fixed(tx, address)?;
            if f.instance_uuid.is_none() || !lease_is_the_vifs(tx, &f, mac)? {
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
            // A late release for an address a new instance already took (nova bug 1249065).
            if !lease_is_the_vifs(tx, &f, mac)? {
                return Ok(false);
            }
            touch_dhcp(tx, t, f.network_id, &f.address, Some(&owner))?;
            exec(tx, "UPDATE fixed_ips SET leased = 0 WHERE id = ?1", [f.id]).map_err(db)?;
            if f.allocated {
                return Ok(false);
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
                                project_id: String::new(),
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
                        b.project_id = i.spec.project_id;
                    }
                    out.push(b);
                }
            }
            Ok(out)
        })
    }
}
