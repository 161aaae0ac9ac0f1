//! End-to-end with real VMs: qemu (TCG) on the lab's compute hosts, booted from the test
//! image `manage image build-test` makes. Needs root, qemu-system-x86_64 and apt-get (for
//! the image's packages); skips otherwise. The libvirt test also needs libvirtd and virsh
//! (scripts/setup.sh installs them).

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;

fn have_qemu() -> bool {
    let ok = Command::new("sh")
        .args(["-c", "command -v qemu-system-x86_64 && command -v apt-get"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!("skipping the real-VM lab test: it needs qemu-system-x86_64 and apt-get");
    }
    ok
}

/// The server's `status` and `OS-EXT-STS:task_state`, as the API shows them.
fn status(lab: &Lab, server: &str) -> (String, String) {
    let v: serde_json::Value =
        serde_json::from_str(&lab.novanet(&["show", server, "--json"])).expect("show --json");
    let s = |k: &str| v[k].as_str().unwrap_or("-").to_string();
    (s("status"), s("OS-EXT-STS:task_state"))
}

fn console(lab: &Lab, server: &str) -> String {
    lab.novanet(&["console-log", server])
}

/// How many times the test image finished booting, by its console.
fn boots(lab: &Lab) -> usize {
    boots_of(lab, "cirros")
}

fn boots_of(lab: &Lab, server: &str) -> usize {
    console(lab, server).matches("novanet-test: ready").count()
}

/// The seed's cirros as a real VM: metadata read from inside it, a floating IP from
/// `outside`, a security group rule opening and closing a port, stop, start, reboot and the
/// console as nova has them, and a delete that leaves no VM, tap or rule behind.
#[test]
fn a_real_vm_through_its_lifecycle() {
    if !have_qemu() {
        return;
    }
    let Some(lab) = Lab::up_with("vm", &["--vms", "qemu"]) else {
        return;
    };
    // The guest read its hostname from the metadata service (169.254.169.254, DNATed by the
    // controller), and the console reached the API through the driver's report.
    wait_until("cirros's console in the API", patience(30), || {
        console(&lab, "cirros").contains("novanet-test: hostname cirros")
    });
    let log = console(&lab, "cirros");
    assert!(
        log.contains("novanet-test: lease eth0 10.0.0.2/24 router 10.0.0.1"),
        "{log}"
    );
    assert!(!log.contains('\r') && !log.contains('\u{1b}'), "{log:?}");
    assert_eq!(status(&lab, "cirros"), ("ACTIVE".into(), "-".into()));

    // `lab exec` into the VM (its command channel): the seed's `ip a` and `route -n` (its
    // address, the controller as its gateway), the gateway pinged from inside, and a
    // command's exit code and quoted arguments passed on.
    let addr = lab.ok("cirros", &["ip", "-4", "addr", "show", "eth0"]);
    assert!(addr.contains("inet 10.0.0.2/24"), "{addr}");
    let routes = lab.ok("cirros", &["ip", "route"]);
    assert!(routes.contains("default via 10.0.0.1 dev eth0"), "{routes}");
    assert!(lab.succeeds("cirros", &["ping", "-c", "1", "-W", "2", "10.0.0.1"]));
    assert_root_only(&lab.dir.join("agent-compute-1/vms"));
    let failed = lab.exec("cirros", &["sh", "-c", "echo out; exit 3"]);
    assert_eq!(failed.status.code(), Some(3));
    assert_eq!(text(&failed.stdout), "out\n");
    assert_eq!(lab.ok("cirros", &["echo", "it's", "a  b"]), "it's a  b\n");

    // A floating IP, reached from outside; the VM serves its hostname on port 80.
    lab.novanet(&[
        "manage",
        "floating",
        "create",
        "--pool",
        "nova",
        "--ip_range",
        "68.99.26.170/31",
    ]);
    lab.novanet(&["floating-ip-create"]);
    lab.novanet(&["floating-ip-associate", "cirros", "68.99.26.170"]);
    lab.open_port("icmp", "-1");
    wait_until("outside pings the floating IP", patience(20), || {
        lab.succeeds("outside", &["ping", "-c", "1", "-W", "1", "68.99.26.170"])
    });
    let web = || curl(&lab, "outside", "http://68.99.26.170/");
    assert_eq!(web(), None, "port 80 is open before any rule admits it");
    let rule = ["default", "tcp", "80", "80", "0.0.0.0/0"];
    let mut add = vec!["secgroup-add-rule"];
    add.extend(rule);
    lab.novanet(&add);
    wait_until("a rule opens port 80", patience(20), || {
        web().as_deref() == Some("cirros.novalocal")
    });
    let mut del = vec!["secgroup-delete-rule"];
    del.extend(rule);
    lab.novanet(&del);
    wait_until("its removal closes port 80", patience(20), || {
        web().is_none()
    });

    // Stop: the VM is powered off and the API says so; start: it boots again.
    lab.novanet(&["stop", "cirros"]);
    wait_until("SHUTOFF", patience(20), || {
        status(&lab, "cirros") == ("SHUTOFF".into(), "-".into())
    });
    assert!(!lab.succeeds("outside", &["ping", "-c", "1", "-W", "1", "68.99.26.170"]));
    let stopped = lab.exec("controller", &["novanet", "stop", "cirros"]);
    assert!(!stopped.status.success(), "a second stop is refused");
    assert!(
        text(&stopped.stderr).contains("vm_state stopped"),
        "{}",
        text(&stopped.stderr)
    );
    lab.novanet(&["start", "cirros"]);
    wait_until("ACTIVE and booted again", patience(40), || {
        status(&lab, "cirros") == ("ACTIVE".into(), "-".into()) && boots(&lab) >= 2
    });
    wait_until("the floating IP answers again", patience(20), || {
        lab.succeeds("outside", &["ping", "-c", "1", "-W", "1", "68.99.26.170"])
    });
    lab.novanet(&["reboot", "--hard", "cirros"]);
    wait_until("rebooted", patience(40), || {
        status(&lab, "cirros") == ("ACTIVE".into(), "-".into()) && boots(&lab) >= 3
    });
    // The same VM throughout: its tap is still vnet0 on br100.
    let master = lab.ok("compute-1", &["cat", "/sys/class/net/vnet0/master/uevent"]);
    assert!(master.contains("INTERFACE=br100"), "{master}");

    // A VM that dies is reported, not revived.
    let vms = lab.dir.join("agent-compute-1/vms");
    let pid_file = std::fs::read_dir(&vms)
        .unwrap()
        .flatten()
        .map(|e| e.path().join("pid"))
        .find(|p| p.exists())
        .expect("the VM's pid file");
    let pid = std::fs::read_to_string(&pid_file).unwrap();
    assert!(Command::new("kill")
        .args(["-KILL", pid.trim()])
        .status()
        .unwrap()
        .success());
    wait_until("the dead VM reported SHUTOFF", patience(20), || {
        status(&lab, "cirros").0 == "SHUTOFF"
    });
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(status(&lab, "cirros").0, "SHUTOFF", "revived by the agent");

    lab.novanet(&["delete", "cirros"]);
    wait_until("the VM, its tap and its rules to go", patience(30), || {
        !lab.link_exists("compute-1", "vnet0")
            && std::fs::read_dir(&vms).map_or(true, |mut d| d.next().is_none())
            && !lab
                .ok("compute-1", &["nft", "list", "ruleset"])
                .contains("vnet0")
            && !lab.ok("compute-1", &["iptables-save"]).contains("vnet0")
    });
}

/// Real VMs on a VLAN-manager project network carried over VXLAN between the hosts: one on
/// each compute host, both leased by the project's dnsmasq on the controller, both reading
/// their metadata, both reached through the project's gateway.
#[test]
fn real_vms_on_a_vxlan_project_network() {
    if !have_qemu() {
        return;
    }
    let Some(lab) = Lab::up_with(
        "vmx",
        &[
            "--vms",
            "qemu",
            "--manager",
            "vlan",
            "--segment-driver",
            "vxlan",
        ],
    ) else {
        return;
    };
    lab.novanet(&[
        "boot",
        "--image",
        "novanet-test",
        "--flavor",
        "1",
        "--availability-zone",
        "nova:compute-2",
        "vm2",
    ]);
    for vm in ["cirros", "vm2"] {
        wait_until(&format!("{vm} read its metadata"), patience(60), || {
            console(&lab, vm).contains(&format!("novanet-test: hostname {vm}"))
        });
    }
    let log = console(&lab, "vm2");
    let ip = log
        .split("novanet-test: lease eth0 ")
        .nth(1)
        .and_then(|r| r.split('/').next())
        .expect("vm2's lease")
        .to_string();
    assert!(log.contains("router 10.0.0.1"), "{log}");
    // vm2's traffic crossed the VXLAN segment: compute-2 has the project's VXLAN device.
    let links = lab.ok("compute-2", &["ip", "-d", "link", "show", "type", "vxlan"]);
    assert!(links.contains("vxlan id 100"), "{links}");
    lab.open_port("tcp", "80");
    wait_until("the gateway reaches vm2's port 80", patience(20), || {
        curl(&lab, "controller", &format!("http://{ip}/")).as_deref() == Some("vm2.novalocal")
    });
}

/// The command channels under `vms` are sockets no one but their owner (root) may open:
/// connecting to a unix socket needs write permission on it. Each VM's directory (its
/// console log among it) is root's only.
fn assert_root_only(vms: &std::path::Path) {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    for e in std::fs::read_dir(vms).unwrap().flatten() {
        let m = e.metadata().unwrap();
        assert_eq!(m.mode() & 0o777, 0o700, "{}", e.path().display());
    }
    let socks: Vec<_> = std::fs::read_dir(vms)
        .unwrap()
        .flatten()
        .map(|e| e.path().join("cmd.sock"))
        .filter(|p| p.exists())
        .collect();
    assert!(
        !socks.is_empty(),
        "no command channel under {}",
        vms.display()
    );
    for p in socks {
        let m = std::fs::metadata(&p).unwrap();
        assert!(m.file_type().is_socket(), "{}", p.display());
        assert_eq!((m.uid(), m.mode() & 0o022), (0, 0), "{}", p.display());
    }
}

fn have_libvirt() -> bool {
    let ok = Command::new("sh")
        .args(["-c", "command -v libvirtd && command -v virsh"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!("skipping the libvirt lab test: it needs libvirtd and virsh (scripts/setup.sh)");
    }
    ok
}

/// A VM under libvirt: compute-2's agent (`--vms mixed`) runs it through compute-2's own
/// libvirtd. It gets its lease from novanet's dnsmasq and reads its metadata; the
/// controller pings it and compute-1 cannot; stop, start, a hard reboot and the console
/// work through the API; a restarted agent adopts the running domain instead of starting
/// another; a domain that dies is reported, not revived; a delete leaves no domain, tap,
/// rule or directory.
#[test]
fn a_vm_under_libvirt_through_its_lifecycle() {
    if !have_qemu() || !have_libvirt() {
        return;
    }
    let Some(lab) = Lab::up_with("vml", &["--vms", "mixed"]) else {
        return;
    };
    let uri = format!(
        "qemu:///system?socket={}",
        lab.dir.join("libvirt-compute-2/run/libvirt-sock").display()
    );
    let virsh = |args: &[&str]| -> String {
        let mut a = vec!["virsh", "-c", uri.as_str()];
        a.extend_from_slice(args);
        lab.ok("compute-2", &a)
    };
    lab.novanet(&[
        "boot",
        "--image",
        "novanet-test",
        "--flavor",
        "1",
        "--availability-zone",
        "nova:compute-2",
        "lv",
    ]);
    wait_until("lv read its metadata", patience(60), || {
        console(&lab, "lv").contains("novanet-test: hostname lv.novalocal")
    });
    let log = console(&lab, "lv");
    assert!(
        log.contains("novanet-test: lease eth0 10.0.0.3/24 router 10.0.0.1"),
        "{log}"
    );
    let v: serde_json::Value =
        serde_json::from_str(&lab.novanet(&["show", "lv", "--json"])).expect("show --json");
    let domain = format!("instance-{}", v["id"].as_str().expect("lv's id"));
    assert_eq!(virsh(&["list", "--name"]).trim(), domain);
    // The tap the plan named, on br100, handed to libvirt as it is.
    let ifs = virsh(&["domiflist", &domain]);
    assert!(ifs.contains("vnet0") && ifs.contains("ethernet"), "{ifs}");
    let master = lab.ok("compute-2", &["cat", "/sys/class/net/vnet0/master/uevent"]);
    assert!(master.contains("INTERFACE=br100"), "{master}");
    // The seed tutorial's reachability: the gateway host reaches the VM, a compute host not.
    assert!(lab.succeeds("controller", &["ping", "-c", "1", "-W", "2", "10.0.0.3"]));
    assert!(!lab.succeeds("compute-1", &["ping", "-c", "1", "-W", "1", "10.0.0.3"]));
    // Inside, through its command channel (a unix socket serial port under libvirt): its
    // address, and cirros (qemu driver, compute-1) on the same network.
    let addr = lab.ok("lv", &["ip", "-4", "addr", "show", "eth0"]);
    assert!(addr.contains("inet 10.0.0.3/24"), "{addr}");
    assert!(lab.succeeds("lv", &["ping", "-c", "1", "-W", "2", "10.0.0.2"]));
    assert_root_only(&lab.dir.join("agent-compute-2/vms"));

    lab.novanet(&["stop", "lv"]);
    wait_until("SHUTOFF", patience(20), || {
        status(&lab, "lv") == ("SHUTOFF".into(), "-".into())
    });
    assert_eq!(virsh(&["list", "--all", "--name"]).trim(), "");
    lab.novanet(&["start", "lv"]);
    wait_until("ACTIVE and booted again", patience(40), || {
        status(&lab, "lv") == ("ACTIVE".into(), "-".into()) && boots_of(&lab, "lv") >= 2
    });
    lab.novanet(&["reboot", "--hard", "lv"]);
    wait_until("rebooted", patience(40), || {
        status(&lab, "lv") == ("ACTIVE".into(), "-".into()) && boots_of(&lab, "lv") >= 3
    });
    assert!(virsh(&["domiflist", &domain]).contains("vnet0"));

    // A restarted agent adopts the running domain: the same domain ID, no new boot.
    let id = virsh(&["domid", &domain]);
    let out = lab.lab(&["restart-agent", "compute-2"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(
        virsh(&["domid", &domain]),
        id,
        "the domain was started again"
    );
    assert_eq!(boots_of(&lab, "lv"), 3);
    assert_eq!(status(&lab, "lv").0, "ACTIVE");

    // A domain whose qemu dies is reported SHUTOFF and not started again.
    let pid_file = lab
        .dir
        .join(format!("libvirt-compute-2/run/qemu/{domain}.pid"));
    let pid = std::fs::read_to_string(&pid_file).expect("libvirt's pid file");
    assert!(Command::new("kill")
        .args(["-KILL", pid.trim()])
        .status()
        .unwrap()
        .success());
    wait_until("the dead domain reported SHUTOFF", patience(20), || {
        status(&lab, "lv").0 == "SHUTOFF"
    });
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(status(&lab, "lv").0, "SHUTOFF", "revived by the agent");
    assert_eq!(virsh(&["list", "--all", "--name"]).trim(), "");

    lab.novanet(&["delete", "lv"]);
    let vms = lab.dir.join("agent-compute-2/vms");
    wait_until(
        "the domain, its tap and its rules to go",
        patience(30),
        || {
            virsh(&["list", "--all", "--name"]).trim().is_empty()
                && !lab.link_exists("compute-2", "vnet0")
                && std::fs::read_dir(&vms).map_or(true, |mut d| d.next().is_none())
                && !lab.iptables("compute-2").contains("vnet0")
                && !lab
                    .ok("compute-2", &["nft", "list", "ruleset"])
                    .contains("vnet0")
        },
    );
}
