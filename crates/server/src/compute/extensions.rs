//! `extensions`: the v2 extension list, for clients that still ask.

use std::sync::Arc;

use axum::extract::Path;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

use crate::error::{ApiError, ApiResult};
use crate::identity::Ctx;
use crate::AppState;

pub(super) fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/extensions", get(extensions))
        .route("/extensions/{alias}", get(extension))
}

/// The v2 extensions a nova-network cloud showed, for clients that still ask.
const EXTENSIONS: &[(&str, &str, &str)] = &[
    ("os-consoles", "Consoles", "Interactive Console support."),
    ("os-hosts", "Hosts", "Admin-only host administration."),
    (
        "os-availability-zone",
        "AvailabilityZone",
        "Availability zone support.",
    ),
    ("os-fixed-ips", "FixedIPs", "Fixed IPs support."),
    (
        "os-floating-ip-pools",
        "FloatingIpPools",
        "Floating IPs support.",
    ),
    ("os-floating-ips", "FloatingIps", "Floating IPs support."),
    (
        "os-floating-ips-bulk",
        "FloatingIpsBulk",
        "Bulk handling of Floating IPs.",
    ),
    ("os-keypairs", "Keypairs", "Keypair Support."),
    (
        "os-networks",
        "Networks",
        "Admin-only Network Management Extension.",
    ),
    ("os-quota-sets", "Quotas", "Quotas management support."),
    (
        "os-security-group-default-rules",
        "SecurityGroupDefaultRules",
        "Default rules for security group support.",
    ),
    (
        "os-security-groups",
        "SecurityGroups",
        "Security group support.",
    ),
    ("os-services", "Services", "Services support."),
    (
        "os-tenant-networks",
        "OSTenantNetworks",
        "Tenant-based Network Management Extension.",
    ),
    (
        "os-virtual-interfaces",
        "VirtualInterfaces",
        "Virtual interface support.",
    ),
];

fn extension_view(e: &(&str, &str, &str)) -> Value {
    json!({"alias": e.0, "name": e.1, "description": e.2, "links": [], "namespace": "http://docs.openstack.org/compute/ext/fake_xml",
           "updated": "2014-12-03T00:00:00Z"})
}

async fn extensions(_ctx: Ctx) -> Json<Value> {
    let list: Vec<Value> = EXTENSIONS.iter().map(extension_view).collect();
    Json(json!({ "extensions": list }))
}

async fn extension(_ctx: Ctx, Path(alias): Path<String>) -> ApiResult<Json<Value>> {
    EXTENSIONS
        .iter()
        .find(|e| e.0 == alias)
        .map(|e| Json(json!({"extension": extension_view(e)})))
        .ok_or_else(|| ApiError::not_found(format!("Extension {alias} could not be found.")))
}
