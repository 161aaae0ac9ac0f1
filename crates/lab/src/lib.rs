//! `novanet lab`: the seed tutorial's cloud (seed 004) in network namespaces on one machine,
//! with the real server, agents, dnsmasq and DHCP clients. Everything it makes lives in its
//! own namespaces (named `<prefix>-<node>`) and is removed by `lab down`: processes by PID,
//! namespaces by name. The machine's own interfaces, routes and firewall are never touched.

mod libvirtd;
pub mod test_image;
mod vm_exec;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use clap::{Args, Subcommand};
use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Args, Debug, Clone)]
pub struct LabOpts {
    /// Prefix of the lab's namespace names
    #[arg(long, env = "NOVANET_LAB_PREFIX", default_value = "nnlab")]
    pub prefix: String,
    /// Where the lab keeps its state, logs and the server's store
    #[arg(long, env = "NOVANET_LAB_DIR", default_value = "/tmp/novanet-lab")]
    pub dir: PathBuf,
}

#[derive(Subcommand, Debug)]
pub enum LabCmd {
    /// Build the cloud, start server and agents, create vmnet and boot `cirros`
    Up {
        #[command(flatten)]
        opts: LabOpts,
        /// Only build hosts and start services; create no network and boot nothing
        #[arg(long)]
        bare: bool,
        /// Extra nova.conf (TOML) lines for the lab's configuration
        #[arg(long)]
        config: Vec<String>,
        /// The network manager: flatdhcp (the seed tutorial's) or vlan (a VLAN, bridge,
        /// subnet and dnsmasq per project)
        #[arg(long, value_enum, default_value = "flatdhcp")]
        manager: LabManager,
        /// With --manager vlan, how project segments reach the hosts: vlan (802.1Q on eth2,
        /// needs a kernel with VLAN devices) or vxlan (over the management network)
        #[arg(long, value_enum, default_value = "vlan")]
        segment_driver: LabSegments,
        /// What the instances are: namespaces (the lab's stand-in), qemu (real VMs, TCG,
        /// booted from `manage image build-test`'s image by each compute host's agent), or
        /// mixed (the same, but compute-2's agent runs its VMs under libvirt, with a
        /// libvirtd of its own)
        #[arg(long, value_enum, default_value = "namespaces")]
        vms: LabVms,
        /// The store: a PostgreSQL URL (default: the server's SQLite file)
        #[arg(long, value_name = "URL")]
        db: Option<String>,
        /// A second API server on the controller (port 8776) over the same --db; agents and
        /// clients are given both and move to the other when one stops answering
        #[arg(long, requires = "db")]
        two_servers: bool,
        /// vmnet is multi_host: each compute host is its own instances' gateway, DHCP
        /// server, NAT and floating-IP host (seeds 000 and 003)
        #[arg(long)]
        multi_host: bool,
        /// With --multi-host, one gateway and DHCP address shared by every host, kept to
        /// each host by bridge rules (nova's share_dhcp_address)
        #[arg(long, requires = "multi_host")]
        share_address: bool,
        /// Dual stack (seed 000): use_ipv6, networks with IPv6 prefixes from fd00:1::/48,
        /// radvd on the gateway, VMs that autoconfigure their IPv6 addresses
        #[arg(long)]
        ipv6: bool,
    },
    /// Remove everything the lab made
    Down {
        #[command(flatten)]
        opts: LabOpts,
    },
    /// Run a command on a host or in an instance, with admin credentials in the environment
    /// (in a real VM: through its command channel, a serial port on a unix socket on its host)
    Exec {
        #[command(flatten)]
        opts: LabOpts,
        /// A lab host (controller, compute-1, ...) or an instance's name
        node: String,
        /// The command to run there, with its arguments
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
        cmd: Vec<String>,
    },
    /// Start the VM of a booted instance now (the lab's hypervisor does it within a second)
    Plug {
        #[command(flatten)]
        opts: LabOpts,
        /// Name or ID of the instance
        instance: String,
    },
    /// Stop an instance's VM and remove its namespace
    Unplug {
        #[command(flatten)]
        opts: LabOpts,
        /// Name or ID of the instance
        instance: String,
    },
    /// Start a tiny HTTP responder on a node (answers "NODE CLIENT_IP"), for reachability checks
    Serve {
        #[command(flatten)]
        opts: LabOpts,
        /// A lab host or an instance's name
        node: String,
        /// The TCP port to answer on
        port: u16,
    },
    /// Restart a host's agent
    RestartAgent {
        #[command(flatten)]
        opts: LabOpts,
        /// The lab host whose agent to restart
        host: String,
    },
    /// Plugs and unplugs the VMs of instances as the server places and deletes them (`up`
    /// starts it)
    #[command(hide = true)]
    Hypervisor {
        #[command(flatten)]
        opts: LabOpts,
    },
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LabManager {
    #[default]
    Flatdhcp,
    Vlan,
    /// No DHCP: each VM configures itself from its config drive, as cloud-init does
    Flat,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LabVms {
    #[default]
    Namespaces,
    Qemu,
    /// Real VMs: qemu on compute-1, libvirt on compute-2 (both drivers in one cloud).
    Mixed,
}

/// The host whose agent uses libvirt in a `--vms mixed` lab.
pub const LIBVIRT_HOST: &str = "compute-2";

#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LabSegments {
    #[default]
    Vlan,
    Vxlan,
}

/// How `lab up` builds the cloud.
#[derive(Clone, Debug, Default)]
pub struct Setup {
    pub bare: bool,
    pub manager: LabManager,
    pub segments: LabSegments,
    /// Extra configuration lines.
    pub config: Vec<String>,
    pub vms: LabVms,
    /// A PostgreSQL URL for the servers' store.
    pub db: Option<String>,
    /// A second API server over the same store.
    pub two_servers: bool,
    /// vmnet is multi_host (each compute host serves its own instances).
    pub multi_host: bool,
    /// With `multi_host`: one shared gateway address on every host.
    pub share_address: bool,
    /// Dual stack: IPv6 prefixes, radvd, SLAAC in the VMs.
    pub ipv6: bool,
}

/// The IPv6 block the lab's networks are carved from (seed 000's example).
pub const FIXED_RANGE_V6: &str = "fd00:1::/48";

pub const PASSWORD: &str = "lab";
pub const CONTROLLER_IP: &str = "192.168.56.200";
pub const OUTSIDE_IP: &str = "192.168.56.101";
/// The seed's floating range (68.99.26.170) lives in this block.
pub const FLOATING_BLOCK: &str = "68.99.0.0/16";
/// Hosts of seed 004: name, management address.
pub const HOSTS: &[(&str, &str)] = &[
    ("controller", "192.168.56.200"),
    ("compute-1", "192.168.56.202"),
    ("compute-2", "192.168.56.203"),
];

#[derive(Default, Serialize, Deserialize)]
struct LabState {
    prefix: String,
    namespaces: Vec<String>,
    /// (what, pid)
    pids: Vec<(String, u32)>,
    /// instance name -> (namespace, host, host-side link)
    vms: Vec<(String, String, String, String)>,
    /// Instances an operator unplugged: the hypervisor leaves them alone until plugged again.
    #[serde(default)]
    held: Vec<String>,
    /// VMs read their configuration from a config drive instead of asking DHCP (Flat).
    #[serde(default)]
    config_drive: bool,
    /// Instances are real qemu VMs, made by the agents (`--compute-driver qemu`).
    #[serde(default)]
    qemu_vms: bool,
    /// Hosts whose agents run their VMs under libvirt (each with its own libvirtd).
    #[serde(default)]
    libvirt_hosts: Vec<String>,
    /// The servers' PostgreSQL store, if not SQLite.
    #[serde(default)]
    db: Option<String>,
    /// A second API server runs (port 8776).
    #[serde(default)]
    two_servers: bool,
    /// Dual stack: VMs take router advertisements.
    #[serde(default)]
    ipv6: bool,
}

type Res<T> = Result<T, String>;

fn state_path(o: &LabOpts) -> PathBuf {
    o.dir.join("lab.json")
}

fn load(o: &LabOpts) -> LabState {
    std::fs::read_to_string(state_path(o))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default()
}

/// Writes the state whole (a temporary file renamed over it), so a reader never sees half.
fn save(o: &LabOpts, s: &LabState) -> Res<()> {
    let tmp = o.dir.join("lab.json.tmp");
    std::fs::write(&tmp, serde_json::to_string_pretty(s).expect("json"))
        .and_then(|()| std::fs::rename(&tmp, state_path(o)))
        .map_err(|e| e.to_string())
}

/// Load, change and save the state under an exclusive lock: the lab's hypervisor and the
/// commands an operator runs change it concurrently.
fn with_state<T>(o: &LabOpts, f: impl FnOnce(&mut LabState) -> Res<T>) -> Res<T> {
    let lock_path = o.dir.join("lab.lock");
    let lock =
        std::fs::File::create(&lock_path).map_err(|e| format!("{}: {e}", lock_path.display()))?;
    lock.lock()
        .map_err(|e| format!("{}: {e}", lock_path.display()))?;
    let mut st = load(o);
    let r = f(&mut st);
    save(o, &st)?;
    r
}

pub fn ns(o: &LabOpts, node: &str) -> String {
    format!("{}-{node}", o.prefix)
}

pub fn sh(cmd: &str, args: &[&str]) -> Res<String> {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .map_err(|e| format!("cannot run {cmd}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "`{cmd} {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

pub fn ip(args: &[&str]) -> Res<()> {
    sh("ip", args).map(|_| ())
}

fn sysctl(namespace: &str, key: &str, value: &str) -> Res<()> {
    sh(
        "ip",
        &[
            "netns",
            "exec",
            namespace,
            "sysctl",
            "-q",
            "-w",
            &format!("{key}={value}"),
        ],
    )
    .map(|_| ())
}

fn binary() -> PathBuf {
    std::env::current_exe().unwrap_or_else(|_| PathBuf::from("novanet"))
}

/// The API servers' URLs, comma-separated (the first is the one that bootstraps).
fn server_urls(o: &LabOpts) -> String {
    let mut urls = format!("http://{CONTROLLER_IP}:8774");
    if load(o).two_servers {
        urls.push_str(&format!(",http://{CONTROLLER_IP}:8776"));
    }
    urls
}

fn env_for(o: &LabOpts) -> Vec<(String, String)> {
    let st = load(o);
    let mut env = vec![
        (
            "NOVANET_DATA_DIR".into(),
            o.dir.join("server").display().to_string(),
        ),
        (
            "NOVANET_CONFIG".into(),
            o.dir.join("novanet.conf").display().to_string(),
        ),
        (
            "OS_AUTH_URL".into(),
            format!("http://{CONTROLLER_IP}:8774/identity/v3"),
        ),
        ("OS_USERNAME".into(), "admin".into()),
        ("OS_PASSWORD".into(), PASSWORD.into()),
        ("OS_PROJECT_NAME".into(), "admin".into()),
        ("NOVANET_SERVER".into(), server_urls(o)),
    ];
    // `novanet manage` then works on the servers' PostgreSQL store.
    if let Some(db) = st.db {
        env.push(("NOVANET_DB".into(), db));
    }
    env
}

/// Starts a long-running process in a namespace; `ip netns exec` execs it, so the PID we
/// get is the process's own.
fn spawn(
    o: &LabOpts,
    namespace: &str,
    args: &[String],
    log: &Path,
    extra_env: &[(String, String)],
) -> Res<Child> {
    let logf = std::fs::File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
    let child = Command::new("ip")
        .args(["netns", "exec", namespace])
        .args(args)
        .envs(env_for(o))
        .envs(extra_env.iter().cloned())
        .stdin(Stdio::null())
        .stdout(logf.try_clone().map_err(|e| e.to_string())?)
        .stderr(logf)
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", args.join(" ")))?;
    Ok(child)
}

/// Runs `novanet ARGS` as a client inside the controller; returns stdout.
pub fn client(o: &LabOpts, args: &[&str]) -> Res<String> {
    let out = Command::new("ip")
        .args(["netns", "exec", &ns(o, "controller")])
        .arg(binary())
        .args(args)
        .envs(env_for(o))
        .output()
        .map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(format!(
            "novanet {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs `novanet manage ARGS` on the controller, where the server's store is.
fn manage(o: &LabOpts, args: &[&str]) -> Res<String> {
    let mut full = vec!["manage"];
    full.extend(args);
    client(o, &full)
}

pub fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Res<T> {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return Ok(v);
        }
        if start.elapsed() > timeout {
            return Err(format!("timed out after {timeout:?} waiting for {what}"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn preflight() -> Res<()> {
    if sh("id", &["-u"])?.trim() != "0" {
        return Err("the lab needs root (network namespaces, bridges, iptables)".into());
    }
    for tool in [
        "ip",
        "dnsmasq",
        "dhcp_release",
        "iptables-restore",
        "busybox",
    ] {
        if Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .map(|o| !o.status.success())
            .unwrap_or(true)
        {
            return Err(format!("{tool} is missing: run scripts/setup.sh (apt-get install dnsmasq-base dnsmasq-utils iptables busybox ...)"));
        }
    }
    Ok(())
}

/// Fails naming the first of `tools` that is not installed, and the packages to install.
fn need_tools(tools: &[&str], packages: &str) -> Res<()> {
    for tool in tools {
        if Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .map(|o| !o.status.success())
            .unwrap_or(true)
        {
            return Err(format!(
                "{tool} is missing: run scripts/setup.sh (apt-get install {packages})"
            ));
        }
    }
    Ok(())
}

const UDHCPC_SCRIPT: &str = r#"#!/bin/sh
# udhcpc hook for lab VMs. It configures only the VM's own namespace: it never writes
# /etc/resolv.conf (namespaces share the host's filesystem).
case "$1" in
  deconfig)
    # A lease that ended (or was refused at renewal) takes its address with it.
    ip addr flush dev "$interface" scope global
    ip link set "$interface" up ;;
  bound|renew)
    ip addr replace "$ip/${mask:-24}" ${broadcast:+broadcast $broadcast} dev "$interface"
    [ -n "$mtu" ] && ip link set "$interface" mtu "$mtu"
    [ -n "$router" ] && ip route replace default via "${router%% *}" dev "$interface"
    echo "ip=$ip mask=$mask router=$router dns=$dns domain=$domain hostname=$hostname lease=$lease" > "$NOVANET_LEASE_FILE" ;;
esac
exit 0
"#;

/// The lab's configuration as `host` (whose management address is `my_ip`) has it.
fn lab_config(setup: &Setup, my_ip: &str) -> String {
    let manager = match setup.manager {
        LabManager::Flatdhcp => {
            "# nova.conf options of the seed tutorial's controller (seed 004)\n\
             network_manager = \"nova.network.manager.FlatDHCPManager\"\n\
             flat_interface = \"eth2\"\n\
             flat_network_bridge = \"br100\"\n"
                .to_string()
        }
        LabManager::Flat => "# Flat manager: addresses injected into the guest (config drive)\n\
             network_manager = \"nova.network.manager.FlatManager\"\n\
             flat_interface = \"eth2\"\n\
             flat_network_bridge = \"br100\"\n\
             flat_injected = true\n"
            .to_string(),
        LabManager::Vlan => format!(
            "# VLAN manager: a segment, bridge, subnet and dnsmasq per project\n\
             network_manager = \"nova.network.manager.VlanManager\"\n\
             vlan_interface = \"eth2\"\n\
             segment_driver = \"{}\"\n",
            match setup.segments {
                LabSegments::Vlan => "vlan",
                LabSegments::Vxlan => "vxlan",
            }
        ),
    };
    let mut c = format!(
        "{manager}\
         public_interface = \"eth1\"\n\
         my_ip = \"{my_ip}\"\n\
         dhcp_lease_time = 120\n\
         dns_server = [\"{OUTSIDE_IP}\"]\n\
         metadata_listen = \"{CONTROLLER_IP}\"\n"
    );
    if setup.multi_host {
        // Every compute host NATs its own instances (SNAT to its my_ip, floating IPs on
        // its eth1) and serves their metadata: nothing is sent through the controller.
        c.push_str("multi_host = true\n");
        if setup.share_address {
            c.push_str("share_dhcp_address = true\n");
        }
        // Each compute host answers its own instances' metadata (seed 000).
        c.push_str("metadata_host = \"127.0.0.1\"\n");
    }
    if setup.ipv6 {
        c.push_str("# dual stack (seed 000)\nuse_ipv6 = true\n");
    }
    for l in &setup.config {
        c.push_str(l);
        c.push('\n');
    }
    c
}

fn host_config_path(o: &LabOpts, host: &str) -> PathBuf {
    o.dir.join(format!("novanet-{host}.conf"))
}

pub fn up(o: &LabOpts, bare: bool, extra: &[String]) -> Res<()> {
    up_with(
        o,
        &Setup {
            bare,
            config: extra.to_vec(),
            ..Setup::default()
        },
    )
}

pub fn up_with(o: &LabOpts, setup: &Setup) -> Res<()> {
    preflight()?;
    if setup.vms == LabVms::Mixed {
        need_tools(
            &["libvirtd", "virsh"],
            "libvirt-daemon-driver-qemu libvirt-clients",
        )?;
    }
    if state_path(o).exists() {
        return Err(format!(
            "a lab already runs in {} (novanet lab down first)",
            o.dir.display()
        ));
    }
    std::fs::create_dir_all(&o.dir).map_err(|e| e.to_string())?;
    let mut st = LabState {
        prefix: o.prefix.clone(),
        config_drive: setup.manager == LabManager::Flat,
        qemu_vms: setup.vms != LabVms::Namespaces,
        libvirt_hosts: match setup.vms {
            LabVms::Mixed => vec![LIBVIRT_HOST.to_string()],
            _ => Vec::new(),
        },
        db: setup.db.clone(),
        two_servers: setup.two_servers,
        ipv6: setup.ipv6,
        ..LabState::default()
    };
    save(o, &st)?;
    let result = build(o, &mut st, setup).and_then(|()| {
        if st.qemu_vms {
            // The agents run the VMs: no stand-in.
            return Ok(());
        }
        // From here on, instances come and go as a hypervisor would have them.
        let args = [
            binary().display().to_string(),
            "lab".into(),
            "hypervisor".into(),
            "--prefix".into(),
            o.prefix.clone(),
            "--dir".into(),
            o.dir.display().to_string(),
        ];
        // In the machine's own namespaces, not a lab host's: `ip netns exec` gives its
        // process a private mount namespace, where a VM namespace it added would stay.
        let log = o.dir.join("hypervisor.log");
        let logf = std::fs::File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
        let child = Command::new(&args[0])
            .args(&args[1..])
            .stdin(Stdio::null())
            .stdout(logf.try_clone().map_err(|e| e.to_string())?)
            .stderr(logf)
            .spawn()
            .map_err(|e| format!("cannot start the lab hypervisor: {e}"))?;
        let pid = child.id();
        st.pids.push(("hypervisor".into(), pid));
        Ok(())
    });
    save(o, &st)?;
    result
}

/// `lab hypervisor`: what nova-compute's virt driver does for the lab. Every half second it
/// plugs a VM for each instance the server has placed on a lab host (once that host's
/// bridge exists) and unplugs the VMs of deleted instances. Ends when the lab goes down.
fn hypervisor(o: &LabOpts) -> Res<()> {
    // The DHCP clients this loop started: reaped once unplugged, so none stays a zombie.
    let mut children: Vec<Child> = Vec::new();
    loop {
        children.retain_mut(|c| matches!(c.try_wait(), Ok(None)));
        std::thread::sleep(Duration::from_millis(500));
        if !state_path(o).exists() {
            return Ok(());
        }
        // Listed under the lock: a plug or unplug an operator makes meanwhile is seen.
        let r = with_state(o, |st| {
            let servers = client_json(o, "/servers/detail?all_tenants=1")?;
            let placed: Vec<(String, String)> = servers["servers"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|s| {
                    let name = s["name"].as_str()?.to_string();
                    let host = s["OS-EXT-SRV-ATTR:host"].as_str()?.to_string();
                    HOSTS
                        .iter()
                        .any(|(h, _)| *h == host)
                        .then_some((name, host))
                })
                .collect();
            // One instance that cannot be plugged must not stop the others.
            for (name, host) in &placed {
                if st.held.contains(name) || st.vms.iter().any(|v| v.0 == *name) {
                    continue;
                }
                // Plugged once the agent has made every bridge the VM needs.
                let ready = find_server(o, name)
                    .and_then(|s| vm_ports(o, &s))
                    .is_ok_and(|ports| {
                        ports.iter().all(|p| {
                            sh("ip", &["-n", &ns(o, host), "link", "show", &p.bridge]).is_ok()
                        })
                    });
                if !ready {
                    continue;
                }
                match plug(o, st, name) {
                    Ok(c) => {
                        children.extend(c);
                        eprintln!("lab hypervisor: plugged {name} on {host}");
                    }
                    Err(e) => eprintln!("lab hypervisor: cannot plug {name}: {e}"),
                }
            }
            let gone: Vec<String> = st
                .vms
                .iter()
                .filter(|v| !placed.iter().any(|(n, _)| *n == v.0))
                .map(|v| v.0.clone())
                .collect();
            for name in gone {
                match unplug(o, st, &name) {
                    Ok(()) => eprintln!("lab hypervisor: unplugged {name}"),
                    Err(e) => eprintln!("lab hypervisor: cannot unplug {name}: {e}"),
                }
            }
            st.held.retain(|n| placed.iter().any(|(p, _)| p == n));
            Ok(())
        });
        if let Err(e) = r {
            eprintln!("lab hypervisor: {e}");
        }
    }
}

fn build(o: &LabOpts, st: &mut LabState, setup: &Setup) -> Res<()> {
    let bare = setup.bare;
    let fab = ns(o, "fab");
    let mut all = vec![fab.clone(), ns(o, "outside")];
    all.extend(HOSTS.iter().map(|(h, _)| ns(o, h)));
    for n in &all {
        ip(&["netns", "add", n])?;
        st.namespaces.push(n.clone());
        ip(&["-n", n, "link", "set", "lo", "up"])?;
    }
    save(o, st)?;
    // The fabric: the management/public network (eth1) and the VM network (eth2).
    ip(&["-n", &fab, "link", "add", "br-mgmt", "type", "bridge"])?;
    ip(&["-n", &fab, "link", "add", "br-vm", "type", "bridge"])?;
    ip(&["-n", &fab, "link", "set", "br-mgmt", "up"])?;
    ip(&["-n", &fab, "link", "set", "br-vm", "up"])?;
    let outside = ns(o, "outside");
    ip(&[
        "-n",
        &fab,
        "link",
        "add",
        "m-outside",
        "type",
        "veth",
        "peer",
        "name",
        "eth0",
        "netns",
        &outside,
    ])?;
    ip(&[
        "-n",
        &fab,
        "link",
        "set",
        "m-outside",
        "master",
        "br-mgmt",
        "up",
    ])?;
    ip(&[
        "-n",
        &outside,
        "addr",
        "add",
        &format!("{OUTSIDE_IP}/24"),
        "dev",
        "eth0",
    ])?;
    ip(&["-n", &outside, "link", "set", "eth0", "up"])?;
    // The "internet" routes the seed's public block (68.99.0.0/16) to the controller, as an
    // ISP would route a customer's floating range. In multi-host mode any compute host may
    // hold a floating address: the block is on the public segment, and the host that has
    // the address answers ARP for it.
    if setup.multi_host {
        ip(&[
            "-n",
            &outside,
            "route",
            "add",
            FLOATING_BLOCK,
            "dev",
            "eth0",
        ])?;
    } else {
        ip(&[
            "-n",
            &outside,
            "route",
            "add",
            FLOATING_BLOCK,
            "via",
            CONTROLLER_IP,
        ])?;
    }
    for (i, (host, addr)) in HOSTS.iter().enumerate() {
        let h = ns(o, host);
        let (m, d) = (format!("m{i}"), format!("d{i}"));
        ip(&[
            "-n", &fab, "link", "add", &m, "type", "veth", "peer", "name", "eth1", "netns", &h,
        ])?;
        ip(&[
            "-n", &fab, "link", "add", &d, "type", "veth", "peer", "name", "eth2", "netns", &h,
        ])?;
        for l in [&m, &d] {
            let br = if l.starts_with('m') {
                "br-mgmt"
            } else {
                "br-vm"
            };
            ip(&["-n", &fab, "link", "set", l, "master", br, "up"])?;
        }
        ip(&[
            "-n",
            &h,
            "addr",
            "add",
            &format!("{addr}/24"),
            "brd",
            "192.168.56.255",
            "dev",
            "eth1",
        ])?;
        ip(&["-n", &h, "link", "set", "eth1", "up"])?;
        // eth2 carries no address; the agent bridges it (seed: "up ifconfig $IFACE promisc").
        ip(&["-n", &h, "link", "set", "eth2", "up"])?;
        ip(&["-n", &h, "route", "add", "default", "via", OUTSIDE_IP])?;
        sysctl(&h, "net.bridge.bridge-nf-call-iptables", "1")?;
    }
    let cfg_path = o.dir.join("novanet.conf");
    std::fs::write(&cfg_path, lab_config(setup, CONTROLLER_IP)).map_err(|e| e.to_string())?;
    // Each agent reads its own host's file, as each host has its own nova.conf (my_ip).
    for (host, addr) in HOSTS {
        let mut c = lab_config(setup, addr);
        if st.libvirt_hosts.iter().any(|h| h == host) {
            let uri = libvirtd::uri(&libvirtd::dir(&o.dir, host));
            c.push_str(&format!(
                "# this host's own libvirtd\nlibvirt_uri = \"{uri}\"\n"
            ));
        }
        std::fs::write(host_config_path(o, host), c).map_err(|e| e.to_string())?;
    }
    std::fs::write(o.dir.join("udhcpc.script"), UDHCPC_SCRIPT).map_err(|e| e.to_string())?;
    sh(
        "chmod",
        &["+x", &o.dir.join("udhcpc.script").display().to_string()],
    )?;
    let server_args: Vec<String> = vec![
        binary().display().to_string(),
        "server".into(),
        "--data-dir".into(),
        o.dir.join("server").display().to_string(),
        "--config".into(),
        cfg_path.display().to_string(),
        "--listen".into(),
        format!("{CONTROLLER_IP}:8774"),
        "--bootstrap-password".into(),
        PASSWORD.into(),
    ];
    let mut server_args = server_args;
    if let Some(db) = &setup.db {
        server_args.extend(["--db".into(), db.clone()]);
    }
    let pid = spawn(
        o,
        &ns(o, "controller"),
        &server_args,
        &o.dir.join("server.log"),
        &[],
    )?
    .id();
    st.pids.push(("server".into(), pid));
    save(o, st)?;
    if setup.two_servers {
        wait_for(
            "the first server to answer",
            Duration::from_secs(20),
            || client(o, &["network-list"]).ok(),
        )?;
        // The same store; metadata stays with the first (its port is 8775).
        let args: Vec<String> = [
            binary().display().to_string(),
            "server".into(),
            "--data-dir".into(),
            o.dir.join("server-2").display().to_string(),
            "--config".into(),
            cfg_path.display().to_string(),
            "--listen".into(),
            format!("{CONTROLLER_IP}:8776"),
            "--metadata-listen".into(),
            "off".into(),
            "--db".into(),
            setup.db.clone().unwrap_or_default(),
        ]
        .into();
        std::fs::create_dir_all(o.dir.join("server-2")).map_err(|e| e.to_string())?;
        let pid = spawn(
            o,
            &ns(o, "controller"),
            &args,
            &o.dir.join("server-2.log"),
            &[],
        )?
        .id();
        st.pids.push(("server-2".into(), pid));
        save(o, st)?;
    }
    wait_for("the server to answer", Duration::from_secs(20), || {
        client(o, &["network-list"]).ok()
    })?;
    for host in st.libvirt_hosts.clone() {
        start_libvirtd(o, st, &host)?;
        save(o, st)?;
    }
    for (host, _) in HOSTS {
        start_agent(o, st, host)?;
        save(o, st)?;
    }
    wait_for("the agents to report", Duration::from_secs(20), || {
        let svc = client_json(o, "/os-services").ok()?;
        (svc["services"].as_array()?.len() >= HOSTS.len()).then_some(())
    })?;
    if bare {
        println!("lab {} is up (bare): {}", o.prefix, o.dir.display());
        return Ok(());
    }
    match setup.manager {
        // The tutorial: one FlatDHCP network and one instance on compute-1.
        LabManager::Flatdhcp | LabManager::Flat => {
            let mut args = vec![
                "network-create",
                "vmnet",
                "--fixed-range-v4",
                "10.0.0.0/24",
                "--bridge",
                "br100",
            ];
            if setup.multi_host {
                args.extend(["--multi-host", "T"]);
                if setup.share_address {
                    args.extend(["--share-address", "T"]);
                }
            }
            if setup.ipv6 {
                args.extend(["--fixed-range-v6", FIXED_RANGE_V6]);
            }
            client(o, &args)?
        }
        // Three project networks (VLANs 100 to 102) as nova-manage made them; the admin
        // project's first boot takes the first.
        LabManager::Vlan => {
            let mut args = vec![
                "network",
                "create",
                "--label",
                "vmnet",
                "--fixed-range-v4",
                "10.0.0.0/22",
                "--num-networks",
                "3",
                "--network-size",
                "256",
                "--vlan-start",
                "100",
            ];
            if setup.ipv6 {
                args.extend(["--fixed-range-v6", FIXED_RANGE_V6]);
            }
            manage(o, &args)?
        }
    };
    let image = if st.qemu_vms {
        upload_test_image(o)?
    } else {
        "cirros".to_string()
    };
    client(
        o,
        &[
            "boot",
            "--image",
            &image,
            "--flavor",
            "1",
            "--availability-zone",
            "nova:compute-1",
            "cirros",
        ],
    )?;
    save(o, st)?;
    let lease = if st.qemu_vms {
        qemu_lease(o, "cirros")?
    } else {
        plug(o, st, "cirros")?;
        save(o, st)?;
        wait_for("cirros's DHCP lease", Duration::from_secs(30), || {
            std::fs::read_to_string(o.dir.join("vm-cirros.lease"))
                .ok()
                .filter(|l| !l.is_empty())
        })?
    };
    println!("$ novanet list");
    print!("{}", client(o, &["list"])?);
    // The DHCP server of cirros: the controller's, or in multi-host mode its own host's.
    let dhcp_host = if setup.multi_host {
        "compute-1"
    } else {
        "controller"
    };
    let networks = o.dir.join(format!("agent-{dhcp_host}/networks"));
    println!(
        "$ cat {0}/nova-br100.conf {0}/nova-br100.hosts.d/*",
        networks.display()
    );
    print!(
        "{}",
        std::fs::read_to_string(networks.join("nova-br100.conf")).unwrap_or_default()
    );
    for e in std::fs::read_dir(networks.join("nova-br100.hosts.d"))
        .into_iter()
        .flatten()
        .flatten()
    {
        print!("{}", std::fs::read_to_string(e.path()).unwrap_or_default());
    }
    println!("cirros's DHCP lease: {}", lease.trim());
    let address = lease
        .split_whitespace()
        .find_map(|f| f.strip_prefix("ip="))
        .unwrap_or("10.0.0.2")
        .to_string();
    let ping = |node: &str| {
        Command::new("ip")
            .args([
                "netns",
                "exec",
                &ns(o, node),
                "ping",
                "-c",
                "1",
                "-W",
                "1",
                &address,
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    };
    println!(
        "controller$ ping {address}: {}",
        if ping("controller") {
            "reachable"
        } else {
            "unreachable"
        }
    );
    println!(
        "compute-1$ ping {address}: {} (the seed expects no answer from a compute node)",
        if ping("compute-1") {
            "reachable"
        } else {
            "unreachable"
        }
    );
    println!(
        "lab {} is up: novanet lab exec controller -- novanet list",
        o.prefix
    );
    Ok(())
}

/// The name of the test image in the lab's image service.
pub const TEST_IMAGE: &str = "novanet-test";

/// Builds the test image (packages cached in $NOVANET_IMAGE_CACHE, else
/// /tmp/novanet-test-image/packages) and uploads it as nova's AMI trio: the kernel (aki),
/// the initramfs (ari) and an empty machine image naming both. Returns the image's name.
fn upload_test_image(o: &LabOpts) -> Res<String> {
    let cache = std::env::var_os("NOVANET_IMAGE_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("novanet-test-image/packages"));
    let built = o.dir.join("test-image");
    let img = test_image::build(&cache, &built).map_err(|e| e.to_string())?;
    let create = |name: &str, file: &Path, format: &str, props: &[String]| -> Res<String> {
        let f = file.display().to_string();
        let mut args = vec![
            "image-create",
            name,
            "--file",
            &f,
            "--disk-format",
            format,
            "--container-format",
            format,
            "--json",
        ];
        for p in props {
            args.extend(["--property", p.as_str()]);
        }
        let v: Value = serde_json::from_str(&client(o, &args)?).map_err(|e| e.to_string())?;
        v["id"]
            .as_str()
            .map(String::from)
            .ok_or_else(|| format!("image-create {name} gave no id: {v}"))
    };
    let kernel = create("novanet-test-kernel", &img.kernel, "aki", &[])?;
    let ramdisk = create("novanet-test-ramdisk", &img.initrd, "ari", &[])?;
    let empty = built.join("empty.ami");
    std::fs::write(&empty, b"").map_err(|e| e.to_string())?;
    create(
        TEST_IMAGE,
        &empty,
        "ami",
        &[
            format!("kernel_id={kernel}"),
            format!("ramdisk_id={ramdisk}"),
            format!("os_command_line={}", test_image::CMDLINE),
        ],
    )?;
    Ok(TEST_IMAGE.to_string())
}

/// The console log of an instance's qemu VM (on whichever lab host runs it).
pub fn console_log_path(o: &LabOpts, instance: &str) -> Res<PathBuf> {
    let uuid = find_server(o, instance)?["id"]
        .as_str()
        .map(String::from)
        .ok_or_else(|| format!("{instance} has no id"))?;
    HOSTS
        .iter()
        .map(|(h, _)| o.dir.join(format!("agent-{h}/vms/{uuid}/console.log")))
        .find(|p| p.exists())
        .ok_or_else(|| format!("{instance} has no VM (yet)"))
}

/// Waits for a qemu VM's lease on its console (TCG boots in seconds; the first boot also
/// waits for the agent to fetch the image). Returns `ip=ADDRESS` as the stand-in's lease
/// file says it.
fn qemu_lease(o: &LabOpts, instance: &str) -> Res<String> {
    wait_for(
        &format!("{instance}'s lease on its serial console"),
        Duration::from_secs(120),
        || {
            let log = std::fs::read_to_string(console_log_path(o, instance).ok()?).ok()?;
            log.replace('\r', "").lines().find_map(|l| {
                let rest = l.split("novanet-test: lease ").nth(1)?;
                let addr = rest.split_whitespace().nth(1)?.split('/').next()?;
                Some(format!("ip={addr} ({})", l.trim()))
            })
        },
    )
}

fn start_agent(o: &LabOpts, st: &mut LabState, host: &str) -> Res<()> {
    let mut args = vec![
        binary().display().to_string(),
        "agent".into(),
        "--host".into(),
        host.to_string(),
        "--state-dir".into(),
        o.dir.join(format!("agent-{host}")).display().to_string(),
        "--server".into(),
        server_urls(o),
    ];
    if host == "controller" {
        args.push("--network-host".into());
    }
    if st.libvirt_hosts.iter().any(|h| h == host) {
        args.extend(["--compute-driver".into(), "libvirt".into()]);
    } else if st.qemu_vms {
        args.extend(["--compute-driver".into(), "qemu".into()]);
    }
    let log = o.dir.join(format!("agent-{host}.log"));
    let env = [(
        "NOVANET_CONFIG".to_string(),
        host_config_path(o, host).display().to_string(),
    )];
    let pid = spawn(o, &ns(o, host), &args, &log, &env)?.id();
    st.pids.push((format!("agent-{host}"), pid));
    Ok(())
}

/// Starts `host`'s own libvirtd (see `libvirtd`) and waits for its socket.
fn start_libvirtd(o: &LabOpts, st: &mut LabState, host: &str) -> Res<()> {
    let dir = libvirtd::dir(&o.dir, host);
    libvirtd::prepare(&dir)?;
    let args = [
        "sh".to_string(),
        dir.join("start.sh").display().to_string(),
        dir.display().to_string(),
    ];
    let log = o.dir.join(format!("libvirtd-{host}.log"));
    let pid = spawn(o, &ns(o, host), &args, &log, &[])?.id();
    st.pids.push((format!("libvirtd-{host}"), pid));
    let sock = dir.join("run/libvirt-sock");
    wait_for(
        &format!("{host}'s libvirtd (its log: {})", log.display()),
        Duration::from_secs(20),
        || sock.exists().then_some(()),
    )
}

/// Stops a host's agent (by PID) and starts a new one, as an operator's restart would.
fn restart_agent(o: &LabOpts, st: &mut LabState, host: &str) -> Res<()> {
    let what = format!("agent-{host}");
    let Some(pos) = st.pids.iter().position(|(w, _)| *w == what) else {
        return Err(format!("no agent runs on {host}"));
    };
    let (_, pid) = st.pids.remove(pos);
    kill(pid);
    wait_for("the old agent to exit", Duration::from_secs(10), || {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        (stat.is_empty()
            || stat
                .rsplit(')')
                .next()
                .is_some_and(|s| s.trim_start().starts_with('Z')))
        .then_some(())
    })?;
    start_agent(o, st, host)
}

/// Answers over IPv4 and IPv6 alike (one dual-stack socket); a v4 client is shown as its
/// plain address.
const RESPONDER: &str = r#"
import http.server, socket, socketserver, sys
node, port = sys.argv[1], int(sys.argv[2])
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        c = self.client_address[0]
        c = c[7:] if c.startswith("::ffff:") else c
        body = ("%s %s\n" % (node, c)).encode()
        self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a): pass
class S(socketserver.TCPServer):
    address_family = socket.AF_INET6
    allow_reuse_address = True
    def server_bind(self):
        self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        super().server_bind()
S(("::", port), H).serve_forever()
"#;

fn serve(o: &LabOpts, st: &mut LabState, node: &str, port: u16) -> Res<()> {
    let target = ns(o, node);
    if !st.namespaces.contains(&target) {
        return Err(format!("no lab node {node}"));
    }
    let args: Vec<String> = vec![
        "/usr/bin/python3".into(),
        "-c".into(),
        RESPONDER.into(),
        node.into(),
        port.to_string(),
    ];
    let pid = spawn(
        o,
        &target,
        &args,
        &o.dir.join(format!("serve-{node}-{port}.log")),
        &[],
    )?
    .id();
    st.pids.push((format!("serve-{node}-{port}"), pid));
    wait_for(
        &format!("{node}:{port} to listen"),
        Duration::from_secs(10),
        || {
            let out = Command::new("ip")
                .args([
                    "netns",
                    "exec",
                    &target,
                    "ss",
                    "-Htln",
                    &format!("sport = :{port}"),
                ])
                .output()
                .ok()?;
            (!out.stdout.is_empty()).then_some(())
        },
    )
}

fn client_json(o: &LabOpts, path: &str) -> Res<Value> {
    let out = client(o, &["api-get", path])?;
    serde_json::from_str(&out).map_err(|e| format!("bad JSON from {path}: {e}"))
}

/// An instance's virtual interfaces in order (eth0, eth1, ...): its id, MAC and the bridge
/// of its network.
struct VmPort {
    vif: String,
    mac: String,
    bridge: String,
}

fn find_server(o: &LabOpts, instance: &str) -> Res<Value> {
    let servers = client_json(o, "/servers/detail?all_tenants=1")?;
    servers["servers"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|s| s["name"] == instance)
        .cloned()
        .ok_or_else(|| format!("no instance named {instance}"))
}

fn vm_ports(o: &LabOpts, srv: &Value) -> Res<Vec<VmPort>> {
    let id = srv["id"].as_str().unwrap_or_default();
    let vifs = client_json(o, &format!("/servers/{id}/os-virtual-interfaces"))?;
    let mut ports = Vec::new();
    for v in vifs["virtual_interfaces"].as_array().into_iter().flatten() {
        let net = v["OS-EXT-VIF-NET:net_id"].as_str().unwrap_or_default();
        let network = client_json(o, &format!("/os-networks/{net}"))?;
        ports.push(VmPort {
            vif: v["id"].as_str().unwrap_or_default().to_string(),
            mac: v["mac_address"].as_str().unwrap_or_default().to_string(),
            bridge: network["network"]["bridge"]
                .as_str()
                .ok_or_else(|| format!("network {net} has no bridge"))?
                .to_string(),
        });
    }
    if ports.is_empty() {
        return Err("it has no address".into());
    }
    Ok(ports)
}

/// The lease file of a VM's interface: eth0's keeps the name it always had.
pub fn lease_path(o: &LabOpts, instance: &str, index: usize) -> PathBuf {
    if index == 0 {
        o.dir.join(format!("vm-{instance}.lease"))
    } else {
        o.dir.join(format!("vm-{instance}-eth{index}.lease"))
    }
}

/// Makes the VM: a namespace with one interface per VIF, each cabled to its network's bridge
/// on the instance's host and running a DHCP client. Returns the DHCP clients, for a
/// long-lived caller to reap.
fn plug(o: &LabOpts, st: &mut LabState, instance: &str) -> Res<Vec<Child>> {
    let srv = find_server(o, instance)?;
    let host = srv["OS-EXT-SRV-ATTR:host"]
        .as_str()
        .ok_or_else(|| format!("{instance} has no host"))?
        .to_string();
    let ports = vm_ports(o, &srv).map_err(|e| format!("{instance}: {e}"))?;
    let host_ns = ns(o, &host);
    let vm_ns = ns(o, instance);
    // Room for a cloudpipe VPN instance's name (`<project id>-vpn`, 36 characters).
    if vm_ns.len() > 64 {
        return Err(format!(
            "instance name {instance} is too long for a lab namespace"
        ));
    }
    // The agent makes the host's bridge for each of the instance's networks; wait for them.
    for p in &ports {
        wait_for(
            &format!("{} on {host}", p.bridge),
            Duration::from_secs(20),
            || sh("ip", &["-n", &host_ns, "link", "show", &p.bridge]).ok(),
        )?;
    }
    let used: Vec<String> = st
        .vms
        .iter()
        .filter(|v| v.2 == host)
        .flat_map(|v| v.3.split(',').map(str::to_string).collect::<Vec<_>>())
        .collect();
    let vnets: Vec<String> = (0..)
        .map(|i| format!("vnet{i}"))
        .filter(|n| !used.contains(n))
        .take(ports.len())
        .collect();
    ip(&["netns", "add", &vm_ns])?;
    st.namespaces.push(vm_ns.clone());
    st.vms.push((
        instance.to_string(),
        vm_ns.clone(),
        host.clone(),
        vnets.join(","),
    ));
    ip(&["-n", &vm_ns, "link", "set", "lo", "up"])?;
    let mut children = Vec::new();
    for (i, (p, vnet)) in ports.iter().zip(&vnets).enumerate() {
        let eth = format!("eth{i}");
        ip(&[
            "-n", &host_ns, "link", "add", vnet, "type", "veth", "peer", "name", &eth, "netns",
            &vm_ns,
        ])?;
        ip(&["-n", &vm_ns, "link", "set", &eth, "address", &p.mac])?;
        if st.ipv6 {
            // A guest with stateless autoconfiguration: it takes router advertisements
            // (2: even if something turned forwarding on) and forms its address from the MAC.
            sysctl(&vm_ns, &format!("net.ipv6.conf.{eth}.forwarding"), "0")?;
            sysctl(&vm_ns, &format!("net.ipv6.conf.{eth}.accept_ra"), "2")?;
            ip(&["-n", &vm_ns, "link", "set", &eth, "addrgenmode", "eui64"])?;
        }
        ip(&[
            "-n", &host_ns, "link", "set", vnet, "master", &p.bridge, "up",
        ])?;
        ip(&["-n", &vm_ns, "link", "set", &eth, "up"])?;
        // Tell the network service where the VIF is plugged (the port binding a hypervisor
        // reports).
        client(o, &["vif-plug", &p.vif, vnet])?;
        if st.config_drive {
            continue;
        }
        let lease_file = lease_path(o, instance, i);
        let _ = std::fs::remove_file(&lease_file);
        let args: Vec<String> = [
            "busybox", "udhcpc", "-i", &eth, "-f", "-t", "20", "-T", "1", "-O", "mtu", "-s",
        ]
        .iter()
        .map(|s| s.to_string())
        .chain([o.dir.join("udhcpc.script").display().to_string()])
        .collect();
        let log = if i == 0 {
            o.dir.join(format!("vm-{instance}.log"))
        } else {
            o.dir.join(format!("vm-{instance}-{eth}.log"))
        };
        let child = spawn(
            o,
            &vm_ns,
            &args,
            &log,
            &[(
                "NOVANET_LEASE_FILE".into(),
                lease_file.display().to_string(),
            )],
        )?;
        st.pids.push((format!("udhcpc-{instance}"), child.id()));
        children.push(child);
    }
    if st.config_drive {
        boot_from_config_drive(o, instance, &vm_ns, &ports)?;
    } else if srv["image"]["id"] == CLOUDPIPE_IMAGE {
        let dir = cloudpipe_dir(o, instance);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let args: Vec<String> = ["sh", "-c", CLOUDPIPE_BOOT]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let child = spawn(
            o,
            &vm_ns,
            &args,
            &o.dir.join(format!("vm-{instance}-boot.log")),
            &[
                (
                    "NOVANET_LEASE_FILE".into(),
                    lease_path(o, instance, 0).display().to_string(),
                ),
                ("NOVANET_VPN_DIR".into(), dir.display().to_string()),
            ],
        )?;
        st.pids.push((format!("boot-{instance}"), child.id()));
        children.push(child);
    }
    Ok(children)
}

/// nova's cloudpipe image (`compute::IMAGES`): its instances run their user data at boot.
const CLOUDPIPE_IMAGE: &str = "5c9a5c0e-7b8f-4a54-9d6f-6a3e0d3f1a01";

/// What the cloudpipe image's cloud-init does, in the lab: once the VM has its lease it
/// fetches its user data from the metadata service and runs it, with `NOVANET_VPN_DIR`
/// (under the lab's directory) as where it keeps its files. The processes it leaves
/// (OpenVPN, its CRL fetcher) write their PIDs there.
const CLOUDPIPE_BOOT: &str = r#"
until [ -s "$NOVANET_LEASE_FILE" ]; do sleep 0.2; done
until curl -sf -o "$NOVANET_VPN_DIR/user-data" http://169.254.169.254/latest/user-data; do sleep 1; done
exec sh "$NOVANET_VPN_DIR/user-data"
"#;

pub fn cloudpipe_dir(o: &LabOpts, instance: &str) -> PathBuf {
    o.dir.join(format!("vm-{instance}-vpn"))
}

/// Ends what a cloudpipe VM's user data started (OpenVPN, its CRL fetcher): by the PIDs
/// in its directory, each checked to be a process that names that directory.
fn end_cloudpipe(o: &LabOpts, instance: &str) {
    let dir = cloudpipe_dir(o, instance);
    for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
        if e.path().extension().is_none_or(|x| x != "pid") {
            continue;
        }
        let Some(pid) = std::fs::read_to_string(e.path())
            .ok()
            .and_then(|p| p.trim().parse::<u32>().ok())
        else {
            continue;
        };
        let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if String::from_utf8_lossy(&cmd).contains(&dir.display().to_string()) {
            kill(pid);
        }
    }
}

/// What a cloud image does at boot in Flat mode: cloud-init's own ConfigDrive reader turns
/// the drive's network_data.json into a network configuration, which the VM applies.
const CONFIG_DRIVE_READER: &str = r#"
import json, sys
from cloudinit.sources.helpers import openstack
r = openstack.ConfigDriveReader(sys.argv[1]).read_v2()
macs = {m: "eth%d" % i for i, m in enumerate(sys.argv[2].split(","))}
print(json.dumps(openstack.convert_net_json(r["networkdata"], known_macs=macs)))
"#;

/// Attaches the instance's config drive (`novanet config-drive`), reads it with cloud-init
/// and configures the VM's interfaces and default route statically. Writes the lease files
/// (`source=config-drive`) that tests read a VM's address from.
fn boot_from_config_drive(o: &LabOpts, instance: &str, vm_ns: &str, ports: &[VmPort]) -> Res<()> {
    let iso = o.dir.join(format!("vm-{instance}.iso"));
    client(
        o,
        &["config-drive", instance, "-o", &iso.display().to_string()],
    )?;
    let root = o.dir.join(format!("vm-{instance}-drive"));
    let _ = std::fs::remove_dir_all(&root);
    let iso_s = iso.display().to_string();
    for f in sh("isoinfo", &["-R", "-f", "-i", &iso_s])?.lines() {
        let out = Command::new("isoinfo")
            .args(["-R", "-x", f, "-i", &iso_s])
            .output()
            .map_err(|e| format!("isoinfo: {e}"))?;
        // Directories extract to nothing; the drive's files all have content.
        if out.stdout.is_empty() {
            continue;
        }
        let p = root.join(f.trim_start_matches('/'));
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).map_err(|e| e.to_string())?;
        }
        std::fs::write(&p, out.stdout).map_err(|e| e.to_string())?;
    }
    let macs: Vec<&str> = ports.iter().map(|p| p.mac.as_str()).collect();
    let net = sh(
        "/usr/bin/python3",
        &[
            "-c",
            CONFIG_DRIVE_READER,
            &root.display().to_string(),
            &macs.join(","),
        ],
    )?;
    let net: Value = serde_json::from_str(&net).map_err(|e| format!("cloud-init said: {e}"))?;
    for (i, _) in ports.iter().enumerate() {
        let eth = format!("eth{i}");
        let Some(iface) = net["config"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["name"] == eth.as_str())
        else {
            continue;
        };
        for s in iface["subnets"].as_array().into_iter().flatten() {
            let (Some(addr), Some(mask)) = (s["address"].as_str(), s["netmask"].as_str()) else {
                continue;
            };
            let prefix = mask
                .parse::<std::net::Ipv4Addr>()
                .map(|m| u32::from(m).count_ones())
                .map_err(|_| format!("cloud-init gave netmask {mask:?}"))?;
            ip(&[
                "-n",
                vm_ns,
                "addr",
                "add",
                &format!("{addr}/{prefix}"),
                "dev",
                &eth,
            ])?;
            let mut router = String::new();
            for r in s["routes"].as_array().into_iter().flatten() {
                if let (Some("0.0.0.0"), Some(gw)) = (r["network"].as_str(), r["gateway"].as_str())
                {
                    ip(&[
                        "-n", vm_ns, "route", "replace", "default", "via", gw, "dev", &eth,
                    ])?;
                    router = gw.to_string();
                }
            }
            std::fs::write(
                lease_path(o, instance, i),
                format!("ip={addr} mask={prefix} router={router} source=config-drive\n"),
            )
            .map_err(|e| e.to_string())?;
        }
    }
    Ok(())
}

fn kill(pid: u32) {
    let _ = Command::new("kill").arg(pid.to_string()).status();
}

fn unplug(o: &LabOpts, st: &mut LabState, instance: &str) -> Res<()> {
    let Some(pos) = st.vms.iter().position(|v| v.0 == instance) else {
        return Err(format!("no lab VM named {instance}"));
    };
    let (_, vm_ns, host, vnet) = st.vms.remove(pos);
    end_cloudpipe(o, instance);
    st.pids.retain(|(what, pid)| {
        let mine = *what == format!("udhcpc-{instance}") || *what == format!("boot-{instance}");
        if mine {
            kill(*pid);
        }
        !mine
    });
    for v in vnet.split(',') {
        let _ = ip(&["-n", &ns(o, &host), "link", "del", v]);
    }
    let _ = ip(&["netns", "del", &vm_ns]);
    st.namespaces.retain(|n| *n != vm_ns);
    Ok(())
}

pub fn down(o: &LabOpts) -> Res<()> {
    // Under the lock no hypervisor pass is half done; once it is killed, none starts.
    let st = if o.dir.join("lab.lock").exists() {
        with_state(o, |st| {
            for (_, pid) in st.pids.iter().filter(|(w, _)| w == "hypervisor") {
                kill(*pid);
            }
            Ok(())
        })?;
        load(o)
    } else {
        load(o)
    };
    // Agents first (so nothing restarts dnsmasq), then the daemons they started, by PID.
    for (_, pid) in st.pids.iter().rev() {
        kill(*pid);
    }
    for vm in &st.vms {
        end_cloudpipe(o, &vm.0);
    }
    // The agents' qemu VMs (daemonized: no agent ends them), by the PID in each VM's
    // directory, checked to be that VM's qemu.
    for (host, _) in HOSTS {
        let vms = o.dir.join(format!("agent-{host}/vms"));
        for e in std::fs::read_dir(&vms).into_iter().flatten().flatten() {
            let uuid = e.file_name().to_string_lossy().into_owned();
            let pid = std::fs::read_to_string(e.path().join("pid"))
                .ok()
                .and_then(|p| p.trim().parse::<u32>().ok());
            if let Some(pid) = pid {
                let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                if String::from_utf8_lossy(&cmd).contains(&format!("novanet-{uuid}")) {
                    kill(pid);
                }
            }
        }
    }
    // libvirt's VMs: libvirtd (ended above) leaves its domains running.
    for host in &st.libvirt_hosts {
        for pid in libvirtd::qemu_pids(&libvirtd::dir(&o.dir, host), &o.dir) {
            kill(pid);
        }
    }
    // dnsmasq (networks/) and radvd (ra/), by the PID in their files.
    for (host, sub) in HOSTS
        .iter()
        .flat_map(|(h, _)| ["networks", "ra"].map(|d| (h, d)))
    {
        let dir = o.dir.join(format!("agent-{host}/{sub}"));
        for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.ends_with(".pid") {
                if let Some(pid) = std::fs::read_to_string(e.path())
                    .ok()
                    .and_then(|p| p.trim().parse::<u32>().ok())
                {
                    // Only a daemon of ours: its command line names this pid file.
                    let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                    if String::from_utf8_lossy(&cmd).contains(&e.path().display().to_string()) {
                        kill(pid);
                    }
                }
            }
        }
    }
    let mut errors = Vec::new();
    for n in st.namespaces.iter().rev() {
        if let Err(e) = ip(&["netns", "del", n]) {
            errors.push(e);
        }
    }
    let _ = std::fs::remove_dir_all(&o.dir);
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors.join("; "))
    }
}

/// The command socket of an instance's real VM (`VmSpec::command_socket`, the agent's
/// `cmd.sock`), on whichever lab host runs it.
fn command_socket(o: &LabOpts, instance: &str) -> Res<PathBuf> {
    let uuid = find_server(o, instance)?["id"]
        .as_str()
        .map(String::from)
        .ok_or_else(|| format!("{instance} has no id"))?;
    HOSTS
        .iter()
        .map(|(h, _)| o.dir.join(format!("agent-{h}/vms/{uuid}/cmd.sock")))
        .find(|p| p.exists())
        .ok_or_else(|| format!("{instance} has no running VM (yet)"))
}

fn exec(o: &LabOpts, node: &str, cmd: &[String]) -> Res<()> {
    let st = load(o);
    let target = ns(o, node);
    if st.qemu_vms && !st.namespaces.contains(&target) && !HOSTS.iter().any(|(h, _)| h == &node) {
        // A real VM: its command channel, not a namespace.
        let socket = command_socket(o, node)?;
        let (out, code) = vm_exec::run(&socket, cmd, Duration::from_secs(60))?;
        print!("{out}");
        std::process::exit(code);
    }
    if !st.namespaces.contains(&target) {
        return Err(format!(
            "no lab node {node} (hosts: controller, compute-1, compute-2, outside, or an instance)"
        ));
    }
    let bin_dir = binary()
        .parent()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let path = format!("{bin_dir}:{}", std::env::var("PATH").unwrap_or_default());
    let status = Command::new("ip")
        .args(["netns", "exec", &target])
        .args(cmd)
        .envs(env_for(o))
        .env("PATH", path)
        .status()
        .map_err(|e| e.to_string())?;
    std::process::exit(status.code().unwrap_or(1));
}

pub fn run(cmd: LabCmd) -> Result<(), String> {
    match cmd {
        LabCmd::Up {
            opts,
            bare,
            config,
            manager,
            segment_driver,
            vms,
            db,
            two_servers,
            multi_host,
            share_address,
            ipv6,
        } => up_with(
            &opts,
            &Setup {
                bare,
                manager,
                segments: segment_driver,
                config,
                vms,
                db,
                two_servers,
                multi_host,
                share_address,
                ipv6,
            },
        ),
        LabCmd::Down { opts } => down(&opts),
        LabCmd::Exec { opts, node, cmd } => exec(&opts, &node, &cmd),
        LabCmd::Plug { opts, instance } => with_state(&opts, |st| {
            st.held.retain(|n| *n != instance);
            if st.vms.iter().any(|v| v.0 == instance) {
                return Ok(()); // the hypervisor was first
            }
            plug(&opts, st, &instance).map(|_| ())
        }),
        LabCmd::Unplug { opts, instance } => with_state(&opts, |st| {
            unplug(&opts, st, &instance)?;
            st.held.push(instance.clone());
            Ok(())
        }),
        LabCmd::Serve { opts, node, port } => with_state(&opts, |st| serve(&opts, st, &node, port)),
        LabCmd::RestartAgent { opts, host } => {
            with_state(&opts, |st| restart_agent(&opts, st, &host))
        }
        LabCmd::Hypervisor { opts } => hypervisor(&opts),
    }
}
