//! Security group rule validation with nova's rules (`security_group_base.py`).

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::net::{Ipv4Cidr, Ipv6Cidr};

/// A validated rule: protocol lowercased, ports in range, CIDR normalised.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewRule {
    pub protocol: Option<String>,
    pub from_port: Option<i32>,
    pub to_port: Option<i32>,
    pub cidr: Option<String>,
    pub group_id: Option<i64>,
}

/// Validates a rule. `cidr` None with `group_id` None means 0.0.0.0/0, as nova's
/// `parse_cidr` made an empty CIDR.
pub fn validate_rule(
    protocol: Option<&str>,
    from_port: Option<i32>,
    to_port: Option<i32>,
    cidr: Option<&str>,
    group_id: Option<i64>,
) -> Result<NewRule> {
    if cidr.is_some() && group_id.is_some() {
        return Err(Error::invalid(
            "group_id",
            "give either a CIDR or a source group, not both",
        ));
    }
    let protocol = protocol
        .map(str::to_ascii_lowercase)
        .filter(|p| !p.is_empty());
    let (from_port, to_port) = match (&protocol, from_port, to_port) {
        (None, None, None) => {
            if group_id.is_none() {
                return Err(Error::invalid(
                    "ip_protocol",
                    "not enough parameters to build a valid rule: give a protocol and ports",
                ));
            }
            (None, None)
        }
        (None, _, _) => {
            return Err(Error::invalid(
                "ip_protocol",
                "ports need a protocol (tcp, udp or icmp)",
            ))
        }
        (Some(p), f, t) => {
            let (f, t) = match (p.as_str(), f, t) {
                ("icmp", None, None) => (-1, -1),
                ("tcp" | "udp", None, None) => (1, 65535),
                (_, Some(f), Some(t)) => (f, t),
                _ => {
                    return Err(Error::invalid(
                        "from_port",
                        "give both from_port and to_port",
                    ))
                }
            };
            match p.as_str() {
                "tcp" | "udp" => {
                    for (field, v) in [("from_port", f), ("to_port", t)] {
                        if !(1..=65535).contains(&v) {
                            return Err(Error::invalid(
                                field,
                                format!("{p} ports must be between 1 and 65535, got {v}"),
                            ));
                        }
                    }
                    if f > t {
                        return Err(Error::invalid(
                            "from_port",
                            format!("from_port {f} is above to_port {t}"),
                        ));
                    }
                }
                "icmp" => {
                    for (field, v) in [("from_port", f), ("to_port", t)] {
                        if !(-1..=255).contains(&v) {
                            return Err(Error::invalid(
                                field,
                                format!(
                                    "the ICMP type (from_port) and code (to_port) must be between -1 and 255, got {v}"
                                ),
                            ));
                        }
                    }
                }
                other => {
                    return Err(Error::invalid(
                        "ip_protocol",
                        format!("{other:?} is not one of tcp, udp, icmp"),
                    ))
                }
            }
            (Some(f), Some(t))
        }
    };
    let cidr = match (cidr, group_id) {
        (_, Some(_)) => None,
        (None, None) => Some("0.0.0.0/0".to_string()),
        (Some(c), None) => {
            let c = c.trim();
            let c = if c.is_empty() { "0.0.0.0/0" } else { c };
            // Checked here, kept as given (Nova shows `10.2.3.124/24` back as sent); the host
            // plan carries the canonical prefix.
            let _canonical = if c.contains(':') {
                let p: Ipv6Cidr = c.parse().map_err(|e| Error::invalid("cidr", e))?;
                if p.prefix() == 0 && p.network() != std::net::Ipv6Addr::UNSPECIFIED {
                    return Err(Error::invalid(
                        "cidr",
                        format!("bad prefix for network in cidr {c}"),
                    ));
                }
                p.to_string()
            } else {
                let p: Ipv4Cidr = c.parse().map_err(|e| Error::invalid("cidr", e))?;
                if p.prefix() == 0 && !c.starts_with("0.0.0.0/") {
                    return Err(Error::invalid(
                        "cidr",
                        format!("bad prefix for network in cidr {c}"),
                    ));
                }
                p.to_string()
            };
            Some(c.to_string())
        }
    };
    Ok(NewRule {
        protocol,
        from_port,
        to_port,
        cidr,
        group_id,
    })
}

/// Group names and descriptions: strings of 1 to 255 characters after trimming.
pub fn validate_group_text(field: &str, s: &str) -> Result<String> {
    crate::valid::check_name(field, s)?;
    if s.trim().is_empty() {
        return Err(Error::invalid(field, "must be 1 to 255 characters"));
    }
    // Kept as given, spaces included, as Nova keeps them.
    Ok(s.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_rules() {
        let r = validate_rule(Some("icmp"), Some(-1), Some(-1), Some("0.0.0.0/0"), None).unwrap();
        assert_eq!(r.protocol.as_deref(), Some("icmp"));
        let r = validate_rule(Some("TCP"), Some(22), Some(22), Some("0.0.0.0/0"), None).unwrap();
        assert_eq!(
            (r.protocol.as_deref(), r.from_port, r.to_port),
            (Some("tcp"), Some(22), Some(22))
        );
    }

    #[test]
    fn nova_errors() {
        let field = |r: Result<NewRule>| match r {
            Err(Error::Invalid { field, .. }) => field,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            field(validate_rule(Some("gre"), Some(1), Some(2), None, None)),
            "ip_protocol"
        );
        assert_eq!(
            field(validate_rule(Some("tcp"), Some(0), Some(2), None, None)),
            "from_port"
        );
        assert_eq!(
            field(validate_rule(Some("tcp"), Some(30), Some(2), None, None)),
            "from_port"
        );
        assert_eq!(
            field(validate_rule(Some("icmp"), Some(300), Some(2), None, None)),
            "from_port"
        );
        assert_eq!(
            field(validate_rule(None, None, None, Some("10.0.0.0/8"), None)),
            "ip_protocol"
        );
        assert_eq!(
            field(validate_rule(
                Some("tcp"),
                Some(1),
                Some(2),
                Some("10.0.0.0/0"),
                None
            )),
            "cidr"
        );
        assert_eq!(
            field(validate_rule(
                Some("tcp"),
                Some(1),
                Some(2),
                Some("nope"),
                None
            )),
            "cidr"
        );
        let g = validate_rule(None, None, None, None, Some(3)).unwrap();
        assert_eq!((g.protocol, g.cidr), (None, None));
    }
}
