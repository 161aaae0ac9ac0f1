//! One dnsmasq per network: started with nova's arguments, kept running, fed new hosts
//! without a restart, stopped when its network goes.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use novanet_core::plan::{DhcpPlan, DhcpRelease};

use crate::render::{dnsmasq_args, dnsmasq_host_files, dnsmasq_opts};
use crate::sys::{cmdline, io_err, run, signal, write_if_changed, Result};

pub struct DhcpManager {
    pub dir: PathBuf,
    pub binary: PathBuf,
    /// Host files removed since dnsmasq last re-read everything: their records linger in
    /// dnsmasq until a SIGHUP (keyed by network bridge, address).
    stale: BTreeSet<(String, String)>,
    released: BTreeSet<(String, String)>,
}

/// What one pass changed, for logs and tests.
#[derive(Debug, Default, PartialEq)]
pub struct DhcpReport {
    pub started: Vec<String>,
    pub reloaded: Vec<String>,
    pub stopped: Vec<String>,
    pub hosts_written: usize,
    pub hosts_removed: usize,
}

impl DhcpManager {
    pub fn new(dir: &Path, binary: &Path) -> DhcpManager {
        DhcpManager {
            dir: dir.to_path_buf(),
            binary: binary.to_path_buf(),
            stale: BTreeSet::new(),
            released: BTreeSet::new(),
        }
    }

    fn file(&self, bridge: &str, kind: &str) -> PathBuf {
        self.dir.join(format!("nova-{bridge}.{kind}"))
    }

    pub fn hook_path(&self, bridge: &str) -> PathBuf {
        self.file(bridge, "hook")
    }

    /// The PID of this network's dnsmasq if it runs with exactly `args`.
    fn running(&self, bridge: &str, args: &[String]) -> Option<u32> {
        let pid: u32 = std::fs::read_to_string(self.file(bridge, "pid"))
            .ok()?
            .trim()
            .parse()
            .ok()?;
        let cmd = cmdline(pid)?;
        (cmd.len() == args.len() + 1 && cmd[1..] == *args).then_some(pid)
    }

    /// A pid from the pid file whose process is a dnsmasq of this bridge (any arguments).
    fn any_running(&self, bridge: &str) -> Option<u32> {
        let pid_file = self.file(bridge, "pid");
        let pid: u32 = std::fs::read_to_string(&pid_file)
            .ok()?
            .trim()
            .parse()
            .ok()?;
        let cmd = cmdline(pid)?;
        let marker = format!("--pid-file={}", pid_file.display());
        cmd.contains(&marker).then_some(pid)
    }

    pub fn apply(&mut self, plans: &[DhcpPlan], socket: &Path) -> Result<DhcpReport> {
        let mut report = DhcpReport::default();
        std::fs::create_dir_all(&self.dir).map_err(|e| io_err(self.dir.display(), e))?;
        for d in plans {
            let hook = self.hook_path(&d.bridge);
            let script = format!(
                "#!/bin/sh\n# dnsmasq lease events for {}, relayed to the novanet agent\nexec '{}' dhcp-hook --socket '{}' --network '{}' \"$@\"\n",
                d.label,
                self.binary.display(),
                socket.display(),
                d.network_uuid
            );
            if write_if_changed(&hook, &script)? {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755))
                    .map_err(|e| io_err(hook.display(), e))?;
            }
            let opts_changed = write_if_changed(&self.file(&d.bridge, "opts"), &dnsmasq_opts(d))?;
            let hosts_dir = self.file(&d.bridge, "hosts.d");
            std::fs::create_dir_all(&hosts_dir).map_err(|e| io_err(hosts_dir.display(), e))?;
            let want = dnsmasq_host_files(d);
            let mut need_hup = opts_changed;
            let present: BTreeSet<String> = std::fs::read_dir(&hosts_dir)
                .map_err(|e| io_err(hosts_dir.display(), e))?
                .filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|n| n.ends_with(".host"))
                .collect();
            for name in present.iter().filter(|n| !want.contains_key(*n)) {
                let _ = std::fs::remove_file(hosts_dir.join(name));
                self.stale.insert((d.bridge.clone(), name.clone()));
                report.hosts_removed += 1;
            }
            for (name, content) in &want {
                let existed = present.contains(name);
                if write_if_changed(&hosts_dir.join(name), content)? {
                    report.hosts_written += 1;
                    // dnsmasq only adds records from the directory: a changed file, or an
                    // address whose old record lingers, needs a full re-read.
                    if existed || self.stale.contains(&(d.bridge.clone(), name.clone())) {
                        need_hup = true;
                    }
                }
            }
            let args = dnsmasq_args(d, &self.dir, &hook);
            match self.running(&d.bridge, &args) {
                Some(pid) => {
                    if need_hup {
                        signal(pid, "HUP")?;
                        self.stale.retain(|(b, _)| *b != d.bridge);
                        report.reloaded.push(d.bridge.clone());
                    }
                }
                None => {
                    if let Some(old) = self.any_running(&d.bridge) {
                        signal(old, "TERM")?;
                        wait_gone(old);
                    }
                    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
                    run("dnsmasq", &argv, None)?;
                    self.stale.retain(|(b, _)| *b != d.bridge);
                    report.started.push(d.bridge.clone());
                }
            }
        }
        // Stop the servers of networks this host no longer serves.
        let wanted: BTreeSet<&str> = plans.iter().map(|d| d.bridge.as_str()).collect();
        let entries = std::fs::read_dir(&self.dir).map_err(|e| io_err(self.dir.display(), e))?;
        for e in entries.filter_map(|e| e.ok()) {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(bridge) = name
                .strip_prefix("nova-")
                .and_then(|n| n.strip_suffix(".pid"))
            else {
                continue;
            };
            if wanted.contains(bridge) {
                continue;
            }
            let bridge = bridge.to_string();
            if let Some(pid) = self.any_running(&bridge) {
                signal(pid, "TERM")?;
                wait_gone(pid);
            }
            for kind in ["pid", "opts", "hook"] {
                let _ = std::fs::remove_file(self.file(&bridge, kind));
            }
            let _ = std::fs::remove_dir_all(self.file(&bridge, "hosts.d"));
            report.stopped.push(bridge);
        }
        Ok(report)
    }

    /// Ends leases of deleted instances (`force_dhcp_release`); each one once.
    pub fn release(&mut self, releases: &[DhcpRelease]) -> Vec<String> {
        let mut errors = Vec::new();
        let want: BTreeSet<(String, String)> = releases
            .iter()
            .map(|r| (r.address.clone(), r.mac.clone()))
            .collect();
        self.released.retain(|k| want.contains(k));
        for r in releases {
            let key = (r.address.clone(), r.mac.clone());
            if self.released.contains(&key) {
                continue;
            }
            if let Err(e) = run("dhcp_release", &[&r.bridge, &r.address, &r.mac], None) {
                errors.push(e.to_string());
            }
            self.released.insert(key);
        }
        errors
    }

    /// PIDs of the dnsmasq servers this manager runs, by bridge.
    pub fn pids(&self, plans: &[DhcpPlan]) -> BTreeMap<String, u32> {
        plans
            .iter()
            .filter_map(|d| self.any_running(&d.bridge).map(|p| (d.bridge.clone(), p)))
            .collect()
    }
}

fn wait_gone(pid: u32) {
    for _ in 0..100 {
        if cmdline(pid).is_none() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let _ = signal(pid, "KILL");
}
