//! `novanet bench ...`: figures, printed one per line as `name: value`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
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
    /// DHCP: boot-to-lease in the lab, and one host update at 10,000 hosts
    Dhcp {
        #[arg(long, default_value_t = 20)]
        instances: usize,
        #[arg(long, default_value_t = 10000)]
        hosts: usize,
    },
    /// Floating IPs: association to reachability, and an agent restart with 1,000 of them
    Floating {
        #[arg(long, default_value_t = 10)]
        rounds: usize,
        #[arg(long, default_value_t = 1000)]
        count: usize,
    },
}

pub fn run(cmd: BenchCmd) -> Result<()> {
    match cmd {
        BenchCmd::Alloc { count, per_client } => alloc(count, per_client),
        BenchCmd::Dhcp { instances, hosts } => dhcp(instances, hosts),
        BenchCmd::Floating { rounds, count } => floating(rounds, count),
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

// ---- benches that need namespaces ----------------------------------------------------------

use std::process::Command;
use std::time::Duration;

use crate::lab::{self, LabCmd, LabOpts};

/// A lab for a bench, removed when dropped.
struct BenchLab(LabOpts);

impl BenchLab {
    fn up(name: &str, bare: bool, config: &[&str]) -> Result<BenchLab> {
        let opts = LabOpts {
            prefix: format!("nnb{name}"),
            dir: std::env::temp_dir().join(format!("novanet-bench-{name}")),
        };
        let _ = lab::down(&opts);
        let b = BenchLab(opts);
        let config: Vec<String> = config.iter().map(|s| s.to_string()).collect();
        lab::up(&b.0, bare, &config)
            .map_err(|e| novanet_core::Error::Store(format!("lab: {e}")))?;
        Ok(b)
    }
    fn client(&self, args: &[&str]) -> Result<String> {
        lab::client(&self.0, args).map_err(novanet_core::Error::Store)
    }
    fn cmd(&self, c: LabCmd) -> Result<()> {
        lab::run(c).map_err(novanet_core::Error::Store)
    }
    fn ok(&self, node: &str, args: &[&str]) -> bool {
        Command::new("ip")
            .args(["netns", "exec", &lab::ns(&self.0, node)])
            .args(args)
            .output()
            .is_ok_and(|o| o.status.success())
    }
}

impl Drop for BenchLab {
    fn drop(&mut self) {
        let _ = lab::down(&self.0);
    }
}

fn median_ms(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return 0.0;
    }
    v[v.len() / 2]
}

fn wait_ms(timeout: Duration, mut f: impl FnMut() -> bool) -> Option<f64> {
    let t = Instant::now();
    while t.elapsed() < timeout {
        if f() {
            return Some(t.elapsed().as_secs_f64() * 1000.0);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    None
}

/// `bench dhcp`: boot-to-lease through the whole stack, and the cost of adding one host to a
/// dnsmasq that already serves 10,000, against nova's rewrite-and-SIGHUP.
pub fn dhcp(instances: usize, hosts: usize) -> Result<()> {
    let b = BenchLab::up("dhcp", true, &[])?;
    b.client(&[
        "network-create",
        "vmnet",
        "--fixed-range-v4",
        "10.0.0.0/24",
        "--bridge",
        "br100",
    ])?;
    let mut times = Vec::new();
    for i in 0..instances {
        let name = format!("vm{i}");
        let host = if i % 2 == 0 {
            "nova:compute-1"
        } else {
            "nova:compute-2"
        };
        let t = Instant::now();
        b.client(&[
            "boot",
            "--image",
            "cirros",
            "--flavor",
            "1",
            "--availability-zone",
            host,
            &name,
        ])?;
        b.cmd(LabCmd::Plug {
            opts: b.0.clone(),
            instance: name.clone(),
        })?;
        let lease = b.0.dir.join(format!("vm-{name}.lease"));
        wait_ms(Duration::from_secs(30), || {
            std::fs::metadata(&lease).is_ok_and(|m| m.len() > 0)
        })
        .ok_or_else(|| novanet_core::Error::Store(format!("{name} got no lease")))?;
        times.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    drop(b);
    let (ours, nova) = hosts_update(hosts)?;
    println!("boot to lease median ms: {:.0}", median_ms(times));
    println!("hosts update ms at {hosts} hosts: {ours:.1}");
    println!("hosts update ms at {hosts} hosts, nova's rewrite + SIGHUP: {nova:.1}");
    Ok(())
}

/// One dnsmasq in a namespace with `hosts` records; returns the median time from a new
/// record being written to dnsmasq having read it: through the hosts directory (ours) and
/// through one rewritten hosts file and a SIGHUP (nova's).
fn hosts_update(hosts: usize) -> Result<(f64, f64)> {
    let err = |e: String| novanet_core::Error::Store(e);
    let nsname = format!("nnbhosts{}", std::process::id() % 10000);
    let dir = std::env::temp_dir().join(&nsname);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("hosts.d")).map_err(|e| err(e.to_string()))?;
    lab::ip(&["netns", "add", &nsname]).map_err(err)?;
    let cleanup = |pids: &[u32]| {
        for p in pids {
            let _ = Command::new("kill").arg(p.to_string()).status();
        }
        let _ = lab::ip(&["netns", "del", &nsname]);
        let _ = std::fs::remove_dir_all(&dir);
    };
    let result = (|| -> std::result::Result<(f64, f64), String> {
        lab::ip(&["-n", &nsname, "link", "set", "lo", "up"])?;
        lab::ip(&["-n", &nsname, "link", "add", "brb", "type", "bridge"])?;
        lab::ip(&["-n", &nsname, "addr", "add", "10.1.0.1/16", "dev", "brb"])?;
        lab::ip(&["-n", &nsname, "link", "set", "brb", "up"])?;
        let line = |i: usize| {
            let mac = format!(
                "fa:16:3e:{:02x}:{:02x}:{:02x}",
                (i >> 16) & 0xff,
                (i >> 8) & 0xff,
                i & 0xff
            );
            let ip = format!("10.1.{}.{}", (i + 2) / 256, (i + 2) % 256);
            (ip.clone(), format!("{mac},h{i}.novalocal,{ip}"))
        };
        let mut all = String::new();
        for i in 0..hosts {
            let (ip, l) = line(i);
            std::fs::write(dir.join(format!("hosts.d/{ip}.host")), format!("{l}\n"))
                .map_err(|e| e.to_string())?;
            all.push_str(&l);
            all.push('\n');
        }
        std::fs::write(dir.join("hosts"), &all).map_err(|e| e.to_string())?;
        let start = |kind: &str| -> std::result::Result<(u32, PathBuf), String> {
            let log = dir.join(format!("{kind}.log"));
            let src = if kind == "dir" {
                format!("--dhcp-hostsdir={}", dir.join("hosts.d").display())
            } else {
                format!("--dhcp-hostsfile={}", dir.join("hosts").display())
            };
            let pidf = dir.join(format!("{kind}.pid"));
            lab::sh(
                "ip",
                &[
                    "netns",
                    "exec",
                    &nsname,
                    "dnsmasq",
                    "--bind-interfaces",
                    "--listen-address=10.1.0.1",
                    "--except-interface=lo",
                    "--port=0",
                    "--dhcp-range=10.1.0.2,static,255.255.0.0,120s",
                    &src,
                    "--leasefile-ro",
                    "--no-hosts",
                    "--no-resolv",
                    &format!("--pid-file={}", pidf.display()),
                    &format!("--log-facility={}", log.display()),
                ],
            )?;
            let pid = lab::wait_for("dnsmasq pid", Duration::from_secs(5), || {
                std::fs::read_to_string(&pidf)
                    .ok()?
                    .trim()
                    .parse::<u32>()
                    .ok()
            })?;
            // Wait for the initial read of all records.
            lab::wait_for("dnsmasq start", Duration::from_secs(30), || {
                std::fs::read_to_string(&log)
                    .ok()?
                    .contains("read ")
                    .then_some(())
            })?;
            Ok((pid, log))
        };
        let count = |log: &Path, needle: &str| {
            std::fs::read_to_string(log)
                .map(|t| t.matches(needle).count())
                .unwrap_or(0)
        };
        // Ours: one new file in the watched directory.
        let (pid_dir, log_dir) = start("dir")?;
        let mut ours = Vec::new();
        for k in 0..10 {
            let (ip, l) = line(hosts + k);
            let name = dir.join(format!("hosts.d/{ip}.host"));
            let before = count(&log_dir, &format!("{ip}.host"));
            let tmp = dir.join(format!("hosts.d/.{ip}.tmp"));
            let t = Instant::now();
            std::fs::write(&tmp, format!("{l}\n")).map_err(|e| e.to_string())?;
            std::fs::rename(&tmp, &name).map_err(|e| e.to_string())?;
            lab::wait_for(
                "dnsmasq to read the new host",
                Duration::from_secs(10),
                || (count(&log_dir, &format!("{ip}.host")) > before).then_some(()),
            )?;
            ours.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        let _ = Command::new("kill").arg(pid_dir.to_string()).status();
        // nova's: rewrite the whole file and SIGHUP.
        let (pid_file, log_file) = start("file")?;
        let mut nova = Vec::new();
        for k in 0..5 {
            let (_, l) = line(hosts + 100 + k);
            all.push_str(&l);
            all.push('\n');
            let before = count(&log_file, "read ");
            let t = Instant::now();
            std::fs::write(dir.join("hosts"), &all).map_err(|e| e.to_string())?;
            lab::sh("kill", &["-HUP", &pid_file.to_string()])?;
            lab::wait_for(
                "dnsmasq to re-read its hosts file",
                Duration::from_secs(30),
                || (count(&log_file, "read ") > before).then_some(()),
            )?;
            nova.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        let _ = Command::new("kill").arg(pid_file.to_string()).status();
        Ok((median_ms(ours), median_ms(nova)))
    })();
    cleanup(&[]);
    result.map_err(err)
}

/// `bench floating`: association to reachability, and pings lost while the network host's
/// agent restarts with 1,000 floating IPs.
pub fn floating(rounds: usize, count: usize) -> Result<()> {
    let b = BenchLab::up("float", false, &["quota_floating_ips = -1"])?;
    let cidr = "68.99.32.0/22";
    b.client(&["floating-ip-bulk-create", cidr, "--pool", "bench"])?;
    b.client(&["floating-ip-bulk-create", "68.99.26.170/31"])?;
    b.client(&["floating-ip-create", "nova"])?;
    let mut times = Vec::new();
    for _ in 0..rounds {
        b.client(&["floating-ip-associate", "cirros", "68.99.26.170"])?;
        let t = Instant::now();
        // Associated when the client returns; reachable when a ping from outside answers.
        wait_ms(Duration::from_secs(10), || {
            b.ok(
                "outside",
                &["ping", "-c", "1", "-W", "0.05", "68.99.26.170"],
            )
        })
        .ok_or_else(|| novanet_core::Error::Store("floating IP never became reachable".into()))?;
        times.push(t.elapsed().as_secs_f64() * 1000.0);
        b.client(&["floating-ip-disassociate", "cirros", "68.99.26.170"])?;
        wait_ms(Duration::from_secs(10), || {
            !b.ok(
                "outside",
                &["ping", "-c", "1", "-W", "0.05", "68.99.26.170"],
            )
        });
    }
    // 1,000 floating IPs on cirros (the last one is the one we ping).
    let pool = b.client(&["--json", "floating-ip-bulk-list"])?;
    let addrs: Vec<String> = serde_json::from_str::<serde_json::Value>(&pool)
        .map_err(|e| novanet_core::Error::Store(e.to_string()))?
        .as_array()
        .into_iter()
        .flatten()
        .filter(|f| f["pool"] == "bench")
        .filter_map(|f| f["address"].as_str().map(str::to_string))
        .take(count)
        .collect();
    let n = addrs.len();
    for _ in 0..n {
        b.client(&["floating-ip-create", "bench"])?;
    }
    for a in &addrs {
        b.client(&["floating-ip-associate", "cirros", a])?;
    }
    let last = addrs.last().cloned().unwrap_or_default();
    wait_ms(Duration::from_secs(60), || {
        b.ok("outside", &["ping", "-c", "1", "-W", "0.2", &last])
    })
    .ok_or_else(|| novanet_core::Error::Store("the 1000th floating IP never answered".into()))?;
    // Ping every 10 ms while the agent restarts.
    let pinger = Command::new("ip")
        .args([
            "netns",
            "exec",
            &lab::ns(&b.0, "outside"),
            "ping",
            "-q",
            "-i",
            "0.01",
            "-w",
            "6",
            "-W",
            "0.2",
            &last,
        ])
        .output();
    let restart = std::thread::spawn({
        let opts = b.0.clone();
        move || {
            std::thread::sleep(Duration::from_secs(1));
            lab::run(LabCmd::RestartAgent {
                opts,
                host: "controller".into(),
            })
        }
    });
    let _ = restart.join();
    let out = pinger.map_err(|e| novanet_core::Error::Store(e.to_string()))?;
    let summary = String::from_utf8_lossy(&out.stdout);
    let (sent, received) = summary
        .lines()
        .find(|l| l.contains("packets transmitted"))
        .map(|l| {
            let nums: Vec<u64> = l
                .split(|c: char| !c.is_ascii_digit())
                .filter_map(|x| x.parse().ok())
                .collect();
            (
                nums.first().copied().unwrap_or(0),
                nums.get(1).copied().unwrap_or(0),
            )
        })
        .unwrap_or((0, 0));
    println!("associate to reachable median ms: {:.0}", median_ms(times));
    println!(
        "agent restart with {n} floating IPs, lost pings: {} (of {sent})",
        sent.saturating_sub(received)
    );
    Ok(())
}
