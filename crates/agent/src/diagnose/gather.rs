//! The edge of `diagnose`: reads what the checks look at from the kernel, `/proc` and the
//! agent's state directory. Writes only the fix scripts, under the state directory.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use novanet_core::config::FirewallDriver;
use novanet_core::plan::HostPlan;

use super::{nft, rp_filter_interfaces, Facts, LastApply, Process};
use crate::sys::{io_err, run, write_if_changed, Result};

const PLAN_FILE: &str = "plan.json";
const LAST_APPLY_FILE: &str = "last-apply.json";

/// Keeps the plan the agent holds, for `novanet diagnose` on this host.
pub fn save_plan(state_dir: &Path, plan: &HostPlan) -> Result<()> {
    let text = serde_json::to_string(plan).expect("serializable");
    write_if_changed(&state_dir.join(PLAN_FILE), &text).map(|_| ())
}

pub fn load_plan(state_dir: &Path) -> Result<HostPlan> {
    let p = state_dir.join(PLAN_FILE);
    let text = std::fs::read_to_string(&p).map_err(|e| {
        io_err(
            format!(
                "{} (the agent writes its plan there once it has one; is --state-dir the agent's?)",
                p.display()
            ),
            e,
        )
    })?;
    let v: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| crate::AgentError::Io(format!("{}: {e}", p.display())))?;
    // The values reach commands (fixes): checked as the agent checks what it applies.
    crate::parse_plan(v).map(|(plan, _)| plan)
}

pub fn save_last_apply(state_dir: &Path, a: &LastApply) -> Result<()> {
    let text = serde_json::to_string(a).expect("serializable");
    write_if_changed(&state_dir.join(LAST_APPLY_FILE), &text).map(|_| ())
}

pub fn load_last_apply(state_dir: &Path) -> Option<LastApply> {
    let text = std::fs::read_to_string(state_dir.join(LAST_APPLY_FILE)).ok()?;
    serde_json::from_str(&text).ok()
}

fn sysctl(path: &str) -> Option<String> {
    std::fs::read_to_string(format!("/proc/sys/{path}"))
        .ok()
        .map(|v| v.trim().to_string())
}

/// The processes of program `name` (dnsmasq, radvd) in this network namespace (the PID
/// space may be shared with other namespaces' hosts, as in the lab).
fn processes_named(name: &str) -> Vec<Process> {
    let own_ns = std::fs::read_link("/proc/self/ns/net").ok();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in entries.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        let Some(args) = crate::sys::cmdline(pid) else {
            continue;
        };
        let is_it = args
            .first()
            .is_some_and(|a| Path::new(a).file_name().is_some_and(|n| n == name));
        if !is_it || std::fs::read_link(format!("/proc/{pid}/ns/net")).ok() != own_ns {
            continue;
        }
        let ppid = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| {
                s.rsplit(')')
                    .next()?
                    .split_whitespace()
                    .nth(1)?
                    .parse()
                    .ok()
            })
            .unwrap_or(0);
        out.push(Process { pid, ppid, args });
    }
    out.sort_by_key(|p| p.pid);
    out
}

fn hosts_lines(networks: &Path, bridge: &str) -> Vec<String> {
    let mut lines: Vec<String> =
        std::fs::read_to_string(networks.join(format!("nova-{bridge}.conf")))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect();
    if let Ok(dir) = std::fs::read_dir(networks.join(format!("nova-{bridge}.hosts.d"))) {
        for e in dir.flatten() {
            if e.file_name().to_string_lossy().ends_with(".host") {
                let text = std::fs::read_to_string(e.path()).unwrap_or_default();
                lines.extend(text.lines().map(str::to_string));
            }
        }
    }
    lines
}

/// An HTTP answer from the metadata service (any status: it answers).
fn http_answers(target: &str) -> std::result::Result<(), String> {
    let addr: SocketAddr = target.parse().map_err(|e| format!("{target}: {e}"))?;
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
        .map_err(|e| format!("cannot connect to {target}: {e}"))?;
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    s.write_all(b"GET / HTTP/1.0\r\n\r\n")
        .map_err(|e| format!("{target}: {e}"))?;
    let mut head = [0u8; 5];
    s.read_exact(&mut head)
        .map_err(|e| format!("{target} accepted but did not answer: {e}"))?;
    if &head == b"HTTP/" {
        Ok(())
    } else {
        Err(format!("{target} answered something other than HTTP"))
    }
}

/// The script that makes the kernel's NAT table the rendered one, and the kernel's own
/// spelling of that table (loaded in a private network namespace with `nft -e`).
fn nat_expected(plan: &HostPlan, dir: &Path) -> Result<(PathBuf, nft::TableContent)> {
    let script = crate::firewall::nft_nat_script(plan);
    let path = dir.join("fix-nat.nft");
    write_if_changed(&path, &script)?;
    let path_text = path.display().to_string();
    let echo = run("unshare", &["--net", "nft", "-e", "-f", &path_text], None)?;
    Ok((
        path,
        nft::parse_echo(&echo, "ip", crate::firewall::NFT_NAT_TABLE),
    ))
}

/// Reads every fact the checks of `plan` need. `state_dir` is the agent's.
pub fn gather(plan: &HostPlan, state_dir: &Path) -> Facts {
    let mut f = Facts::default();
    let mut paths = vec![
        "net/ipv4/ip_forward".to_string(),
        "net/ipv6/conf/all/forwarding".into(),
        "net/ipv4/conf/all/rp_filter".into(),
        "net/bridge/bridge-nf-call-iptables".into(),
    ];
    paths.extend(
        rp_filter_interfaces(plan)
            .iter()
            .map(|i| format!("net/ipv4/conf/{i}/rp_filter")),
    );
    for p in paths {
        if let Some(v) = sysctl(&p) {
            f.sysctls.insert(p, v);
        }
    }
    match crate::links::read_links() {
        Ok(l) => f.links = l,
        Err(e) => f.unknown.push(("links".into(), e.to_string())),
    }
    let networks = state_dir.join("networks");
    if !plan.dhcp.is_empty() {
        f.dnsmasq = processes_named("dnsmasq");
    }
    if !plan.ra.is_empty() {
        f.radvd = processes_named("radvd");
        let dir = state_dir.join("ra");
        for r in &plan.ra {
            f.radvd_args
                .insert(r.bridge.to_string(), crate::ra::radvd_args(r, &dir));
        }
    }
    for d in &plan.dhcp {
        let hook = networks.join(format!("nova-{}.hook", d.bridge));
        f.dnsmasq_args.insert(
            d.bridge.to_string(),
            crate::dhcp::dnsmasq_args(d, &networks, &hook),
        );
        f.hosts_lines
            .insert(d.bridge.to_string(), hosts_lines(&networks, &d.bridge));
    }
    let fix_dir = state_dir.join("diagnose");
    if let Err(e) = std::fs::create_dir_all(&fix_dir) {
        f.unknown.push((
            "state directory".into(),
            format!("{}: {e}", fix_dir.display()),
        ));
    }
    match plan.firewall_driver {
        FirewallDriver::Iptables | FirewallDriver::Noop => {
            match run("iptables-save", &[], None) {
                Ok(t) => f.iptables_save = Some(t),
                Err(e) => f.unknown.push(("iptables rules".into(), e.to_string())),
            }
            let saved = f.iptables_save.as_deref().unwrap_or("");
            let text = crate::firewall::iptables_fix_script(plan, saved);
            let path = fix_dir.join("fix-iptables.rules");
            if let Err(e) = write_if_changed(&path, &text) {
                f.unknown.push(("fix script".into(), e.to_string()));
            }
            f.iptables_fix_file = path.display().to_string();
        }
        FirewallDriver::Nftables => {
            match run(
                "nft",
                &["list", "table", "ip", crate::firewall::NFT_NAT_TABLE],
                None,
            ) {
                Ok(t) => f.nat_live = Some(nft::parse_listing(&t)),
                // No table: every rule of it is missing.
                Err(_) => f.nat_live = Some(nft::TableContent::default()),
            }
            match nat_expected(plan, &fix_dir) {
                Ok((path, want)) => {
                    f.nat_fix_file = path.display().to_string();
                    f.nat_expected = Some(want);
                }
                Err(e) => f.unknown.push(("rendered NAT table".into(), e.to_string())),
            }
        }
    }
    match run("nft", &["-a", "list", "ruleset"], None) {
        Ok(t) => f.ruleset = Some(t),
        Err(e) => f.unknown.push(("nftables ruleset".into(), e.to_string())),
    }
    if let Some(target) = super::metadata_target(plan) {
        f.metadata = Some(http_answers(&target));
    }
    f.last_apply = load_last_apply(state_dir);
    f
}
