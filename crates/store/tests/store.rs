//! The SQLite engine: the conformance suite every engine passes (each case on a new store
//! file in a temporary directory), and what only a file can show: a process killed in the
//! middle of its writes leaves a consistent store.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use novanet_core::config::Config;
use novanet_core::model::InstanceSpec;
use novanet_core::planning::NetworkRequest;
use novanet_core::Error;
use novanet_store::conformance::Connect;
use novanet_store::prelude::*;
use novanet_store::SqliteStore;

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

/// A new store file for one case; every connection opens that file again, as another
/// process would. The directory goes with the last connection.
fn fresh(case: &str) -> Connect {
    let dir = Arc::new(TempDir::new(case));
    Arc::new(move || -> Box<dyn Store> {
        Box::new(SqliteStore::open_dir(dir.path()).expect("open store"))
    })
}

novanet_store::conformance_tests!(fresh);

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
