//! The test image boots under qemu (TCG) and prints its DHCP lease and metadata hostname.
//! User-mode networking stands in for a cloud: its DHCP server gives the lease and a
//! `guestfwd` on 169.254.169.254:80 answers the metadata request. Skips without qemu.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use novanet_lab::test_image::{self, TestImage};

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Built once per machine: the packages are cached, the image is rebuilt each run.
fn image() -> TestImage {
    let base = std::env::var_os("NOVANET_TEST_IMAGE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("novanet-test-image"));
    let cache = std::env::var_os("NOVANET_IMAGE_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| base.join("packages"));
    test_image::build(&cache, &base.join("image")).expect("build the test image")
}

/// Run qemu until it exits or `limit` passes, returning the console's lines.
fn boot(args: &[String], limit: Duration) -> Vec<String> {
    let mut child = Command::new("qemu-system-x86_64")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start qemu");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            // The console carries \r and the firmware's ANSI escapes.
            let clean: String = line.replace('\r', "");
            if tx.send(clean).is_err() {
                break;
            }
        }
    });
    let start = Instant::now();
    let mut lines = Vec::new();
    loop {
        if let Ok(Some(_)) = child.try_wait() {
            break;
        }
        if start.elapsed() > limit {
            // Ended by its own PID: this test started it.
            let _ = child.kill();
            break;
        }
        if let Ok(l) = rx.recv_timeout(Duration::from_millis(100)) {
            lines.push(l);
        }
    }
    let _ = child.wait();
    lines.extend(rx.try_iter());
    lines
}

#[test]
fn the_test_image_takes_a_lease_and_reads_its_hostname() {
    if !have("qemu-system-x86_64") {
        eprintln!(
            "SKIP: qemu-system-x86_64 is missing (scripts/setup.sh installs qemu-system-x86)"
        );
        return;
    }
    if !have("apt-get") || !have("dpkg-deb") {
        eprintln!("SKIP: the test image needs apt-get and dpkg-deb");
        return;
    }
    let img = image();
    let net = "user,id=n0,net=169.254.169.0/24,host=169.254.169.2,dhcpstart=169.254.169.15,\
               guestfwd=tcp:169.254.169.254:80-cmd:printf 'HTTP/1.0 200 OK\\r\\n\\r\\nvm-under-test'";
    let args = test_image::qemu_test_args(
        &img,
        true,
        &[
            "-netdev",
            net,
            "-device",
            "virtio-net-pci,netdev=n0,mac=fa:16:3e:00:00:01,romfile=",
        ],
    );
    let start = Instant::now();
    let lines = boot(&args, Duration::from_secs(90));
    let console = lines.join("\n");
    eprintln!("booted and powered off in {:?}", start.elapsed());
    assert!(
        console.contains("novanet-test: lease eth0 169.254.169.15/24 router 169.254.169.2"),
        "no lease on the console:\n{console}"
    );
    assert!(
        console.contains("novanet-test: hostname vm-under-test"),
        "no metadata hostname on the console:\n{console}"
    );
    assert!(console.contains(test_image::READY_LINE));
}
