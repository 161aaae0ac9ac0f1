//! A VLAN network's project segment: the device that carries the project's layer 2 between
//! hosts, enslaved to the network's bridge on every host that has the network (its DHCP
//! server or one of its instances), and on no other. Two drivers: nova's 802.1Q VLAN device
//! on `vlan_interface`, and VXLAN (VNI = the VLAN id) with head-end replication over the
//! management network, for clouds whose switches do not trunk VLANs to every host.

use serde::{Deserialize, Serialize};

use crate::config::SegmentDriver;
use crate::valid::{IfName, Ipv4Text, VlanId};

/// VXLAN's encapsulation: outer IPv4 (20) + UDP (8) + VXLAN (8) + inner Ethernet (14).
pub const VXLAN_OVERHEAD: u32 = 50;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "driver", rename_all = "lowercase")]
pub enum Segment {
    /// `vlan<id>` on `parent`: 802.1Q frames tagged `id`.
    Vlan { parent: IfName, id: VlanId },
    /// `vxlan<id>` with VNI `id`, sourced from this host's `local` address, flooding
    /// broadcast and unknown frames to each of `remotes` (the other hosts of the network).
    Vxlan {
        id: VlanId,
        local: Ipv4Text,
        port: u16,
        remotes: Vec<Ipv4Text>,
    },
}

impl Segment {
    /// The segment's device on this host, the one enslaved to the network's bridge.
    pub fn device(&self) -> IfName {
        let name = match self {
            Segment::Vlan { id, .. } => format!("vlan{id}"),
            Segment::Vxlan { id, .. } => format!("vxlan{id}"),
        };
        // At most "vxlan4094": always a valid name.
        IfName::new(name).expect("segment device names are valid")
    }

    pub fn id(&self) -> VlanId {
        match self {
            Segment::Vlan { id, .. } | Segment::Vxlan { id, .. } => *id,
        }
    }

    /// Whether a device of this name is one a segment driver makes (so a leftover one may
    /// be removed when no plan has it any more).
    pub fn is_device_name(name: &str) -> bool {
        let digits = name
            .strip_prefix("vxlan")
            .or_else(|| name.strip_prefix("vlan"));
        digits.is_some_and(|d| {
            !d.is_empty()
                && d.bytes().all(|b| b.is_ascii_digit())
                && d.parse::<u32>().is_ok_and(|v| VlanId::new(v).is_ok())
        })
    }
}

/// What a host needs to build a network's segment.
pub struct SegmentInputs<'a> {
    pub driver: SegmentDriver,
    pub id: VlanId,
    /// The network's parent interface on this host (`vlan_interface`), for 802.1Q.
    pub parent: Option<&'a IfName>,
    /// This host's own address on the management network (`my_ip`), for VXLAN.
    pub local: Option<&'a Ipv4Text>,
    pub port: u16,
    /// The management addresses of the network's other hosts, for VXLAN.
    pub peers: &'a [Ipv4Text],
}

/// The segment a host builds for a VLAN network, or why it cannot.
pub fn plan_segment(i: &SegmentInputs) -> Result<Segment, String> {
    match i.driver {
        SegmentDriver::Vlan => {
            let parent = i.parent.ok_or(
                "segment_driver = vlan needs vlan_interface (the interface that trunks the VLANs) on this host",
            )?;
            Ok(Segment::Vlan {
                parent: parent.clone(),
                id: i.id,
            })
        }
        SegmentDriver::Vxlan => {
            let local = i.local.ok_or(
                "segment_driver = vxlan needs my_ip (this host's management address) on this host",
            )?;
            let mut remotes: Vec<Ipv4Text> = i
                .peers
                .iter()
                .filter(|p| p.as_str() != local.as_str())
                .cloned()
                .collect();
            remotes.sort_by_key(|a| a.addr());
            remotes.dedup();
            Ok(Segment::Vxlan {
                id: i.id,
                local: local.clone(),
                port: i.port,
                remotes,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Ipv4Text {
        Ipv4Text::new(s).unwrap()
    }

    #[test]
    fn vlan_segment_is_nova_s_device_on_the_parent() {
        let eth2 = IfName::new("eth2").unwrap();
        let s = plan_segment(&SegmentInputs {
            driver: SegmentDriver::Vlan,
            id: VlanId::new(100).unwrap(),
            parent: Some(&eth2),
            local: None,
            port: 4789,
            peers: &[],
        })
        .unwrap();
        assert_eq!(s.device(), "vlan100");
        assert_eq!(
            serde_json::to_string(&s).unwrap(),
            r#"{"driver":"vlan","parent":"eth2","id":100}"#
        );
    }

    #[test]
    fn vlan_segment_without_a_parent_says_what_to_set() {
        let e = plan_segment(&SegmentInputs {
            driver: SegmentDriver::Vlan,
            id: VlanId::new(100).unwrap(),
            parent: None,
            local: None,
            port: 4789,
            peers: &[],
        })
        .unwrap_err();
        assert!(e.contains("vlan_interface"), "{e}");
    }

    #[test]
    fn vxlan_floods_to_the_other_hosts_only_in_address_order() {
        let me = t("192.168.56.202");
        let peers = [
            t("192.168.56.203"),
            me.clone(),
            t("192.168.56.200"),
            t("192.168.56.203"),
        ];
        let s = plan_segment(&SegmentInputs {
            driver: SegmentDriver::Vxlan,
            id: VlanId::new(101).unwrap(),
            parent: None,
            local: Some(&me),
            port: 4789,
            peers: &peers,
        })
        .unwrap();
        assert_eq!(s.device(), "vxlan101");
        let Segment::Vxlan { remotes, .. } = s else {
            panic!("not vxlan")
        };
        assert_eq!(remotes, vec![t("192.168.56.200"), t("192.168.56.203")]);
    }

    #[test]
    fn only_segment_device_names_are_recognised() {
        for ok in ["vlan1", "vlan4094", "vxlan100"] {
            assert!(Segment::is_device_name(ok), "{ok}");
        }
        for bad in [
            "vlan",
            "vlan0",
            "vlan4095",
            "vlanx",
            "vxlan-1",
            "eth2",
            "vlan100.1",
        ] {
            assert!(!Segment::is_device_name(bad), "{bad}");
        }
    }
}
