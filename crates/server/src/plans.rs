//! Host plans kept per host and brought up to date from the store's change log, so that a
//! change costs what it touches: only the hosts a change names are looked at, a host's plan
//! is computed from queries scoped to that host, a change of one DHCP entry, instance or
//! floating IP is patched in (with `host_plan` over that one thing), and agents get what
//! changed over the plan they hold (`PlanDelta`) instead of the whole plan.
//!
//! The log lives in the store (`Store::host_changes`), so that several servers sharing one
//! store each follow it with their own cursor; what is kept here is this process's cache.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use novanet_core::config::{Config, HostOptions};
use novanet_core::delta::{self, DhcpHostsDelta, Hunk, PlanDelta};
use novanet_core::firewall::GatewayPlan;
use novanet_core::plan::{
    host_plan, DhcpHost, DhcpPlan, DhcpRelease, FloatingBinding, GroupRule, HostPlan,
    InstanceSecurity, SgRule, Snapshot,
};
use novanet_core::valid::Ipv4Text;
use novanet_core::Result;
use novanet_store::{ChangeScope, SecurityGroupRule, Store};
use serde::Serialize;
use tokio::sync::watch;

use crate::hostapi::sg_rule;

/// Deltas kept per host for agents a few changes behind; further behind, the whole plan.
const DELTAS_KEPT: usize = 64;
/// A host nobody asked for in this long is dropped from the cache (and rebuilt if asked).
const IDLE: Duration = Duration::from_secs(600);

/// The server's configuration as one host sees it (its agent's own options over it).
pub fn host_config(cfg: &Arc<Config>, options: &HostOptions) -> Arc<Config> {
    if options.is_empty() {
        cfg.clone()
    } else {
        Arc::new(options.apply(cfg))
    }
}

/// A host's plan from queries scoped to that host (`Store::host_inputs`), with the
/// configuration it was planned with.
pub fn scoped_plan(
    store: &dyn Store,
    cfg: &Arc<Config>,
    host: &str,
) -> Result<(HostPlan, Arc<Config>)> {
    let inputs = store.host_inputs(host)?;
    let rules = group_rules(inputs.rules);
    let provider_rules: Vec<SgRule> = inputs
        .provider_rules
        .into_iter()
        .filter_map(sg_rule)
        .collect();
    let hcfg = host_config(cfg, &inputs.options);
    let peers = segment_peers(inputs.segment_peers);
    let own = host_addresses(inputs.host_addresses);
    let snap = Snapshot {
        networks: &inputs.networks,
        bound: &inputs.bound,
        floating: &inputs.floating,
        rules: &rules,
        provider_rules: &provider_rules,
        segment_peers: &peers,
        host_addresses: &own,
    };
    Ok((host_plan(&snap, &hcfg, host, inputs.generation), hcfg))
}

/// The host's own addresses in multi-host networks, as the plan takes them: one that does
/// not parse is left out (the plan then names the network in `refused`).
pub fn host_addresses(raw: BTreeMap<i64, String>) -> BTreeMap<i64, Ipv4Text> {
    raw.into_iter()
        .filter_map(|(id, a)| Some((id, Ipv4Text::new(a.as_str()).ok()?)))
        .collect()
}

/// The hosts' reported management addresses, as the plan takes them: an address that does
/// not parse is left out (that host gets no flooded frames until its agent reports a valid one).
pub fn segment_peers(raw: BTreeMap<i64, Vec<String>>) -> BTreeMap<i64, Vec<Ipv4Text>> {
    raw.into_iter()
        .map(|(id, v)| {
            let v = v
                .iter()
                .filter_map(|a| Ipv4Text::new(a.as_str()).ok())
                .collect();
            (id, v)
        })
        .collect()
}

struct Entry {
    plan: HostPlan,
    /// The configuration `plan` was made with (the host's options applied).
    cfg: Arc<Config>,
    /// The generation of the last change to the plan's content.
    content: u64,
    /// `deltas` hold every change after this generation.
    floor: u64,
    /// Non-empty deltas, oldest first.
    deltas: VecDeque<PlanDelta>,
    /// Carries `content`: long polls wait on it.
    tx: watch::Sender<u64>,
    asked: Instant,
}

struct Inner {
    /// The store generation up to which the change log was read.
    cursor: u64,
    hosts: HashMap<String, Entry>,
}

/// What of one host's plan the log says may have changed.
#[derive(Default)]
struct Dirty {
    generation: u64,
    full: bool,
    addresses: BTreeSet<(i64, String)>,
    /// Instances, with the networks they were on.
    instances: BTreeMap<String, BTreeSet<i64>>,
    /// Floating IPs (bound on the host before or after).
    floating: BTreeSet<String>,
}

/// The answer to an agent's poll.
pub enum Poll {
    /// A JSON body: the whole plan or the deltas since the agent's generation.
    Changed(Vec<u8>),
    /// Nothing new since the agent's generation; the plan is at this generation.
    Unchanged(u64),
}

#[derive(Serialize)]
struct Reply<'a> {
    epoch: u64,
    generation: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    plan: Option<&'a HostPlan>,
    #[serde(skip_serializing_if = "Option::is_none")]
    deltas: Option<Vec<&'a PlanDelta>>,
}

pub struct Plans {
    /// Names this process's plans: generations a delta is over mean nothing to another
    /// process (another server, or this one restarted).
    pub epoch: u64,
    inner: Mutex<Inner>,
}

impl Plans {
    pub fn new(cursor: u64) -> Plans {
        let b = uuid::Uuid::new_v4().into_bytes();
        Plans {
            // Kept below 2^53 so that JSON readers in any language keep it exact; never 0,
            // which agents send when they hold no plan.
            epoch: (u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], 0]) >> 3) | 1,
            inner: Mutex::new(Inner {
                cursor,
                hosts: HashMap::new(),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Reads the change log after the cursor and brings the plans it touches up to date.
    /// Idempotent: a plan is recomputed from the store's current state.
    /// Returns the store's generation the plans now follow.
    pub fn catch_up(&self, store: &dyn Store, cfg: &Arc<Config>) -> Result<u64> {
        let mut inner = self.lock();
        let changes = store.host_changes(inner.cursor)?;
        if changes.upto == inner.cursor && changes.complete {
            return Ok(changes.upto);
        }
        let mut dirty: HashMap<String, Dirty> = HashMap::new();
        if !changes.complete {
            for (h, e) in &inner.hosts {
                let d = dirty.entry(h.clone()).or_default();
                d.full = true;
                d.generation = e.plan.generation.max(store.host_generation(h)?);
            }
        }
        for c in changes.changes {
            let hosts: Vec<String> = if c.host == "*" {
                inner.hosts.keys().cloned().collect()
            } else if inner.hosts.contains_key(&c.host) {
                vec![c.host.clone()]
            } else {
                continue;
            };
            for h in hosts {
                let d = dirty.entry(h).or_default();
                d.generation = d.generation.max(c.generation);
                match &c.scope {
                    _ if c.host == "*" => d.full = true,
                    ChangeScope::Plan => d.full = true,
                    ChangeScope::Address {
                        network_id,
                        address,
                    } => {
                        d.addresses.insert((*network_id, address.clone()));
                    }
                    ChangeScope::Floating { address } => {
                        d.floating.insert(address.clone());
                    }
                    ChangeScope::Instance { uuid, networks } => {
                        d.instances
                            .entry(uuid.clone())
                            .or_default()
                            .extend(networks);
                    }
                }
            }
        }
        for (host, d) in dirty {
            let Some(entry) = inner.hosts.get_mut(&host) else {
                continue;
            };
            if let Err(e) = refresh(store, cfg, &host, entry, d) {
                // Rebuilt when next asked for; its waiters see the entry go and ask again.
                tracing::error!(host = %host, error = %e, "planning the host");
                inner.hosts.remove(&host);
            }
        }
        inner.cursor = changes.upto;
        inner.hosts.retain(|_, e| e.asked.elapsed() < IDLE);
        Ok(changes.upto)
    }

    fn entry<'a>(
        inner: &'a mut Inner,
        store: &dyn Store,
        cfg: &Arc<Config>,
        host: &str,
    ) -> Result<&'a mut Entry> {
        if !inner.hosts.contains_key(host) {
            let (plan, hcfg) = scoped_plan(store, cfg, host)?;
            let g = plan.generation;
            inner.hosts.insert(
                host.to_string(),
                Entry {
                    plan,
                    cfg: hcfg,
                    content: g,
                    floor: g,
                    deltas: VecDeque::new(),
                    tx: watch::channel(g).0,
                    asked: Instant::now(),
                },
            );
        }
        let e = inner.hosts.get_mut(host).expect("just made");
        e.asked = Instant::now();
        Ok(e)
    }

    /// The host's whole plan, as JSON, and a receiver of its content generation.
    pub fn current(
        &self,
        store: &dyn Store,
        cfg: &Arc<Config>,
        host: &str,
    ) -> Result<(Vec<u8>, u64, watch::Receiver<u64>)> {
        let mut inner = self.lock();
        let e = Self::entry(&mut inner, store, cfg, host)?;
        let body = serde_json::to_vec(&e.plan).expect("plans serialize");
        Ok((body, e.plan.generation, e.tx.subscribe()))
    }

    /// An agent's poll: it holds the plan of `held` (epoch, generation), if any. Answers
    /// with the whole plan, the deltas over the held one (`deltas`), or nothing new (then
    /// wait on the receiver for the content generation to pass the held one).
    pub fn poll(
        &self,
        store: &dyn Store,
        cfg: &Arc<Config>,
        host: &str,
        held: Option<(u64, u64)>,
        deltas: bool,
    ) -> Result<(Poll, watch::Receiver<u64>)> {
        let epoch = self.epoch;
        let mut inner = self.lock();
        let e = Self::entry(&mut inner, store, cfg, host)?;
        let rx = e.tx.subscribe();
        let generation = e.plan.generation;
        let reply = |plan, deltas| {
            let r = Reply {
                epoch,
                generation,
                plan,
                deltas,
            };
            Poll::Changed(serde_json::to_vec(&r).expect("plans serialize"))
        };
        let poll = match held {
            Some((ep, g)) if ep == epoch && g >= e.floor && g <= generation => {
                if e.content <= g {
                    Poll::Unchanged(generation)
                } else if deltas {
                    let after: Vec<&PlanDelta> =
                        e.deltas.iter().filter(|d| d.generation > g).collect();
                    reply(None, Some(after))
                } else {
                    reply(Some(&e.plan), None)
                }
            }
            _ => reply(Some(&e.plan), None),
        };
        Ok((poll, rx))
    }

    /// The plans this process keeps (hosts, for tests and the bench).
    pub fn cached(&self) -> Vec<(String, HostPlan)> {
        let inner = self.lock();
        let mut v: Vec<(String, HostPlan)> = inner
            .hosts
            .iter()
            .map(|(h, e)| (h.clone(), e.plan.clone()))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }
}

fn group_rules(rules: Vec<SecurityGroupRule>) -> Vec<GroupRule> {
    rules
        .into_iter()
        .filter_map(|r| {
            let group_id = r.parent_group_id;
            sg_rule(r).map(|rule| GroupRule { group_id, rule })
        })
        .collect()
}

/// Brings one host's plan up to date: patched in place when only some of its instances or
/// the DHCP entries of some addresses changed, else recomputed from its scoped queries;
/// records what changed for the agents.
fn refresh(
    store: &dyn Store,
    cfg: &Arc<Config>,
    host: &str,
    e: &mut Entry,
    d: Dirty,
) -> Result<()> {
    let patch = if d.full {
        None
    } else {
        prepare(store, host, e, &d)?
    };
    let mut delta = match patch {
        Some(p) => apply_patch(e, p),
        None => {
            let (new, hcfg) = scoped_plan(store, cfg, host)?;
            let delta = delta::diff(&e.plan, &new);
            e.plan = new;
            e.cfg = hcfg;
            delta
        }
    };
    let generation = e.plan.generation.max(d.generation);
    e.plan.generation = generation;
    delta.generation = generation;
    if !delta.is_empty() {
        e.content = generation;
        e.deltas.push_back(delta);
        while e.deltas.len() > DELTAS_KEPT {
            if let Some(old) = e.deltas.pop_front() {
                e.floor = old.generation;
            }
        }
        e.tx.send_replace(generation);
    }
    Ok(())
}

/// One address's DHCP entry and release as its network's DHCP server has them now.
struct AddressPatch {
    server: usize,
    address: Ipv4Text,
    host: Option<DhcpHost>,
    release: Option<DhcpRelease>,
}

/// An instance's entry as it is now (None: it has none any more).
type InstancePatch = (String, Option<InstanceSecurity>);

/// A floating IP's binding and NAT rules on the host, before and now (`host_plan` over
/// that one floating IP).
struct FloatingPatch {
    old: Option<FloatingBinding>,
    new: Option<FloatingBinding>,
}

/// What to change in a plan, every part checked to give what a recomputation would.
struct Patch {
    addresses: Vec<AddressPatch>,
    instances: Vec<InstancePatch>,
    floating: Vec<FloatingPatch>,
}

/// Computes the parts that changed with the code that plans a host (`host_plan` over the
/// one address or instance), and checks that nothing else of the plan changed with them.
/// None when that cannot be made sure of: then the plan is recomputed.
fn prepare(store: &dyn Store, host: &str, e: &Entry, d: &Dirty) -> Result<Option<Patch>> {
    if !e.plan.refused.is_empty() {
        return Ok(None);
    }
    let Some(addresses) = prepare_addresses(store, host, e, &d.addresses)? else {
        return Ok(None);
    };
    let Some(instances) = prepare_instances(store, host, e, &d.instances)? else {
        return Ok(None);
    };
    let Some(floating) = prepare_floating(store, host, e, &d.floating)? else {
        return Ok(None);
    };
    Ok(Some(Patch {
        addresses,
        instances,
        floating,
    }))
}

/// The DHCP entries of addresses of single-host networks this host serves.
fn prepare_addresses(
    store: &dyn Store,
    host: &str,
    e: &Entry,
    addresses: &BTreeSet<(i64, String)>,
) -> Result<Option<Vec<AddressPatch>>> {
    let plan = &e.plan;
    // Releases are placed by their server's bridge: each must name one server.
    let shared_bridge = plan
        .dhcp
        .iter()
        .enumerate()
        .any(|(i, s)| plan.dhcp[..i].iter().any(|t| t.bridge == s.bridge));
    let mut patches = Vec::new();
    for (network_id, address) in addresses {
        let Some(n) = store.network_by_id(*network_id)? else {
            return Ok(None);
        };
        // The VPN address also decides the gateway's cloudpipe DNAT: recompute.
        if n.multi_host
            || n.host.as_deref() != Some(host)
            || n.vpn_private_address.as_deref() == Some(address.as_str())
        {
            return Ok(None);
        }
        let bound: Vec<_> = store.bound_address(address)?.into_iter().collect();
        if bound.iter().any(|b| b.network_id != n.id) {
            return Ok(None);
        }
        let nets = [n];
        let snap = Snapshot {
            networks: &nets,
            bound: &bound,
            floating: &[],
            rules: &[],
            provider_rules: &[],
            segment_peers: &Default::default(),
            host_addresses: &Default::default(),
        };
        let one = host_plan(&snap, &e.cfg, host, 0);
        let server = plan.dhcp.iter().position(|s| s.network_id == nets[0].id);
        let (server, mine) = match (server, one.dhcp.first()) {
            // No DHCP on this network: its addresses are in no plan here.
            (None, None) if one.releases.is_empty() => continue,
            (Some(i), Some(s)) => (i, s),
            _ => return Ok(None),
        };
        if !one.refused.is_empty()
            || one.dhcp.len() != 1
            || one.releases.len() > 1
            || mine.hosts.len() > 1
            || shared_bridge
            || !delta::same_server(&plan.dhcp[server], mine)
        {
            return Ok(None);
        }
        let Ok(address) = Ipv4Text::new(address.as_str()) else {
            return Ok(None);
        };
        patches.push(AddressPatch {
            server,
            address,
            host: mine.hosts.first().cloned(),
            release: one.releases.first().cloned(),
        });
    }
    Ok(Some(patches))
}

/// The entries of instances of this host, on networks other hosts serve, whose changes
/// leave the host's networks (bridges) and the groups its rules name as they were.
fn prepare_instances(
    store: &dyn Store,
    host: &str,
    e: &Entry,
    instances: &BTreeMap<String, BTreeSet<i64>>,
) -> Result<Option<Vec<InstancePatch>>> {
    let plan = &e.plan;
    let mut out = Vec::new();
    let mut checked = BTreeSet::new();
    for (uuid, was_on) in instances {
        let inputs = store.instance_inputs(uuid)?;
        let mut networks: BTreeMap<i64, Option<novanet_core::model::Network>> = inputs
            .networks
            .iter()
            .map(|n| (n.id, Some(n.clone())))
            .collect();
        for id in was_on {
            if !networks.contains_key(id) {
                networks.insert(*id, store.network_by_id(*id)?);
            }
        }
        for (id, n) in &networks {
            let Some(n) = n else {
                return Ok(None);
            };
            // Served here (gateway, DHCP, NAT): not an instance's business alone.
            if n.multi_host || n.host.as_deref() == Some(host) {
                return Ok(None);
            }
            if checked.insert(*id) {
                let want = n.bridge.is_some() && store.host_on_network(host, *id)?;
                let have = plan.bridges.iter().any(|b| b.network_uuid == n.uuid);
                if want != have {
                    return Ok(None);
                }
            }
        }
        let rules = group_rules(inputs.rules);
        let snap = Snapshot {
            networks: &inputs.networks,
            bound: &inputs.bound,
            floating: &[],
            rules: &rules,
            provider_rules: &[],
            segment_peers: &Default::default(),
            host_addresses: &Default::default(),
        };
        let one = host_plan(&snap, &e.cfg, host, 0);
        let mut entries = one.security.instances;
        if !one.refused.is_empty()
            || entries.len() > 1
            || entries.first().is_some_and(|i| i.uuid != *uuid)
        {
            return Ok(None);
        }
        out.push((uuid.clone(), entries.pop()));
    }
    // The groups whose members the plan lists are those its rules name: the same ones.
    let patched: BTreeSet<&str> = out.iter().map(|(u, _)| u.as_str()).collect();
    let sources: BTreeSet<i64> = plan
        .security
        .instances
        .iter()
        .filter(|i| !patched.contains(i.uuid.as_str()))
        .chain(out.iter().filter_map(|(_, i)| i.as_ref()))
        .flat_map(|i| i.rules.iter().filter_map(|r| r.group))
        .collect();
    if !sources.iter().eq(plan.security.group_members.keys()) {
        return Ok(None);
    }
    Ok(Some(out))
}

/// The floating IPs' bindings (which carry their NAT), as the host's plan had them and as
/// it has them now.
fn prepare_floating(
    store: &dyn Store,
    host: &str,
    e: &Entry,
    addresses: &BTreeSet<String>,
) -> Result<Option<Vec<FloatingPatch>>> {
    let plan = &e.plan;
    let one = |f: Option<novanet_core::model::FloatingIp>| {
        let floating: Vec<_> = f.into_iter().collect();
        let snap = Snapshot {
            networks: &[],
            bound: &[],
            floating: &floating,
            rules: &[],
            provider_rules: &[],
            segment_peers: &Default::default(),
            host_addresses: &Default::default(),
        };
        let p = host_plan(&snap, &e.cfg, host, 0);
        match (
            p.floating.len(),
            p.gateway == GatewayPlan::default(),
            p.refused.is_empty(),
        ) {
            (0, true, true) => Some(None),
            (1, true, true) => p.floating.into_iter().next().map(Some),
            _ => None,
        }
    };
    let mut out = Vec::new();
    for address in addresses {
        // As the plan has it.
        let old = match plan.floating.iter().find(|b| b.address.as_str() == address) {
            None => None,
            Some(b) => {
                let f = novanet_core::model::FloatingIp {
                    id: 0,
                    address: b.address.to_string(),
                    pool: String::new(),
                    interface: b.interface.to_string(),
                    project_id: None,
                    fixed_ip: Some(b.fixed.to_string()),
                    instance_uuid: None,
                    host: Some(host.to_string()),
                    auto_assigned: false,
                };
                let Some(Some(ob)) = one(Some(f)) else {
                    return Ok(None);
                };
                if ob != *b {
                    return Ok(None);
                }
                Some(ob)
            }
        };
        let now = store.floating_ip(address).ok();
        let Some(new) = one(now) else {
            return Ok(None);
        };
        out.push(FloatingPatch { old, new });
    }
    Ok(Some(out))
}

fn patch_floating(plan: &mut HostPlan, p: FloatingPatch, delta: &mut PlanDelta) {
    if p.old == p.new {
        return;
    }
    if let Some(b) = &p.old {
        let at = plan.floating.iter().position(|x| x == b).expect("checked");
        let hunk = Hunk {
            at,
            remove: 1,
            insert: Vec::new(),
        };
        delta::apply_hunks(&mut plan.floating, std::slice::from_ref(&hunk)).expect("made for it");
        delta.floating.push(hunk);
    }
    if let Some(b) = p.new {
        let key = u32::from(b.address.addr());
        let j = plan
            .floating
            .partition_point(|x| u32::from(x.address.addr()) < key);
        let hunk = Hunk {
            at: j,
            remove: 0,
            insert: vec![b],
        };
        delta::apply_hunks(&mut plan.floating, std::slice::from_ref(&hunk)).expect("made for it");
        delta.floating.push(hunk);
    }
}

fn apply_patch(e: &mut Entry, p: Patch) -> PlanDelta {
    let mut delta = PlanDelta::default();
    for f in p.floating {
        patch_floating(&mut e.plan, f, &mut delta);
    }
    for a in p.addresses {
        patch_address(&mut e.plan, a, &mut delta);
    }
    for (uuid, entry) in p.instances {
        let list = &mut e.plan.security.instances;
        let at = list.partition_point(|i| i.uuid < uuid);
        let present = list.get(at).is_some_and(|i| i.uuid == uuid);
        if present && list.get(at) == entry.as_ref() || !present && entry.is_none() {
            continue;
        }
        let hunk = Hunk {
            at,
            remove: usize::from(present),
            insert: entry.into_iter().collect(),
        };
        delta::apply_hunks(list, std::slice::from_ref(&hunk)).expect("made for this list");
        delta.instances.push(hunk);
    }
    delta
}

fn patch_address(plan: &mut HostPlan, p: AddressPatch, delta: &mut PlanDelta) {
    let key = u32::from(p.address.addr());
    let server = &mut plan.dhcp[p.server];
    let at = server
        .hosts
        .partition_point(|h| u32::from(h.address.addr()) < key);
    let present = server.hosts.get(at).is_some_and(|h| h.address == p.address);
    let same = present && server.hosts.get(at) == p.host.as_ref();
    if !same && (present || p.host.is_some()) {
        let hunk = Hunk {
            at,
            remove: usize::from(present),
            insert: p.host.into_iter().collect(),
        };
        delta::apply_hunks(&mut server.hosts, std::slice::from_ref(&hunk))
            .expect("made for this list");
        match delta
            .dhcp_hosts
            .iter_mut()
            .find(|h| h.network_uuid == server.network_uuid)
        {
            Some(h) => h.hunks.push(hunk),
            None => delta.dhcp_hosts.push(DhcpHostsDelta {
                network_uuid: server.network_uuid.clone(),
                hunks: vec![hunk],
            }),
        }
    }
    // Releases are grouped by server, in server order, then by address.
    let bridge = server.bridge.clone();
    let order = |r: &DhcpRelease, servers: &[DhcpPlan]| {
        let s = servers
            .iter()
            .position(|s| s.bridge == r.bridge)
            .unwrap_or(usize::MAX);
        (s, u32::from(r.address.addr()))
    };
    let old = plan
        .releases
        .iter()
        .position(|r| r.bridge == bridge && r.address == p.address);
    if old.map(|i| &plan.releases[i]) == p.release.as_ref() {
        return;
    }
    if let Some(i) = old {
        let hunk = Hunk {
            at: i,
            remove: 1,
            insert: Vec::new(),
        };
        delta::apply_hunks(&mut plan.releases, std::slice::from_ref(&hunk))
            .expect("made for this list");
        delta.releases.push(hunk);
    }
    if let Some(r) = p.release {
        let k = order(&r, &plan.dhcp);
        let at = plan
            .releases
            .iter()
            .filter(|x| order(x, &plan.dhcp) < k)
            .count();
        let hunk = Hunk {
            at,
            remove: 0,
            insert: vec![r],
        };
        delta::apply_hunks(&mut plan.releases, std::slice::from_ref(&hunk))
            .expect("made for this list");
        delta.releases.push(hunk);
    }
}
