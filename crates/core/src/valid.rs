//! The trust boundary in types: values that reach a host's kernel, files or command lines
//! (interface names, hostnames, DHCP tags, MTUs, VLAN ids) and the rules for names and
//! ranges that projects send. A value of these types cannot hold anything a host must not
//! be given; they serialise as plain strings, and deserialising checks again, so an agent
//! re-validates every plan it receives.

use std::fmt;
use std::net::Ipv4Addr;
use std::ops::Deref;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::net::Ipv4Cidr;

macro_rules! checked_string {
    ($(#[$doc:meta])* $name:ident, $check:path) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            pub fn new(s: impl Into<String>) -> std::result::Result<Self, String> {
                let s = s.into();
                $check(&s)?;
                Ok($name(s))
            }
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }
        impl TryFrom<String> for $name {
            type Error = String;
            fn try_from(s: String) -> std::result::Result<Self, String> {
                $name::new(s)
            }
        }
        impl std::str::FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> std::result::Result<Self, String> {
                $name::new(s)
            }
        }
        impl From<$name> for String {
            fn from(v: $name) -> String {
                v.0
            }
        }
        impl Deref for $name {
            type Target = str;
            fn deref(&self) -> &str {
                &self.0
            }
        }
        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }
        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }
    };
}

/// Linux's rule for interface names (`dev_valid_name`): 1 to 15 bytes, no `/`, `:` or
/// whitespace, not `.` or `..`. novanet allows only `[A-Za-z0-9_.-]` of those, so that a name
/// is safe in an `ip -batch` line, an nft script and a file name alike.
fn check_ifname(s: &str) -> std::result::Result<(), String> {
    if s.is_empty() || s.len() > 15 {
        return Err(format!(
            "{s:?} is not an interface name: it must be 1 to 15 characters"
        ));
    }
    if s == "." || s == ".." {
        return Err(format!("{s:?} is not an interface name"));
    }
    if let Some(c) = s
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
    {
        return Err(format!(
            "{s:?} is not an interface name: {c:?} is not allowed (use letters, digits, '_', '.', '-')"
        ));
    }
    Ok(())
}

checked_string!(
    /// A Linux interface name, checked as the kernel checks it (and stricter).
    IfName,
    check_ifname
);

/// RFC 1123 label: `[a-z0-9-]`, 1 to 63 characters, no leading or trailing `-`. Hostnames go
/// into dnsmasq's hosts lines (`MAC,NAME.DOMAIN,IP`), where a comma or newline would be a
/// new field or a new line.
fn check_hostname(s: &str) -> std::result::Result<(), String> {
    if s.is_empty() || s.len() > 63 {
        return Err(format!(
            "{s:?} is not a hostname: it must be 1 to 63 characters"
        ));
    }
    if s.starts_with('-') || s.ends_with('-') {
        return Err(format!(
            "{s:?} is not a hostname: it may not start or end with '-'"
        ));
    }
    if let Some(c) = s
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
    {
        return Err(format!(
            "{s:?} is not a hostname: {c:?} is not allowed (use a-z, 0-9, '-')"
        ));
    }
    Ok(())
}

checked_string!(
    /// One DNS label, as nova made instance hostnames.
    Hostname,
    check_hostname
);

/// A DNS domain: dot-separated hostnames (`novalocal`, `example.org`), or empty for none.
fn check_domain(s: &str) -> std::result::Result<(), String> {
    if s.is_empty() {
        return Ok(());
    }
    if s.len() > 253 {
        return Err(format!("{s:?} is not a domain: longer than 253 characters"));
    }
    for label in s.split('.') {
        check_hostname(&label.to_ascii_lowercase())
            .map_err(|_| format!("{s:?} is not a domain: {label:?} is not a DNS label"))?;
    }
    Ok(())
}

checked_string!(
    /// A DNS domain name, possibly empty (dnsmasq's `--domain`).
    DnsDomain,
    check_domain
);

/// A dnsmasq tag (`set:TAG` in `--dhcp-range`), where a comma would start another field.
fn check_tag(s: &str) -> std::result::Result<(), String> {
    if s.is_empty() || s.len() > 64 {
        return Err(format!("{s:?} is not a DHCP tag: 1 to 64 characters"));
    }
    if let Some(c) = s
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
    {
        return Err(format!("{s:?} is not a DHCP tag: {c:?} is not allowed"));
    }
    Ok(())
}

checked_string!(
    /// The tag a network's DHCP range is known by inside dnsmasq.
    DhcpTag,
    check_tag
);

impl DhcpTag {
    /// The network's label when it is a valid tag (nova used the label), otherwise a tag
    /// from the network's id, so a label of any text never reaches dnsmasq's command line.
    pub fn for_network(label: &str, id: i64) -> DhcpTag {
        DhcpTag::new(label).unwrap_or_else(|_| DhcpTag(format!("net{id}")))
    }
}

fn check_ipv4(s: &str) -> std::result::Result<(), String> {
    match s.parse::<Ipv4Addr>() {
        Ok(a) if a.to_string() == s => Ok(()),
        _ => Err(format!("{s:?} is not an IPv4 address")),
    }
}

checked_string!(
    /// An IPv4 address in its canonical dotted form, kept as text.
    Ipv4Text,
    check_ipv4
);

impl From<Ipv4Addr> for Ipv4Text {
    fn from(a: Ipv4Addr) -> Ipv4Text {
        Ipv4Text(a.to_string())
    }
}

impl Ipv4Text {
    pub fn addr(&self) -> Ipv4Addr {
        self.0.parse().expect("checked on construction")
    }
}

fn check_ipv6(s: &str) -> std::result::Result<(), String> {
    match s.parse::<std::net::Ipv6Addr>() {
        Ok(a) if a.to_string() == s => Ok(()),
        Ok(a) => Err(format!(
            "{s:?} is not a canonical IPv6 address (did you mean {a}?)"
        )),
        _ => Err(format!("{s:?} is not an IPv6 address")),
    }
}

checked_string!(
    /// An IPv6 address in its canonical (RFC 5952) form, kept as text.
    Ipv6Text,
    check_ipv6
);

impl From<std::net::Ipv6Addr> for Ipv6Text {
    fn from(a: std::net::Ipv6Addr) -> Ipv6Text {
        Ipv6Text(a.to_string())
    }
}

impl Ipv6Text {
    pub fn addr(&self) -> std::net::Ipv6Addr {
        self.0.parse().expect("checked on construction")
    }
}

fn check_ipv6_prefix(s: &str) -> std::result::Result<(), String> {
    let c: crate::net::Ipv6Cidr = s.parse()?;
    if c.to_string() != s {
        return Err(format!(
            "{s:?} is not a canonical IPv6 prefix (did you mean {c}?)"
        ));
    }
    Ok(())
}

checked_string!(
    /// An IPv6 prefix in canonical form (`fd00:1::/64`): what radvd advertises.
    Ipv6Prefix,
    check_ipv6_prefix
);

impl From<crate::net::Ipv6Cidr> for Ipv6Prefix {
    fn from(c: crate::net::Ipv6Cidr) -> Ipv6Prefix {
        Ipv6Prefix(c.to_string())
    }
}

impl Ipv6Prefix {
    pub fn cidr(&self) -> crate::net::Ipv6Cidr {
        self.0.parse().expect("checked on construction")
    }
}

impl From<Ipv6Prefix> for CidrText {
    fn from(p: Ipv6Prefix) -> CidrText {
        CidrText(p.0)
    }
}

impl From<std::net::Ipv6Addr> for CidrText {
    /// A single address as a /128.
    fn from(a: std::net::Ipv6Addr) -> CidrText {
        CidrText(format!("{a}/128"))
    }
}

/// An IPv4 or IPv6 prefix in canonical form (host bits clear), or a bare IPv4 address
/// (a /32): what a firewall rule matches.
fn check_cidr(s: &str) -> std::result::Result<(), String> {
    if check_ipv4(s).is_ok() {
        return Ok(());
    }
    let canonical = if s.contains(':') {
        s.parse::<crate::net::Ipv6Cidr>().map(|c| c.to_string())
    } else {
        s.parse::<Ipv4Cidr>().map(|c| c.to_string())
    };
    match canonical {
        Ok(c) if c == s => Ok(()),
        Ok(c) => Err(format!("{s:?} is not a canonical CIDR (did you mean {c}?)")),
        Err(e) => Err(e),
    }
}

checked_string!(
    /// A CIDR (IPv4 or IPv6) or a single IPv4 address, as a rule matches it.
    CidrText,
    check_cidr
);

impl From<Ipv4Cidr> for CidrText {
    fn from(c: Ipv4Cidr) -> CidrText {
        CidrText(c.to_string())
    }
}

impl CidrText {
    pub fn is_v6(&self) -> bool {
        self.0.contains(':')
    }
}

/// A NAT destination: an IPv4 address with an optional port (`10.0.0.2`, `10.0.0.1:8775`).
fn check_nat_to(s: &str) -> std::result::Result<(), String> {
    let (addr, port) = match s.split_once(':') {
        Some((a, p)) => (a, Some(p)),
        None => (s, None),
    };
    check_ipv4(addr)?;
    if let Some(p) = port {
        match p.parse::<u16>() {
            Ok(n) if n > 0 && n.to_string() == p => {}
            _ => return Err(format!("{s:?}: {p:?} is not a port")),
        }
    }
    Ok(())
}

checked_string!(
    /// Where DNAT or SNAT sends a packet.
    NatTo,
    check_nat_to
);

impl From<Ipv4Addr> for NatTo {
    fn from(a: Ipv4Addr) -> NatTo {
        NatTo(a.to_string())
    }
}

fn check_mac(s: &str) -> std::result::Result<(), String> {
    s.parse::<crate::net::Mac>().map(|_| ())
}

checked_string!(
    /// A MAC address (`xx:xx:xx:xx:xx:xx`, either case).
    MacText,
    check_mac
);

/// A bridge's MTU, in [`MTU_RANGE`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "u32", into = "u32")]
pub struct Mtu(u32);

impl Mtu {
    pub fn new(v: u32) -> Result<Mtu> {
        check_mtu("mtu", v).map(Mtu)
    }
    pub fn get(self) -> u32 {
        self.0
    }
}

impl TryFrom<u32> for Mtu {
    type Error = String;
    fn try_from(v: u32) -> std::result::Result<Mtu, String> {
        Mtu::new(v).map_err(|e| e.to_string())
    }
}

impl From<Mtu> for u32 {
    fn from(m: Mtu) -> u32 {
        m.0
    }
}

impl fmt::Display for Mtu {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Ethernet's payload size: the MTU of an interface nobody configured.
pub const ETHERNET_MTU: u32 = 1500;

/// An 802.1Q VLAN id (also a VXLAN segment's VNI), in [`VLAN_RANGE`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "u32", into = "u32")]
pub struct VlanId(u32);

impl VlanId {
    pub fn new(v: u32) -> Result<VlanId> {
        check_vlan("vlan", v).map(VlanId)
    }
    pub fn get(self) -> u32 {
        self.0
    }
}

impl TryFrom<u32> for VlanId {
    type Error = String;
    fn try_from(v: u32) -> std::result::Result<VlanId, String> {
        VlanId::new(v).map_err(|e| e.to_string())
    }
}

impl From<VlanId> for u32 {
    fn from(m: VlanId) -> u32 {
        m.0
    }
}

impl fmt::Display for VlanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// An interface address with its prefix length (`10.0.0.1/24`), as `ip addr add` takes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct IfAddr {
    pub addr: Ipv4Addr,
    pub prefix: u8,
}

impl IfAddr {
    pub fn new(addr: Ipv4Addr, prefix: u8) -> Option<IfAddr> {
        (prefix <= 32).then_some(IfAddr { addr, prefix })
    }
}

impl std::str::FromStr for IfAddr {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let (a, p) = s
            .split_once('/')
            .ok_or_else(|| format!("{s:?} is not ADDRESS/PREFIX"))?;
        let addr: Ipv4Addr = a
            .parse()
            .map_err(|_| format!("{s:?}: {a:?} is not an IPv4 address"))?;
        let prefix = crate::net::parse_prefix_len(p, 32)
            .ok_or_else(|| format!("{s:?}: the prefix length must be 0 to 32"))?;
        Ok(IfAddr { addr, prefix })
    }
}

impl TryFrom<String> for IfAddr {
    type Error = String;
    fn try_from(s: String) -> std::result::Result<Self, String> {
        s.parse()
    }
}

impl From<IfAddr> for String {
    fn from(v: IfAddr) -> String {
        v.to_string()
    }
}

impl fmt::Display for IfAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// Ethernet MTUs a bridge may be given: IPv4's minimum to the largest jumbo frame.
pub const MTU_RANGE: std::ops::RangeInclusive<u32> = 68..=9216;
/// 802.1Q VLAN ids (0 and 4095 are reserved).
pub const VLAN_RANGE: std::ops::RangeInclusive<u32> = 1..=4094;

pub fn check_mtu(field: &str, mtu: u32) -> Result<u32> {
    if MTU_RANGE.contains(&mtu) {
        Ok(mtu)
    } else {
        Err(Error::invalid(
            field,
            format!(
                "{mtu} is out of range: an MTU is {} to {}",
                MTU_RANGE.start(),
                MTU_RANGE.end()
            ),
        ))
    }
}

pub fn check_vlan(field: &str, vlan: u32) -> Result<u32> {
    if VLAN_RANGE.contains(&vlan) {
        Ok(vlan)
    } else {
        Err(Error::invalid(
            field,
            format!("{vlan} is out of range: a VLAN id is 1 to 4094"),
        ))
    }
}

/// The longest name or label the API keeps (Nova's and Keystone's column size).
pub const MAX_NAME_LEN: usize = 255;

/// A display name, label or description from a request: at most 255 characters and no
/// control characters (NUL, CR, LF...), which would end up in logs, tables and files.
pub fn check_name(field: &str, s: &str) -> Result<()> {
    if s.chars().count() > MAX_NAME_LEN {
        return Err(Error::invalid(
            field,
            format!("is longer than {MAX_NAME_LEN} characters"),
        ));
    }
    if let Some(c) = s.chars().find(|c| c.is_control()) {
        return Err(Error::invalid(
            field,
            format!("contains the control character {c:?}"),
        ));
    }
    Ok(())
}

/// Why an IPv4 range may not be a tenant network, if it may not: ranges a host or the
/// cloud itself uses, or that are not unicast (IANA special-purpose registry).
pub fn special_purpose_v4(c: &Ipv4Cidr) -> Option<&'static str> {
    const SPECIAL: &[(&str, &str)] = &[
        ("0.0.0.0/8", "\"this network\" (0.0.0.0/8)"),
        ("127.0.0.0/8", "loopback (127.0.0.0/8)"),
        (
            "169.254.0.0/16",
            "link-local (169.254.0.0/16, the metadata address's range)",
        ),
        ("224.0.0.0/4", "multicast (224.0.0.0/4)"),
        ("240.0.0.0/4", "reserved (240.0.0.0/4)"),
        ("255.255.255.255/32", "the limited broadcast address"),
    ];
    SPECIAL.iter().find_map(|(range, why)| {
        let r: Ipv4Cidr = range.parse().expect("constant CIDR");
        r.overlaps(c).then_some(*why)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interface_names() {
        for ok in [
            "br100",
            "eth1",
            "vlan100",
            "vnet0",
            "a",
            "br-ex_1.2",
            "x23456789012345",
        ] {
            assert!(IfName::new(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            ".",
            "..",
            "../etc",
            "br100\nlink del eth0",
            "a b",
            "eth0:1",
            "x234567890123456",
            "br\u{0}",
            "bré",
            "br;x",
        ] {
            assert!(IfName::new(bad).is_err(), "{bad:?}");
        }
        let e = IfName::new("br 1").unwrap_err();
        assert!(e.contains("' '"), "{e}");
    }

    #[test]
    fn serde_checks_again() {
        let ok: IfName = serde_json::from_str("\"br100\"").unwrap();
        assert_eq!(ok, "br100");
        assert_eq!(serde_json::to_string(&ok).unwrap(), "\"br100\"");
        assert!(serde_json::from_str::<IfName>("\"../x\"").is_err());
        assert!(serde_json::from_str::<Hostname>("\"a,b\"").is_err());
        let a: IfAddr = serde_json::from_str("\"10.0.0.1/24\"").unwrap();
        assert_eq!(a.to_string(), "10.0.0.1/24");
        assert!(serde_json::from_str::<IfAddr>("\"10.0.0.1/024\"").is_err());
    }

    #[test]
    fn hostnames_domains_tags() {
        assert!(Hostname::new("cirros").is_ok());
        assert!(Hostname::new("a,b").is_err());
        assert!(Hostname::new("-a").is_err());
        assert!(DnsDomain::new("novalocal").is_ok());
        assert!(DnsDomain::new("").is_ok());
        assert!(DnsDomain::new("a..b").is_err());
        assert!(DnsDomain::new("a\nb").is_err());
        assert_eq!(DhcpTag::for_network("vmnet", 3).as_str(), "vmnet");
        assert_eq!(DhcpTag::for_network("my net,x", 3).as_str(), "net3");
    }

    #[test]
    fn addresses_as_text() {
        assert!(Ipv4Text::new("10.0.0.2").is_ok());
        assert!(Ipv4Text::new("10.0.0.02").is_err());
        assert!(Ipv4Text::new("10.0.0.2\n").is_err());
        for ok in ["10.0.0.0/24", "0.0.0.0/0", "10.0.0.5", "::/0", "fd00::/48"] {
            assert!(CidrText::new(ok).is_ok(), "{ok}");
        }
        for bad in [
            "10.0.0.5/24",
            "10.0.0.0/029",
            "x",
            "10.0.0.0/24; flush ruleset",
        ] {
            assert!(CidrText::new(bad).is_err(), "{bad}");
        }
        assert!(Ipv6Text::new("fd00:1::1").is_ok());
        for bad in [
            "fd00:1:0::1",
            "FD00::1",
            "10.0.0.1",
            "fd00::1/64",
            "fd00::1 ",
        ] {
            assert!(Ipv6Text::new(bad).is_err(), "{bad}");
        }
        assert!(Ipv6Prefix::new("fd00:1::/64").is_ok());
        for bad in ["fd00:1::1/64", "fd00:1::", "10.0.0.0/24", "fd00::/129"] {
            assert!(Ipv6Prefix::new(bad).is_err(), "{bad}");
        }
        assert!(NatTo::new("10.0.0.1:8775").is_ok());
        assert!(NatTo::new("10.0.0.1:0").is_err());
        assert!(NatTo::new("10.0.0.1:80 ").is_err());
        assert!(MacText::new("FA:16:3e:00:00:01").is_ok());
        assert!(MacText::new("fa:16:3e:00:00").is_err());
        assert!(serde_json::from_str::<Mtu>("1500").is_ok());
        assert!(serde_json::from_str::<Mtu>("10").is_err());
        assert!(serde_json::from_str::<VlanId>("4095").is_err());
    }

    #[test]
    fn names_and_ranges() {
        assert!(check_name("name", "my server").is_ok());
        assert!(check_name("name", "a\nb").is_err());
        assert!(check_name("name", "a\0b").is_err());
        assert!(check_name("name", &"x".repeat(256)).is_err());
        assert!(check_mtu("mtu", 1500).is_ok() && check_mtu("mtu", 0).is_err());
        assert!(check_vlan("vlan", 4095).is_err());
        for bad in [
            "127.0.0.0/24",
            "169.254.169.248/29",
            "224.0.0.0/24",
            "0.0.0.0/8",
            "0.0.0.0/0",
            "240.0.0.0/8",
        ] {
            assert!(special_purpose_v4(&bad.parse().unwrap()).is_some(), "{bad}");
        }
        assert!(special_purpose_v4(&"10.0.0.0/24".parse().unwrap()).is_none());
    }
}
