//! `compute_driver = qemu`: qemu started directly (no libvirt), one process per VM,
//! daemonized with its PID in the VM's directory; TCG unless told otherwise (nested KVM
//! does not work on every host).
//!
//! A VM's directory (`vms/<uuid>/`) holds `spec.json`, `pid`, `qmp.sock`, `console.log`
//! and the lifecycle's marks; an agent restart finds running VMs there and adopts them.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::{Disk, Hypervisor, VmSpec, SPEC_FILE};
use crate::sys::run;

/// How qemu runs on this host.
#[derive(Clone, Debug)]
pub struct QemuOptions {
    pub binary: String,
    /// `tcg`, or `kvm` where nested virtualization works.
    pub accel: String,
    pub cpu: String,
}

impl Default for QemuOptions {
    fn default() -> Self {
        QemuOptions {
            binary: "qemu-system-x86_64".into(),
            accel: std::env::var("NOVANET_QEMU_ACCEL").unwrap_or_else(|_| "tcg".into()),
            cpu: "max".into(),
        }
    }
}

/// qemu's arguments for `spec` (after the binary), its files in `dir`.
pub fn argv(spec: &VmSpec, dir: &Path, o: &QemuOptions) -> Vec<String> {
    let p = |f: &str| dir.join(f).to_string_lossy().into_owned();
    let mut a: Vec<String> = vec![
        "-name".into(),
        format!("instance-{},process=novanet-{}", spec.uuid, spec.uuid),
        "-uuid".into(),
        spec.uuid.clone(),
        "-machine".into(),
        format!("pc,accel={}", o.accel),
        "-cpu".into(),
        o.cpu.clone(),
        "-smp".into(),
        spec.vcpus.to_string(),
        "-m".into(),
        spec.memory_mb.to_string(),
        "-nodefaults".into(),
        "-display".into(),
        "none".into(),
        // Appended to, so that `console-log` shows every boot, as nova's console.log did.
        "-chardev".into(),
        format!(
            "file,id=console,path={},append=on",
            spec.console_log.to_string_lossy()
        ),
        "-serial".into(),
        "chardev:console".into(),
    ];
    if let Some(sock) = &spec.command_socket {
        // The guest's ttyS1; qemu listens and never waits for a client.
        a.push("-chardev".into());
        a.push(format!(
            "socket,id=command,path={},server=on,wait=off",
            sock.to_string_lossy()
        ));
        a.extend(["-serial".into(), "chardev:command".into()]);
    }
    let control: Vec<String> = vec![
        "-qmp".into(),
        format!("unix:{},server=on,wait=off", p("qmp.sock")),
        "-daemonize".into(),
        "-pidfile".into(),
        p("pid"),
    ];
    a.extend(control);
    match &spec.disk {
        Some(Disk::Overlay { path }) => {
            a.push("-drive".into());
            a.push(format!(
                "file={},if=virtio,format=qcow2",
                path.to_string_lossy()
            ));
        }
        Some(Disk::Snapshot { base, format }) => {
            a.push("-drive".into());
            a.push(format!(
                "file={},if=virtio,format={format},snapshot=on",
                base.to_string_lossy()
            ));
        }
        None => {}
    }
    if let Some(k) = &spec.kernel {
        a.extend(["-kernel".into(), k.to_string_lossy().into_owned()]);
    }
    if let Some(i) = &spec.initrd {
        a.extend(["-initrd".into(), i.to_string_lossy().into_owned()]);
    }
    if let Some(c) = &spec.cmdline {
        a.extend(["-append".into(), c.clone()]);
    }
    for (i, n) in spec.nics.iter().enumerate() {
        a.push("-netdev".into());
        a.push(format!(
            "tap,id=net{i},ifname={},script=no,downscript=no",
            n.device
        ));
        a.push("-device".into());
        // No option ROM: the guest boots from its disk or kernel, never over the network.
        a.push(format!(
            "virtio-net-pci,netdev=net{i},mac={},romfile=",
            n.mac
        ));
    }
    a
}

/// The `ip` commands that make a VM's taps and plug them into their bridges.
pub fn tap_commands(spec: &VmSpec) -> Vec<Vec<String>> {
    let mut c = Vec::new();
    for n in &spec.nics {
        let d = n.device.to_string();
        c.push(
            ["tuntap", "add", "dev", &d, "mode", "tap"]
                .map(String::from)
                .to_vec(),
        );
        c.push(
            ["link", "set", &d, "master", n.bridge.as_str(), "up"]
                .map(String::from)
                .to_vec(),
        );
    }
    c
}

pub struct QemuDriver {
    dir: PathBuf,
    options: QemuOptions,
}

impl QemuDriver {
    pub fn new(dir: PathBuf) -> QemuDriver {
        QemuDriver {
            dir,
            options: QemuOptions::default(),
        }
    }

    pub fn with_options(dir: PathBuf, options: QemuOptions) -> QemuDriver {
        QemuDriver { dir, options }
    }

    fn vm_dir(&self, uuid: &str) -> PathBuf {
        self.dir.join(uuid)
    }
}

/// The PID of the qemu running VM `uuid`, if it runs: the pid file's process, checked to
/// be that VM's qemu (a PID may have been reused since).
pub fn running_pid(dir: &Path, uuid: &str) -> Option<u32> {
    let pid: u32 = std::fs::read_to_string(dir.join("pid"))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let text = String::from_utf8_lossy(&cmdline);
    text.contains(&format!("novanet-{uuid}")).then_some(pid)
}

fn device_exists(dev: &str) -> bool {
    Path::new("/sys/class/net").join(dev).exists()
}

/// Powers a VM off: SIGTERM (qemu exits at once), SIGKILL after 5 s.
fn power_off(dir: &Path, uuid: &str) {
    if let Some(pid) = running_pid(dir, uuid) {
        let _ = crate::sys::signal(pid, "TERM");
        let start = Instant::now();
        while running_pid(dir, uuid).is_some() {
            if start.elapsed() > Duration::from_secs(5) {
                let _ = crate::sys::signal(pid, "KILL");
                std::thread::sleep(Duration::from_millis(200));
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Removes the taps of the VM whose directory is `dir` (as its spec names them).
pub fn remove_taps(dir: &Path) -> Result<(), String> {
    let spec: Option<VmSpec> = std::fs::read_to_string(dir.join(SPEC_FILE))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok());
    for n in spec.iter().flat_map(|s| &s.nics) {
        if device_exists(n.device.as_str()) {
            run("ip", &["link", "del", n.device.as_str()], None).map_err(|e| e.to_string())?;
        }
    }
    Ok(())
}

/// Ends a VM and removes it: its taps and its directory.
fn destroy(dir: &Path, uuid: &str) -> Result<(), String> {
    power_off(dir, uuid);
    remove_taps(dir)?;
    std::fs::remove_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))
}

/// Makes `spec`'s taps on their bridges; a tap left by a VM that stopped is reused as it is.
pub fn make_taps(spec: &VmSpec) -> Result<(), String> {
    for cmd in tap_commands(spec) {
        let dev = &cmd[3];
        if cmd[0] == "tuntap" && device_exists(dev) {
            continue;
        }
        let argv: Vec<&str> = cmd.iter().map(String::as_str).collect();
        run("ip", &argv, None).map_err(|e| e.to_string())?;
    }
    Ok(())
}

fn start(spec: &VmSpec, dir: &Path, o: &QemuOptions) -> Result<(), String> {
    make_taps(spec)?;
    let args = argv(spec, dir, o);
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    // -daemonize: qemu returns once the VM runs, or fails with its reason on stderr.
    run(&o.binary, &argv, None)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

impl Hypervisor for QemuDriver {
    fn dir(&self) -> &Path {
        &self.dir
    }

    fn running(&mut self) -> Result<BTreeSet<String>, String> {
        Ok(std::fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|u| super::is_uuid(u) && running_pid(&self.vm_dir(u), u).is_some())
            .collect())
    }

    fn start(&mut self, spec: &VmSpec) -> Result<(), String> {
        start(spec, &self.vm_dir(&spec.uuid), &self.options)
    }

    fn stop(&mut self, uuid: &str) -> Result<(), String> {
        power_off(&self.vm_dir(uuid), uuid);
        match running_pid(&self.vm_dir(uuid), uuid) {
            Some(pid) => Err(format!("qemu (PID {pid}) did not end")),
            None => Ok(()),
        }
    }

    fn destroy(&mut self, uuid: &str) -> Result<(), String> {
        destroy(&self.vm_dir(uuid), uuid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hypervisor::tests::spec;

    #[test]
    fn the_argument_vector() {
        let s = spec();
        let dir = Path::new("/var/lib/novanet/agent-c1/vms/0b7a7b56-8f7a-4f51-a8f5-7cf3a4c3b0f1");
        let o = QemuOptions {
            binary: "qemu-system-x86_64".into(),
            accel: "tcg".into(),
            cpu: "max".into(),
        };
        let want = "\
-name instance-0b7a7b56-8f7a-4f51-a8f5-7cf3a4c3b0f1,process=novanet-0b7a7b56-8f7a-4f51-a8f5-7cf3a4c3b0f1
-uuid 0b7a7b56-8f7a-4f51-a8f5-7cf3a4c3b0f1
-machine pc,accel=tcg
-cpu max
-smp 1
-m 512
-nodefaults
-display none
-chardev file,id=console,path=/var/lib/novanet/agent-c1/vms/0b7a7b56-8f7a-4f51-a8f5-7cf3a4c3b0f1/console.log,append=on
-serial chardev:console
-chardev socket,id=command,path=/var/lib/novanet/agent-c1/vms/0b7a7b56-8f7a-4f51-a8f5-7cf3a4c3b0f1/cmd.sock,server=on,wait=off
-serial chardev:command
-qmp unix:/var/lib/novanet/agent-c1/vms/0b7a7b56-8f7a-4f51-a8f5-7cf3a4c3b0f1/qmp.sock,server=on,wait=off
-daemonize
-pidfile /var/lib/novanet/agent-c1/vms/0b7a7b56-8f7a-4f51-a8f5-7cf3a4c3b0f1/pid
-drive file=/var/lib/novanet/agent-c1/vms/0b7a7b56-8f7a-4f51-a8f5-7cf3a4c3b0f1/disk.qcow2,if=virtio,format=qcow2
-netdev tap,id=net0,ifname=vnet0,script=no,downscript=no
-device virtio-net-pci,netdev=net0,mac=fa:16:3e:00:00:01,romfile=
-netdev tap,id=net1,ifname=vnet3,script=no,downscript=no
-device virtio-net-pci,netdev=net1,mac=fa:16:3e:00:00:02,romfile=
";
        // One option and its value per line, for a readable snapshot.
        let mut got = String::new();
        for a in argv(&s, dir, &o) {
            if a.starts_with('-') && !got.is_empty() {
                got.push('\n');
            } else if !got.is_empty() {
                got.push(' ');
            }
            got.push_str(&a);
        }
        got.push('\n');
        assert_eq!(got, want);
    }

    #[test]
    fn a_kernel_boot_and_a_temporary_overlay() {
        let mut s = spec();
        s.nics.truncate(1);
        s.disk = Some(Disk::Snapshot {
            base: "/images/abc".into(),
            format: "raw".into(),
        });
        s.kernel = Some("/images/k".into());
        s.initrd = Some("/images/r".into());
        s.cmdline = Some("console=ttyS0 quiet".into());
        let a = argv(&s, Path::new("/vms/x"), &QemuOptions::default()).join(" ");
        assert!(a.contains("-drive file=/images/abc,if=virtio,format=raw,snapshot=on"));
        assert!(a.contains("-kernel /images/k -initrd /images/r -append console=ttyS0 quiet"));
    }

    #[test]
    fn taps_are_made_and_plugged_into_their_bridges() {
        let c: Vec<String> = tap_commands(&spec()).iter().map(|c| c.join(" ")).collect();
        assert_eq!(
            c,
            [
                "tuntap add dev vnet0 mode tap",
                "link set vnet0 master br100 up",
                "tuntap add dev vnet3 mode tap",
                "link set vnet3 master br101 up"
            ]
        );
    }
}
