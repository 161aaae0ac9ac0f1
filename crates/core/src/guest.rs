//! What a Flat-mode guest is told about its network when nothing answers DHCP
//! (`flat_injected`): nova's `/etc/network/interfaces` (nova/virt/interfaces.template), one
//! stanza per VIF, served in the config drive as `openstack/content/0000`.

use std::net::{Ipv4Addr, Ipv6Addr};

use crate::ipv6::Backend;
use crate::model::Network;
use crate::net::{Ipv4Cidr, Ipv6Cidr, Mac};
use crate::valid::{IfName, MacText};

/// One VIF as the guest configures it statically.
#[derive(Clone, Debug, PartialEq)]
pub struct GuestInterface {
    pub name: IfName,
    pub mac: MacText,
    pub address: Ipv4Addr,
    pub netmask: Ipv4Addr,
    pub broadcast: Ipv4Addr,
    /// Only the first VIF's network gives the default route (nova's
    /// `use_single_default_gateway`, which novanet always applies).
    pub gateway: Option<Ipv4Addr>,
    pub dns: Vec<Ipv4Addr>,
    pub v6: Option<GuestV6>,
}

/// The VIF's IPv6 address (computed by the configured backend, EUI-64 by default).
#[derive(Clone, Debug, PartialEq)]
pub struct GuestV6 {
    pub address: Ipv6Addr,
    pub prefix: u8,
    pub gateway: Option<Ipv6Addr>,
}

/// One VIF of an instance: its network, MAC and fixed IPv4 address, in VIF order.
pub struct Vif<'a> {
    pub network: &'a Network,
    pub mac: &'a str,
    pub address: &'a str,
}

/// The stanzas for an instance's VIFs: `eth<N>` is the VIF's position among all of the
/// instance's VIFs (the guest names its NICs in plug order); only VIFs on `injected`
/// networks get a stanza, as in nova. Stored values are parsed here: a bad one is an error
/// naming it, never text in a guest's file.
/// `ipv6` is the backend and the instance's project when `use_ipv6` is on.
pub fn guest_interfaces(
    vifs: &[Vif],
    ipv6: Option<(Backend, &str)>,
) -> Result<Vec<GuestInterface>, String> {
    let mut out = Vec::new();
    let mut default_route_given = false;
    for (i, v) in vifs.iter().enumerate() {
        let n = v.network;
        if !n.injected {
            continue;
        }
        let cidr: Ipv4Cidr = n
            .cidr
            .as_deref()
            .ok_or_else(|| format!("network {} has no IPv4 range", n.uuid))?
            .parse()?;
        let address: Ipv4Addr = v
            .address
            .parse()
            .map_err(|_| format!("{:?} is not an IPv4 address", v.address))?;
        if !cidr.contains(address) {
            return Err(format!("{address} is not in network {}", n.uuid));
        }
        let parse4 = |s: &Option<String>, what: &str| -> Result<Option<Ipv4Addr>, String> {
            s.as_deref()
                .map(|x| {
                    x.parse()
                        .map_err(|_| format!("network {}: {what} {x:?} is not an address", n.uuid))
                })
                .transpose()
        };
        let gateway = parse4(&n.gateway, "gateway")?;
        let mut dns = Vec::new();
        for d in [&n.dns1, &n.dns2] {
            dns.extend(parse4(d, "DNS server")?);
        }
        let v6 = match (ipv6, n.cidr_v6.as_deref()) {
            (Some((backend, project_id)), Some(c6)) => {
                let prefix: Ipv6Cidr = c6.parse()?;
                let mac: Mac = v.mac.parse()?;
                let gateway = n
                    .gateway_v6
                    .as_deref()
                    .map(|g| {
                        g.parse::<Ipv6Addr>()
                            .map_err(|_| format!("network {}: gateway_v6 {g:?}", n.uuid))
                    })
                    .transpose()?;
                Some(GuestV6 {
                    address: crate::ipv6::to_global(backend, prefix.network(), mac, project_id),
                    prefix: prefix.prefix(),
                    gateway: if default_route_given { None } else { gateway },
                })
            }
            _ => None,
        };
        out.push(GuestInterface {
            name: IfName::new(format!("eth{i}"))?,
            mac: MacText::new(v.mac)?,
            address,
            netmask: cidr.netmask(),
            broadcast: cidr.broadcast(),
            gateway: if default_route_given { None } else { gateway },
            dns,
            v6,
        });
        default_route_given |= gateway.is_some();
    }
    Ok(out)
}

/// nova's interfaces.template, rendered.
pub fn interfaces_text(ifs: &[GuestInterface]) -> String {
    let mut s = String::from(
        "# Injected by Nova on instance boot\n\
         #\n\
         # This file describes the network interfaces available on your system\n\
         # and how to activate them. For more information, see interfaces(5).\n\
         \n\
         # The loopback network interface\n\
         auto lo\n\
         iface lo inet loopback\n",
    );
    for i in ifs {
        s.push_str(&format!(
            "\nauto {n}\niface {n} inet static\n    hwaddress ether {m}\n    address {a}\n    netmask {nm}\n    broadcast {b}\n",
            n = i.name,
            m = i.mac.as_str().to_ascii_lowercase(),
            a = i.address,
            nm = i.netmask,
            b = i.broadcast
        ));
        if let Some(g) = i.gateway {
            s.push_str(&format!("    gateway {g}\n"));
        }
        if !i.dns.is_empty() {
            let d: Vec<String> = i.dns.iter().map(|d| d.to_string()).collect();
            s.push_str(&format!("    dns-nameservers {}\n", d.join(" ")));
        }
        if let Some(v6) = &i.v6 {
            s.push_str(&format!(
                "\niface {n} inet6 static\n    hwaddress ether {m}\n    address {a}\n    netmask {p}\n",
                n = i.name,
                m = i.mac.as_str().to_ascii_lowercase(),
                a = v6.address,
                p = v6.prefix
            ));
            if let Some(g) = v6.gateway {
                s.push_str(&format!("    gateway {g}\n"));
            }
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(uuid: &str, cidr: &str, gw: &str, injected: bool) -> Network {
        Network {
            id: 1,
            uuid: uuid.into(),
            label: "vmnet".into(),
            cidr: Some(cidr.into()),
            cidr_v6: Some("fd00:1::/64".into()),
            netmask: None,
            netmask_v6: None,
            gateway: Some(gw.into()),
            gateway_v6: Some("fd00:1::1".into()),
            broadcast: None,
            dns1: Some("8.8.4.4".into()),
            dns2: None,
            bridge: Some("br100".into()),
            bridge_interface: None,
            vlan: None,
            vpn_public_address: None,
            vpn_public_port: None,
            vpn_private_address: None,
            dhcp_start: None,
            dhcp_server: None,
            project_id: None,
            host: None,
            multi_host: false,
            injected,
            mtu: None,
            enable_dhcp: false,
            share_address: false,
            priority: None,
        }
    }

    #[test]
    fn interfaces_snapshot_two_vifs() {
        let a = net("a", "10.0.0.0/24", "10.0.0.1", true);
        let b = net("b", "10.1.0.0/25", "10.1.0.1", true);
        let ifs = guest_interfaces(
            &[
                Vif {
                    network: &a,
                    mac: "FA:16:3E:00:00:01",
                    address: "10.0.0.2",
                },
                Vif {
                    network: &b,
                    mac: "fa:16:3e:00:00:02",
                    address: "10.1.0.3",
                },
            ],
            None,
        )
        .unwrap();
        assert_eq!(
            interfaces_text(&ifs),
            "# Injected by Nova on instance boot
#
# This file describes the network interfaces available on your system
# and how to activate them. For more information, see interfaces(5).

# The loopback network interface
auto lo
iface lo inet loopback

auto eth0
iface eth0 inet static
    hwaddress ether fa:16:3e:00:00:01
    address 10.0.0.2
    netmask 255.255.255.0
    broadcast 10.0.0.255
    gateway 10.0.0.1
    dns-nameservers 8.8.4.4

auto eth1
iface eth1 inet static
    hwaddress ether fa:16:3e:00:00:02
    address 10.1.0.3
    netmask 255.255.255.128
    broadcast 10.1.0.127
    dns-nameservers 8.8.4.4
"
        );
    }

    #[test]
    fn interfaces_snapshot_ipv6_and_uninjected() {
        let a = net("a", "10.0.0.0/24", "10.0.0.1", false);
        let b = net("b", "10.1.0.0/24", "10.1.0.1", true);
        let ifs = guest_interfaces(
            &[
                Vif {
                    network: &a,
                    mac: "fa:16:3e:00:00:01",
                    address: "10.0.0.2",
                },
                Vif {
                    network: &b,
                    mac: "fa:16:3e:00:00:02",
                    address: "10.1.0.3",
                },
            ],
            Some((Backend::Rfc2462, "p")),
        )
        .unwrap();
        let text = interfaces_text(&ifs);
        assert!(!text.contains("eth0"), "{text}");
        assert!(
            text.ends_with(
                "auto eth1
iface eth1 inet static
    hwaddress ether fa:16:3e:00:00:02
    address 10.1.0.3
    netmask 255.255.255.0
    broadcast 10.1.0.255
    gateway 10.1.0.1
    dns-nameservers 8.8.4.4

iface eth1 inet6 static
    hwaddress ether fa:16:3e:00:00:02
    address fd00:1::f816:3eff:fe00:2
    netmask 64
    gateway fd00:1::1
"
            ),
            "{text}"
        );
    }

    #[test]
    fn bad_stored_values_are_errors() {
        let mut a = net("a", "10.0.0.0/24", "10.0.0.1", true);
        let vif = |n: &Network, addr: &'static str| {
            guest_interfaces(
                &[Vif {
                    network: n,
                    mac: "fa:16:3e:00:00:01",
                    address: addr,
                }],
                None,
            )
        };
        assert!(vif(&a, "10.0.1.2").unwrap_err().contains("not in network"));
        assert!(vif(&a, "10.0.0.2\nauto evil").is_err());
        a.gateway = Some("10.0.0.1\n    up rm -rf /".into());
        assert!(vif(&a, "10.0.0.2").is_err());
    }
}
