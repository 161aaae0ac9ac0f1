//! `novanet bench ...`: figures, printed one per line as `name: value`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Instant;

use clap::Subcommand;
use novanet_core::config::Config;
use novanet_core::model::InstanceSpec;
use novanet_core::planning::NetworkRequest;
use novanet_core::Result;
use novanet_store::{SqliteStore, Store};

#[derive(Subcommand, Debug)]
pub enum BenchCmd {
    /// Fixed IP allocation rate on a fresh SQLite store with a /16
    Alloc {
        /// Allocations made by the single client
        #[arg(long, default_value_t = 5000)]
        count: usize,
        /// Allocations made by each of the 32 clients
        #[arg(long, default_value_t = 300)]
        per_client: usize,
    },
}

pub fn run(cmd: BenchCmd) -> Result<()> {
    match cmd {
        BenchCmd::Alloc { count, per_client } => alloc(count, per_client),
    }
}

struct Scratch(PathBuf);
impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn spec(n: usize) -> InstanceSpec {
    InstanceSpec {
        name: format!("bench-{n}"),
        project_id: "bench".into(),
        user_id: "bench".into(),
        host: Some("compute-1".into()),
        ..Default::default()
    }
}

fn alloc(count: usize, per_client: usize) -> Result<()> {
    let dir =
        Scratch(std::env::temp_dir().join(format!("novanet-bench-alloc-{}", std::process::id())));
    let _ = std::fs::remove_dir_all(&dir.0);
    let cfg = Config::default();
    let store = SqliteStore::open_dir(&dir.0)?;
    let req = NetworkRequest {
        label: "bench".into(),
        cidr: Some("10.0.0.0/16".into()),
        network_size: Some(65536),
        bridge: Some("br100".into()),
        ..Default::default()
    };
    store.create_networks(&req, &cfg)?;
    let mut given: Vec<String> = Vec::new();
    let t = Instant::now();
    for n in 0..count {
        let i = store.create_instance(&spec(n), &cfg)?;
        given.push(i.uuid);
    }
    let one = count as f64 / t.elapsed().as_secs_f64();
    let t = Instant::now();
    let handles: Vec<_> = (0..32)
        .map(|c| {
            let dir = dir.0.clone();
            let cfg = cfg.clone();
            std::thread::spawn(move || -> Result<Vec<String>> {
                let s = SqliteStore::open_dir(&dir)?;
                (0..per_client)
                    .map(|n| {
                        s.create_instance(&spec(100_000 + c * per_client + n), &cfg)
                            .map(|i| i.uuid)
                    })
                    .collect()
            })
        })
        .collect();
    for h in handles {
        given.extend(h.join().expect("bench thread")?);
    }
    let many = (32 * per_client) as f64 / t.elapsed().as_secs_f64();
    let mut seen: HashMap<String, usize> = HashMap::new();
    for uuid in &given {
        for a in store.instance_addresses(uuid)? {
            *seen.entry(a.address).or_default() += 1;
        }
    }
    let duplicates: usize = seen.values().filter(|n| **n > 1).map(|n| n - 1).sum();
    println!("allocations/s (1 client): {one:.0}");
    println!("allocations/s (32 clients): {many:.0}");
    println!("duplicates: {duplicates}");
    Ok(())
}
