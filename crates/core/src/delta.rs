//! A host plan as a change over the one an agent already holds: what the server sends once
//! the agent has a plan, so that a change costs bytes in proportion to what it touched.
//! `apply(old, diff(old, new)) == new` for any two plans of one host.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::config::FirewallDriver;
use crate::firewall::GatewayPlan;
use crate::plan::{
    BridgePlan, DhcpHost, DhcpPlan, DhcpRelease, FloatingBinding, HostPlan, InstanceSecurity,
    RaPlan, SgRule,
};
use crate::valid::{Ipv4Text, Ipv6Text};

/// Replace `remove` elements at `at` with `insert`. The hunks of one list apply in order,
/// each to the list as the hunks before it left it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Hunk<T> {
    pub at: usize,
    #[serde(default)]
    pub remove: usize,
    #[serde(default = "Vec::new", skip_serializing_if = "Vec::is_empty")]
    pub insert: Vec<T>,
}

/// Changes to the host entries of one DHCP server.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DhcpHostsDelta {
    pub network_uuid: String,
    pub hunks: Vec<Hunk<DhcpHost>>,
}

/// The parts of a plan that changed; a part left out is unchanged.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PlanDelta {
    /// The plan's generation once applied.
    pub generation: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub firewall_driver: Option<FirewallDriver>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bridges: Vec<Hunk<BridgePlan>>,
    /// Whole DHCP servers (a network gained, lost, or changed one).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dhcp: Vec<Hunk<DhcpPlan>>,
    /// Host entries of DHCP servers, applied after `dhcp`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dhcp_hosts: Vec<DhcpHostsDelta>,
    /// The gateway's firewall and NAT intent, whole (it changes rarely: a network or an
    /// option, never an instance).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<GatewayPlan>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub floating: Vec<Hunk<FloatingBinding>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub releases: Vec<Hunk<DhcpRelease>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_forward: Option<bool>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub refused: Vec<Hunk<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_same_net: Option<bool>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub instances: Vec<Hunk<InstanceSecurity>>,
    /// A group's member list, whole; None: the group is no longer listed.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub group_members: BTreeMap<i64, Option<Vec<Ipv4Text>>>,
    /// The same for members' IPv6 addresses (dual stack).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub group_members_v6: BTreeMap<i64, Option<Vec<Ipv6Text>>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub provider_rules: Vec<Hunk<SgRule>>,
    /// IPv6 gateways, whole (they change with networks, never with instances).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ra: Option<Vec<RaPlan>>,
}

impl PlanDelta {
    /// True when applying it changes nothing but the generation.
    pub fn is_empty(&self) -> bool {
        let PlanDelta {
            generation: _,
            firewall_driver,
            bridges,
            dhcp,
            dhcp_hosts,
            gateway,
            floating,
            releases,
            ip_forward,
            refused,
            allow_same_net,
            instances,
            group_members,
            group_members_v6,
            provider_rules,
            ra,
        } = self;
        firewall_driver.is_none()
            && bridges.is_empty()
            && dhcp.is_empty()
            && dhcp_hosts.is_empty()
            && gateway.is_none()
            && floating.is_empty()
            && releases.is_empty()
            && ip_forward.is_none()
            && refused.is_empty()
            && allow_same_net.is_none()
            && instances.is_empty()
            && group_members.is_empty()
            && group_members_v6.is_empty()
            && provider_rules.is_empty()
            && ra.is_none()
    }
}

/// At most one hunk: the common prefix and suffix kept, the middle replaced. One inserted,
/// removed or changed element costs one element.
pub fn diff_list<T: PartialEq + Clone>(old: &[T], new: &[T]) -> Vec<Hunk<T>> {
    let prefix = old.iter().zip(new).take_while(|(a, b)| a == b).count();
    let room = old.len().min(new.len()) - prefix;
    let suffix = old
        .iter()
        .rev()
        .zip(new.iter().rev())
        .take(room)
        .take_while(|(a, b)| a == b)
        .count();
    if prefix == old.len() && prefix == new.len() {
        return Vec::new();
    }
    vec![Hunk {
        at: prefix,
        remove: old.len() - prefix - suffix,
        insert: new[prefix..new.len() - suffix].to_vec(),
    }]
}

/// Hunks for lists ordered by a key: one per run of changed, added or removed elements.
/// Correct for any two lists; compact when both are in key order.
pub fn diff_keyed<'a, T: PartialEq + Clone, K: Ord>(
    old: &'a [T],
    new: &'a [T],
    key: impl Fn(&'a T) -> K,
) -> Vec<Hunk<T>> {
    let mut hunks = Vec::new();
    let mut cur: Option<Hunk<T>> = None;
    let (mut i, mut j, mut pos) = (0, 0, 0);
    let flush = |cur: &mut Option<Hunk<T>>, hunks: &mut Vec<Hunk<T>>, pos: &mut usize| {
        if let Some(h) = cur.take() {
            *pos += h.insert.len();
            hunks.push(h);
        }
    };
    loop {
        let at = pos;
        let open = |cur: &mut Option<Hunk<T>>| {
            cur.get_or_insert_with(|| Hunk {
                at,
                remove: 0,
                insert: Vec::new(),
            })
            .at
        };
        match (old.get(i), new.get(j)) {
            (None, None) => break,
            (Some(o), Some(n)) if key(o) == key(n) => {
                if o == n {
                    flush(&mut cur, &mut hunks, &mut pos);
                    pos += 1;
                } else {
                    open(&mut cur);
                    let h = cur.as_mut().expect("open");
                    h.remove += 1;
                    h.insert.push(n.clone());
                }
                i += 1;
                j += 1;
            }
            (Some(o), Some(n)) if key(o) < key(n) => {
                open(&mut cur);
                cur.as_mut().expect("open").remove += 1;
                i += 1;
            }
            (Some(_), None) => {
                open(&mut cur);
                cur.as_mut().expect("open").remove += 1;
                i += 1;
            }
            (_, Some(n)) => {
                open(&mut cur);
                cur.as_mut().expect("open").insert.push(n.clone());
                j += 1;
            }
        }
    }
    flush(&mut cur, &mut hunks, &mut pos);
    hunks
}

/// Applies hunks in order; an error when one does not fit (the list is not the one the
/// hunks were made for).
pub fn apply_hunks<T: Clone>(list: &mut Vec<T>, hunks: &[Hunk<T>]) -> Result<(), String> {
    for h in hunks {
        let end = h.at.checked_add(h.remove).filter(|e| *e <= list.len());
        let Some(end) = end else {
            return Err(format!(
                "a change at {}..{} does not fit a list of {}",
                h.at,
                h.at.saturating_add(h.remove),
                list.len()
            ));
        };
        list.splice(h.at..end, h.insert.iter().cloned());
    }
    Ok(())
}

/// Whether two DHCP servers are the same but for their host entries.
pub fn same_server(a: &DhcpPlan, b: &DhcpPlan) -> bool {
    let DhcpPlan {
        network_uuid,
        network_id,
        label,
        bridge,
        listen_address,
        dhcp_start,
        netmask,
        gateway,
        lease_time,
        lease_max,
        domain,
        conf_file,
        dns_servers,
        mtu,
        hosts: _,
        revoked,
    } = a;
    *network_uuid == b.network_uuid
        && *network_id == b.network_id
        && *label == b.label
        && *bridge == b.bridge
        && *listen_address == b.listen_address
        && *dhcp_start == b.dhcp_start
        && *netmask == b.netmask
        && *gateway == b.gateway
        && *lease_time == b.lease_time
        && *lease_max == b.lease_max
        && *domain == b.domain
        && *conf_file == b.conf_file
        && *dns_servers == b.dns_servers
        && *mtu == b.mtu
        // Revocations change rarely and must reach the agent whole: they make the server
        // differ, so the entry travels as a whole.
        && *revoked == b.revoked
}

fn host_key(h: &DhcpHost) -> u32 {
    u32::from(h.address.addr())
}

/// What turns `old` into `new` (plans of one host).
pub fn diff(old: &HostPlan, new: &HostPlan) -> PlanDelta {
    let HostPlan {
        host: _,
        generation,
        firewall_driver,
        bridges,
        dhcp,
        gateway,
        floating,
        releases,
        ip_forward,
        refused,
        security,
        ra,
    } = new;
    let mut d = PlanDelta {
        generation: *generation,
        firewall_driver: (old.firewall_driver != *firewall_driver).then_some(*firewall_driver),
        bridges: diff_list(&old.bridges, bridges),
        gateway: (old.gateway != *gateway).then(|| gateway.clone()),
        floating: diff_list(&old.floating, floating),
        releases: diff_list(&old.releases, releases),
        ip_forward: (old.ip_forward != *ip_forward).then_some(*ip_forward),
        refused: diff_list(&old.refused, refused),
        allow_same_net: (old.security.allow_same_net != security.allow_same_net)
            .then_some(security.allow_same_net),
        instances: diff_keyed(&old.security.instances, &security.instances, |i| {
            i.uuid.as_str()
        }),
        provider_rules: diff_list(&old.security.provider_rules, &security.provider_rules),
        ra: (old.ra != *ra).then(|| ra.clone()),
        ..PlanDelta::default()
    };
    let servers_same =
        old.dhcp.len() == dhcp.len() && old.dhcp.iter().zip(dhcp).all(|(a, b)| same_server(a, b));
    if servers_same {
        for (a, b) in old.dhcp.iter().zip(dhcp) {
            let hunks = diff_keyed(&a.hosts, &b.hosts, host_key);
            if !hunks.is_empty() {
                d.dhcp_hosts.push(DhcpHostsDelta {
                    network_uuid: b.network_uuid.clone(),
                    hunks,
                });
            }
        }
    } else {
        d.dhcp = diff_list(&old.dhcp, dhcp);
    }
    let (og, ng) = (&old.security.group_members, &security.group_members);
    for k in og.keys().chain(ng.keys()) {
        if og.get(k) != ng.get(k) {
            d.group_members.insert(*k, ng.get(k).cloned());
        }
    }
    let (og, ng) = (&old.security.group_members_v6, &security.group_members_v6);
    for k in og.keys().chain(ng.keys()) {
        if og.get(k) != ng.get(k) {
            d.group_members_v6.insert(*k, ng.get(k).cloned());
        }
    }
    d
}

/// Applies a delta's DHCP parts to the DHCP servers of the plan it was made for (what
/// `apply` does to `plan.dhcp`), for a copy of them kept apart.
pub fn apply_dhcp(dhcp: &mut Vec<DhcpPlan>, d: &PlanDelta) -> Result<(), String> {
    apply_hunks(dhcp, &d.dhcp)?;
    for h in &d.dhcp_hosts {
        let server = dhcp
            .iter_mut()
            .find(|s| s.network_uuid == h.network_uuid)
            .ok_or_else(|| format!("no DHCP server for network {}", h.network_uuid))?;
        apply_hunks(&mut server.hosts, &h.hunks)?;
    }
    Ok(())
}

/// Applies a delta to the plan it was made for; on error the plan is left unusable and
/// the agent asks for the whole plan.
pub fn apply(plan: &mut HostPlan, d: &PlanDelta) -> Result<(), String> {
    plan.generation = d.generation;
    if let Some(f) = d.firewall_driver {
        plan.firewall_driver = f;
    }
    apply_hunks(&mut plan.bridges, &d.bridges)?;
    apply_dhcp(&mut plan.dhcp, d)?;
    if let Some(g) = &d.gateway {
        plan.gateway = g.clone();
    }
    apply_hunks(&mut plan.floating, &d.floating)?;
    apply_hunks(&mut plan.releases, &d.releases)?;
    if let Some(f) = d.ip_forward {
        plan.ip_forward = f;
    }
    apply_hunks(&mut plan.refused, &d.refused)?;
    if let Some(a) = d.allow_same_net {
        plan.security.allow_same_net = a;
    }
    apply_hunks(&mut plan.security.instances, &d.instances)?;
    for (g, m) in &d.group_members {
        match m {
            Some(m) => {
                plan.security.group_members.insert(*g, m.clone());
            }
            None => {
                plan.security.group_members.remove(g);
            }
        }
    }
    for (g, m) in &d.group_members_v6 {
        match m {
            Some(m) => {
                plan.security.group_members_v6.insert(*g, m.clone());
            }
            None => {
                plan.security.group_members_v6.remove(g);
            }
        }
    }
    apply_hunks(&mut plan.security.provider_rules, &d.provider_rules)?;
    if let Some(r) = &d.ra {
        plan.ra = r.clone();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    fn sorted(rng: &mut Rng, n: u64) -> Vec<(u64, u64)> {
        let mut v: Vec<(u64, u64)> = (0..rng.below(n))
            .map(|_| (rng.below(30), rng.below(3)))
            .collect();
        v.sort();
        v.dedup_by_key(|e| e.0);
        v
    }

    #[test]
    fn list_hunks_turn_old_into_new() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for _ in 0..5000 {
            let old = sorted(&mut rng, 12);
            let mut new = old.clone();
            for _ in 0..rng.below(4) {
                match rng.below(3) {
                    0 if !new.is_empty() => {
                        let at = rng.below(new.len() as u64) as usize;
                        new.remove(at);
                    }
                    1 if !new.is_empty() => {
                        let at = rng.below(new.len() as u64) as usize;
                        new[at].1 += 1;
                    }
                    _ => new.push((rng.below(30), 9)),
                }
            }
            new.sort();
            new.dedup_by_key(|e| e.0);
            for hunks in [diff_list(&old, &new), diff_keyed(&old, &new, |e| e.0)] {
                let mut got = old.clone();
                apply_hunks(&mut got, &hunks).unwrap();
                assert_eq!(got, new, "{old:?} -> {new:?} by {hunks:?}");
            }
            // Keyed hunks stay correct on lists out of key order.
            let mut shuffled = new.clone();
            shuffled.reverse();
            let mut got = old.clone();
            apply_hunks(&mut got, &diff_keyed(&old, &shuffled, |e| e.0)).unwrap();
            assert_eq!(got, shuffled);
        }
    }

    #[test]
    fn the_gateway_travels_whole_when_it_changed() {
        use crate::firewall::ServedNetwork;
        let old = HostPlan::default();
        let mut new = old.clone();
        new.generation = 2;
        new.gateway.forward.push("br100".parse().unwrap());
        new.gateway.served.push(ServedNetwork {
            bridge: "br100".parse().unwrap(),
            cidr: "10.0.0.0/24".parse().unwrap(),
            serves_dhcp: true,
        });
        let d = diff(&old, &new);
        assert_eq!(d.gateway.as_ref(), Some(&new.gateway));
        let mut got = old.clone();
        apply(&mut got, &d).unwrap();
        assert_eq!(got, new);
        let same = diff(&new, &new);
        assert!(same.gateway.is_none() && same.is_empty());
    }

    #[test]
    fn one_change_is_one_small_hunk() {
        let old: Vec<u32> = (0..1000).map(|x| x * 2).collect();
        let mut new = old.clone();
        new.insert(500, 999);
        let h = diff_list(&old, &new);
        assert_eq!(
            (h.len(), h[0].at, h[0].remove, h[0].insert.len()),
            (1, 500, 0, 1)
        );
        let h = diff_keyed(&old, &new[..], |x| *x);
        assert_eq!(h.iter().map(|h| h.insert.len()).sum::<usize>(), 1);
        assert!(diff_list(&old, &old).is_empty());
        let mut short = old.clone();
        assert!(apply_hunks(
            &mut short,
            &[Hunk {
                at: 999,
                remove: 2,
                insert: vec![]
            }]
        )
        .is_err());
    }
}
