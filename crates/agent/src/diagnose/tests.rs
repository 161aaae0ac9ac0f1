use std::path::Path;

use super::*;
use crate::links::AddrInfo;
use novanet_core::config::Config;
use novanet_core::model::{FloatingIp, Network};
use novanet_core::plan::{host_plan, Snapshot};
use novanet_core::planning::{plan_networks, NetworkRequest};

/// Seed 004's controller: vmnet on br100 over eth2, one floating IP, metadata on my_ip.
fn plan(driver: FirewallDriver) -> HostPlan {
    let cfg = Config {
        flat_interface: Some("eth2".into()),
        public_interface: "eth1".into(),
        my_ip: "192.168.56.200".into(),
        firewall_driver: driver,
        ..Config::default()
    };
    let req = NetworkRequest {
        label: "vmnet".into(),
        cidr: Some("10.0.0.0/24".into()),
        bridge: Some("br100".into()),
        ..Default::default()
    };
    let mut n: Network = plan_networks(&req, cfg.network_manager, &cfg, &[], || "u".into())
        .unwrap()
        .networks
        .remove(0)
        .network;
    n.id = 1;
    n.host = Some("controller".into());
    let snap = Snapshot {
        networks: &[n],
        bound: &[],
        floating: &[FloatingIp {
            id: 0,
            address: "68.99.26.170".into(),
            pool: "nova".into(),
            interface: "eth1".into(),
            project_id: None,
            fixed_ip: Some("10.0.0.2".into()),
            instance_uuid: None,
            host: Some("controller".into()),
            auto_assigned: false,
        }],
        rules: &[],
        provider_rules: &[],
        segment_peers: &Default::default(),
        host_addresses: &Default::default(),
    };
    host_plan(&snap, &cfg, "controller", 7)
}

fn link(name: &str, master: Option<&str>, flags: &[&str], addrs: &[&str]) -> Link {
    Link {
        ifname: name.into(),
        master: master.map(String::from),
        flags: flags.iter().map(|f| f.to_string()).collect(),
        addr_info: addrs
            .iter()
            .map(|a| {
                let (local, len) = a.split_once('/').unwrap();
                AddrInfo {
                    family: "inet".into(),
                    local: local.into(),
                    prefixlen: len.parse().unwrap(),
                    ..AddrInfo::default()
                }
            })
            .collect(),
        ..Link::default()
    }
}

/// A host as the agent leaves it: everything in place.
fn healthy(plan: &HostPlan) -> Facts {
    let mut f = Facts::default();
    for (k, v) in [
        ("net/ipv4/ip_forward", "1"),
        ("net/ipv4/conf/all/rp_filter", "0"),
        ("net/ipv4/conf/br100/rp_filter", "0"),
        ("net/ipv4/conf/eth2/rp_filter", "0"),
        ("net/ipv4/conf/eth1/rp_filter", "2"),
        ("net/bridge/bridge-nf-call-iptables", "1"),
    ] {
        f.sysctls.insert(k.into(), v.into());
    }
    for l in [
        link("br100", None, &["UP"], &["10.0.0.1/24"]),
        link("eth2", Some("br100"), &["PROMISC", "UP"], &[]),
        link(
            "eth1",
            None,
            &["UP"],
            &["192.168.56.200/24", "68.99.26.170/32"],
        ),
    ] {
        f.links.insert(l.ifname.clone(), l);
    }
    let d = &plan.dhcp[0];
    let args = crate::dhcp::dnsmasq_args(
        d,
        Path::new("/s/networks"),
        Path::new("/s/networks/nova-br100.hook"),
    );
    let mut argv = vec!["dnsmasq".to_string()];
    argv.extend(args.clone());
    // The server and its --dhcp-script helper.
    f.dnsmasq = vec![
        Process {
            pid: 40,
            ppid: 1,
            args: argv.clone(),
        },
        Process {
            pid: 41,
            ppid: 40,
            args: argv,
        },
    ];
    f.dnsmasq_args.insert("br100".into(), args);
    f.hosts_lines.insert(
        "br100".into(),
        d.hosts.iter().map(|h| h.line(&d.domain)).collect(),
    );
    f.metadata = Some(Ok(()));
    f.last_apply = Some(LastApply {
        generation: 7,
        at: 1,
        seconds: 0.1,
        errors: vec![],
    });
    f.ruleset = Some(String::new());
    let nat = nft::TableContent {
        rules: vec![(
            "source_nat".into(),
            "oifname \"eth1\" ip saddr 10.0.0.0/24 snat to 192.168.56.200".into(),
        )],
        elements: [
            (
                "floating_dnat".to_string(),
                "68.99.26.170 : 10.0.0.2".to_string(),
            ),
            (
                "floating_snat".to_string(),
                "10.0.0.2 : 68.99.26.170".to_string(),
            ),
        ]
        .into(),
    };
    f.nat_expected = Some(nft::TableContent {
        rules: nat.rules.clone(),
        elements: nat.elements.clone(),
    });
    f.nat_live = Some(nat);
    f.nat_fix_file = "/s/diagnose/fix-nat.nft".into();
    f
}

fn wrong(checks: &[Check]) -> Vec<(String, String, String)> {
    checks
        .iter()
        .filter(|c| !c.ok)
        .map(|c| (c.check.clone(), c.subject.clone(), c.fix.clone()))
        .collect()
}

#[test]
fn a_converged_host_is_all_ok() {
    let p = plan(FirewallDriver::Nftables);
    let checks = run_checks(&p, &healthy(&p));
    assert_eq!(wrong(&checks), vec![], "{checks:#?}");
    let names: Vec<&str> = checks.iter().map(|c| c.check.as_str()).collect();
    for n in [
        "ip_forward",
        "rp_filter",
        "bridge",
        "bridge member",
        "promiscuous",
        "gateway address",
        "floating address",
        "dnsmasq",
        "dhcp hosts",
        "nat",
        "metadata",
        "drift",
        "other tables",
        "last apply",
    ] {
        assert!(names.contains(&n), "{n} not checked: {names:?}");
    }
}

#[test]
fn each_seed_warning_names_its_fix() {
    let p = plan(FirewallDriver::Nftables);
    let mut f = healthy(&p);
    f.sysctls.insert("net/ipv4/ip_forward".into(), "0".into());
    f.sysctls
        .insert("net/ipv4/conf/eth2/rp_filter".into(), "1".into());
    f.links.get_mut("eth2").unwrap().flags = vec!["UP".into()];
    f.dnsmasq.clear();
    f.nat_live
        .as_mut()
        .unwrap()
        .elements
        .remove(&("floating_dnat".into(), "68.99.26.170 : 10.0.0.2".into()));
    f.metadata = Some(Err("cannot connect to 192.168.56.200:8775: refused".into()));
    let w = wrong(&run_checks(&p, &f));
    let fix_of = |check: &str| {
        w.iter()
            .find(|(c, _, _)| c == check)
            .map(|(_, _, fix)| fix.clone())
            .unwrap_or_else(|| panic!("{check} not reported: {w:#?}"))
    };
    assert_eq!(fix_of("ip_forward"), "sysctl -w net.ipv4.ip_forward=1");
    assert_eq!(
        fix_of("rp_filter"),
        "sysctl -w net.ipv4.conf.eth2.rp_filter=0"
    );
    assert_eq!(fix_of("promiscuous"), "ip link set eth2 promisc on");
    assert!(fix_of("dnsmasq").starts_with(
        "systemctl restart novanet-agent (the agent starts it: dnsmasq --strict-order"
    ));
    assert_eq!(
        fix_of("nat"),
        "nft add element ip novanet_nat floating_dnat '{ 68.99.26.170 : 10.0.0.2 }'"
    );
    assert_eq!(fix_of("drift"), "nft -f /s/diagnose/fix-nat.nft");
    assert!(fix_of("metadata").contains("192.168.56.200:8775"));
    assert_eq!(w.len(), 7, "{w:#?}");
}

#[test]
fn two_dnsmasq_servers_are_wrong_but_a_helper_child_is_not() {
    let p = plan(FirewallDriver::Nftables);
    let mut f = healthy(&p);
    let mut stray = f.dnsmasq[0].clone();
    stray.pid = 90;
    stray.ppid = 1;
    stray.args.push("--port=0".into());
    f.dnsmasq.push(stray);
    let w = wrong(&run_checks(&p, &f));
    assert_eq!(
        w,
        vec![("dnsmasq".into(), "br100".into(), "kill 90".into())]
    );
}

#[test]
fn another_tables_drop_is_named_with_its_handle() {
    let p = plan(FirewallDriver::Nftables);
    let mut f = healthy(&p);
    f.ruleset = Some(
        "table inet site { # handle 3
\tchain forward { # handle 1
\t\ttype filter hook forward priority filter; policy accept;
\t\tct state invalid drop # handle 2
\t\tiifname \"br100\" drop # handle 5
\t\tiifname \"wg0\" drop # handle 6
\t}
}
table ip filter { # handle 4
\tchain FORWARD { # handle 1
\t\ttype filter hook forward priority filter; policy drop;
\t\tcounter packets 0 bytes 0 jump novanet-FORWARD # handle 9
\t}
}
"
        .into(),
    );
    let checks = run_checks(&p, &f);
    let c = checks.iter().find(|c| c.check == "other tables").unwrap();
    assert!(!c.ok);
    assert_eq!(c.found, "inet site forward: iifname \"br100\" drop");
    assert_eq!(c.fix, "nft delete rule inet site forward handle 5");
}

#[test]
fn iptables_drift_names_the_missing_rule() {
    let p = plan(FirewallDriver::Iptables);
    let mut f = healthy(&p);
    let (chains, jumps) = crate::firewall::iptables_expected(&p);
    let mut save = String::new();
    for table in ["filter", "nat", "mangle"] {
        save.push_str(&format!("*{table}\n"));
        for ((t, chain), rules) in &chains {
            if t == table {
                save.push_str(&format!(":{chain} - [0:0]\n"));
                for r in rules {
                    if !r.contains("DNAT --to-destination 10.0.0.2") {
                        save.push_str(&format!("{r}\n"));
                    }
                }
            }
        }
        for (t, j) in &jumps {
            if t == table {
                save.push_str(&format!("{j}\n"));
            }
        }
        save.push_str("COMMIT\n");
    }
    f.iptables_save = Some(save);
    f.iptables_fix_file = "/s/diagnose/fix-iptables.rules".into();
    let w = wrong(&run_checks(&p, &f));
    assert!(w.contains(&(
        "nat".into(),
        "68.99.26.170 DNAT".into(),
        "iptables -t nat -A novanet-PREROUTING -d 68.99.26.170/32 -j DNAT --to-destination 10.0.0.2".into()
    )), "{w:#?}");
    assert!(w.contains(&(
        "drift".into(),
        "iptables".into(),
        "iptables-restore --noflush /s/diagnose/fix-iptables.rules".into()
    )));
    assert_eq!(w.len(), 2, "{w:#?}");
}

#[test]
fn the_text_shows_the_fix_under_what_is_wrong() {
    let d = Diagnosis {
        host: "compute-1".into(),
        generation: 3,
        at: 10,
        checks: vec![check(
            "ip_forward",
            "",
            false,
            "1".into(),
            "0".into(),
            "sysctl -w net.ipv4.ip_forward=1".into(),
        )],
    };
    assert_eq!(
        d.text(),
        "host compute-1: plan generation 3, checked at 10 (unix); 1 check(s), 1 wrong\n\
         WRONG  ip_forward: expected 1; found 0\n       fix: sysctl -w net.ipv4.ip_forward=1\n"
    );
}

#[test]
fn the_kept_plan_reads_back_checked() {
    let dir = std::env::temp_dir().join(format!("novanet-diag-plan-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = plan(FirewallDriver::Nftables);
    save_plan(&dir, &p).unwrap();
    assert_eq!(load_plan(&dir).unwrap(), p);
    std::fs::write(dir.join("plan.json"), "{").unwrap();
    assert!(load_plan(&dir)
        .unwrap_err()
        .to_string()
        .contains("plan.json"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn dual_stack_needs_one_radvd_per_bridge_and_ipv6_forwarding() {
    let mut p = plan(FirewallDriver::Nftables);
    let ra: novanet_core::plan::RaPlan = serde_json::from_value(serde_json::json!({
        "network_uuid": "u", "bridge": "br100", "prefix": "fd00:1::/64", "gateway": "fd00:1::1"
    }))
    .unwrap();
    let want = crate::ra::radvd_args(&ra, Path::new("/var/lib/novanet/ra"));
    p.ra.push(ra);
    let mut f = healthy(&p);
    f.radvd_args.insert("br100".into(), want.clone());
    let w = wrong(&run_checks(&p, &f));
    assert_eq!(
        w.iter()
            .map(|(c, s, _)| (c.as_str(), s.as_str()))
            .collect::<Vec<_>>(),
        vec![("radvd", "br100"), ("ipv6 forwarding", "")]
    );
    assert!(w[0].2.starts_with("systemctl restart novanet-agent (the agent starts it: radvd -C /var/lib/novanet/ra/nova-ra-br100.conf"), "{}", w[0].2);
    assert_eq!(w[1].2, "sysctl -w net.ipv6.conf.all.forwarding=1");
    // radvd and its privilege-separated child: one server.
    let args: Vec<String> = std::iter::once("radvd".to_string()).chain(want).collect();
    f.radvd = vec![
        Process {
            pid: 50,
            ppid: 1,
            args: args.clone(),
        },
        Process {
            pid: 51,
            ppid: 50,
            args,
        },
    ];
    f.sysctls
        .insert("net/ipv6/conf/all/forwarding".into(), "1".into());
    assert!(wrong(&run_checks(&p, &f)).is_empty());
}
