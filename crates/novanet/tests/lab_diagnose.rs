//! `novanet diagnose` in the lab: each thing the seeds' troubleshooting sections warn about is
//! broken by hand on the controller (ip_forward off, the flat interface not promiscuous,
//! dnsmasq killed and kept down, a floating IP's NAT deleted, strict rp_filter), the checks
//! name each with the command that fixes it, running those commands makes them ok again;
//! the controller's latest report is seen from the API; both metrics endpoints are scraped.

mod common;
use common::*;

use std::time::Instant;

use serde_json::Value;

/// Where each lab agent serves its metrics (its own namespace's loopback).
const AGENT_METRICS: &str = "127.0.0.1:9775";

fn diagnose_json(lab: &Lab, args: &[&str]) -> (i32, Value) {
    let mut cmd = vec!["novanet", "diagnose", "--json"];
    cmd.extend(args);
    let out = lab.exec("controller", &cmd);
    let code = out.status.code().unwrap_or(-1);
    if code == 2 && args.contains(&"--host") {
        // No report yet (404): the agent sends one with each heartbeat once it has a plan.
        println!("no report yet: {}", text(&out.stderr).trim());
        return (code, Value::Null);
    }
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "diagnose {args:?} (exit {code}): {e}\n{}{}",
            text(&out.stdout),
            text(&out.stderr)
        )
    });
    (code, v)
}

fn wrong(v: &Value) -> Vec<(String, String, String)> {
    v["checks"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["ok"] == false)
        .map(|c| {
            (
                c["check"].as_str().unwrap_or("").to_string(),
                c["subject"].as_str().unwrap_or("").to_string(),
                c["fix"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

fn sh(lab: &Lab, node: &str, script: &str) {
    lab.ok(node, &["sh", "-c", script]);
}

#[test]
fn diagnose_names_what_the_seeds_warn_about_and_its_fix() {
    // Every agent of the lab serves its metrics (the lab passes its environment on).
    std::env::set_var("NOVANET_AGENT_METRICS", AGENT_METRICS);
    let Some(lab) = Lab::up("dg", &[]) else {
        return;
    };
    let state = lab.dir.join("agent-controller").display().to_string();
    let local = ["--state-dir", state.as_str()];
    // A floating IP, so that the controller has NAT rules and a bound address to check.
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
    lab.novanet(&["floating-ip-create"]);
    lab.novanet(&["floating-ip-associate", "cirros", "68.99.26.170"]);

    // A converged host: every check ok, exit status 0.
    let start = Instant::now();
    let mut last = Value::Null;
    wait_until("the controller's checks all ok", patience(30), || {
        let (code, v) = diagnose_json(&lab, &local);
        let floating_bound = v["checks"]
            .as_array()
            .is_some_and(|c| c.iter().any(|c| c["check"] == "floating address"));
        last = v;
        code == 0 && floating_bound
    });
    println!("converged in {:?}: {last:#}", start.elapsed());
    let checks: Vec<&str> = last["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["check"].as_str().unwrap())
        .collect();
    for c in [
        "ip_forward",
        "rp_filter",
        "promiscuous",
        "bridge",
        "gateway address",
        "dnsmasq",
        "dhcp hosts",
        "nat",
        "floating address",
        "metadata",
        "drift",
        "other tables",
        "last apply",
    ] {
        assert!(checks.contains(&c), "{c} not checked: {checks:?}");
    }
    let human = lab.ok(
        "controller",
        &["novanet", "diagnose", "--state-dir", &state],
    );
    assert!(human.contains(", 0 wrong"), "{human}");
    println!("{human}");
    // Compute hosts too (a bridge on the flat interface, nothing served).
    let compute = lab.dir.join("agent-compute-1").display().to_string();
    let out = lab.exec(
        "compute-1",
        &["novanet", "diagnose", "--state-dir", &compute],
    );
    assert!(
        out.status.success(),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );

    // The controller's latest report, from the API, as the agent sent it with a heartbeat.
    wait_until("the controller's report", patience(30), || {
        let (code, v) = diagnose_json(&lab, &["--host", "controller"]);
        if code != 0 {
            println!("the controller's report, not yet ok: {:?}", wrong(&v));
        }
        code == 0 && v["host"] == "controller"
    });
    // A sysctl turned off under a running agent: its next report says so, before the
    // agent's periodic resync puts it back.
    let seen = Instant::now();
    wait_until(
        "ip_forward wrong in the controller's report",
        patience(30),
        || {
            // Again each time: the agent's periodic resync may have put it back meanwhile.
            sh(&lab, "controller", "sysctl -qw net.ipv4.ip_forward=0");
            let (code, v) = diagnose_json(&lab, &["--host", "controller"]);
            code == 1 && wrong(&v).iter().any(|(c, _, _)| c == "ip_forward")
        },
    );
    println!("a broken sysctl reached the report in {:?}", seen.elapsed());
    sh(&lab, "controller", "sysctl -qw net.ipv4.ip_forward=1");

    // Both metrics endpoints: the server's (admin token) and the controller agent's.
    let server = lab.novanet(&["api-get", "/metrics"]);
    let server: String = serde_json::from_str(server.trim()).expect("the metrics text");
    for want in [
        "novanet_http_requests_total{route=\"/novanet/v1/hosts/{host}/report\",method=\"POST\",status=\"200\"}",
        "novanet_store_operation_duration_seconds_count{noun=\"services\",kind=\"write\"}",
        "novanet_agent_up{host=\"controller\"} 1",
    ] {
        assert!(server.contains(want), "{want} not in\n{server}");
    }
    let agent = lab.ok(
        "controller",
        &["curl", "-sf", &format!("http://{AGENT_METRICS}/metrics")],
    );
    for want in [
        "novanet_agent_applies_total ",
        "novanet_agent_apply_duration_seconds_bucket{le=\"+Inf\"} ",
        "novanet_agent_apply_failures_total{kind=\"dhcp\"} ",
        "novanet_agent_dnsmasq_starts_total ",
        "novanet_agent_plan_lag_seconds ",
        "novanet_agent_check_wrong{check=\"ip_forward\"} ",
    ] {
        assert!(agent.contains(want), "{want} not in\n{agent}");
    }
    assert!(lab.succeeds(
        "controller",
        &["curl", "-sf", &format!("http://{AGENT_METRICS}/healthz")]
    ));

    // An operator's broken host: the agent is stopped (else it repairs what follows).
    for pid in lab.pids("agent-controller") {
        sh(&lab, "controller", &format!("kill {pid}"));
    }
    let dnsmasq = lab.dnsmasq_pid().expect("the controller's dnsmasq");
    sh(&lab, "controller", &format!("kill {dnsmasq}"));
    wait_until("dnsmasq gone", patience(5), || {
        !std::path::Path::new(&format!("/proc/{dnsmasq}")).exists()
    });
    sh(&lab, "controller", "sysctl -qw net.ipv4.ip_forward=0");
    sh(
        &lab,
        "controller",
        "sysctl -qw net.ipv4.conf.br100.rp_filter=1",
    );
    sh(&lab, "controller", "ip link set eth2 promisc off");
    sh(
        &lab,
        "controller",
        "nft delete element ip novanet_nat floating_dnat '{ 68.99.26.170 : 10.0.0.2 }'",
    );

    let (code, v) = diagnose_json(&lab, &local);
    assert_eq!(code, 1, "{v:#}");
    let w = wrong(&v);
    println!("broken: {w:#?}");
    let fix_of = |check: &str, subject: &str| -> String {
        w.iter()
            .find(|(c, s, _)| c == check && s == subject)
            .map(|(_, _, f)| f.clone())
            .unwrap_or_else(|| panic!("{check} {subject} not reported wrong: {w:#?}"))
    };
    assert_eq!(fix_of("ip_forward", ""), "sysctl -w net.ipv4.ip_forward=1");
    assert_eq!(
        fix_of("rp_filter", "br100"),
        "sysctl -w net.ipv4.conf.br100.rp_filter=0"
    );
    assert_eq!(fix_of("promiscuous", "eth2"), "ip link set eth2 promisc on");
    assert!(fix_of("dnsmasq", "br100").starts_with("systemctl restart novanet-agent"));
    assert_eq!(
        fix_of("nat", "68.99.26.170 DNAT"),
        "nft add element ip novanet_nat floating_dnat '{ 68.99.26.170 : 10.0.0.2 }'"
    );
    assert!(fix_of("drift", "ip novanet_nat").starts_with("nft -f "));
    // The text form names the same, with the fix under each.
    let out = lab.exec(
        "controller",
        &["novanet", "diagnose", "--state-dir", &state],
    );
    assert_eq!(out.status.code(), Some(1));
    let human = text(&out.stdout);
    assert!(
        human.contains("WRONG  promiscuous eth2: expected promiscuous"),
        "{human}"
    );
    assert!(
        human.contains("       fix: ip link set eth2 promisc on"),
        "{human}"
    );
    println!("{human}");

    // The fixes it gave, run as given, make the host right again; dnsmasq's is restarting
    // the agent (its lease hook needs it), which is the lab's `restart-agent` here.
    for (check, _, fix) in &w {
        if check != "dnsmasq" {
            sh(&lab, "controller", fix);
        }
    }
    let (_, v) = diagnose_json(&lab, &local);
    let left: Vec<String> = wrong(&v).into_iter().map(|(c, _, _)| c).collect();
    assert_eq!(left, ["dnsmasq"], "after the fixes: {:#?}", wrong(&v));
    let out = lab.lab(&["restart-agent", "controller"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    wait_until(
        "every check ok after the agent's restart",
        patience(30),
        || diagnose_json(&lab, &local).0 == 0,
    );
    // And the host works again: cirros reaches the outside through the controller.
    let out = lab.exec("cirros", &["ping", "-c", "1", "-W", "2", "192.168.56.101"]);
    assert!(out.status.success(), "{}", text(&out.stdout));
}
