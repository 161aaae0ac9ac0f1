//! `novanet manage image build-test`: a small bootable test image made from Debian's packages
//! alone — the cloud kernel and a busybox initramfs whose /init takes a DHCP lease on every
//! NIC and reads its hostname from the metadata service, printing both on the serial console
//! and serving the hostname over HTTP on port 80 (for security group and floating IP tests).
//!
//! The image is a kernel + initramfs pair, booted with qemu's `-kernel`/`-initrd` (nova's
//! AMI-style `kernel_id`/`ramdisk_id` images). A raw disk would need a boot loader and the
//! tools to make a file system and install it; the pair needs neither, no root, no loop
//! device, and boots in about three seconds under TCG.
//!
//! Rendering (the /init and DHCP scripts, the module load order, the cpio archive) is pure
//! and tested here; `build` runs `apt-get download` and `dpkg-deb -x` at the edge. Nothing
//! is installed on the machine: busybox-static's package would remove busybox.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The kernel package (a meta package: its dependency names the versioned one).
pub const KERNEL_META: &str = "linux-image-cloud-amd64";
/// The busybox built without shared libraries: the initramfs holds no libc.
pub const BUSYBOX_PACKAGE: &str = "busybox-static";
/// The modules a virtio NIC needs; their dependencies are found in the .ko files.
pub const WANTED_MODULES: &[&str] = &["virtio_pci", "virtio_net"];
/// The kernel command line the image expects (serial console; `novanet.poweroff` makes
/// /init power off after printing its lease and hostname).
pub const CMDLINE: &str = "console=ttyS0 quiet panic=-1";
/// What /init prints once every NIC has been tried, so that a reader knows it is done.
pub const READY_LINE: &str = "novanet-test: ready";
/// What the command channel (ttyS1) prints after each command: `MARK ID EXIT_CODE`.
pub const DONE_MARK: &str = "novanet-exec-done";

/// The files of a built test image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestImage {
    pub kernel: PathBuf,
    pub initrd: PathBuf,
}

impl TestImage {
    /// The image's files inside an output directory.
    pub fn in_dir(dir: &Path) -> TestImage {
        TestImage {
            kernel: dir.join("vmlinuz"),
            initrd: dir.join("initrd.img"),
        }
    }
}

#[derive(Debug)]
pub enum BuildError {
    /// A tool failed or could not be started.
    Tool { cmd: String, detail: String },
    /// A file could not be read or written.
    Io { path: PathBuf, err: std::io::Error },
    /// The packages did not hold what the image needs.
    Missing(String),
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BuildError::Tool { cmd, detail } => write!(
                f,
                "`{cmd}` failed: {detail} (the test image needs apt-get and dpkg-deb with Debian's package lists: run apt-get update)"
            ),
            BuildError::Io { path, err } => write!(f, "{}: {err}", path.display()),
            BuildError::Missing(what) => write!(f, "{what}"),
        }
    }
}

impl std::error::Error for BuildError {}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> BuildError + '_ {
    move |err| BuildError::Io {
        path: path.to_path_buf(),
        err,
    }
}

/// The shell script /init runs: modules in order, a lease on every NIC, the metadata
/// hostname, then power off (`novanet.poweroff` on the command line) or stay up with a
/// shell on the console.
pub fn init_script(modules: &[String]) -> String {
    let mut s = String::from(
        "#!/bin/sh\n\
         # novanet test image: lease on every NIC, metadata hostname, then poweroff or a shell.\n\
         /bin/busybox --install -s /bin\n\
         mount -t proc proc /proc\n\
         mount -t sysfs sysfs /sys\n\
         mount -t devtmpfs devtmpfs /dev 2>/dev/null\n\
         mkdir -p /run /tmp /var/run\n",
    );
    for m in modules {
        s.push_str(&format!("insmod /lib/modules/{m}.ko\n"));
    }
    // The command channel (the agent's second serial port, a unix socket on the VM's host):
    // lines `ID COMMAND`, each run by sh with its output and then `DONE_MARK ID CODE` sent
    // back. Raw and without echo, so that only output comes back, byte for byte.
    s.push_str(&format!(
        "if [ -e /dev/ttyS1 ] && stty -F /dev/ttyS1 raw -echo 2>/dev/null; then\n\
         \x20 ( while read -r id cmd; do sh -c \"$cmd\" </dev/null 2>&1; \
         echo \"{DONE_MARK} $id $?\"; done ) </dev/ttyS1 >/dev/ttyS1 2>&1 &\n\
         fi\n"
    ));
    s.push_str(
        "ip link set lo up\n\
         sleep 0.2\n\
         for dev in /sys/class/net/*; do\n\
         \x20 nic=${dev##*/}\n\
         \x20 [ \"$nic\" = lo ] && continue\n\
         \x20 ip link set \"$nic\" up\n\
         \x20 udhcpc -i \"$nic\" -s /etc/udhcpc.sh -t 10 -T 1 -A 1 -b -S 2>/dev/null\n\
         done\n\
         host=$(timeout 10 wget -qO- http://169.254.169.254/latest/meta-data/hostname 2>/dev/null)\n\
         echo \"novanet-test: hostname ${host:-none}\"\n\
         mkdir -p /www && echo \"${host:-none}\" > /www/index.html && httpd -p 80 -h /www\n",
    );
    s.push_str(&format!("echo \"{READY_LINE}\"\n"));
    s.push_str(
        "if grep -q novanet.poweroff /proc/cmdline; then poweroff -f; fi\n\
         while true; do setsid cttyhack sh; done\n",
    );
    s
}

/// Debian's busybox ships no default udhcpc script: this one sets the address, the first
/// router as default route (one default route however many NICs), resolv.conf, and prints
/// the lease on the console. (busybox's `ip route show default` lists every route: the
/// check for an existing default route reads the whole table.)
pub fn udhcpc_script() -> String {
    "#!/bin/sh\n\
     case \"$1\" in\n\
     deconfig)\n\
     \x20 ip -4 addr flush dev \"$interface\"\n\
     \x20 ;;\n\
     bound|renew)\n\
     \x20 ip -4 addr flush dev \"$interface\"\n\
     \x20 ip addr add \"$ip/$mask\" dev \"$interface\"\n\
     \x20 set -- $router\n\
     \x20 if [ -n \"$1\" ] && ! ip route | grep -q '^default'; then\n\
     \x20   ip route add default via \"$1\" dev \"$interface\"\n\
     \x20 fi\n\
     \x20 [ -n \"$dns\" ] && for d in $dns; do echo \"nameserver $d\"; done > /etc/resolv.conf\n\
     \x20 [ -n \"$hostname\" ] && hostname \"$hostname\"\n\
     \x20 echo \"novanet-test: lease $interface $ip/$mask router ${1:-none}\" > /dev/console\n\
     \x20 ;;\n\
     esac\n\
     exit 0\n"
        .to_string()
}

/// A module's dependencies as its `.modinfo` section says (`depends=a,b`).
pub fn modinfo_depends(ko: &[u8]) -> Vec<String> {
    const KEY: &[u8] = b"depends=";
    ko.split(|b| *b == 0)
        .filter_map(|field| field.strip_prefix(KEY))
        .flat_map(|v| {
            String::from_utf8_lossy(v)
                .split(',')
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .filter(|d| !d.is_empty())
        .collect()
}

/// The load order of `wanted` and their dependencies: every module after what it depends
/// on. `deps` maps a module name to its dependencies.
pub fn load_order(
    deps: &BTreeMap<String, Vec<String>>,
    wanted: &[&str],
) -> Result<Vec<String>, BuildError> {
    fn visit(
        name: &str,
        deps: &BTreeMap<String, Vec<String>>,
        done: &mut BTreeSet<String>,
        path: &mut Vec<String>,
        order: &mut Vec<String>,
    ) -> Result<(), BuildError> {
        if done.contains(name) {
            return Ok(());
        }
        if path.iter().any(|p| p == name) {
            return Err(BuildError::Missing(format!(
                "module dependency cycle through {name}"
            )));
        }
        let Some(ds) = deps.get(name) else {
            return Err(BuildError::Missing(format!(
                "module {name} is not in the kernel package"
            )));
        };
        path.push(name.to_string());
        for d in ds {
            visit(d, deps, done, path, order)?;
        }
        path.pop();
        done.insert(name.to_string());
        order.push(name.to_string());
        Ok(())
    }
    let mut done = BTreeSet::new();
    let mut order = Vec::new();
    for w in wanted {
        visit(w, deps, &mut done, &mut Vec::new(), &mut order)?;
    }
    Ok(order)
}

/// One entry of an initramfs.
#[derive(Debug, Clone)]
pub enum Entry {
    Dir(String),
    File {
        path: String,
        mode: u32,
        data: Vec<u8>,
    },
    Symlink {
        path: String,
        target: String,
    },
    CharDev {
        path: String,
        major: u32,
        minor: u32,
    },
}

/// An uncompressed `newc` cpio archive, which the kernel unpacks as its initramfs. Written
/// here so that the build needs no cpio tool and no root for /dev/console.
pub fn cpio_newc(entries: &[Entry]) -> Vec<u8> {
    fn pad(out: &mut Vec<u8>) {
        while !out.len().is_multiple_of(4) {
            out.push(0);
        }
    }
    fn header(out: &mut Vec<u8>, ino: u32, name: &str, mode: u32, size: usize, rdev: (u32, u32)) {
        let fields = [
            ino,
            mode,
            0,
            0,
            1,
            0,
            size as u32,
            0,
            0,
            rdev.0,
            rdev.1,
            name.len() as u32 + 1,
            0,
        ];
        out.extend_from_slice(b"070701");
        for f in fields {
            out.extend_from_slice(format!("{f:08X}").as_bytes());
        }
        out.extend_from_slice(name.as_bytes());
        out.push(0);
        pad(out);
    }
    let mut out = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        let ino = i as u32 + 1;
        match e {
            Entry::Dir(p) => header(&mut out, ino, p, 0o040755, 0, (0, 0)),
            Entry::File { path, mode, data } => {
                header(&mut out, ino, path, 0o100000 | mode, data.len(), (0, 0));
                out.extend_from_slice(data);
                pad(&mut out);
            }
            Entry::Symlink { path, target } => {
                header(&mut out, ino, path, 0o120777, target.len(), (0, 0));
                out.extend_from_slice(target.as_bytes());
                pad(&mut out);
            }
            Entry::CharDev { path, major, minor } => {
                header(&mut out, ino, path, 0o020600, 0, (*major, *minor))
            }
        }
    }
    header(&mut out, 0, "TRAILER!!!", 0, 0, (0, 0));
    out
}

/// The initramfs's entries: busybox, the scripts, /dev/console (without it /init has no
/// output) and the modules, flat under /lib/modules.
pub fn initramfs_entries(busybox: Vec<u8>, modules: Vec<(String, Vec<u8>)>) -> Vec<Entry> {
    let names: Vec<String> = modules.iter().map(|(n, _)| n.clone()).collect();
    let mut e: Vec<Entry> = [
        "bin",
        "dev",
        "etc",
        "lib",
        "lib/modules",
        "proc",
        "sys",
        "run",
        "tmp",
    ]
    .iter()
    .map(|d| Entry::Dir(d.to_string()))
    .collect();
    e.push(Entry::CharDev {
        path: "dev/console".into(),
        major: 5,
        minor: 1,
    });
    e.push(Entry::File {
        path: "bin/busybox".into(),
        mode: 0o755,
        data: busybox,
    });
    e.push(Entry::Symlink {
        path: "bin/sh".into(),
        target: "busybox".into(),
    });
    e.push(Entry::File {
        path: "init".into(),
        mode: 0o755,
        data: init_script(&names).into_bytes(),
    });
    e.push(Entry::File {
        path: "etc/udhcpc.sh".into(),
        mode: 0o755,
        data: udhcpc_script().into_bytes(),
    });
    for (name, data) in modules {
        e.push(Entry::File {
            path: format!("lib/modules/{name}.ko"),
            mode: 0o644,
            data,
        });
    }
    e
}

/// Where downloads are cached: `$NOVANET_IMAGE_CACHE`, else `<data dir>/cache/packages`.
pub fn cache_dir(data_dir: &Path) -> PathBuf {
    std::env::var_os("NOVANET_IMAGE_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| data_dir.join("cache").join("packages"))
}

fn run(cmd: &str, args: &[&str], dir: &Path) -> Result<String, BuildError> {
    let line = format!("{cmd} {}", args.join(" "));
    let out = Command::new(cmd)
        .args(args)
        .current_dir(dir)
        .output()
        .map_err(|e| BuildError::Tool {
            cmd: line.clone(),
            detail: e.to_string(),
        })?;
    if !out.status.success() {
        return Err(BuildError::Tool {
            cmd: line,
            detail: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The versioned package a meta package depends on (`linux-image-6.1.0-57-cloud-amd64`).
pub fn kernel_package(apt_cache_depends: &str) -> Option<String> {
    apt_cache_depends
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Depends:"))
        .map(|p| p.trim().to_string())
        .find(|p| p.starts_with("linux-image-") && !p.ends_with("-dbg"))
}

/// A package's .deb in the cache, downloaded once.
fn download(cache: &Path, package: &str) -> Result<PathBuf, BuildError> {
    let find = || -> Result<Option<PathBuf>, BuildError> {
        let prefix = format!("{package}_");
        Ok(std::fs::read_dir(cache)
            .map_err(io(cache))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .find(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(&prefix) && n.ends_with(".deb"))
            }))
    };
    if let Some(p) = find()? {
        return Ok(p);
    }
    run("apt-get", &["download", package], cache)?;
    find()?.ok_or_else(|| BuildError::Missing(format!("apt-get download {package} left no .deb")))
}

fn extract(deb: &Path, into: &Path) -> Result<(), BuildError> {
    if into.exists() {
        return Ok(());
    }
    let tmp = into.with_extension("partial");
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).map_err(io(&tmp))?;
    run(
        "dpkg-deb",
        &["-x", &deb.to_string_lossy(), &tmp.to_string_lossy()],
        Path::new("/"),
    )?;
    std::fs::rename(&tmp, into).map_err(io(into))
}

/// Every `.ko` under a directory by module name (file stem, `-` read as `_` as modprobe does).
fn module_files(dir: &Path, found: &mut BTreeMap<String, PathBuf>) -> Result<(), BuildError> {
    for e in std::fs::read_dir(dir).map_err(io(dir))? {
        let p = e.map_err(io(dir))?.path();
        if p.is_dir() {
            module_files(&p, found)?;
        } else if p.extension().is_some_and(|x| x == "ko") {
            if let Some(stem) = p.file_stem().and_then(|s| s.to_str()) {
                found.insert(stem.replace('-', "_"), p);
            }
        }
    }
    Ok(())
}

/// Build the test image into `out` (a directory: `vmlinuz`, `initrd.img`), downloading into
/// `cache` what is not there yet.
pub fn build(cache: &Path, out: &Path) -> Result<TestImage, BuildError> {
    std::fs::create_dir_all(cache).map_err(io(cache))?;
    std::fs::create_dir_all(out).map_err(io(out))?;
    let depends = run("apt-cache", &["depends", KERNEL_META], cache)?;
    let kpkg = kernel_package(&depends).ok_or_else(|| {
        BuildError::Missing(format!("apt-cache names no kernel for {KERNEL_META}"))
    })?;
    let kdir = cache.join(&kpkg);
    extract(&download(cache, &kpkg)?, &kdir)?;
    let bdir = cache.join(BUSYBOX_PACKAGE);
    extract(&download(cache, BUSYBOX_PACKAGE)?, &bdir)?;

    let vmlinuz = std::fs::read_dir(kdir.join("boot"))
        .map_err(io(&kdir))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("vmlinuz-"))
        })
        .ok_or_else(|| BuildError::Missing(format!("{kpkg} has no boot/vmlinuz-*")))?;
    let mut files = BTreeMap::new();
    module_files(&kdir.join("lib/modules"), &mut files)?;
    let mut deps = BTreeMap::new();
    for (name, path) in &files {
        deps.insert(
            name.clone(),
            modinfo_depends(&std::fs::read(path).map_err(io(path))?),
        );
    }
    let order = load_order(&deps, WANTED_MODULES)?;
    let mut modules = Vec::new();
    for m in &order {
        let p = &files[m];
        modules.push((m.clone(), std::fs::read(p).map_err(io(p))?));
    }
    let bb = bdir.join("bin/busybox");
    let busybox = std::fs::read(&bb).map_err(io(&bb))?;

    let image = TestImage::in_dir(out);
    std::fs::copy(&vmlinuz, &image.kernel).map_err(io(&image.kernel))?;
    let cpio = cpio_newc(&initramfs_entries(busybox, modules));
    std::fs::write(&image.initrd, cpio).map_err(io(&image.initrd))?;
    Ok(image)
}

/// qemu's arguments to boot the test image alone (TCG, serial console on stdio), with the
/// given network arguments.
pub fn qemu_test_args(image: &TestImage, poweroff: bool, net: &[&str]) -> Vec<String> {
    let mut cmdline = CMDLINE.to_string();
    if poweroff {
        cmdline.push_str(" novanet.poweroff");
    }
    let mut a: Vec<String> = [
        "-accel",
        "tcg",
        "-cpu",
        "max",
        "-smp",
        "1",
        "-m",
        "256",
        "-nographic",
        "-no-reboot",
        "-nodefaults",
        "-serial",
        "stdio",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    a.extend([
        "-kernel".into(),
        image.kernel.to_string_lossy().into_owned(),
        "-initrd".into(),
        image.initrd.to_string_lossy().into_owned(),
        "-append".into(),
        cmdline,
    ]);
    a.extend(net.iter().map(|s| s.to_string()));
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deps(pairs: &[(&str, &[&str])]) -> BTreeMap<String, Vec<String>> {
        pairs
            .iter()
            .map(|(n, d)| (n.to_string(), d.iter().map(|s| s.to_string()).collect()))
            .collect()
    }

    #[test]
    fn modules_load_after_their_dependencies() {
        // As Debian 6.1's cloud kernel declares them.
        let d = deps(&[
            ("virtio_net", &["net_failover", "virtio", "virtio_ring"]),
            ("net_failover", &["failover"]),
            ("failover", &[]),
            (
                "virtio_pci",
                &[
                    "virtio_pci_modern_dev",
                    "virtio_pci_legacy_dev",
                    "virtio_ring",
                    "virtio",
                ],
            ),
            ("virtio_pci_modern_dev", &[]),
            ("virtio_pci_legacy_dev", &[]),
            ("virtio", &[]),
            ("virtio_ring", &[]),
        ]);
        assert_eq!(
            load_order(&d, WANTED_MODULES).unwrap(),
            [
                "virtio_pci_modern_dev",
                "virtio_pci_legacy_dev",
                "virtio_ring",
                "virtio",
                "virtio_pci",
                "failover",
                "net_failover",
                "virtio_net"
            ]
        );
        let missing = load_order(&deps(&[("virtio_net", &["virtio"])]), &["virtio_net"]);
        assert!(missing
            .unwrap_err()
            .to_string()
            .contains("virtio is not in"));
    }

    #[test]
    fn depends_are_read_from_modinfo() {
        let ko = b"\x7fELF\0junk\0license=GPL\0depends=net_failover,virtio\0retpoline=Y\0";
        assert_eq!(modinfo_depends(ko), ["net_failover", "virtio"]);
        assert!(modinfo_depends(b"\0depends=\0").is_empty());
    }

    #[test]
    fn the_kernel_package_is_the_meta_packages_dependency() {
        let out = "linux-image-cloud-amd64\n  Depends: linux-image-6.1.0-57-cloud-amd64\n";
        assert_eq!(
            kernel_package(out).as_deref(),
            Some("linux-image-6.1.0-57-cloud-amd64")
        );
        assert_eq!(kernel_package("x\n"), None);
    }

    #[test]
    fn init_loads_modules_in_order_and_reports() {
        let s = init_script(&["virtio".into(), "virtio_net".into()]);
        let a = s.find("insmod /lib/modules/virtio.ko").unwrap();
        let b = s.find("insmod /lib/modules/virtio_net.ko").unwrap();
        assert!(a < b);
        assert!(s.contains("timeout 10 wget -qO- http://169.254.169.254/latest/meta-data/hostname"));
        assert!(udhcpc_script().contains("! ip route | grep -q '^default'"));
        assert!(s.contains(READY_LINE));
        // The command channel answers on ttyS1, raw, with the mark after each command.
        assert!(s.contains("stty -F /dev/ttyS1 raw -echo"));
        assert!(s.contains(&format!("echo \"{DONE_MARK} $id $?\"")));
        assert!(udhcpc_script().contains("novanet-test: lease $interface $ip/$mask"));
    }

    #[test]
    fn cpio_entries_are_aligned_and_terminated() {
        let a = cpio_newc(&[
            Entry::Dir("dev".into()),
            Entry::CharDev {
                path: "dev/console".into(),
                major: 5,
                minor: 1,
            },
            Entry::File {
                path: "init".into(),
                mode: 0o755,
                data: b"#!/bin/sh\n".to_vec(),
            },
        ]);
        assert_eq!(&a[..6], b"070701");
        assert_eq!(a.len() % 4, 0);
        let text = String::from_utf8_lossy(&a);
        assert!(text.contains("TRAILER!!!"));
        // /dev/console: a character device 5:1 (mode 020600, rdevmajor 5, rdevminor 1).
        assert!(text.contains("00002180"));
        assert!(text.contains("0000000500000001"));
    }
}
