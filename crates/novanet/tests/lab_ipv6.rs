//! Issue 19, dual stack in the lab (`novanet lab up --ipv6`): radvd on the controller
//! advertises vmnet's prefix, each VM configures its address by SLAAC, and that address is
//! the one novanet computed and shows; VMs on two hosts reach each other over IPv6.

mod common;
use common::*;
use novanet_store::prelude::*;

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

/// A metadata path fetched at `fe80::a9fe:a9fe` on the VM's eth0 (empty: no answer).
fn metadata_v6(lab: &Lab, vm: &str, path: &str) -> String {
    let url = format!("http://[fe80::a9fe:a9fe%25eth0]/{path}");
    let out = lab.exec(vm, &["curl", "-g", "-s", "-f", "-m", "2", &url]);
    if out.status.success() {
        text(&out.stdout).trim().to_string()
    } else {
        String::new()
    }
}

/// The metadata service at fe80::a9fe:a9fe on each VM's link (DNATed to the agent on the
/// gateway host): each VM gets its own hostname. vm2 sending from cirros's link-local
/// address gets nothing, even where the host's answer would reach it (its neighbour entry
/// for that address poisoned to vm2's MAC, as an unsolicited advertisement from vm2 could):
/// the bridge table drops it.
fn metadata_over_ipv6(lab: &Lab) {
    for vm in ["cirros", "vm2"] {
        let mut got = String::new();
        wait_until(
            &format!("{vm}'s hostname over IPv6 metadata"),
            Duration::from_secs(10),
            || {
                got = metadata_v6(lab, vm, "latest/meta-data/hostname");
                !got.is_empty()
            },
        );
        assert_eq!(got, format!("{vm}.novalocal"));
    }
    // vm2's only link-local address becomes cirros's, so that it is the source it picks.
    let cirros_ll = link_local(lab, "cirros");
    let own_ll = link_local(lab, "vm2");
    let vm2_mac = lab.ok("vm2", &["cat", "/sys/class/net/eth0/address"]);
    let addr = |verb: &str, a: &str| {
        let mut cmd = vec!["ip", "-6", "addr", verb, a, "dev", "eth0"];
        if verb == "add" {
            cmd.push("nodad");
        }
        lab.ok("vm2", &cmd);
    };
    addr("del", &format!("{own_ll}/64"));
    addr("add", &format!("{cirros_ll}/64"));
    lab.ok(
        "controller",
        &[
            "ip",
            "-6",
            "neigh",
            "replace",
            &cirros_ll,
            "lladdr",
            vm2_mac.trim(),
            "dev",
            "br100",
            "nud",
            "permanent",
        ],
    );
    let stolen = metadata_v6(lab, "vm2", "latest/meta-data/hostname");
    lab.ok(
        "controller",
        &["ip", "-6", "neigh", "del", &cirros_ll, "dev", "br100"],
    );
    addr("del", &format!("{cirros_ll}/64"));
    addr("add", &format!("{own_ll}/64"));
    assert_eq!(
        stolen, "",
        "vm2 read cirros's metadata from cirros's link-local address"
    );
}

/// The VM's link-local address on eth0.
fn link_local(lab: &Lab, vm: &str) -> String {
    let t = lab.ok(
        vm,
        &[
            "ip", "-6", "-o", "addr", "show", "dev", "eth0", "scope", "link",
        ],
    );
    let w = t.split_whitespace().skip_while(|w| *w != "inet6").nth(1);
    w.and_then(|c| c.split('/').next())
        .expect("a link-local address")
        .to_string()
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
        .file("agent-controller/ra/nova-ra-br100.pid")
        .trim()
        .parse()
        .expect("radvd's PID file");
    assert!(std::path::Path::new(&format!("/proc/{pid}")).exists());
    let conf = lab.file("agent-controller/ra/nova-ra-br100.conf");
    assert!(conf.contains("prefix fd00:1::/64"), "{conf}");
    // One radvd, kept: the same PID some passes of the agent later, and no other started.
    std::thread::sleep(std::time::Duration::from_secs(5));
    let again: u32 = lab
        .file("agent-controller/ra/nova-ra-br100.pid")
        .trim()
        .parse()
        .expect("radvd's PID file, later");
    assert_eq!(again, pid, "radvd was started again");
    let conf_path = lab
        .dir
        .join("agent-controller/ra/nova-ra-br100.conf")
        .display()
        .to_string();
    let radvds = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| {
            std::fs::read(e.path().join("cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains(&conf_path))
        })
        .count();
    // radvd and its privilege-separated child.
    assert!(radvds <= 2, "{radvds} radvd processes for one bridge");
    // diagnose sees them as the one radvd of br100, and IPv6 forwarding on.
    let state = lab.dir.join("agent-controller").display().to_string();
    let out = lab.exec(
        "controller",
        &["novanet", "diagnose", "--json", "--state-dir", &state],
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("diagnose --json: {e}: {}", text(&out.stderr)));
    for name in ["radvd", "ipv6 forwarding"] {
        let c = v["checks"]
            .as_array()
            .expect("checks")
            .iter()
            .find(|c| c["check"] == name)
            .unwrap_or_else(|| panic!("no {name} check: {v}"));
        assert_eq!(c["ok"], true, "{c}");
    }
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
    lab.boot_at("vm2", "compute-2");
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

/// `curl` to `[addr]:port`, optionally from a given source address.
fn tcp6_open(lab: &Lab, from: &str, addr: &str, port: u16, source: Option<&str>) -> bool {
    let url = format!("http://[{addr}]:{port}/");
    let mut cmd = vec!["curl", "-g", "-s", "-m", "2"];
    if let Some(s) = source {
        cmd.extend(["--interface", s]);
    }
    cmd.push(&url);
    lab.succeeds(from, &cmd)
}

/// Both drivers, from the one rule model, with same-network traffic off: tcp 22 from ::/0
/// admits an IPv6 connection and its absence drops it (a 0.0.0.0/0 rule admits IPv4
/// only); a VM sending from a forged IPv6 source reaches nobody, and its router
/// advertisements configure nobody.
fn ipv6_security_groups(name: &str, driver: &str) {
    if !have_radvd() {
        return;
    }
    let driver_line = format!("firewall_driver = \"{driver}\"");
    let Some(lab) = Lab::up_with(
        name,
        &[
            "--ipv6",
            "--config",
            &driver_line,
            "--config",
            "allow_same_net_traffic = false",
        ],
    ) else {
        return;
    };
    let started = std::time::Instant::now();
    lab.boot_at("vm2", "compute-2");
    let (a, b) = both_slaac(&lab);
    metadata_over_ipv6(&lab);
    assert!(lab.lab(&["serve", "cirros", "22"]).status.success());

    // IPv4 rules only: no IPv6 connection gets in, IPv4 does.
    lab.novanet(&[
        "secgroup-add-rule",
        "default",
        "tcp",
        "22",
        "22",
        "0.0.0.0/0",
    ]);
    wait_state(&lab, "IPv4 port 22 open", true, |l| {
        tcp_open(l, "vm2", "10.0.0.2", 22)
    });
    assert!(
        !tcp6_open(&lab, "vm2", &a, 22, None),
        "0.0.0.0/0 admitted IPv6"
    );

    // tcp 22 from ::/0 admits it; its absence drops it again.
    lab.novanet(&["secgroup-add-rule", "default", "tcp", "22", "22", "::/0"]);
    wait_state(&lab, "IPv6 port 22 open", true, |l| {
        tcp6_open(l, "vm2", &a, 22, None)
    });
    let who = lab.ok(
        "vm2",
        &["curl", "-g", "-s", "-m", "2", &format!("http://[{a}]:22/")],
    );
    assert_eq!(who.trim(), format!("cirros {b}"));

    // A forged source on vm2 (its prefix, not its address) reaches nobody, though the
    // rule admits any source.
    let forged = "fd00:1::bad";
    lab.ok(
        "vm2",
        &[
            "ip",
            "-6",
            "addr",
            "add",
            &format!("{forged}/64"),
            "dev",
            "eth0",
            "nodad",
        ],
    );
    assert!(
        !tcp6_open(&lab, "vm2", &a, 22, Some(forged)),
        "a forged source got in"
    );
    assert!(tcp6_open(&lab, "vm2", &a, 22, Some(&b)));

    // vm2 advertises itself as a router for another prefix: nobody takes it.
    let conf = lab.dir.join("rogue-radvd.conf");
    std::fs::write(
        &conf,
        "interface eth0 { AdvSendAdvert on; MinRtrAdvInterval 3; MaxRtrAdvInterval 4; \
         prefix fd66::/64 { AdvOnLink on; AdvAutonomous on; }; };\n",
    )
    .unwrap();
    let mut rogue = Command::new("ip")
        .args([
            "netns",
            "exec",
            &format!("{}-vm2", lab.prefix),
            "radvd",
            "-n",
            "-m",
            "stderr",
        ])
        .arg("-C")
        .arg(&conf)
        .arg("-p")
        .arg(lab.dir.join("rogue-radvd.pid"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("radvd in vm2");
    // Ask for advertisements from cirros, then give the rogue a few of its intervals.
    let _ = lab.exec("cirros", &["rdisc6", "-1", "-w", "1000", "eth0"]);
    std::thread::sleep(Duration::from_secs(9));
    let addrs = lab.ok("cirros", &["ip", "-6", "addr", "show", "dev", "eth0"]);
    let routes = lab.ok("cirros", &["ip", "-6", "route", "show"]);
    // The rogue's main process, by its PID: its privilege-separated child goes with it.
    let _ = Command::new("kill").arg(rogue.id().to_string()).status();
    let _ = rogue.wait();
    assert!(
        !addrs.contains("fd66:"),
        "cirros took the rogue's prefix: {addrs}"
    );
    assert!(!routes.contains("fd66:"), "{routes}");
    let defaults: Vec<&str> = routes
        .lines()
        .filter(|l| l.starts_with("default"))
        .collect();
    assert!(
        defaults.iter().all(|l| !l.contains("nexthop")) && defaults.len() == 1,
        "a second default router: {routes}"
    );

    // Deleting the ::/0 rule closes IPv6 again.
    lab.novanet(&["secgroup-delete-rule", "default", "tcp", "22", "22", "::/0"]);
    wait_state(&lab, "IPv6 port 22 closed", false, |l| {
        tcp6_open(l, "vm2", &a, 22, None)
    });
    assert!(tcp_open(&lab, "vm2", "10.0.0.2", 22));

    // A rule from a group admits its members' IPv6 addresses: vm2 once it joins `web`
    // (from its own address: it still holds the forged one).
    lab.novanet(&["secgroup-create", "web", "web servers"]);
    lab.novanet(&[
        "secgroup-add-group-rule",
        "default",
        "web",
        "tcp",
        "22",
        "22",
    ]);
    assert!(
        !tcp6_open(&lab, "vm2", &a, 22, Some(&b)),
        "a non-member got in"
    );
    lab.novanet(&["add-secgroup", "vm2", "web"]);
    wait_state(&lab, "web member admitted over IPv6", true, |l| {
        tcp6_open(l, "vm2", &a, 22, Some(&b))
    });
    assert!(
        !tcp6_open(&lab, "vm2", &a, 22, Some(forged)),
        "a forged source got in as a member"
    );
    lab.novanet(&["remove-secgroup", "vm2", "web"]);
    wait_state(&lab, "former member refused over IPv6", false, |l| {
        tcp6_open(l, "vm2", &a, 22, Some(&b))
    });
    println!("{driver}: IPv6 security checked in {:?}", started.elapsed());
}

#[test]
fn ipv6_security_groups_nftables() {
    ipv6_security_groups("v6n", "nftables");
}

#[test]
fn ipv6_security_groups_iptables() {
    ipv6_security_groups("v6i", "iptables");
}

/// nova's `account_identifier` backend: no guest forms that address by itself, so these
/// VMs configure the address novanet shows statically. The plan carries it (computed by the
/// server from the project), so the filters admit it: one VM reaches the other from it,
/// while a forged source in the prefix is still dropped.
#[test]
fn account_identifier_addresses_pass_the_filters() {
    if !have_radvd() {
        return;
    }
    let Some(lab) = Lab::up_with(
        "v6a",
        &[
            "--ipv6",
            "--config",
            "ipv6_backend = \"account_identifier\"",
            "--config",
            "allow_same_net_traffic = false",
        ],
    ) else {
        return;
    };
    let started = std::time::Instant::now();
    lab.boot_at("vm2", "compute-2");
    // Both up (their SLAAC addresses, EUI-64, are not the ones novanet shows).
    wait_until("both VMs' SLAAC addresses", patience(40), || {
        slaac_address(&lab, "cirros").is_some() && slaac_address(&lab, "vm2").is_some()
    });
    let a = listed_v6(&lab, "cirros").expect("cirros's IPv6 address");
    let b = listed_v6(&lab, "vm2").expect("vm2's IPv6 address");
    // Not EUI-64: the project's hash and ff in the interface identifier.
    assert!(!a.contains("ff:fe"), "{a}");
    for (vm, addr) in [("cirros", &a), ("vm2", &b)] {
        lab.ok(
            vm,
            &[
                "ip",
                "-6",
                "addr",
                "add",
                &format!("{addr}/64"),
                "dev",
                "eth0",
                "nodad",
            ],
        );
    }
    assert!(lab.lab(&["serve", "cirros", "22"]).status.success());
    lab.novanet(&["secgroup-add-rule", "default", "tcp", "22", "22", "::/0"]);
    wait_state(&lab, "IPv6 port 22 open from vm2's address", true, |l| {
        tcp6_open(l, "vm2", &a, 22, Some(&b))
    });
    let forged = "fd00:1::bad";
    lab.ok(
        "vm2",
        &[
            "ip",
            "-6",
            "addr",
            "add",
            &format!("{forged}/64"),
            "dev",
            "eth0",
            "nodad",
        ],
    );
    assert!(
        !tcp6_open(&lab, "vm2", &a, 22, Some(forged)),
        "a forged source got in"
    );
    println!("account_identifier checked in {:?}", started.elapsed());
}

/// Multi-host dual stack (`lab up --multi-host --ipv6`): each compute host is its own
/// instances' IPv6 gateway (the same gateway address, radvd and fe80::a9fe:a9fe on every
/// host's bridge, none of their neighbour discovery crossing the flat segment): no host's
/// gateway address fails duplicate address detection, each VM's router and metadata service
/// is its own host (its own hostname from it), and the VMs ping each other over IPv6.
#[test]
fn multi_host_each_host_is_its_instances_ipv6_gateway() {
    if !have_radvd() {
        return;
    }
    let Some(lab) = Lab::up_with("v6m", &["--ipv6", "--multi-host"]) else {
        return;
    };
    let started = std::time::Instant::now();
    lab.boot_at("vm2", "compute-2");
    let (a, b) = both_slaac(&lab);
    assert_eq!(listed_v6(&lab, "vm2").as_deref(), Some(b.as_str()));
    for (vm, host, peer) in [("cirros", "compute-1", &b), ("vm2", "compute-2", &a)] {
        let br = lab.ok(host, &["ip", "-6", "addr", "show", "dev", "br100"]);
        assert!(br.contains("fd00:1::1/64"), "{host}: {br}");
        assert!(!br.contains("dadfailed"), "{host}: {br}");
        let mut got = String::new();
        wait_until(
            &format!("{vm}'s hostname over IPv6 metadata"),
            Duration::from_secs(10),
            || {
                got = metadata_v6(&lab, vm, "latest/meta-data/hostname");
                !got.is_empty()
            },
        );
        assert_eq!(got, format!("{vm}.novalocal"));
        // Its router (fe80::a9fe:a9fe, radvd's source) and gateway are its own host's bridge.
        wait_until(
            &format!("{vm} to reach the gateway over IPv6"),
            Duration::from_secs(10),
            || lab.succeeds(vm, &["ping", "-6", "-c", "1", "-W", "1", "fd00:1::1"]),
        );
        let mac = lab.ok(host, &["cat", "/sys/class/net/br100/address"]);
        let neigh = lab.ok(vm, &["ip", "-6", "neigh", "show", "dev", "eth0"]);
        for addr in ["fe80::a9fe:a9fe ", "fd00:1::1 "] {
            let line = neigh.lines().find(|l| l.starts_with(addr)).unwrap_or("");
            assert!(
                line.contains(mac.trim()),
                "{vm} resolves {addr}elsewhere: {neigh}"
            );
        }
        wait_until(
            &format!("{vm} to reach {peer} over IPv6"),
            Duration::from_secs(10),
            || lab.succeeds(vm, &["ping", "-6", "-c", "1", "-W", "1", peer]),
        );
    }
    println!("multi-host dual stack checked in {:?}", started.elapsed());
}

/// VLAN mode over VXLAN with dual stack: each project network has its own /64, carved in
/// turn from `--fixed-range-v6` as nova carved them, advertised on its own bridge; two
/// projects' VMs configure addresses from their own prefixes and cannot reach each other
/// over IPv6 until a rule allows it, as over IPv4.
#[test]
fn vlan_projects_get_their_own_ipv6_prefixes() {
    if !have_radvd() {
        return;
    }
    let Some(lab) = Lab::up_with(
        "v6v",
        &["--ipv6", "--manager", "vlan", "--segment-driver", "vxlan"],
    ) else {
        return;
    };
    let started = std::time::Instant::now();
    let store = lab.store();
    let project = store.create_project("pb").unwrap();
    let user = store.create_user("u-pb", "pw").unwrap();
    store.assign_role(&user.id, &project.id, "member").unwrap();
    let out = lab.as_member("pb", &["boot", "--image", "cirros", "--flavor", "1", "b1"]);
    assert!(out.status.success(), "boot b1: {}", text(&out.stderr));
    let (mut a, mut b) = (None, None);
    wait_until("both projects' VMs' SLAAC addresses", patience(60), || {
        a = slaac_address(&lab, "cirros");
        b = slaac_address(&lab, "b1");
        a.is_some() && b.is_some()
    });
    let (a, b) = (a.unwrap(), b.unwrap());
    // The first and second /64 of fd00:1::/48, one per project network.
    assert!(a.starts_with("fd00:1::"), "{a}");
    assert!(b.starts_with("fd00:1:0:1:"), "{b}");
    assert_eq!(listed_v6(&lab, "cirros").as_deref(), Some(a.as_str()));
    let conf = lab.file("agent-controller/ra/nova-ra-br101.conf");
    assert!(conf.contains("prefix fd00:1:0:1::/64"), "{conf}");
    // Each reaches its own gateway; neither reaches the other project's VM.
    for (vm, gw) in [("cirros", "fd00:1::1"), ("b1", "fd00:1:0:1::1")] {
        wait_until(
            &format!("{vm} to reach its gateway {gw}"),
            Duration::from_secs(10),
            || lab.succeeds(vm, &["ping", "-6", "-c", "1", "-W", "1", gw]),
        );
    }
    assert!(lab.lab(&["serve", "cirros", "22"]).status.success());
    assert!(!lab.succeeds("b1", &["ping", "-6", "-c", "1", "-W", "1", &a]));
    assert!(
        !tcp6_open(&lab, "b1", &a, 22, None),
        "another project got in"
    );
    // A rule of cirros's project lets the other project in, through the gateway.
    lab.novanet(&["secgroup-add-rule", "default", "tcp", "22", "22", "::/0"]);
    wait_state(&lab, "IPv6 port 22 open across projects", true, |l| {
        tcp6_open(l, "b1", &a, 22, None)
    });
    println!("VLAN dual stack checked in {:?}", started.elapsed());
}

/// cirros's and vm2's SLAAC addresses, once both have one.
fn both_slaac(lab: &Lab) -> (String, String) {
    let (mut a, mut b) = (None, None);
    wait_until("both VMs' SLAAC addresses", patience(40), || {
        a = slaac_address(lab, "cirros");
        b = slaac_address(lab, "vm2");
        a.is_some() && b.is_some()
    });
    (a.unwrap(), b.unwrap())
}
