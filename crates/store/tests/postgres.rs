//! The PostgreSQL engine: the conformance suite every engine passes, each case on a new
//! database of a throwaway server (`novanet_store::test_support`), and what only several
//! servers on one database show. Skipped, with a message, where PostgreSQL is not installed.

use std::sync::Arc;

use novanet_store::conformance::Connect;
use novanet_store::prelude::*;
use novanet_store::test_support::shared_postgres;
use novanet_store::PgStore;

/// A new database for one case; every connection opens it again, as another server would.
fn fresh(case: &str) -> Connect {
    let url = shared_postgres()
        .expect("checked by ready()")
        .create_database(case);
    Arc::new(move || -> Box<dyn Store> { Box::new(PgStore::open(&url).expect("open store")) })
}

fn ready() -> bool {
    shared_postgres().is_some()
}

novanet_store::conformance_tests!(fresh, skip_unless: ready);

use std::collections::BTreeSet;

use novanet_core::config::Config;
use novanet_core::model::InstanceSpec;
use novanet_core::planning::NetworkRequest;
use novanet_core::Error;
use novanet_store::{Keypair, NewRule, SqliteStore};

fn cfg() -> Config {
    Config::default()
}

fn vmnet(store: &dyn Store, cidr: &str) {
    let req = NetworkRequest {
        label: "vmnet".into(),
        cidr: Some(cidr.into()),
        bridge: Some("br100".into()),
        network_size: Some(1 << (32 - cidr.split('/').nth(1).unwrap().parse::<u32>().unwrap())),
        ..Default::default()
    };
    store.create_networks(&req, &cfg()).unwrap();
}

fn spec(name: &str, host: &str) -> InstanceSpec {
    InstanceSpec {
        name: name.into(),
        project_id: "p1".into(),
        user_id: "u1".into(),
        host: Some(host.into()),
        ..Default::default()
    }
}

/// Several servers write at once; a reader following the change log as a server's plan
/// cache does sees every generation that touched a host exactly once, never skipping one
/// that committed late.
#[test]
fn concurrent_writers_commit_generations_in_order() {
    let Some(pg) = shared_postgres() else { return };
    let url = pg.create_database("generations_in_order");
    let first = PgStore::open(&url).unwrap();
    vmnet(&first, "10.0.0.0/22");
    let start = first.generation().unwrap();
    let writers: Vec<_> = (0..6)
        .map(|w| {
            let url = url.clone();
            std::thread::spawn(move || {
                let s = PgStore::open(&url).unwrap();
                (0..40)
                    .map(|n| {
                        s.create_instance(&spec(&format!("w{w}-{n}"), &format!("h{w}")), &cfg())
                            .unwrap()
                            .uuid
                    })
                    .count()
            })
        })
        .collect();
    let mut cursor = start;
    let mut seen = BTreeSet::new();
    let mut read = |cursor: &mut u64| {
        let ch = first.host_changes(*cursor).unwrap();
        assert!(ch.complete);
        for c in &ch.changes {
            assert!(c.generation > *cursor && c.generation <= ch.upto);
            seen.insert(c.generation);
        }
        *cursor = ch.upto;
    };
    while writers.iter().any(|w| !w.is_finished()) {
        read(&mut cursor);
    }
    let made: usize = writers.into_iter().map(|w| w.join().unwrap()).sum();
    read(&mut cursor);
    assert_eq!(made, 240);
    // Every boot touched its host: one generation each, none missed by the reader.
    let expected: BTreeSet<u64> = (start + 1..=cursor).collect();
    assert_eq!(seen, expected);
    assert!(first.check_consistency().unwrap().is_empty());
    let counts = first.instance_counts().unwrap();
    assert_eq!(counts.len(), 6);
    assert!(counts.iter().all(|(_, n)| *n == 40), "{counts:?}");
}

/// `manage db migrate`: an SQLite store copied into PostgreSQL answers the same, carries
/// on from the same ids, and a second copy into the same database is refused.
#[test]
fn an_sqlite_store_migrates_into_an_empty_database() {
    let Some(pg) = shared_postgres() else { return };
    let dir = std::env::temp_dir().join(format!("novanet-migrate-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let lite = SqliteStore::open_dir(&dir).unwrap();
    vmnet(&lite, "10.0.0.0/24");
    lite.create_floating_ips("nova", "eth0", &["172.24.4.1".parse().unwrap()])
        .unwrap();
    let a = lite
        .create_instance(&spec("a", "compute-1"), &cfg())
        .unwrap();
    let b = lite
        .create_instance(&spec("b", "compute-2"), &cfg())
        .unwrap();
    lite.delete_instance(&b.uuid, &cfg(), 1).unwrap();
    let fl = lite.allocate_floating_ip("p1", "nova", 10).unwrap();
    lite.associate_floating_ip(&fl.address, &a.uuid, None, None)
        .unwrap();
    let g = lite.ensure_default_group("p1").unwrap();
    let rule = NewRule {
        protocol: Some("tcp".into()),
        from_port: Some(22),
        to_port: Some(22),
        cidr: Some("0.0.0.0/0".into()),
        group_id: None,
    };
    lite.add_security_group_rule(g.id, &rule, -1).unwrap();
    let user = lite.create_user("alice", "secret").unwrap();
    let project = lite.create_project("demo").unwrap();
    lite.assign_role(&user.id, &project.id, "member").unwrap();
    lite.create_keypair(&Keypair {
        id: 0,
        name: "k".into(),
        user_id: user.id.clone(),
        public_key: "ssh-ed25519 AAAA".into(),
        fingerprint: "f".into(),
        kind: "ssh".into(),
        created_at: 1,
    })
    .unwrap();

    let url = pg.create_database("migrate");
    let counts =
        novanet_store::migrate::sqlite_to_postgres(&dir.join("state.sqlite"), &url).unwrap();
    assert!(counts.iter().all(|c| c.source == c.target), "{counts:?}");
    assert_eq!(
        counts
            .iter()
            .find(|c| c.table == "fixed_ips")
            .unwrap()
            .target,
        256
    );
    let pgs = PgStore::open(&url).unwrap();
    assert_eq!(pgs.generation().unwrap(), lite.generation().unwrap());
    assert_eq!(pgs.instances(None).unwrap(), lite.instances(None).unwrap());
    assert_eq!(pgs.fixed_ips(None).unwrap(), lite.fixed_ips(None).unwrap());
    assert_eq!(
        pgs.floating_ips(None).unwrap(),
        lite.floating_ips(None).unwrap()
    );
    assert_eq!(
        pgs.security_groups(None).unwrap(),
        lite.security_groups(None).unwrap()
    );
    assert_eq!(
        pgs.keypairs(&user.id).unwrap(),
        lite.keypairs(&user.id).unwrap()
    );
    assert_eq!(
        pgs.instance_counts().unwrap(),
        lite.instance_counts().unwrap()
    );
    assert_eq!(
        pgs.host_inputs("compute-1").unwrap(),
        lite.host_inputs("compute-1").unwrap()
    );
    pgs.issue_token("alice", "secret", "demo", 10, 100).unwrap();
    // New rows continue after the copied ones.
    let c = pgs
        .create_instance(&spec("c", "compute-1"), &cfg())
        .unwrap();
    assert!(c.id > b.id, "{} after {}", c.id, b.id);
    assert!(pgs.check_consistency().unwrap().is_empty());

    let again = novanet_store::migrate::sqlite_to_postgres(&dir.join("state.sqlite"), &url);
    assert!(matches!(again, Err(Error::Conflict(_))), "{again:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Servers starting together on a new database: one migrates, the others find it done.
#[test]
fn servers_opening_a_new_database_at_once_migrate_it_once() {
    let Some(pg) = shared_postgres() else { return };
    let url = pg.create_database("open_at_once");
    let opened: Vec<_> = (0..4)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || PgStore::open(&url).map(|s| s.generation().unwrap()))
        })
        .collect();
    for o in opened {
        assert_eq!(o.join().unwrap().unwrap(), 0);
    }
}
