//! Property: whatever strings reach the store (a hostile project, a store written by hand or
//! by an older version), the plan the server computes and the agent re-parses renders only
//! commands and paths inside the allowed set: every `ip -batch` line is one command of known
//! words, every dnsmasq argument one option, every hosts line three fields, every file under
//! the state directory, and no hostile string shows up in any rendered text.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use novanet_agent::firewall::{self, FirewallDriver};
use novanet_agent::{parse_plan, render};
use novanet_core::config::Config;
use novanet_core::firewall::Proto;
use novanet_core::model::{BoundAddress, FloatingIp, Network};
use novanet_core::plan::{host_plan, GroupRule, SgRule, Snapshot};

/// xorshift64*: the same cases on every run, no dependency.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn one_in(&mut self, n: u64) -> bool {
        self.next().is_multiple_of(n)
    }
    fn pick<'a>(&mut self, v: &[&'a str]) -> &'a str {
        v[(self.next() % v.len() as u64) as usize]
    }
}

/// Hostile values: each holds EVIL and at least one character no valid value may hold.
const HOSTILE: &[&str] = &[
    "EVIL\nlink set eth0 down",
    "../../EVIL",
    "EVIL/x",
    "br EVIL",
    "EVIL;reboot",
    "EVIL,10.0.0.9",
    "EVIL}flush ruleset{",
    "\"EVIL\"",
    "EVIL\u{0}",
    "EVIL\r",
    "EVIL\u{e9}",
    "EVIL-far-too-long-for-an-interface\t",
    "10.0.0.1 EVIL",
    "10.0.0.0/24 EVIL",
    "fa:16:3e:00:00:01EVIL",
];

fn value(rng: &mut Rng, valid: &[&'static str]) -> String {
    if rng.one_in(12) {
        rng.pick(HOSTILE).to_string()
    } else {
        rng.pick(valid).to_string()
    }
}

fn opt(rng: &mut Rng, valid: &[&'static str]) -> Option<String> {
    (!rng.one_in(10)).then(|| value(rng, valid))
}

const WORD: &str = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.:/-";

fn check_batch_line(line: &str) {
    assert!(!line.contains('\n'), "{line:?}");
    let mut words = line.split(' ');
    let first = words.next().unwrap_or("");
    assert!(matches!(first, "link" | "addr" | "route"), "{line:?}");
    for w in line.split(' ') {
        assert!(
            !w.is_empty() && w.chars().all(|c| WORD.contains(c)),
            "{line:?}"
        );
    }
}

#[test]
fn property_no_hostile_string_reaches_a_command_or_a_path() {
    let mut rng = Rng(0x0bad_5eed);
    let cfg = Config {
        flat_network_bridge: Some("br100".into()),
        ..Config::default()
    };
    let state_dir = Path::new("/var/lib/novanet/dhcp");
    let mut rendered = 0;
    for case in 0..1500 {
        let mut networks = Vec::new();
        let mut bound = Vec::new();
        for id in 1..=2i64 {
            networks.push(Network {
                id,
                uuid: format!("net-{case}-{id}"),
                label: value(&mut rng, &["vmnet", "my net", "a,b", "x"]),
                cidr: opt(&mut rng, &["10.0.0.0/24", "10.1.0.0/16"]),
                netmask: opt(&mut rng, &["255.255.255.0"]),
                gateway: opt(&mut rng, &["10.0.0.1"]),
                broadcast: opt(&mut rng, &["10.0.0.255"]),
                dns1: opt(&mut rng, &["8.8.8.8"]),
                bridge: Some(value(&mut rng, &["br100", "br101", "brq-1.2"])),
                bridge_interface: opt(&mut rng, &["eth2", "bond0.7"]),
                vlan: (rng.one_in(8)).then(|| (rng.next() % 5000) as u32),
                mtu: (rng.one_in(8)).then(|| (rng.next() % 70000) as u32),
                dhcp_start: opt(&mut rng, &["10.0.0.2"]),
                dhcp_server: opt(&mut rng, &["10.0.0.1"]),
                host: Some("controller".into()),
                enable_dhcp: true,
                ..Network::default()
            });
            for n in 0..3i64 {
                bound.push(BoundAddress {
                    network_id: id,
                    address: value(&mut rng, &["10.0.0.5", "10.0.0.6", "10.1.2.3"]),
                    mac: value(&mut rng, &["fa:16:3e:00:00:01", "FA:16:3E:AA:BB:CC"]),
                    vif_uuid: format!("vif-{id}-{n}"),
                    instance_uuid: format!("i-{id}-{n}"),
                    instance_id: id * 10 + n,
                    hostname: value(&mut rng, &["cirros", "vm-1"]),
                    instance_host: Some("controller".into()),
                    allocated: !rng.one_in(4),
                    leased: rng.one_in(2),
                    device: opt(&mut rng, &["vnet0", "tap1234"]),
                    groups: vec![1],
                    project_id: String::new(),
                    default_route: n == 0,
                });
            }
        }
        let floating = vec![FloatingIp {
            id: 1,
            address: value(&mut rng, &["68.99.26.170"]),
            pool: "nova".into(),
            interface: value(&mut rng, &["eth0"]),
            project_id: Some("p".into()),
            fixed_ip: opt(&mut rng, &["10.0.0.5"]),
            instance_uuid: Some("i-1-0".into()),
            host: Some("controller".into()),
            auto_assigned: false,
        }];
        let rule = SgRule {
            proto: Some(Proto::Tcp),
            from_port: Some(22),
            to_port: Some(22),
            cidr: Some("0.0.0.0/0".parse().unwrap()),
            group: Some(1),
        };
        let rules = vec![GroupRule { group_id: 1, rule }];
        let snap = Snapshot {
            networks: &networks,
            bound: &bound,
            floating: &floating,
            rules: &rules,
            provider_rules: &[],
            segment_peers: &Default::default(),
            host_addresses: &Default::default(),
        };
        let plan = host_plan(&snap, &cfg, "controller", 1);
        // What reaches the agent is JSON; it parses it again, entry by entry.
        let wire = serde_json::to_value(&plan).unwrap();
        let (plan, _refused) = parse_plan(wire).expect("the plan's frame always parses");

        let mut texts: Vec<String> = Vec::new();
        for line in render::link_commands(
            &BTreeMap::new(),
            &plan.bridges,
            &plan.floating,
            &BTreeSet::new(),
            &BTreeSet::new(),
        ) {
            check_batch_line(&line);
            texts.push(line);
        }
        for d in &plan.dhcp {
            let hook = state_dir.join(format!("nova-{}.hook", d.bridge));
            assert_eq!(hook.parent(), Some(state_dir), "{hook:?}");
            for a in render::dnsmasq_args(d, state_dir, &hook) {
                assert!(
                    a.starts_with("--") && !a.chars().any(char::is_control),
                    "{a:?}"
                );
                if let Some((_, path)) = a
                    .split_once('=')
                    .filter(|(k, _)| k.ends_with("file") || k.ends_with("dir"))
                {
                    if !path.is_empty() && a != format!("--conf-file={}", d.conf_file) {
                        assert_eq!(Path::new(path).parent(), Some(state_dir), "{a}");
                    }
                }
                texts.push(a);
            }
            for line in render::dnsmasq_hosts(d).lines() {
                // MAC, the no-default-route tag on an instance's other VIFs, name, address.
                let fields = line.split(',').filter(|f| *f != "set:nogw").count();
                assert_eq!(fields, 3, "{line:?}");
                texts.push(line.to_string());
            }
            texts.push(render::dnsmasq_opts(d));
        }
        for driver in [
            FirewallDriver::Nftables,
            FirewallDriver::Iptables,
            FirewallDriver::Noop,
        ] {
            texts.push(firewall::render(driver, &plan));
        }
        for t in &texts {
            assert!(
                !t.contains("EVIL"),
                "case {case}: a hostile value was rendered: {t}"
            );
        }
        rendered += plan.dhcp.len();
    }
    // Valid values must still get through: the property says nothing if all is refused.
    assert!(
        rendered > 300,
        "too few DHCP servers rendered to prove anything: {rendered}"
    );
}
