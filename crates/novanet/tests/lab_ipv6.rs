//! Issue 19, dual stack in the lab (`novanet lab up --ipv6`): radvd on the controller
//! advertises vmnet's prefix, each VM configures its address by SLAAC, and that address is
//! the one novanet computed and shows; VMs on two hosts reach each other over IPv6.

mod common;
use common::*;

use std::process::Command;
use std::time::Duration;

fn have_radvd() -> bool {
    let ok = Command::new("sh")
        .args(["-c", "command -v radvd"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!("skipping: radvd is not installed (scripts/setup.sh)");
    }
    ok
}

/// The VM's global IPv6 address once it is usable (not tentative), if it has one.
fn slaac_address(lab: &Lab, vm: &str) -> Option<String> {
    let out = lab.exec(
        vm,
        &[
            "ip", "-6", "-o", "addr", "show", "dev", "eth0", "scope", "global",
        ],
    );
    let t = text(&out.stdout);
    let line = t.lines().find(|l| !l.contains("tentative"))?;
    let cidr = line
        .split_whitespace()
        .skip_while(|w| *w != "inet6")
        .nth(1)?;
    Some(cidr.split('/').next()?.to_string())
}

/// The IPv6 address `novanet list` shows for a server.
fn listed_v6(lab: &Lab, vm: &str) -> Option<String> {
    let listed = lab.novanet(&["list"]);
    let row = listed.lines().find(|l| l.contains(&format!(" {vm} ")))?;
    row.split([' ', ',', '=', '|'])
        .find(|w| w.starts_with("fd00:1:"))
        .map(str::to_string)
}

#[test]
fn slaac_address_is_the_one_novanet_shows_and_vms_ping_over_ipv6() {
    if !have_radvd() {
        return;
    }
    let Some(lab) = Lab::up_with("v6", &["--ipv6"]) else {
        return;
    };
    let started = std::time::Instant::now();
    // radvd runs on the controller, recorded by PID under the agent's state dir.
    let pid: u32 = lab
        .file("agent-controller/networks/nova-ra-br100.pid")
        .trim()
        .parse()
        .expect("radvd's PID file");
    assert!(std::path::Path::new(&format!("/proc/{pid}")).exists());
    let conf = lab.file("agent-controller/networks/nova-ra-br100.conf");
    assert!(conf.contains("prefix fd00:1::/64"), "{conf}");
    let gw = lab.ok("controller", &["ip", "-6", "addr", "show", "dev", "br100"]);
    assert!(gw.contains("fd00:1::1/64"), "{gw}");

    let shown = listed_v6(&lab, "cirros").expect("novanet list shows an IPv6 address");
    let mut got = None;
    wait_until("cirros's SLAAC address", patience(30), || {
        got = slaac_address(&lab, "cirros");
        got.is_some()
    });
    assert_eq!(got.as_deref(), Some(shown.as_str()));
    println!("cirros autoconfigured {shown} in {:?}", started.elapsed());

    // A second VM on the other compute host: the same, and the two reach each other.
    lab.novanet(&[
        "boot",
        "--image",
        "cirros",
        "--flavor",
        "1",
        "--availability-zone",
        "nova:compute-2",
        "vm2",
    ]);
    let mut vm2 = None;
    wait_until("vm2's SLAAC address", patience(40), || {
        vm2 = slaac_address(&lab, "vm2");
        vm2.is_some()
    });
    let vm2 = vm2.unwrap();
    assert_eq!(listed_v6(&lab, "vm2").as_deref(), Some(vm2.as_str()));
    for (from, to) in [
        ("cirros", vm2.as_str()),
        ("vm2", shown.as_str()),
        ("vm2", "fd00:1::1"),
    ] {
        wait_until(
            &format!("{from} to reach {to} over IPv6"),
            Duration::from_secs(10),
            || lab.succeeds(from, &["ping", "-6", "-c", "1", "-W", "1", to]),
        );
    }
    // The default route is the gateway's advertisement.
    let routes = lab.ok("vm2", &["ip", "-6", "route", "show", "default"]);
    assert!(routes.contains("proto ra"), "{routes}");
    println!("dual stack checked in {:?}", started.elapsed());
}
