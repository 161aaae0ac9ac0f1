//! `novanet agent`: fetches its host's plan from the server and makes the kernel match it,
//! again after every change and on a slow resync. `plan -> render -> apply`; every applier
//! is idempotent and touches only what this agent made.

pub mod client;
mod dhcp;
pub mod diagnose;
pub mod firewall;
pub mod hypervisor;
mod isolation;
mod links;
mod metadata;
pub mod metrics;
mod plan_check;
mod ra;
mod segments;
mod sys;

pub use plan_check::parse_plan;
pub use sys::AgentError;

/// The pure renderers of the plan's other parts, for tests that check what a plan becomes
/// (the firewall's is `firewall::render`).
pub mod render {
    pub use crate::dhcp::{dnsmasq_args, dnsmasq_hosts, dnsmasq_opts};
    /// The bridge table that keeps a shared multi-host address to its host.
    pub use crate::isolation::render as isolation_table;
    /// The `ip -batch` lines that take the links from what is there to the plan's.
    pub use crate::links::diff as link_commands;
    pub use crate::ra::{radvd_args, radvd_conf};
}

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use novanet_core::delta::{self, PlanDelta};
use novanet_core::plan::{DhcpPlan, HostPlan};
use novanet_core::valid::{IfName, Ipv4Text};
use serde::{Deserialize, Serialize};

use crate::client::{Client, Polled};
use crate::dhcp::DhcpManager;
use crate::firewall::{Firewall, FirewallDriver};
use crate::sys::{io_err, run, Result};

pub struct AgentOptions {
    pub host: String,
    /// This host serves single-host networks (runs their gateway, DHCP and NAT).
    pub network_host: bool,
    pub state_dir: PathBuf,
    /// This binary, for dnsmasq's lease hook.
    pub binary: PathBuf,
    /// A full re-apply this often even without changes.
    pub resync: Duration,
    /// Stop after the first successful apply (for tests and one-shot runs).
    pub once: bool,
    /// This host's own options from its configuration, reported with each heartbeat.
    pub host_options: novanet_core::config::HostOptions,
    /// What runs this host's instances (`none`: nothing, as before).
    pub compute_driver: hypervisor::ComputeDriver,
    /// libvirt's connection (nova's `libvirt_uri`) for `compute_driver = libvirt`.
    pub libvirt_uri: Option<String>,
    /// Where to serve `/metrics` and `/healthz` (None: not served).
    pub metrics_listen: Option<std::net::SocketAddr>,
}

/// What this agent created, kept across restarts so that it removes only its own things.
#[derive(Default, Serialize, Deserialize)]
struct Owned {
    bridges: BTreeSet<String>,
    floating: BTreeSet<(String, String)>,
    /// VLAN and VXLAN devices of project segments.
    #[serde(default)]
    segments: BTreeSet<String>,
}

/// The state file is ours, but its names become `ip` commands: keep only valid ones.
fn load_owned(p: &Path) -> Owned {
    let mut o: Owned = std::fs::read_to_string(p)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default();
    o.bridges.retain(|b| IfName::new(b.as_str()).is_ok());
    o.segments
        .retain(|s| novanet_core::segment::Segment::is_device_name(s));
    o.floating
        .retain(|(a, i)| Ipv4Text::new(a.as_str()).is_ok() && IfName::new(i.as_str()).is_ok());
    o
}

pub struct Agent {
    opts: AgentOptions,
    client: Arc<Client>,
    dhcp: DhcpManager,
    ra: ra::RaManager,
    /// The driver the last applied plan named; another is built when a plan names another.
    firewall: Option<(FirewallDriver, Box<dyn Firewall>)>,
    owned: Owned,
    /// The held plan's DHCP servers, for the lease hook (kept by the same deltas).
    dhcp_plans: Arc<Mutex<Vec<DhcpPlan>>>,
    hypervisor: Option<Box<dyn hypervisor::Hypervisor>>,
    vms_reported: hypervisor::Reported,
    /// The bridge rules that keep a shared multi-host address to this host.
    isolation: isolation::Isolation,
    /// This host's instances' metadata, served here in multi-host mode.
    metadata: metadata::LocalMetadata,
    metrics: metrics::AgentMetrics,
    /// The failed steps of the current apply, by kind (for the metrics).
    failed_kinds: Vec<&'static str>,
}

impl Agent {
    pub fn new(opts: AgentOptions, client: Client) -> Result<Agent> {
        std::fs::create_dir_all(&opts.state_dir)
            .map_err(|e| io_err(opts.state_dir.display(), e))?;
        let dhcp = DhcpManager::new(&opts.state_dir.join("networks"), &opts.binary);
        // Its own directory: dnsmasq's manager stops what it finds in `networks/` and is not
        // told of radvd's files (it removed their PID file, and radvd was started again
        // every pass).
        let ra = ra::RaManager::new(&opts.state_dir.join("ra"));
        let owned = load_owned(&opts.state_dir.join("owned.json"));
        let hypervisor = hypervisor::driver(
            opts.compute_driver,
            &opts.state_dir,
            opts.libvirt_uri.as_deref(),
        );
        let metadata = metadata::LocalMetadata::new(&opts.state_dir);
        Ok(Agent {
            hypervisor,
            vms_reported: Default::default(),
            opts,
            client: Arc::new(client),
            dhcp,
            ra,
            firewall: None,
            owned,
            dhcp_plans: Arc::default(),
            isolation: isolation::Isolation::default(),
            metadata,
            metrics: metrics::AgentMetrics::default(),
            failed_kinds: Vec::new(),
        })
    }

    /// Records the kind of the steps that failed since `before` errors.
    fn tally(&mut self, kind: &'static str, before: usize, errors: &[String]) {
        self.failed_kinds.extend(std::iter::repeat_n(
            kind,
            errors.len().saturating_sub(before),
        ));
    }

    /// Runs the diagnose checks against `plan` now.
    pub fn diagnose(&self, plan: &HostPlan) -> diagnose::Diagnosis {
        let facts = diagnose::gather(plan, &self.opts.state_dir);
        diagnose::Diagnosis {
            host: self.opts.host.clone(),
            generation: plan.generation,
            at: unix_now(),
            checks: diagnose::run_checks(plan, &facts),
        }
    }

    fn socket_path(&self) -> PathBuf {
        self.opts.state_dir.join("agent.sock")
    }

    /// Makes the kernel match `plan`. Keeps going after a failed step and reports them all,
    /// with a list of what it changed.
    pub fn apply(&mut self, plan: &HostPlan) -> (Vec<String>, Vec<String>) {
        let mut errors = Vec::new();
        let mut changed = Vec::new();
        self.failed_kinds.clear();
        if plan.ip_forward {
            if let Err(e) = sys::ensure_sysctl("net/ipv4/ip_forward", "1") {
                errors.push(e.to_string());
            }
        }
        self.tally("sysctl", 0, &errors);
        let before = errors.len();
        // NAT before addresses, as nova did: a floating address is bound only once its
        // rules exist, and its rules go before the address does.
        let kind = plan.firewall_driver;
        if self.firewall.as_ref().is_none_or(|(k, _)| *k != kind) {
            tracing::info!(driver = kind.name(), "firewall driver chosen by the plan");
            self.firewall = Some((kind, firewall::driver(kind, &self.opts.state_dir)));
        }
        let (_, driver) = self.firewall.as_mut().expect("chosen above");
        let fw = driver.apply(plan);
        errors.extend(fw.errors.iter().map(ToString::to_string));
        changed.extend(fw.changed);
        self.tally("firewall", before, &errors);
        let before = errors.len();
        // Before the shared address goes on the bridge: the other hosts must not hear of it.
        match self.isolation.apply(&plan.bridges, &plan.ra) {
            Ok(true) => changed.push("multi-host isolation".into()),
            Ok(false) => {}
            Err(e) => errors.push(e.to_string()),
        }
        self.tally("isolation", before, &errors);
        let before = errors.len();
        // Segments first: the bridges below enslave their devices.
        self.apply_segments(plan, &mut errors, &mut changed);
        self.tally("segments", before, &errors);
        let before = errors.len();
        match links::read_links() {
            Ok(current) => {
                let cmds = links::diff(
                    &current,
                    &plan.bridges,
                    &plan.floating,
                    &self.owned.bridges,
                    &self.owned.floating,
                );
                match sys::run_batch("ip", &cmds) {
                    Ok(()) => {
                        self.owned.bridges =
                            plan.bridges.iter().map(|b| b.name.to_string()).collect();
                        let before = std::mem::take(&mut self.owned.floating);
                        self.owned.floating = plan
                            .floating
                            .iter()
                            .map(|f| (f.address.to_string(), f.interface.to_string()))
                            .collect();
                        for f in plan.floating.iter().filter(|f| {
                            !before.contains(&(f.address.to_string(), f.interface.to_string()))
                        }) {
                            // Tell the segment the address moved here (gratuitous ARP).
                            // In the background: arping waits a second for replies.
                            let args = [
                                "-U",
                                "-c",
                                "1",
                                "-I",
                                f.interface.as_str(),
                                f.address.as_str(),
                            ]
                            .map(String::from);
                            std::thread::spawn(move || {
                                let argv: Vec<&str> = args.iter().map(String::as_str).collect();
                                let _ = run("arping", &argv, None);
                            });
                        }
                        for (addr, _) in before.iter().filter(|k| !self.owned.floating.contains(k))
                        {
                            // Flows of the old mapping must not outlive it (nova bug 1334938).
                            let _ = run("conntrack", &["-D", "-d", addr], None);
                            let _ = run("conntrack", &["-D", "-r", addr], None);
                        }
                        self.save_owned(&mut errors);
                    }
                    Err(e) => errors.push(e.to_string()),
                }
            }
            Err(e) => errors.push(e.to_string()),
        }
        self.tally("links", before, &errors);
        let before = errors.len();
        // Each project gateway answers ARP only on its own bridge: without it the network
        // host answers for project A's gateway on project B's segment.
        for b in plan
            .bridges
            .iter()
            .filter(|b| b.segment.is_some() && b.gateway.is_some())
        {
            let key = format!("net/ipv4/conf/{}/arp_ignore", b.name);
            if let Err(e) = sys::ensure_sysctl(&key, "1") {
                errors.push(e.to_string());
            }
        }
        self.tally("sysctl", before, &errors);
        let before = errors.len();
        match self.dhcp.apply(&plan.dhcp, &self.socket_path()) {
            Ok(r) => {
                self.metrics.dnsmasq_started(r.started.len());
                if !r.started.is_empty() || !r.stopped.is_empty() || !r.reloaded.is_empty() {
                    changed.push(format!(
                        "dnsmasq started {:?} reloaded {:?} stopped {:?}",
                        r.started, r.reloaded, r.stopped
                    ));
                }
                if r.hosts_written + r.hosts_removed > 0 {
                    changed.push(format!(
                        "DHCP hosts +{} -{}",
                        r.hosts_written, r.hosts_removed
                    ));
                }
            }
            Err(e) => errors.push(e.to_string()),
        }
        self.tally("dhcp", before, &errors);
        let before = errors.len();
        let (release_errors, ended) = self.dhcp.release(&plan.releases);
        errors.extend(release_errors);
        if ended > 0 {
            changed.push(format!("released {ended} leases no planned VIF owns"));
        }
        self.tally("release", before, &errors);
        let before = errors.len();
        errors.extend(self.metadata.sync(plan, &self.client));
        self.tally("metadata", before, &errors);
        let before = errors.len();
        self.apply_ra(plan, &mut errors, &mut changed);
        self.tally("radvd", before, &errors);
        let before = errors.len();
        // VMs last: their taps join bridges made above.
        let (e, c) = self.sync_vms();
        errors.extend(e);
        changed.extend(c);
        self.tally("vms", before, &errors);
        (errors, changed)
    }

    /// The hypervisor's pass: VMs made, stopped, started or destroyed as the server's
    /// records say, and what changed reported back. Runs after every apply and on every
    /// idle pass of the loop, so that actions and VMs that die are seen within seconds.
    fn sync_vms(&mut self) -> (Vec<String>, Vec<String>) {
        let Some(hv) = self.hypervisor.as_mut() else {
            return Default::default();
        };
        let r = hypervisor::sync(
            hv.as_mut(),
            &self.client,
            &self.opts.host,
            &self.opts.state_dir,
            &mut self.vms_reported,
        );
        (r.errors, r.changed)
    }

    /// Dual stack: IPv6 forwarding, the gateways' v6 addresses, radvd per bridge.
    fn apply_ra(&mut self, plan: &HostPlan, errors: &mut Vec<String>, changed: &mut Vec<String>) {
        if !plan.ra.is_empty() {
            if let Err(e) = sys::ensure_sysctl("net/ipv6/conf/all/forwarding", "1") {
                errors.push(e.to_string());
            }
            let cmds = links::read_links().map(|l| ra::address_commands(&l, &plan.ra));
            match cmds.and_then(|c| sys::run_batch("ip", &c).map(|()| c)) {
                Ok(c) if !c.is_empty() => changed.push(format!("IPv6 gateways: {}", c.join("; "))),
                Ok(_) => {}
                Err(e) => errors.push(e.to_string()),
            }
        }
        match self.ra.apply(&plan.ra) {
            Ok(r) if !r.started.is_empty() || !r.stopped.is_empty() => changed.push(format!(
                "radvd started {:?} stopped {:?}",
                r.started, r.stopped
            )),
            Ok(_) => {}
            Err(e) => errors.push(e.to_string()),
        }
    }

    /// Makes, adopts and removes the plan's segment devices and keeps the VXLAN flood lists.
    fn apply_segments(
        &mut self,
        plan: &HostPlan,
        errors: &mut Vec<String>,
        changed: &mut Vec<String>,
    ) {
        let links = match links::read_links() {
            Ok(l) => l,
            Err(e) => return errors.push(e.to_string()),
        };
        for p in segments::problems(&links, &plan.bridges) {
            tracing::warn!(
                problem = p.as_str(),
                "a segment cannot be set up as planned"
            );
            errors.push(p);
        }
        let cmds = segments::link_commands(&links, &plan.bridges, &self.owned.segments);
        match sys::run_batch("ip", &cmds) {
            Ok(()) => {
                if !cmds.is_empty() {
                    changed.push(format!("segments: {}", cmds.join("; ")));
                }
                self.owned.segments = segments::planned_devices(&plan.bridges);
                self.save_owned(errors);
            }
            Err(e) => errors.push(e.to_string()),
        }
        match segments::read_flood_lists(&plan.bridges) {
            Ok(current) => {
                let cmds = segments::flood_commands(&current, &plan.bridges);
                match sys::run_batch("bridge", &cmds) {
                    Ok(()) if !cmds.is_empty() => {
                        changed.push(format!("VXLAN flood lists: {}", cmds.join("; ")))
                    }
                    Ok(()) => {}
                    Err(e) => errors.push(e.to_string()),
                }
            }
            Err(e) => errors.push(e.to_string()),
        }
    }

    fn save_owned(&self, errors: &mut Vec<String>) {
        let path = self.opts.state_dir.join("owned.json");
        let text = serde_json::to_string(&self.owned).expect("serializable");
        if let Err(e) = sys::write_if_changed(&path, &text) {
            errors.push(e.to_string());
        }
    }

    /// Serves the lease hook: dnsmasq's script connects, says `add|old|del MAC IP [HOST]` or
    /// `init NETWORK`, and the agent relays to the server or answers from the plan.
    fn serve_hook(&self) -> Result<()> {
        let path = self.socket_path();
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path).map_err(|e| io_err(path.display(), e))?;
        let client = self.client.clone();
        let plan = self.dhcp_plans.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let client = client.clone();
                let plan = plan.clone();
                std::thread::spawn(move || {
                    if let Err(e) = hook_conn(conn, &client, &plan) {
                        tracing::warn!(error = %e, "lease hook request failed");
                    }
                });
            }
        });
        Ok(())
    }

    pub fn run(&mut self) -> Result<()> {
        self.serve_hook()?;
        if let Some(addr) = self.opts.metrics_listen {
            // Healthy while good applies keep coming: one per resync at least.
            let bound = self.metrics.serve(addr, self.opts.resync * 3)?;
            tracing::info!(%bound, "serving /metrics and /healthz");
        }
        // When the held plan's generation arrived (for the plan lag).
        let mut received: Option<(u64, Instant)> = None;
        let mut last_report = Instant::now() - Duration::from_secs(3600);
        let mut last_full = Instant::now();
        // The plan held, from which server epoch, and whether deltas may be applied to it
        // (not when this agent left part of it out: the server's lists would not match).
        let mut held: Option<(u64, HostPlan, bool)> = None;
        // Whether the kernel matches the held plan.
        let mut applied = false;
        loop {
            if last_report.elapsed() > Duration::from_secs(10) {
                let networks = links::read_links()
                    .map(|l| links::host_networks(&l, &self.owned.bridges))
                    .unwrap_or_default();
                // The same checks as `novanet diagnose`, sent with each heartbeat.
                let diagnosis = held.as_ref().map(|(_, plan, _)| self.diagnose(plan));
                if let Some(d) = &diagnosis {
                    self.metrics.diagnosed(d);
                }
                // Tried again in 10 s either way: the host keeps running its plan meanwhile.
                last_report = Instant::now();
                if let Err(e) = self.client.report_with(
                    &self.opts.host,
                    self.opts.network_host,
                    &networks,
                    &self.opts.host_options,
                    diagnosis.as_ref(),
                ) {
                    tracing::warn!(error = %e, "cannot report to the server; retrying in 10 s");
                }
            }
            // Long poll: returns at once on a change, else after 2 s so that dnsmasq
            // supervision runs at least that often (at once while a failed apply is retried).
            let ask = held.as_ref().map(|(e, p, _)| (*e, p.generation));
            let deltas = held.as_ref().is_none_or(|h| h.2);
            let wait = if applied { 2 } else { 0 };
            let changed = match self.client.poll(&self.opts.host, ask, wait, deltas) {
                Ok((
                    Polled::Plan {
                        epoch,
                        plan,
                        refused,
                    },
                    _,
                )) => {
                    for r in &refused {
                        tracing::warn!(refused = r.as_str(), "refused part of the plan");
                    }
                    let ours = refused.len() > plan.refused.len();
                    *self.dhcp_plans.lock().unwrap_or_else(|p| p.into_inner()) = plan.dhcp.clone();
                    held = Some((epoch, *plan, !ours));
                    true
                }
                Ok((Polled::Deltas { generation, deltas }, _)) => {
                    let (_, plan, _) = held.as_mut().expect("deltas come over a held plan");
                    let mut hook = self.dhcp_plans.lock().unwrap_or_else(|p| p.into_inner());
                    let fit = deltas.iter().try_for_each(|d| {
                        delta::apply(plan, d)?;
                        delta::apply_dhcp(&mut hook, d)
                    });
                    drop(hook);
                    if let Err(e) = fit {
                        tracing::warn!(
                            error = %e,
                            "a plan delta does not fit, asking for the whole plan"
                        );
                        held = None;
                        continue;
                    }
                    plan.generation = generation;
                    !deltas.iter().all(PlanDelta::is_empty)
                }
                Ok((Polled::Unchanged { generation }, _)) => {
                    if let Some((_, plan, _)) = held.as_mut() {
                        plan.generation = generation;
                    }
                    false
                }
                Err(e) => {
                    std::thread::sleep(Duration::from_secs(1));
                    match held.as_mut() {
                        // The server is away, or sent a delta this agent refused: keep the
                        // plan held, and its DHCP, RA and VMs supervised, and ask for the
                        // whole plan next.
                        Some(h) => {
                            tracing::warn!(error = %e, "cannot fetch the plan; keeping the one held");
                            h.2 = false;
                        }
                        // Started while the server is away: the plan kept from the last run.
                        None => match diagnose::load_plan(&self.opts.state_dir) {
                            Ok(kept) if kept.host == self.opts.host => {
                                tracing::warn!(
                                    error = %e,
                                    generation = kept.generation,
                                    "cannot fetch the plan; applying the one kept from the last run"
                                );
                                *self.dhcp_plans.lock().unwrap_or_else(|p| p.into_inner()) =
                                    kept.dhcp.clone();
                                // Epoch 0 is no server's: the next answer is the whole plan.
                                held = Some((0, kept, false));
                                applied = false;
                            }
                            _ => {
                                tracing::warn!(error = %e, "cannot fetch the plan; retrying");
                                continue;
                            }
                        },
                    }
                    false
                }
            };
            let Some((_, plan, _)) = held.as_ref() else {
                continue;
            };
            if received.is_none_or(|(g, _)| g != plan.generation) {
                received = Some((plan.generation, Instant::now()));
                self.metrics.plan_received(plan.generation);
            }

            let resync = last_full.elapsed() > self.opts.resync;
            let errors = if changed || !applied || resync {
                let why = if changed {
                    "the plan changed"
                } else if !applied {
                    "the last apply failed"
                } else {
                    "periodic resync"
                };
                if resync {
                    // The slow resync trusts nothing this process remembers of the kernel.
                    if let Some((_, f)) = self.firewall.as_mut() {
                        f.resync();
                    }
                }
                last_full = Instant::now();
                let generation = plan.generation;
                let started = Instant::now();
                let (errors, what) = self.apply(plan);
                let seconds = started.elapsed().as_secs_f64();
                let lag = received
                    .filter(|(g, _)| *g == generation)
                    .map(|(_, t)| t.elapsed().as_secs_f64());
                self.metrics
                    .applied(generation, seconds, &self.failed_kinds, lag);
                // For `novanet diagnose` on this host: the plan and how its apply went.
                if changed {
                    if let Err(e) = diagnose::save_plan(&self.opts.state_dir, plan) {
                        tracing::warn!(error = %e, "cannot keep the plan for diagnose");
                    }
                }
                let record = diagnose::LastApply {
                    generation,
                    at: unix_now(),
                    seconds,
                    errors: errors.clone(),
                };
                if let Err(e) = diagnose::save_last_apply(&self.opts.state_dir, &record) {
                    tracing::warn!(error = %e, "cannot record the apply for diagnose");
                }
                for change in &what {
                    tracing::info!(generation, change = change.as_str(), why, "applied");
                }
                if !errors.is_empty() {
                    tracing::warn!(
                        generation,
                        failed = errors.len(),
                        why,
                        "generation {generation}: {} step(s) failed",
                        errors.len()
                    );
                } else if what.is_empty() {
                    tracing::info!(generation, why, "generation {generation}: up to date");
                } else {
                    tracing::info!(
                        generation,
                        why,
                        "generation {generation}: {}",
                        what.join(", ")
                    );
                }
                errors
            } else {
                // Nothing changed: only make sure the DHCP and RA servers still run.
                let mut errors = Vec::new();
                match self.ra.apply(&plan.ra) {
                    Ok(r) if !r.started.is_empty() => tracing::warn!(
                        bridges = ?r.started,
                        why = "radvd was not running",
                        "radvd restarted {:?}",
                        r.started
                    ),
                    Ok(_) => {}
                    Err(e) => errors.push(e.to_string()),
                }
                match self.dhcp.apply(&plan.dhcp, &self.socket_path()) {
                    Ok(r) if !r.started.is_empty() => {
                        self.metrics.dnsmasq_started(r.started.len());
                        tracing::warn!(
                            networks = ?r.started,
                            why = "dnsmasq was not running",
                            "dnsmasq restarted {:?}",
                            r.started
                        );
                    }
                    Ok(_) => {}
                    Err(e) => errors.push(e.to_string()),
                }
                errors
            };
            if !changed && applied && !resync {
                // A VM's trouble is reported to the server, not retried as a failed apply.
                let (vm_errors, what) = self.sync_vms();
                for change in &what {
                    tracing::info!(change = change.as_str(), "VM");
                }
                for e in &vm_errors {
                    tracing::warn!(error = e.as_str(), "VM");
                }
            }
            if errors.is_empty() {
                applied = true;
                if self.opts.once {
                    return Ok(());
                }
            } else {
                for e in &errors {
                    tracing::warn!(error = e.as_str(), "an apply step failed; retrying");
                }
                // Apply the whole plan again on the next pass.
                applied = false;
                std::thread::sleep(Duration::from_secs(1));
            }
        }
    }
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn hook_conn(conn: UnixStream, client: &Client, plan: &Mutex<Vec<DhcpPlan>>) -> Result<()> {
    let mut reader = BufReader::new(conn.try_clone().map_err(|e| io_err("hook socket", e))?);
    let mut line = String::new();
    reader
        .read_line(&mut line)
        .map_err(|e| io_err("hook socket", e))?;
    let words: Vec<&str> = line.split_whitespace().collect();
    let mut out = conn;
    match words.as_slice() {
        ["init", network] => {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs() as i64)
                .unwrap_or(0);
            let p = plan.lock().unwrap_or_else(|p| p.into_inner());
            let text = p
                .iter()
                .find(|d| d.network_uuid == *network)
                .map(|d| dhcp::lease_lines(d, now))
                .unwrap_or_default();
            out.write_all(text.as_bytes())
                .map_err(|e| io_err("hook socket", e))?;
        }
        // nova-dhcpbridge ignored `old`: renewals would pile up requests for nothing.
        ["old", ..] => {}
        [action @ ("add" | "del"), mac, ip, rest @ ..] => {
            client.lease(action, ip, mac, rest.first().copied())?;
        }
        _ => return Err(AgentError::Io(format!("unknown hook request {line:?}"))),
    }
    Ok(())
}

/// `novanet dhcp-hook`: what dnsmasq runs as `--dhcp-script`. Relays to the agent's socket.
pub fn dhcp_hook(socket: &Path, network: &str, args: &[String]) -> Result<()> {
    let mut conn = UnixStream::connect(socket)
        .map_err(|e| io_err(format!("agent socket {}", socket.display()), e))?;
    let line = match args.first().map(String::as_str) {
        Some("init") => format!("init {network}\n"),
        Some(_) => format!("{}\n", args.join(" ")),
        None => {
            return Err(AgentError::Io(
                "dhcp-hook needs an action (init, add, old, del)".into(),
            ))
        }
    };
    conn.write_all(line.as_bytes())
        .map_err(|e| io_err("agent socket", e))?;
    conn.shutdown(std::net::Shutdown::Write)
        .map_err(|e| io_err("agent socket", e))?;
    let mut reply = String::new();
    std::io::Read::read_to_string(&mut conn, &mut reply).map_err(|e| io_err("agent socket", e))?;
    print!("{reply}");
    Ok(())
}
