//! The binary as an operator runs it: `novanet manage` on a data dir, and client commands
//! against a test server on 127.0.0.1 (no namespaces, no root).

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use novanet_store::prelude::*;
use novanet_store::SqliteStore;

const BIN: &str = env!("CARGO_BIN_EXE_novanet");

/// A directory removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let d = std::env::temp_dir().join(format!("novanet-cli-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        TempDir(d)
    }
    fn data(&self) -> PathBuf {
        self.0.join("data")
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn novanet(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(BIN);
    c.args(args).stdin(Stdio::null());
    for k in [
        "OS_AUTH_URL",
        "OS_USERNAME",
        "OS_PASSWORD",
        "OS_PROJECT_NAME",
        "NOVANET_DATA_DIR",
        "NOVANET_CONFIG",
    ] {
        c.env_remove(k);
    }
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Runs `novanet manage --data-dir DIR ARGS...` and expects success.
fn manage_ok(dir: &Path, args: &[&str]) -> String {
    let o = manage(dir, args);
    assert!(
        o.status.success(),
        "manage {args:?} failed: {}{}",
        text(&o.stdout),
        text(&o.stderr)
    );
    text(&o.stdout)
}

fn manage(dir: &Path, args: &[&str]) -> Output {
    let d = dir.display().to_string();
    let mut all = vec!["manage", "--data-dir", &d];
    all.extend_from_slice(args);
    novanet(&all, &[])
}

fn bootstrapped(name: &str) -> TempDir {
    let t = TempDir::new(name);
    manage_ok(&t.data(), &["bootstrap", "--bootstrap-password", "secret"]);
    manage_ok(&t.data(), &["project", "create", "demo"]);
    t
}

fn store(t: &TempDir) -> SqliteStore {
    SqliteStore::open_dir(&t.data()).unwrap()
}

#[test]
fn manage_refuses_a_data_dir_without_a_store() {
    let t = TempDir::new("nostore");
    let typo = t.0.join("typo");
    let o = manage(&typo, &["network", "list"]);
    assert!(!o.status.success());
    let e = text(&o.stderr);
    assert!(e.contains("holds no novanet store"), "{e}");
    assert!(e.contains("--data-dir") && e.contains("bootstrap"), "{e}");
    assert!(!typo.exists(), "a mistyped data dir was made");
    // Asked to, it makes one.
    manage_ok(&typo, &["--create", "project", "create", "p1"]);
    manage_ok(&typo, &["project", "list"]);
    // bootstrap makes one too.
    let fresh = t.0.join("fresh");
    manage_ok(&fresh, &["bootstrap", "--bootstrap-password", "pw"]);
    assert!(fresh.join("state.sqlite").is_file());
}

#[test]
fn manage_project_scrub_needs_a_project() {
    let t = bootstrapped("scrub");
    let admin = store(&t).project("admin").unwrap();
    let groups = || store(&t).security_groups(Some(&admin.id)).unwrap().len();
    let before = groups();
    assert!(before > 0);
    // With OS_PROJECT_NAME set, as an operator's shell has it.
    let d = t.data().display().to_string();
    let o = novanet(
        &["manage", "--data-dir", &d, "project", "scrub"],
        &[("OS_PROJECT_NAME", "admin")],
    );
    assert!(!o.status.success(), "scrubbed without a project");
    assert!(text(&o.stderr).contains("--project"), "{}", text(&o.stderr));
    assert_eq!(groups(), before, "admin was scrubbed");
    // Given one by name, it scrubs that one.
    manage_ok(&t.data(), &["project", "scrub", "--project", "demo"]);
    assert_eq!(groups(), before);
}

#[test]
fn manage_network_modify() {
    let t = bootstrapped("modify");
    manage_ok(
        &t.data(),
        &[
            "network",
            "create",
            "--label",
            "vmnet",
            "--fixed_range_v4",
            "10.0.0.0/24",
            "--bridge",
            "br100",
        ],
    );
    let net = || store(&t).network("10.0.0.0/24").unwrap();
    // --host sets the host and nothing else.
    let modify = |extra: &[&str]| {
        let mut a = vec!["network", "modify", "--fixed_range", "10.0.0.0/24"];
        a.extend_from_slice(extra);
        let d = t.data().display().to_string();
        let mut all = vec!["manage", "--data-dir", d.as_str()];
        all.extend_from_slice(&a);
        novanet(&all, &[("OS_PROJECT_NAME", "admin")])
    };
    assert!(modify(&["--host", "compute-1"]).status.success());
    assert_eq!(net().host.as_deref(), Some("compute-1"));
    assert_eq!(net().project_id, None, "--host set the project");
    // --project takes a name and stores the project's id.
    let demo = store(&t).project("demo").unwrap();
    assert!(modify(&["--project", "demo"]).status.success());
    assert_eq!(net().project_id.as_deref(), Some(demo.id.as_str()));
    // --disassociate-project works.
    let o = modify(&["--disassociate-project"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert_eq!(net().project_id, None);
    assert_eq!(net().host.as_deref(), Some("compute-1"));
    let o = modify(&["--disassociate-host"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert_eq!(net().host, None);
    // An unknown project name is refused, and says where the names are.
    let o = modify(&["--project", "nosuch"]);
    assert!(!o.status.success());
    assert!(
        text(&o.stderr).contains("project list"),
        "{}",
        text(&o.stderr)
    );
    assert_eq!(net().project_id, None);
}

#[test]
fn manage_network_create_resolves_the_project_name() {
    let t = bootstrapped("create");
    let demo = store(&t).project("demo").unwrap();
    manage_ok(
        &t.data(),
        &[
            "network",
            "create",
            "first-net",
            "--fixed-range-v4",
            "20.20.0.0/24",
            "--bridge",
            "br101",
            "--project-id",
            "demo",
        ],
    );
    let n = store(&t).network("20.20.0.0/24").unwrap();
    assert_eq!(n.project_id.as_deref(), Some(demo.id.as_str()));
    let o = manage(
        &t.data(),
        &[
            "network",
            "create",
            "other",
            "--fixed-range-v4",
            "20.21.0.0/24",
            "--bridge",
            "br102",
            "--project-id",
            "nosuch",
        ],
    );
    assert!(!o.status.success());
    assert!(store(&t).network("20.21.0.0/24").is_err());
}

/// `novanet manage fixed list | head -1`: the closed pipe ends it quietly, never a panic.
#[test]
fn a_closed_pipe_ends_quietly() {
    let t = bootstrapped("pipe");
    manage_ok(
        &t.data(),
        &[
            "network",
            "create",
            "big",
            "--fixed-range-v4",
            "10.8.0.0/20",
            "--num-networks",
            "1",
            "--network-size",
            "4096",
            "--bridge",
            "br8",
        ],
    );
    let d = t.data().display().to_string();
    let mut child = Command::new(BIN)
        .args(["manage", "--data-dir", &d, "fixed", "list"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    // The reader is gone: the rest (4,096 lines) meets a closed pipe.
    let o = child.wait_with_output().unwrap();
    assert!(first.contains("IP address"), "{first}");
    assert!(o.status.success(), "status {:?}", o.status);
    assert!(!text(&o.stderr).contains("panicked"), "{}", text(&o.stderr));
}

/// A test server on a free port, killed when dropped.
struct Server {
    child: Child,
    url: String,
    _dir: TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn server(name: &str) -> Server {
    let t = bootstrapped(name);
    manage_ok(
        &t.data(),
        &[
            "user",
            "create",
            "demo",
            "--password",
            "demopw",
            "--project",
            "demo",
        ],
    );
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let child = Command::new(BIN)
        .args(["server", "--data-dir"])
        .arg(t.data())
        .args(["--listen", &listen, "--metadata-listen", "off"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while std::net::TcpStream::connect(&listen).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the server did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Server {
        child,
        url: format!("http://{listen}/identity/v3"),
        _dir: t,
    }
}

impl Server {
    fn run(&self, user: (&str, &str, &str), args: &[&str]) -> Output {
        novanet(
            args,
            &[
                ("OS_AUTH_URL", &self.url),
                ("OS_USERNAME", user.0),
                ("OS_PASSWORD", user.1),
                ("OS_PROJECT_NAME", user.2),
            ],
        )
    }
}

const ADMIN: (&str, &str, &str) = ("admin", "secret", "admin");
const DEMO: (&str, &str, &str) = ("demo", "demopw", "demo");

#[test]
fn client_errors_say_what_to_check() {
    let s = server("errors");
    // 401: names the three variables.
    let o = s.run(("admin", "wrong", "admin"), &["network-list"]);
    assert!(!o.status.success());
    let e = text(&o.stderr);
    for word in ["HTTP 401", "OS_USERNAME", "OS_PASSWORD", "OS_PROJECT_NAME"] {
        assert!(e.contains(word), "no {word} in: {e}");
    }
    // A wrong auth URL: the URL tried, and what it should look like.
    let wrong = s.url.trim_end_matches("/identity/v3").to_string();
    let o = novanet(
        &[
            "--os-auth-url",
            &wrong,
            "--os-password",
            "secret",
            "network-list",
        ],
        &[],
    );
    let e = text(&o.stderr);
    assert!(!o.status.success());
    assert!(e.contains(&format!("{wrong}/auth/tokens")), "{e}");
    assert!(
        e.contains("OS_AUTH_URL") && e.contains("/identity/v3"),
        "{e}"
    );
    assert!(!e.contains("null"), "{e}");
    // Nobody listening.
    let nobody = format!("http://127.0.0.1:{}/identity/v3", free_port());
    let o = novanet(&["--os-auth-url", &nobody, "network-list"], &[]);
    let e = text(&o.stderr);
    assert!(e.contains("cannot reach") && e.contains(&nobody), "{e}");
    // 403: the policy and the role it needs.
    let o = s.run(
        DEMO,
        &[
            "network-create",
            "x",
            "--fixed-range-v4",
            "10.9.0.0/24",
            "--bridge",
            "br9",
        ],
    );
    let e = text(&o.stderr);
    assert!(e.contains("HTTP 403") && e.contains("admin role"), "{e}");
    assert!(e.contains("user 'demo' in project 'demo'"), "{e}");
    // Not found by name: the name, and where to look.
    let o = s.run(ADMIN, &["network-show", "nosuch"]);
    let e = text(&o.stderr);
    assert!(e.contains("'nosuch'") && e.contains("network-list"), "{e}");
}

#[test]
fn client_commands_say_what_they_did() {
    let s = server("changes");
    // network-create prints nothing on stdout (as novaclient), and says so on stderr.
    let o = s.run(
        ADMIN,
        &[
            "network-create",
            "vmnet",
            "--fixed-range-v4",
            "10.0.0.0/24",
            "--bridge",
            "br100",
        ],
    );
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert_eq!(text(&o.stdout), "");
    assert!(
        text(&o.stderr).contains("Created network vmnet"),
        "{}",
        text(&o.stderr)
    );
    // A project name for --project-id is ours (or refused with what to give).
    let o = s.run(
        ADMIN,
        &[
            "network-create",
            "adminnet",
            "--fixed-range-v4",
            "10.0.2.0/24",
            "--bridge",
            "br102",
            "--project-id",
            "admin",
        ],
    );
    assert!(o.status.success(), "{}", text(&o.stderr));
    let o = s.run(ADMIN, &["--json", "network-show", "adminnet"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_ne!(v["project_id"], "admin");
    assert_eq!(v["project_id"].as_str().map(str::len), Some(32));
    let o = s.run(
        ADMIN,
        &[
            "network-create",
            "demonet",
            "--fixed-range-v4",
            "10.0.3.0/24",
            "--bridge",
            "br103",
            "--project-id",
            "demo",
        ],
    );
    // Another project's name resolves through the identity API's project list.
    assert!(o.status.success(), "{}", text(&o.stderr));
    let o = s.run(ADMIN, &["--json", "network-show", "demonet"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["project_id"].as_str().map(str::len), Some(32), "{v}");
    // Security groups: update prints the group; the group rule goes by the source's name.
    let ok = |args: &[&str]| {
        let o = s.run(ADMIN, args);
        assert!(o.status.success(), "{args:?}: {}", text(&o.stderr));
        (text(&o.stdout), text(&o.stderr))
    };
    ok(&["secgroup-create", "web", "servers"]);
    let (out, _) = ok(&["secgroup-update", "web", "web2", "new"]);
    assert!(out.contains("| web2 ") && out.contains("| new "), "{out}");
    ok(&[
        "secgroup-add-group-rule",
        "default",
        "web2",
        "tcp",
        "80",
        "80",
    ]);
    let (_, err) = ok(&[
        "secgroup-delete-group-rule",
        "default",
        "web2",
        "tcp",
        "80",
        "80",
    ]);
    assert!(err.contains("Deleted rule"), "{err}");
    let (out, _) = ok(&["secgroup-list-rules", "default"]);
    assert!(!out.contains("web2"), "{out}");
    let o = s.run(
        ADMIN,
        &[
            "secgroup-delete-group-rule",
            "default",
            "web2",
            "tcp",
            "80",
            "80",
        ],
    );
    assert!(!o.status.success());
    // service-list's columns are novaclient's.
    let (out, _) = ok(&["service-list"]);
    for col in ["Binary", "Host", "Zone", "Status", "State", "Updated_at"] {
        assert!(out.contains(col), "{out}");
    }
    // A closed pipe on a table ends quietly.
    let mut child = Command::new(BIN)
        .args(["network-list"])
        .env("OS_AUTH_URL", &s.url)
        .env("OS_PASSWORD", "secret")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{:?} {}", o.status, text(&o.stderr));
    assert!(!text(&o.stderr).contains("panicked"));
}

/// `manage config show`: each option's effective value and where it came from, secrets masked,
/// and the notes an operator should read (seed 004's flag file here).
#[test]
fn manage_config_show() {
    let t = TempDir::new("config-show");
    let conf = t.0.join("nova.conf");
    std::fs::write(
        &conf,
        "--public_interface=eth1\n--fixed_range=10.0.0.0/24\n--flat_interface=eth2\n--flat_network_bridge=br100\n--network_manager=nova.network.manager.FlatDHCPManager\n",
    )
    .unwrap();
    let o = novanet(
        &[
            "manage",
            "--config",
            &conf.display().to_string(),
            "config",
            "show",
        ],
        &[],
    );
    assert!(o.status.success(), "{}", text(&o.stderr));
    let out = text(&o.stdout);
    assert!(out.contains("# format: flag file"), "{out}");
    assert!(
        out.contains(&format!(
            "flat_interface = \"eth2\"  # {}:3",
            conf.display()
        )),
        "{out}"
    );
    assert!(
        out.contains("dhcp_domain = \"novalocal\"  # default"),
        "{out}"
    );
    assert!(
        out.contains("# note: fixed_range is accepted and not needed"),
        "{out}"
    );
    // A bad value names its key and the file; nothing is shown.
    std::fs::write(&conf, "[DEFAULT]\nmulti_host = perhaps\n").unwrap();
    let o = novanet(
        &[
            "manage",
            "--config",
            &conf.display().to_string(),
            "config",
            "show",
        ],
        &[],
    );
    assert!(!o.status.success());
    assert!(
        text(&o.stderr).contains("multi_host"),
        "{}",
        text(&o.stderr)
    );
}

#[test]
fn image_create_uploads_a_file_stored_under_the_data_dir() {
    let s = server("images");
    let file = s._dir.0.join("disk.raw");
    let data = vec![7u8; 300_000];
    std::fs::write(&file, &data).unwrap();
    let f = file.display().to_string();
    let o = s.run(
        DEMO,
        &["image-create", "mine", "--file", &f, "--disk-format", "raw"],
    );
    assert!(o.status.success(), "{}", text(&o.stderr));
    let shown = text(&o.stdout);
    assert!(shown.contains("active"), "{shown}");
    assert!(shown.contains("300000"), "the size: {shown}");
    // Stored under the data dir: a file of the same bytes beside index.json.
    let images = s._dir.data().join("images");
    assert!(images.join("index.json").exists());
    let stored: Vec<_> = std::fs::read_dir(&images)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == "img"))
        .collect();
    assert_eq!(stored.len(), 1);
    assert_eq!(std::fs::read(stored[0].path()).unwrap(), data);
    let o = s.run(DEMO, &["image-list"]);
    let list = text(&o.stdout);
    assert!(list.contains("mine") && list.contains("cirros"), "{list}");
    let o = s.run(ADMIN, &["image-list"]);
    assert!(text(&o.stdout).contains("mine"), "admin sees every image");
    let o = s.run(DEMO, &["image-delete", "mine"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(!text(&s.run(DEMO, &["image-list"]).stdout).contains("mine"));
    assert!(!stored[0].path().exists(), "delete removes the data");
}

/// `manage explain` answers from the store alone, with no server running.
#[test]
fn manage_explain_reads_the_store() {
    let t = bootstrapped("explain");
    manage_ok(
        &t.data(),
        &[
            "network",
            "create",
            "vmnet",
            "--fixed-range-v4",
            "10.0.0.0/24",
            "--bridge",
            "br100",
        ],
    );
    let s = store(&t);
    let demo = s.project("demo").unwrap();
    s.ensure_default_group(&demo.id).unwrap();
    for (name, host) in [("cirros", "compute-1"), ("vm2", "compute-2")] {
        let spec = novanet_core::model::InstanceSpec {
            name: name.into(),
            project_id: demo.id.clone(),
            user_id: "u".into(),
            host: Some(host.into()),
            security_groups: vec!["default".into()],
            ..Default::default()
        };
        s.create_instance(&spec, &novanet_core::config::Config::default())
            .unwrap();
    }
    let json = manage_ok(
        &t.data(),
        &["explain", "vm2", "cirros", "tcp", "22", "--json"],
    );
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["request"]["verdict"]["outcome"], "allowed", "{json}");
    let human = manage_ok(&t.data(), &["explain", "vm2", "cirros", "tcp", "22"]);
    assert!(human.contains("allow_same_net_traffic accepts"), "{human}");
    let o = manage(&t.data(), &["explain", "nobody", "cirros"]);
    assert!(!o.status.success());
    assert!(
        text(&o.stderr).contains("invalid src"),
        "{}",
        text(&o.stderr)
    );
}

#[test]
fn manage_vpn_change_sets_the_projects_vpn_endpoint() {
    use novanet_core::config::{Config, Manager};
    use novanet_core::planning::NetworkRequest;
    let t = bootstrapped("vpn-change");
    let demo = store(&t).project("demo").unwrap().id;
    let vlan = Config {
        network_manager: Manager::Vlan,
        vlan_interface: Some("eth2".into()),
        ..Config::default()
    };
    let req = NetworkRequest {
        label: "private".into(),
        cidr: Some("10.0.0.0/24".into()),
        ..Default::default()
    };
    store(&t).create_networks(&req, &vlan).unwrap();
    store(&t).associate_project_network(&demo, None).unwrap();
    let net = || store(&t).network("10.0.0.0/24").unwrap();
    let before = (net().vpn_public_address, net().vpn_public_port);
    for (args, field) in [
        (["--ip", "192.168.56", "--port", "1000"], "ip"),
        (["--ip", "192.168.56.200", "--port", "0"], "port"),
        (["--ip", "192.168.56.200", "--port", "65536"], "port"),
    ] {
        let mut all = vec!["vpn", "change", "--project", "demo"];
        all.extend_from_slice(&args);
        let o = manage(&t.data(), &all);
        assert!(!o.status.success(), "{args:?} accepted");
        assert!(text(&o.stderr).contains(field), "{}", text(&o.stderr));
        assert_eq!((net().vpn_public_address, net().vpn_public_port), before);
    }
    manage_ok(
        &t.data(),
        &[
            "vpn",
            "change",
            "--project",
            "demo",
            "--ip",
            "198.51.100.7",
            "--port",
            "1194",
        ],
    );
    assert_eq!(net().vpn_public_address.as_deref(), Some("198.51.100.7"));
    assert_eq!(net().vpn_public_port, Some(1194));
}
