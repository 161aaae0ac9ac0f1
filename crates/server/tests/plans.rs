//! Property: after any sequence of changes, every host's agent holds exactly the plan
//! computed from the whole store, although the server only recomputed (or patched) the
//! plans of the hosts each change named, from queries scoped to those hosts, and sent the
//! agents deltas over what they held. Agents poll at different paces (some fall far behind,
//! some restart), and a second server on the same store follows the change log alone.

use std::collections::BTreeMap;
use std::sync::Arc;

use novanet_core::config::{Config, HostOptions, Manager, SegmentDriver};
use novanet_core::delta::{self, PlanDelta};
use novanet_core::model::{InstanceSpec, RequestedNetwork};
use novanet_core::plan::HostPlan;
use novanet_core::planning::NetworkRequest;
use novanet_server::hostapi::compute_plan;
use novanet_server::plans::Poll;
use novanet_server::AppState;
use novanet_store::prelude::*;
use novanet_store::{ChangeScope, NetworkUpdate, NewRule, ServiceReport, SqliteStore};
use serde_json::Value;

/// xorshift64*: the same cases on every run, no dependency.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
    fn one_in(&mut self, n: usize) -> bool {
        self.below(n) == 0
    }
    fn pick<'a, T>(&mut self, v: &'a [T]) -> Option<&'a T> {
        if v.is_empty() {
            None
        } else {
            Some(&v[self.below(v.len())])
        }
    }
}

const HOSTS: [&str; 5] = ["net-1", "net-2", "c1", "c2", "c3"];
const PROJECTS: [&str; 2] = ["p1", "p2"];

mod common;
use common::TempDir;

/// A simulated agent: the plan it holds, from which server epoch.
#[derive(Default)]
struct Agent {
    held: Option<(u64, HostPlan)>,
    changed: usize,
}

impl Agent {
    /// One poll, without waiting, through the wire form.
    fn poll(&mut self, st: &AppState, host: &str) {
        let held = self.held.as_ref().map(|(e, p)| (*e, p.generation));
        let (poll, _) = st
            .plans
            .poll(st.store.as_ref(), &st.cfg, host, held, true)
            .expect("poll");
        let body = match poll {
            Poll::Unchanged(g) => {
                let (_, p) = self.held.as_mut().expect("unchanged needs a plan");
                p.generation = g;
                return;
            }
            Poll::Changed(b) => b,
        };
        self.changed += 1;
        let v: Value = serde_json::from_slice(&body).expect("JSON");
        let epoch = v["epoch"].as_u64().expect("epoch");
        let generation = v["generation"].as_u64().expect("generation");
        if let Some(p) = v.get("plan") {
            self.held = Some((epoch, serde_json::from_value(p.clone()).expect("plan")));
        } else {
            let deltas: Vec<PlanDelta> =
                serde_json::from_value(v["deltas"].clone()).expect("deltas");
            let (_, plan) = self.held.as_mut().expect("deltas need a plan");
            for d in &deltas {
                delta::apply(plan, d).expect("delta fits");
            }
            plan.generation = generation;
        }
    }
}

#[derive(Default)]
struct World {
    networks: Vec<String>,
    instances: Vec<(String, String)>,
    groups: Vec<(i64, String)>,
    rules: Vec<i64>,
    provider: Vec<i64>,
    floating: Vec<String>,
}

fn spec(rng: &mut Rng, w: &World, store: &dyn Store, n: usize) -> InstanceSpec {
    let project = PROJECTS[rng.below(2)].to_string();
    let mut groups = vec!["default".to_string()];
    let own: Vec<&(i64, String)> = w.groups.iter().filter(|g| g.1 == project).collect();
    if let Some(g) = rng.pick(&own) {
        if let Ok(g) = store.security_group(g.0) {
            groups = vec![g.name];
        }
    }
    let networks = if rng.one_in(2) {
        Vec::new()
    } else {
        rng.pick(&w.networks)
            .map(|u| {
                vec![RequestedNetwork {
                    uuid: u.clone(),
                    fixed_ip: None,
                }]
            })
            .unwrap_or_default()
    };
    InstanceSpec {
        name: format!("vm-{n}"),
        project_id: project,
        user_id: "u".into(),
        host: if rng.one_in(12) {
            None
        } else {
            Some(HOSTS[rng.below(HOSTS.len())].to_string())
        },
        security_groups: groups,
        networks,
        ..InstanceSpec::default()
    }
}

fn rule(rng: &mut Rng, w: &World) -> NewRule {
    let source = if rng.one_in(2) {
        rng.pick(&w.groups).map(|g| g.0)
    } else {
        None
    };
    let port = 20 + rng.below(5) as i32;
    NewRule {
        protocol: Some("tcp".into()),
        from_port: Some(port),
        to_port: Some(port),
        cidr: if source.is_some() {
            None
        } else {
            Some(format!("10.{}.0.0/16", rng.below(3)))
        },
        group_id: source,
    }
}

/// One random change; most fail now and then (a full network, a group in use), as they
/// would for a client.
fn change(rng: &mut Rng, w: &mut World, store: &dyn Store, cfg: &Config, n: usize) {
    let now = 1_800_000_000;
    let _ = match rng.below(26) {
        0 if w.networks.len() < 4 => {
            let k = w.networks.len();
            let req = NetworkRequest {
                label: format!("net{k}"),
                cidr: Some(format!("10.{k}.0.0/27")),
                bridge: Some(format!("br{}", 100 + k)),
                multi_host: Some(rng.one_in(3)),
                cidr_v6: cfg.use_ipv6.then(|| format!("fd00:{k}::/64")),
                ..NetworkRequest::default()
            };
            store.create_networks(&req, cfg).map(|(nets, _)| {
                w.networks.extend(nets.into_iter().map(|n| n.uuid));
            })
        }
        1 => {
            let host = HOSTS[rng.below(HOSTS.len())];
            let options = HostOptions {
                flat_interface: rng.one_in(2).then(|| "eth2".to_string()),
                // VXLAN floods to each host's reported address, which may change.
                my_ip: (!rng.one_in(4)).then(|| format!("192.168.56.{}", 10 + rng.below(3))),
                ..HostOptions::default()
            };
            store.report_service(
                &ServiceReport {
                    host: host.into(),
                    network_host: host.starts_with("net"),
                    networks: Vec::new(),
                    options,
                },
                now,
            )
        }
        2 => store.claim_networks(HOSTS[rng.below(2)]).map(|_| ()),
        3..=7 => store
            .create_instance(&spec(rng, w, store, n), cfg)
            .map(|i| {
                // Most guests take their lease soon after the boot.
                if !rng.one_in(3) {
                    for a in store.instance_addresses(&i.uuid).unwrap() {
                        store.lease_fixed_ip(&a.address, Some(&a.mac)).unwrap();
                    }
                }
                w.instances.push((i.uuid, i.spec.project_id));
            }),
        8 | 9 if !w.instances.is_empty() => {
            let i = rng.below(w.instances.len());
            let (uuid, _) = w.instances.remove(i);
            store.delete_instance(&uuid, cfg, now).map(|_| ())
        }
        10 => match (rng.pick(&w.instances), rng.pick(&w.networks)) {
            (Some((i, _)), Some(net)) => store.add_fixed_ip(i, net, cfg).map(|_| ()),
            _ => Ok(()),
        },
        11 => match rng.pick(&w.instances) {
            Some((i, _)) => {
                let addrs = store.instance_addresses(i).unwrap_or_default();
                match rng.pick(&addrs) {
                    Some(a) => store.remove_fixed_ip(i, &a.address, now),
                    None => Ok(()),
                }
            }
            None => Ok(()),
        },
        12 | 13 => {
            // dnsmasq's lease events: most addresses are leased soon after their boot, and
            // released (after a delete) some time later.
            let ids: Vec<i64> = store.networks().unwrap().iter().map(|n| n.id).collect();
            let bound = store.bound_addresses(&ids).unwrap();
            match rng.pick(&bound) {
                Some(b) if rng.below(4) != 0 => {
                    store.lease_fixed_ip(&b.address, Some(&b.mac)).map(|_| ())
                }
                Some(b) => store
                    .release_fixed_ip(&b.address, Some(&b.mac), now)
                    .map(|_| ()),
                None => Ok(()),
            }
        }
        14 => {
            let ids: Vec<i64> = store.networks().unwrap().iter().map(|n| n.id).collect();
            let bound = store.bound_addresses(&ids).unwrap();
            match rng.pick(&bound) {
                Some(b) => store.set_vif_device(&b.vif_uuid, &format!("vnet{}", rng.below(9))),
                None => Ok(()),
            }
        }
        15 if rng.one_in(3) => store
            .disassociate_stale_fixed_ips(now + 10_000, 600)
            .map(|_| ()),
        16 | 24 | 25 => {
            // Floating IPs: a pool once, then allocate, associate, disassociate, release.
            if w.floating.is_empty() {
                let addrs: Vec<std::net::Ipv4Addr> = (1..6)
                    .map(|i| std::net::Ipv4Addr::new(172, 24, 4, i))
                    .collect();
                let r = store.create_floating_ips("nova", "eth0", &addrs);
                w.floating = addrs.iter().map(|a| a.to_string()).collect();
                r.map(|_| ())
            } else {
                let a = rng.pick(&w.floating).cloned().expect("pool");
                let fl = store.floating_ip(&a).expect("floating");
                match (&fl.project_id, &fl.fixed_ip, rng.pick(&w.instances)) {
                    (None, _, Some((_, p))) => {
                        store.allocate_floating_ip(p, "nova", -1).map(|_| ())
                    }
                    (Some(p), None, Some((i, ip))) if p == ip => {
                        store.associate_floating_ip(&a, i, None, None).map(|_| ())
                    }
                    (Some(_), Some(_), _) if rng.one_in(2) => {
                        store.disassociate_floating_ip(&a, None, None)
                    }
                    (Some(_), _, _) => store.release_floating_ip(&a, None),
                    _ => Ok(()),
                }
            }
        }
        17 => {
            let p = PROJECTS[rng.below(2)];
            store
                .create_security_group(p, &format!("g{n}"), "", -1)
                .map(|g| w.groups.push((g.id, p.to_string())))
        }
        18 | 19 => match rng.pick(&w.groups).map(|g| g.0) {
            Some(g) => store
                .add_security_group_rule(g, &rule(rng, w), -1)
                .map(|r| w.rules.push(r.id)),
            None => Ok(()),
        },
        20 if !w.rules.is_empty() => {
            let r = w.rules.remove(rng.below(w.rules.len()));
            store.delete_security_group_rule(r).map(|_| ())
        }
        21 => match (rng.pick(&w.instances), rng.pick(&w.groups)) {
            (Some((i, ip)), Some((g, gp))) if ip == gp => {
                if rng.one_in(2) {
                    store.add_instance_security_group(i, *g)
                } else {
                    store.remove_instance_security_group(i, *g)
                }
            }
            _ => Ok(()),
        },
        22 => {
            if w.provider.is_empty() || rng.one_in(2) {
                let r = NewRule {
                    protocol: Some("tcp".into()),
                    from_port: Some(25),
                    to_port: Some(25 + rng.below(3) as i32),
                    cidr: Some("0.0.0.0/0".into()),
                    group_id: None,
                };
                store.add_provider_rule(&r).map(|r| w.provider.push(r.id))
            } else {
                let r = w.provider.remove(0);
                store.delete_provider_rule(r)
            }
        }
        23 => match rng.below(8) {
            0 if !w.groups.is_empty() => {
                let (g, _) = w.groups.remove(rng.below(w.groups.len()));
                store.delete_security_group(g)
            }
            1 => match rng.pick(&w.networks) {
                Some(u) => store
                    .update_network(
                        u,
                        &NetworkUpdate {
                            host: Some(rng.one_in(3).then(|| HOSTS[rng.below(2)].to_string())),
                            ..NetworkUpdate::default()
                        },
                    )
                    .map(|_| ()),
                None => Ok(()),
            },
            2 if rng.one_in(4) => {
                let p = PROJECTS[rng.below(2)];
                w.groups.retain(|g| g.1 != p);
                store.scrub_project(p).map(|_| ())
            }
            3 => match rng.pick(&w.networks).cloned() {
                Some(u) => store.delete_network(&u, false).map(|_| {
                    w.networks.retain(|x| *x != u);
                }),
                None => Ok(()),
            },
            _ => Ok(()),
        },
        _ => Ok(()),
    };
}

fn configs() -> Vec<Config> {
    let base = Config {
        flat_network_bridge: Some("br100".into()),
        ..Config::default()
    };
    vec![
        base.clone(),
        Config {
            network_manager: Manager::Flat,
            allow_same_net_traffic: false,
            ..base.clone()
        },
        Config {
            force_dhcp_release: false,
            ..base.clone()
        },
        Config {
            network_manager: Manager::Vlan,
            vlan_interface: Some("eth2".into()),
            segment_driver: SegmentDriver::Vxlan,
            ..base.clone()
        },
        // Dual stack: v6 addresses (from the project) in ports and group members, radvd.
        Config {
            use_ipv6: true,
            ipv6_backend: "account_identifier".into(),
            ..base
        },
    ]
}

#[test]
fn every_host_holds_the_plan_computed_from_scratch() {
    let cases = 24u64;
    let steps = 150;
    let mut changed_total = 0;
    let mut patched_only = (0, 0, 0);
    let mut releases_seen = 0;
    for case in 0..cases {
        let cfg = configs()[case as usize % configs().len()].clone();
        let dir = TempDir::new(&format!("plans-prop-{case}"));
        let sqlite = Arc::new(SqliteStore::open_dir(&dir.0).unwrap());
        let store: Arc<dyn Store> = sqlite.clone();
        let st = AppState::new(store.clone(), cfg.clone());
        // A second server on the same database: it follows the change log only.
        let other: Arc<dyn Store> = Arc::new(SqliteStore::open_dir(&dir.0).unwrap());
        let mut st2 = AppState::new(other.clone(), cfg.clone());
        // A third one that reads the log seldom: the log is pruned past its cursor, and it
        // recomputes every plan it keeps.
        let st3 = AppState::new(other.clone(), cfg.clone());
        let mut agents3: BTreeMap<&str, Agent> =
            HOSTS.iter().map(|h| (*h, Agent::default())).collect();
        let mut rng = Rng(0x2545_f491_4f6c_dd1d ^ (case + 1).wrapping_mul(0x9e37_79b9));
        let mut w = World::default();
        let mut agents: BTreeMap<&str, Agent> =
            HOSTS.iter().map(|h| (*h, Agent::default())).collect();
        let mut agents2: BTreeMap<&str, Agent> =
            HOSTS.iter().map(|h| (*h, Agent::default())).collect();
        for step in 0..steps {
            let before = store.generation().unwrap();
            change(&mut rng, &mut w, store.as_ref(), &cfg, step);
            // Changes to one address, instance or floating IP of a plan, to patch.
            for c in store.host_changes(before).unwrap().changes {
                match c.scope {
                    ChangeScope::Address { .. } => patched_only.0 += 1,
                    ChangeScope::Instance { .. } => patched_only.1 += 1,
                    ChangeScope::Floating { .. } => patched_only.2 += 1,
                    ChangeScope::Plan => {}
                }
            }
            if rng.one_in(60) {
                // The second server restarts: its agents' plans are from another epoch.
                st2 = AppState::new(other.clone(), cfg.clone());
            }
            st2.catch_up();
            if step % 25 == 24 {
                sqlite
                    .prune_changes(store.generation().unwrap().saturating_sub(2))
                    .unwrap();
            }
            if step % 30 == 29 {
                st3.catch_up();
                for host in HOSTS {
                    let a = agents3.get_mut(host).unwrap();
                    a.poll(&st3, host);
                    let want = compute_plan(&st, host).unwrap();
                    let got = &a.held.as_ref().unwrap().1;
                    assert!(
                        got == &want,
                        "case {case} step {step}: {host} through the third server, by {:?}",
                        delta::diff(got, &want)
                    );
                }
            }
            for (i, host) in HOSTS.iter().enumerate() {
                // c3's agent falls far behind (past the deltas kept) before it asks again.
                let pace = [1, 1, 2, 3, 97][i];
                if step % pace != 0 && step + 1 != steps {
                    continue;
                }
                let a = agents.get_mut(host).unwrap();
                if rng.one_in(40) {
                    a.held = None;
                }
                let before = a.changed;
                a.poll(&st, host);
                let want = compute_plan(&st, host).unwrap();
                let (_, got) = a.held.as_ref().unwrap();
                assert!(
                    got == &want,
                    "case {case} step {step}: {host}'s agent holds another plan than the one \
                     computed from scratch, by {:?}",
                    delta::diff(got, &want)
                );
                changed_total += a.changed - before;
                releases_seen = releases_seen.max(want.releases.len());
                let a2 = agents2.get_mut(host).unwrap();
                a2.poll(&st2, host);
                let got = &a2.held.as_ref().unwrap().1;
                assert!(
                    got == &want,
                    "case {case} step {step}: {host} through the second server, by {:?}",
                    delta::diff(got, &want)
                );
            }
            for (host, plan) in st.plans.cached() {
                let want = compute_plan(&st, &host).unwrap();
                assert!(
                    plan == want,
                    "case {case}: kept {host}, by {:?}",
                    delta::diff(&plan, &want)
                );
            }
        }

        drop((st2, st3));
    }
    // The cases reach what they are for: agents changed, address-only patches, several
    // leases awaiting their release at once.
    assert!(
        changed_total > 0
            && patched_only.0 > 0
            && patched_only.1 > 0
            && patched_only.2 > 0
            && releases_seen >= 3,
        "{changed_total} {patched_only:?} {releases_seen}"
    );
}

/// A change wakes only the hosts whose plans it changes: a boot on c1 of a single-host
/// network served by net-1 touches c1 and net-1 and nobody else; a login touches nobody.
#[test]
fn a_boot_touches_its_host_and_its_dhcp_host_only() {
    let dir = TempDir::new("plans-touch");
    let store = SqliteStore::open_dir(&dir.0).unwrap();
    let cfg = Config::default();
    let req = NetworkRequest {
        label: "vmnet".into(),
        cidr: Some("10.0.0.0/24".into()),
        bridge: Some("br100".into()),
        ..NetworkRequest::default()
    };
    store.create_networks(&req, &cfg).unwrap();
    store.claim_networks("net-1").unwrap();
    let boot = |host: &str| {
        store
            .create_instance(
                &InstanceSpec {
                    name: "vm".into(),
                    project_id: "p".into(),
                    host: Some(host.into()),
                    ..InstanceSpec::default()
                },
                &cfg,
            )
            .unwrap()
    };
    for h in ["c1", "c2", "c3"] {
        boot(h);
    }
    let before = store.generation().unwrap();
    let i = boot("c2");
    let touched: Vec<(String, ChangeScope)> = store
        .host_changes(before)
        .unwrap()
        .changes
        .into_iter()
        .map(|c| (c.host, c.scope))
        .collect();
    let address = store.instance_addresses(&i.uuid).unwrap()[0]
        .address
        .clone();
    assert_eq!(
        touched,
        [
            (
                "c2".to_string(),
                ChangeScope::Instance {
                    uuid: i.uuid.clone(),
                    networks: vec![1]
                }
            ),
            (
                "net-1".to_string(),
                ChangeScope::Address {
                    network_id: 1,
                    address
                }
            )
        ]
    );
    let g = store.generation().unwrap();
    let p = store.create_project("demo").unwrap();
    let u = store.create_user("demo", "pw").unwrap();
    store.assign_role(&u.id, &p.id, "member").unwrap();
    store.issue_token("demo", "pw", "demo", 1, 3600).unwrap();
    assert!(store.host_changes(g).unwrap().changes.is_empty());
    assert!(store.host_generation("c1").unwrap() < g);
    store.delete_instance(&i.uuid, &cfg, 1).unwrap();
    let counts: BTreeMap<String, u64> = store.instance_counts().unwrap().into_iter().collect();
    assert_eq!(
        counts,
        BTreeMap::from([("c1".into(), 1), ("c2".into(), 1), ("c3".into(), 1)])
    );
}

/// The long poll over HTTP: the whole plan first, then what changed since the plan held,
/// nothing (after the wait) when nothing did, the whole plan again for another epoch.
#[tokio::test]
async fn the_long_poll_sends_what_changed_over_http() {
    use common::{boot, create_network, Harness};
    let h = Harness::new("plan-poll").await;
    h.expect(
        200,
        "POST",
        "/novanet/v1/hosts/net-1/report",
        h.admin(),
        Some(serde_json::json!({"network_host": true})),
    )
    .await;
    create_network(&h, "vmnet", "10.0.0.0/24").await;
    let path = "/novanet/v1/hosts/net-1/plan";
    let v = h
        .expect(
            200,
            "GET",
            &format!("{path}?epoch=0&form=full"),
            h.admin(),
            None,
        )
        .await;
    let epoch = v["epoch"].as_u64().unwrap();
    let mut plan: HostPlan = serde_json::from_value(v["plan"].clone()).unwrap();
    assert_eq!(plan.generation, v["generation"].as_u64().unwrap());
    assert!(plan.dhcp[0].hosts.is_empty());
    boot(&h, h.demo(), "vm").await;
    let v = h
        .expect(
            200,
            "GET",
            &format!("{path}?epoch={epoch}&after={}&wait=5", plan.generation),
            h.admin(),
            None,
        )
        .await;
    assert!(v.get("plan").is_none(), "{v}");
    let deltas: Vec<PlanDelta> = serde_json::from_value(v["deltas"].clone()).unwrap();
    for d in &deltas {
        delta::apply(&mut plan, d).unwrap();
    }
    plan.generation = v["generation"].as_u64().unwrap();
    assert_eq!(plan, compute_plan(&h.state, "net-1").unwrap());
    assert_eq!(plan.dhcp[0].hosts[0].hostname.as_str(), "vm");
    assert!(v.to_string().len() < 1000, "a boot's delta is small: {v}");
    let started = std::time::Instant::now();
    let v = h
        .expect(
            200,
            "GET",
            &format!("{path}?epoch={epoch}&after={}&wait=1", plan.generation),
            h.admin(),
            None,
        )
        .await;
    assert!(started.elapsed() >= std::time::Duration::from_millis(900));
    assert_eq!(
        v,
        serde_json::json!({"epoch": epoch, "generation": plan.generation})
    );
    let v = h
        .expect(
            200,
            "GET",
            &format!("{path}?epoch={}&after={}", epoch + 1, plan.generation),
            h.admin(),
            None,
        )
        .await;
    assert_eq!(v["plan"], serde_json::to_value(&plan).unwrap());
    h.expect(
        400,
        "GET",
        &format!("{path}?epoch=1&form=xml"),
        h.admin(),
        None,
    )
    .await;
    h.expect(400, "GET", "/novanet/v1/hosts/a%20b/plan", h.admin(), None)
        .await;
}
