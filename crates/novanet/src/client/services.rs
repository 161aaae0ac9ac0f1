//! Services (`/os-services`, admin): the agents and when they last reported.

use serde::Deserialize;

use super::output::{or_dash, print_items, Column};
use super::wire::{present, read, Id, Item};
use crate::session::{Res, Session};

#[derive(Deserialize)]
pub struct Service {
    #[serde(default)]
    binary: Option<String>,
    #[serde(default)]
    host: Option<String>,
    #[serde(default)]
    zone: Option<String>,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    state: Option<String>,
    #[serde(default)]
    updated_at: Option<String>,
    /// novaclient shows these two columns only when the server sends them.
    #[serde(default, deserialize_with = "present")]
    id: Option<Option<Id>>,
    #[serde(default, deserialize_with = "present")]
    disabled_reason: Option<Option<String>>,
}

#[derive(Deserialize)]
struct ServiceList {
    #[serde(default)]
    services: Vec<Item<Service>>,
}

pub fn list(s: &Session, host: Option<String>, binary: Option<String>, as_json: bool) -> Res<()> {
    let mut q = Vec::new();
    if let Some(h) = &host {
        q.push(format!("host={h}"));
    }
    if let Some(b) = &binary {
        q.push(format!("binary={b}"));
    }
    let path = if q.is_empty() {
        "/os-services".to_string()
    } else {
        format!("/os-services?{}", q.join("&"))
    };
    let v: ServiceList = read(s.get(&path)?, &format!("GET {path}"))?;
    // Filtered here too, in case the server ignores the query.
    let rows: Vec<Item<Service>> = v
        .services
        .into_iter()
        .filter(|r| host.as_deref().is_none_or(|h| r.host.as_deref() == Some(h)))
        .filter(|r| {
            binary
                .as_deref()
                .is_none_or(|b| r.binary.as_deref() == Some(b))
        })
        .collect();
    let mut cols: Vec<Column<Service>> = vec![
        ("Binary", |r| or_dash(&r.binary)),
        ("Host", |r| or_dash(&r.host)),
        ("Zone", |r| or_dash(&r.zone)),
        ("Status", |r| or_dash(&r.status)),
        ("State", |r| or_dash(&r.state)),
        ("Updated_at", |r| or_dash(&r.updated_at)),
    ];
    if rows.first().is_some_and(|r| r.disabled_reason.is_some()) {
        cols.push(("Disabled Reason", |r| {
            or_dash(&r.disabled_reason.clone().flatten())
        }));
    }
    if rows.first().is_some_and(|r| r.id.is_some()) {
        cols.insert(
            0,
            ("Id", |r| {
                or_dash(&r.id.clone().flatten().map(|i| i.to_string()))
            }),
        );
    }
    print_items(&rows, &cols, as_json);
    Ok(())
}
