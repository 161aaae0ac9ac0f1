//! The conformance suite: what every engine must do, checked through the `Store` contract
//! only. An engine's tests run it with [`conformance_tests!`](crate::conformance_tests),
//! which makes one `#[test]` per case:
//!
//! ```text
//! fn fresh(case: &str) -> novanet_store::conformance::Connect { /* a new, empty store */ }
//! novanet_store::conformance_tests!(fresh);
//! ```
//!
//! `fresh(case)` makes a new, empty store for one case and returns how to connect to it:
//! each call of the returned function opens another connection to that same store, as
//! another server process would (the concurrency case opens one per thread).
//!
//! Behind the `conformance` feature: engines' tests enable it, nothing else builds it.

use std::collections::HashSet;
use std::sync::Arc;

use novanet_core::config::{Config, Manager};
use novanet_core::model::{InstanceSpec, RequestedNetwork};
use novanet_core::planning::NetworkRequest;
use novanet_core::Error;

use crate::{ChangeScope, Keypair, NewRule, ServiceReport, Store};

/// Opens another connection to one store of the engine under test.
pub type Connect = Arc<dyn Fn() -> Box<dyn Store> + Send + Sync>;

/// One `#[test]` per case of the suite, each on a new store from `$fresh(case_name)`.
#[macro_export]
macro_rules! conformance_tests {
    ($fresh:expr) => {
        $crate::conformance_tests!(@cases $fresh;
            first_instance_gets_dot_two_and_a_nova_mac,
            exhaustion_is_clean,
            requested_address_and_reservation,
            release_follows_the_lease,
            stale_deallocations_time_out,
            late_release_does_not_free_a_new_owner,
            networks_with_addresses_cannot_be_deleted,
            vlan_manager_associates_a_network_per_project,
            only_the_vpn_instance_takes_the_vpn_address,
            floating_ips_lifecycle,
            auto_assign_returns_the_address_on_delete_and_fails_cleanly_when_empty,
            concurrent_allocators_never_share_an_address,
            flat_instances_skip_other_projects_networks,
            property_random_lifecycles_never_share_an_address,
            no_fixed_ip_is_held_by_two_owners,
            floating_ip_moves_between_instances,
            failed_writes_leave_nothing_half_written,
            security_groups_rules_and_members,
            identity_tokens_follow_roles_and_passwords,
            keypairs_quotas_and_services,
            host_diagnoses_are_kept,
            writes_touching_a_host_are_in_its_change_log,
            vlan_hosts_flood_to_each_other,
            power_actions_and_driver_reports,
            multi_host_networks_give_each_host_its_own_address,
        );
    };
    // For an engine that may be missing on the machine: each case returns at once (after
    // `$ready` said why) when `$ready()` is false.
    ($fresh:expr, skip_unless: $ready:expr) => {
        $crate::conformance_tests!(@cases $fresh, $ready;
            first_instance_gets_dot_two_and_a_nova_mac,
            exhaustion_is_clean,
            requested_address_and_reservation,
            release_follows_the_lease,
            stale_deallocations_time_out,
            late_release_does_not_free_a_new_owner,
            networks_with_addresses_cannot_be_deleted,
            vlan_manager_associates_a_network_per_project,
            only_the_vpn_instance_takes_the_vpn_address,
            floating_ips_lifecycle,
            auto_assign_returns_the_address_on_delete_and_fails_cleanly_when_empty,
            concurrent_allocators_never_share_an_address,
            flat_instances_skip_other_projects_networks,
            property_random_lifecycles_never_share_an_address,
            no_fixed_ip_is_held_by_two_owners,
            floating_ip_moves_between_instances,
            failed_writes_leave_nothing_half_written,
            security_groups_rules_and_members,
            identity_tokens_follow_roles_and_passwords,
            keypairs_quotas_and_services,
            host_diagnoses_are_kept,
            writes_touching_a_host_are_in_its_change_log,
            vlan_hosts_flood_to_each_other,
            power_actions_and_driver_reports,
            multi_host_networks_give_each_host_its_own_address,
        );
    };
    (@cases $fresh:expr, $ready:expr; $($case:ident),* $(,)?) => {
        $(
            #[test]
            fn $case() {
                if !($ready)() {
                    return;
                }
                $crate::conformance::$case(($fresh)(stringify!($case)));
            }
        )*
    };
    (@cases $fresh:expr; $($case:ident),* $(,)?) => {
        $(
            #[test]
            fn $case() {
                $crate::conformance::$case(($fresh)(stringify!($case)));
            }
        )*
    };
}

fn cfg() -> Config {
    Config::default()
}

fn vmnet(store: &dyn Store, cidr: &str) -> String {
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

fn first_address(store: &dyn Store, uuid: &str) -> String {
    store.instance_addresses(uuid).unwrap()[0].address.clone()
}

fn on(net: &str, fixed_ip: &str) -> RequestedNetwork {
    RequestedNetwork {
        uuid: net.into(),
        fixed_ip: Some(fixed_ip.into()),
    }
}

pub fn first_instance_gets_dot_two_and_a_nova_mac(connect: Connect) {
    let s = connect();
    vmnet(&*s, "10.0.0.0/24");
    let i = s.create_instance(&spec("cirros"), &cfg()).unwrap();
    let a = &s.instance_addresses(&i.uuid).unwrap()[0];
    assert_eq!(a.address, "10.0.0.2");
    assert_eq!(a.network_label, "vmnet");
    assert!(a.mac.starts_with("fa:16:3e:"), "{}", a.mac);
    assert_eq!(i.hostname, "cirros");
    let j = s.create_instance(&spec("two"), &cfg()).unwrap();
    assert_eq!(first_address(&*s, &j.uuid), "10.0.0.3");
}

pub fn exhaustion_is_clean(connect: Connect) {
    let s = connect();
    vmnet(&*s, "10.0.0.0/29"); // .2 .. .6 allocatable
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

pub fn requested_address_and_reservation(connect: Connect) {
    let s = connect();
    let net = vmnet(&*s, "10.0.0.0/24");
    s.set_fixed_reserved("10.0.0.2", true).unwrap();
    let i = s.create_instance(&spec("a"), &cfg()).unwrap();
    assert_eq!(
        first_address(&*s, &i.uuid),
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
    assert_eq!(first_address(&*s, &b.uuid), "10.0.0.2");
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

pub fn release_follows_the_lease(connect: Connect) {
    let s = connect();
    vmnet(&*s, "10.0.0.0/24");
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
    let addr = first_address(&*s, &b.uuid);
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

pub fn stale_deallocations_time_out(connect: Connect) {
    let s = connect();
    vmnet(&*s, "10.0.0.0/24");
    let b = s.create_instance(&spec("b"), &cfg()).unwrap();
    let addr = first_address(&*s, &b.uuid);
    s.lease_fixed_ip(&addr, None).unwrap();
    s.delete_instance(&b.uuid, &cfg(), 1000).unwrap();
    assert_eq!(s.disassociate_stale_fixed_ips(1500, 600).unwrap(), 0);
    assert_eq!(s.disassociate_stale_fixed_ips(1601, 600).unwrap(), 1);
    assert!(s.fixed_ip(&addr).unwrap().fixed.instance_uuid.is_none());
}

pub fn late_release_does_not_free_a_new_owner(connect: Connect) {
    let s = connect();
    let net = vmnet(&*s, "10.0.0.0/24");
    let a = s.create_instance(&spec("a"), &cfg()).unwrap();
    let old_mac = s.instance_addresses(&a.uuid).unwrap()[0].mac.clone();
    s.delete_instance(&a.uuid, &cfg(), 10).unwrap();
    let mut sp = spec("b");
    sp.networks = vec![RequestedNetwork {
        uuid: net,
        fixed_ip: Some("10.0.0.2".into()),
    }];
    let b = s.create_instance(&sp, &cfg()).unwrap();
    let new_mac = s.instance_addresses(&b.uuid).unwrap()[0].mac.clone();
    // The old owner's lease, renewed or released, is not the new owner's.
    assert!(!s.lease_fixed_ip("10.0.0.2", Some(&old_mac)).unwrap());
    assert!(!s.fixed_ip("10.0.0.2").unwrap().fixed.leased);
    assert!(s
        .lease_fixed_ip("10.0.0.2", Some(&new_mac.to_uppercase()))
        .unwrap());
    assert!(!s.release_fixed_ip("10.0.0.2", Some(&old_mac), 20).unwrap());
    assert!(
        s.fixed_ip("10.0.0.2").unwrap().fixed.leased,
        "still the new owner's lease"
    );
    assert_eq!(
        s.fixed_ip("10.0.0.2")
            .unwrap()
            .fixed
            .instance_uuid
            .as_deref(),
        Some(b.uuid.as_str())
    );
}

pub fn networks_with_addresses_cannot_be_deleted(connect: Connect) {
    let s = connect();
    let net = vmnet(&*s, "10.0.0.0/24");
    let i = s.create_instance(&spec("a"), &cfg()).unwrap();
    let e = s.delete_network(&net, true).unwrap_err();
    assert!(e.to_string().contains("still has 1 allocated"), "{e}");
    s.delete_instance(&i.uuid, &cfg(), 1).unwrap();
    s.delete_network("10.0.0.0/24", true).unwrap();
    assert!(s.networks().unwrap().is_empty());
}

pub fn vlan_manager_associates_a_network_per_project(connect: Connect) {
    let s = connect();
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
        first_address(&*s, &i.uuid),
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
    assert_eq!(first_address(&*s, &j.uuid), "10.0.1.3");
    let mut third = spec("c");
    third.project_id = "p3".into();
    assert!(matches!(
        s.create_instance(&third, &c),
        Err(Error::Exhausted(_))
    ));
    let r = s.scrub_project("p2").unwrap();
    assert_eq!(r.networks, 1);
}

/// The VPN address is reserved: a request for it is refused unless the instance is the
/// project's cloudpipe VPN instance, which gets it (and gives it back when deleted).
pub fn only_the_vpn_instance_takes_the_vpn_address(connect: Connect) {
    let s = connect();
    let c = Config {
        network_manager: Manager::Vlan,
        vlan_interface: Some("eth2".into()),
        ..Config::default()
    };
    let req = NetworkRequest {
        label: "private".into(),
        cidr: Some("10.0.0.0/24".into()),
        ..Default::default()
    };
    let (nets, _) = s.create_networks(&req, &c).unwrap();
    let net = s.associate_project_network("p1", None).unwrap();
    assert_eq!(net.uuid, nets[0].uuid);
    let vpn_address = net.vpn_private_address.clone().expect("a VPN address");
    let mut vpn = spec("p1-vpn");
    vpn.networks = vec![RequestedNetwork {
        uuid: net.uuid.clone(),
        fixed_ip: Some(vpn_address.clone()),
    }];
    let e = s.create_instance(&vpn, &c).unwrap_err();
    assert!(e.to_string().contains("reserved"), "{e}");
    vpn.vpn = true;
    let i = s.create_instance(&vpn, &c).unwrap();
    assert_eq!(first_address(&*s, &i.uuid), vpn_address);
    // Not another address of the network, even for the VPN instance.
    let mut gateway = vpn.clone();
    gateway.networks[0].fixed_ip = net.gateway.clone();
    assert!(s.create_instance(&gateway, &c).is_err());
    s.delete_instance(&i.uuid, &c, 1).unwrap();
    let again = s.create_instance(&vpn, &c).unwrap();
    assert_eq!(first_address(&*s, &again.uuid), vpn_address);
}

pub fn floating_ips_lifecycle(connect: Connect) {
    let s = connect();
    vmnet(&*s, "10.0.0.0/24");
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

pub fn auto_assign_returns_the_address_on_delete_and_fails_cleanly_when_empty(connect: Connect) {
    let s = connect();
    vmnet(&*s, "10.0.0.0/24");
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
pub fn concurrent_allocators_never_share_an_address(connect: Connect) {
    let s = connect();
    vmnet(&*s, "10.0.0.0/24");
    let allocatable = 253; // 256 minus network, gateway and broadcast
    let handles: Vec<_> = (0..32)
        .map(|t| {
            let connect = connect.clone();
            std::thread::spawn(move || {
                let s = connect();
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

pub fn flat_instances_skip_other_projects_networks(connect: Connect) {
    let s = connect();
    vmnet(&*s, "10.0.0.0/24");
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
pub fn property_random_lifecycles_never_share_an_address(connect: Connect) {
    let s = connect();
    let net = vmnet(&*s, "10.0.0.0/27"); // .2 .. .30 allocatable
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

/// Every allocated fixed IP has exactly one owner, and what the address says of its owner
/// agrees with what the owner says of its addresses, through boots, added and removed
/// addresses and deletes.
pub fn no_fixed_ip_is_held_by_two_owners(connect: Connect) {
    let s = connect();
    let net = vmnet(&*s, "10.0.0.0/28"); // .2 .. .14 allocatable
    let a = s.create_instance(&spec("a"), &cfg()).unwrap();
    let mut sp = spec("b");
    sp.networks = vec![on(&net, &first_address(&*s, &a.uuid))];
    let e = s.create_instance(&sp, &cfg()).unwrap_err();
    assert!(matches!(e, Error::Conflict(_)), "{e}");
    let second = s.add_fixed_ip(&a.uuid, &net, &cfg()).unwrap();
    assert_ne!(second.address, first_address(&*s, &a.uuid));
    let b = s.create_instance(&spec("b"), &cfg()).unwrap();
    s.remove_fixed_ip(&a.uuid, &second.address, 10).unwrap();
    let c = s.create_instance(&spec("c"), &cfg()).unwrap();
    s.delete_instance(&b.uuid, &cfg(), 20).unwrap();
    let d = s.create_instance(&spec("d"), &cfg()).unwrap();
    let mut held = HashSet::new();
    for i in [&a, &c, &d] {
        for addr in s.instance_addresses(&i.uuid).unwrap() {
            assert!(held.insert(addr.address.clone()), "{} twice", addr.address);
            let info = s.fixed_ip(&addr.address).unwrap();
            assert_eq!(info.fixed.instance_uuid.as_deref(), Some(i.uuid.as_str()));
            assert!(info.fixed.allocated);
            let owner = s.instance_by_fixed_ip(&addr.address).unwrap().unwrap();
            assert_eq!(owner.uuid, i.uuid);
        }
    }
    let allocated: HashSet<String> = s
        .fixed_ips(None)
        .unwrap()
        .into_iter()
        .filter(|f| f.fixed.allocated)
        .map(|f| f.fixed.address)
        .collect();
    assert_eq!(allocated, held);
    assert!(s.check_consistency().unwrap().is_empty());
}

/// A floating IP is allocated to a project, associated with one instance's fixed IP,
/// disassociated and associated with another, and released back to its pool.
pub fn floating_ip_moves_between_instances(connect: Connect) {
    let s = connect();
    vmnet(&*s, "10.0.0.0/24");
    s.create_floating_ips("nova", "eth1", &["68.99.26.170".parse().unwrap()])
        .unwrap();
    assert_eq!(s.floating_pools().unwrap(), ["nova"]);
    let a = s.create_instance(&spec("a"), &cfg()).unwrap();
    let b = s.create_instance(&spec("b"), &cfg()).unwrap();
    let fl = s.allocate_floating_ip("p1", "nova", 10).unwrap();
    assert_eq!(fl.project_id.as_deref(), Some("p1"));
    assert!(fl.fixed_ip.is_none());
    assert_eq!(s.floating_ips(Some("p1")).unwrap().len(), 1);
    assert!(s.floating_ips(Some("p2")).unwrap().is_empty());
    assert!(matches!(
        s.allocate_floating_ip("p1", "nova", 10),
        Err(Error::Exhausted(_))
    ));
    let on_a = s
        .associate_floating_ip(&fl.address, &a.uuid, None, Some("p1"))
        .unwrap();
    assert_eq!(on_a.fixed_ip, Some(first_address(&*s, &a.uuid)));
    assert_eq!(on_a.instance_uuid.as_deref(), Some(a.uuid.as_str()));
    s.disassociate_floating_ip(&fl.address, Some(&a.uuid), Some("p1"))
        .unwrap();
    assert!(s.instance_addresses(&a.uuid).unwrap()[0]
        .floating
        .is_empty());
    let unbound = s.floating_ip(&fl.address).unwrap();
    assert!(unbound.fixed_ip.is_none());
    assert_eq!(unbound.project_id.as_deref(), Some("p1"), "still allocated");
    let on_b = s
        .associate_floating_ip(&fl.address, &b.uuid, None, Some("p1"))
        .unwrap();
    assert_eq!(on_b.fixed_ip, Some(first_address(&*s, &b.uuid)));
    assert_eq!(
        s.instance_addresses(&b.uuid).unwrap()[0].floating,
        vec![fl.address.clone()]
    );
    // Release disassociates first.
    s.release_floating_ip(&fl.address, None).unwrap();
    let back = s.floating_ip(&fl.address).unwrap();
    assert!(back.project_id.is_none() && back.fixed_ip.is_none());
    assert!(s.instance_addresses(&b.uuid).unwrap()[0]
        .floating
        .is_empty());
    assert!(matches!(
        s.release_floating_ip(&fl.address, None),
        Err(Error::NotFound(_))
    ));
}

/// A write that fails part-way changes nothing: no instance, VIF or address of a boot
/// whose second network refuses, no floating IP of a list with a duplicate in it, and the
/// generation stays where it was.
pub fn failed_writes_leave_nothing_half_written(connect: Connect) {
    let s = connect();
    let net = vmnet(&*s, "10.0.0.0/24");
    let other = s
        .create_networks(
            &NetworkRequest {
                label: "other".into(),
                cidr: Some("10.1.0.0/24".into()),
                bridge: Some("br101".into()),
                ..Default::default()
            },
            &cfg(),
        )
        .unwrap()
        .0[0]
        .uuid
        .clone();
    let holder = s.create_instance(&spec("holder"), &cfg()).unwrap();
    let taken = s
        .instance_addresses(&holder.uuid)
        .unwrap()
        .into_iter()
        .find(|a| a.address.starts_with("10.1."))
        .unwrap()
        .address;
    let generation = s.generation().unwrap();
    let fixed_before = s.fixed_ips(None).unwrap();
    let mut sp = spec("late");
    sp.networks = vec![on(&net, "10.0.0.9"), on(&other, &taken)];
    let e = s.create_instance(&sp, &cfg()).unwrap_err();
    assert!(matches!(e, Error::Conflict(_)), "{e}");
    assert_eq!(s.instances(None).unwrap().len(), 1);
    assert_eq!(s.fixed_ips(None).unwrap(), fixed_before);
    assert!(s
        .fixed_ip("10.0.0.9")
        .unwrap()
        .fixed
        .instance_uuid
        .is_none());
    assert_eq!(s.generation().unwrap(), generation);
    assert!(s.check_consistency().unwrap().is_empty());

    s.create_floating_ips("nova", "eth1", &["68.99.26.170".parse().unwrap()])
        .unwrap();
    let generation = s.generation().unwrap();
    let e = s
        .create_floating_ips(
            "nova",
            "eth1",
            &[
                "68.99.26.171".parse().unwrap(),
                "68.99.26.170".parse().unwrap(),
            ],
        )
        .unwrap_err();
    assert!(matches!(e, Error::Conflict(_)), "{e}");
    assert!(matches!(
        s.floating_ip("68.99.26.171"),
        Err(Error::NotFound(_))
    ));
    assert_eq!(s.floating_ips(None).unwrap().len(), 1);
    assert_eq!(s.generation().unwrap(), generation);

    // The address the failed boot asked for is still there to have.
    sp.networks = vec![on(&net, "10.0.0.9")];
    let i = s.create_instance(&sp, &cfg()).unwrap();
    assert_eq!(first_address(&*s, &i.uuid), "10.0.0.9");
}

/// Groups with their quota and unique names, rules with their quota and no duplicates,
/// members, and a group in use that cannot go.
pub fn security_groups_rules_and_members(connect: Connect) {
    let s = connect();
    vmnet(&*s, "10.0.0.0/24");
    let default = s.ensure_default_group("p1").unwrap();
    assert_eq!(default.name, "default");
    assert_eq!(s.ensure_default_group("p1").unwrap().id, default.id);
    let web = s.create_security_group("p1", "web", "http", 3).unwrap();
    assert!(matches!(
        s.create_security_group("p1", "web", "again", 3),
        Err(Error::Invalid { field, .. }) if field == "name"
    ));
    s.create_security_group("p1", "db", "", 3).unwrap();
    assert!(matches!(
        s.create_security_group("p1", "cache", "", 3),
        Err(Error::OverLimit(_))
    ));
    assert_eq!(s.security_groups(Some("p1")).unwrap().len(), 3);
    assert!(s.security_groups(Some("p2")).unwrap().is_empty());
    let http = NewRule {
        protocol: Some("tcp".into()),
        from_port: Some(80),
        to_port: Some(80),
        cidr: Some("0.0.0.0/0".into()),
        group_id: None,
    };
    let rule = s.add_security_group_rule(web.id, &http, 10).unwrap();
    assert_eq!(rule.parent_group_id, web.id);
    assert!(s.add_security_group_rule(web.id, &http, 10).is_err());
    let ssh = NewRule {
        from_port: Some(22),
        to_port: Some(22),
        ..http.clone()
    };
    assert!(matches!(
        s.add_security_group_rule(web.id, &ssh, 1),
        Err(Error::OverLimit(_))
    ));
    let i = s.create_instance(&spec("a"), &cfg()).unwrap();
    s.add_instance_security_group(&i.uuid, web.id).unwrap();
    let names: Vec<String> = s
        .instance_security_groups(&i.uuid)
        .unwrap()
        .into_iter()
        .map(|g| g.name)
        .collect();
    assert!(names.contains(&"web".to_string()), "{names:?}");
    assert!(s
        .security_group_memberships()
        .unwrap()
        .contains(&(i.uuid.clone(), web.id)));
    assert!(s.delete_security_group(web.id).is_err(), "in use");
    s.remove_instance_security_group(&i.uuid, web.id).unwrap();
    let renamed = s.update_security_group(web.id, "www", "web").unwrap();
    assert_eq!((renamed.name.as_str(), renamed.rules.len()), ("www", 1));
    assert_eq!(s.delete_security_group_rule(rule.id).unwrap().id, rule.id);
    s.delete_security_group(web.id).unwrap();
    assert!(matches!(s.security_group(web.id), Err(Error::NotFound(_))));
}

/// Tokens need the right password and a role; they lose the role as soon as it is
/// removed, and end with a revoke or a new password.
pub fn identity_tokens_follow_roles_and_passwords(connect: Connect) {
    let s = connect();
    let p = s.create_project("demo").unwrap();
    assert!(s.create_project("demo").is_err());
    let u = s.create_user("alice", "secret").unwrap();
    assert_eq!(s.user("alice").unwrap(), u);
    assert!(matches!(
        s.issue_token("alice", "secret", "demo", 100, 3600),
        Err(Error::Forbidden(_))
    ));
    s.assign_role(&u.id, &p.id, "member").unwrap();
    assert!(matches!(
        s.issue_token("alice", "wrong", "demo", 100, 3600),
        Err(Error::Forbidden(_))
    ));
    assert!(matches!(
        s.issue_token("nobody", "secret", "demo", 100, 3600),
        Err(Error::Forbidden(_))
    ));
    let t = s.issue_token("alice", "secret", "demo", 100, 3600).unwrap();
    assert_eq!(
        (t.user.id.as_str(), t.project.id.as_str()),
        (u.id.as_str(), p.id.as_str())
    );
    assert_eq!(t.roles, ["member"]);
    assert_eq!(s.token(&t.id, 200).unwrap().id, t.id);
    assert!(s.token(&t.id, 100 + 3600).is_err(), "expired");
    s.revoke_token(&t.id).unwrap();
    assert!(matches!(s.token(&t.id, 200), Err(Error::NotFound(_))));
    let t = s.issue_token("alice", "secret", "demo", 300, 3600).unwrap();
    s.remove_role(&u.id, &p.id, "member").unwrap();
    assert!(s.token(&t.id, 400).is_err(), "no role left");
    s.assign_role(&u.id, &p.id, "member").unwrap();
    let t = s.issue_token("alice", "secret", "demo", 500, 3600).unwrap();
    s.update_user(&u.id, None, Some("changed")).unwrap();
    assert!(s.token(&t.id, 600).is_err(), "a new password ends tokens");
    s.issue_token("alice", "changed", &p.id, 700, 3600).unwrap();
    assert_eq!(
        s.role_assignments(Some(&u.id), None).unwrap(),
        [(u.id.clone(), p.id.clone(), "member".to_string())]
    );
    s.delete_project(&p.id).unwrap();
    assert!(s.role_assignments(Some(&u.id), None).unwrap().is_empty());
    s.delete_user(&u.id).unwrap();
    assert!(s.user("alice").is_err());
}

/// Key pairs per user, quota overrides per project, services as their heartbeats say.
pub fn keypairs_quotas_and_services(connect: Connect) {
    let s = connect();
    let kp = Keypair {
        id: 0,
        name: "mine".into(),
        user_id: "u1".into(),
        public_key: "ssh-ed25519 AAAA test".into(),
        fingerprint: "aa:bb".into(),
        kind: "ssh".into(),
        created_at: 5,
    };
    s.create_keypair(&kp).unwrap();
    assert!(matches!(s.create_keypair(&kp), Err(Error::Conflict(_))));
    let stored = s.keypair("u1", "mine").unwrap();
    assert_eq!(
        (stored.public_key.as_str(), stored.created_at),
        (kp.public_key.as_str(), 5)
    );
    assert!(s.keypairs("u2").unwrap().is_empty());
    s.delete_keypair("u1", "mine").unwrap();
    assert!(matches!(s.keypair("u1", "mine"), Err(Error::NotFound(_))));

    s.set_quota("p1", "floating_ips", 3).unwrap();
    s.set_quota("p1", "floating_ips", 4).unwrap();
    assert_eq!(
        s.quota_overrides("p1").unwrap(),
        [("floating_ips".to_string(), 4)]
    );
    assert!(s.quota_overrides("p2").unwrap().is_empty());
    s.delete_quotas("p1").unwrap();
    assert!(s.quota_overrides("p1").unwrap().is_empty());

    let report = ServiceReport {
        host: "compute-1".into(),
        network_host: false,
        networks: vec!["192.168.56.0/24".into()],
        ..Default::default()
    };
    s.report_service(&report, 10).unwrap();
    s.report_service(&report, 20).unwrap();
    let services = s.services().unwrap();
    assert_eq!(services.len(), 1);
    assert_eq!(services[0].host, "compute-1");
    assert_eq!(services[0].last_seen, 20);
    assert_eq!(services[0].networks, report.networks);
}

/// A host's latest diagnosis replaces its previous one and moves no generation.
pub fn host_diagnoses_are_kept(connect: Connect) {
    let s = connect();
    assert_eq!(s.diagnosis("compute-1").unwrap(), None);
    let g = s.generation().unwrap();
    s.set_diagnosis("compute-1", r#"{"checks":[]}"#, 10)
        .unwrap();
    s.set_diagnosis("compute-1", r#"{"checks":[1]}"#, 20)
        .unwrap();
    s.set_diagnosis("compute-2", "{}", 30).unwrap();
    assert_eq!(
        s.diagnosis("compute-1").unwrap(),
        Some((r#"{"checks":[1]}"#.to_string(), 20))
    );
    assert_eq!(s.generation().unwrap(), g);
}

/// A boot moves the generation and its host's, is in the change log for that host, and
/// is counted on the host; a reader's hook hears of the commit.
pub fn writes_touching_a_host_are_in_its_change_log(connect: Connect) {
    let s = connect();
    vmnet(&*s, "10.0.0.0/24");
    let heard = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let hook_heard = heard.clone();
    s.on_commit(Arc::new(move |g| {
        hook_heard.store(g, std::sync::atomic::Ordering::SeqCst)
    }));
    let before = s.generation().unwrap();
    let i = s.create_instance(&spec("a"), &cfg()).unwrap();
    let after = s.generation().unwrap();
    assert!(after > before);
    assert_eq!(heard.load(std::sync::atomic::Ordering::SeqCst), after);
    assert_eq!(s.host_generation("compute-1").unwrap(), after);
    assert!(s.host_generation("compute-2").unwrap() < after);
    let log = s.host_changes(before).unwrap();
    assert_eq!(log.upto, after);
    assert!(log.complete);
    assert!(
        log.changes.iter().any(|c| c.host == "compute-1"
            && c.generation == after
            && matches!(&c.scope, ChangeScope::Instance { uuid, .. } if *uuid == i.uuid)),
        "{log:?}"
    );
    assert_eq!(s.instance_counts().unwrap(), [("compute-1".to_string(), 1)]);
    let inputs = s.instance_inputs(&i.uuid).unwrap();
    assert_eq!(inputs.bound.len(), 1);
    assert_eq!(inputs.bound[0].address, first_address(&*s, &i.uuid));
    let net = inputs.bound[0].network_id;
    assert!(s.host_on_network("compute-1", net).unwrap());
    assert!(!s.host_on_network("compute-2", net).unwrap());
    assert!(s.host_changes(after).unwrap().changes.is_empty());
}

/// The hosts of a VLAN network know each other's management addresses (VXLAN flood lists):
/// a host that joins the network changes the plans of the hosts already there, a second
/// instance on a host that has it changes none of theirs, and a new `my_ip` changes them.
pub fn vlan_hosts_flood_to_each_other(connect: Connect) {
    let s = connect();
    let c = Config {
        network_manager: Manager::Vlan,
        vlan_interface: Some("eth2".into()),
        multi_host: true,
        ..Config::default()
    };
    let req = NetworkRequest {
        label: "private".into(),
        cidr: Some("10.0.0.0/24".into()),
        num_networks: Some(1),
        network_size: Some(256),
        ..Default::default()
    };
    s.create_networks(&req, &c).unwrap();
    let report = |host: &str, ip: &str| {
        let r = ServiceReport {
            host: host.into(),
            options: novanet_core::config::HostOptions {
                my_ip: Some(ip.into()),
                ..Default::default()
            },
            ..Default::default()
        };
        s.report_service(&r, 10).unwrap();
    };
    report("compute-1", "192.168.56.11");
    report("compute-2", "192.168.56.12");
    report("compute-3", "192.168.56.13");
    let boot = |name: &str, host: &str| {
        let mut sp = spec(name);
        sp.host = Some(host.into());
        s.create_instance(&sp, &c).unwrap()
    };
    let a = boot("a", "compute-1");
    boot("b", "compute-2");
    let net = s.instance_inputs(&a.uuid).unwrap().bound[0].network_id;
    let peers = |host: &str| {
        let mut p = s.host_inputs(host).unwrap().segment_peers[&net].clone();
        p.sort();
        p
    };
    assert_eq!(peers("compute-1"), ["192.168.56.11", "192.168.56.12"]);
    assert_eq!(peers("compute-2"), ["192.168.56.11", "192.168.56.12"]);
    let whole = |log: &crate::HostChanges, host: &str| {
        log.changes
            .iter()
            .any(|ch| ch.host == host && matches!(ch.scope, ChangeScope::Plan))
    };
    let before = s.generation().unwrap();
    boot("c", "compute-3");
    let log = s.host_changes(before).unwrap();
    assert!(
        whole(&log, "compute-1") && whole(&log, "compute-2"),
        "a host joining the network changes its other hosts' plans: {log:?}"
    );
    assert_eq!(peers("compute-1").len(), 3);
    let before = s.generation().unwrap();
    boot("d", "compute-3");
    let log = s.host_changes(before).unwrap();
    assert!(
        log.changes
            .iter()
            .all(|ch| ch.host != "compute-1" && ch.host != "compute-2"),
        "a second instance on a host of the network changes no other host: {log:?}"
    );
    let before = s.generation().unwrap();
    report("compute-3", "192.168.56.23");
    let log = s.host_changes(before).unwrap();
    assert!(
        whole(&log, "compute-1") && whole(&log, "compute-2"),
        "a host's new address changes its peers' plans: {log:?}"
    );
    assert!(peers("compute-2").contains(&"192.168.56.23".to_string()));
}

pub fn power_actions_and_driver_reports(connect: Connect) {
    use novanet_core::model::{PowerAction, PowerObserved, PowerReport};
    let s = connect();
    vmnet(&*s, "10.0.0.0/24");
    let i = s.create_instance(&spec("vm"), &cfg()).unwrap();
    // No driver has reported: a record, whose state follows the actions.
    assert_eq!(s.instance(&i.uuid).unwrap().power.state().status, "ACTIVE");
    let report = |state, done_id, console: Option<&str>| PowerReport {
        uuid: i.uuid.clone(),
        state,
        fault: None,
        done_id,
        console: console.map(str::to_string),
    };
    assert_eq!(
        s.report_power(
            "compute-1",
            &[report(PowerObserved::Active, 0, Some("boot\n"))]
        )
        .unwrap(),
        1
    );
    // The same report again changes nothing; another host's report on it is ignored.
    assert_eq!(
        s.report_power("compute-1", &[report(PowerObserved::Active, 0, None)])
            .unwrap(),
        0
    );
    assert_eq!(
        s.report_power("compute-2", &[report(PowerObserved::Shutoff, 0, Some("x"))])
            .unwrap(),
        0
    );
    assert_eq!(
        s.console_output(&i.uuid).unwrap().as_deref(),
        Some("boot\n")
    );
    let stopped = s
        .request_power_action(&i.uuid, PowerAction::Stop, 10)
        .unwrap();
    assert_eq!(stopped.power.action_id, 1);
    let st = s.instance(&i.uuid).unwrap().power.state();
    assert_eq!((st.status, st.task_state), ("ACTIVE", Some("powering-off")));
    s.report_power("compute-1", &[report(PowerObserved::Shutoff, 1, None)])
        .unwrap();
    let st = s.instance(&i.uuid).unwrap().power.state();
    assert_eq!(
        (st.status, st.task_state, st.power_state),
        ("SHUTOFF", None, 4)
    );
    let mut failed = report(PowerObserved::Error, 1, None);
    failed.fault = Some("qemu: no such file".into());
    s.report_power("compute-1", &[failed]).unwrap();
    let inst = s.instance(&i.uuid).unwrap();
    assert_eq!(inst.power.state().status, "ERROR");
    assert_eq!(inst.power.fault.as_deref(), Some("qemu: no such file"));
    // Deleted with its instance; an unknown instance is not found.
    s.delete_instance(&i.uuid, &cfg(), 20).unwrap();
    assert!(s.console_output(&i.uuid).is_err());
    assert!(s
        .request_power_action(&i.uuid, PowerAction::Start, 30)
        .is_err());
}

/// A multi-host network gives each host with instances on it one address of its own (its
/// instances' gateway and DHCP server), reserved with the host's first boot there and
/// recorded as a change of that host's whole plan; a shared-address or single-host network
/// gives none.
pub fn multi_host_networks_give_each_host_its_own_address(connect: Connect) {
    let s = connect();
    let net = |label: &str, cidr: &str, multi: bool, share: bool| {
        let req = NetworkRequest {
            label: label.into(),
            cidr: Some(cidr.into()),
            bridge: Some(format!("br-{label}")),
            multi_host: Some(multi),
            share_address: Some(share),
            ..Default::default()
        };
        s.create_networks(&req, &cfg()).unwrap().0[0].uuid.clone()
    };
    let multi = net("multi", "10.0.0.0/24", true, false);
    let shared = net("shared", "10.0.1.0/24", true, true);
    let single = net("single", "10.0.2.0/24", false, false);
    let boot = |name: &str, host: &str| {
        let mut sp = spec(name);
        sp.host = Some(host.into());
        sp.networks = vec![RequestedNetwork {
            uuid: multi.clone(),
            fixed_ip: None,
        }];
        s.create_instance(&sp, &cfg()).unwrap()
    };
    let whole = |log: &crate::HostChanges, host: &str| {
        log.changes
            .iter()
            .any(|ch| ch.host == host && matches!(ch.scope, ChangeScope::Plan))
    };
    let before = s.generation().unwrap();
    let a = boot("a", "compute-1");
    assert!(whole(&s.host_changes(before).unwrap(), "compute-1"));
    let id = s.network(&multi).unwrap().id;
    let own = |host: &str| {
        s.host_inputs(host)
            .unwrap()
            .host_addresses
            .get(&id)
            .cloned()
    };
    let one = own("compute-1").expect("compute-1's address");
    // Each bound address carries its instance's project (account_identifier's IPv6 address).
    let bound = s.host_inputs("compute-1").unwrap().bound;
    assert!(!a.spec.project_id.is_empty());
    assert!(bound
        .iter()
        .any(|x| x.instance_uuid == a.uuid && x.project_id == a.spec.project_id));
    let b = boot("b", "compute-2");
    let two = own("compute-2").expect("compute-2's address");
    let taken = [first_address(&*s, &a.uuid), first_address(&*s, &b.uuid)];
    assert!(one != two && !taken.contains(&one) && !taken.contains(&two));
    let gateway = s.network(&multi).unwrap().gateway.unwrap();
    assert!(
        one != gateway && two != gateway,
        "the shared gateway stays unused"
    );
    // A second boot on the host keeps its address.
    let c = boot("c", "compute-1");
    assert_eq!(own("compute-1").as_deref(), Some(one.as_str()));
    assert!(![one.as_str(), two.as_str()].contains(&first_address(&*s, &c.uuid).as_str()));
    assert_eq!(s.reserve_host_address(&multi, "compute-1").unwrap(), one);
    // Released, the address is the host's no more and the host's plan follows.
    let before = s.generation().unwrap();
    assert_eq!(
        s.release_host_address(&multi, "compute-2")
            .unwrap()
            .as_deref(),
        Some(two.as_str())
    );
    assert!(whole(&s.host_changes(before).unwrap(), "compute-2"));
    assert_eq!(own("compute-2"), None);
    assert_eq!(s.release_host_address(&multi, "compute-2").unwrap(), None);
    let again = s.reserve_host_address(&multi, "compute-3").unwrap();
    assert_ne!(again, one);
    for key in [&shared, &single] {
        let e = s.reserve_host_address(key, "compute-1").unwrap_err();
        assert!(
            matches!(&e, Error::Invalid { field, .. } if field == "network"),
            "{e}"
        );
    }
    assert!(s.check_consistency().unwrap().is_empty());
}
