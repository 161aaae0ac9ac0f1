//! The image registry behind the catalog's `image` entry (outside `/v2.1`).

use std::sync::Arc;

use axum::extract::{Path, Query};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::error::{ApiError, ApiResult};
use crate::identity::Ctx;
use crate::AppState;

/// The image registry behind the catalog's `image` entry. The first id is the seed's.
pub const IMAGES: &[(&str, &str)] = &[
    ("ed8b2a37-5535-4a5f-a615-443513036d71", "cirros"),
    ("5c9a5c0e-7b8f-4a54-9d6f-6a3e0d3f1a01", "cloudpipe"),
];

pub(super) fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/image/v2/images", get(list_images))
        .route("/image/v2/images/{id}", get(show_image))
}

fn image_view(i: &(&str, &str)) -> Value {
    json!({"id": i.0, "name": i.1, "status": "active", "visibility": "public", "disk_format": "qcow2",
           "container_format": "bare", "min_disk": 0, "min_ram": 0, "size": 0})
}

#[derive(Deserialize)]
struct ImageQuery {
    name: Option<String>,
}

async fn list_images(_ctx: Ctx, Query(q): Query<ImageQuery>) -> Json<Value> {
    let imgs: Vec<Value> = IMAGES
        .iter()
        .filter(|i| q.name.as_deref().is_none_or(|n| n == i.1))
        .map(image_view)
        .collect();
    Json(json!({ "images": imgs }))
}

async fn show_image(_ctx: Ctx, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    IMAGES
        .iter()
        .find(|i| i.0 == id)
        .map(|i| Json(image_view(i)))
        .ok_or_else(|| ApiError::not_found(format!("Image {id} could not be found.")))
}
