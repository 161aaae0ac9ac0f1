//! What every lab test file shares: a lab brought up in namespaces and ended when dropped,
//! commands in its nodes, and probes. Each test file uses only part of it.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use novanet_store::SqliteStore;

pub const BIN: &str = env!("CARGO_BIN_EXE_novanet");

pub struct Lab {
    pub prefix: String,
    pub dir: PathBuf,
}

pub fn can_run() -> bool {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout == b"0\n")
        .unwrap_or(false);
    let tools = ["dnsmasq", "busybox", "iptables-restore", "dhcp_release"]
        .iter()
        .all(|t| {
            Command::new("sh")
                .args(["-c", &format!("command -v {t}")])
                .output()
                .is_ok_and(|o| o.status.success())
        });
    if !root || !tools {
        eprintln!("skipping the lab test: it needs root and dnsmasq, busybox, iptables, dhcp_release (scripts/setup.sh)");
    }
    root && tools
}

impl Lab {
    pub fn up(name: &str, extra_config: &[&str]) -> Option<Lab> {
        let args: Vec<&str> = extra_config.iter().flat_map(|c| ["--config", c]).collect();
        Lab::up_with(name, &args)
    }

    /// A lab built with `lab up ARGS` (no tutorial network or instance with `--bare`).
    pub fn up_with(name: &str, args: &[&str]) -> Option<Lab> {
        if !can_run() {
            return None;
        }
        let id = std::process::id() % 100_000;
        let lab = Lab {
            prefix: format!("nt{name}{id}"),
            dir: PathBuf::from(format!("/tmp/novanet-test-{name}-{id}")),
        };
        let mut full = vec!["up".to_string()];
        full.extend(lab.opts());
        full.extend(args.iter().map(|s| s.to_string()));
        let out = lab.lab(&full.iter().map(String::as_str).collect::<Vec<_>>());
        assert!(
            out.status.success(),
            "lab up failed: {}\n{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        println!("{}", text(&out.stdout));
        Some(lab)
    }

    pub fn opts(&self) -> Vec<String> {
        vec![
            "--prefix".into(),
            self.prefix.clone(),
            "--dir".into(),
            self.dir.display().to_string(),
        ]
    }

    pub fn lab(&self, args: &[&str]) -> Output {
        let mut full: Vec<String> = vec!["lab".into(), args[0].into()];
        if args[0] != "up" {
            full.extend(self.opts());
        }
        full.extend(args[1..].iter().map(|s| s.to_string()));
        Command::new(BIN)
            .args(&full)
            .output()
            .expect("run novanet lab")
    }

    pub fn exec(&self, node: &str, cmd: &[&str]) -> Output {
        let opts = self.opts();
        let mut full: Vec<&str> = vec!["lab", "exec"];
        full.extend(opts.iter().map(String::as_str));
        full.push(node);
        full.push("--");
        full.extend(cmd);
        Command::new(BIN)
            .args(&full)
            .output()
            .expect("run novanet lab exec")
    }

    pub fn ok(&self, node: &str, cmd: &[&str]) -> String {
        let out = self.exec(node, cmd);
        assert!(
            out.status.success(),
            "{node}$ {} failed: {}{}",
            cmd.join(" "),
            text(&out.stdout),
            text(&out.stderr)
        );
        text(&out.stdout)
    }

    pub fn succeeds(&self, node: &str, cmd: &[&str]) -> bool {
        self.exec(node, cmd).status.success()
    }

    pub fn novanet(&self, args: &[&str]) -> String {
        let mut cmd = vec!["novanet"];
        cmd.extend(args);
        self.ok("controller", &cmd)
    }

    pub fn store(&self) -> SqliteStore {
        SqliteStore::open_dir(&self.dir.join("server")).expect("lab store")
    }

    pub fn file(&self, rel: &str) -> String {
        std::fs::read_to_string(self.dir.join(rel)).unwrap_or_default()
    }

    pub fn dnsmasq_pid(&self) -> Option<u32> {
        self.file("agent-controller/networks/nova-br100.pid")
            .trim()
            .parse()
            .ok()
    }

    /// The controller's DHCP host lines for br100: nova's hosts file and the ones added
    /// since dnsmasq last read it.
    pub fn dhcp_hosts(&self) -> String {
        let dir = self.dir.join("agent-controller/networks");
        let mut out = std::fs::read_to_string(dir.join("nova-br100.conf")).unwrap_or_default();
        for e in std::fs::read_dir(dir.join("nova-br100.hosts.d"))
            .into_iter()
            .flatten()
            .flatten()
        {
            out.push_str(&std::fs::read_to_string(e.path()).unwrap_or_default());
        }
        out
    }

    pub fn iptables(&self, node: &str) -> String {
        // With counters: a rule replaced by a re-apply would show fresh ones.
        self.ok(node, &["iptables-save", "-c"])
            .lines()
            .filter(|l| l.contains("novanet"))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let out = self.lab(&["down"]);
        if !out.status.success() {
            eprintln!("lab down: {}", text(&out.stderr));
        }
    }
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

pub fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?}: {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub fn curl(lab: &Lab, node: &str, url: &str) -> Option<String> {
    let out = lab.exec(node, &["curl", "-s", "-m", "2", url]);
    out.status
        .success()
        .then(|| text(&out.stdout).trim().to_string())
}

pub fn tcp_open(lab: &Lab, from: &str, addr: &str, port: u16) -> bool {
    curl(lab, from, &format!("http://{addr}:{port}/")).is_some()
}

pub fn wait_state(lab: &Lab, what: &str, want: bool, mut probe: impl FnMut(&Lab) -> bool) {
    wait_until(what, Duration::from_secs(10), || probe(lab) == want);
}

impl Lab {
    /// `novanet ARGS` as a member of `project` (user `u-PROJECT`, password `pw`).
    pub fn as_member(&self, project: &str, args: &[&str]) -> Output {
        let user = format!("OS_USERNAME=u-{project}");
        let proj = format!("OS_PROJECT_NAME={project}");
        let mut cmd = vec!["env", &user, "OS_PASSWORD=pw", &proj, "novanet"];
        cmd.extend(args);
        self.exec("controller", &cmd)
    }

    /// The PIDs the lab recorded for `what` (`server`, `udhcpc-VM`, ...), in its state file.
    pub fn pids(&self, what: &str) -> Vec<u64> {
        let state: serde_json::Value =
            serde_json::from_str(&self.file("lab.json")).expect("the lab's state");
        state["pids"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| p[0] == what)
            .filter_map(|p| p[1].as_u64())
            .collect()
    }

    pub fn lease_of(&self, vm: &str) -> Option<String> {
        let l = self.file(&format!("vm-{vm}.lease"));
        l.split_whitespace()
            .find_map(|f| f.strip_prefix("ip="))
            .map(str::to_string)
    }

    pub fn link_exists(&self, node: &str, link: &str) -> bool {
        self.succeeds(node, &["ip", "link", "show", link])
    }
}

/// What one probe from a VM to another's address found.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Reach {
    pub icmp: bool,
    pub tcp: bool,
    pub arp: bool,
}

/// Probes every ordered pair of VMs at once (a failed probe waits out its timeout).
pub fn reach_matrix(lab: &Lab, vms: &[(&str, String)]) -> Vec<((String, String), Reach)> {
    let pairs: Vec<(&str, &str, &str)> = vms
        .iter()
        .flat_map(|(a, _)| {
            vms.iter()
                .filter(move |(b, _)| b != a)
                .map(move |(b, ip)| (*a, *b, ip.as_str()))
        })
        .collect();
    std::thread::scope(|s| {
        let handles: Vec<_> = pairs
            .iter()
            .map(|(a, b, ip)| {
                s.spawn(move || {
                    let icmp = lab.succeeds(a, &["ping", "-c", "1", "-W", "1", ip]);
                    let tcp = curl(lab, a, &format!("http://{ip}:8080/")).is_some();
                    let arp = lab.succeeds(a, &["arping", "-c", "1", "-w", "1", "-I", "eth0", ip]);
                    ((a.to_string(), b.to_string()), Reach { icmp, tcp, arp })
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

pub fn project_of(vm: &str) -> char {
    vm.chars().next().unwrap()
}

/// `secs`, or four times as long in the guest lab (qemu without KVM is slow).
pub fn patience(secs: u64) -> Duration {
    let factor = if std::env::var_os("NOVANET_IN_GUEST").is_some() {
        4
    } else {
        1
    };
    Duration::from_secs(secs * factor)
}

impl Lab {
    /// Boots `name` (cirros, flavor 1) on `host` and waits for its VM's lease of `address`
    /// (the lab's hypervisor starts the VM by itself, as nova-compute would).
    pub fn boot_on(&self, name: &str, host: &str, address: &str) {
        self.boot_at(name, host);
        let (lease, want) = (format!("vm-{name}.lease"), format!("ip={address} "));
        wait_until(&format!("{name}'s lease"), Duration::from_secs(20), || {
            self.file(&lease).contains(&want)
        });
    }

    /// Boots `name` (cirros, flavor 1) on `host`.
    pub fn boot_at(&self, name: &str, host: &str) {
        let zone = format!("nova:{host}");
        self.novanet(&[
            "boot",
            "--image",
            "cirros",
            "--flavor",
            "1",
            "--availability-zone",
            &zone,
            name,
        ]);
    }

    /// Opens a port (icmp: "-1") of the admin project's default group to everyone, as the
    /// seed does for ping and SSH.
    pub fn open_port(&self, proto: &str, port: &str) {
        self.novanet(&[
            "secgroup-add-rule",
            "default",
            proto,
            port,
            port,
            "0.0.0.0/0",
        ]);
    }
}
