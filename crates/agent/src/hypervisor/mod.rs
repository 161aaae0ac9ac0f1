//! The hypervisor driver (nova's `compute_driver`): for every instance the server placed on
//! this host, a virtual machine with the flavor's vCPUs and memory, one NIC per VIF plugged
//! into its network's bridge through a `vnetN` tap, the image as a copy-on-write overlay and
//! a serial console log; destroyed when the instance is gone.
//!
//! `sync` is the edge: it reads the host's instances from the server, fetches images and
//! turns each instance into a [`VmSpec`] (kept in the VM's directory, so that its devices
//! stay the same across agent restarts); a [`Hypervisor`] makes the VMs match the specs.
//! Rendering (qemu's argument vector, libvirt's domain XML) is pure, in each driver's file.

pub mod libvirt;
pub mod qemu;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use novanet_core::model::{PowerAction, PowerObserved, PowerReport};
use novanet_core::valid::{IfName, MacText};
use serde::{Deserialize, Serialize};

use crate::client::Client;
use crate::sys::{io_err, AgentError, Result};

/// Which hypervisor this host runs its instances on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ComputeDriver {
    /// No VMs: instances are records (the lab's namespaces stand in for them).
    #[default]
    None,
    /// qemu started directly, tracked by PID.
    Qemu,
    /// libvirt's qemu driver, as nova's libvirt driver plugged nova-network's VIFs.
    Libvirt,
}

impl ComputeDriver {
    pub fn parse(s: &str) -> std::result::Result<ComputeDriver, String> {
        // nova's spellings too: libvirt.LibvirtDriver, fake.FakeDriver.
        match s.trim().to_ascii_lowercase().as_str() {
            "none" | "" | "fake.fakedriver" => Ok(ComputeDriver::None),
            "qemu" => Ok(ComputeDriver::Qemu),
            "libvirt" | "libvirt.libvirtdriver" => Ok(ComputeDriver::Libvirt),
            other => Err(format!(
                "compute_driver {other:?}: one of none, qemu, libvirt"
            )),
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            ComputeDriver::None => "none",
            ComputeDriver::Qemu => "qemu",
            ComputeDriver::Libvirt => "libvirt",
        }
    }
}

/// The driver for `kind`, keeping its VMs under `state_dir/vms`; None for `none`.
/// `libvirt_uri` (validated with the configuration) is libvirt's connection.
pub fn driver(
    kind: ComputeDriver,
    state_dir: &Path,
    libvirt_uri: Option<&str>,
) -> Option<Box<dyn Hypervisor>> {
    let dir = state_dir.join("vms");
    match kind {
        ComputeDriver::None => None,
        ComputeDriver::Qemu => Some(Box::new(qemu::QemuDriver::new(dir))),
        ComputeDriver::Libvirt => Some(Box::new(libvirt::LibvirtDriver::new(
            dir,
            libvirt_uri.unwrap_or(libvirt::DEFAULT_URI),
        ))),
    }
}

/// One NIC: a VIF plugged into its network's bridge through a tap.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Nic {
    pub vif: String,
    pub mac: MacText,
    pub bridge: IfName,
    /// The tap on the host side (`vnetN`), as the port binding reports it.
    pub device: IfName,
}

/// A disk: the image as a copy-on-write overlay.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Disk {
    /// A qcow2 overlay file over the image (made with qemu-img): it survives a restart of
    /// the VM, as nova's instance disk does.
    Overlay { path: PathBuf },
    /// Without qemu-img: qemu's own temporary overlay over the image (`snapshot=on`);
    /// writes are lost when the VM stops.
    Snapshot { base: PathBuf, format: String },
}

/// What a VM is: everything its driver needs, validated.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmSpec {
    pub uuid: String,
    pub vcpus: u32,
    pub memory_mb: u32,
    pub nics: Vec<Nic>,
    pub disk: Option<Disk>,
    /// A kernel and initramfs booted directly (images with `kernel_id`/`ramdisk_id`).
    pub kernel: Option<PathBuf>,
    pub initrd: Option<PathBuf>,
    pub cmdline: Option<String>,
    /// The serial console's log (`console-log`).
    pub console_log: PathBuf,
    /// A second serial port (the guest's ttyS1) on a unix socket in the VM's directory: a
    /// command channel reachable only by root on the VM's own host, never over a network,
    /// as qemu-guest-agent's channel served nova's tools. The lab's test image runs the
    /// commands `lab exec` sends on it; a guest that does not listen never reads it.
    #[serde(default)]
    pub command_socket: Option<PathBuf>,
}

/// The command channel's socket in a VM's directory (short: unix socket paths end at 107
/// bytes).
pub const COMMAND_SOCKET: &str = "cmd.sock";

/// A VM's power state as nova reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PowerState {
    Active,
    /// Stopped or died: reported, not restarted.
    Shutoff,
    /// It could not be made; the hypervisor's reason (nova's `fault`).
    Error(String),
}

/// What a driver's pass did.
#[derive(Debug, Default)]
pub struct HypervisorReport {
    pub changed: Vec<String>,
    pub errors: Vec<String>,
    /// Each wanted VM's state and the last lifecycle action carried out on it.
    pub states: BTreeMap<String, (PowerState, u32)>,
    /// NICs plugged in this pass: (VIF uuid, device), for the port binding.
    pub plugged: Vec<(String, String)>,
}

/// What one hypervisor does; the lifecycle (when to start, stop, restart, adopt, report)
/// is [`apply`]'s, the same for every driver. Each VM has a directory `dir()/<uuid>`.
pub trait Hypervisor: Send {
    fn dir(&self) -> &Path;
    /// The VMs running now, by instance uuid.
    fn running(&mut self) -> std::result::Result<BTreeSet<String>, String>;
    /// Starts the VM (plugging its NICs); returns once it runs or failed.
    fn start(&mut self, spec: &VmSpec) -> std::result::Result<(), String>;
    /// Powers the VM off; its directory (disk, console) stays.
    fn stop(&mut self, uuid: &str) -> std::result::Result<(), String>;
    /// Powers the VM off if it runs and removes it with its taps and directory.
    fn destroy(&mut self, uuid: &str) -> std::result::Result<(), String>;
}

/// A wanted VM and the lifecycle action last asked of it.
#[derive(Clone, Debug)]
pub struct Wanted {
    pub spec: VmSpec,
    pub power: PowerIntent,
}

/// The last lifecycle action asked of an instance (numbered: each is carried out once).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct PowerIntent {
    #[serde(default)]
    pub action_id: u32,
    #[serde(default)]
    pub action: PowerAction,
}

/// What to do to a VM in this pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    Nothing,
    Start,
    Stop,
    Restart,
}

/// The lifecycle: a VM is started once when first wanted (unless stopped before it ever
/// ran); then only a new action moves it. A VM that stopped by itself stays down and is
/// reported `Shutoff` (nova did not restart it either).
pub fn next_step(created: bool, running: bool, p: &PowerIntent, done: u32) -> Step {
    if p.action_id <= done {
        return if created || p.action == PowerAction::Stop {
            Step::Nothing
        } else {
            Step::Start
        };
    }
    match (p.action, running) {
        (PowerAction::Stop, true) => Step::Stop,
        (PowerAction::Reboot, true) => Step::Restart,
        (PowerAction::Start | PowerAction::Reboot, false) => Step::Start,
        (PowerAction::Stop, false) | (PowerAction::Start, true) => Step::Nothing,
    }
}

/// Marks in a VM's directory: `created` once it was first started (or failed to be), and
/// `done`, the number of the last action carried out.
const CREATED: &str = "created";
const DONE: &str = "done";

/// One pass of the lifecycle over `wanted`: VMs not wanted are destroyed, the others
/// started, stopped or restarted as [`next_step`] says, running ones adopted.
pub fn apply(hv: &mut dyn Hypervisor, wanted: &[Wanted]) -> HypervisorReport {
    let mut r = HypervisorReport::default();
    let mut running = match hv.running() {
        Ok(s) => s,
        Err(e) => {
            r.errors.push(format!("{}: {e}", hv.dir().display()));
            return r;
        }
    };
    let want: BTreeSet<&str> = wanted.iter().map(|w| w.spec.uuid.as_str()).collect();
    let existing: Vec<String> = std::fs::read_dir(hv.dir())
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| is_uuid(n))
        .collect();
    for uuid in existing.iter().filter(|u| !want.contains(u.as_str())) {
        match hv.destroy(uuid) {
            Ok(()) => r.changed.push(format!("VM {uuid} destroyed")),
            Err(e) => r.errors.push(format!("destroying VM {uuid}: {e}")),
        }
    }
    for w in wanted {
        let uuid = w.spec.uuid.as_str();
        let dir = hv.dir().join(uuid);
        let created = dir.join(CREATED).exists();
        let done: u32 = std::fs::read_to_string(dir.join(DONE))
            .ok()
            .and_then(|t| t.trim().parse().ok())
            .unwrap_or(0);
        let is_running = running.contains(uuid);
        let step = next_step(created, is_running, &w.power, done);
        let outcome = match step {
            Step::Nothing => Ok(()),
            Step::Stop => hv.stop(uuid),
            Step::Start => hv.start(&w.spec),
            Step::Restart => hv.stop(uuid).and_then(|()| hv.start(&w.spec)),
        };
        let _ = std::fs::create_dir_all(&dir);
        if step != Step::Nothing {
            // Marked even when it failed: a failure is reported, not retried every pass.
            let _ = std::fs::write(dir.join(CREATED), b"");
            let _ = std::fs::write(dir.join(DONE), w.power.action_id.to_string());
        }
        let state = match (&outcome, step) {
            (Err(e), _) => {
                r.errors.push(format!("VM {uuid}: {e}"));
                PowerState::Error(e.clone())
            }
            (Ok(()), Step::Start | Step::Restart) => {
                running.insert(uuid.to_string());
                r.changed.push(format!("VM {uuid}: {step:?}"));
                if !created {
                    r.plugged.extend(
                        w.spec
                            .nics
                            .iter()
                            .map(|n| (n.vif.clone(), n.device.to_string())),
                    );
                }
                PowerState::Active
            }
            (Ok(()), Step::Stop) => {
                running.remove(uuid);
                r.changed.push(format!("VM {uuid}: stopped"));
                PowerState::Shutoff
            }
            (Ok(()), Step::Nothing) if is_running => PowerState::Active,
            (Ok(()), Step::Nothing) => PowerState::Shutoff,
        };
        let done = if step == Step::Nothing {
            done
        } else {
            w.power.action_id
        };
        r.states.insert(uuid.to_string(), (state, done));
    }
    r
}

// ---- what the server says is placed on this host ----------------------------------------

#[derive(Clone, Debug, Deserialize)]
pub struct HostInstances {
    pub instances: Vec<HostInstance>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct HostInstance {
    pub uuid: String,
    pub flavor: FlavorSize,
    #[serde(default)]
    pub image: Option<ImageRef>,
    #[serde(default)]
    pub vifs: Vec<VifRef>,
    #[serde(default)]
    pub power: PowerIntent,
}

#[derive(Clone, Debug, Deserialize)]
pub struct FlavorSize {
    pub vcpus: u32,
    pub memory_mb: u32,
}

#[derive(Clone, Debug, Deserialize)]
pub struct ImageRef {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub disk_format: Option<String>,
    #[serde(default)]
    pub checksum: Option<String>,
    #[serde(default)]
    pub data: bool,
    #[serde(default)]
    pub kernel_id: Option<String>,
    #[serde(default)]
    pub ramdisk_id: Option<String>,
    #[serde(default)]
    pub os_command_line: Option<String>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct VifRef {
    pub uuid: String,
    pub mac: String,
    #[serde(default)]
    pub bridge: Option<String>,
}

/// A UUID's text (ids become paths and qemu option values: nothing else may pass).
pub fn is_uuid(s: &str) -> bool {
    s.len() == 36
        && s.chars().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_hexdigit(),
        })
}

/// The lowest `vnetN` names not in `taken`, one per VIF, in order.
pub fn assign_devices(taken: &BTreeSet<String>, count: usize) -> Vec<IfName> {
    (0..)
        .map(|n| format!("vnet{n}"))
        .filter(|d| !taken.contains(d))
        .take(count)
        .map(|d| IfName::new(d.as_str()).expect("vnetN is a valid name"))
        .collect()
}

/// Where an image's files are found once fetched, and how a VM's disk is made.
pub trait ImageFiles {
    /// The local file holding image `id`'s data (fetched once, checked against `checksum`).
    fn image_file(&self, id: &str, checksum: Option<&str>) -> Result<PathBuf>;
    /// A copy-on-write overlay at `path` over `base` (in `format`), or None when this host
    /// cannot make one (no qemu-img): the VM then uses a temporary overlay.
    fn overlay(&self, base: &Path, format: &str, path: &Path) -> Result<Option<()>>;
}

/// The VM for an instance: its NICs get devices not in `taken`; its image's files come from
/// `images`. An instance that cannot be booted is an error naming why.
pub fn vm_spec(
    inst: &HostInstance,
    vm_dir: &Path,
    taken: &BTreeSet<String>,
    images: &dyn ImageFiles,
) -> std::result::Result<VmSpec, String> {
    if !is_uuid(&inst.uuid) {
        return Err(format!("instance id {:?} is not a UUID", inst.uuid));
    }
    let devices = assign_devices(taken, inst.vifs.len());
    let mut nics = Vec::new();
    for (v, device) in inst.vifs.iter().zip(devices) {
        let mac = MacText::new(v.mac.as_str()).map_err(|e| format!("VIF {}: {e}", v.uuid))?;
        let bridge = v
            .bridge
            .as_deref()
            .ok_or_else(|| format!("VIF {}: its network has no bridge", v.uuid))
            .and_then(|b| IfName::new(b).map_err(|e| format!("VIF {}: {e}", v.uuid)))?;
        nics.push(Nic {
            vif: v.uuid.clone(),
            mac,
            bridge,
            device,
        });
    }
    let image = inst
        .image
        .as_ref()
        .ok_or("the instance has no image (boot from volume is not offered)")?;
    let image_name = image.name.clone().unwrap_or_default();
    let fetch = |id: &Option<String>, what: &str| -> std::result::Result<Option<PathBuf>, String> {
        match id {
            None => Ok(None),
            Some(id) if is_uuid(id) => images
                .image_file(id, None)
                .map(Some)
                .map_err(|e| format!("{what} {id}: {e}")),
            Some(id) => Err(format!("{what} {id:?} is not an image id")),
        }
    };
    let kernel = fetch(&image.kernel_id, "kernel")?;
    let initrd = fetch(&image.ramdisk_id, "ramdisk")?;
    let disk = match (&image.id, image.data) {
        (Some(id), true) if is_uuid(id) => {
            let base = images
                .image_file(id, image.checksum.as_deref())
                .map_err(|e| format!("image {image_name}: {e}"))?;
            // An empty machine image (a kernel/ramdisk pair's ami) has no disk to give.
            let empty = std::fs::metadata(&base)
                .map(|m| m.len() == 0)
                .unwrap_or(true);
            let format = match image.disk_format.as_deref() {
                Some("qcow2") => "qcow2",
                _ => "raw",
            };
            if empty {
                None
            } else {
                let path = vm_dir.join("disk.qcow2");
                match images.overlay(&base, format, &path) {
                    Ok(Some(())) => Some(Disk::Overlay { path }),
                    Ok(None) => Some(Disk::Snapshot {
                        base,
                        format: format.to_string(),
                    }),
                    Err(e) => return Err(format!("overlay over image {image_name}: {e}")),
                }
            }
        }
        _ => None,
    };
    if disk.is_none() && kernel.is_none() {
        return Err(format!(
            "image {image_name} has no data to boot: upload one (`novanet image-create NAME --file FILE`) \
             and boot that"
        ));
    }
    Ok(VmSpec {
        uuid: inst.uuid.clone(),
        vcpus: inst.flavor.vcpus.max(1),
        memory_mb: inst.flavor.memory_mb.max(64),
        nics,
        disk,
        kernel,
        initrd,
        cmdline: image.os_command_line.clone(),
        console_log: vm_dir.join("console.log"),
        command_socket: Some(vm_dir.join(COMMAND_SOCKET)),
    })
}

/// Images fetched from the server's image service into `dir`, overlays by qemu-img.
pub struct ServerImages<'a> {
    pub client: &'a Client,
    pub dir: PathBuf,
}

impl ImageFiles for ServerImages<'_> {
    fn image_file(&self, id: &str, checksum: Option<&str>) -> Result<PathBuf> {
        let path = self.dir.join(id);
        if path.exists() {
            return Ok(path);
        }
        std::fs::create_dir_all(&self.dir).map_err(|e| io_err(self.dir.display(), e))?;
        let partial = self.dir.join(format!("{id}.partial"));
        let md5 = self
            .client
            .download(&format!("/image/v2/images/{id}/file"), &partial)?;
        if let Some(want) = checksum.filter(|c| *c != md5) {
            let _ = std::fs::remove_file(&partial);
            return Err(AgentError::Server(format!(
                "image {id}: downloaded data has MD5 {md5}, the image service says {want}"
            )));
        }
        std::fs::rename(&partial, &path).map_err(|e| io_err(path.display(), e))?;
        Ok(path)
    }

    fn overlay(&self, base: &Path, format: &str, path: &Path) -> Result<Option<()>> {
        if path.exists() {
            return Ok(Some(()));
        }
        let have_qemu_img = std::process::Command::new("qemu-img")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
        if !have_qemu_img {
            return Ok(None);
        }
        if let Some(d) = path.parent() {
            std::fs::create_dir_all(d).map_err(|e| io_err(d.display(), e))?;
        }
        crate::sys::run(
            "qemu-img",
            &[
                "create",
                "-f",
                "qcow2",
                "-F",
                format,
                "-b",
                &base.to_string_lossy(),
                &path.to_string_lossy(),
            ],
            None,
        )
        .map(|_| Some(()))
    }
}

/// What the VM directory keeps of its spec.
pub const SPEC_FILE: &str = "spec.json";

/// The most of a console sent in one report.
const CONSOLE_TAIL: u64 = 64 * 1024;

/// What the agent last told the server of each VM, so that it reports changes only.
#[derive(Default)]
pub struct Reported {
    sent: BTreeMap<String, (PowerObserved, Option<String>, u32, u64)>,
}

/// One pass: the host's instances from the server, their specs (kept ones reused, new ones
/// made), the lifecycle, the port bindings of newly plugged NICs, and a report of what
/// changed (state, fault, last action done, console tail).
pub fn sync(
    hv: &mut dyn Hypervisor,
    client: &Client,
    host: &str,
    state_dir: &Path,
    reported: &mut Reported,
) -> HypervisorReport {
    let mut errors = Vec::new();
    let v = match client.call("GET", &format!("/novanet/v1/hosts/{host}/instances"), None) {
        Ok(v) => v,
        Err(e) => {
            return HypervisorReport {
                errors: vec![format!("the host's instances: {e}")],
                ..Default::default()
            }
        }
    };
    let listed: HostInstances = match serde_json::from_value(v) {
        Ok(l) => l,
        Err(e) => {
            return HypervisorReport {
                errors: vec![format!("the host's instances: unexpected answer: {e}")],
                ..Default::default()
            }
        }
    };
    let vms = hv.dir().to_path_buf();
    let images = ServerImages {
        client,
        dir: state_dir.join("images"),
    };
    // Kept specs first: their devices are taken whatever happens to the rest.
    let kept: BTreeMap<String, VmSpec> = listed
        .instances
        .iter()
        .filter(|i| is_uuid(&i.uuid))
        .filter_map(|i| {
            let t = std::fs::read_to_string(vms.join(&i.uuid).join(SPEC_FILE)).ok()?;
            Some((i.uuid.clone(), serde_json::from_str(&t).ok()?))
        })
        .collect();
    let mut taken: BTreeSet<String> = kept
        .values()
        .flat_map(|s| s.nics.iter().map(|n| n.device.to_string()))
        .collect();
    let mut wanted = Vec::new();
    let mut failed = BTreeMap::new();
    for inst in &listed.instances {
        if let Some(s) = kept.get(&inst.uuid) {
            wanted.push(Wanted {
                spec: s.clone(),
                power: inst.power,
            });
            continue;
        }
        let dir = vms.join(&inst.uuid);
        match vm_spec(inst, &dir, &taken, &images) {
            Ok(spec) => {
                taken.extend(spec.nics.iter().map(|n| n.device.to_string()));
                let text = serde_json::to_string_pretty(&spec).expect("serializable");
                // The console log and the command channel are the tenant's: root's only.
                let written = std::fs::create_dir_all(&dir)
                    .and_then(|()| {
                        use std::os::unix::fs::PermissionsExt;
                        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
                    })
                    .and_then(|()| std::fs::write(dir.join(SPEC_FILE), text));
                match written {
                    Ok(()) => wanted.push(Wanted {
                        spec,
                        power: inst.power,
                    }),
                    Err(e) => errors.push(format!("VM {}: {e}", inst.uuid)),
                }
            }
            Err(why) => {
                failed.insert(inst.uuid.clone(), (why, inst.power.action_id));
            }
        }
    }
    let mut report = apply(hv, &wanted);
    for (uuid, (why, done)) in failed {
        report.states.insert(uuid, (PowerState::Error(why), done));
    }
    for (vif, device) in &report.plugged {
        if let Err(e) = client.call(
            "POST",
            &format!("/novanet/v1/vifs/{vif}/plug"),
            Some(&serde_json::json!({ "device": device })),
        ) {
            report
                .errors
                .push(format!("port binding of VIF {vif} on {device}: {e}"));
        }
    }
    let changes = reported.changes(&report.states, &vms);
    if !changes.is_empty() {
        for c in changes.iter().filter(|c| c.state == PowerObserved::Error) {
            tracing::warn!(
                instance = c.uuid.as_str(),
                reason = c.fault.as_deref().unwrap_or(""),
                "cannot run the VM"
            );
        }
        let body = serde_json::json!({ "instances": changes });
        match client.call(
            "POST",
            &format!("/novanet/v1/hosts/{host}/instances/state"),
            Some(&body),
        ) {
            Ok(_) => reported.sent_ok(&changes, &vms),
            Err(e) => report.errors.push(format!("reporting VM states: {e}")),
        }
    }
    report.errors.extend(errors);
    report
}

impl Reported {
    /// The reports that differ from what was last sent (consoles that grew included).
    fn changes(
        &self,
        states: &BTreeMap<String, (PowerState, u32)>,
        vms: &Path,
    ) -> Vec<PowerReport> {
        let mut out = Vec::new();
        for (uuid, (state, done)) in states {
            let (observed, fault) = match state {
                PowerState::Active => (PowerObserved::Active, None),
                PowerState::Shutoff => (PowerObserved::Shutoff, None),
                PowerState::Error(why) => (PowerObserved::Error, Some(why.clone())),
            };
            let log = vms.join(uuid).join("console.log");
            let size = std::fs::metadata(&log).map_or(0, |m| m.len());
            let last = self.sent.get(uuid);
            let console_changed = last.is_none_or(|l| l.3 != size) && size > 0;
            let same = last.is_some_and(|l| l.0 == observed && l.1 == fault && l.2 == *done);
            if same && !console_changed {
                continue;
            }
            out.push(PowerReport {
                uuid: uuid.clone(),
                state: observed,
                fault,
                done_id: *done,
                console: console_changed.then(|| console_tail(&log, size)),
            });
        }
        out
    }

    fn sent_ok(&mut self, changes: &[PowerReport], vms: &Path) {
        for c in changes {
            let size =
                std::fs::metadata(vms.join(&c.uuid).join("console.log")).map_or(0, |m| m.len());
            self.sent
                .insert(c.uuid.clone(), (c.state, c.fault.clone(), c.done_id, size));
        }
    }
}

/// The last [`CONSOLE_TAIL`] bytes of a console log, without the terminal's carriage
/// returns and escape sequences (SeaBIOS writes them), as text.
fn console_tail(log: &Path, size: u64) -> String {
    use std::io::{Read, Seek, SeekFrom};
    let mut buf = Vec::new();
    if let Ok(mut f) = std::fs::File::open(log) {
        let _ = f.seek(SeekFrom::Start(size.saturating_sub(CONSOLE_TAIL)));
        let _ = f.take(CONSOLE_TAIL).read_to_end(&mut buf);
    }
    clean_console(&String::from_utf8_lossy(&buf))
}

/// Console text as a person reads it: no `\r`, no ANSI escape sequences.
pub fn clean_console(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\r' => {}
            '\u{1b}' => {
                // CSI: ESC [ parameters final-byte; other escapes: ESC and one character.
                if chars.peek() == Some(&'[') {
                    chars.next();
                    for c in chars.by_ref() {
                        if ('@'..='~').contains(&c) {
                            break;
                        }
                    }
                } else {
                    chars.next();
                }
            }
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn spec() -> VmSpec {
        VmSpec {
            uuid: "0b7a7b56-8f7a-4f51-a8f5-7cf3a4c3b0f1".into(),
            vcpus: 1,
            memory_mb: 512,
            nics: vec![
                Nic {
                    vif: "vif-1".into(),
                    mac: MacText::new("fa:16:3e:00:00:01").unwrap(),
                    bridge: IfName::new("br100").unwrap(),
                    device: IfName::new("vnet0").unwrap(),
                },
                Nic {
                    vif: "vif-2".into(),
                    mac: MacText::new("fa:16:3e:00:00:02").unwrap(),
                    bridge: IfName::new("br101").unwrap(),
                    device: IfName::new("vnet3").unwrap(),
                },
            ],
            disk: Some(Disk::Overlay {
                path:
                    "/var/lib/novanet/agent-c1/vms/0b7a7b56-8f7a-4f51-a8f5-7cf3a4c3b0f1/disk.qcow2"
                        .into(),
            }),
            kernel: None,
            initrd: None,
            cmdline: None,
            console_log:
                "/var/lib/novanet/agent-c1/vms/0b7a7b56-8f7a-4f51-a8f5-7cf3a4c3b0f1/console.log"
                    .into(),
            command_socket: Some(
                "/var/lib/novanet/agent-c1/vms/0b7a7b56-8f7a-4f51-a8f5-7cf3a4c3b0f1/cmd.sock"
                    .into(),
            ),
        }
    }

    struct NoImages;
    impl ImageFiles for NoImages {
        fn image_file(&self, id: &str, _: Option<&str>) -> Result<PathBuf> {
            Ok(PathBuf::from(format!("/images/{id}")))
        }
        fn overlay(&self, _: &Path, _: &str, _: &Path) -> Result<Option<()>> {
            Ok(None)
        }
    }

    #[test]
    fn the_lifecycle_acts_once_per_action_and_never_revives_a_dead_vm() {
        let p = |action_id, action| PowerIntent { action_id, action };
        use PowerAction::*;
        // First wanted: started, unless stopped before it ever ran.
        assert_eq!(next_step(false, false, &p(0, Start), 0), Step::Start);
        assert_eq!(next_step(false, false, &p(1, Stop), 0), Step::Nothing);
        // Running, nothing new: left alone; died by itself: left down.
        assert_eq!(next_step(true, true, &p(0, Start), 0), Step::Nothing);
        assert_eq!(next_step(true, false, &p(0, Start), 0), Step::Nothing);
        // New actions.
        assert_eq!(next_step(true, true, &p(1, Stop), 0), Step::Stop);
        assert_eq!(next_step(true, false, &p(2, Start), 1), Step::Start);
        assert_eq!(next_step(true, true, &p(3, Reboot), 2), Step::Restart);
        assert_eq!(next_step(true, false, &p(3, Reboot), 2), Step::Start);
        // Carried out already: nothing again (an agent restart reads `done`).
        assert_eq!(next_step(true, false, &p(1, Stop), 1), Step::Nothing);
        assert_eq!(next_step(true, true, &p(3, Reboot), 3), Step::Nothing);
    }

    /// Records what it was asked; VMs "run" in a set. A unit-test stand-in only: the real
    /// drivers are proven in the lab.
    struct Recorder {
        dir: PathBuf,
        up: BTreeSet<String>,
        calls: Vec<String>,
        fail_start: bool,
    }
    impl Hypervisor for Recorder {
        fn dir(&self) -> &Path {
            &self.dir
        }
        fn running(&mut self) -> std::result::Result<BTreeSet<String>, String> {
            Ok(self.up.clone())
        }
        fn start(&mut self, spec: &VmSpec) -> std::result::Result<(), String> {
            self.calls.push(format!("start {}", &spec.uuid[..4]));
            if self.fail_start {
                return Err("no such image".into());
            }
            self.up.insert(spec.uuid.clone());
            Ok(())
        }
        fn stop(&mut self, uuid: &str) -> std::result::Result<(), String> {
            self.calls.push(format!("stop {}", &uuid[..4]));
            self.up.remove(uuid);
            Ok(())
        }
        fn destroy(&mut self, uuid: &str) -> std::result::Result<(), String> {
            self.calls.push(format!("destroy {}", &uuid[..4]));
            self.up.remove(uuid);
            std::fs::remove_dir_all(self.dir.join(uuid)).map_err(|e| e.to_string())
        }
    }

    #[test]
    fn apply_runs_the_lifecycle_and_reports_each_vm() {
        let dir = std::env::temp_dir().join(format!("novanet-hv-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut hv = Recorder {
            dir: dir.clone(),
            up: BTreeSet::new(),
            calls: Vec::new(),
            fail_start: false,
        };
        let mut w = Wanted {
            spec: spec(),
            power: PowerIntent::default(),
        };
        let uuid = w.spec.uuid.clone();
        let r = apply(&mut hv, std::slice::from_ref(&w));
        assert_eq!(r.states[&uuid], (PowerState::Active, 0));
        assert_eq!(r.plugged.len(), 2, "both NICs' bindings reported once");
        let r = apply(&mut hv, std::slice::from_ref(&w));
        assert!(r.plugged.is_empty() && r.changed.is_empty());
        // It dies: reported, not restarted.
        hv.up.clear();
        let r = apply(&mut hv, std::slice::from_ref(&w));
        assert_eq!(r.states[&uuid], (PowerState::Shutoff, 0));
        w.power = PowerIntent {
            action_id: 1,
            action: PowerAction::Start,
        };
        apply(&mut hv, std::slice::from_ref(&w));
        w.power = PowerIntent {
            action_id: 2,
            action: PowerAction::Reboot,
        };
        let r = apply(&mut hv, std::slice::from_ref(&w));
        assert_eq!(r.states[&uuid], (PowerState::Active, 2));
        w.power = PowerIntent {
            action_id: 3,
            action: PowerAction::Stop,
        };
        let r = apply(&mut hv, std::slice::from_ref(&w));
        assert_eq!(r.states[&uuid], (PowerState::Shutoff, 3));
        // A failed start is an error with the reason, tried once per action.
        hv.fail_start = true;
        w.power = PowerIntent {
            action_id: 4,
            action: PowerAction::Start,
        };
        let r = apply(&mut hv, std::slice::from_ref(&w));
        assert_eq!(
            r.states[&uuid],
            (PowerState::Error("no such image".into()), 4)
        );
        apply(&mut hv, std::slice::from_ref(&w));
        // Not wanted any more: destroyed.
        apply(&mut hv, &[]);
        assert_eq!(
            hv.calls,
            [
                "start 0b7a",
                "start 0b7a",
                "stop 0b7a",
                "start 0b7a",
                "stop 0b7a",
                "start 0b7a",
                "destroy 0b7a"
            ]
        );
        assert!(!dir.join(&uuid).exists());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn console_text_loses_carriage_returns_and_escapes() {
        assert_eq!(
            clean_console("\u{1b}[2J\u{1b}[01;01HSeaBIOS\r\nlogin: \u{1b}[6n\u{1b}cok\n"),
            "SeaBIOS\nlogin: ok\n"
        );
    }

    #[test]
    fn devices_are_the_lowest_free_vnets() {
        let taken: BTreeSet<String> = ["vnet0", "vnet2"].map(String::from).into();
        let d: Vec<String> = assign_devices(&taken, 3)
            .iter()
            .map(|d| d.to_string())
            .collect();
        assert_eq!(d, ["vnet1", "vnet3", "vnet4"]);
    }

    #[test]
    fn drivers_by_nova_names() {
        assert_eq!(ComputeDriver::parse("qemu"), Ok(ComputeDriver::Qemu));
        assert_eq!(
            ComputeDriver::parse("libvirt.LibvirtDriver"),
            Ok(ComputeDriver::Libvirt)
        );
        assert_eq!(ComputeDriver::parse("none"), Ok(ComputeDriver::None));
        assert!(ComputeDriver::parse("xen").unwrap_err().contains("one of"));
    }

    fn instance(image: serde_json::Value) -> HostInstance {
        serde_json::from_value(serde_json::json!({
            "uuid": "0b7a7b56-8f7a-4f51-a8f5-7cf3a4c3b0f1",
            "flavor": {"vcpus": 1, "memory_mb": 512},
            "image": image,
            "vifs": [{"uuid": "vif-1", "mac": "fa:16:3e:00:00:01", "bridge": "br100"}],
        }))
        .unwrap()
    }

    #[test]
    fn a_kernel_image_boots_directly_and_a_name_only_image_is_an_error() {
        let kid = "11111111-2222-3333-4444-555555555555";
        let rid = "11111111-2222-3333-4444-666666666666";
        let inst = instance(
            serde_json::json!({"id": null, "name": "test", "data": false,
            "kernel_id": kid, "ramdisk_id": rid, "os_command_line": "console=ttyS0"}),
        );
        let s = vm_spec(&inst, Path::new("/vms/x"), &BTreeSet::new(), &NoImages).unwrap();
        assert_eq!(s.kernel, Some(PathBuf::from(format!("/images/{kid}"))));
        assert_eq!(s.initrd, Some(PathBuf::from(format!("/images/{rid}"))));
        assert_eq!(s.nics[0].device.as_str(), "vnet0");
        assert_eq!(s.disk, None);
        let cirros = instance(
            serde_json::json!({"id": "ed8b2a37-5535-4a5f-a615-443513036d71",
            "name": "cirros", "data": false}),
        );
        let e = vm_spec(&cirros, Path::new("/vms/x"), &BTreeSet::new(), &NoImages).unwrap_err();
        assert!(e.contains("image cirros has no data"), "{e}");
        let bad_mac = serde_json::from_value::<HostInstance>(serde_json::json!({
            "uuid": "0b7a7b56-8f7a-4f51-a8f5-7cf3a4c3b0f1",
            "flavor": {"vcpus": 1, "memory_mb": 512},
            "image": {"kernel_id": kid},
            "vifs": [{"uuid": "v", "mac": "fa:16:3e:00:00:01,romfile=/x", "bridge": "br100"}],
        }))
        .unwrap();
        assert!(vm_spec(&bad_mac, Path::new("/vms/x"), &BTreeSet::new(), &NoImages).is_err());
    }
}
