//! The compute v2.1 API as Nova served it for nova-network (microversions 2.1 to 2.35):
//! thin translations between the wire and the store, one module per resource. This module
//! assembles their routes and keeps the helpers several of them share.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Map, Value};

use crate::error::{ApiError, ApiResult};
use crate::AppState;

mod admin_rules;
mod availability_zones;
pub mod cloudpipe;
mod extensions;
mod fixed_ips;
mod flavors;
mod floating_ips;
mod floating_ips_bulk;
mod images;
mod instance_actions;
pub mod keypairs;
mod limits;
mod networks;
pub mod quotas;
mod security_group_rules;
mod security_groups;
mod server_actions;
mod server_ips;
mod server_metadata;
mod server_tags;
mod servers;
mod services;
mod tenant_networks;
mod virtual_interfaces;

pub use flavors::{Flavor, FLAVORS};
pub use images::{ImageRecord, ImageStore, IMAGES};
pub use networks::claim_for_live_network_host;

pub const MAX_MICROVERSION: &str = "2.35";
pub const MIN_MICROVERSION: &str = "2.1";

/// Every compute route, relative to `/v2.1`.
pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/", get(version))
        .merge(networks::routes())
        .merge(tenant_networks::routes())
        .merge(fixed_ips::routes())
        .merge(floating_ips::routes())
        .merge(floating_ips_bulk::routes())
        .merge(security_groups::routes())
        .merge(security_group_rules::routes())
        .merge(admin_rules::routes())
        .merge(keypairs::routes())
        .merge(services::routes())
        .merge(flavors::routes())
        .merge(servers::routes())
        .merge(server_metadata::routes())
        .merge(server_tags::routes())
        .merge(server_ips::routes())
        .merge(instance_actions::routes())
        .merge(server_actions::routes())
        .merge(virtual_interfaces::routes())
        .merge(availability_zones::routes())
        .merge(extensions::routes())
        .merge(limits::routes())
        .merge(quotas::routes())
        .merge(cloudpipe::routes())
}

/// Cloudpipe's novanet routes (a user's client configuration, revocation), outside `/v2.1`.
pub fn cloudpipe_admin_routes() -> Router<Arc<AppState>> {
    cloudpipe::admin_routes()
}

/// The image registry's routes (outside `/v2.1`).
pub fn image_routes() -> Router<Arc<AppState>> {
    images::routes()
}

pub fn version_doc(base: &str) -> Value {
    json!({
        "id": "v2.1", "status": "CURRENT", "version": MAX_MICROVERSION, "min_version": MIN_MICROVERSION,
        "updated": "2013-07-23T11:33:21Z",
        "links": [{"rel": "self", "href": format!("{base}/v2.1/")}],
        "media-types": [{"base": "application/json", "type": "application/vnd.openstack.compute+json;version=2.1"}],
    })
}

async fn version(State(st): State<Arc<AppState>>) -> Json<Value> {
    Json(json!({"version": version_doc(&st.public_base)}))
}

pub(crate) fn one_action(b: &Map<String, Value>) -> ApiResult<(&String, &Value)> {
    let mut it = b.iter();
    match (it.next(), it.next()) {
        (Some(a), None) => Ok(a),
        (None, _) => Err(ApiError::bad_request("the body names no action")),
        (Some(_), Some(_)) => Err(ApiError::bad_request(format!(
            "the body names {} actions ({}): give exactly one",
            b.len(),
            b.keys().cloned().collect::<Vec<_>>().join(", ")
        ))),
    }
}

pub(crate) fn ok_empty(code: StatusCode) -> Response {
    code.into_response()
}

pub(crate) fn parse_id(what: &str, id: &str) -> ApiResult<i64> {
    id.parse()
        .map_err(|_| ApiError::bad_request(format!("{what} id {id:?} is not an integer")))
}
