//! IPv6 gateways (dual stack): the gateway's v6 address on each served bridge, and one
//! radvd per bridge advertising the network's prefix, from which guests configure their
//! addresses (nova's `update_ra`). Like dnsmasq: its config and PID file under the state
//! dir, restarted when its config changes (nova sent TERM and started a new one), started
//! again when it died, stopped by PID when its network goes.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use novanet_core::plan::{RaPlan, METADATA_ADDRESS_V6};

use crate::links::Link;
use crate::sys::{cmdline, io_err, run, signal, write_if_changed, Result};

pub struct RaManager {
    pub dir: PathBuf,
}

#[derive(Debug, Default)]
pub struct RaReport {
    pub started: Vec<String>,
    pub stopped: Vec<String>,
}

/// nova's radvd config for a network (`nova-ra-<dev>.conf`): advertisements every 3 to 10
/// seconds, the prefix on-link and for autonomous configuration.
pub fn radvd_conf(r: &RaPlan) -> String {
    format!(
        "interface {}\n{{\n   AdvSendAdvert on;\n   MinRtrAdvInterval 3;\n   MaxRtrAdvInterval 10;\n   prefix {}\n   {{\n        AdvOnLink on;\n        AdvAutonomous on;\n   }};\n}};\n",
        r.bridge, r.prefix
    )
}

/// radvd's argv: its config and PID file in `dir`, its log beside them.
pub fn radvd_args(r: &RaPlan, dir: &Path) -> Vec<String> {
    let f = |kind: &str| {
        dir.join(format!("nova-ra-{}.{kind}", r.bridge))
            .display()
            .to_string()
    };
    vec![
        "-C".into(),
        f("conf"),
        "-p".into(),
        f("pid"),
        "-m".into(),
        "logfile".into(),
        "-l".into(),
        f("log"),
    ]
}

/// The `ip -batch` lines that put each gateway's v6 address on its bridge (the prefix's
/// length, as nova's `ip -f inet6 addr change <cidr_v6>`), and the metadata service's
/// `fe80::a9fe:a9fe`, where they are missing. The metadata address skips duplicate address
/// detection: in multi-host every host's bridge has it, and each answers its own instances.
pub fn address_commands(links: &BTreeMap<String, Link>, plans: &[RaPlan]) -> Vec<String> {
    let mut out = Vec::new();
    for r in plans {
        let Some(link) = links.get(r.bridge.as_str()) else {
            continue;
        };
        let has = |addr: &str, len: u8| {
            link.addr_info
                .iter()
                .any(|a| a.family == "inet6" && (a.local.as_str(), a.prefixlen) == (addr, len))
        };
        let len = r.prefix.cidr().prefix();
        if !has(r.gateway.as_str(), len) {
            let nodad = if r.multi_host { " nodad" } else { "" };
            out.push(format!(
                "addr add {}/{len} dev {}{nodad}",
                r.gateway, r.bridge
            ));
        }
        if !has(METADATA_ADDRESS_V6, 64) {
            out.push(format!(
                "addr add {METADATA_ADDRESS_V6}/64 dev {} nodad",
                r.bridge
            ));
        }
    }
    out
}

impl RaManager {
    pub fn new(dir: &Path) -> RaManager {
        RaManager {
            dir: dir.to_path_buf(),
        }
    }

    fn file(&self, bridge: &str, kind: &str) -> PathBuf {
        self.dir.join(format!("nova-ra-{bridge}.{kind}"))
    }

    /// The PID in a bridge's PID file if that process is a radvd with this bridge's config.
    fn running(&self, bridge: &str) -> Option<u32> {
        let pid: u32 = std::fs::read_to_string(self.file(bridge, "pid"))
            .ok()?
            .trim()
            .parse()
            .ok()?;
        let conf = self.file(bridge, "conf").display().to_string();
        cmdline(pid)?.contains(&conf).then_some(pid)
    }

    fn stop(&self, bridge: &str) -> Result<()> {
        if let Some(pid) = self.running(bridge) {
            signal(pid, "TERM")?;
            for _ in 0..100 {
                if cmdline(pid).is_none() {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            if cmdline(pid).is_some() {
                signal(pid, "KILL")?;
            }
        }
        // radvd refuses to start over a PID file it did not remove.
        let _ = std::fs::remove_file(self.file(bridge, "pid"));
        Ok(())
    }

    /// Runs one radvd per planned bridge with its current config; stops the others this
    /// agent started (their files are in the directory).
    pub fn apply(&mut self, plans: &[RaPlan]) -> Result<RaReport> {
        let mut report = RaReport::default();
        std::fs::create_dir_all(&self.dir).map_err(|e| io_err(self.dir.display(), e))?;
        for r in plans {
            let changed = write_if_changed(&self.file(&r.bridge, "conf"), &radvd_conf(r))?;
            let running = self.running(&r.bridge);
            if running.is_some() && !changed {
                continue;
            }
            self.stop(&r.bridge)?;
            let args = radvd_args(r, &self.dir);
            let argv: Vec<&str> = args.iter().map(String::as_str).collect();
            run("radvd", &argv, None)?;
            // The daemon writes its PID file after the parent returns: wait for it, or the
            // next pass would start a second one.
            for _ in 0..50 {
                if self.running(&r.bridge).is_some() {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            report.started.push(r.bridge.to_string());
        }
        let wanted: BTreeSet<&str> = plans.iter().map(|r| r.bridge.as_str()).collect();
        let entries = std::fs::read_dir(&self.dir).map_err(|e| io_err(self.dir.display(), e))?;
        for e in entries.filter_map(|e| e.ok()) {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(bridge) = name
                .strip_prefix("nova-ra-")
                .and_then(|n| n.strip_suffix(".conf"))
            else {
                continue;
            };
            if wanted.contains(bridge) {
                continue;
            }
            let bridge = bridge.to_string();
            self.stop(&bridge)?;
            for kind in ["conf", "log"] {
                let _ = std::fs::remove_file(self.file(&bridge, kind));
            }
            report.stopped.push(bridge);
        }
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::links::AddrInfo;

    fn plan() -> RaPlan {
        RaPlan {
            network_uuid: "u".into(),
            bridge: "br100".parse().unwrap(),
            prefix: "fd00:1::/64".parse().unwrap(),
            gateway: "fd00:1::1".parse().unwrap(),
            multi_host: false,
        }
    }

    /// nova's template (linux_net.update_ra), exactly.
    #[test]
    fn radvd_conf_is_novas() {
        assert_eq!(
            radvd_conf(&plan()),
            "interface br100
{
   AdvSendAdvert on;
   MinRtrAdvInterval 3;
   MaxRtrAdvInterval 10;
   prefix fd00:1::/64
   {
        AdvOnLink on;
        AdvAutonomous on;
   };
};
"
        );
        assert_eq!(
            radvd_args(&plan(), Path::new("/s/networks")).join(" "),
            "-C /s/networks/nova-ra-br100.conf -p /s/networks/nova-ra-br100.pid -m logfile -l /s/networks/nova-ra-br100.log"
        );
    }

    #[test]
    fn gateway_address_added_once() {
        let mut links = BTreeMap::new();
        links.insert(
            "br100".to_string(),
            Link {
                ifname: "br100".into(),
                ..Link::default()
            },
        );
        assert_eq!(
            address_commands(&links, &[plan()]),
            [
                "addr add fd00:1::1/64 dev br100",
                "addr add fe80::a9fe:a9fe/64 dev br100 nodad"
            ]
        );
        for (local, scope) in [("fd00:1::1", "global"), ("fe80::a9fe:a9fe", "link")] {
            links.get_mut("br100").unwrap().addr_info.push(AddrInfo {
                family: "inet6".into(),
                local: local.into(),
                prefixlen: 64,
                broadcast: None,
                scope: Some(scope.into()),
            });
        }
        assert!(address_commands(&links, &[plan()]).is_empty());
        // In multi-host every host has the gateway: no duplicate address detection.
        let mut multi = plan();
        multi.multi_host = true;
        links.get_mut("br100").unwrap().addr_info.clear();
        assert_eq!(
            address_commands(&links, &[multi])[0],
            "addr add fd00:1::1/64 dev br100 nodad"
        );
        // No bridge yet: nothing (the next pass adds it once the bridge exists).
        assert!(address_commands(&BTreeMap::new(), &[plan()]).is_empty());
    }
}
