//! Multi-host mode end to end (issue 17): every compute host is its own instances' gateway,
//! DHCP server, NAT and floating-IP host, and keeps serving them when another host or the
//! controller stops.

mod common;
use common::*;

use novanet_store::prelude::*;
use std::time::{Duration, Instant};

/// A field of a VM's last lease (`router`, `ip`, ...), as the lab's udhcpc hook wrote it.
fn lease_field(lab: &Lab, vm: &str, field: &str) -> Option<String> {
    let prefix = format!("{field}=");
    lab.file(&format!("vm-{vm}.lease"))
        .split_whitespace()
        .find_map(|f| f.strip_prefix(prefix.as_str()))
        .map(str::to_string)
}

fn wait_lease(lab: &Lab, vm: &str) -> (String, String) {
    wait_until(&format!("{vm}'s lease"), patience(30), || {
        lease_field(lab, vm, "router").is_some()
    });
    (
        lease_field(lab, vm, "ip").unwrap(),
        lease_field(lab, vm, "router").unwrap(),
    )
}

/// A whole DHCP exchange from the VM now (discover to ack, a second client beside the
/// lab's, whose hook changes nothing): true when some DHCP server answered it.
fn dhcp_answers(lab: &Lab, vm: &str) -> bool {
    lab.succeeds(
        vm,
        &[
            "busybox",
            "udhcpc",
            "-i",
            "eth0",
            "-n",
            "-q",
            "-t",
            "3",
            "-T",
            "1",
            "-s",
            "/bin/true",
        ],
    )
}

fn boot(lab: &Lab, name: &str, host: &str) {
    lab.novanet(&[
        "boot",
        "--image",
        "cirros",
        "--flavor",
        "1",
        "--availability-zone",
        &format!("nova:{host}"),
        name,
    ]);
}

fn kill(pid: u64) {
    let _ = std::process::Command::new("kill")
        .arg(pid.to_string())
        .status();
}

fn dnsmasq_of(lab: &Lab, host: &str) -> Option<u64> {
    lab.file(&format!("agent-{host}/networks/nova-br100.pid"))
        .trim()
        .parse()
        .ok()
}

fn has_address(lab: &Lab, node: &str, dev: &str, address: &str) -> bool {
    let out = lab.exec(node, &["ip", "-4", "addr", "show", dev]);
    text(&out.stdout).contains(&format!("inet {address}/"))
}

fn serve(lab: &Lab, node: &str, port: &str) {
    let out = lab.lab(&["serve", node, port]);
    assert!(out.status.success(), "serve {node}: {}", text(&out.stderr));
}

/// What reaches the outside from `vm`: "outside SOURCE" (the address it saw).
fn outbound(lab: &Lab, vm: &str) -> Option<String> {
    curl(lab, vm, &format!("http://{OUTSIDE}:8080/"))
}

const OUTSIDE: &str = "192.168.56.101";
const COMPUTE_1: &str = "192.168.56.202";
const COMPUTE_2: &str = "192.168.56.203";

fn metadata_hostname(lab: &Lab, vm: &str) -> Option<String> {
    curl(
        lab,
        vm,
        "http://169.254.169.254/2009-04-04/meta-data/hostname",
    )
}

/// Everything a VM on `vm`'s host needs from that host, with `floating` its floating IP.
fn fully_working(lab: &Lab, vm: &str, host_ip: &str, floating: &str) {
    assert!(dhcp_answers(lab, vm), "{vm}: DHCP");
    assert_eq!(
        metadata_hostname(lab, vm),
        Some(format!("{vm}.novalocal")),
        "{vm}: metadata"
    );
    assert_eq!(
        outbound(lab, vm),
        Some(format!("outside {floating}")),
        "{vm}: outbound through its floating IP"
    );
    assert_eq!(
        curl(lab, "outside", &format!("http://{floating}:8000/")),
        Some(format!("{vm} {OUTSIDE}")),
        "{vm}: reached at {floating} (its host {host_ip})"
    );
}

#[test]
fn multi_host_each_compute_host_serves_its_own_vms() {
    let Some(lab) = Lab::up_with("mh", &["--multi-host"]) else {
        return;
    };
    let start = Instant::now();
    for rule in [["icmp", "-1", "-1"], ["tcp", "8000", "8000"]] {
        let mut args = vec!["secgroup-add-rule", "default"];
        args.extend(rule);
        args.push("0.0.0.0/0");
        lab.novanet(&args);
    }
    boot(&lab, "vm2", "compute-2");
    let (_, r1) = wait_lease(&lab, "cirros");
    let (ip2, r2) = wait_lease(&lab, "vm2");

    // Each host's own address in the network is its VMs' gateway and DHCP server; the
    // network's gateway (10.0.0.1) is on no host and the controller has no bridge address.
    assert_ne!(r1, r2);
    assert!(r1 != "10.0.0.1" && r2 != "10.0.0.1", "{r1} {r2}");
    assert!(has_address(&lab, "compute-1", "br100", &r1));
    assert!(has_address(&lab, "compute-2", "br100", &r2));
    assert!(!has_address(&lab, "compute-1", "br100", &r2));
    assert!(!has_address(&lab, "compute-2", "br100", &r1));
    assert!(!has_address(&lab, "controller", "br100", "10.0.0.1"));
    // Each dnsmasq knows only its own host's VMs.
    let hosts = |h: &str| lab.file(&format!("agent-{h}/networks/nova-br100.conf"));
    assert!(hosts("compute-1").contains("cirros.novalocal") && !hosts("compute-1").contains("vm2"));
    assert!(hosts("compute-2").contains(&format!("vm2.novalocal,{ip2}")));
    assert!(!hosts("compute-2").contains("cirros"));

    // Metadata is answered on each VM's own host, by its agent, with the server's content.
    for vm in ["cirros", "vm2"] {
        assert_eq!(metadata_hostname(&lab, vm), Some(format!("{vm}.novalocal")));
    }
    let id = lab.ok(
        "cirros",
        &[
            "curl",
            "-s",
            "-m",
            "2",
            "http://169.254.169.254/openstack/latest/meta_data.json",
        ],
    );
    assert!(id.contains("\"name\": \"cirros\""), "{id}");
    assert!(lab.file("agent-compute-2/metadata.json").contains("vm2"));
    assert!(!lab
        .file("agent-compute-2/metadata.json")
        .contains("\"cirros\""));

    // Outbound traffic leaves through the VM's own host: SNAT to that host's address.
    for (node, port) in [("cirros", "8000"), ("vm2", "8000"), ("outside", "8080")] {
        serve(&lab, node, port);
    }
    assert_eq!(
        outbound(&lab, "cirros"),
        Some(format!("outside {COMPUTE_1}"))
    );
    assert_eq!(outbound(&lab, "vm2"), Some(format!("outside {COMPUTE_2}")));

    // A floating IP works on either host: bound and NATed on that host's eth1.
    lab.novanet(&[
        "manage",
        "floating",
        "create",
        "--pool",
        "nova",
        "--ip_range",
        "68.99.26.170/31",
    ]);
    for (vm, fip, host) in [
        ("vm2", "68.99.26.170", "compute-2"),
        ("cirros", "68.99.26.171", "compute-1"),
    ] {
        lab.novanet(&["floating-ip-create"]);
        lab.novanet(&["floating-ip-associate", vm, fip]);
        wait_until(&format!("{fip} reaches {vm}"), patience(15), || {
            curl(&lab, "outside", &format!("http://{fip}:8000/")) == Some(format!("{vm} {OUTSIDE}"))
        });
        assert!(has_address(&lab, host, "eth1", fip), "{fip} on {host}");
        assert!(!has_address(&lab, "controller", "eth1", fip));
        assert_eq!(outbound(&lab, vm), Some(format!("outside {fip}")));
    }

    // A VM moved between hosts (deleted on one, booted on the other) is served by its new
    // host.
    boot(&lab, "vm3", "compute-1");
    let (_, r3) = wait_lease(&lab, "vm3");
    assert_eq!(r3, r1);
    lab.novanet(&["delete", "vm3"]);
    wait_until("vm3 unplugged", patience(15), || {
        !lab.file("lab.json").contains("\"vm3\"")
    });
    boot(&lab, "vm3", "compute-2");
    wait_until("vm3's lease from compute-2", patience(30), || {
        lease_field(&lab, "vm3", "router").as_deref() == Some(r2.as_str())
    });
    serve(&lab, "vm3", "8000");
    assert_eq!(outbound(&lab, "vm3"), Some(format!("outside {COMPUTE_2}")));
    println!(
        "multi-host set up and checked: {} ms",
        start.elapsed().as_millis()
    );

    // A VM deleted on compute-2: its lease there is ended at once (no server plan can carry
    // the release of a deleted instance's address on a multi-host network), so dnsmasq's
    // del event frees the address, not the 600 s disassociate timeout.
    boot(&lab, "vm4", "compute-2");
    let (vm4, _) = wait_lease(&lab, "vm4");
    let store = lab.store();
    wait_until("vm4's lease recorded", patience(15), || {
        store.fixed_ip(&vm4).is_ok_and(|f| f.fixed.leased)
    });
    lab.novanet(&["delete", "vm4"]);
    let t = Instant::now();
    wait_until("vm4's address free again", patience(15), || {
        store
            .fixed_ip(&vm4)
            .is_ok_and(|f| f.fixed.instance_uuid.is_none())
    });
    println!(
        "a multi-host lease released: {} ms",
        t.elapsed().as_millis()
    );

    // compute-1's agent and dnsmasq stop: compute-2's VMs keep everything, cirros loses
    // only DHCP (no other host answers for it).
    let c2_dnsmasq = dnsmasq_of(&lab, "compute-2");
    let c2_nat = lab.ok("compute-2", &["iptables", "-t", "nat", "-S"]);
    for pid in lab.pids("agent-compute-1") {
        kill(pid);
    }
    kill(dnsmasq_of(&lab, "compute-1").expect("compute-1's dnsmasq"));
    std::thread::sleep(Duration::from_millis(300));
    fully_working(&lab, "vm2", COMPUTE_2, "68.99.26.170");
    assert!(dhcp_answers(&lab, "vm3"));
    assert!(
        !dhcp_answers(&lab, "cirros"),
        "cirros's DHCP came from another host"
    );
    // Its host's kernel state stays: the floating IP and NAT of cirros still work.
    assert_eq!(
        outbound(&lab, "cirros"),
        Some("outside 68.99.26.171".into())
    );

    // Restarted, compute-1 serves cirros again; compute-2 was not touched.
    let out = lab.lab(&["restart-agent", "compute-1"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let restart = Instant::now();
    wait_until("cirros's DHCP again", patience(30), || {
        dhcp_answers(&lab, "cirros")
    });
    println!(
        "compute-1 restarted to cirros's DHCP: {} ms",
        restart.elapsed().as_millis()
    );
    assert_eq!(dnsmasq_of(&lab, "compute-2"), c2_dnsmasq);
    assert_eq!(
        lab.ok("compute-2", &["iptables", "-t", "nat", "-S"]),
        c2_nat
    );

    // The whole controller stops (server and its agent): both compute hosts' VMs keep DHCP,
    // outbound NAT and floating IPs.
    for what in ["server", "agent-controller"] {
        for pid in lab.pids(what) {
            kill(pid);
        }
    }
    wait_until("the server is gone", patience(10), || {
        !lab.succeeds("controller", &["novanet", "list"])
    });
    fully_working(&lab, "vm2", COMPUTE_2, "68.99.26.170");
    fully_working(&lab, "cirros", COMPUTE_1, "68.99.26.171");
    assert_eq!(outbound(&lab, "vm3"), Some(format!("outside {COMPUTE_2}")));

    // Still without a server: compute-2's agent keeps supervising its dnsmasq.
    let old = dnsmasq_of(&lab, "compute-2").expect("compute-2's dnsmasq");
    kill(old);
    let t = Instant::now();
    wait_until("compute-2's dnsmasq restarted", patience(15), || {
        dnsmasq_of(&lab, "compute-2").is_some_and(|p| p != old) && dhcp_answers(&lab, "vm2")
    });
    println!(
        "dnsmasq restarted without a server: {} ms",
        t.elapsed().as_millis()
    );
    // compute-1's agent, restarted after its dnsmasq died, applies the plan it kept.
    for pid in lab.pids("agent-compute-1") {
        kill(pid);
    }
    kill(dnsmasq_of(&lab, "compute-1").expect("compute-1's dnsmasq"));
    std::thread::sleep(Duration::from_millis(300));
    assert!(!dhcp_answers(&lab, "cirros"));
    let out = lab.lab(&["restart-agent", "compute-1"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let t = Instant::now();
    wait_until("cirros's DHCP from the kept plan", patience(30), || {
        dhcp_answers(&lab, "cirros")
    });
    println!(
        "a restarted agent served its kept plan: {} ms",
        t.elapsed().as_millis()
    );
    fully_working(&lab, "cirros", COMPUTE_1, "68.99.26.171");
    println!("multi-host lab test: {} ms", start.elapsed().as_millis());
}

#[test]
fn multi_host_shared_address_stays_on_each_host() {
    // On the nftables driver (the other test runs on iptables): its NAT and metadata
    // redirect are checked here too.
    let Some(lab) = Lab::up_with(
        "mhs",
        &[
            "--multi-host",
            "--share-address",
            "--config",
            "firewall_driver = \"nftables\"",
        ],
    ) else {
        return;
    };
    boot(&lab, "vm2", "compute-2");
    let (_, r1) = wait_lease(&lab, "cirros");
    let (_, r2) = wait_lease(&lab, "vm2");
    // One gateway address for every host's VMs, on every host's bridge.
    assert_eq!((r1.as_str(), r2.as_str()), ("10.0.0.1", "10.0.0.1"));
    assert!(has_address(&lab, "compute-1", "br100", "10.0.0.1"));
    assert!(has_address(&lab, "compute-2", "br100", "10.0.0.1"));

    // Each host NATs and answers metadata for its own VMs behind the one gateway address.
    serve(&lab, "outside", "8080");
    assert_eq!(
        outbound(&lab, "cirros"),
        Some(format!("outside {COMPUTE_1}"))
    );
    assert_eq!(outbound(&lab, "vm2"), Some(format!("outside {COMPUTE_2}")));
    for vm in ["cirros", "vm2"] {
        assert_eq!(metadata_hostname(&lab, vm), Some(format!("{vm}.novalocal")));
    }

    // Only the VM's own host answers ARP for it.
    for (vm, host) in [("cirros", "compute-1"), ("vm2", "compute-2")] {
        let mac = lab.ok(host, &["cat", "/sys/class/net/br100/address"]);
        let arp = text(
            &lab.exec(
                vm,
                &["arping", "-c", "3", "-w", "3", "-I", "eth0", "10.0.0.1"],
            )
            .stdout,
        )
        .to_lowercase();
        let macs: std::collections::BTreeSet<&str> = arp
            .lines()
            .filter_map(|l| l.split(['[', ']']).nth(1))
            .collect();
        assert_eq!(macs.len(), 1, "{vm}: one answer for 10.0.0.1: {arp}");
        assert!(macs.contains(mac.trim()), "{vm}: {host} answers: {arp}");
    }

    // No DHCP crosses the flat interface while both VMs ask: each host answers its own.
    let capture = std::thread::scope(|s| {
        let sniff = s.spawn(|| {
            lab.exec(
                "compute-2",
                &[
                    "timeout", "8", "tcpdump", "-n", "-i", "eth2", "-c", "1", "udp", "port", "67",
                    "or", "udp", "port", "68",
                ],
            )
        });
        std::thread::sleep(Duration::from_millis(800));
        assert!(dhcp_answers(&lab, "cirros"));
        assert!(dhcp_answers(&lab, "vm2"));
        sniff.join().unwrap()
    });
    let seen = text(&capture.stdout);
    assert!(
        !seen.contains("BOOTP") && !seen.contains("DHCP") && !seen.contains(".67"),
        "DHCP crossed compute-2's eth2: {seen}{}",
        text(&capture.stderr)
    );
    assert!(
        text(&capture.stderr).contains("0 packets captured"),
        "{}",
        text(&capture.stderr)
    );
}
