//! `flavors`: Nova's default flavors, fixed (novanet places no real VMs).

use std::sync::Arc;

use axum::extract::{Path, Query};
use axum::routing::get;
use axum::{Json, Router};
use novanet_core::Error;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::error::{ApiError, ApiResult};
use crate::identity::Ctx;
use crate::AppState;

pub(super) fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/flavors", get(list_flavors))
        .route("/flavors/detail", get(list_flavors_detail))
        .route("/flavors/{id}", get(show_flavor))
}

/// A flavor: id, name, ram MiB, disk GB, vcpus.
pub type Flavor = (&'static str, &'static str, u32, u32, u32);

/// Nova's default flavors (id, name, ram MiB, disk GB, vcpus).
pub const FLAVORS: &[Flavor] = &[
    ("1", "m1.tiny", 512, 1, 1),
    ("2", "m1.small", 2048, 20, 1),
    ("3", "m1.medium", 4096, 40, 2),
    ("4", "m1.large", 8192, 80, 4),
    ("5", "m1.xlarge", 16384, 160, 8),
];

fn flavor_view(f: &(&str, &str, u32, u32, u32)) -> Value {
    json!({"id": f.0, "name": f.1, "ram": f.2, "disk": f.3, "vcpus": f.4, "swap": "",
           "OS-FLV-EXT-DATA:ephemeral": 0, "os-flavor-access:is_public": true, "rxtx_factor": 1.0, "links": []})
}

#[derive(Deserialize)]
struct FlavorQuery {
    #[serde(rename = "minDisk")]
    min_disk: Option<String>,
    #[serde(rename = "minRam")]
    min_ram: Option<String>,
    limit: Option<String>,
    marker: Option<String>,
}

/// Nova's flavor filters and paging: minDisk, minRam, marker (a flavor id), limit.
fn flavors_for(q: &FlavorQuery) -> ApiResult<Vec<&'static Flavor>> {
    let num = |field: &str, v: &Option<String>| -> ApiResult<Option<u32>> {
        v.as_deref()
            .map(|s| {
                s.parse::<u32>().map_err(|_| {
                    Error::invalid(field, format!("{s:?} is not a non-negative integer")).into()
                })
            })
            .transpose()
    };
    let (disk, ram, limit) = (
        num("minDisk", &q.min_disk)?,
        num("minRam", &q.min_ram)?,
        num("limit", &q.limit)?,
    );
    let mut list: Vec<_> = FLAVORS
        .iter()
        .filter(|f| disk.is_none_or(|d| f.3 >= d) && ram.is_none_or(|r| f.2 >= r))
        .collect();
    if let Some(m) = &q.marker {
        let at = list
            .iter()
            .position(|f| f.0 == m)
            .ok_or_else(|| ApiError::bad_request(format!("marker [{m}] not found")))?;
        list.drain(..=at);
    }
    if let Some(l) = limit {
        list.truncate(l as usize);
    }
    Ok(list)
}

async fn list_flavors(_ctx: Ctx, Query(q): Query<FlavorQuery>) -> ApiResult<Json<Value>> {
    let list: Vec<Value> = flavors_for(&q)?
        .into_iter()
        .map(|f| json!({"id": f.0, "name": f.1, "links": []}))
        .collect();
    Ok(Json(json!({ "flavors": list })))
}

async fn list_flavors_detail(_ctx: Ctx, Query(q): Query<FlavorQuery>) -> ApiResult<Json<Value>> {
    let list: Vec<Value> = flavors_for(&q)?.into_iter().map(flavor_view).collect();
    Ok(Json(json!({ "flavors": list })))
}

async fn show_flavor(_ctx: Ctx, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    FLAVORS
        .iter()
        .find(|f| f.0 == id)
        .map(|f| Json(json!({ "flavor": flavor_view(f) })))
        .ok_or_else(|| ApiError::not_found(format!("Flavor {id} could not be found.")))
}
