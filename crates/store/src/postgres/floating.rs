//! Floating IPs: pools, allocation to projects, association with instances.

use super::addresses::get_fixed;
use super::instances::{instance_addresses_tx, load_instance_locked};
use super::networks::{load_networks, lock_project};
use super::*;

pub(super) fn floating_from_row(r: &Row) -> FloatingIp {
    FloatingIp {
        id: r.get(0),
        address: r.get(1),
        pool: r.get(2),
        interface: r.get(3),
        project_id: r.get(4),
        fixed_ip: r.get(5),
        instance_uuid: r.get(6),
        host: r.get(7),
        auto_assigned: r.get(8),
    }
}

pub(super) const FLOATING_SELECT: &str = "SELECT fl.id, fl.address, fl.pool, fl.interface, fl.project_id, f.address, f.instance_uuid, fl.host, fl.auto_assigned \
     FROM floating_ips fl LEFT JOIN fixed_ips f ON f.id = fl.fixed_ip_id";

fn get_floating_tail(c: &Db, key: &str, tail: &str) -> Result<FloatingIp> {
    let by_id = key.parse::<i64>().ok();
    c.opt(
        &format!("{FLOATING_SELECT} WHERE fl.address = $1 OR fl.id = $2 {tail}"),
        &[&key, &by_id],
    )?
    .map(|r| floating_from_row(&r))
    .ok_or_else(|| Error::not_found(format!("floating IP {key} not found")))
}

pub(super) fn get_floating(c: &Db, key: &str) -> Result<FloatingIp> {
    get_floating_tail(c, key, "")
}

/// As `get_floating`, locking the floating IP's row until the transaction ends.
pub(super) fn get_floating_locked(c: &Db, key: &str) -> Result<FloatingIp> {
    get_floating_tail(c, key, "FOR UPDATE OF fl")
}

pub(super) fn check_owner(owner: Option<&str>, caller: Option<&str>, what: &str) -> Result<()> {
    match caller {
        None => Ok(()),
        Some(p) if owner == Some(p) => Ok(()),
        Some(_) => Err(Error::not_found(format!("{what} not found"))),
    }
}

pub(super) fn allocate_floating_tx(
    tx: &Db,
    project_id: &str,
    pool: &str,
    quota: i64,
    auto: bool,
) -> Result<FloatingIp> {
    let pool_exists: bool = tx
        .one(
            "SELECT EXISTS(SELECT 1 FROM floating_ips WHERE pool = $1)",
            &[&pool],
        )?
        .get(0);
    if !pool_exists {
        return Err(Error::not_found(format!(
            "floating IP pool {pool} not found"
        )));
    }
    if quota >= 0 {
        // The project's allocations take turns, so that two at once cannot both fit.
        lock_project(tx, project_id)?;
        let used: i64 = tx
            .one(
                "SELECT count(*) FROM floating_ips WHERE project_id = $1 AND NOT auto_assigned",
                &[&project_id],
            )?
            .get(0);
        if used >= quota {
            return Err(Error::OverLimit(format!(
                "IP allocation over quota in pool {pool}: project has {used} (quota_floating_ips = {quota})"
            )));
        }
    }
    let id: i64 = tx
        .opt(
            "SELECT id FROM floating_ips WHERE pool = $1 AND project_id IS NULL ORDER BY address_int \
             LIMIT 1 FOR UPDATE SKIP LOCKED",
            &[&pool],
        )?
        .map(|r| r.get(0))
        .ok_or_else(|| Error::Exhausted(format!("no more floating IPs in pool {pool}")))?;
    tx.exec(
        "UPDATE floating_ips SET project_id = $2, auto_assigned = $3 WHERE id = $1",
        &[&id, &project_id, &auto],
    )?;
    get_floating(tx, &id.to_string())
}

pub(super) fn associate_floating_tx(
    tx: &Db,
    address: &str,
    instance_uuid: &str,
    fixed_address: Option<&str>,
    project_id: Option<&str>,
) -> Result<FloatingIp> {
    let mut fl = get_floating_locked(tx, address)?;
    let what = format!("floating IP {address}");
    let inst = load_instance_locked(tx, instance_uuid)?;
    let admin = project_id.is_none();
    if fl.project_id.is_none() {
        if !admin {
            return Err(Error::not_found(format!(
                "{what} is not allocated to a project"
            )));
        }
        // An admin may associate an unallocated address: it goes to the instance's project.
        tx.exec(
            "UPDATE floating_ips SET project_id = $1 WHERE id = $2",
            &[&inst.spec.project_id, &fl.id],
        )?;
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
    let net = tx.one(
        "SELECT data, host FROM networks WHERE id = $1",
        &[&f.network_id],
    )?;
    let n: Network = from_json(net.get(0))?;
    // The floating IP lives where the instance's NAT lives: its own host for multi-host
    // networks, the network host otherwise.
    let host: Option<String> = if n.multi_host {
        inst.spec.host.clone()
    } else {
        net.get(1)
    };
    tx.exec(
        "UPDATE floating_ips SET fixed_ip_id = $2, host = $3 WHERE id = $1",
        &[&fl.id, &f.id, &host],
    )?;
    get_floating(tx, address)
}

impl FloatingIpStore for PgStore {
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
            for a in addresses {
                if let Some(n) = nets.iter().find(|n| n.cidr_v4().is_some_and(|c| c.contains(*a))) {
                    return Err(Error::conflict(format!(
                        "floating IP {a} is inside fixed network {} ({})",
                        n.label,
                        n.cidr.as_deref().unwrap_or("")
                    )));
                }
                let inserted = tx.opt(
                    "INSERT INTO floating_ips(address, address_int, pool, interface) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT DO NOTHING RETURNING id",
                    &[&a.to_string(), &i64::from(u32::from(*a)), &pool, &interface],
                )?;
                if inserted.is_none() {
                    return Err(Error::conflict(format!("floating IP {a} already exists")));
                }
            }
            Ok(addresses.len())
        })
    }

    fn delete_floating_ips(&self, addresses: &[Ipv4Addr]) -> Result<usize> {
        self.write(|tx| {
            let mut n = 0;
            for a in addresses {
                let fl = get_floating_locked(tx, &a.to_string())?;
                if fl.fixed_ip.is_some() {
                    return Err(Error::conflict(format!(
                        "floating IP {a} is associated with {}; disassociate it first",
                        fl.fixed_ip.unwrap_or_default()
                    )));
                }
                n += tx.exec("DELETE FROM floating_ips WHERE id = $1", &[&fl.id])? as usize;
            }
            Ok(n)
        })
    }

    fn floating_ips(&self, project_id: Option<&str>) -> Result<Vec<FloatingIp>> {
        self.read(|c| {
            Ok(c.rows(
                &format!(
                    "{FLOATING_SELECT} WHERE $1::text IS NULL OR fl.project_id = $1 ORDER BY fl.address_int"
                ),
                &[&project_id],
            )?
            .iter()
            .map(floating_from_row)
            .collect())
        })
    }

    fn floating_ip(&self, key: &str) -> Result<FloatingIp> {
        self.read(|c| get_floating(c, key))
    }

    fn floating_pools(&self) -> Result<Vec<String>> {
        self.read(|c| {
            strings(
                c,
                "SELECT DISTINCT pool FROM floating_ips ORDER BY pool",
                &[],
            )
        })
    }

    fn allocate_floating_ip(&self, project_id: &str, pool: &str, quota: i64) -> Result<FloatingIp> {
        self.write(|tx| allocate_floating_tx(tx, project_id, pool, quota, false))
    }

    fn release_floating_ip(&self, address: &str, project_id: Option<&str>) -> Result<()> {
        self.write_touching(|tx, t| {
            let fl = get_floating_locked(tx, address)?;
            t.floating(&fl);
            if fl.project_id.is_none() {
                return Err(Error::not_found(format!("floating IP {address} is not allocated")));
            }
            check_owner(fl.project_id.as_deref(), project_id, &format!("floating IP {address}"))?;
            tx.exec(
                "UPDATE floating_ips SET project_id = NULL, fixed_ip_id = NULL, host = NULL, auto_assigned = false \
                 WHERE id = $1",
                &[&fl.id],
            )?;
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
            t.floating(&get_floating_locked(tx, address)?);
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
            let fl = get_floating_locked(tx, address)?;
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
            tx.exec(
                "UPDATE floating_ips SET fixed_ip_id = NULL, host = NULL WHERE id = $1",
                &[&fl.id],
            )?;
            Ok(())
        })
    }
}
