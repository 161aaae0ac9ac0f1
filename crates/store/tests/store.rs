//! Store behaviour against real SQLite files: allocation order, exhaustion, release,
//! reservation, concurrency across connections and crash safety.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use novanet_core::config::{Config, Manager};
use novanet_core::model::{InstanceSpec, RequestedNetwork};
use novanet_core::planning::NetworkRequest;
use novanet_core::Error;
use novanet_store::{SqliteStore, Store};

struct TempDir(PathBuf);
impl TempDir {
    fn new(name: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!("novanet-store-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    fn path(&self) -> &Path {
        &self.0
    }
}
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn cfg() -> Config {
    Config::default()
}

fn vmnet(store: &SqliteStore, cidr: &str) -> String {
    let req = NetworkRequest {
        label: "vmnet".into(),
        cidr: Some(cidr.into()),
        bridge: Some("br100".into()),
        network_size: Some(1 << (32 - cidr.split('/').nth(1).unwrap().parse::<u32>().unwrap())),
        ..Default::default()
    };
    store.create_networks(&req, &cfg()).unwrap().0[0]
        .uuid
        .clone()
}

fn spec(name: &str) -> InstanceSpec {
    InstanceSpec {
        name: name.into(),
        project_id: "p1".into(),
        user_id: "u1".into(),
        host: Some("compute-1".into()),
        ..Default::default()
    }
}

fn first_address(store: &SqliteStore, uuid: &str) -> String {
    store.instance_addresses(uuid).unwrap()[0].address.clone()
}

#[test]
fn first_instance_gets_dot_two_and_a_nova_mac() {
    let d = TempDir::new("first");
    let s = SqliteStore::open_dir(d.path()).unwrap();
    vmnet(&s, "10.0.0.0/24");
    let i = s.create_instance(&spec("cirros"), &cfg()).unwrap();
    let a = &s.instance_addresses(&i.uuid).unwrap()[0];
    assert_eq!(a.address, "10.0.0.2");
    assert_eq!(a.network_label, "vmnet");
    assert!(a.mac.starts_with("fa:16:3e:"), "{}", a.mac);
    assert_eq!(i.hostname, "cirros");
    let j = s.create_instance(&spec("two"), &cfg()).unwrap();
    assert_eq!(first_address(&s, &j.uuid), "10.0.0.3");
}

#[test]
fn exhaustion_is_clean() {
    let d = TempDir::new("exhaust");
    let s = SqliteStore::open_dir(d.path()).unwrap();
    vmnet(&s, "10.0.0.0/29"); // .2 .. .6 allocatable
    for n in 0..5 {
        s.create_instance(&spec(&format!("vm{n}")), &cfg()).unwrap();
    }
    let before = s.instances(None).unwrap().len();
    let e = s.create_instance(&spec("late"), &cfg()).unwrap_err();
    assert!(matches!(e, Error::Exhausted(_)), "{e}");
    assert!(
        e.to_string().contains("no fixed IP left on network vmnet"),
        "{e}"
    );
    assert_eq!(
        s.instances(None).unwrap().len(),
        before,
        "nothing half-allocated"
    );
    assert!(s.check_consistency().unwrap().is_empty());
}

#[test]
fn requested_address_and_reservation() {
    let d = TempDir::new("reserve");
    let s = SqliteStore::open_dir(d.path()).unwrap();
    let net = vmnet(&s, "10.0.0.0/24");
    s.set_fixed_reserved("10.0.0.2", true).unwrap();
    let i = s.create_instance(&spec("a"), &cfg()).unwrap();
    assert_eq!(
        first_address(&s, &i.uuid),
        "10.0.0.3",
        "reserved address skipped"
    );
    let mut sp = spec("b");
    sp.networks = vec![RequestedNetwork {
        uuid: net.clone(),
        fixed_ip: Some("10.0.0.2".into()),
    }];
    let e = s.create_instance(&sp, &cfg()).unwrap_err();
    assert!(e.to_string().contains("reserved"), "{e}");
    s.set_fixed_reserved("10.0.0.2", false).unwrap();
    let b = s.create_instance(&sp, &cfg()).unwrap();
    assert_eq!(first_address(&s, &b.uuid), "10.0.0.2");
    sp.networks[0].fixed_ip = Some("10.0.0.3".into());
    assert!(s
        .create_instance(&sp, &cfg())
        .unwrap_err()
        .to_string()
        .contains("already in use"));
    sp.networks[0].fixed_ip = Some("10.9.0.3".into());
    let e = s.create_instance(&sp, &cfg()).unwrap_err();
    assert!(
        matches!(&e, Error::Invalid { field, .. } if field == "fixed_ip"),
        "{e}"
    );
    assert!(matches!(
        s.set_fixed_reserved("10.9.9.9", true),
        Err(Error::NotFound(_))
    ));
}

#[test]
fn release_follows_the_lease() {
    let d = TempDir::new("release");
    let s = SqliteStore::open_dir(d.path()).unwrap();
    vmnet(&s, "10.0.0.0/24");
    // Never leased: free at once on delete.
    let a = s.create_instance(&spec("a"), &cfg()).unwrap();
    s.delete_instance(&a.uuid, &cfg(), 100).unwrap();
    assert!(s
        .fixed_ip("10.0.0.2")
        .unwrap()
        .fixed
        .instance_uuid
        .is_none());
    // Leased: held until dnsmasq reports the release.
    let b = s.create_instance(&spec("b"), &cfg()).unwrap();
    let addr = first_address(&s, &b.uuid);
    let mac = s.instance_addresses(&b.uuid).unwrap()[0].mac.clone();
    assert!(s.lease_fixed_ip(&addr, Some(&mac)).unwrap());
    s.delete_instance(&b.uuid, &cfg(), 200).unwrap();
    let f = s.fixed_ip(&addr).unwrap().fixed;
    assert!(!f.allocated && f.leased && f.instance_uuid.is_some());
    let pending = s.bound_addresses(&[f.network_id]).unwrap();
    assert_eq!(pending.len(), 1, "awaiting release: {pending:?}");
    assert!(s.release_fixed_ip(&addr, Some(&mac), 300).unwrap());
    let f = s.fixed_ip(&addr).unwrap().fixed;
    assert!(f.instance_uuid.is_none() && !f.leased);
    assert!(s.bound_addresses(&[f.network_id]).unwrap().is_empty());
    assert!(
        s.check_consistency().unwrap().is_empty(),
        "{:?}",
        s.check_consistency()
    );
}

#[test]
fn stale_deallocations_time_out() {
    let d = TempDir::new("stale");
    let s = SqliteStore::open_dir(d.path()).unwrap();
    vmnet(&s, "10.0.0.0/24");
    let b = s.create_instance(&spec("b"), &cfg()).unwrap();
    let addr = first_address(&s, &b.uuid);
    s.lease_fixed_ip(&addr, None).unwrap();
    s.delete_instance(&b.uuid, &cfg(), 1000).unwrap();
    assert_eq!(s.disassociate_stale_fixed_ips(1500, 600).unwrap(), 0);
    assert_eq!(s.disassociate_stale_fixed_ips(1601, 600).unwrap(), 1);
    assert!(s.fixed_ip(&addr).unwrap().fixed.instance_uuid.is_none());
}

#[test]
fn late_release_does_not_free_a_new_owner() {
    let d = TempDir::new("late");
    let s = SqliteStore::open_dir(d.path()).unwrap();
    let net = vmnet(&s, "10.0.0.0/24");
    let a = s.create_instance(&spec("a"), &cfg()).unwrap();
    let old_mac = s.instance_addresses(&a.uuid).unwrap()[0].mac.clone();
    s.delete_instance(&a.uuid, &cfg(), 10).unwrap();
    let mut sp = spec("b");
    sp.networks = vec![RequestedNetwork {
        uuid: net,
        fixed_ip: Some("10.0.0.2".into()),
    }];
    let b = s.create_instance(&sp, &cfg()).unwrap();
    assert!(!s.release_fixed_ip("10.0.0.2", Some(&old_mac), 20).unwrap());
    assert_eq!(
        s.fixed_ip("10.0.0.2")
            .unwrap()
            .fixed
            .instance_uuid
            .as_deref(),
        Some(b.uuid.as_str())
    );
}

#[test]
fn networks_with_addresses_cannot_be_deleted() {
    let d = TempDir::new("netdel");
    let s = SqliteStore::open_dir(d.path()).unwrap();
    let net = vmnet(&s, "10.0.0.0/24");
    let i = s.create_instance(&spec("a"), &cfg()).unwrap();
    let e = s.delete_network(&net, true).unwrap_err();
    assert!(e.to_string().contains("still has 1 allocated"), "{e}");
    s.delete_instance(&i.uuid, &cfg(), 1).unwrap();
    s.delete_network("10.0.0.0/24", true).unwrap();
    assert!(s.networks().unwrap().is_empty());
}

#[test]
fn vlan_manager_associates_a_network_per_project() {
    let d = TempDir::new("vlan");
    let s = SqliteStore::open_dir(d.path()).unwrap();
    let c = Config {
        network_manager: Manager::Vlan,
        vlan_interface: Some("eth2".into()),
        ..Config::default()
    };
    let req = NetworkRequest {
        label: "private".into(),
        cidr: Some("10.0.0.0/16".into()),
        num_networks: Some(2),
        network_size: Some(256),
        ..Default::default()
    };
    let (nets, _) = s.create_networks(&req, &c).unwrap();
    assert_eq!(nets.len(), 2);
    let i = s.create_instance(&spec("a"), &c).unwrap();
    assert_eq!(
        first_address(&s, &i.uuid),
        "10.0.0.3",
        "after gateway and VPN address"
    );
    assert_eq!(
        s.network(&nets[0].uuid).unwrap().project_id.as_deref(),
        Some("p1")
    );
    let mut other = spec("b");
    other.project_id = "p2".into();
    let j = s.create_instance(&other, &c).unwrap();
    assert_eq!(first_address(&s, &j.uuid), "10.0.1.3");
    let mut third = spec("c");
    third.project_id = "p3".into();
    assert!(matches!(
        s.create_instance(&third, &c),
        Err(Error::Exhausted(_))
    ));
    let r = s.scrub_project("p2").unwrap();
    assert_eq!(r.networks, 1);
}

#[test]
fn floating_ips_lifecycle() {
    let d = TempDir::new("floating");
    let s = SqliteStore::open_dir(d.path()).unwrap();
    vmnet(&s, "10.0.0.0/24");
    let addrs: Vec<std::net::Ipv4Addr> = vec![
        "68.99.26.170".parse().unwrap(),
        "68.99.26.171".parse().unwrap(),
    ];
    s.create_floating_ips("nova", "eth1", &addrs).unwrap();
    assert!(s
        .create_floating_ips("nova", "eth1", &addrs[..1])
        .unwrap_err()
        .to_string()
        .contains("already exists"));
    assert!(s
        .create_floating_ips("nova", "eth1", &["10.0.0.9".parse().unwrap()])
        .is_err());
    let i = s.create_instance(&spec("a"), &cfg()).unwrap();
    let fl = s.allocate_floating_ip("p1", "nova", 1).unwrap();
    assert_eq!(fl.address, "68.99.26.170");
    assert!(matches!(
        s.allocate_floating_ip("p1", "nova", 1),
        Err(Error::OverLimit(_))
    ));
    assert!(matches!(
        s.allocate_floating_ip("p1", "nope", 10),
        Err(Error::NotFound(_))
    ));
    // Another project cannot see or use it.
    assert!(matches!(
        s.associate_floating_ip(&fl.address, &i.uuid, None, Some("p2")),
        Err(Error::NotFound(_))
    ));
    let a = s
        .associate_floating_ip(&fl.address, &i.uuid, None, Some("p1"))
        .unwrap();
    assert_eq!(a.fixed_ip.as_deref(), Some("10.0.0.2"));
    assert_eq!(
        s.instance_addresses(&i.uuid).unwrap()[0].floating,
        vec![fl.address.clone()]
    );
    assert!(
        s.delete_floating_ips(&addrs[..1]).is_err(),
        "associated IPs are kept"
    );
    s.release_floating_ip(&fl.address, Some("p1")).unwrap();
    assert!(s.floating_ip(&fl.address).unwrap().project_id.is_none());
}

#[test]
fn auto_assign_returns_the_address_on_delete_and_fails_cleanly_when_empty() {
    let d = TempDir::new("auto");
    let s = SqliteStore::open_dir(d.path()).unwrap();
    vmnet(&s, "10.0.0.0/24");
    s.create_floating_ips("nova", "eth1", &["68.99.26.170".parse().unwrap()])
        .unwrap();
    let c = Config {
        auto_assign_floating_ip: true,
        ..Config::default()
    };
    let i = s.create_instance(&spec("a"), &c).unwrap();
    assert_eq!(s.instance_addresses(&i.uuid).unwrap()[0].floating.len(), 1);
    let e = s.create_instance(&spec("b"), &c).unwrap_err();
    assert!(matches!(e, Error::Exhausted(_)), "{e}");
    assert_eq!(s.instances(None).unwrap().len(), 1);
    s.delete_instance(&i.uuid, &c, 5).unwrap();
    assert!(s.floating_ip("68.99.26.170").unwrap().project_id.is_none());
}

/// 32 allocators, each with its own connection, against one /24: exactly the allocatable
/// count succeed, no address twice, the rest get the exhaustion error.
#[test]
fn concurrent_allocators_never_share_an_address() {
    let d = TempDir::new("concurrent");
    let s = SqliteStore::open_dir(d.path()).unwrap();
    vmnet(&s, "10.0.0.0/24");
    let allocatable = 253; // 256 minus network, gateway and broadcast
    let dir = Arc::new(d.path().to_path_buf());
    let handles: Vec<_> = (0..32)
        .map(|t| {
            let dir = dir.clone();
            std::thread::spawn(move || {
                let s = SqliteStore::open_dir(&dir).unwrap();
                let (mut ok, mut exhausted) = (Vec::new(), 0);
                for n in 0..10 {
                    match s.create_instance(&spec(&format!("t{t}-{n}")), &cfg()) {
                        Ok(i) => ok.push(s.instance_addresses(&i.uuid).unwrap()[0].address.clone()),
                        Err(Error::Exhausted(_)) => exhausted += 1,
                        Err(e) => panic!("unexpected error: {e}"),
                    }
                }
                (ok, exhausted)
            })
        })
        .collect();
    let mut all = Vec::new();
    let mut exhausted = 0;
    for h in handles {
        let (ok, ex) = h.join().unwrap();
        all.extend(ok);
        exhausted += ex;
    }
    let unique: HashSet<_> = all.iter().collect();
    assert_eq!(all.len(), allocatable);
    assert_eq!(unique.len(), allocatable, "an address was handed out twice");
    assert_eq!(exhausted, 320 - allocatable);
    assert!(s.check_consistency().unwrap().is_empty());
}

/// The child half of the crash test: allocates and frees until killed.
#[test]
#[ignore]
fn crash_child() {
    let Ok(dir) = std::env::var("NOVANET_CRASH_DIR") else {
        return;
    };
    let s = SqliteStore::open_dir(Path::new(&dir)).unwrap();
    let mut live = Vec::new();
    for n in 0.. {
        match s.create_instance(&spec(&format!("c{n}")), &cfg()) {
            Ok(i) => live.push(i.uuid),
            Err(Error::Exhausted(_)) => {
                for u in live.drain(..) {
                    s.delete_instance(&u, &cfg(), n).unwrap();
                }
            }
            Err(e) => panic!("{e}"),
        }
    }
}

#[test]
fn killing_a_process_mid_storm_leaves_a_consistent_store() {
    let d = TempDir::new("crash");
    let s = SqliteStore::open_dir(d.path()).unwrap();
    vmnet(&s, "10.0.0.0/24");
    drop(s);
    for round in 0..3 {
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--ignored", "--exact", "crash_child", "--nocapture"])
            .env("NOVANET_CRASH_DIR", d.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(300 + 170 * round));
        child.kill().unwrap(); // SIGKILL: no chance to finish a transaction
        child.wait().unwrap();
        let s = SqliteStore::open_dir(d.path()).unwrap();
        let problems = s.check_consistency().unwrap();
        assert!(problems.is_empty(), "round {round}: {problems:?}");
        // Every allocated address has exactly one owner, and allocation still works.
        let owners: Vec<_> = s
            .fixed_ips(None)
            .unwrap()
            .into_iter()
            .filter(|f| f.fixed.allocated)
            .collect();
        let insts = s.instances(None).unwrap();
        assert_eq!(owners.len(), insts.len());
        if owners.len() < 253 {
            s.create_instance(&spec("after"), &cfg()).unwrap();
        }
    }
}

#[test]
fn flat_instances_skip_other_projects_networks() {
    let d = TempDir::new("tenantnets");
    let s = SqliteStore::open_dir(d.path()).unwrap();
    vmnet(&s, "10.0.0.0/24");
    let req = NetworkRequest {
        label: "demonet".into(),
        cidr: Some("10.20.0.0/24".into()),
        bridge: Some("br101".into()),
        project_id: Some("demo".into()),
        ..Default::default()
    };
    s.create_networks(&req, &cfg()).unwrap();
    let i = s.create_instance(&spec("mine"), &cfg()).unwrap();
    let nets: Vec<String> = s
        .instance_addresses(&i.uuid)
        .unwrap()
        .into_iter()
        .map(|a| a.network_label)
        .collect();
    assert_eq!(nets, ["vmnet"]);
    let mut demo = spec("theirs");
    demo.project_id = "demo".into();
    let j = s.create_instance(&demo, &cfg()).unwrap();
    assert_eq!(s.instance_addresses(&j.uuid).unwrap().len(), 2);
}

/// Property: any sequence of boots (some asking for an address), leases, deletes, releases,
/// reservations and timeouts on a small network never gives one address to two live
/// instances, never hands out a reserved or pending one, fails only with a clean
/// exhaustion or conflict error, and leaves the store consistent. A deterministic
/// generator runs the same 600 steps on every run.
#[test]
fn property_random_lifecycles_never_share_an_address() {
    let d = TempDir::new("property");
    let s = SqliteStore::open_dir(d.path()).unwrap();
    let net = vmnet(&s, "10.0.0.0/27"); // .2 .. .30 allocatable
    let mut seed: u64 = 0x00c0_ffee;
    let mut rnd = |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    let mut live: Vec<(String, String, String)> = Vec::new(); // (uuid, address, mac)
    let mut pending: Vec<(String, String)> = Vec::new(); // (address, mac) awaiting release
    let mut now = 1_000;
    for step in 0..600 {
        now += 1;
        match rnd(7) {
            0..=2 => {
                let mut sp = spec(&format!("vm{step}"));
                if rnd(3) == 0 {
                    sp.networks = vec![RequestedNetwork {
                        uuid: net.clone(),
                        fixed_ip: Some(format!("10.0.0.{}", 2 + rnd(29))),
                    }];
                }
                match s.create_instance(&sp, &cfg()) {
                    Ok(i) => {
                        let a = &s.instance_addresses(&i.uuid).unwrap()[0];
                        live.push((i.uuid.clone(), a.address.clone(), a.mac.clone()));
                    }
                    Err(e) => assert!(
                        matches!(e, Error::Exhausted(_) | Error::Conflict(_)),
                        "step {step}: {e}"
                    ),
                }
            }
            3 if !live.is_empty() => {
                let (_, addr, mac) = &live[rnd(live.len() as u64) as usize];
                s.lease_fixed_ip(addr, Some(mac)).unwrap();
            }
            4 if !live.is_empty() => {
                let (uuid, addr, mac) = live.swap_remove(rnd(live.len() as u64) as usize);
                let leased = s.fixed_ip(&addr).unwrap().fixed.leased;
                s.delete_instance(&uuid, &cfg(), now).unwrap();
                if leased {
                    pending.push((addr, mac));
                }
            }
            5 if !pending.is_empty() => {
                let (addr, mac) = pending.swap_remove(rnd(pending.len() as u64) as usize);
                s.release_fixed_ip(&addr, Some(&mac), now).unwrap();
            }
            6 => {
                let freed = s.disassociate_stale_fixed_ips(now, 50).unwrap();
                if freed > 0 {
                    // Which ones timed out is the store's business: forget the oldest.
                    pending.drain(..freed.min(pending.len()));
                }
            }
            _ => {}
        }
        let addrs: HashSet<&str> = live.iter().map(|(_, a, _)| a.as_str()).collect();
        assert_eq!(addrs.len(), live.len(), "step {step}: an address is shared");
        for (addr, _) in &pending {
            assert!(
                !addrs.contains(addr.as_str()),
                "step {step}: {addr} given out before its release"
            );
        }
        assert!(!addrs.contains("10.0.0.1") && !addrs.contains("10.0.0.31"));
        if step % 50 == 0 {
            assert!(s.check_consistency().unwrap().is_empty(), "step {step}");
        }
    }
    assert!(s.check_consistency().unwrap().is_empty());
}
