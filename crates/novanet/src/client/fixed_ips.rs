//! Fixed IPs (`/os-fixed-ips`, admin): look one up, reserve and unreserve.

use serde::Deserialize;
use serde_json::json;

use super::output::{done, or_dash, print_items, Column};
use super::wire::{read, Item};
use crate::session::{Res, Session};

#[derive(Deserialize)]
pub struct FixedIp {
    #[serde(default)]
    address: Option<String>,
    #[serde(default)]
    cidr: Option<String>,
    #[serde(default)]
    hostname: Option<String>,
    #[serde(default)]
    host: Option<String>,
    #[serde(default)]
    reserved: Option<bool>,
}

#[derive(Deserialize)]
struct FixedIpBody {
    fixed_ip: Item<FixedIp>,
}

const COLUMNS: &[Column<FixedIp>] = &[
    ("address", |f| or_dash(&f.address)),
    ("cidr", |f| or_dash(&f.cidr)),
    ("hostname", |f| or_dash(&f.hostname)),
    ("host", |f| or_dash(&f.host)),
    ("reserved", |f| or_dash(&f.reserved.map(|r| r.to_string()))),
];

pub fn get(s: &Session, address: &str, as_json: bool) -> Res<()> {
    let path = format!("/os-fixed-ips/{address}");
    let v: FixedIpBody = read(s.get(&path)?, &format!("GET {path}"))?;
    print_items(&[v.fixed_ip], COLUMNS, as_json);
    Ok(())
}

/// Reserves (`reserve`) or unreserves the address.
pub fn reserve(s: &Session, address: &str, reserve: bool) -> Res<()> {
    let (action, said) = if reserve {
        ("reserve", "Reserved")
    } else {
        ("unreserve", "Unreserved")
    };
    s.call(
        "POST",
        &format!("/os-fixed-ips/{address}/action"),
        Some(json!({ action: null })),
    )?;
    done(format_args!("{said} fixed IP {address}"));
    Ok(())
}
