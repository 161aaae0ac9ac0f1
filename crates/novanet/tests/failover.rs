//! Several `novanet server` processes on one PostgreSQL database: a change made through one
//! reaches the others' plans within a second; an agent whose server dies moves to another
//! and keeps its plan; and 64 clients booting through three servers, one killed (`kill -9`)
//! and restarted mid-run, lose nothing. Skipped, with a message, where PostgreSQL is not
//! installed (scripts/setup.sh installs it).

use std::path::Path;
use std::time::{Duration, Instant};

use novanet_agent::client::Polled;
use novanet_bench::failover::{boot_many, check, prepare, Cloud, PASSWORD};
use novanet_store::test_support::shared_postgres;
use serde_json::json;

const BIN: &str = env!("CARGO_BIN_EXE_novanet");

/// Boots of the kill test: NOVANET_FAILOVER_BOOTS, or the 10,000 (about 57 s in a
/// debug build on two shared cores; `novanet bench failover` runs 100,000).
const BOOTS: usize = 10_000;

/// A new database with `servers` servers on it, room for `boots`.
fn cloud(case: &str, servers: usize, boots: usize) -> Option<(Cloud, String)> {
    let pg = shared_postgres()?;
    let db = pg.create_database(case);
    let cloud = Cloud::start(Path::new(BIN), &db, servers).expect("servers start");
    prepare(&db, boots).expect("room for the boots");
    Some((cloud, db))
}

fn boot_on(c: &novanet_agent::client::Client, name: &str, host: &str) -> String {
    let body = json!({"server": {"name": name, "flavorRef": "1",
        "availability_zone": format!("nova:{host}")}});
    let v = c.call("POST", "/v2.1/servers", Some(&body)).unwrap();
    v["server"]["id"].as_str().unwrap().to_string()
}

/// The whole plan of `host` from the client's server: (epoch, plan).
fn whole_plan(
    c: &novanet_agent::client::Client,
    host: &str,
) -> (u64, novanet_core::plan::HostPlan) {
    match c.poll(host, None, 0, false).unwrap().0 {
        Polled::Plan { epoch, plan, .. } => (epoch, *plan),
        other => panic!("asked for the whole plan, got {other:?}"),
    }
}

#[test]
fn a_boot_through_one_server_reaches_the_plans_of_the_others_within_a_second() {
    let Some((cloud, _db)) = cloud("fo_notify", 3, 64) else {
        return;
    };
    let clients: Vec<_> = (0..3).map(|i| cloud.client_of(&[i]).unwrap()).collect();
    boot_on(&clients[0], "first", "compute-0");
    // Each server's plan of compute-0 as an agent would hold it; then a boot through
    // server 0, and long polls on the others from what they held.
    let held: Vec<(u64, u64)> = clients
        .iter()
        .map(|c| {
            let (e, p) = whole_plan(c, "compute-0");
            (e, p.generation)
        })
        .collect();
    let t = Instant::now();
    let uuid = boot_on(&clients[0], "second", "compute-0");
    let booted = t.elapsed();
    for (i, c) in clients.iter().enumerate().skip(1) {
        let (polled, _) = c.poll("compute-0", Some(held[i]), 5, true).unwrap();
        let seen = t.elapsed();
        match polled {
            Polled::Deltas { generation, .. } => assert!(generation > held[i].1),
            other => panic!("server {i}: expected what changed, got {other:?}"),
        }
        assert!(
            seen < Duration::from_secs(1),
            "server {i} heard of the boot through server 0 after {seen:?} (the boot took {booted:?})"
        );
        eprintln!(
            "server {i} had the boot {:?} after it was acknowledged",
            seen - booted
        );
    }
    let (_, plan) = whole_plan(&clients[2], "compute-0");
    assert!(
        serde_json::to_string(&plan).unwrap().contains(&uuid),
        "server 2's plan names the instance booted through server 0"
    );
}

#[test]
fn an_agent_whose_server_dies_moves_on_and_keeps_its_plan() {
    let Some((mut cloud, _db)) = cloud("fo_agent", 2, 64) else {
        return;
    };
    let agent = cloud.client_of(&[0, 1]).unwrap();
    boot_on(&agent, "a", "compute-0");
    boot_on(&agent, "b", "compute-0");
    let (epoch, held) = whole_plan(&agent, "compute-0");
    assert_eq!(agent.server(), cloud.url(0));
    cloud.kill(0).unwrap();
    // The agent's next poll, from the plan it holds: server 0 does not answer, server 1
    // does. Its epoch is another, so it sends the whole plan, which is the plan held: the
    // agent's apply (a comparison with the kernel) has nothing to change.
    let (polled, _) = agent
        .poll("compute-0", Some((epoch, held.generation)), 0, true)
        .unwrap();
    assert_eq!(agent.server(), cloud.url(1));
    match polled {
        Polled::Plan {
            epoch: other,
            plan,
            refused,
        } => {
            assert_ne!(other, epoch, "each server has its own epoch");
            assert!(refused.is_empty(), "{refused:?}");
            let mut plan = *plan;
            plan.generation = held.generation;
            assert!(
                plan == held,
                "the other server's plan differs from the one held:\n{}\n{}",
                serde_json::to_string(&held).unwrap(),
                serde_json::to_string(&plan).unwrap()
            );
        }
        other => panic!("expected the whole plan from the other server, got {other:?}"),
    }
    // And calls keep going to the server that answers, with the same login.
    boot_on(&agent, "c", "compute-0");
    assert_eq!(agent.server(), cloud.url(1));
    // The client commands too: NOVANET_SERVER names both, the first does not answer.
    let out = std::process::Command::new(BIN)
        .args(["list", "--json"])
        .env(
            "NOVANET_SERVER",
            format!("{},{}", cloud.url(0), cloud.url(1)),
        )
        .env_remove("OS_AUTH_URL")
        .env("OS_USERNAME", "admin")
        .env("OS_PASSWORD", PASSWORD)
        .env("OS_PROJECT_NAME", "admin")
        .output()
        .unwrap();
    let listed = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && listed.contains("\"c\""),
        "novanet list with the first server down: {listed}{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn three_servers_one_killed_mid_run_lose_nothing() {
    let boots: usize = std::env::var("NOVANET_FAILOVER_BOOTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(BOOTS);
    let Some((mut cloud, db)) = cloud("fo_kill", 3, boots) else {
        return;
    };
    let out = boot_many(&mut cloud, 64, boots, Some((1, Duration::from_millis(300)))).unwrap();
    eprintln!(
        "{} boots acknowledged in {:.1} s ({:.0}/s), {} failed on every server, slowest {:.2} s",
        out.acknowledged.len(),
        out.seconds,
        out.acknowledged.len() as f64 / out.seconds,
        out.failed.len(),
        out.slowest
    );
    // A client moves on from a dead server; only a write cut off mid-way may fail.
    assert!(
        out.failed.len() <= 64,
        "{} boots failed: {:?}",
        out.failed.len(),
        &out.failed[..out.failed.len().min(5)]
    );
    assert!(out.acknowledged.len() + out.failed.len() == boots);
    let problems = check(&db, &out.acknowledged).unwrap();
    assert!(problems.is_empty(), "{problems:#?}");
    // The restarted server serves again.
    let again = cloud.client_of(&[1]).unwrap();
    let uuid = boot_on(&again, "after", "compute-1");
    assert!(check(&db, &[uuid]).unwrap().is_empty());
}
