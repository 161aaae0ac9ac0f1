//! Floating IP ranges as `nova-manage floating create --ip_range` and
//! `os-floating-ips-bulk` take them.

use std::net::Ipv4Addr;

use crate::error::{Error, Result};
use crate::net::Ipv4Cidr;

/// nova-manage refused ranges this big ("Too many IP addresses will be generated").
pub const MAX_RANGE: u64 = 1_000_000;

/// A single address, or a CIDR's usable hosts (a /31 gives both of its addresses, as the
/// seed's `68.99.26.170/31` example expects; a /32 its one address).
pub fn parse_range(field: &str, s: &str) -> Result<Vec<Ipv4Addr>> {
    let s = s.trim();
    if let Ok(a) = s.parse::<Ipv4Addr>() {
        return Ok(vec![a]);
    }
    let c: Ipv4Cidr = s.parse().map_err(|e| {
        Error::invalid(
            field,
            format!("{e}; give one address or a CIDR such as 68.99.26.0/24"),
        )
    })?;
    if c.size() >= MAX_RANGE {
        return Err(Error::invalid(
            field,
            format!("{c} has too many addresses (at most {MAX_RANGE})"),
        ));
    }
    Ok(c.hosts().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(parse_range("ip_range", "68.99.26.170").unwrap().len(), 1);
        let two = parse_range("ip_range", "68.99.26.170/31").unwrap();
        assert_eq!(
            two,
            [
                "68.99.26.170".parse::<Ipv4Addr>().unwrap(),
                "68.99.26.171".parse().unwrap()
            ]
        );
        assert_eq!(parse_range("ip_range", "10.1.0.0/24").unwrap().len(), 254);
        let e = parse_range("ip_range", "10.1.0.0/40")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("invalid ip_range"), "{e}");
        assert!(parse_range("ip_range", "10.0.0.0/8").is_err());
    }
}
