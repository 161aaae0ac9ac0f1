//! `novanet bench ...`: figures, printed one per line as `name: value`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::Subcommand;
use novanet_core::config::Config;
use novanet_core::model::InstanceSpec;
use novanet_core::planning::NetworkRequest;
use novanet_core::Result;
use novanet_store::prelude::*;
use novanet_store::SqliteStore;

pub mod failover;
mod scale;

#[derive(Subcommand, Debug)]
pub enum BenchCmd {
    /// Fixed IP allocation rate on a fresh SQLite store with a /16 (or on an empty
    /// PostgreSQL database: --db)
    Alloc {
        /// An empty PostgreSQL database to measure instead (postgres://user@host/dbname)
        #[arg(long, value_name = "URL")]
        db: Option<String>,
        /// Allocations made by the single client
        #[arg(long, default_value_t = 5000)]
        count: usize,
        /// Allocations made by each of the 32 clients
        #[arg(long, default_value_t = 300)]
        per_client: usize,
    },
    /// DHCP: boot-to-lease in the lab, and one host update at 10,000 hosts
    Dhcp {
        /// Instances booted to measure boot to lease
        #[arg(long, default_value_t = 20)]
        instances: usize,
        /// DHCP hosts in the network when one host is updated
        #[arg(long, default_value_t = 10000)]
        hosts: usize,
    },
    /// The metadata service under 64 clients on 10,000 instances, against nginx
    Metadata {
        /// Instances in the store
        #[arg(long, default_value_t = 10000)]
        instances: usize,
        /// Concurrent HTTP clients
        #[arg(long, default_value_t = 64)]
        clients: usize,
        /// How long each measurement runs
        #[arg(long, default_value_t = 5.0)]
        seconds: f64,
    },
    /// Security group updates and per-packet cost with 1,000 instances on one host
    Firewall {
        /// firewall_driver to measure: nftables or iptables
        #[arg(long, default_value = "nftables")]
        driver: String,
        /// Instances on the host, 10 rules each
        #[arg(long, default_value_t = 1000)]
        instances: usize,
    },
    #[command(hide = true)]
    FirewallInner {
        #[arg(long)]
        driver: String,
        #[arg(long)]
        instances: usize,
        #[arg(long)]
        client: String,
        #[arg(long)]
        server: String,
    },
    /// The control plane at cloud scale: one simulated agent per host long-polling the real
    /// server; what a boot and a rule change cost
    Scale {
        /// Simulated hosts, each with an agent long-polling its plan
        #[arg(long, default_value_t = 200)]
        hosts: usize,
        /// Instances filled in before measuring, spread over the hosts
        #[arg(long, default_value_t = 10000)]
        instances: usize,
        /// Boots measured one at a time (a burst of at least 300 follows)
        #[arg(long, default_value_t = 200)]
        boots: usize,
        /// Security group rule changes measured
        #[arg(long, default_value_t = 20)]
        rule_changes: usize,
    },
    /// Three servers on one PostgreSQL database, 64 clients booting, one server killed
    /// (kill -9) and restarted mid-run: no address held twice or leaked, no acknowledged
    /// boot lost
    Failover {
        /// An empty PostgreSQL database (postgres://user@host/dbname)
        #[arg(long, value_name = "URL")]
        db: String,
        /// Boots (each allocates a fixed IP)
        #[arg(long, default_value_t = 100_000)]
        count: usize,
        /// Concurrent clients, spread over the servers
        #[arg(long, default_value_t = 64)]
        clients: usize,
    },
    /// Floating IPs: association to reachability, and an agent restart with 1,000 of them
    Floating {
        /// Associations timed until the address answers
        #[arg(long, default_value_t = 10)]
        rounds: usize,
        /// Floating IPs associated when the agent restarts
        #[arg(long, default_value_t = 1000)]
        count: usize,
    },
}

pub fn run(cmd: BenchCmd) -> Result<()> {
    match cmd {
        BenchCmd::Alloc {
            db,
            count,
            per_client,
        } => alloc(db, count, per_client),
        BenchCmd::Dhcp { instances, hosts } => dhcp(instances, hosts),
        BenchCmd::Floating { rounds, count } => floating(rounds, count),
        BenchCmd::Failover { db, count, clients } => failover::run(&db, count, clients),
        BenchCmd::Scale {
            hosts,
            instances,
            boots,
            rule_changes,
        } => crate::scale::run(hosts, instances, boots, rule_changes),
        BenchCmd::Firewall { driver, instances } => firewall(&driver, instances),
        BenchCmd::FirewallInner {
            driver,
            instances,
            client,
            server,
        } => firewall_inner(&driver, instances, &client, &server),
        BenchCmd::Metadata {
            instances,
            clients,
            seconds,
        } => metadata(instances, clients, seconds),
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

fn alloc(db: Option<String>, count: usize, per_client: usize) -> Result<()> {
    let dir =
        Scratch(std::env::temp_dir().join(format!("novanet-bench-alloc-{}", std::process::id())));
    let _ = std::fs::remove_dir_all(&dir.0);
    // Each client opens the store again, as another server process would.
    let open = {
        let dir = dir.0.clone();
        let url = db.clone();
        move || -> Result<Box<dyn Store>> {
            Ok(match &url {
                Some(url) => Box::new(novanet_store::PgStore::open(url)?),
                None => Box::new(SqliteStore::open_dir(&dir)?),
            })
        }
    };
    let cfg = Config::default();
    let store = open()?;
    if db.is_some() && store.generation()? != 0 {
        return Err(novanet_core::Error::conflict(
            "bench alloc --db needs an empty database: it fills it with a /16 and thousands of instances",
        ));
    }
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
            let open = open.clone();
            let cfg = cfg.clone();
            std::thread::spawn(move || -> Result<Vec<String>> {
                let s = open()?;
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

use novanet_lab::{self as lab, LabCmd, LabOpts};

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
        std::thread::sleep(Duration::from_millis(1));
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
    let (ours, reuse, nova) = hosts_update(hosts)?;
    println!("boot to lease median ms: {:.0}", median_ms(times));
    println!("hosts update ms at {hosts} hosts: {ours:.1}");
    println!("address reuse (full re-read) ms at {hosts} hosts: {reuse:.1}");
    println!("hosts update ms at {hosts} hosts, nova's rewrite + SIGHUP: {nova:.1}");
    Ok(())
}

/// One dnsmasq in a namespace with `hosts` records; returns the median time from a new
/// record being written to dnsmasq having read it through the hosts directory (ours), the
/// full re-read an address reuse costs, and a rewritten hosts file and SIGHUP (nova's).
fn hosts_update(hosts: usize) -> Result<(f64, f64, f64)> {
    let err = |e: String| novanet_core::Error::Store(e);
    let nsname = format!("nnbhosts{}", std::process::id() % 10000);
    let dir = std::env::temp_dir().join(&nsname);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("hosts.d")).map_err(|e| err(e.to_string()))?;
    lab::ip(&["netns", "add", &nsname]).map_err(err)?;
    // Also on an early error: every dnsmasq this bench started, found by its pid file and
    // checked by its command line, which names that file.
    let cleanup = || {
        for kind in ["dir", "file"] {
            let pidf = dir.join(format!("{kind}.pid"));
            let Some(pid) = std::fs::read_to_string(&pidf)
                .ok()
                .and_then(|p| p.trim().parse::<u32>().ok())
            else {
                continue;
            };
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            if String::from_utf8_lossy(&cmd).contains(&pidf.display().to_string()) {
                let _ = Command::new("kill").arg(pid.to_string()).status();
            }
        }
        let _ = lab::ip(&["netns", "del", &nsname]);
        let _ = std::fs::remove_dir_all(&dir);
    };
    let result = (|| -> std::result::Result<(f64, f64, f64), String> {
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
            all.push_str(&line(i).1);
            all.push('\n');
        }
        std::fs::write(dir.join("hosts"), &all).map_err(|e| e.to_string())?;
        let start = |kind: &str| -> std::result::Result<(u32, PathBuf), String> {
            let log = dir.join(format!("{kind}.log"));
            let pidf = dir.join(format!("{kind}.pid"));
            let mut args = vec![
                "netns".to_string(),
                "exec".into(),
                nsname.clone(),
                "dnsmasq".into(),
                "--bind-interfaces".into(),
                "--listen-address=10.1.0.1".into(),
                "--except-interface=lo".into(),
                "--port=0".into(),
                "--dhcp-range=10.1.0.2,static,255.255.0.0,120s".into(),
                format!("--dhcp-hostsfile={}", dir.join("hosts").display()),
                "--leasefile-ro".into(),
                "--no-hosts".into(),
                "--no-resolv".into(),
                format!("--pid-file={}", pidf.display()),
                format!("--log-facility={}", log.display()),
            ];
            // Ours: nova's hosts file plus the watched directory, as the agent runs it.
            if kind == "dir" {
                args.push(format!("--dhcp-hostsdir={}", dir.join("hosts.d").display()));
            }
            let argv: Vec<&str> = args.iter().map(String::as_str).collect();
            lab::sh("ip", &argv)?;
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
            std::fs::write(&tmp, format!("{l}\n")).map_err(|e| e.to_string())?;
            std::fs::rename(&tmp, &name).map_err(|e| e.to_string())?;
            let ms = wait_ms(Duration::from_secs(10), || {
                count(&log_dir, &format!("{ip}.host")) > before
            })
            .ok_or("dnsmasq did not read the new host")?;
            ours.push(ms);
        }
        // An address given to a new MAC after its old record was removed: dnsmasq only adds
        // from the directory, so the agent makes it re-read everything (SIGHUP).
        let mut reuse = Vec::new();
        let base_read = format!("read {}\n", dir.join("hosts").display());
        for _ in 0..3 {
            let before = count(&log_dir, &base_read);
            lab::sh("kill", &["-HUP", &pid_dir.to_string()])?;
            let ms = wait_ms(Duration::from_secs(30), || {
                count(&log_dir, &base_read) > before
            })
            .ok_or("dnsmasq did not re-read its hosts")?;
            reuse.push(ms);
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
            wait_ms(Duration::from_secs(30), || {
                count(&log_file, "read ") > before
            })
            .ok_or("dnsmasq did not re-read its hosts file")?;
            nova.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        let _ = Command::new("kill").arg(pid_file.to_string()).status();
        Ok((median_ms(ours), median_ms(reuse), median_ms(nova)))
    })();
    cleanup();
    result.map_err(err)
}

/// `bench floating`: association to reachability, and pings lost while the network host's
/// agent restarts with 1,000 floating IPs.
pub fn floating(rounds: usize, count: usize) -> Result<()> {
    let b = BenchLab::up("float", false, &["quota_floating_ips = -1"])?;
    // The seed's rule: the default group admits ping, which the bench measures with.
    b.client(&[
        "secgroup-add-rule",
        "default",
        "icmp",
        "-1",
        "-1",
        "0.0.0.0/0",
    ])?;
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
        "agent restart with {n} floating IPs, lost pings: {}",
        sent.saturating_sub(received)
    );
    println!("pings sent across the restart: {sent}");
    Ok(())
}

// ---- bench metadata ------------------------------------------------------------------------

/// Instances' fixed IPs live in 127.1.0.0/18 so that load clients can take them as source
/// addresses on loopback, with no namespace and no route outside the machine.
const BENCH_MD_CIDR: &str = "127.1.0.0/18";

struct Load {
    requests: u64,
    latencies_us: Vec<u64>,
}

/// Keep-alive HTTP/1.1 GETs from `clients` source addresses for `secs`, alternating paths.
fn http_load(
    target: std::net::SocketAddr,
    sources: &[std::net::Ipv4Addr],
    paths: &[&str],
    secs: f64,
) -> Load {
    use std::io::{BufRead, BufReader, Read, Write};
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    let handles: Vec<_> = sources
        .iter()
        .map(|src| {
            let src = *src;
            let paths: Vec<String> = paths.iter().map(|p| p.to_string()).collect();
            std::thread::spawn(move || -> (u64, Vec<u64>) {
                let connect = || -> std::io::Result<std::net::TcpStream> {
                    let s =
                        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
                    s.bind(&std::net::SocketAddr::new(src.into(), 0).into())?;
                    s.connect(&target.into())?;
                    s.set_nodelay(true)?;
                    Ok(s.into())
                };
                let (mut n, mut lat) = (0u64, Vec::new());
                let Ok(stream) = connect() else {
                    return (0, lat);
                };
                let mut w = stream.try_clone().expect("clone");
                let mut r = BufReader::new(stream);
                let mut i = 0usize;
                while Instant::now() < deadline {
                    let path = &paths[i % paths.len()];
                    i += 1;
                    let t = Instant::now();
                    if w.write_all(
                        format!("GET {path} HTTP/1.1\r\nHost: 169.254.169.254\r\n\r\n").as_bytes(),
                    )
                    .is_err()
                    {
                        break;
                    }
                    let mut len = 0usize;
                    let mut line = String::new();
                    let mut ok = false;
                    loop {
                        line.clear();
                        if r.read_line(&mut line).unwrap_or(0) == 0 {
                            break;
                        }
                        if line.starts_with("HTTP/1.1 200") {
                            ok = true;
                        }
                        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                            len = v.trim().parse().unwrap_or(0);
                        }
                        if line == "\r\n" {
                            break;
                        }
                    }
                    let mut body = vec![0u8; len];
                    if r.read_exact(&mut body).is_err() || !ok {
                        break;
                    }
                    n += 1;
                    lat.push(t.elapsed().as_micros() as u64);
                }
                (n, lat)
            })
        })
        .collect();
    let mut load = Load {
        requests: 0,
        latencies_us: Vec::new(),
    };
    for h in handles {
        let (n, lat) = h.join().expect("load thread");
        load.requests += n;
        load.latencies_us.extend(lat);
    }
    load
}

fn p99_ms(lat: &mut [u64]) -> f64 {
    lat.sort_unstable();
    lat.get(lat.len().saturating_sub(1) * 99 / 100)
        .copied()
        .unwrap_or(0) as f64
        / 1000.0
}

pub fn metadata(instances: usize, clients: usize, secs: f64) -> Result<()> {
    let err = |e: String| novanet_core::Error::Store(e);
    let dir =
        Scratch(std::env::temp_dir().join(format!("novanet-bench-md-{}", std::process::id())));
    let _ = std::fs::remove_dir_all(&dir.0);
    let store = SqliteStore::open_dir(&dir.0)?;
    let cfg = Config {
        flat_network_bridge: Some("br100".into()),
        ..Config::default()
    };
    let req = NetworkRequest {
        label: "bench".into(),
        cidr: Some(BENCH_MD_CIDR.into()),
        network_size: Some(16384),
        ..Default::default()
    };
    store.create_networks(&req, &cfg)?;
    let mut sources = Vec::new();
    for n in 0..instances {
        let mut s = spec(n);
        s.key_name = Some("mykey".into());
        s.key_data = Some(
            "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAAAgQDYVEprvtYJXVOBN0XNKV Generated by Nova\n".into(),
        );
        s.metadata.insert("role".into(), "webserver".into());
        let i = store.create_instance(&s, &cfg)?;
        if sources.len() < clients {
            let a = &store.instance_addresses(&i.uuid)?[0];
            sources.push(
                a.address
                    .parse::<std::net::Ipv4Addr>()
                    .map_err(|e| err(e.to_string()))?,
            );
        }
    }
    let store: std::sync::Arc<dyn novanet_store::Store> = std::sync::Arc::new(store);
    // The same service with the per-instance rate limit on, set so high that it never
    // refuses: what its bookkeeping costs.
    let limited_cfg = Config {
        metadata_rate_limit: 1_000_000_000,
        metadata_rate_burst: 1_000_000_000,
        ..cfg.clone()
    };
    let limited = novanet_server::AppState::new(store.clone(), limited_cfg);
    let state = novanet_server::AppState::new(store, cfg);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| err(e.to_string()))?;
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .map_err(|e| err(e.to_string()))?;
    let md_addr = listener.local_addr().map_err(|e| err(e.to_string()))?;
    rt.spawn(novanet_server::serve_metadata(state, listener));
    let paths = [
        "/openstack/latest/meta_data.json",
        "/latest/meta-data/instance-id",
    ];
    // The bytes a static server will serve: what the first client's instance gets.
    let fetch = |path: &str| -> std::result::Result<Vec<u8>, String> {
        use std::io::{Read, Write};
        let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
            .map_err(|e| e.to_string())?;
        s.bind(&std::net::SocketAddr::new(sources[0].into(), 0).into())
            .map_err(|e| e.to_string())?;
        s.connect(&md_addr.into()).map_err(|e| e.to_string())?;
        let mut t: std::net::TcpStream = s.into();
        t.write_all(format!("GET {path} HTTP/1.0\r\n\r\n").as_bytes())
            .map_err(|e| e.to_string())?;
        let mut buf = Vec::new();
        t.read_to_end(&mut buf).map_err(|e| e.to_string())?;
        let at = buf
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .ok_or("no body")?
            + 4;
        Ok(buf[at..].to_vec())
    };
    let www = dir.0.join("www");
    for p in paths {
        let f = www.join(p.trim_start_matches('/'));
        std::fs::create_dir_all(f.parent().expect("parent")).map_err(|e| err(e.to_string()))?;
        std::fs::write(&f, fetch(p).map_err(err)?).map_err(|e| err(e.to_string()))?;
    }
    let mut md = http_load(md_addr, &sources, &paths, secs);
    let limited_listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .map_err(|e| err(e.to_string()))?;
    let limited_addr = limited_listener
        .local_addr()
        .map_err(|e| err(e.to_string()))?;
    rt.spawn(novanet_server::serve_metadata(limited, limited_listener));
    let lim = http_load(limited_addr, &sources, &paths, secs);
    // nginx serving the same bytes from files, same clients, same paths.
    let port = 20000 + (std::process::id() % 20000) as u16;
    let conf = dir.0.join("nginx.conf");
    std::fs::write(
        &conf,
        format!(
            "worker_processes 2; daemon off; pid {d}/nginx.pid; error_log {d}/nginx.err;\n\
             events {{ worker_connections 1024; }}\n\
             http {{ access_log off; default_type application/json; keepalive_requests 1000000;\n\
             server {{ listen 127.0.0.1:{port}; root {d}/www; }} }}\n",
            d = dir.0.display()
        ),
    )
    .map_err(|e| err(e.to_string()))?;
    let mut nginx = Command::new("nginx")
        .args([
            "-c",
            &conf.display().to_string(),
            "-p",
            &dir.0.display().to_string(),
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(|e| {
            err(format!(
                "cannot start nginx (scripts/setup.sh installs nginx-light): {e}"
            ))
        })?;
    let static_addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    wait_ms(Duration::from_secs(5), || {
        std::net::TcpStream::connect(static_addr).is_ok()
    });
    let st = http_load(static_addr, &sources, &paths, secs);
    // SIGTERM: the master stops its workers (a SIGKILL would orphan them, still serving).
    let _ = Command::new("kill")
        .args(["-TERM", &nginx.id().to_string()])
        .status();
    let _ = nginx.wait();
    let md_rate = md.requests as f64 / secs;
    let st_rate = st.requests as f64 / secs;
    println!("metadata req/s: {md_rate:.0}");
    println!("metadata p99 ms: {:.2}", p99_ms(&mut md.latencies_us));
    let lim_rate = lim.requests as f64 / secs;
    println!("metadata req/s with the rate limit on (never refusing): {lim_rate:.0}");
    println!(
        "rate limit cost: {:.1} %",
        if md_rate > 0.0 {
            (1.0 - lim_rate / md_rate) * 100.0
        } else {
            0.0
        }
    );
    println!("static req/s: {st_rate:.0}");
    println!(
        "ratio: {:.2}",
        if st_rate > 0.0 {
            md_rate / st_rate
        } else {
            0.0
        }
    );
    Ok(())
}

// ---- bench firewall ------------------------------------------------------------------------

use novanet_agent::firewall::SecurityScripts;
use novanet_core::firewall::Proto;
use novanet_core::plan::{InstanceSecurity, PortSecurity, SecurityPlan, SgRule};

/// Instance `i` of the bench: one port and ten rules; `variant` changes one rule's port.
fn fw_instance(i: usize, device: Option<&str>, ip: &str, variant: i32) -> InstanceSecurity {
    let rule = |proto: Proto, from: i32, to: i32, cidr: &str| SgRule {
        proto: Some(proto),
        from_port: Some(from),
        to_port: Some(to),
        cidr: Some(cidr.parse().expect("bench CIDR")),
        group: None,
    };
    let tcp = |p: i32, cidr: &str| rule(Proto::Tcp, p, p, cidr);
    InstanceSecurity {
        id: i as i64 + 1,
        uuid: format!("bench-{i}"),
        ports: vec![PortSecurity {
            device: device.map(|d| d.parse().expect("bench device name")),
            mac: format!(
                "fa:16:3e:{:02x}:{:02x}:{:02x}",
                (i >> 16) & 0xff,
                (i >> 8) & 0xff,
                i & 0xff
            )
            .parse()
            .expect("bench MAC"),
            ips: vec![ip.parse().expect("bench address")],
            network_cidr: Some("10.1.0.0/16".parse().expect("bench CIDR")),
            dhcp_server: Some("10.1.0.1".parse().expect("bench address")),
            ips_v6: vec![],
            network_cidr_v6: None,
        }],
        rules: vec![
            tcp(22, "0.0.0.0/0"),
            tcp(80, "0.0.0.0/0"),
            tcp(443, "0.0.0.0/0"),
            tcp(5201, "0.0.0.0/0"),
            tcp(3306, "192.168.0.0/16"),
            tcp(8000 + variant, "10.0.0.0/8"),
            rule(Proto::Udp, 53, 53, "0.0.0.0/0"),
            rule(Proto::Udp, 123, 123, "0.0.0.0/0"),
            rule(Proto::Icmp, -1, -1, "0.0.0.0/0"),
            rule(Proto::Tcp, 1000, 2000, "172.16.0.0/12"),
        ],
    }
}

fn fw_ip(i: usize) -> String {
    format!("10.1.{}.{}", 1 + i / 250, 2 + i % 250)
}

fn time_ms(
    f: impl FnOnce() -> std::result::Result<(), String>,
) -> std::result::Result<f64, String> {
    let t = Instant::now();
    f()?;
    Ok(t.elapsed().as_secs_f64() * 1000.0)
}

fn nft_run(script: &str) -> std::result::Result<(), String> {
    if script.is_empty() {
        return Ok(());
    }
    let mut nft = Command::new("nft")
        .args(["-f", "-"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| format!("nft: {e}"))?;
    std::io::Write::write_all(nft.stdin.as_mut().expect("piped"), script.as_bytes())
        .map_err(|e| format!("nft: {e}"))?;
    match nft.wait() {
        Ok(s) if s.success() => Ok(()),
        r => Err(format!("nft -f failed: {r:?}")),
    }
}

/// `bench firewall`: builds a host namespace with a bridge and two endpoint namespaces (the
/// iperf3 client, and the server standing for the last instance), then re-runs itself inside
/// the host namespace, where the rules go.
pub fn firewall(driver: &str, instances: usize) -> Result<()> {
    let err = |e: String| novanet_core::Error::Store(e);
    if instances < 2 {
        return Err(err("--instances: at least 2".into()));
    }
    let p = format!("nnbfw{}", std::process::id() % 10000);
    let (host, a, b) = (format!("{p}-host"), format!("{p}-a"), format!("{p}-b"));
    let cleanup = || {
        for n in [&host, &a, &b] {
            let _ = lab::ip(&["netns", "del", n]);
        }
    };
    let setup = || -> std::result::Result<(), String> {
        for n in [&host, &a, &b] {
            lab::ip(&["netns", "add", n])?;
            lab::ip(&["-n", n, "link", "set", "lo", "up"])?;
        }
        lab::ip(&["-n", &host, "link", "add", "brfw", "type", "bridge"])?;
        lab::ip(&["-n", &host, "link", "set", "brfw", "up"])?;
        let last = fw_ip(instances - 1);
        for (n, dev, addr) in [(&a, "va", "10.1.255.250"), (&b, "vb", last.as_str())] {
            lab::ip(&[
                "-n", &host, "link", "add", dev, "type", "veth", "peer", "name", "eth0", "netns", n,
            ])?;
            lab::ip(&["-n", &host, "link", "set", dev, "master", "brfw", "up"])?;
            lab::ip(&["-n", n, "addr", "add", &format!("{addr}/16"), "dev", "eth0"])?;
            // The server is instance N-1: its port's anti-spoofing admits only its VIF's MAC.
            if dev == "vb" {
                let mac = fw_instance(instances - 1, None, &last, 0).ports[0]
                    .mac
                    .clone();
                lab::ip(&["-n", n, "link", "set", "eth0", "address", &mac])?;
            }
            lab::ip(&["-n", n, "link", "set", "eth0", "up"])?;
        }
        lab::sh(
            "ip",
            &[
                "netns",
                "exec",
                &host,
                "sysctl",
                "-q",
                "-w",
                "net.bridge.bridge-nf-call-iptables=1",
            ],
        )?;
        Ok(())
    };
    let result = setup().and_then(|()| {
        let out = Command::new("ip")
            .args(["netns", "exec", &host])
            .arg(std::env::current_exe().map_err(|e| e.to_string())?)
            .args([
                "bench",
                "firewall-inner",
                "--driver",
                driver,
                "--instances",
                &instances.to_string(),
                "--client",
                &a,
                "--server",
                &b,
            ])
            .status()
            .map_err(|e| e.to_string())?;
        if out.success() {
            Ok(())
        } else {
            Err("the firewall bench failed".to_string())
        }
    });
    cleanup();
    result.map_err(err)
}

fn iperf(client: &str, server: &str, server_ip: &str) -> std::result::Result<f64, String> {
    let mut srv = Command::new("ip")
        .args([
            "netns", "exec", server, "iperf3", "-s", "-1", "-B", server_ip,
        ])
        .stdout(std::process::Stdio::null())
        .spawn()
        .map_err(|e| format!("iperf3: {e} (scripts/setup.sh installs it)"))?;
    std::thread::sleep(Duration::from_millis(300));
    let out = Command::new("ip")
        .args([
            "netns", "exec", client, "iperf3", "-c", server_ip, "-t", "3", "-J",
        ])
        .output();
    if !out.as_ref().is_ok_and(|o| o.status.success()) {
        // The server waits for a client that will not come.
        let _ = srv.kill();
    }
    let _ = srv.wait();
    let out = out.map_err(|e| e.to_string())?;
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).map_err(|e| format!("iperf3 output: {e}"))?;
    v["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .ok_or_else(|| format!("iperf3 failed: {}", v["error"]))
}

/// The median of three iperf3 runs, so that one noisy run on two cores does not decide.
fn iperf_median(client: &str, server: &str, server_ip: &str) -> std::result::Result<f64, String> {
    let mut runs = Vec::new();
    for _ in 0..3 {
        runs.push(iperf(client, server, server_ip)?);
    }
    runs.sort_by(|a, b| a.total_cmp(b));
    Ok(runs[1])
}

/// Runs inside the bench's host namespace. The instance the throughput test reaches (the
/// server, on port `vb`) is always the last one in the plan, as if it were booted last.
pub fn firewall_inner(driver: &str, instances: usize, client: &str, server: &str) -> Result<()> {
    let err = |e: String| novanet_core::Error::Store(e);
    let server_ip = fw_ip(instances - 1);
    let mut plan = SecurityPlan {
        allow_same_net: false,
        instances: Vec::new(),
        group_members: Default::default(),
        group_members_v6: Default::default(),
        provider_rules: Vec::new(),
    };
    for i in 0..instances {
        let dev = if i == instances - 1 {
            "vb".to_string()
        } else {
            format!("fw{i}")
        };
        plan.instances
            .push(fw_instance(i, Some(&dev), &fw_ip(i), 0));
    }
    let baseline = iperf_median(client, server, &server_ip).map_err(err)?;
    let mid = instances / 2;
    let change = |plan: &mut SecurityPlan, k: i32| {
        let dev = plan.instances[mid].ports[0].device.clone();
        plan.instances[mid] = fw_instance(mid, dev.as_deref(), &fw_ip(mid), k);
    };
    // A boot goes in just before the server, which stays the last one added.
    let boot = |plan: &mut SecurityPlan, k: usize| {
        let at = plan.instances.len() - 1;
        let ip = format!("10.2.{}.{}", k / 250, 2 + k % 250);
        let i = fw_instance(instances + k, Some(&format!("fwn{k}")), &ip, 0);
        plan.instances.insert(at, i);
    };
    let mut changes = Vec::new();
    let mut agent_changes = Vec::new();
    let mut retires = Vec::new();
    let mut boots = Vec::new();
    let full;
    if driver == "iptables" {
        let dir =
            Scratch(std::env::temp_dir().join(format!("novanet-bench-fw-{}", std::process::id())));
        let mut ipt = novanet_agent::firewall::Iptables::new(&dir.0);
        let mut apply = |plan: &SecurityPlan| {
            time_ms(|| {
                ipt.apply_instance_chains(plan)
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            })
        };
        full = apply(&plan).map_err(err)?;
        for k in 1..=10 {
            change(&mut plan, k);
            changes.push(apply(&plan).map_err(err)?);
        }
        for k in 0..10 {
            boot(&mut plan, k);
            boots.push(apply(&plan).map_err(err)?);
        }
    } else {
        // The agent's own driver, for the full apply and the agent's whole path per change.
        let dir =
            Scratch(std::env::temp_dir().join(format!("novanet-bench-fw-{}", std::process::id())));
        std::fs::create_dir_all(&dir.0).map_err(|e| err(e.to_string()))?;
        let mut nft = novanet_agent::firewall::Nftables::new(&dir.0);
        let mut apply = |plan: &SecurityPlan| {
            time_ms(|| {
                nft.apply_security(plan)
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            })
        };
        full = apply(&plan).map_err(err)?;
        for k in 1..=10 {
            change(&mut plan, k);
            agent_changes.push(apply(&plan).map_err(err)?);
        }
        // The same kind of changes split in the transaction that makes them take effect and
        // the one that retires what they replaced, which no packet waits for; from a fresh
        // full apply, whose state this side knows.
        let (full_script, mut scripts) = SecurityScripts::full(&plan);
        nft_run(&full_script).map_err(err)?;
        let mut step =
            |plan: &SecurityPlan, out: &mut Vec<f64>| -> std::result::Result<(), String> {
                let u = scripts.change(plan).ok_or("no incremental path")?;
                out.push(time_ms(|| nft_run(&u.hot))?);
                retires.push(time_ms(|| nft_run(&u.retire))?);
                Ok(())
            };
        for k in 11..=20 {
            change(&mut plan, k);
            step(&plan, &mut changes).map_err(err)?;
        }
        for k in 0..10 {
            boot(&mut plan, k);
            step(&plan, &mut boots).map_err(err)?;
        }
    }
    let with_rules = iperf_median(client, server, &server_ip).map_err(err)?;
    let delta_ms = agent_delta_ms(&plan, mid);
    println!("driver: {driver}, instances: {instances}, rules each: 10");
    println!("full apply ms: {full:.1}");
    println!("one rule change ms: {:.1}", median_ms(changes));
    println!("one boot ms: {:.1}", median_ms(boots));
    if !retires.is_empty() {
        println!(
            "retire (after the change took effect) ms: {:.1}",
            median_ms(retires)
        );
        println!(
            "agent path per change (change and retire) ms: {:.1}",
            median_ms(agent_changes)
        );
    }
    println!("agent plan delta (one instance: parse and apply) ms: {delta_ms:.3}");
    println!("throughput no rules Gbit/s: {:.2}", baseline / 1e9);
    println!("throughput with rules Gbit/s: {:.2}", with_rules / 1e9);
    println!("throughput ratio vs no rules: {:.2}", with_rules / baseline);
    Ok(())
}

/// What the agent does with the server's answer before its apply runs, for a change of
/// one instance on a host of many: parse the delta off the wire, apply it to the plan it
/// holds and to the lease hook's DHCP servers. Nothing of the plan is copied or rendered.
fn agent_delta_ms(security: &SecurityPlan, at: usize) -> f64 {
    let held = novanet_core::plan::HostPlan {
        security: security.clone(),
        ..Default::default()
    };
    let mut next = held.clone();
    let dev = next.security.instances[at].ports[0].device.clone();
    next.security.instances[at] = fw_instance(at, dev.as_deref(), &fw_ip(at), 999);
    next.generation = 2;
    let d = novanet_core::delta::diff(&held, &next);
    let body = serde_json::json!({"epoch": 1, "generation": 2, "deltas": [d]}).to_string();
    let mut plan = held.clone();
    let mut hook = held.dhcp.clone();
    let rounds = 200;
    let t = Instant::now();
    for _ in 0..rounds {
        let v: serde_json::Value = serde_json::from_str(&body).expect("JSON");
        if let Ok(novanet_agent::client::Polled::Deltas { deltas, .. }) =
            novanet_agent::client::parse_poll(v)
        {
            for d in &deltas {
                novanet_core::delta::apply(&mut plan, d).expect("fits");
                novanet_core::delta::apply_dhcp(&mut hook, d).expect("fits");
            }
        }
    }
    assert_eq!(plan.security, next.security);
    t.elapsed().as_secs_f64() * 1000.0 / rounds as f64
}
