//! `compute_driver = libvirt`: a transient libvirt domain per VM (`virsh create`); the
//! domain's name is `instance-<uuid>`, which adoption looks for.
//!
//! VIFs: nova's libvirt driver plugged nova-network's VIFs as `<interface type='bridge'>`
//! and let libvirt make the tap. Here the agent makes each `vnetN` tap on its bridge (as the
//! qemu driver does) and hands it over as `<interface type='ethernet'>` with
//! `<target dev='vnetN' managed='no'/>`: libvirt reserves the `vnet` prefix for names of
//! its own and ignores a requested `vnet0`, numbering on across restarts (a stopped and
//! started VM came back as `vnet2` on a host with one VM), while the agent's firewall rules
//! and anti-spoofing name the device the plan gave the VIF.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use super::{Disk, Hypervisor, VmSpec};
use crate::sys::run;

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('\'', "&apos;")
        .replace('"', "&quot;")
}

/// The domain's name, as libvirt lists it.
pub fn domain_name(uuid: &str) -> String {
    format!("instance-{uuid}")
}

/// libvirt's domain XML for `spec` (type `qemu`: TCG; `kvm` where it works).
pub fn domain_xml(spec: &VmSpec, domain_type: &str) -> String {
    let mut x = String::new();
    x.push_str(&format!("<domain type='{}'>\n", esc(domain_type)));
    x.push_str(&format!("  <name>{}</name>\n", domain_name(&spec.uuid)));
    x.push_str(&format!("  <uuid>{}</uuid>\n", esc(&spec.uuid)));
    x.push_str(&format!(
        "  <memory unit='MiB'>{}</memory>\n",
        spec.memory_mb
    ));
    x.push_str(&format!("  <vcpu>{}</vcpu>\n", spec.vcpus));
    x.push_str("  <os>\n    <type arch='x86_64' machine='pc'>hvm</type>\n");
    if let Some(k) = &spec.kernel {
        x.push_str(&format!(
            "    <kernel>{}</kernel>\n",
            esc(&k.to_string_lossy())
        ));
    }
    if let Some(i) = &spec.initrd {
        x.push_str(&format!(
            "    <initrd>{}</initrd>\n",
            esc(&i.to_string_lossy())
        ));
    }
    if let Some(c) = &spec.cmdline {
        x.push_str(&format!("    <cmdline>{}</cmdline>\n", esc(c)));
    }
    if spec.kernel.is_none() {
        x.push_str("    <boot dev='hd'/>\n");
    }
    // Without <acpi/> libvirt starts qemu with ACPI off: the guest's poweroff then never
    // ends the domain (seen here: "A valid RSDP was not found" and a VM that stayed up).
    x.push_str("  </os>\n  <features>\n    <acpi/>\n    <apic/>\n  </features>\n");
    x.push_str("  <cpu mode='host-model'/>\n");
    x.push_str("  <on_poweroff>destroy</on_poweroff>\n  <on_reboot>restart</on_reboot>\n");
    x.push_str("  <devices>\n");
    match &spec.disk {
        Some(Disk::Overlay { path }) => x.push_str(&format!(
            "    <disk type='file' device='disk'>\n      <driver name='qemu' type='qcow2'/>\n      \
             <source file='{}'/>\n      <target dev='vda' bus='virtio'/>\n    </disk>\n",
            esc(&path.to_string_lossy())
        )),
        Some(Disk::Snapshot { base, format }) => x.push_str(&format!(
            "    <disk type='file' device='disk' snapshot='no'>\n      <driver name='qemu' type='{}'/>\n      \
             <source file='{}'/>\n      <target dev='vda' bus='virtio'/>\n      <transient/>\n    </disk>\n",
            esc(format),
            esc(&base.to_string_lossy())
        )),
        None => {}
    }
    for n in &spec.nics {
        x.push_str(&format!(
            "    <interface type='ethernet'>\n      <mac address='{}'/>\n      \
             <target dev='{}' managed='no'/>\n      <model type='virtio'/>\n      <rom enabled='no'/>\n    </interface>\n",
            n.mac, n.device
        ));
    }
    x.push_str(&format!(
        "    <serial type='file'>\n      <source path='{}' append='on'/>\n      <target port='0'/>\n    </serial>\n",
        esc(&spec.console_log.to_string_lossy())
    ));
    if let Some(sock) = &spec.command_socket {
        x.push_str(&format!(
            "    <serial type='unix'>\n      <source mode='bind' path='{}'/>\n      <target port='1'/>\n    </serial>\n",
            esc(&sock.to_string_lossy())
        ));
    }
    x.push_str("  </devices>\n</domain>\n");
    x
}

/// libvirt's system daemon, as nova's `libvirt_uri` defaulted to for qemu.
pub const DEFAULT_URI: &str = "qemu:///system";

pub struct LibvirtDriver {
    dir: PathBuf,
    /// `qemu:///system`, or a lab host's own daemon (`qemu:///system?socket=...`).
    uri: String,
    domain_type: String,
}

impl LibvirtDriver {
    pub fn new(dir: PathBuf, uri: &str) -> LibvirtDriver {
        LibvirtDriver {
            dir,
            uri: uri.to_string(),
            domain_type: "qemu".into(),
        }
    }

    fn virsh(&self, args: &[&str]) -> Result<String, String> {
        let mut a = vec!["-c", self.uri.as_str()];
        a.extend_from_slice(args);
        run("virsh", &a, None).map_err(|e| e.to_string())
    }
}

impl Hypervisor for LibvirtDriver {
    fn dir(&self) -> &Path {
        &self.dir
    }

    fn running(&mut self) -> Result<BTreeSet<String>, String> {
        Ok(self
            .virsh(&["list", "--name"])?
            .lines()
            .filter_map(|l| l.trim().strip_prefix("instance-"))
            .filter(|u| super::is_uuid(u))
            .map(String::from)
            .collect())
    }

    fn start(&mut self, spec: &VmSpec) -> Result<(), String> {
        super::qemu::make_taps(spec)?;
        let xml = self.dir.join(&spec.uuid).join("domain.xml");
        std::fs::write(&xml, domain_xml(spec, &self.domain_type)).map_err(|e| e.to_string())?;
        self.virsh(&["create", &xml.to_string_lossy()])?;
        // libvirtd makes the command channel's socket group-writable (its umask): only root
        // may open it, as under the qemu driver.
        if let Some(sock) = &spec.command_socket {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(sock, std::fs::Permissions::from_mode(0o600))
                .map_err(|e| format!("{}: {e}", sock.display()))?;
        }
        Ok(())
    }

    fn stop(&mut self, uuid: &str) -> Result<(), String> {
        // A transient domain ends with `destroy`; its disk and console stay in our directory.
        self.virsh(&["destroy", &domain_name(uuid)]).map(|_| ())
    }

    fn destroy(&mut self, uuid: &str) -> Result<(), String> {
        if self.running()?.contains(uuid) {
            self.stop(uuid)?;
        }
        let dir = self.dir.join(uuid);
        super::qemu::remove_taps(&dir)?;
        std::fs::remove_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hypervisor::tests::spec;

    #[test]
    fn the_domain_xml() {
        let want = "\
<domain type='qemu'>
  <name>instance-0b7a7b56-8f7a-4f51-a8f5-7cf3a4c3b0f1</name>
  <uuid>0b7a7b56-8f7a-4f51-a8f5-7cf3a4c3b0f1</uuid>
  <memory unit='MiB'>512</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <boot dev='hd'/>
  </os>
  <features>
    <acpi/>
    <apic/>
  </features>
  <cpu mode='host-model'/>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>restart</on_reboot>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='/var/lib/novanet/agent-c1/vms/0b7a7b56-8f7a-4f51-a8f5-7cf3a4c3b0f1/disk.qcow2'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <interface type='ethernet'>
      <mac address='fa:16:3e:00:00:01'/>
      <target dev='vnet0' managed='no'/>
      <model type='virtio'/>
      <rom enabled='no'/>
    </interface>
    <interface type='ethernet'>
      <mac address='fa:16:3e:00:00:02'/>
      <target dev='vnet3' managed='no'/>
      <model type='virtio'/>
      <rom enabled='no'/>
    </interface>
    <serial type='file'>
      <source path='/var/lib/novanet/agent-c1/vms/0b7a7b56-8f7a-4f51-a8f5-7cf3a4c3b0f1/console.log' append='on'/>
      <target port='0'/>
    </serial>
    <serial type='unix'>
      <source mode='bind' path='/var/lib/novanet/agent-c1/vms/0b7a7b56-8f7a-4f51-a8f5-7cf3a4c3b0f1/cmd.sock'/>
      <target port='1'/>
    </serial>
  </devices>
</domain>
";
        assert_eq!(domain_xml(&spec(), "qemu"), want);
    }

    #[test]
    fn a_kernel_boot_and_escaped_text() {
        let mut s = spec();
        s.nics.clear();
        s.disk = None;
        s.kernel = Some("/images/k".into());
        s.initrd = Some("/images/r".into());
        s.cmdline = Some("console=ttyS0 a<b&'c'".into());
        let x = domain_xml(&s, "qemu");
        assert!(x.contains("<kernel>/images/k</kernel>\n    <initrd>/images/r</initrd>"));
        assert!(x.contains("<cmdline>console=ttyS0 a&lt;b&amp;&apos;c&apos;</cmdline>"));
        assert!(!x.contains("<boot dev"));
    }
}
