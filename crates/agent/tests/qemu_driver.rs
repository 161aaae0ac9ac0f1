//! The qemu driver end to end, in a network namespace of this test's own: a bridge with
//! dnsmasq on it, the test image booted as a VM plugged into the bridge through a tap, its
//! lease on the console; adopted by a second driver (an agent restart); a stopped VM
//! reported, not restarted; destroyed with its tap. Needs root and qemu; skips without them.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use novanet_agent::hypervisor::qemu::{running_pid, QemuDriver, QemuOptions};
use novanet_agent::hypervisor::{apply, Nic, PowerState, VmSpec, Wanted};
use novanet_core::valid::{IfName, MacText};
use novanet_lab::test_image;

const INNER: &str = "NOVANET_QEMU_DRIVER_INNER";
const UUID: &str = "0b7a7b56-8f7a-4f51-a8f5-7cf3a4c3b0f1";

fn ok(cmd: &str, args: &[&str]) {
    let s = Command::new(cmd).args(args).status().unwrap();
    assert!(s.success(), "{cmd} {args:?}: {s}");
}

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn wait_for(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_vm_on_the_bridge_takes_a_lease_is_adopted_and_destroyed() {
    if std::env::var_os(INNER).is_some() {
        return inside();
    }
    let root = Command::new("id").arg("-u").output().unwrap().stdout == b"0\n";
    if !root || !have("qemu-system-x86_64") || !have("dnsmasq") || !have("apt-get") {
        eprintln!("SKIP: needs root, qemu-system-x86_64, dnsmasq and apt-get");
        return;
    }
    let ns = format!("nnvms-{}", std::process::id());
    ok("ip", &["netns", "add", &ns]);
    // This test again, inside the namespace: everything it makes stays there.
    let exe = std::env::current_exe().unwrap();
    let status = Command::new("ip")
        .args(["netns", "exec", &ns])
        .arg(exe)
        .args([
            "--exact",
            "a_vm_on_the_bridge_takes_a_lease_is_adopted_and_destroyed",
            "--nocapture",
        ])
        .env(INNER, "1")
        .status()
        .unwrap();
    let _ = Command::new("ip").args(["netns", "del", &ns]).status();
    assert!(status.success(), "the test inside the namespace failed");
}

fn inside() {
    let base = std::env::temp_dir().join(format!("novanet-qemu-driver-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    std::fs::create_dir_all(&base).unwrap();
    let image_dir = std::env::var_os("NOVANET_TEST_IMAGE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("novanet-test-image"));
    let cache = std::env::var_os("NOVANET_IMAGE_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| image_dir.join("packages"));
    let img = test_image::build(&cache, &base.join("image")).expect("the test image");

    ok("ip", &["link", "set", "lo", "up"]);
    ok("ip", &["link", "add", "brt", "type", "bridge"]);
    ok("ip", &["addr", "add", "10.9.0.1/24", "dev", "brt"]);
    ok("ip", &["link", "set", "brt", "up"]);
    let mut dnsmasq = Command::new("dnsmasq")
        .args([
            "--no-daemon",
            "--conf-file=/dev/null",
            "--interface=brt",
            "--bind-interfaces",
            "--except-interface=lo",
            "--dhcp-range=10.9.0.10,10.9.0.20,255.255.255.0,1h",
            "--dhcp-host=fa:16:3e:00:00:01,10.9.0.12",
            &format!("--dhcp-leasefile={}", base.join("leases").display()),
            "--port=0",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("dnsmasq");

    let vms = base.join("vms");
    let dir = vms.join(UUID);
    std::fs::create_dir_all(&dir).unwrap();
    let spec = VmSpec {
        uuid: UUID.into(),
        vcpus: 1,
        memory_mb: 256,
        nics: vec![Nic {
            vif: "vif-1".into(),
            mac: MacText::new("fa:16:3e:00:00:01").unwrap(),
            bridge: IfName::new("brt").unwrap(),
            device: IfName::new("vnet0").unwrap(),
        }],
        disk: None,
        kernel: Some(img.kernel.clone()),
        initrd: Some(img.initrd.clone()),
        cmdline: Some(test_image::CMDLINE.into()),
        console_log: dir.join("console.log"),
        command_socket: None,
    };
    std::fs::write(
        dir.join(novanet_agent::hypervisor::SPEC_FILE),
        serde_json::to_string(&spec).unwrap(),
    )
    .unwrap();
    let opts = QemuOptions {
        binary: "qemu-system-x86_64".into(),
        accel: "tcg".into(),
        cpu: "max".into(),
    };
    let wanted = [Wanted {
        spec: spec.clone(),
        power: Default::default(),
    }];
    let result = std::panic::catch_unwind(|| {
        let mut driver = QemuDriver::with_options(vms.clone(), opts.clone());
        let r = apply(&mut driver, &wanted);
        assert!(r.errors.is_empty(), "{:?}", r.errors);
        assert_eq!(r.states[UUID], (PowerState::Active, 0));
        assert_eq!(r.plugged, [("vif-1".to_string(), "vnet0".to_string())]);
        let master = std::fs::read_link("/sys/class/net/vnet0/master").unwrap();
        assert!(master.ends_with("brt"), "vnet0 is on {master:?}");
        let console = |p: &Path| {
            std::fs::read_to_string(p)
                .unwrap_or_default()
                .replace('\r', "")
        };
        wait_for("the lease on the console", Duration::from_secs(60), || {
            console(&spec.console_log).contains("novanet-test: lease eth0 10.9.0.12/24")
        });

        // An agent restart: a new driver adopts the running VM, starts nothing.
        let pid = running_pid(&dir, UUID).expect("running");
        let mut again = QemuDriver::with_options(vms.clone(), opts.clone());
        let r = apply(&mut again, &wanted);
        assert!(r.changed.is_empty() && r.plugged.is_empty(), "{r:?}");
        assert_eq!(running_pid(&dir, UUID), Some(pid));

        // A VM that stops is reported, not restarted.
        Command::new("kill").arg(pid.to_string()).status().unwrap();
        wait_for("qemu to exit", Duration::from_secs(10), || {
            running_pid(&dir, UUID).is_none()
        });
        let r = apply(&mut again, &wanted);
        assert_eq!(r.states[UUID], (PowerState::Shutoff, 0));
        assert!(running_pid(&dir, UUID).is_none());

        // The instance is gone: its VM directory and tap go too.
        let r = apply(&mut again, &[]);
        assert!(r.errors.is_empty(), "{:?}", r.errors);
        assert!(
            !Path::new("/sys/class/net/vnet0").exists(),
            "the tap is left"
        );
        assert!(!dir.exists());
    });
    // Ended by PID: the test started them.
    if let Some(pid) = running_pid(&dir, UUID) {
        let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
    }
    let _ = dnsmasq.kill();
    let _ = dnsmasq.wait();
    let _ = std::fs::remove_dir_all(&base);
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
}
