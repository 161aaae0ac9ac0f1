//! Several servers on one PostgreSQL database, one of them killed (`kill -9`) and restarted
//! while many clients boot: no fixed IP held twice, none leaked, no acknowledged boot lost.
//! `novanet bench failover` runs it at the size; the failover test runs it smaller.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use novanet_agent::client::{Client, Credentials, Servers};
use novanet_core::config::Config;
use novanet_core::planning::NetworkRequest;
use novanet_core::{Error, Result};
use novanet_store::prelude::*;
use novanet_store::{PgStore, ServiceReport};
use serde_json::json;

/// The admin password of the servers a `Cloud` starts.
pub const PASSWORD: &str = "failover-bench";
/// Compute hosts the servers schedule onto (reported once, never heard from again).
const HOSTS: usize = 4;

fn err(e: impl std::fmt::Display) -> Error {
    Error::Store(e.to_string())
}

/// `novanet server` processes on one database, each on its own port of 127.0.0.1, without
/// a metadata service. Killed when dropped.
pub struct Cloud {
    exe: PathBuf,
    db: String,
    dir: PathBuf,
    ports: Vec<u16>,
    servers: Vec<Option<Child>>,
}

fn free_port() -> Result<u16> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(err)
}

fn run_ok(c: &mut Command, what: &str) -> Result<()> {
    let out = c.stdin(Stdio::null()).output().map_err(err)?;
    if !out.status.success() {
        return Err(err(format!(
            "{what}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

impl Cloud {
    /// Bootstraps the admin user in the (empty) database `db` and starts `count` servers on
    /// it, `exe` being the novanet binary.
    pub fn start(exe: &Path, db: &str, count: usize) -> Result<Cloud> {
        let dir = std::env::temp_dir().join(format!(
            "novanet-failover-{}-{}",
            std::process::id(),
            free_port()?
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(err)?;
        std::fs::write(
            dir.join("novanet.toml"),
            "flat_network_bridge = \"br100\"\n",
        )
        .map_err(err)?;
        run_ok(
            Command::new(exe).args([
                "manage",
                "--db",
                db,
                "bootstrap",
                "--bootstrap-password",
                PASSWORD,
            ]),
            "manage bootstrap",
        )?;
        let mut cloud = Cloud {
            exe: exe.to_path_buf(),
            db: db.to_string(),
            dir,
            ports: Vec::new(),
            servers: Vec::new(),
        };
        for i in 0..count {
            cloud.ports.push(free_port()?);
            cloud.servers.push(None);
            cloud.restart(i)?;
        }
        for i in 0..count {
            cloud.wait_up(i)?;
        }
        Ok(cloud)
    }

    pub fn urls(&self) -> Vec<String> {
        self.ports
            .iter()
            .map(|p| format!("http://127.0.0.1:{p}"))
            .collect()
    }

    pub fn url(&self, i: usize) -> String {
        self.urls()[i].clone()
    }

    /// Server `i` dies at once, as with `kill -9`: no request of its finishes.
    pub fn kill(&mut self, i: usize) -> Result<()> {
        if let Some(mut c) = self.servers[i].take() {
            c.kill().map_err(err)?;
            c.wait().map_err(err)?;
        }
        Ok(())
    }

    /// Starts server `i` (again) on its port; returns once it is started, not answering.
    pub fn restart(&mut self, i: usize) -> Result<()> {
        let data = self.dir.join(format!("server-{i}"));
        std::fs::create_dir_all(&data).map_err(err)?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(format!("server-{i}.log")))
            .map_err(err)?;
        let child = Command::new(&self.exe)
            .args(["server", "--db", &self.db, "--data-dir"])
            .arg(&data)
            .arg("--config")
            .arg(self.dir.join("novanet.toml"))
            .args([
                "--listen",
                &format!("127.0.0.1:{}", self.ports[i]),
                "--metadata-listen",
                "off",
            ])
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(err)?;
        self.servers[i] = Some(child);
        Ok(())
    }

    /// Waits until server `i` answers an authenticated call.
    pub fn wait_up(&self, i: usize) -> Result<()> {
        let c = self.client_of(&[i])?;
        let t = Instant::now();
        loop {
            let e = match c.call("GET", "/v2.1/os-services", None) {
                Ok(_) => return Ok(()),
                Err(e) => e,
            };
            if t.elapsed() > Duration::from_secs(30) {
                let log = std::fs::read_to_string(self.dir.join(format!("server-{i}.log")))
                    .unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(10).collect();
                return Err(err(format!(
                    "server {i} did not come up ({e}); the end of its log:\n{}",
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// An admin client of the servers `order`, trying them in that order.
    pub fn client_of(&self, order: &[usize]) -> Result<Client> {
        let urls = self.urls();
        let list: Vec<&str> = order.iter().map(|i| urls[*i].as_str()).collect();
        let servers = Servers::parse(&list.join(",")).map_err(err)?;
        Ok(Client::new(
            servers,
            Credentials {
                auth_url: format!("{}/identity/v3", list[0]),
                username: "admin".into(),
                password: PASSWORD.into(),
                project: "admin".into(),
            },
        ))
    }

    /// A client of every server, starting with server `first`.
    pub fn client_from(&self, first: usize) -> Result<Client> {
        let n = self.ports.len();
        let order: Vec<usize> = (0..n).map(|k| (first + k) % n).collect();
        self.client_of(&order)
    }
}

impl Drop for Cloud {
    fn drop(&mut self) {
        for i in 0..self.servers.len() {
            let _ = self.kill(i);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Room for `count` boots: one network with a free address each (and some to spare), no
/// instance quota for admin, compute hosts to schedule onto.
pub fn prepare(db: &str, count: usize) -> Result<()> {
    let store = PgStore::open(db)?;
    let size = (count + count / 8 + 64).next_power_of_two().max(256);
    let prefix = 32 - size.trailing_zeros();
    let req = NetworkRequest {
        label: "failover".into(),
        cidr: Some(format!("10.0.0.0/{prefix}")),
        network_size: Some(size as u64),
        bridge: Some("br100".into()),
        ..Default::default()
    };
    let cfg = Config {
        flat_network_bridge: Some("br100".into()),
        ..Config::default()
    };
    store.create_networks(&req, &cfg)?;
    let admin = store.project("admin")?;
    for quota in ["instances", "cores", "ram", "fixed_ips"] {
        store.set_quota(&admin.id, quota, -1)?;
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(err)?
        .as_secs() as i64;
    for h in 0..HOSTS {
        let r = ServiceReport {
            host: format!("compute-{h}"),
            ..Default::default()
        };
        store.report_service(&r, now)?;
    }
    Ok(())
}

/// What the clients saw.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Boots answered 2xx, by instance id.
    pub acknowledged: Vec<String>,
    /// Boots that failed on every server (after the client moved on).
    pub failed: Vec<String>,
    pub seconds: f64,
    /// The slowest acknowledged boot, in seconds (the one caught by the kill, mostly).
    pub slowest: f64,
}

/// `clients` threads boot `count` servers, spread over the servers (client k starts on
/// server k mod n and moves on when one stops answering); when `kill` is given, that
/// server is killed once a third of the boots are acknowledged and restarted after
/// `down`.
pub fn boot_many(
    cloud: &mut Cloud,
    clients: usize,
    count: usize,
    kill: Option<(usize, Duration)>,
) -> Result<Outcome> {
    let n = cloud.urls().len();
    let made: Vec<Client> = (0..clients)
        .map(|k| cloud.client_from(k % n))
        .collect::<Result<_>>()?;
    let next = AtomicUsize::new(0);
    let acked = Mutex::new(Vec::with_capacity(count));
    let failed = Mutex::new(Vec::new());
    let slowest = Mutex::new(0f64);
    let t = Instant::now();
    let killed: Mutex<Result<()>> = Mutex::new(Ok(()));
    std::thread::scope(|sc| {
        for c in &made {
            let (next, acked, failed, slowest) = (&next, &acked, &failed, &slowest);
            sc.spawn(move || loop {
                let k = next.fetch_add(1, Ordering::SeqCst);
                if k >= count {
                    return;
                }
                let body = json!({"server": {"name": format!("fo-{k}"), "flavorRef": "1"}});
                let started = Instant::now();
                match c.call("POST", "/v2.1/servers", Some(&body)) {
                    Ok(v) => match v["server"]["id"].as_str() {
                        Some(id) => {
                            let took = started.elapsed().as_secs_f64();
                            let mut s = slowest.lock().unwrap_or_else(|p| p.into_inner());
                            *s = s.max(took);
                            drop(s);
                            acked
                                .lock()
                                .unwrap_or_else(|p| p.into_inner())
                                .push(id.to_string());
                        }
                        None => failed
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .push(format!("boot {k} answered {v}")),
                    },
                    Err(e) => failed
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(format!("boot {k}: {e}")),
                }
            });
        }
        if let Some((victim, down)) = kill {
            let acked = &acked;
            let cloud = &mut *cloud;
            let killed = &killed;
            sc.spawn(move || {
                let third = count / 3;
                while acked.lock().unwrap_or_else(|p| p.into_inner()).len() < third {
                    std::thread::sleep(Duration::from_millis(5));
                }
                let r = (|| {
                    cloud.kill(victim)?;
                    eprintln!("failover: server {victim} killed (kill -9) after {third} boots");
                    std::thread::sleep(down);
                    cloud.restart(victim)?;
                    cloud.wait_up(victim)?;
                    eprintln!("failover: server {victim} restarted and answering");
                    Ok(())
                })();
                *killed.lock().unwrap_or_else(|p| p.into_inner()) = r;
            });
        }
    });
    killed.into_inner().unwrap_or_else(|p| p.into_inner())?;
    Ok(Outcome {
        acknowledged: acked.into_inner().unwrap_or_else(|p| p.into_inner()),
        failed: failed.into_inner().unwrap_or_else(|p| p.into_inner()),
        seconds: t.elapsed().as_secs_f64(),
        slowest: slowest.into_inner().unwrap_or_else(|p| p.into_inner()),
    })
}

/// What the database holds after the run, checked against what the clients saw: each
/// entry is one broken promise (empty when all hold).
pub fn check(db: &str, acknowledged: &[String]) -> Result<Vec<String>> {
    let store = PgStore::open(db)?;
    let mut problems = store.check_consistency()?;
    let instances: HashSet<String> = store.instances(None)?.into_iter().map(|i| i.uuid).collect();
    let lost: Vec<&String> = acknowledged
        .iter()
        .filter(|u| !instances.contains(*u))
        .collect();
    if !lost.is_empty() {
        problems.push(format!(
            "{} acknowledged boot(s) lost, e.g. {}",
            lost.len(),
            lost[0]
        ));
    }
    let mut holders: HashMap<String, Vec<String>> = HashMap::new();
    for fixed in store.fixed_ips(None)? {
        let f = fixed.fixed;
        if let Some(owner) = &f.instance_uuid {
            if !instances.contains(owner) {
                problems.push(format!(
                    "{} is leaked: held by {owner}, which does not exist",
                    f.address
                ));
            }
        }
    }
    for uuid in &instances {
        for a in store.instance_addresses(uuid)? {
            holders.entry(a.address).or_default().push(uuid.clone());
        }
    }
    for (address, owners) in holders.iter().filter(|(_, o)| o.len() > 1) {
        problems.push(format!("{address} is held twice: by {owners:?}"));
    }
    let without: Vec<&String> = instances
        .iter()
        .filter(|u| !holders.values().any(|o| o.contains(u)))
        .take(1)
        .collect();
    if let Some(u) = without.first() {
        problems.push(format!("instance {u} has no fixed IP"));
    }
    Ok(problems)
}

/// `novanet bench failover`: three servers on the empty PostgreSQL database `db`,
/// `clients` clients booting `count` servers, one server killed and restarted mid-run.
pub fn run(db: &str, count: usize, clients: usize) -> Result<()> {
    let exe = std::env::current_exe().map_err(err)?;
    if PgStore::open(db)?.generation()? != 0 {
        return Err(Error::conflict(
            "bench failover --db needs an empty database: it fills it with a network and \
             thousands of instances",
        ));
    }
    let mut cloud = Cloud::start(&exe, db, 3)?;
    prepare(db, count)?;
    let out = boot_many(
        &mut cloud,
        clients,
        count,
        Some((1, Duration::from_millis(500))),
    )?;
    let problems = check(db, &out.acknowledged)?;
    println!("boots acknowledged: {}", out.acknowledged.len());
    println!("boots failed on every server: {}", out.failed.len());
    println!(
        "boots/s ({clients} clients, 3 servers, one killed): {:.0}",
        out.acknowledged.len() as f64 / out.seconds
    );
    println!("slowest acknowledged boot: {:.2} s", out.slowest);
    println!("broken promises: {}", problems.len());
    for p in problems.iter().take(10) {
        println!("  {p}");
    }
    for f in out.failed.iter().take(5) {
        eprintln!("  failed: {f}");
    }
    if !problems.is_empty() {
        return Err(err("the database broke a promise (above)"));
    }
    Ok(())
}
