//! IPv4 and IPv6 prefixes as plain integers: all the arithmetic network planning needs,
//! with no dependency and no I/O.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// An IPv4 prefix whose address is the network address (host bits cleared).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ipv4Cidr {
    network: u32,
    prefix: u8,
}

impl Ipv4Cidr {
    pub fn new(addr: Ipv4Addr, prefix: u8) -> Option<Self> {
        if prefix > 32 {
            return None;
        }
        Some(Self {
            network: u32::from(addr) & mask_v4(prefix),
            prefix,
        })
    }

    pub fn network(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.network)
    }
    pub fn prefix(&self) -> u8 {
        self.prefix
    }
    /// Number of addresses in the prefix (2^32 for /0).
    pub fn size(&self) -> u64 {
        1u64 << (32 - self.prefix)
    }
    pub fn netmask(&self) -> Ipv4Addr {
        Ipv4Addr::from(mask_v4(self.prefix))
    }
    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.network | !mask_v4(self.prefix))
    }
    /// The address at `index` from the network address, if inside the prefix.
    pub fn nth(&self, index: u64) -> Option<Ipv4Addr> {
        (index < self.size()).then(|| Ipv4Addr::from(self.network + index as u32))
    }
    pub fn index_of(&self, addr: Ipv4Addr) -> Option<u64> {
        self.contains(addr)
            .then(|| u64::from(u32::from(addr) - self.network))
    }
    pub fn contains(&self, addr: Ipv4Addr) -> bool {
        u32::from(addr) & mask_v4(self.prefix) == self.network
    }
    pub fn contains_cidr(&self, other: &Ipv4Cidr) -> bool {
        other.prefix >= self.prefix && self.contains(other.network())
    }
    pub fn overlaps(&self, other: &Ipv4Cidr) -> bool {
        self.contains_cidr(other) || other.contains_cidr(self)
    }
    /// The subnets of length `prefix` inside this prefix, in address order.
    pub fn subnets(&self, prefix: u8) -> impl Iterator<Item = Ipv4Cidr> {
        let this = *self;
        let count = if prefix < this.prefix || prefix > 32 {
            0
        } else {
            1u64 << (prefix - this.prefix)
        };
        let step = if prefix > 32 {
            0
        } else {
            1u64 << (32 - prefix)
        };
        (0..count).map(move |i| Ipv4Cidr {
            network: (u64::from(this.network) + i * step) as u32,
            prefix,
        })
    }
    /// Usable host addresses: all but the network and broadcast address (for /31 and /32,
    /// every address), as netaddr's `iter_hosts` does.
    pub fn hosts(&self) -> impl Iterator<Item = Ipv4Addr> {
        let (first, last) = if self.prefix >= 31 {
            (0, self.size() - 1)
        } else {
            (1, self.size() - 2)
        };
        let base = self.network;
        (first..=last).map(move |i| Ipv4Addr::from(base + i as u32))
    }
}

/// A prefix length as written in a CIDR: decimal digits without a sign or leading zeros
/// (`/029` is refused, as netaddr's strict mode and the kernel's tools refuse it).
pub fn parse_prefix_len(s: &str, max: u8) -> Option<u8> {
    let canonical = !s.is_empty()
        && s.len() <= 3
        && s.bytes().all(|b| b.is_ascii_digit())
        && (s == "0" || !s.starts_with('0'));
    canonical
        .then(|| s.parse::<u8>().ok())
        .flatten()
        .filter(|l| *l <= max)
}

fn mask_v4(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - prefix)
    }
}

impl FromStr for Ipv4Cidr {
    type Err = String;
    /// Accepts `a.b.c.d/len`; host bits are cleared as nova (netaddr) does.
    fn from_str(s: &str) -> Result<Self, String> {
        let (addr, len) = s
            .split_once('/')
            .ok_or_else(|| format!("{s:?} is not a CIDR (expected ADDRESS/PREFIX)"))?;
        let addr: Ipv4Addr = addr
            .parse()
            .map_err(|_| format!("{s:?} is not a CIDR: {addr:?} is not an IPv4 address"))?;
        let len = parse_prefix_len(len, 32)
            .ok_or_else(|| format!("{s:?} is not a CIDR: prefix length must be 0 to 32"))?;
        Ok(Ipv4Cidr::new(addr, len).expect("prefix checked"))
    }
}

impl serde::Serialize for Ipv4Cidr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Ipv4Cidr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network(), self.prefix)
    }
}

/// An IPv6 prefix whose address is the network address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ipv6Cidr {
    network: u128,
    prefix: u8,
}

fn mask_v6(prefix: u8) -> u128 {
    if prefix == 0 {
        0
    } else {
        u128::MAX << (128 - prefix)
    }
}

impl Ipv6Cidr {
    pub fn new(addr: Ipv6Addr, prefix: u8) -> Option<Self> {
        (prefix <= 128).then(|| Self {
            network: u128::from(addr) & mask_v6(prefix),
            prefix,
        })
    }
    pub fn network(&self) -> Ipv6Addr {
        Ipv6Addr::from(self.network)
    }
    pub fn prefix(&self) -> u8 {
        self.prefix
    }
    pub fn nth(&self, index: u128) -> Ipv6Addr {
        Ipv6Addr::from(self.network.wrapping_add(index))
    }
    pub fn netmask(&self) -> Ipv6Addr {
        Ipv6Addr::from(mask_v6(self.prefix))
    }
    pub fn contains(&self, addr: Ipv6Addr) -> bool {
        u128::from(addr) & mask_v6(self.prefix) == self.network
    }
    pub fn contains_cidr(&self, other: &Ipv6Cidr) -> bool {
        other.prefix >= self.prefix
            && u128::from(other.network()) & mask_v6(self.prefix) == self.network
    }
    pub fn overlaps(&self, other: &Ipv6Cidr) -> bool {
        self.contains_cidr(other) || other.contains_cidr(self)
    }
    /// The `index`-th subnet of length `prefix`, if it fits.
    pub fn subnet(&self, prefix: u8, index: u128) -> Option<Ipv6Cidr> {
        if prefix < self.prefix || prefix > 128 {
            return None;
        }
        let bits = prefix - self.prefix;
        if bits < 128 && index >= (1u128 << bits) {
            return None;
        }
        let step = if prefix == 0 {
            0
        } else {
            1u128 << (128 - prefix)
        };
        Some(Ipv6Cidr {
            network: self.network + index * step,
            prefix,
        })
    }
}

impl FromStr for Ipv6Cidr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (addr, len) = s
            .split_once('/')
            .ok_or_else(|| format!("{s:?} is not an IPv6 CIDR (expected ADDRESS/PREFIX)"))?;
        let addr: Ipv6Addr = addr
            .parse()
            .map_err(|_| format!("{s:?} is not an IPv6 CIDR: {addr:?} is not an IPv6 address"))?;
        let len = parse_prefix_len(len, 128)
            .ok_or_else(|| format!("{s:?} is not an IPv6 CIDR: prefix length must be 0 to 128"))?;
        Ok(Ipv6Cidr::new(addr, len).expect("prefix checked"))
    }
}

impl fmt::Display for Ipv6Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network(), self.prefix)
    }
}

/// A MAC address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Mac(pub [u8; 6]);

impl Mac {
    /// nova's prefix for instance VIFs (`utils.generate_mac_address`).
    pub const NOVA_PREFIX: [u8; 3] = [0xfa, 0x16, 0x3e];

    /// A nova-style MAC from three random bytes.
    pub fn nova(random: [u8; 3]) -> Mac {
        let [a, b, c] = Self::NOVA_PREFIX;
        // nova masks the first random byte to 0x7f.
        Mac([a, b, c, random[0] & 0x7f, random[1], random[2]])
    }
}

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

impl FromStr for Mac {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let parts: Vec<&str> = s.split(':').collect();
        let bad = || format!("{s:?} is not a MAC address (expected xx:xx:xx:xx:xx:xx)");
        if parts.len() != 6 {
            return Err(bad());
        }
        let mut out = [0u8; 6];
        for (o, p) in out.iter_mut().zip(parts) {
            if p.len() != 2 {
                return Err(bad());
            }
            *o = u8::from_str_radix(p, 16).map_err(|_| bad())?;
        }
        Ok(Mac(out))
    }
}

/// The RFC 2462 (EUI-64) global address of `mac` in a /64 `prefix`: nova's default
/// `ipv6_backend`. The guest's SLAAC address is the same, which is what makes it predictable.
pub fn eui64_address(prefix: &Ipv6Cidr, mac: Mac) -> Ipv6Addr {
    let m = mac.0;
    let iid = u64::from_be_bytes([m[0] ^ 0x02, m[1], m[2], 0xff, 0xfe, m[3], m[4], m[5]]);
    Ipv6Addr::from(u128::from(prefix.network()) | u128::from(iid))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_normalises_cidrs() {
        let c: Ipv4Cidr = "10.0.0.7/24".parse().unwrap();
        assert_eq!(c.to_string(), "10.0.0.0/24");
        assert_eq!(c.size(), 256);
        assert_eq!(c.netmask().to_string(), "255.255.255.0");
        assert_eq!(c.broadcast().to_string(), "10.0.0.255");
        assert!("10.0.0.0/33"
            .parse::<Ipv4Cidr>()
            .unwrap_err()
            .contains("not a CIDR"));
        assert!("10.0.0/24".parse::<Ipv4Cidr>().is_err());
        assert!("10.0.0.0".parse::<Ipv4Cidr>().is_err());
        assert!("10.0.0.0/029".parse::<Ipv4Cidr>().is_err());
        assert!("10.0.0.0/+8".parse::<Ipv4Cidr>().is_err());
        assert!("10.0.0.0/".parse::<Ipv4Cidr>().is_err());
        assert!("0.0.0.0/0".parse::<Ipv4Cidr>().is_ok());
        assert!("fd00::/048".parse::<Ipv6Cidr>().is_err());
    }

    #[test]
    fn subnets_and_overlap() {
        let c: Ipv4Cidr = "10.0.0.0/16".parse().unwrap();
        let subs: Vec<String> = c.subnets(24).take(2).map(|s| s.to_string()).collect();
        assert_eq!(subs, ["10.0.0.0/24", "10.0.1.0/24"]);
        assert_eq!(c.subnets(24).count(), 256);
        assert_eq!(c.subnets(8).count(), 0);
        let a: Ipv4Cidr = "10.0.1.0/24".parse().unwrap();
        assert!(c.overlaps(&a) && a.overlaps(&c));
        assert!(!a.overlaps(&"10.0.2.0/24".parse().unwrap()));
    }

    #[test]
    fn hosts_skip_network_and_broadcast() {
        let c: Ipv4Cidr = "68.99.26.168/30".parse().unwrap();
        let h: Vec<String> = c.hosts().map(|a| a.to_string()).collect();
        assert_eq!(h, ["68.99.26.169", "68.99.26.170"]);
        let one: Ipv4Cidr = "68.99.26.170/32".parse().unwrap();
        assert_eq!(one.hosts().count(), 1);
    }

    #[test]
    fn eui64_matches_the_testbed() {
        let p: Ipv6Cidr = "fd00:1::/64".parse().unwrap();
        let mac: Mac = "fa:16:3e:00:00:01".parse().unwrap();
        assert_eq!(
            eui64_address(&p, mac).to_string(),
            "fd00:1::f816:3eff:fe00:1"
        );
    }

    #[test]
    fn v6_subnets() {
        let p: Ipv6Cidr = "fd00::/48".parse().unwrap();
        assert_eq!(p.subnet(64, 1).unwrap().to_string(), "fd00:0:0:1::/64");
        assert!(p.subnet(64, 1 << 16).is_none());
    }

    #[test]
    fn mac_roundtrip() {
        let m = Mac::nova([0xff, 1, 2]);
        assert_eq!(m.to_string(), "fa:16:3e:7f:01:02");
        assert_eq!(m.to_string().parse::<Mac>().unwrap(), m);
        assert!("fa:16:3e:7f:01".parse::<Mac>().is_err());
    }
}
