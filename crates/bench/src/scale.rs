//! `novanet bench scale`: the control plane of a cloud of hundreds of hosts. Starts the real
//! server (this binary, another process) on loopback over a store filled directly (for
//! speed), runs one simulated agent per host long-polling its plan over HTTP as the agent
//! does (deltas applied to the plan held), then boots and changes rules through the API and
//! measures what each change costs the server and the agents.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use novanet_agent::client::{Client, Credentials, Polled, Servers};
use novanet_core::config::Config;
use novanet_core::delta;
use novanet_core::model::InstanceSpec;
use novanet_core::planning::NetworkRequest;
use novanet_core::{Error, Result};
use novanet_store::prelude::*;
use novanet_store::{NewRule, ServiceReport, SqliteStore};
use serde_json::json;

const PASSWORD: &str = "bench-scale";
/// Instances per security group: a rule change reaches the hosts of about this many.
const GROUP_SIZE: usize = 10;
/// Rule changes use ports from here, one each, so agents can tell them apart.
const RULE_PORT: i32 = 30000;
const NETWORK_HOST: &str = "network-host";

fn err(e: impl std::fmt::Display) -> Error {
    Error::Store(format!("bench scale: {e}"))
}

fn compute(i: usize) -> String {
    format!("compute-{i}")
}

/// What the simulated agents saw, for the bench to wait on and count.
#[derive(Default)]
struct Seen {
    /// Answers that carried a change (the poll woke for something): count and body bytes.
    changes: usize,
    bytes: usize,
    /// Instance uuid -> when a host's plan got it.
    booted: HashMap<String, Instant>,
    /// DHCP hostname -> when the DHCP host's plan got it.
    dhcp: HashMap<String, Instant>,
    /// (rule port, host) -> when the host's plan got the rule.
    rules: HashMap<(i32, usize), Instant>,
    /// Agents holding a plan.
    ready: HashSet<usize>,
    /// The network host's first whole plan: bytes, and ms from its agent's start.
    network_plan: Option<(usize, f64)>,
}

struct Shared {
    seen: Mutex<Seen>,
    cv: Condvar,
    stop: AtomicBool,
}

impl Shared {
    /// Waits until `f` holds (true) or `timeout` passes (false).
    fn wait(&self, timeout: Duration, mut f: impl FnMut(&Seen) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        let mut s = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if f(&s) {
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            s = self
                .cv
                .wait_timeout(s, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    fn counters(&self) -> (usize, usize) {
        let s = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        (s.changes, s.bytes)
    }
}

/// One host's agent, without the kernel: polls as `Agent::run` does (2 s long polls,
/// deltas applied to the plan held) and notes what each change brought.
fn agent(idx: usize, host: String, client: Client, shared: Arc<Shared>) {
    let started = Instant::now();
    let mut held: Option<(u64, novanet_core::plan::HostPlan)> = None;
    while !shared.stop.load(Ordering::Relaxed) {
        let ask = held.as_ref().map(|(e, p)| (*e, p.generation));
        let (polled, size) = match client.poll(&host, ask, 2, true) {
            Ok(p) => p,
            Err(_) => {
                held = None;
                std::thread::sleep(Duration::from_millis(200));
                continue;
            }
        };
        let now = Instant::now();
        let mut s = shared.seen.lock().unwrap_or_else(|p| p.into_inner());
        match polled {
            Polled::Plan { epoch, plan, .. } => {
                s.changes += 1;
                s.bytes += size;
                s.ready.insert(idx);
                if idx == 0 && s.network_plan.is_none() {
                    s.network_plan = Some((size, started.elapsed().as_secs_f64() * 1000.0));
                }
                held = Some((epoch, *plan));
            }
            Polled::Deltas { generation, deltas } => {
                s.changes += 1;
                s.bytes += size;
                let Some((_, plan)) = held.as_mut() else {
                    continue;
                };
                for d in &deltas {
                    for i in d.instances.iter().flat_map(|h| &h.insert) {
                        s.booted.entry(i.uuid.clone()).or_insert(now);
                        for r in &i.rules {
                            if let Some(p) = r.from_port.filter(|p| *p >= RULE_PORT) {
                                s.rules.entry((p, idx)).or_insert(now);
                            }
                        }
                    }
                    for h in d.dhcp_hosts.iter().flat_map(|d| &d.hunks) {
                        for e in &h.insert {
                            s.dhcp.entry(e.hostname.to_string()).or_insert(now);
                        }
                    }
                    if delta::apply(plan, d).is_err() {
                        held = None;
                        break;
                    }
                }
                if let Some((_, plan)) = held.as_mut() {
                    plan.generation = generation;
                }
            }
            Polled::Unchanged { generation } => {
                if let Some((_, plan)) = held.as_mut() {
                    plan.generation = generation;
                }
            }
        }
        drop(s);
        shared.cv.notify_all();
    }
}

/// The server process, killed when dropped.
struct Server(Child);
impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// CPU time of a process's threads, in ms, by thread: the scheduler's own count, to the
/// nanosecond (`/proc/PID/task/TID/sched`).
struct Cpu(HashMap<String, f64>);

impl Cpu {
    fn now(pid: u32) -> Result<Cpu> {
        let mut by_task = HashMap::new();
        for t in std::fs::read_dir(format!("/proc/{pid}/task"))
            .map_err(err)?
            .flatten()
        {
            let Ok(text) = std::fs::read_to_string(t.path().join("sched")) else {
                continue;
            };
            let ms = text
                .lines()
                .find(|l| l.starts_with("se.sum_exec_runtime"))
                .and_then(|l| l.rsplit(':').next())
                .and_then(|v| v.trim().parse::<f64>().ok());
            if let Some(ms) = ms {
                by_task.insert(t.file_name().to_string_lossy().into_owned(), ms);
            }
        }
        if by_task.is_empty() {
            return Err(err(
                "no /proc/PID/task/*/sched here (a kernel without sched_debug)",
            ));
        }
        Ok(Cpu(by_task))
    }

    /// The ms used since `before` (threads that ended in between are left out: the
    /// server's are its runtime's, which live as long as it does).
    fn since(pid: u32, before: &Cpu) -> Result<f64> {
        let now = Cpu::now(pid)?;
        Ok(now
            .0
            .iter()
            .map(|(t, ms)| ms - before.0.get(t).copied().unwrap_or(0.0))
            .sum())
    }
}

fn percentile(v: &mut [f64], p: usize) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get((v.len().saturating_sub(1)) * p / 100)
        .copied()
        .unwrap_or(0.0)
}

struct Scratch(PathBuf);
impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The admin project and user, made by the binary's own `manage bootstrap` (as an operator
/// would) so the bench needs none of the binary's internals.
fn bootstrap(dir: &Path) -> Result<()> {
    let exe = std::env::current_exe().map_err(|e| Error::Store(e.to_string()))?;
    let out = Command::new(exe)
        .args(["manage", "--data-dir"])
        .arg(dir)
        .args(["bootstrap", "--bootstrap-password", PASSWORD])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| Error::Store(format!("manage bootstrap: {e}")))?;
    if !out.status.success() {
        return Err(Error::Store(format!(
            "manage bootstrap: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

/// Fills the store directly: admin, one network served by the network host, the hosts'
/// services, groups of GROUP_SIZE with a rule each, and `instances` spread over the hosts.
fn fill(dir: &Path, hosts: usize, instances: usize) -> Result<String> {
    let store = SqliteStore::open_dir(dir)?;
    bootstrap(dir)?;
    let admin = store.project("admin")?.id;
    for r in [
        "instances",
        "cores",
        "ram",
        "security_groups",
        "security_group_rules",
        "floating_ips",
    ] {
        store.set_quota(&admin, r, -1)?;
    }
    let cfg = Config {
        flat_network_bridge: Some("br100".into()),
        ..Config::default()
    };
    let req = NetworkRequest {
        label: "scale".into(),
        cidr: Some("10.0.0.0/16".into()),
        network_size: Some(65536),
        bridge: Some("br100".into()),
        ..NetworkRequest::default()
    };
    store.create_networks(&req, &cfg)?;
    let pool: Vec<std::net::Ipv4Addr> = (1..=40)
        .map(|i| std::net::Ipv4Addr::new(172, 24, 0, i))
        .collect();
    store.create_floating_ips("nova", "eth0", &pool)?;
    let now = novanet_server::unix_now();
    let report = |host: String, network_host: bool| ServiceReport {
        host,
        network_host,
        ..ServiceReport::default()
    };
    store.report_service(&report(NETWORK_HOST.into(), true), now)?;
    store.claim_networks(NETWORK_HOST)?;
    for h in 0..hosts {
        store.report_service(&report(compute(h), false), now)?;
    }
    // Enough groups for the instances and the boots to come.
    let groups = instances.div_ceil(GROUP_SIZE).max(1) + 100;
    for g in 0..groups {
        let sg = store.create_security_group(&admin, &format!("g{g}"), "bench", -1)?;
        let rule = NewRule {
            protocol: Some("tcp".into()),
            from_port: Some(22),
            to_port: Some(22),
            cidr: Some("0.0.0.0/0".into()),
            group_id: None,
        };
        store.add_security_group_rule(sg.id, &rule, -1)?;
    }
    let t = Instant::now();
    for i in 0..instances {
        let spec = InstanceSpec {
            name: format!("fill-{i}"),
            project_id: admin.clone(),
            user_id: "admin".into(),
            host: Some(compute(i % hosts)),
            security_groups: vec![format!("g{}", i / GROUP_SIZE)],
            ..InstanceSpec::default()
        };
        store.create_instance(&spec, &cfg)?;
        if i > 0 && i % 10_000 == 0 {
            eprintln!(
                "bench scale: {i} instances stored ({:.0}/s)",
                i as f64 / t.elapsed().as_secs_f64()
            );
        }
    }
    Ok(admin)
}

pub fn run(hosts: usize, instances: usize, boots: usize, rule_changes: usize) -> Result<()> {
    if hosts == 0 || instances > 60_000 {
        return Err(err(
            "--hosts at least 1, --instances at most 60,000 (one /16)",
        ));
    }
    let dir =
        Scratch(std::env::temp_dir().join(format!("novanet-bench-scale-{}", std::process::id())));
    let _ = std::fs::remove_dir_all(&dir.0);
    let t = Instant::now();
    fill(&dir.0, hosts, instances)?;
    eprintln!(
        "bench scale: {instances} instances on {hosts} hosts stored in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let conf = dir.0.join("novanet.toml");
    std::fs::write(&conf, "flat_network_bridge = \"br100\"\n").map_err(err)?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(err)?
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let exe = std::env::current_exe().map_err(err)?;
    let server = Server(
        Command::new(exe)
            .args(["server", "--data-dir"])
            .arg(&dir.0)
            .arg("--config")
            .arg(&conf)
            .args([
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--metadata-listen",
                "off",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(err)?,
    );
    let pid = server.0.id();
    let creds = Credentials {
        auth_url: format!("{url}/identity/v3"),
        username: "admin".into(),
        password: PASSWORD.into(),
        project: "admin".into(),
    };
    let api = Client::new(Servers::parse(&url).map_err(err)?, creds.clone());
    let up = Instant::now();
    while api.call("GET", "/v2.1/os-services", None).is_err() {
        if up.elapsed() > Duration::from_secs(30) {
            return Err(err("the server did not come up"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    // One agent per host, and the network host's.
    let shared = Arc::new(Shared {
        seen: Mutex::new(Seen::default()),
        cv: Condvar::new(),
        stop: AtomicBool::new(false),
    });
    let names: Vec<String> = std::iter::once(NETWORK_HOST.to_string())
        .chain((0..hosts).map(compute))
        .collect();
    for (idx, host) in names.iter().enumerate() {
        let client = Client::new(Servers::parse(&url).map_err(err)?, creds.clone());
        let (host, shared) = (host.clone(), shared.clone());
        std::thread::Builder::new()
            .name(format!("agent-{idx}"))
            .spawn(move || agent(idx, host, client, shared))
            .map_err(err)?;
    }
    if !shared.wait(Duration::from_secs(600), |s| s.ready.len() == names.len()) {
        return Err(err("not every agent got its plan"));
    }
    let first = shared
        .seen
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .network_plan;
    if let Some((bytes, _)) = first {
        eprintln!("bench scale: the network host's whole plan: {bytes} bytes");
    }
    // Let the start settle (plans built, first polls answered).
    std::thread::sleep(Duration::from_secs(3));
    let groups = instances.div_ceil(GROUP_SIZE).max(1);
    let boot = |k: usize| -> Result<String> {
        let body = json!({"server": {"name": format!("scale-{k}"), "flavorRef": "1",
            "security_groups": [{"name": format!("g{}", k % groups)}]}});
        let v = api
            .call("POST", "/v2.1/servers", Some(&body))
            .map_err(err)?;
        v["server"]["id"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| err(format!("boot answered {v}")))
    };
    let propagated = |s: &Seen, uuid: &str, k: usize| {
        s.booted.contains_key(uuid) && s.dhcp.contains_key(&format!("scale-{k}"))
    };
    // One boot at a time: until both plans it changes (its host's, its DHCP host's) hold it.
    let (c0, b0) = shared.counters();
    let cpu0 = Cpu::now(pid)?;
    let mut latencies = Vec::new();
    let mut booted = Vec::new();
    for k in 0..boots {
        let t = Instant::now();
        let uuid = boot(k)?;
        booted.push(uuid.clone());
        if !shared.wait(Duration::from_secs(60), |s| propagated(s, &uuid, k)) {
            return Err(err(format!("boot {k} never reached its hosts' plans")));
        }
        let s = shared.seen.lock().unwrap_or_else(|p| p.into_inner());
        let done = s.booted[&uuid].max(s.dhcp[&format!("scale-{k}")]);
        latencies.push(done.duration_since(t).as_secs_f64() * 1000.0);
    }
    let boot_cpu = Cpu::since(pid, &cpu0)? / boots as f64;
    let (c1, b1) = shared.counters();
    // As fast as four clients can, with every agent polling.
    let burst = boots.max(300);
    let clients: Vec<Client> = (0..4)
        .map(|_| {
            let c = Client::new(Servers::parse(&url)?, creds.clone());
            c.call("GET", "/v2.1/os-services", None).map(|_| c)
        })
        .collect::<std::result::Result<_, _>>()
        .map_err(err)?;
    let t = Instant::now();
    let next = std::sync::atomic::AtomicUsize::new(boots);
    let uuids: Mutex<Vec<(usize, String)>> = Mutex::new(Vec::new());
    std::thread::scope(|sc| {
        for client in &clients {
            let (next, uuids) = (&next, &uuids);
            sc.spawn(move || loop {
                let k = next.fetch_add(1, Ordering::Relaxed);
                if k >= boots + burst {
                    break;
                }
                let body = json!({"server": {"name": format!("scale-{k}"), "flavorRef": "1",
                        "security_groups": [{"name": format!("g{}", k % groups)}]}});
                if let Ok(v) = client.call("POST", "/v2.1/servers", Some(&body)) {
                    if let Some(id) = v["server"]["id"].as_str() {
                        uuids
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .push((k, id.into()));
                    }
                }
            });
        }
    });
    let uuids = uuids.into_inner().unwrap_or_else(|p| p.into_inner());
    if uuids.len() != burst {
        return Err(err(format!(
            "{} of {burst} boots failed",
            burst - uuids.len()
        )));
    }
    if !shared.wait(Duration::from_secs(120), |s| {
        uuids.iter().all(|(k, u)| propagated(s, u, *k))
    }) {
        return Err(err(
            "the burst's boots never all reached their hosts' plans",
        ));
    }
    let rate = burst as f64 / t.elapsed().as_secs_f64();
    // Rule changes: a rule added to one group reaches the hosts of its members.
    let group_ids: HashMap<String, i64> = api
        .call("GET", "/v2.1/os-security-groups", None)
        .map_err(err)?["security_groups"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|g| Some((g["name"].as_str()?.to_string(), g["id"].as_i64()?)))
        .collect();
    let step = (groups / rule_changes.max(1)).max(1);
    let (c2, _) = shared.counters();
    let cpu2 = Cpu::now(pid)?;
    let mut rule_latencies = Vec::new();
    for r in 0..rule_changes {
        let g = (r * step) % groups;
        // The hosts of the group's members: the fill's, and the boots' (from their plans).
        // The hosts of the group's members from the fill (agents are numbered from the
        // network host's, 0); members booted since may wake a few more.
        let members: HashSet<usize> = (g * GROUP_SIZE..((g + 1) * GROUP_SIZE).min(instances))
            .map(|i| 1 + i % hosts)
            .collect();
        let port = RULE_PORT + r as i32;
        let body = json!({"security_group_rule": {"parent_group_id": group_ids[&format!("g{g}")],
            "ip_protocol": "tcp", "from_port": port, "to_port": port, "cidr": "0.0.0.0/0"}});
        let t = Instant::now();
        api.call("POST", "/v2.1/os-security-group-rules", Some(&body))
            .map_err(err)?;
        if !shared.wait(Duration::from_secs(60), |s| {
            members.iter().all(|h| s.rules.contains_key(&(port, *h)))
        }) {
            return Err(err(format!("rule change {r} never reached its hosts")));
        }
        let s = shared.seen.lock().unwrap_or_else(|p| p.into_inner());
        let done = members
            .iter()
            .filter_map(|h| s.rules.get(&(port, *h)))
            .max()
            .copied()
            .unwrap_or(t);
        rule_latencies.push(done.duration_since(t).as_secs_f64() * 1000.0);
    }
    // Late wakes (a host the bench did not wait for) count too.
    std::thread::sleep(Duration::from_millis(200));
    let rule_cpu = Cpu::since(pid, &cpu2)? / rule_changes.max(1) as f64;
    let (c3, _) = shared.counters();
    // For the notes (stderr): a floating IP associated, on the network host.
    let rounds = 10.min(booted.len());
    let mut float_cpu = 0.0;
    let mut float_ms = Vec::new();
    for uuid in booted.iter().take(rounds) {
        let v = api
            .call(
                "POST",
                "/v2.1/os-floating-ips",
                Some(&json!({"pool": "nova"})),
            )
            .map_err(err)?;
        let ip = v["floating_ip"]["ip"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let before = shared.counters().0;
        let cpu = Cpu::now(pid)?;
        let t = Instant::now();
        api.call(
            "POST",
            &format!("/v2.1/servers/{uuid}/action"),
            Some(&json!({"addFloatingIp": {"address": ip}})),
        )
        .map_err(err)?;
        if shared.wait(Duration::from_secs(60), |s| s.changes > before) {
            float_ms.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        float_cpu += Cpu::since(pid, &cpu)?;
    }
    eprintln!(
        "bench scale: a floating IP associated: {:.2} ms server CPU, {:.1} ms to the network \
         host's plan",
        float_cpu / rounds.max(1) as f64,
        percentile(&mut float_ms, 50)
    );
    // For the notes (stderr): what recomputing the network host's whole plan costs (a change
    // of its own options; network changes do the same).
    let rounds = 4;
    let cpu4 = Cpu::now(pid)?;
    let mut full_ms = Vec::new();
    for r in 0..rounds {
        let before = shared.counters().0;
        let body = json!({"network_host": true,
            "options": {"flat_interface": format!("eth{}", 5 + r % 2)}});
        let t = Instant::now();
        api.call(
            "POST",
            &format!("/novanet/v1/hosts/{NETWORK_HOST}/report"),
            Some(&body),
        )
        .map_err(err)?;
        if shared.wait(Duration::from_secs(60), |s| s.changes > before) {
            full_ms.push(t.elapsed().as_secs_f64() * 1000.0);
        }
    }
    eprintln!(
        "bench scale: the network host's whole plan recomputed: {:.0} ms server CPU, {:.0} ms \
         to its agent",
        Cpu::since(pid, &cpu4)? / rounds as f64,
        percentile(&mut full_ms, 50)
    );
    shared.stop.store(true, Ordering::Relaxed);
    drop(server);
    println!(
        "boot to host plan p50 ms: {:.1}",
        percentile(&mut latencies, 50)
    );
    println!(
        "boot to host plan p99 ms: {:.1}",
        percentile(&mut latencies, 99)
    );
    println!(
        "agents woken per boot: {:.2}",
        (c1 - c0) as f64 / boots as f64
    );
    println!("server cpu ms per boot: {boot_cpu:.2}");
    println!(
        "bytes to agents per boot: {:.0}",
        (b1 - b0) as f64 / boots as f64
    );
    println!("boots/s with agents polling: {rate:.0}");
    println!(
        "rule change to host plan p50 ms: {:.1}",
        percentile(&mut rule_latencies, 50)
    );
    println!(
        "agents woken per rule change: {:.2}",
        (c3 - c2) as f64 / rule_changes.max(1) as f64
    );
    println!("server cpu ms per rule change: {rule_cpu:.2}");
    Ok(())
}
