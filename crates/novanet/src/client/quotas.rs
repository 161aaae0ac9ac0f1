//! Quotas (`/os-quota-sets`): a project's, the defaults, and changing them (admin).

use std::collections::BTreeMap;

use clap::Args;
use serde::Deserialize;
use serde_json::{json, Value};

use super::output::{done, or_dash, print_json_list, print_object, print_table, Column};
use super::wire::{read, Item};
use crate::session::{err, Auth, Res, Session};

// New values for a project's quotas (nova's `quota_set` keys, with dashes).
#[derive(Args, Debug, Clone, Default)]
pub struct QuotaValues {
    /// New value for the "instances" quota
    #[arg(long, value_name = "N")]
    instances: Option<i64>,
    /// New value for the "cores" quota
    #[arg(long, value_name = "N")]
    cores: Option<i64>,
    /// New value for the "ram" quota (MB)
    #[arg(long, value_name = "N")]
    ram: Option<i64>,
    /// New value for the "floating_ips" quota
    #[arg(long = "floating-ips", alias = "floating_ips", value_name = "N")]
    floating_ips: Option<i64>,
    /// New value for the "fixed_ips" quota
    #[arg(long = "fixed-ips", alias = "fixed_ips", value_name = "N")]
    fixed_ips: Option<i64>,
    /// New value for the "metadata_items" quota
    #[arg(long = "metadata-items", alias = "metadata_items", value_name = "N")]
    metadata_items: Option<i64>,
    /// New value for the "injected_files" quota
    #[arg(long = "injected-files", alias = "injected_files", value_name = "N")]
    injected_files: Option<i64>,
    /// New value for the "injected_file_content_bytes" quota
    #[arg(
        long = "injected-file-content-bytes",
        alias = "injected_file_content_bytes",
        value_name = "N"
    )]
    injected_file_content_bytes: Option<i64>,
    /// New value for the "injected_file_path_bytes" quota
    #[arg(
        long = "injected-file-path-bytes",
        alias = "injected_file_path_bytes",
        value_name = "N"
    )]
    injected_file_path_bytes: Option<i64>,
    /// New value for the "key_pairs" quota
    #[arg(long = "key-pairs", alias = "key_pairs", value_name = "N")]
    key_pairs: Option<i64>,
    /// New value for the "security_groups" quota
    #[arg(long = "security-groups", alias = "security_groups", value_name = "N")]
    security_groups: Option<i64>,
    /// New value for the "security_group_rules" quota
    #[arg(
        long = "security-group-rules",
        alias = "security_group_rules",
        value_name = "N"
    )]
    security_group_rules: Option<i64>,
    /// New value for the "server_groups" quota
    #[arg(long = "server-groups", alias = "server_groups", value_name = "N")]
    server_groups: Option<i64>,
    /// New value for the "server_group_members" quota
    #[arg(
        long = "server-group-members",
        alias = "server_group_members",
        value_name = "N"
    )]
    server_group_members: Option<i64>,
}

impl QuotaValues {
    /// The `quota_set` body's entries, in novaclient's order.
    fn entries(&self) -> Vec<(&'static str, i64)> {
        [
            ("instances", self.instances),
            ("cores", self.cores),
            ("ram", self.ram),
            ("floating_ips", self.floating_ips),
            ("fixed_ips", self.fixed_ips),
            ("metadata_items", self.metadata_items),
            ("injected_files", self.injected_files),
            (
                "injected_file_content_bytes",
                self.injected_file_content_bytes,
            ),
            ("injected_file_path_bytes", self.injected_file_path_bytes),
            ("key_pairs", self.key_pairs),
            ("security_groups", self.security_groups),
            ("security_group_rules", self.security_group_rules),
            ("server_groups", self.server_groups),
            ("server_group_members", self.server_group_members),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| (k, v)))
        .collect()
    }
}

/// novaclient's quota resources, in the order `quota-show` lists them.
const QUOTA_RESOURCES: &[&str] = &[
    "instances",
    "cores",
    "ram",
    "floating_ips",
    "fixed_ips",
    "metadata_items",
    "injected_files",
    "injected_file_content_bytes",
    "injected_file_path_bytes",
    "key_pairs",
    "security_groups",
    "security_group_rules",
    "server_groups",
    "server_group_members",
];

/// A `quota_set`: the project's id and a limit per resource (-1: unlimited).
#[derive(Deserialize)]
struct QuotaSet {
    #[serde(default)]
    #[allow(dead_code)] // kept out of `limits`; the rows never show it
    id: Option<String>,
    #[serde(flatten)]
    limits: BTreeMap<String, Option<i64>>,
}

#[derive(Deserialize)]
struct QuotaBody {
    quota_set: Item<QuotaSet>,
}

/// A row of `quota-show`: a resource and its limit.
struct QuotaRow {
    quota: String,
    limit: Option<i64>,
}

/// The rows in novaclient's order (its resources first, then any other the server has).
fn rows(set: &QuotaSet) -> Vec<QuotaRow> {
    let known = QUOTA_RESOURCES.iter().filter_map(|k| {
        let limit = set.limits.get(*k).copied().flatten()?;
        Some(QuotaRow {
            quota: k.to_string(),
            limit: Some(limit),
        })
    });
    let others = set
        .limits
        .iter()
        .filter(|(k, _)| !QUOTA_RESOURCES.contains(&k.as_str()))
        .map(|(k, v)| QuotaRow {
            quota: k.clone(),
            limit: *v,
        });
    known.chain(others).collect()
}

const COLUMNS: &[Column<QuotaRow>] = &[
    ("Quota", |r| r.quota.clone()),
    ("Limit", |r| or_dash(&r.limit.map(|l| l.to_string()))),
];

fn print_quotas(set: &QuotaSet, as_json: bool) {
    let rows = rows(set);
    if as_json {
        print_json_list(
            rows.iter()
                .map(|r| json!({"quota": r.quota, "limit": r.limit}))
                .collect(),
        );
    } else {
        print_table(&rows, COLUMNS);
    }
}

/// The id of the project to show: `tenant` (ID or name), or the current one.
fn project(s: &Session, auth: &Auth, tenant: Option<String>) -> Res<String> {
    match tenant {
        Some(t) => s.project_id_of(&auth.auth_url, &t),
        None => Ok(s.project_id.clone()),
    }
}

pub fn show(s: &Session, auth: &Auth, tenant: Option<String>, as_json: bool) -> Res<()> {
    let path = format!("/os-quota-sets/{}", project(s, auth, tenant)?);
    let v: QuotaBody = read(s.get(&path)?, &format!("GET {path}"))?;
    print_quotas(&v.quota_set.fields, as_json);
    Ok(())
}

pub fn defaults(s: &Session, auth: &Auth, tenant: Option<String>, as_json: bool) -> Res<()> {
    let path = format!("/os-quota-sets/{}/defaults", project(s, auth, tenant)?);
    let v: QuotaBody = read(s.get(&path)?, &format!("GET {path}"))?;
    print_quotas(&v.quota_set.fields, as_json);
    Ok(())
}

pub fn update(
    s: &Session,
    auth: &Auth,
    tenant: &str,
    values: &QuotaValues,
    force: bool,
    as_json: bool,
) -> Res<()> {
    let entries = values.entries();
    if entries.is_empty() {
        return Err(err(
            "ERROR (CommandError): no quota to change\n\
             Give at least one new value, e.g. --floating-ips 20 (see `novanet quota-update --help`).",
        ));
    }
    let id = s.project_id_of(&auth.auth_url, tenant)?;
    let mut set: serde_json::Map<String, Value> = entries
        .iter()
        .map(|(k, v)| (k.to_string(), json!(v)))
        .collect();
    if force {
        set.insert("force".into(), json!(true));
    }
    let v = s.call(
        "PUT",
        &format!("/os-quota-sets/{id}"),
        Some(json!({ "quota_set": set })),
    )?;
    let v: QuotaBody = read(v, &format!("PUT /os-quota-sets/{id}"))?;
    if as_json {
        print_object(&v.quota_set.raw, true);
    }
    let changed: Vec<String> = entries.iter().map(|(k, v)| format!("{k}={v}")).collect();
    done(format_args!(
        "Updated the quotas of project {tenant}: {}",
        changed.join(", ")
    ));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_in_novaclients_order_then_the_rest() {
        let set: QuotaSet = serde_json::from_value(json!({
            "id": "p", "zeta": 3, "ram": 51200, "instances": 10, "cores": null
        }))
        .unwrap();
        let rows: Vec<(String, Option<i64>)> =
            rows(&set).into_iter().map(|r| (r.quota, r.limit)).collect();
        assert_eq!(
            rows,
            [
                ("instances".to_string(), Some(10)),
                ("ram".to_string(), Some(51200)),
                ("zeta".to_string(), Some(3)),
            ]
        );
    }
}
