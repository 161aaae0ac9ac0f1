//! One dnsmasq per network: started with nova's arguments, kept running, fed new hosts
//! without a restart, stopped when its network goes. Its argv, opts and hosts files are
//! rendered here too, by pure functions.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use novanet_core::plan::{DhcpPlan, DhcpRelease, NO_DEFAULT_ROUTE_TAG};

use crate::sys::{cmdline, io_err, run, signal, write_if_changed, Result};

pub struct DhcpManager {
    pub dir: PathBuf,
    pub binary: PathBuf,
    /// Leases released (bridge, address, MAC), kept while still asked for: each once.
    released: BTreeSet<Lease>,
    /// The stale leases (`stale_leases`) the last `apply` found at running servers.
    stale: BTreeSet<Lease>,
}

/// A lease as dhcp_release names it: bridge, address, MAC.
type Lease = (String, String, String);

/// How a network's hosts reach its dnsmasq: a base file (`nova-BR.conf`, nova's hosts file,
/// read at start and on SIGHUP), and a watched directory where each host added since then
/// is one small file that dnsmasq reads at once. dnsmasq never forgets a record it read
/// until it re-reads everything, and refuses a second record for an address. So the two
/// mirror what dnsmasq holds: a removed host stays in them (harmless: its VM is gone) until
/// the next full re-read, and an address that comes back with another line (a new MAC)
/// needs that re-read: the base file rewritten with the wanted hosts, the directory
/// emptied, one SIGHUP. Allocation prefers the address free the longest, so that happens
/// only once a network's pool has cycled.
#[derive(Debug, Default, PartialEq)]
pub struct HostsStep {
    /// Rewrite the base file, empty the directory and make dnsmasq re-read everything.
    pub full: bool,
    /// The base file for a full step.
    pub base: String,
    /// Files to write in the directory (address, line).
    pub add: Vec<(String, String)>,
    /// Lines a full step drops.
    pub dropped: usize,
}

/// Address to line, for `MAC,HOST,IP` lines.
fn by_address(lines: &str) -> BTreeMap<String, String> {
    lines
        .lines()
        .filter_map(|l| Some((l.rsplit(',').next()?.to_string(), l.to_string())))
        .collect()
}

/// Everything into the base file, for a start or a full re-read.
pub fn reread_step(want: &BTreeMap<String, String>, given: usize) -> HostsStep {
    HostsStep {
        full: true,
        base: want.values().map(|l| format!("{l}\n")).collect(),
        add: Vec::new(),
        dropped: given.saturating_sub(want.len()),
    }
}

/// The step from what dnsmasq holds (base file and directory, address to line) to the
/// wanted hosts.
pub fn hosts_step(
    want: &BTreeMap<String, String>,
    base: &BTreeMap<String, String>,
    dir: &BTreeMap<String, String>,
) -> HostsStep {
    let given = |ip: &String| dir.get(ip).or_else(|| base.get(ip));
    if want
        .iter()
        .any(|(ip, line)| given(ip).is_some_and(|l| l != line))
    {
        let held: BTreeSet<&String> = base.keys().chain(dir.keys()).collect();
        return reread_step(want, held.len());
    }
    HostsStep {
        add: want
            .iter()
            .filter(|(ip, _)| given(ip).is_none())
            .map(|(ip, l)| (ip.clone(), l.clone()))
            .collect(),
        ..HostsStep::default()
    }
}

/// The leases dnsmasq may hold that no instance of the plan owns, as (address, MAC): every
/// address its records (base file and directory) give to a MAC the plan does not give it
/// to (the address left the plan, or went to another VIF). dnsmasq keeps a removed record
/// and its lease, and refuses an address while another MAC holds a lease on it, so such a
/// lease is ended at once: an instance deleted on a multi-host network (whose release no
/// server plan can carry), a release lost while the agent was down, an address freed by the
/// disassociate timeout.
pub fn stale_leases(
    want: &BTreeMap<String, String>,
    base: &BTreeMap<String, String>,
    dir: &BTreeMap<String, String>,
) -> Vec<(String, String)> {
    let mac = |line: &str| line.split(',').next().unwrap_or("").to_ascii_lowercase();
    let mut held = base.clone();
    held.extend(dir.iter().map(|(k, v)| (k.clone(), v.clone())));
    held.iter()
        .filter(|(ip, line)| want.get(*ip).is_none_or(|w| mac(w) != mac(line)))
        .map(|(ip, line)| (ip.clone(), mac(line)))
        .collect()
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
            released: BTreeSet::new(),
            stale: BTreeSet::new(),
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
        let mut stale = BTreeSet::new();
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
            let base_path = self.file(&d.bridge, "conf");
            // Present while a full re-read is under way: a crash before the SIGHUP must not
            // leave dnsmasq with records the files no longer show.
            let marker = self.file(&d.bridge, "reread");
            let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
            let mut dir = BTreeMap::new();
            for e in std::fs::read_dir(&hosts_dir).map_err(|e| io_err(hosts_dir.display(), e))? {
                let e = e.map_err(|e| io_err(hosts_dir.display(), e))?;
                let name = e.file_name().to_string_lossy().into_owned();
                if let Some(ip) = name.strip_suffix(".host") {
                    dir.insert(ip.to_string(), read(&e.path()).trim_end().to_string());
                }
            }
            let base = by_address(&read(&base_path));
            let args = dnsmasq_args(d, &self.dir, &hook);
            let running = self.running(&d.bridge, &args);
            let want = by_address(&dnsmasq_hosts(d));
            // An address taken from a running instance must leave dnsmasq's records, or its
            // guest keeps renewing it: that takes a re-read.
            let revoked_held = d.revoked.iter().any(|a| {
                !want.contains_key(a.as_str())
                    && (base.contains_key(a.as_str()) || dir.contains_key(a.as_str()))
            });
            let step = if running.is_none() || opts_changed || marker.exists() || revoked_held {
                // A start or a SIGHUP reads everything anyway: do it from the base file.
                let held: BTreeSet<&String> = base.keys().chain(dir.keys()).collect();
                reread_step(&want, held.len())
            } else {
                hosts_step(&want, &base, &dir)
            };
            // Read before a re-read rewrites the files; `release` ends them. A server started
            // now has only the plan's leases.
            if running.is_some() {
                stale.extend(
                    stale_leases(&want, &base, &dir)
                        .into_iter()
                        .map(|(ip, mac)| (d.bridge.to_string(), ip, mac)),
                );
            }
            report.hosts_written += step.add.len();
            report.hosts_removed += step.dropped;
            for (ip, line) in &step.add {
                write_if_changed(&hosts_dir.join(format!("{ip}.host")), &format!("{line}\n"))?;
            }
            if step.full {
                std::fs::write(&marker, "").map_err(|e| io_err(marker.display(), e))?;
                write_if_changed(&base_path, &step.base)?;
                for ip in dir.keys() {
                    let _ = std::fs::remove_file(hosts_dir.join(format!("{ip}.host")));
                }
            }
            match running {
                Some(pid) => {
                    if step.full {
                        signal(pid, "HUP")?;
                        report.reloaded.push(d.bridge.to_string());
                    }
                }
                None => {
                    if let Some(old) = self.any_running(&d.bridge) {
                        signal(old, "TERM")?;
                        wait_gone(old);
                    }
                    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
                    run("dnsmasq", &argv, None)?;
                    report.started.push(d.bridge.to_string());
                }
            }
            if step.full {
                let _ = std::fs::remove_file(&marker);
            }
        }
        self.stale = stale;
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
            for kind in ["pid", "opts", "hook", "conf", "reread"] {
                let _ = std::fs::remove_file(self.file(&bridge, kind));
            }
            let _ = std::fs::remove_dir_all(self.file(&bridge, "hosts.d"));
            report.stopped.push(bridge);
        }
        Ok(report)
    }

    /// Ends the plan's leases of deleted instances (`force_dhcp_release`) and the stale
    /// leases the last `apply` found, each once while it is still asked for. The errors are
    /// the plan's releases' (a failed stale release leaves its lease to expire), and how
    /// many stale leases were ended.
    pub fn release(&mut self, releases: &[DhcpRelease]) -> (Vec<String>, usize) {
        let planned: BTreeSet<Lease> = releases
            .iter()
            .map(|r| {
                (
                    r.bridge.to_string(),
                    r.address.to_string(),
                    r.mac.to_string(),
                )
            })
            .collect();
        let stale = &self.stale;
        self.released
            .retain(|k| planned.contains(k) || stale.contains(k));
        let (mut errors, mut ended) = (Vec::new(), 0);
        for k in planned.iter().chain(stale.difference(&planned)) {
            if !self.released.insert(k.clone()) {
                continue;
            }
            let (bridge, address, mac) = k;
            match run("dhcp_release", &[bridge, address, mac], None) {
                Err(e) if planned.contains(k) => errors.push(e.to_string()),
                Err(e) => tracing::warn!(%address, %mac, "{e}"),
                Ok(_) if !planned.contains(k) => ended += 1,
                Ok(_) => {}
            }
        }
        (errors, ended)
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

/// dnsmasq's argv for a network: nova's arguments (linux_net.py), with a watched hosts
/// directory beside nova's hosts file, so that a new instance costs one small file, not a
/// reload (see `dhcp::hosts_step`).
pub fn dnsmasq_args(d: &DhcpPlan, dir: &Path, hook: &Path) -> Vec<String> {
    let f = |kind: &str| {
        dir.join(format!("nova-{}.{kind}", d.bridge))
            .display()
            .to_string()
    };
    let mut a = vec![
        "--strict-order".to_string(),
        "--bind-interfaces".into(),
        format!("--conf-file={}", d.conf_file),
        format!("--pid-file={}", f("pid")),
        format!("--dhcp-optsfile={}", f("opts")),
        format!("--listen-address={}", d.listen_address),
        "--except-interface=lo".into(),
        // Not in nova's list: with one `--interface` dnsmasq binds its DHCP socket to the
        // bridge. Without it every dnsmasq of the host shares port 67 by SO_REUSEPORT, and a
        // unicast packet (a guest's renewal, dhcp_release's DHCPRELEASE) reaches one of them
        // at random: with two networks on a host, half the releases were lost.
        format!("--interface={}", d.bridge),
        format!(
            "--dhcp-range=set:{},{},static,{},{}s",
            d.label, d.dhcp_start, d.netmask, d.lease_time
        ),
        format!("--dhcp-lease-max={}", d.lease_max),
        format!("--dhcp-hostsfile={}", f("conf")),
        format!("--dhcp-hostsdir={}", f("hosts.d")),
        format!("--dhcp-script={}", hook.display()),
        "--no-hosts".into(),
        "--leasefile-ro".into(),
    ];
    if !d.domain.is_empty() {
        a.push(format!("--domain={}", d.domain));
    }
    if !d.dns_servers.is_empty() {
        a.push("--no-resolv".into());
        for s in &d.dns_servers {
            a.push(format!("--server={s}"));
        }
    }
    a
}

/// The opts file: the default route for every host but those tagged as an instance's other
/// VIFs, which get an empty router option (nova's `use_single_default_gateway`), plus the
/// MTU when the network has one. The file does not depend on the hosts, so a host added
/// through the watched directory needs no reload.
pub fn dnsmasq_opts(d: &DhcpPlan) -> String {
    let mut s = format!(
        "tag:!{NO_DEFAULT_ROUTE_TAG},3,{}\ntag:{NO_DEFAULT_ROUTE_TAG},3\n",
        d.gateway
    );
    if let Some(mtu) = d.mtu {
        s.push_str(&format!("26,{mtu}\n"));
    }
    s
}

/// nova's hosts file: one `MAC,HOSTNAME.DOMAIN,IP` line per host.
pub fn dnsmasq_hosts(d: &DhcpPlan) -> String {
    d.hosts
        .iter()
        .map(|h| format!("{}\n", h.line(&d.domain)))
        .collect()
}

/// What `dhcp-script init` prints with `--leasefile-ro`: the leases the server knows of
/// (`expiry mac ip hostname clientid`), as nova-dhcpbridge did.
pub fn lease_lines(d: &DhcpPlan, now: i64) -> String {
    d.hosts
        .iter()
        .filter(|h| h.leased)
        .map(|h| {
            format!(
                "{} {} {} {} *\n",
                now + i64::from(d.lease_time),
                h.mac,
                h.address,
                h.hostname
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use novanet_core::plan::DhcpHost;

    fn hosts(lines: &[&str]) -> BTreeMap<String, String> {
        by_address(&lines.join("\n"))
    }

    const A: &str = "fa:16:3e:00:00:0a,a.novalocal,10.0.0.2";
    const B: &str = "fa:16:3e:00:00:0b,b.novalocal,10.0.0.3";
    const C: &str = "fa:16:3e:00:00:0c,c.novalocal,10.0.0.4";
    const C2: &str = "fa:16:3e:00:00:cc,c2.novalocal,10.0.0.4";

    #[test]
    fn an_add_is_one_file() {
        let s = hosts_step(&hosts(&[A, B]), &hosts(&[A]), &BTreeMap::new());
        assert!(!s.full);
        assert_eq!(s.add, [("10.0.0.3".to_string(), B.to_string())]);
    }

    #[test]
    fn a_removal_changes_nothing_and_a_reuse_rereads() {
        // B and C are gone: their records stay where dnsmasq read them.
        let s = hosts_step(&hosts(&[A]), &hosts(&[A, B]), &hosts(&[C]));
        assert_eq!(s, HostsStep::default());
        // C's address comes back for another MAC: everything is re-read, from the base file.
        let s = hosts_step(&hosts(&[A, C2]), &hosts(&[A, B]), &hosts(&[C]));
        assert!(s.full);
        assert_eq!(s.base, format!("{A}\n{C2}\n"));
        assert_eq!(s.dropped, 1);
        // The same host back (same MAC) needs nothing: dnsmasq still has its record.
        let s = hosts_step(&hosts(&[A, C]), &hosts(&[A, B]), &hosts(&[C]));
        assert_eq!(s, HostsStep::default());
    }

    #[test]
    fn stale_leases_are_those_no_planned_vif_owns() {
        let want = hosts(&[
            "fa:16:3e:00:00:02,vpn.novalocal,10.0.0.2",
            "fa:16:3e:00:00:03,b.novalocal,10.0.0.3",
        ]);
        let base = hosts(&[
            "FA:16:3E:00:00:01,vpn.novalocal,10.0.0.2",
            "fa:16:3e:00:00:04,gone.novalocal,10.0.0.4",
        ]);
        let dir = hosts(&["fa:16:3e:00:00:03,a.novalocal,10.0.0.3"]);
        // 10.0.0.3 only changed its name: the same VIF keeps its lease.
        assert_eq!(
            stale_leases(&want, &base, &dir),
            vec![
                ("10.0.0.2".to_string(), "fa:16:3e:00:00:01".to_string()),
                ("10.0.0.4".to_string(), "fa:16:3e:00:00:04".to_string()),
            ]
        );
        assert!(stale_leases(&want, &want, &BTreeMap::new()).is_empty());
    }

    #[test]
    fn a_changed_record_rereads() {
        let s = hosts_step(&hosts(&[A, C2]), &hosts(&[A, C]), &BTreeMap::new());
        assert!(s.full);
        assert_eq!(s.base, format!("{A}\n{C2}\n"));
    }

    fn plan() -> DhcpPlan {
        DhcpPlan {
            network_uuid: "u".parse().unwrap(),
            network_id: 1,
            label: "vmnet".parse().unwrap(),
            bridge: "br100".parse().unwrap(),
            listen_address: "10.0.0.1".parse().unwrap(),
            dhcp_start: "10.0.0.2".parse().unwrap(),
            netmask: "255.255.255.0".parse().unwrap(),
            gateway: "10.0.0.1".parse().unwrap(),
            lease_time: 120,
            lease_max: 256,
            domain: "novalocal".parse().unwrap(),
            conf_file: String::new(),
            dns_servers: vec![],
            mtu: None,
            revoked: vec![],
            hosts: vec![
                DhcpHost {
                    mac: "fa:16:3e:2c:e8:ec".parse().unwrap(),
                    hostname: "cirros".parse().unwrap(),
                    address: "10.0.0.2".parse().unwrap(),
                    leased: true,
                    default_route: true,
                },
                DhcpHost {
                    mac: "fa:16:3e:2c:e8:ed".parse().unwrap(),
                    hostname: "multi".parse().unwrap(),
                    address: "10.0.0.3".parse().unwrap(),
                    leased: false,
                    default_route: false,
                },
            ],
        }
    }

    #[test]
    fn dnsmasq_argv_is_novas() {
        let a = dnsmasq_args(
            &plan(),
            Path::new("/var/lib/novanet/networks"),
            Path::new("/usr/bin/novanet-dhcpbridge"),
        );
        assert_eq!(
            a.join(" "),
            "--strict-order --bind-interfaces --conf-file= --pid-file=/var/lib/novanet/networks/nova-br100.pid \
             --dhcp-optsfile=/var/lib/novanet/networks/nova-br100.opts --listen-address=10.0.0.1 --except-interface=lo \
             --interface=br100 --dhcp-range=set:vmnet,10.0.0.2,static,255.255.255.0,120s --dhcp-lease-max=256 \
             --dhcp-hostsfile=/var/lib/novanet/networks/nova-br100.conf \
             --dhcp-hostsdir=/var/lib/novanet/networks/nova-br100.hosts.d --dhcp-script=/usr/bin/novanet-dhcpbridge \
             --no-hosts --leasefile-ro --domain=novalocal"
        );
        // An instance's second VIF is tagged: the opts give it no default route.
        assert_eq!(
            dnsmasq_hosts(&plan()),
            "fa:16:3e:2c:e8:ec,cirros.novalocal,10.0.0.2\nfa:16:3e:2c:e8:ed,set:nogw,multi.novalocal,10.0.0.3\n"
        );
        assert_eq!(dnsmasq_opts(&plan()), "tag:!nogw,3,10.0.0.1\ntag:nogw,3\n");
        assert_eq!(
            lease_lines(&plan(), 1000),
            "1120 fa:16:3e:2c:e8:ec 10.0.0.2 cirros *\n"
        );
    }
}
