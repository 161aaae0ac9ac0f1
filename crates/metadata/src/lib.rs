//! The metadata trees an instance reads at 169.254.169.254 and on its config drive: the EC2
//! tree (versions up to 2009-04-04) and the OpenStack tree (2012-08-10 to 2015-10-15), as
//! seed 000 shows them. Pure: an `InstanceMeta` holds everything the trees show about one
//! instance, `lookup` resolves a path in them, and `config_drive_files` lists the drive's
//! files. Whoever serves them (the server, or an agent on a compute host) brings the I/O.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use novanet_core::model::Instance;

pub const EC2_VERSIONS: &[&str] = &[
    "1.0",
    "2007-01-19",
    "2007-03-01",
    "2007-08-29",
    "2007-10-10",
    "2007-12-15",
    "2008-02-01",
    "2008-09-01",
    "2009-04-04",
];
/// Seed 000's versions, then 2015-10-15 for `network_data.json`.
pub const OPENSTACK_VERSIONS: &[&str] = &["2012-08-10", "2013-04-04", "2013-10-17", "2015-10-15"];

/// Everything the trees show about one instance (serializable: a compute host's agent keeps
/// its instances' copies and answers from them).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InstanceMeta {
    pub instance: Instance,
    pub domain: String,
    pub fixed_ips: Vec<String>,
    pub floating_ips: Vec<String>,
    pub security_groups: Vec<String>,
    pub flavor_name: String,
    pub image_index: usize,
    pub user_data: Option<Vec<u8>>,
    pub network_data: Value,
    pub vendor_data: Value,
    /// nova's injected `/etc/network/interfaces` (`flat_injected` networks only), served as
    /// `openstack/content/0000` and named by meta_data.json's `network_config`.
    pub network_config: Option<String>,
    /// base64 of 512 random bytes, made once per build as nova did (cached with the rest).
    pub random_seed: String,
}

impl InstanceMeta {
    fn hostname(&self) -> String {
        if self.domain.is_empty() {
            self.instance.hostname.clone()
        } else {
            format!("{}.{}", self.instance.hostname, self.domain)
        }
    }
}

/// What a path resolves to.
#[derive(Debug, PartialEq)]
pub enum Answer {
    Text(String),
    Json(String),
    Bytes(Vec<u8>),
    NotFound,
}

fn listing(items: &[String]) -> Answer {
    Answer::Text(items.join("\n"))
}

fn ec2_keys(v: &str, m: &InstanceMeta) -> Vec<&'static str> {
    let at_least = |x: &str| {
        EC2_VERSIONS.iter().position(|e| *e == v) >= EC2_VERSIONS.iter().position(|e| *e == x)
    };
    let mut keys = vec![
        "ami-id",
        "ami-launch-index",
        "ami-manifest-path",
        "hostname",
        "instance-id",
        "local-ipv4",
        "reservation-id",
        "security-groups",
    ];
    if m.instance.spec.key_data.is_some() {
        keys.push("public-keys/");
    }
    if at_least("2007-01-19") {
        keys.extend(["local-hostname", "public-hostname", "public-ipv4"]);
    }
    if at_least("2007-08-29") {
        keys.push("instance-type");
    }
    if at_least("2007-12-15") {
        keys.extend(["block-device-mapping/", "kernel-id", "ramdisk-id"]);
    }
    if at_least("2008-02-01") {
        keys.push("placement/");
    }
    if at_least("2008-09-01") {
        keys.push("instance-action");
    }
    keys.sort_unstable();
    keys
}

fn ec2(version: &str, rest: &[&str], m: &InstanceMeta) -> Answer {
    let v = if version == "latest" {
        EC2_VERSIONS[EC2_VERSIONS.len() - 1]
    } else {
        version
    };
    if !EC2_VERSIONS.contains(&v) {
        return Answer::NotFound;
    }
    match rest {
        [] => {
            let mut l = vec!["meta-data/".to_string()];
            if m.user_data.is_some() {
                l.push("user-data".into());
            }
            listing(&l)
        }
        ["user-data"] => m.user_data.clone().map_or(Answer::NotFound, Answer::Bytes),
        ["meta-data", rest @ ..] => {
            let keys = ec2_keys(v, m);
            let Some(first) = rest.first() else {
                return listing(&keys.iter().map(|k| k.to_string()).collect::<Vec<_>>());
            };
            let listed = keys.iter().any(|k| k.trim_end_matches('/') == *first);
            if !listed {
                return Answer::NotFound;
            }
            let i = &m.instance;
            let leaf = |s: String| {
                if rest.len() == 1 {
                    Answer::Text(s)
                } else {
                    Answer::NotFound
                }
            };
            match *first {
                "ami-id" => leaf(format!("ami-{:08x}", m.image_index + 1)),
                "ami-launch-index" => leaf(i.launch_index.to_string()),
                "ami-manifest-path" => leaf("FIXME".into()),
                "hostname" | "local-hostname" | "public-hostname" => leaf(m.hostname()),
                "instance-action" => leaf("none".into()),
                "instance-id" => leaf(format!("i-{:08x}", i.id)),
                "instance-type" => leaf(m.flavor_name.clone()),
                "kernel-id" | "ramdisk-id" => leaf(String::new()),
                "local-ipv4" => leaf(m.fixed_ips.first().cloned().unwrap_or_default()),
                "public-ipv4" => leaf(m.floating_ips.first().cloned().unwrap_or_default()),
                "reservation-id" => leaf(i.reservation_id.clone()),
                "security-groups" => leaf(m.security_groups.join("\n")),
                "block-device-mapping" => match &rest[1..] {
                    [] => Answer::Text("ami".into()),
                    ["ami"] => Answer::Text("vda".into()),
                    _ => Answer::NotFound,
                },
                "placement" => match &rest[1..] {
                    [] => Answer::Text("availability-zone".into()),
                    ["availability-zone"] => Answer::Text(
                        i.spec
                            .availability_zone
                            .clone()
                            .unwrap_or_else(|| "nova".into()),
                    ),
                    _ => Answer::NotFound,
                },
                "public-keys" => {
                    let (Some(name), Some(key)) = (&i.spec.key_name, &i.spec.key_data) else {
                        return Answer::NotFound;
                    };
                    match &rest[1..] {
                        [] => Answer::Text(format!("0={name}")),
                        ["0"] => Answer::Text("openssh-key".into()),
                        ["0", "openssh-key"] => Answer::Text(key.clone()),
                        _ => Answer::NotFound,
                    }
                }
                _ => Answer::NotFound,
            }
        }
        _ => Answer::NotFound,
    }
}

/// `json.dumps` style: `", "` and `": "` separators, keys in the given order.
fn py_json(pairs: &[(&str, Value)]) -> String {
    let body: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("{}: {}", Value::String(k.to_string()), py_value(v)))
        .collect();
    format!("{{{}}}", body.join(", "))
}

fn py_value(v: &Value) -> String {
    match v {
        Value::Object(m) => {
            let parts: Vec<String> = m
                .iter()
                .map(|(k, v)| format!("{}: {}", Value::String(k.clone()), py_value(v)))
                .collect();
            format!("{{{}}}", parts.join(", "))
        }
        Value::Array(a) => format!(
            "[{}]",
            a.iter().map(py_value).collect::<Vec<_>>().join(", ")
        ),
        other => other.to_string(),
    }
}

fn meta_data_json(v: &str, m: &InstanceMeta) -> String {
    let i = &m.instance;
    let mut pairs: Vec<(&str, Value)> = vec![
        ("uuid", json!(i.uuid)),
        (
            "availability_zone",
            json!(i
                .spec
                .availability_zone
                .clone()
                .unwrap_or_else(|| "nova".into())),
        ),
        ("hostname", json!(m.hostname())),
        ("launch_index", json!(i.launch_index)),
    ];
    if !i.spec.metadata.is_empty() {
        pairs.push(("meta", json!(i.spec.metadata)));
    }
    pairs.push(("project_id", json!(i.spec.project_id)));
    if let (Some(name), Some(key)) = (&i.spec.key_name, &i.spec.key_data) {
        pairs.push(("public_keys", json!({ name: key })));
    }
    pairs.push(("name", json!(i.spec.name)));
    if v >= "2013-04-04" {
        pairs.push(("random_seed", json!(m.random_seed)));
    }
    if v >= "2015-10-15" {
        if let (Some(name), Some(key)) = (&i.spec.key_name, &i.spec.key_data) {
            pairs.push(("keys", json!([{"name": name, "type": "ssh", "data": key}])));
        }
    }
    if m.network_config.is_some() {
        // nova named the file twice: as network_config (which cloud-init converts) and, as
        // its file injection did, as the image's /etc/network/interfaces.
        let content_path = format!("/{CONTENT_DIR}/{NETWORK_CONFIG_KEY}");
        pairs.push((
            "files",
            json!([{"path": "/etc/network/interfaces", "content_path": content_path}]),
        ));
        pairs.push((
            "network_config",
            json!({"name": "network_config", "content_path": content_path}),
        ));
    }
    py_json(&pairs)
}

/// nova's directory for injected content, beside the versions (`openstack/content/0000`).
pub const CONTENT_DIR: &str = "content";
/// The key of the interfaces file: nova numbered content from 0000 and it is the only one.
pub const NETWORK_CONFIG_KEY: &str = "0000";

fn openstack(rest: &[&str], m: &InstanceMeta, password: Option<&str>) -> Answer {
    if let [CONTENT_DIR, key] = rest {
        return match (&m.network_config, *key == NETWORK_CONFIG_KEY) {
            (Some(c), true) => Answer::Text(c.clone()),
            _ => Answer::NotFound,
        };
    }
    let Some(version) = rest.first() else {
        let mut l: Vec<String> = OPENSTACK_VERSIONS.iter().map(|s| s.to_string()).collect();
        l.push("latest".into());
        return listing(&l);
    };
    let v = if *version == "latest" {
        OPENSTACK_VERSIONS[OPENSTACK_VERSIONS.len() - 1]
    } else {
        version
    };
    if !OPENSTACK_VERSIONS.contains(&v) {
        return Answer::NotFound;
    }
    let has_password = v >= "2013-04-04";
    let has_vendor = v >= "2013-10-17";
    let has_network = v >= "2015-10-15";
    match &rest[1..] {
        [] => {
            let mut l = vec!["meta_data.json".to_string()];
            if m.user_data.is_some() {
                l.push("user_data".into());
            }
            if has_password {
                l.push("password".into());
            }
            if has_vendor {
                l.push("vendor_data.json".into());
            }
            if has_network {
                l.push("network_data.json".into());
            }
            listing(&l)
        }
        ["meta_data.json"] => Answer::Json(meta_data_json(v, m)),
        ["user_data"] => m.user_data.clone().map_or(Answer::NotFound, Answer::Bytes),
        ["password"] if has_password => Answer::Text(password.unwrap_or_default().to_string()),
        ["vendor_data.json"] if has_vendor => Answer::Json(py_value(&m.vendor_data)),
        ["network_data.json"] if has_network => Answer::Json(py_value(&m.network_data)),
        _ => Answer::NotFound,
    }
}

/// Resolves a metadata path for an instance (None: the request came from no instance, which
/// only `/` tolerates).
pub fn lookup(path: &str, m: Option<&InstanceMeta>, password: Option<&str>) -> Answer {
    let segs: Vec<&str> = path
        .split('/')
        .filter(|s| !s.is_empty() && *s != ".")
        .collect();
    if segs.contains(&"..") {
        return Answer::NotFound;
    }
    // The tree is the first segment's: `/openstackx` or `/ec2/openstack` are EC2 paths.
    if segs.first() == Some(&"openstack") {
        return m.map_or(Answer::NotFound, |m| openstack(&segs[1..], m, password));
    }
    let segs: &[&str] = if segs.first() == Some(&"ec2") {
        &segs[1..]
    } else {
        &segs
    };
    if segs.is_empty() {
        let mut l: Vec<String> = EC2_VERSIONS.iter().map(|s| s.to_string()).collect();
        l.push("latest".into());
        return listing(&l);
    }
    let Some(m) = m else { return Answer::NotFound };
    ec2(segs[0], &segs[1..], m)
}

fn answer_bytes(a: Answer) -> Option<Vec<u8>> {
    match a {
        Answer::Text(s) | Answer::Json(s) => Some(s.into_bytes()),
        Answer::Bytes(b) => Some(b),
        Answer::NotFound => None,
    }
}

/// The EC2 tree under `path` (a listing) as JSON, as nova wrote `ec2/*/meta-data.json`:
/// a subtree per `name/` (and per `0=name`, the public-keys form), a string per leaf.
fn ec2_json(path: &str, m: &InstanceMeta) -> Value {
    let Answer::Text(list) = lookup(path, Some(m), None) else {
        return Value::Null;
    };
    let mut out = serde_json::Map::new();
    for entry in list.lines().filter(|l| !l.is_empty()) {
        if let Some(sub) = entry
            .strip_suffix('/')
            .or_else(|| entry.split_once('=').map(|(k, _)| k))
        {
            out.insert(sub.to_string(), ec2_json(&format!("{path}{sub}/"), m));
        } else if let Some(b) = answer_bytes(lookup(&format!("{path}{entry}"), Some(m), None)) {
            out.insert(
                entry.to_string(),
                Value::String(String::from_utf8_lossy(&b).into_owned()),
            );
        }
    }
    Value::Object(out)
}

/// The config drive's files (path, bytes), read from the same trees the metadata service
/// serves: `openstack/<each version and latest>/` without the password (nova left it out),
/// `openstack/content/0000` when the interfaces are injected, and `ec2/<2009-04-04 and
/// latest>/meta-data.json` and `user-data`.
pub fn config_drive_files(m: &InstanceMeta) -> Vec<(String, Vec<u8>)> {
    let mut files = Vec::new();
    let lines = |a: Answer| match a {
        Answer::Text(t) => t.lines().map(str::to_string).collect::<Vec<_>>(),
        _ => Vec::new(),
    };
    for v in lines(lookup("/openstack", Some(m), None)) {
        for f in lines(lookup(&format!("/openstack/{v}/"), Some(m), None)) {
            if f == "password" {
                continue;
            }
            let path = format!("openstack/{v}/{f}");
            if let Some(b) = answer_bytes(lookup(&path, Some(m), None)) {
                files.push((path, b));
            }
        }
    }
    let content = format!("openstack/{CONTENT_DIR}/{NETWORK_CONFIG_KEY}");
    if let Some(b) = answer_bytes(lookup(&content, Some(m), None)) {
        files.push((content, b));
    }
    for v in [EC2_VERSIONS[EC2_VERSIONS.len() - 1], "latest"] {
        let tree = ec2_json(&format!("/{v}/meta-data/"), m);
        files.push((
            format!("ec2/{v}/meta-data.json"),
            py_value(&tree).into_bytes(),
        ));
        if let Some(b) = answer_bytes(lookup(&format!("/{v}/user-data"), Some(m), None)) {
            files.push((format!("ec2/{v}/user-data"), b));
        }
    }
    files
}

#[cfg(test)]
mod tests {
    use super::*;
    use novanet_core::model::InstanceSpec;
    use std::collections::BTreeMap;

    fn meta(with_key: bool) -> InstanceMeta {
        let mut spec = InstanceSpec {
            name: "test".into(),
            project_id: "f7ac731cc11f40efbc03a9f9e1d1d21f".into(),
            availability_zone: Some("nova".into()),
            flavor_id: Some("1".into()),
            metadata: BTreeMap::from([
                ("priority".into(), "low".into()),
                ("role".into(), "webserver".into()),
            ]),
            // base64 of the script below.
            user_data: Some("IyEvYmluL2Jhc2gKZWNobyAnRXh0cmEgdXNlciBkYXRhIGhlcmUnCg==".into()),
            ..Default::default()
        };
        if with_key {
            spec.key_name = Some("mykey".into());
            spec.key_data = Some("ssh-rsa AAAA Generated by Nova\n".into());
        }
        InstanceMeta {
            instance: Instance {
                id: 9,
                uuid: "d8e02d56-2648-49a3-bf97-6be8f1204f38".into(),
                hostname: "test".into(),
                launch_index: 0,
                reservation_id: "r-abcd1234".into(),
                created_at: 0,
                password: None,
                updated_at: 0,
                power: Default::default(),
                locked_by: None,
                actions: Vec::new(),
                spec,
            },
            domain: "novalocal".into(),
            fixed_ips: vec!["10.0.0.2".into()],
            floating_ips: vec![],
            security_groups: vec!["default".into()],
            flavor_name: "m1.tiny".into(),
            image_index: 0,
            user_data: Some(b"#!/bin/bash\necho 'Extra user data here'\n".to_vec()),
            network_data: json!({"links": [], "networks": [], "services": []}),
            vendor_data: json!({}),
            network_config: None,
            random_seed: "c2VlZA==".into(),
        }
    }

    fn t(a: Answer) -> String {
        match a {
            Answer::Text(s) | Answer::Json(s) => s,
            Answer::Bytes(b) => String::from_utf8(b).unwrap(),
            Answer::NotFound => "<404>".into(),
        }
    }

    #[test]
    fn seed_listings() {
        let m = meta(true);
        assert_eq!(t(lookup("/", None, None)), "1.0\n2007-01-19\n2007-03-01\n2007-08-29\n2007-10-10\n2007-12-15\n2008-02-01\n2008-09-01\n2009-04-04\nlatest");
        assert_eq!(t(lookup("/2009-04-04/meta-data/", Some(&m), None)),
            "ami-id\nami-launch-index\nami-manifest-path\nblock-device-mapping/\nhostname\ninstance-action\ninstance-id\ninstance-type\nkernel-id\nlocal-hostname\nlocal-ipv4\nplacement/\npublic-hostname\npublic-ipv4\npublic-keys/\nramdisk-id\nreservation-id\nsecurity-groups");
        assert_eq!(
            t(lookup(
                "/2009-04-04/meta-data/block-device-mapping/",
                Some(&m),
                None
            )),
            "ami"
        );
        assert_eq!(
            t(lookup("/2009-04-04/meta-data/placement/", Some(&m), None)),
            "availability-zone"
        );
        assert_eq!(
            t(lookup("/2009-04-04/meta-data/public-keys/", Some(&m), None)),
            "0=mykey"
        );
        assert_eq!(
            t(lookup(
                "/2009-04-04/meta-data/public-keys/0/openssh-key",
                Some(&m),
                None
            )),
            "ssh-rsa AAAA Generated by Nova\n"
        );
        assert_eq!(
            t(lookup("/2009-04-04/user-data", Some(&m), None)),
            "#!/bin/bash\necho 'Extra user data here'\n"
        );
        assert_eq!(
            t(lookup("/2009-04-04/meta-data/instance-id", Some(&m), None)),
            "i-00000009"
        );
        assert_eq!(
            t(lookup("/latest/meta-data/hostname", Some(&m), None)),
            "test.novalocal"
        );
        assert_eq!(
            t(lookup("/2009-04-04", Some(&m), None)),
            "meta-data/\nuser-data"
        );
        assert_eq!(
            t(lookup("/openstack", Some(&m), None)),
            "2012-08-10\n2013-04-04\n2013-10-17\n2015-10-15\nlatest"
        );
        assert_eq!(
            t(lookup("/openstack/2012-08-10/", Some(&m), None)),
            "meta_data.json\nuser_data"
        );
        assert_eq!(
            t(lookup("/openstack/2012-08-10/user_data", Some(&m), None)),
            "#!/bin/bash\necho 'Extra user data here'\n"
        );
        assert_eq!(
            t(lookup(
                "/openstack/2012-08-10/meta_data.json",
                Some(&m),
                None
            )),
            r#"{"uuid": "d8e02d56-2648-49a3-bf97-6be8f1204f38", "availability_zone": "nova", "hostname": "test.novalocal", "launch_index": 0, "meta": {"priority": "low", "role": "webserver"}, "project_id": "f7ac731cc11f40efbc03a9f9e1d1d21f", "public_keys": {"mykey": "ssh-rsa AAAA Generated by Nova\n"}, "name": "test"}"#
        );
    }

    #[test]
    fn errors_are_404() {
        let m = meta(false);
        for p in [
            "/2009-04-04/meta-data/public-keys/",
            "/2009-04-04/meta-data/nope",
            "/2009-04-04/meta-data/hostname/deeper",
            "/1999-01-01/meta-data/",
            "/openstack/2011-01-01/meta_data.json",
            "/openstack/2012-08-10/password",
            "/openstack/2012-08-10/../../etc/passwd",
        ] {
            assert_eq!(lookup(p, Some(&m), None), Answer::NotFound, "{p}");
        }
        assert!(!t(lookup("/2009-04-04/meta-data/", Some(&m), None)).contains("public-keys"));
        assert_eq!(
            lookup("/2009-04-04/meta-data/", None, None),
            Answer::NotFound
        );
    }

    #[test]
    fn config_drive_contents() {
        let mut m = meta(true);
        m.network_config = Some("auto lo\niface lo inet loopback\n".into());
        let files = config_drive_files(&m);
        let paths: Vec<&str> = files.iter().map(|f| f.0.as_str()).collect();
        let mut want = Vec::new();
        for v in [
            "2012-08-10",
            "2013-04-04",
            "2013-10-17",
            "2015-10-15",
            "latest",
        ] {
            want.push(format!("openstack/{v}/meta_data.json"));
            want.push(format!("openstack/{v}/user_data"));
            if v != "2012-08-10" && v != "2013-04-04" {
                want.push(format!("openstack/{v}/vendor_data.json"));
            }
            if v == "2015-10-15" || v == "latest" {
                want.push(format!("openstack/{v}/network_data.json"));
            }
        }
        want.push("openstack/content/0000".into());
        for v in ["2009-04-04", "latest"] {
            want.push(format!("ec2/{v}/meta-data.json"));
            want.push(format!("ec2/{v}/user-data"));
        }
        assert_eq!(paths, want);
        let file = |p: &str| {
            String::from_utf8(files.iter().find(|f| f.0 == p).unwrap().1.clone()).unwrap()
        };
        assert_eq!(
            file("openstack/latest/meta_data.json"),
            r#"{"uuid": "d8e02d56-2648-49a3-bf97-6be8f1204f38", "availability_zone": "nova", "hostname": "test.novalocal", "launch_index": 0, "meta": {"priority": "low", "role": "webserver"}, "project_id": "f7ac731cc11f40efbc03a9f9e1d1d21f", "public_keys": {"mykey": "ssh-rsa AAAA Generated by Nova\n"}, "name": "test", "random_seed": "c2VlZA==", "keys": [{"data": "ssh-rsa AAAA Generated by Nova\n", "name": "mykey", "type": "ssh"}], "files": [{"content_path": "/content/0000", "path": "/etc/network/interfaces"}], "network_config": {"content_path": "/content/0000", "name": "network_config"}}"#
        );
        assert_eq!(
            file("openstack/content/0000"),
            "auto lo\niface lo inet loopback\n"
        );
        assert_eq!(
            file("openstack/latest/network_data.json"),
            r#"{"links": [], "networks": [], "services": []}"#
        );
        assert_eq!(
            file("ec2/latest/meta-data.json"),
            r#"{"ami-id": "ami-00000001", "ami-launch-index": "0", "ami-manifest-path": "FIXME", "block-device-mapping": {"ami": "vda"}, "hostname": "test.novalocal", "instance-action": "none", "instance-id": "i-00000009", "instance-type": "m1.tiny", "kernel-id": "", "local-hostname": "test.novalocal", "local-ipv4": "10.0.0.2", "placement": {"availability-zone": "nova"}, "public-hostname": "test.novalocal", "public-ipv4": "", "public-keys": {"0": {"openssh-key": "ssh-rsa AAAA Generated by Nova\n"}}, "ramdisk-id": "", "reservation-id": "r-abcd1234", "security-groups": "default"}"#
        );
        assert_eq!(
            file("ec2/2009-04-04/user-data"),
            "#!/bin/bash\necho 'Extra user data here'\n"
        );
        // Without injection: no content, no reference to it.
        let plain = config_drive_files(&meta(false));
        assert!(plain.iter().all(|f| !f.0.contains("content")));
        assert!(!String::from_utf8_lossy(&plain[0].1).contains("network_config"));
    }
}
