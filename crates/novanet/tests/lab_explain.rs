//! `novanet explain` against the kernel: a lab with security groups, a provider rule, a
//! floating IP and VMs on two hosts; every verdict explain gives for a matrix of pairs and
//! ports is what real traffic does.

mod common;
use common::*;

use std::time::Instant;

const OUTSIDE: &str = "192.168.56.101";
const FLOATING: &str = "68.99.26.170";

/// The ports the matrix asks about: 22 (open to all), 80 (the `web` group's rule, from the
/// `default` group's members), 8000 (opened by a rule, dropped by a provider rule), 8080
/// (no rule).
const PORTS: [u16; 4] = [22, 80, 8000, 8080];

fn boot(lab: &Lab, name: &str, host: &str, groups: &str, ip: &str) {
    lab.novanet(&[
        "boot",
        "--image",
        "cirros",
        "--flavor",
        "1",
        "--security-groups",
        groups,
        "--availability-zone",
        &format!("nova:{host}"),
        name,
    ]);
    assert!(lab.lab(&["plug", name]).status.success());
    wait_until(&format!("{name}'s lease"), patience(20), || {
        lab.file(&format!("vm-{name}.lease"))
            .contains(&format!("ip={ip} "))
    });
}

/// The cloud: cirros (10.0.0.2, compute-1, default, floating 68.99.26.170), vm2 (10.0.0.3,
/// compute-2, default) and vm3 (10.0.0.4, compute-1, default and web), each listening on
/// every port of `PORTS`; the outside listening on 8080.
fn build(lab: &Lab) {
    for rule in [
        ["default", "tcp", "22", "22", "0.0.0.0/0"],
        ["default", "tcp", "8000", "8000", "0.0.0.0/0"],
        // Pings from the outside's network only: the VMs' own pings need a same-net accept.
        ["default", "icmp", "-1", "-1", "192.168.56.0/24"],
    ] {
        let mut args = vec!["secgroup-add-rule"];
        args.extend(rule);
        lab.novanet(&args);
    }
    lab.novanet(&["secgroup-create", "web", "web servers"]);
    lab.novanet(&[
        "secgroup-add-group-rule",
        "web",
        "default",
        "tcp",
        "80",
        "80",
    ]);
    lab.novanet(&["provider-rule-add", "tcp", "8000", "8000", "0.0.0.0/0"]);
    lab.ok(
        "controller",
        &[
            "novanet",
            "manage",
            "floating",
            "create",
            "--pool",
            "nova",
            "--ip_range",
            "68.99.26.170/31",
        ],
    );
    boot(lab, "vm2", "compute-2", "default", "10.0.0.3");
    boot(lab, "vm3", "compute-1", "default,web", "10.0.0.4");
    lab.novanet(&["floating-ip-create"]);
    lab.novanet(&["floating-ip-associate", "cirros", FLOATING]);
    for vm in ["cirros", "vm2", "vm3"] {
        for port in PORTS {
            let out = lab.lab(&["serve", vm, &port.to_string()]);
            assert!(out.status.success(), "serve {vm}: {}", text(&out.stderr));
        }
    }
    assert!(lab.lab(&["serve", "outside", "8080"]).status.success());
    // Every agent has applied the last change: the provider rule drops what a group rule
    // opens, and the floating IP answers.
    wait_until(
        "the rules and the floating IP in place",
        patience(20),
        || {
            tcp_open(lab, "outside", FLOATING, 22)
                && !tcp_open(lab, "outside", FLOATING, 8000)
                && tcp_open(lab, "vm2", "10.0.0.4", 80)
        },
    );
}

/// One question: from a lab node to an address, what explain is asked and how it is probed.
struct Case {
    node: &'static str,
    src: &'static str,
    dst: &'static str,
    /// The address the probe sends to.
    addr: &'static str,
    /// None: ping.
    port: Option<u16>,
}

fn cases() -> Vec<Case> {
    // (lab node, explain's name for it, its fixed address)
    let vms = [
        ("cirros", "cirros", "10.0.0.2"),
        ("vm2", "vm2", "10.0.0.3"),
        ("vm3", "vm3", "10.0.0.4"),
    ];
    let mut targets: Vec<(&str, &str, &str)> = vms.to_vec();
    targets.push(("cirros", FLOATING, FLOATING));
    targets.push(("outside", OUTSIDE, OUTSIDE));
    let mut sources: Vec<(&str, &str)> = vms.iter().map(|(n, s, _)| (*n, *s)).collect();
    sources.push(("outside", OUTSIDE));
    let mut out = Vec::new();
    for (node, src) in &sources {
        for (owner, dst, addr) in &targets {
            if owner == node {
                continue;
            }
            let ports = if *owner == "outside" {
                vec![None, Some(8080)]
            } else {
                std::iter::once(None)
                    .chain(PORTS.iter().copied().map(Some))
                    .collect()
            };
            for port in ports {
                out.push(Case {
                    node,
                    src,
                    dst,
                    addr,
                    port,
                });
            }
        }
    }
    out
}

/// explain's answer: the request's outcome and the reply's (None: no reply leg).
fn explain(lab: &Lab, c: &Case) -> (String, Option<String>, String) {
    let mut args = vec!["explain", c.src, c.dst];
    let port = c.port.map(|p| p.to_string());
    if let Some(p) = &port {
        args.extend(["tcp", p.as_str()]);
    }
    let human = lab.novanet(&args);
    args.push("--json");
    let v: serde_json::Value = serde_json::from_str(&lab.novanet(&args)).expect("explain's JSON");
    let outcome = |leg: &serde_json::Value| leg["verdict"]["outcome"].as_str().map(str::to_string);
    (
        outcome(&v["request"]).expect("a request verdict"),
        outcome(&v["reply"]),
        human,
    )
}

/// What the kernel does: a ping answered, or an HTTP answer from the listener.
fn probe(lab: &Lab, c: &Case) -> bool {
    match c.port {
        None => lab.succeeds(c.node, &["ping", "-c", "1", "-W", "2", c.addr]),
        Some(p) => tcp_open(lab, c.node, c.addr, p),
    }
}

fn explain_matches_the_kernel(name: &str, driver: &str, same_net: bool) {
    let driver_line = format!("firewall_driver = \"{driver}\"");
    let same_line = format!("allow_same_net_traffic = {same_net}");
    let Some(lab) = Lab::up(name, &[&driver_line, &same_line]) else {
        return;
    };
    build(&lab);
    let cases = cases();
    let start = Instant::now();
    // explain first (it reads only the store), then every probe at once: a dropped probe
    // waits out its timeout.
    let answers: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = cases
            .chunks(8)
            .map(|chunk| {
                let lab = &lab;
                s.spawn(move || chunk.iter().map(|c| explain(lab, c)).collect::<Vec<_>>())
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    let explained = start.elapsed();
    let real: Vec<bool> = std::thread::scope(|s| {
        let handles: Vec<_> = cases
            .iter()
            .map(|c| {
                let lab = &lab;
                s.spawn(move || probe(lab, c))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut checked = (0, 0);
    let mut unknown = Vec::new();
    let mut wrong = Vec::new();
    for ((c, (request, reply, human)), works) in cases.iter().zip(&answers).zip(&real) {
        let what = format!(
            "{} -> {} {}",
            c.src,
            c.dst,
            c.port.map_or("ping".to_string(), |p| format!("tcp {p}"))
        );
        let said = match (request.as_str(), reply.as_deref()) {
            ("allowed", Some("allowed")) => Some(true),
            ("dropped", _) | (_, Some("dropped")) => Some(false),
            _ => None,
        };
        match said {
            Some(expected) if expected == *works => {
                if expected {
                    checked.0 += 1;
                } else {
                    checked.1 += 1;
                }
            }
            Some(_) => wrong.push(format!(
                "{what}: explain says {request}/{reply:?}, the kernel {}\n{human}",
                if *works { "delivers" } else { "does not" }
            )),
            None => unknown.push(format!("{what}: {request}/{reply:?}")),
        }
    }
    println!(
        "{} cases explained in {} ms; {} allowed and {} dropped as the kernel does; not \
         decided from the plans: {unknown:#?}",
        cases.len(),
        explained.as_millis(),
        checked.0,
        checked.1
    );
    assert!(
        wrong.is_empty(),
        "explain disagrees with the kernel:\n{}",
        wrong.join("\n")
    );
    // The plans leave only the outside's route to the fixed network undecided.
    for u in &unknown {
        assert!(
            u.starts_with(OUTSIDE) && !u.contains(FLOATING),
            "undecided: {u}"
        );
    }
    assert!(checked.0 >= 12 && checked.1 >= 20, "{checked:?}");

    // What the operator reads: the hops and the deciding rule, or the missing one.
    println!(
        "{}",
        lab.novanet(&["explain", OUTSIDE, FLOATING, "tcp", "22"])
    );
    let out = lab.novanet(&["explain", "outside", FLOATING, "tcp", "8000"]);
    println!("{out}");
    assert!(out.contains("[controller] dnat"), "{out}");
    assert!(
        out.contains("provider rule: tcp 8000-8000 from 0.0.0.0/0 -> DROP"),
        "{out}"
    );
    let out = lab.novanet(&["explain", "vm2", "cirros", "tcp", "8080"]);
    if same_net {
        assert!(out.contains("allow_same_net_traffic accepts"), "{out}");
    } else {
        assert!(out.contains("tcp 8080 8080 10.0.0.3/32"), "{out}");
    }
    let out = lab.novanet(&["explain", "vm2", "vm3", "tcp", "80"]);
    assert!(
        out.contains("ALLOWED") && out.contains("ESTABLISHED"),
        "{out}"
    );
    let bad = lab.exec("controller", &["novanet", "explain", "nobody", "cirros"]);
    assert!(!bad.status.success());
    assert!(text(&bad.stderr).contains("src"), "{}", text(&bad.stderr));
}

#[test]
fn explain_matches_the_kernel_iptables() {
    explain_matches_the_kernel("exi", "iptables", false);
}

#[test]
fn explain_matches_the_kernel_nftables_same_net() {
    explain_matches_the_kernel("exn", "nftables", true);
}
