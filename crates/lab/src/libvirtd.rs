//! One libvirtd per lab host that runs its VMs under libvirt (`lab up --vms mixed`).
//!
//! A root libvirtd always uses the system daemon's fixed paths (`/etc/libvirt`,
//! `/run/libvirt`, `/var/lib/libvirt`, `/var/cache/libvirt`, `/var/log/libvirt`): two on one
//! machine would share sockets and state. So each runs in its host's network namespace
//! under `ip netns exec` (which already gives it a private mount namespace) with the lab's
//! own directories bind-mounted over those paths. The host's `/etc/libvirt` and the
//! machine's own network and firewall stay untouched: no default network is defined, and
//! libvirtd's network driver has nothing to start. Clients reach the daemon by its socket
//! file, `qemu:///system?socket=DIR/run/libvirt-sock`, from any mount namespace.

use std::path::{Path, PathBuf};

/// The directories bind-mounted over the system daemon's, in mount order.
const MOUNTS: &[(&str, &str)] = &[
    ("etc", "/etc/libvirt"),
    ("run", "/run/libvirt"),
    ("lib", "/var/lib/libvirt"),
    ("cache", "/var/cache/libvirt"),
    ("log", "/var/log/libvirt"),
];

/// The qemu driver's settings: qemu runs as root with no confinement, cgroups or mount
/// namespace of its own (none of which this container offers), and writes its stdout to a
/// file instead of through virtlogd, so one daemon is all a host needs.
pub const QEMU_CONF: &str = "\
user = \"root\"
group = \"root\"
dynamic_ownership = 0
remember_owner = 0
security_driver = \"none\"
namespaces = [ ]
cgroup_controllers = [ ]
stdio_handler = \"file\"
";

/// Only root (the agent) may connect to the socket; no TCP listener.
pub const LIBVIRTD_CONF: &str = "\
unix_sock_group = \"root\"
unix_sock_rw_perms = \"0700\"
unix_sock_ro_perms = \"0700\"
auth_unix_rw = \"none\"
auth_unix_ro = \"none\"
log_outputs = \"3:stderr\"
";

/// Debian's libvirt is built to run qemu as `libvirt-qemu:libvirt-qemu` and looks both up
/// before it reads qemu.conf; they exist only with `libvirt-daemon-system`, which this
/// machine does not install (it brings services and a default network). The daemon gets
/// its own copies of passwd and group with the entries added, so the machine's are kept.
pub fn passwd_with_qemu_user(passwd: &str) -> String {
    with_entry(
        passwd,
        "libvirt-qemu",
        "libvirt-qemu:x:64055:64055:Libvirt Qemu:/var/lib/libvirt:/usr/sbin/nologin",
    )
}

pub fn group_with_qemu_groups(group: &str) -> String {
    let g = with_entry(group, "kvm", "kvm:x:64054:");
    with_entry(&g, "libvirt-qemu", "libvirt-qemu:x:64055:")
}

fn with_entry(table: &str, name: &str, entry: &str) -> String {
    let mut t = table.to_string();
    if !t.lines().any(|l| l.split(':').next() == Some(name)) {
        if !t.is_empty() && !t.ends_with('\n') {
            t.push('\n');
        }
        t.push_str(entry);
        t.push('\n');
    }
    t
}

/// The script that mounts the lab's directories and execs libvirtd (so its PID is the
/// one `spawn` returns). Its one argument is the daemon's directory.
pub const START_SCRIPT: &str = "\
set -e
d=$1
mount --bind \"$d/passwd\" /etc/passwd
mount --bind \"$d/group\" /etc/group
mount --bind \"$d/etc\" /etc/libvirt
mount --bind \"$d/run\" /run/libvirt
mount --bind \"$d/lib\" /var/lib/libvirt
mount --bind \"$d/cache\" /var/cache/libvirt
mount --bind \"$d/log\" /var/log/libvirt
exec libvirtd --config \"$d/etc/libvirtd.conf\" --pid-file \"$d/libvirtd.pid\"
";

/// A lab host's libvirtd directory.
pub fn dir(lab_dir: &Path, host: &str) -> PathBuf {
    lab_dir.join(format!("libvirt-{host}"))
}

/// The connection URI the host's agent is given (`libvirt_uri`).
pub fn uri(dir: &Path) -> String {
    format!(
        "qemu:///system?socket={}",
        dir.join("run/libvirt-sock").display()
    )
}

/// Writes the daemon's files under `dir`; makes the system paths it mounts over if this
/// machine has none (empty directories, as libvirt-daemon-system would make them).
pub fn prepare(dir: &Path) -> Result<(), String> {
    let io = |p: &Path| {
        let p = p.display().to_string();
        move |e: std::io::Error| format!("{p}: {e}")
    };
    for (sub, target) in MOUNTS {
        let d = dir.join(sub);
        std::fs::create_dir_all(&d).map_err(io(&d))?;
        std::fs::create_dir_all(target).map_err(io(Path::new(target)))?;
    }
    let read = |p: &str| std::fs::read_to_string(p).map_err(io(Path::new(p)));
    let files = [
        ("etc/qemu.conf", QEMU_CONF.to_string()),
        ("etc/libvirtd.conf", LIBVIRTD_CONF.to_string()),
        ("passwd", passwd_with_qemu_user(&read("/etc/passwd")?)),
        ("group", group_with_qemu_groups(&read("/etc/group")?)),
        ("start.sh", START_SCRIPT.to_string()),
    ];
    for (name, text) in files {
        let p = dir.join(name);
        std::fs::write(&p, text).map_err(io(&p))?;
    }
    Ok(())
}

/// The PIDs of the qemu processes this daemon started (libvirt keeps one file per running
/// domain in `run/qemu/NAME.pid`), each checked to be a qemu whose command line names the
/// lab's directory. libvirtd leaves its domains running when it ends, so `lab down` ends
/// these itself.
pub fn qemu_pids(dir: &Path, lab_dir: &Path) -> Vec<u32> {
    let mut pids = Vec::new();
    for e in std::fs::read_dir(dir.join("run/qemu"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let path = e.path();
        if path.extension().is_none_or(|x| x != "pid") {
            continue;
        }
        let Some(pid) = std::fs::read_to_string(&path)
            .ok()
            .and_then(|p| p.trim().parse::<u32>().ok())
        else {
            continue;
        };
        let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let cmd = String::from_utf8_lossy(&cmd);
        if cmd.contains("qemu-system") && cmd.contains(&lab_dir.display().to_string()) {
            pids.push(pid);
        }
    }
    pids
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_qemu_user_and_groups_are_added_once() {
        let p = passwd_with_qemu_user("root:x:0:0:root:/root:/bin/bash");
        assert_eq!(p.lines().count(), 2);
        assert!(p.ends_with("/usr/sbin/nologin\n"));
        assert_eq!(passwd_with_qemu_user(&p), p);
        let g = group_with_qemu_groups("root:x:0:\nkvm:x:993:\n");
        assert_eq!(g, "root:x:0:\nkvm:x:993:\nlibvirt-qemu:x:64055:\n");
        assert_eq!(group_with_qemu_groups(&g), g);
    }

    #[test]
    fn the_uri_names_the_hosts_socket() {
        let d = dir(Path::new("/tmp/lab"), "compute-2");
        assert_eq!(
            uri(&d),
            "qemu:///system?socket=/tmp/lab/libvirt-compute-2/run/libvirt-sock"
        );
    }
}
