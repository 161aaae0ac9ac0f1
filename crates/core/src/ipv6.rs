//! An instance's global IPv6 address, computed from its VIF's MAC as nova did
//! (`nova/ipv6/`): never stored, so every part of novanet that needs it (API, metadata,
//! firewall, the guest's own SLAAC) derives the same value from the same inputs.

use std::fmt;
use std::net::Ipv6Addr;
use std::str::FromStr;

use crate::model::Network;
use crate::net::{eui64_address, Ipv6Cidr, Mac};

/// nova's `ipv6_backend`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Backend {
    /// RFC 2462 modified EUI-64: what a guest's stateless autoconfiguration produces.
    #[default]
    Rfc2462,
    /// nova's `account_identifier`: the project's SHA-1 in bits 32..64, `ff` and the MAC's
    /// last three bytes below. Guests do not produce it themselves; it is shown as nova did.
    AccountIdentifier,
}

impl FromStr for Backend {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "rfc2462" => Ok(Backend::Rfc2462),
            "account_identifier" => Ok(Backend::AccountIdentifier),
            _ => Err(format!(
                "{s:?} is not an IPv6 backend (rfc2462 or account_identifier)"
            )),
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Backend::Rfc2462 => "rfc2462",
            Backend::AccountIdentifier => "account_identifier",
        })
    }
}

/// nova's `to_global(prefix, mac, project_id)`: the prefix's address ORed with the
/// backend's interface identifier.
pub fn to_global(backend: Backend, prefix: Ipv6Addr, mac: Mac, project_id: &str) -> Ipv6Addr {
    let iid: u128 = match backend {
        Backend::Rfc2462 => u128::from(eui64_address(
            &Ipv6Cidr::new(Ipv6Addr::UNSPECIFIED, 64).expect("/64"),
            mac,
        )),
        Backend::AccountIdentifier => {
            let h = sha1(project_id.as_bytes());
            let project = u128::from(u32::from_be_bytes([h[0], h[1], h[2], h[3]])) << 32;
            let m = mac.0;
            let suffix = u128::from(u32::from_be_bytes([0, m[3], m[4], m[5]]));
            project ^ (0xff << 24) ^ suffix
        }
    };
    Ipv6Addr::from(u128::from(prefix) | iid)
}

/// The link-local address a guest forms from its MAC by modified EUI-64 (what it sends from
/// to a link-local destination such as the metadata service's `fe80::a9fe:a9fe`).
pub fn link_local(mac: Mac) -> Ipv6Addr {
    eui64_address(
        &Ipv6Cidr::new(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0), 64).expect("/64"),
        mac,
    )
}

/// The MAC a modified EUI-64 interface identifier was formed from; None when the address's
/// lower 64 bits are no EUI-64 (`ff:fe` in the middle): a privacy or stable address.
pub fn eui64_mac(address: Ipv6Addr) -> Option<Mac> {
    let b = address.octets();
    (b[11] == 0xff && b[12] == 0xfe).then(|| to_mac(Backend::Rfc2462, address))
}

/// nova's `to_mac(address)`: the MAC an address was computed from (for `account_identifier`,
/// nova's `02:16:3e` and the address's last three bytes).
pub fn to_mac(backend: Backend, address: Ipv6Addr) -> Mac {
    let b = address.octets();
    match backend {
        Backend::Rfc2462 => Mac([b[8] ^ 0x02, b[9], b[10], b[13], b[14], b[15]]),
        Backend::AccountIdentifier => Mac([0x02, 0x16, 0x3e, b[13], b[14], b[15]]),
    }
}

/// The instance's address on `network`, if the network has an IPv6 prefix. A stored value
/// that does not parse gives no address rather than a wrong one.
pub fn instance_address(
    backend: Backend,
    network: &Network,
    mac: &str,
    project_id: &str,
) -> Option<Ipv6Addr> {
    let prefix: Ipv6Cidr = network.cidr_v6.as_deref()?.parse().ok()?;
    let mac: Mac = mac.parse().ok()?;
    Some(to_global(backend, prefix.network(), mac, project_id))
}

/// SHA-1 (FIPS 180-4), only for `account_identifier`'s project hash: 32 bits of it, where
/// collisions mean two projects share bits of an address, not a security property.
fn sha1(data: &[u8]) -> [u8; 20] {
    let mut h: [u32; 5] = [
        0x6745_2301,
        0xEFCD_AB89,
        0x98BA_DCFE,
        0x1032_5476,
        0xC3D2_E1F0,
    ];
    let mut msg = data.to_vec();
    msg.push(0x80);
    while msg.len() % 64 != 56 {
        msg.push(0);
    }
    msg.extend_from_slice(&((data.len() as u64) * 8).to_be_bytes());
    for block in msg.chunks(64) {
        let mut w = [0u32; 80];
        for (i, c) in block.chunks(4).enumerate() {
            w[i] = u32::from_be_bytes([c[0], c[1], c[2], c[3]]);
        }
        for i in 16..80 {
            w[i] = (w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16]).rotate_left(1);
        }
        let [mut a, mut b, mut c, mut d, mut e] = h;
        for (i, wi) in w.iter().enumerate() {
            let (f, k) = match i {
                0..=19 => ((b & c) | (!b & d), 0x5A82_7999),
                20..=39 => (b ^ c ^ d, 0x6ED9_EBA1),
                40..=59 => ((b & c) | (b & d) | (c & d), 0x8F1B_BCDC),
                _ => (b ^ c ^ d, 0xCA62_C1D6),
            };
            let t = a
                .rotate_left(5)
                .wrapping_add(f)
                .wrapping_add(e)
                .wrapping_add(k)
                .wrapping_add(*wi);
            e = d;
            d = c;
            c = b.rotate_left(30);
            b = a;
            a = t;
        }
        for (x, y) in h.iter_mut().zip([a, b, c, d, e]) {
            *x = x.wrapping_add(y);
        }
    }
    let mut out = [0u8; 20];
    for (o, x) in out.chunks_mut(4).zip(h) {
        o.copy_from_slice(&x.to_be_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The link-local address a guest forms (RFC 4291 appendix A), and back to its MAC;
    /// a privacy address gives none.
    #[test]
    fn link_local_and_back() {
        let mac: Mac = "fa:16:3e:2c:e8:ec".parse().unwrap();
        let ll = link_local(mac);
        assert_eq!(ll.to_string(), "fe80::f816:3eff:fe2c:e8ec");
        assert_eq!(eui64_mac(ll), Some(mac));
        let global: Ipv6Addr = "fd00:1::f816:3eff:fe2c:e8ec".parse().unwrap();
        assert_eq!(eui64_mac(global), Some(mac));
        assert_eq!(
            eui64_mac("fe80::1c2d:5a11:9b3e:77a0".parse().unwrap()),
            None
        );
    }

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    #[test]
    fn sha1_fips_vectors() {
        assert_eq!(
            hex(&sha1(b"abc")),
            "a9993e364706816aba3e25717850c26c9cd0d89d"
        );
        assert_eq!(hex(&sha1(b"")), "da39a3ee5e6b4b0d3255bfef95601890afd80709");
        assert_eq!(
            hex(&sha1(
                b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"
            )),
            "84983e441c3bd26ebaae4aa1f95129e5e54670f1"
        );
        assert_eq!(
            hex(&sha1(b"test")),
            "a94a8fe5ccb19ba61c4c0873d391e987982fbbd3"
        );
    }

    fn a(s: &str) -> Ipv6Addr {
        s.parse().unwrap()
    }
    fn m(s: &str) -> Mac {
        s.parse().unwrap()
    }

    /// nova's own vectors (nova/tests/unit/test_ipv6.py).
    #[test]
    fn nova_rfc2462_vectors() {
        let b = Backend::Rfc2462;
        let g = to_global(b, a("2001:db8::"), m("02:16:3e:33:44:55"), "test");
        assert_eq!(g.to_string(), "2001:db8::16:3eff:fe33:4455");
        assert_eq!(
            to_mac(b, a("2001:db8::216:3eff:fe33:4455")).to_string(),
            "00:16:3e:33:44:55"
        );
    }

    #[test]
    fn nova_account_identifier_vectors() {
        let b = Backend::AccountIdentifier;
        let g = to_global(b, a("2001:db8::"), m("02:16:3e:33:44:55"), "test");
        assert_eq!(g.to_string(), "2001:db8::a94a:8fe5:ff33:4455");
        assert_eq!(
            to_mac(b, a("2001:db8::a94a:8fe5:ff33:4455")).to_string(),
            "02:16:3e:33:44:55"
        );
    }

    /// RFC 2464 section 4's example: the MAC 34-56-78-9A-BC-DE has the interface identifier
    /// 3656:78FF:FE9A:BCDE (the modified EUI-64 that RFC 2462 autoconfiguration uses); the
    /// round trip recovers the MAC.
    #[test]
    fn rfc_modified_eui64() {
        let mac = m("34:56:78:9a:bc:de");
        let g = to_global(Backend::Rfc2462, a("fe80::"), mac, "p");
        assert_eq!(g.to_string(), "fe80::3656:78ff:fe9a:bcde");
        assert_eq!(to_mac(Backend::Rfc2462, g), mac);
        // A locally administered MAC (nova's fa:16:3e) loses the bit instead.
        let g = to_global(Backend::Rfc2462, a("fd00:1::"), m("fa:16:3e:00:00:01"), "p");
        assert_eq!(g.to_string(), "fd00:1::f816:3eff:fe00:1");
    }

    #[test]
    fn backends_parse_and_name_the_field_values() {
        assert_eq!("rfc2462".parse::<Backend>(), Ok(Backend::Rfc2462));
        assert_eq!(
            "account_identifier".parse::<Backend>(),
            Ok(Backend::AccountIdentifier)
        );
        assert!("eui64".parse::<Backend>().unwrap_err().contains("rfc2462"));
        assert_eq!(Backend::AccountIdentifier.to_string(), "account_identifier");
    }

    #[test]
    fn instance_address_needs_a_prefix_and_a_mac() {
        let mut n = Network {
            cidr_v6: Some("fd00:1::/64".into()),
            ..Network::default()
        };
        let got = instance_address(Backend::Rfc2462, &n, "fa:16:3e:00:00:01", "p");
        assert_eq!(got, Some(a("fd00:1::f816:3eff:fe00:1")));
        assert_eq!(instance_address(Backend::Rfc2462, &n, "junk", "p"), None);
        n.cidr_v6 = None;
        assert_eq!(
            instance_address(Backend::Rfc2462, &n, "fa:16:3e:00:00:01", "p"),
            None
        );
    }
}
