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
pub fn driver(kind: ComputeDriver, state_dir: &Path) -> Option<Box<dyn Hypervisor>> {
    let dir = state_dir.join("vms");
    match kind {
        ComputeDriver::None => None,
        ComputeDriver::Qemu => Some(Box::new(qemu::QemuDriver::new(dir))),
        ComputeDriver::Libvirt => Some(Box::new(libvirt::LibvirtDriver::new(dir))),
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
}

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
    pub states: BTreeMap<String, PowerState>,
    /// NICs plugged in this pass: (VIF uuid, device), for the port binding.
    pub plugged: Vec<(String, String)>,
}

pub trait Hypervisor: Send {
    /// Makes this host's VMs match `wanted`: creates the missing ones, destroys those not
    /// wanted, adopts running ones (an agent restart), and reports each one's state. A VM
    /// that stopped is reported `Shutoff`, not started again.
    fn apply(&mut self, wanted: &[VmSpec]) -> HypervisorReport;
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

/// One pass: the host's instances from the server, their specs (kept ones reused, new ones
/// made), the driver's apply, and the port bindings of newly plugged NICs.
pub fn sync(
    hv: &mut dyn Hypervisor,
    client: &Client,
    host: &str,
    state_dir: &Path,
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
    let vms = state_dir.join("vms");
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
            wanted.push(s.clone());
            continue;
        }
        let dir = vms.join(&inst.uuid);
        match vm_spec(inst, &dir, &taken, &images) {
            Ok(spec) => {
                taken.extend(spec.nics.iter().map(|n| n.device.to_string()));
                let text = serde_json::to_string_pretty(&spec).expect("serializable");
                let written = std::fs::create_dir_all(&dir)
                    .and_then(|()| std::fs::write(dir.join(SPEC_FILE), text));
                match written {
                    Ok(()) => wanted.push(spec),
                    Err(e) => errors.push(format!("VM {}: {e}", inst.uuid)),
                }
            }
            Err(why) => {
                failed.insert(inst.uuid.clone(), why);
            }
        }
    }
    let mut report = hv.apply(&wanted);
    for (uuid, why) in failed {
        tracing::warn!(
            instance = uuid.as_str(),
            reason = why.as_str(),
            "cannot boot"
        );
        report.states.insert(uuid, PowerState::Error(why));
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
    report.errors.extend(errors);
    report
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
