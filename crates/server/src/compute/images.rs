//! The image service behind the catalog's `image` entry (outside `/v2.1`): a minimal Glance
//! v2 — create, upload, list, show, download, delete. The built-in images (`cirros`, the
//! seed's) always answer; uploaded ones live under the server's data directory as one file
//! per image plus `index.json`, not in the store: they are blobs, not network state, and no
//! agent's plan depends on them.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::{Json, Router};
use http_body_util::BodyExt;
use md5::Md5;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha512};

use crate::error::{ApiError, ApiResult, ErrorKind};
use crate::identity::Ctx;
use crate::AppState;

/// The image registry behind the catalog's `image` entry. The first id is the seed's.
pub const IMAGES: &[(&str, &str)] = &[
    ("ed8b2a37-5535-4a5f-a615-443513036d71", "cirros"),
    ("5c9a5c0e-7b8f-4a54-9d6f-6a3e0d3f1a01", "cloudpipe"),
];

pub const DISK_FORMATS: &[&str] = &[
    "ami", "ari", "aki", "vhd", "vhdx", "vmdk", "raw", "qcow2", "vdi", "iso", "ploop",
];
pub const CONTAINER_FORMATS: &[&str] = &["ami", "ari", "aki", "bare", "ovf", "ova", "docker"];

/// An uploaded image's record, as kept in `index.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageRecord {
    pub id: String,
    pub name: String,
    pub owner: String,
    pub visibility: String,
    pub disk_format: String,
    pub container_format: String,
    /// `queued` until its data is uploaded, then `active`.
    pub status: String,
    pub size: Option<u64>,
    /// MD5 of the data, hex (Glance's `checksum`).
    pub checksum: Option<String>,
    /// SHA-512 of the data, hex (Glance's `os_hash_value`).
    pub os_hash_value: Option<String>,
    pub min_disk: u64,
    pub min_ram: u64,
    pub created_at: i64,
    pub updated_at: i64,
    /// Free-form properties (`kernel_id`, `ramdisk_id`, `os_command_line`, ...).
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
}

/// Where uploaded images live: a directory (the server's), or memory (in-process tests).
#[derive(Debug)]
pub struct ImageStore {
    dir: Option<PathBuf>,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    index: Vec<ImageRecord>,
    /// The data when there is no directory.
    blobs: BTreeMap<String, Vec<u8>>,
}

const INDEX: &str = "index.json";

impl ImageStore {
    /// Images kept in memory only.
    pub fn in_memory() -> ImageStore {
        ImageStore {
            dir: None,
            inner: Mutex::new(Inner::default()),
        }
    }

    /// Images kept under `dir` (made if missing); an existing index is read.
    pub fn in_dir(dir: PathBuf) -> std::io::Result<ImageStore> {
        std::fs::create_dir_all(&dir)?;
        let index = match std::fs::read(dir.join(INDEX)) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("{}: {e}", dir.join(INDEX).display()),
                )
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e),
        };
        Ok(ImageStore {
            dir: Some(dir),
            inner: Mutex::new(Inner {
                index,
                blobs: BTreeMap::new(),
            }),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Every uploaded image's record.
    pub fn records(&self) -> Vec<ImageRecord> {
        self.lock().index.clone()
    }

    pub fn record(&self, id: &str) -> Option<ImageRecord> {
        self.lock().index.iter().find(|r| r.id == id).cloned()
    }

    /// The file holding an image's data, when images live in a directory.
    pub fn data_path(&self, id: &str) -> Option<PathBuf> {
        self.dir.as_ref().map(|d| d.join(format!("{id}.img")))
    }

    fn save(&self, inner: &Inner) -> ApiResult<()> {
        let Some(dir) = &self.dir else {
            return Ok(());
        };
        let text = serde_json::to_vec_pretty(&inner.index).map_err(ApiError::internal)?;
        // Written aside and renamed: a crash leaves the old index, never half of one.
        let tmp = dir.join(format!("{INDEX}.tmp"));
        std::fs::write(&tmp, text).map_err(ApiError::internal)?;
        std::fs::rename(&tmp, dir.join(INDEX)).map_err(ApiError::internal)
    }

    fn insert(&self, r: ImageRecord) -> ApiResult<()> {
        let mut inner = self.lock();
        if inner.index.iter().any(|x| x.id == r.id) || IMAGES.iter().any(|i| i.0 == r.id) {
            return Err(ApiError::new(
                ErrorKind::Conflict,
                format!("Image with identifier {} already exists", r.id),
            ));
        }
        inner.index.push(r);
        self.save(&inner)
    }

    fn update(&self, r: ImageRecord) -> ApiResult<()> {
        let mut inner = self.lock();
        if let Some(x) = inner.index.iter_mut().find(|x| x.id == r.id) {
            *x = r;
        }
        self.save(&inner)
    }

    fn remove(&self, id: &str) -> ApiResult<()> {
        let mut inner = self.lock();
        inner.index.retain(|x| x.id != id);
        inner.blobs.remove(id);
        self.save(&inner)?;
        if let Some(p) = self.data_path(id) {
            match std::fs::remove_file(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(ApiError::internal(e)),
            }
        }
        Ok(())
    }

    fn read(&self, id: &str) -> ApiResult<Vec<u8>> {
        match self.data_path(id) {
            Some(p) => std::fs::read(p).map_err(ApiError::internal),
            None => Ok(self.lock().blobs.get(id).cloned().unwrap_or_default()),
        }
    }
}

/// Whether `img` (an id or a name) names an image the caller may boot.
pub fn bootable(st: &AppState, ctx: &Ctx, img: &str) -> bool {
    IMAGES.iter().any(|i| i.0 == img || i.1 == img)
        || st
            .images
            .records()
            .iter()
            .any(|r| (r.id == img || r.name == img) && r.status == "active" && visible(ctx, r))
}

pub(super) fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/image/v2/images", get(list_images).post(create_image))
        .route(
            "/image/v2/images/{id}",
            get(show_image).delete(delete_image),
        )
        .route(
            "/image/v2/images/{id}/file",
            put(upload_image).get(download_image),
        )
}

fn builtin_view(i: &(&str, &str)) -> Value {
    json!({"id": i.0, "name": i.1, "status": "active", "visibility": "public", "disk_format": "qcow2",
           "container_format": "bare", "min_disk": 0, "min_ram": 0, "size": 0})
}

fn record_view(r: &ImageRecord) -> Value {
    let mut v = json!({
        "id": r.id, "name": r.name, "status": r.status, "visibility": r.visibility,
        "disk_format": r.disk_format, "container_format": r.container_format,
        "min_disk": r.min_disk, "min_ram": r.min_ram, "size": r.size,
        "checksum": r.checksum, "os_hash_algo": r.os_hash_value.as_ref().map(|_| "sha512"),
        "os_hash_value": r.os_hash_value, "owner": r.owner, "protected": false,
        "created_at": crate::iso8601(r.created_at), "updated_at": crate::iso8601(r.updated_at),
        "tags": [], "file": format!("/v2/images/{}/file", r.id),
        "self": format!("/v2/images/{}", r.id), "schema": "/v2/schemas/image",
    });
    for (k, val) in &r.properties {
        v[k] = json!(val);
    }
    v
}

fn visible(ctx: &Ctx, r: &ImageRecord) -> bool {
    ctx.is_admin() || r.visibility == "public" || r.owner == ctx.project_id()
}

fn not_found(id: &str) -> ApiError {
    ApiError::not_found(format!("Image {id} could not be found."))
}

/// An uploaded image the caller may change: the owner's members, or admin.
fn writable(st: &AppState, ctx: &Ctx, id: &str) -> ApiResult<ImageRecord> {
    if IMAGES.iter().any(|i| i.0 == id) {
        return Err(ApiError::forbidden(format!(
            "Image {id} is built in and protected"
        )));
    }
    let r = st
        .images
        .record(id)
        .filter(|r| visible(ctx, r))
        .ok_or_else(|| not_found(id))?;
    if ctx.is_admin() || (r.owner == ctx.project_id() && ctx.can_write()) {
        Ok(r)
    } else {
        Err(ApiError::forbidden(format!(
            "You are not permitted to modify image {id}"
        )))
    }
}

#[derive(Deserialize)]
struct ImageQuery {
    name: Option<String>,
}

async fn list_images(
    State(st): State<Arc<AppState>>,
    ctx: Ctx,
    Query(q): Query<ImageQuery>,
) -> Json<Value> {
    let name_ok = |n: &str| q.name.as_deref().is_none_or(|want| want == n);
    let mut imgs: Vec<Value> = IMAGES
        .iter()
        .filter(|i| name_ok(i.1))
        .map(builtin_view)
        .collect();
    imgs.extend(
        st.images
            .records()
            .iter()
            .filter(|r| visible(&ctx, r) && name_ok(&r.name))
            .map(record_view),
    );
    Json(json!({ "images": imgs }))
}

async fn show_image(
    State(st): State<Arc<AppState>>,
    ctx: Ctx,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    if let Some(i) = IMAGES.iter().find(|i| i.0 == id) {
        return Ok(Json(builtin_view(i)));
    }
    st.images
        .record(&id)
        .filter(|r| visible(&ctx, r))
        .map(|r| Json(record_view(&r)))
        .ok_or_else(|| not_found(&id))
}

fn str_field(body: &Map<String, Value>, key: &str) -> ApiResult<Option<String>> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(ApiError::bad_request(format!("{key} must be a string"))),
    }
}

fn one_of(key: &str, v: Option<String>, allowed: &[&str]) -> ApiResult<Option<String>> {
    match v {
        Some(s) if !allowed.contains(&s.as_str()) => Err(ApiError::bad_request(format!(
            "Invalid value '{s}' for {key}: one of {}",
            allowed.join(", ")
        ))),
        v => Ok(v),
    }
}

/// Properties Glance sets itself: a create naming them is refused.
const READ_ONLY: &[&str] = &[
    "status",
    "size",
    "checksum",
    "os_hash_algo",
    "os_hash_value",
    "owner",
    "created_at",
    "updated_at",
    "file",
    "self",
    "schema",
    "virtual_size",
    "direct_url",
    "locations",
];

async fn create_image(
    State(st): State<Arc<AppState>>,
    ctx: Ctx,
    Json(body): Json<Value>,
) -> ApiResult<Response> {
    if !ctx.can_write() {
        return Err(ApiError::forbidden("A reader may not create images"));
    }
    let Value::Object(body) = body else {
        return Err(ApiError::bad_request("the body must be a JSON object"));
    };
    let name = str_field(&body, "name")?.unwrap_or_default();
    if name.chars().count() > 255 {
        return Err(ApiError::bad_request("name is longer than 255 characters"));
    }
    let disk_format = one_of(
        "disk_format",
        str_field(&body, "disk_format")?,
        DISK_FORMATS,
    )?
    .ok_or_else(|| ApiError::bad_request("disk_format is required: qcow2, raw, aki, ari, ..."))?;
    let container_format = one_of(
        "container_format",
        str_field(&body, "container_format")?,
        CONTAINER_FORMATS,
    )?
    .unwrap_or_else(|| "bare".into());
    let visibility = one_of(
        "visibility",
        str_field(&body, "visibility")?,
        &["public", "private", "shared", "community"],
    )?
    .unwrap_or_else(|| "private".into());
    if visibility == "public" && !ctx.is_admin() {
        return Err(ApiError::forbidden("Only admin may publicize images"));
    }
    let id = match str_field(&body, "id")? {
        Some(id) => uuid::Uuid::parse_str(&id)
            .map_err(|_| ApiError::bad_request(format!("id {id} is not a UUID")))?
            .to_string(),
        None => uuid::Uuid::new_v4().to_string(),
    };
    let int = |key: &str| -> ApiResult<u64> {
        match body.get(key) {
            None | Some(Value::Null) => Ok(0),
            Some(v) => v
                .as_u64()
                .ok_or_else(|| ApiError::bad_request(format!("{key} must be an integer >= 0"))),
        }
    };
    let (min_disk, min_ram) = (int("min_disk")?, int("min_ram")?);
    let mut properties = BTreeMap::new();
    for (k, v) in &body {
        if READ_ONLY.contains(&k.as_str()) {
            return Err(ApiError::forbidden(format!(
                "Attribute '{k}' is read-only."
            )));
        }
        let known = [
            "id",
            "name",
            "disk_format",
            "container_format",
            "visibility",
            "min_disk",
            "min_ram",
            "protected",
            "tags",
        ];
        if known.contains(&k.as_str()) {
            continue;
        }
        match v {
            Value::String(s) if k.len() <= 255 => {
                properties.insert(k.clone(), s.clone());
            }
            _ => {
                return Err(ApiError::bad_request(format!(
                    "property {k} must be a string (and its name at most 255 characters)"
                )))
            }
        }
    }
    let now = crate::unix_now();
    let r = ImageRecord {
        id,
        name,
        owner: ctx.project_id().to_string(),
        visibility,
        disk_format,
        container_format,
        status: "queued".into(),
        size: None,
        checksum: None,
        os_hash_value: None,
        min_disk,
        min_ram,
        created_at: now,
        updated_at: now,
        properties,
    };
    st.images.insert(r.clone())?;
    Ok((StatusCode::CREATED, Json(record_view(&r))).into_response())
}

/// The data is streamed to a file beside the index (never held whole in memory), hashed on
/// the way, and renamed into place once complete.
async fn upload_image(
    State(st): State<Arc<AppState>>,
    ctx: Ctx,
    Path(id): Path<String>,
    body: Body,
) -> ApiResult<StatusCode> {
    let mut r = writable(&st, &ctx, &id)?;
    if r.status != "queued" {
        return Err(ApiError::new(
            ErrorKind::Conflict,
            format!(
                "Image {id} has status {}: data may be uploaded once",
                r.status
            ),
        ));
    }
    let mut md5 = Md5::new();
    let mut sha = Sha512::new();
    let mut size: u64 = 0;
    let target = st.images.data_path(&id);
    let partial = target.as_ref().map(|p| p.with_extension("partial"));
    let mut file = match &partial {
        Some(p) => Some(std::fs::File::create(p).map_err(ApiError::internal)?),
        None => None,
    };
    let mut memory = Vec::new();
    let mut body = body;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| ApiError::bad_request(format!("reading the upload: {e}")))?;
        let Ok(chunk) = frame.into_data() else {
            continue;
        };
        md5.update(&chunk);
        sha.update(&chunk);
        size += chunk.len() as u64;
        match &mut file {
            Some(f) => f.write_all(&chunk).map_err(ApiError::internal)?,
            None => memory.extend_from_slice(&chunk),
        }
    }
    if let (Some(f), Some(p), Some(t)) = (file, &partial, &target) {
        f.sync_all().map_err(ApiError::internal)?;
        std::fs::rename(p, t).map_err(ApiError::internal)?;
    } else {
        st.images.lock().blobs.insert(id.clone(), memory);
    }
    r.size = Some(size);
    r.checksum = Some(hex(&md5.finalize()));
    r.os_hash_value = Some(hex(&sha.finalize()));
    r.status = "active".into();
    r.updated_at = crate::unix_now();
    st.images.update(r)?;
    Ok(StatusCode::NO_CONTENT)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

async fn download_image(
    State(st): State<Arc<AppState>>,
    ctx: Ctx,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    if IMAGES.iter().any(|i| i.0 == id) {
        // The built-in images are names only: there is no data to give.
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    let r = st
        .images
        .record(&id)
        .filter(|r| visible(&ctx, r))
        .ok_or_else(|| not_found(&id))?;
    if r.status != "active" {
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    let data = st.images.read(&id)?;
    Ok((
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_string()),
            (
                header::HeaderName::from_static("content-md5"),
                r.checksum.unwrap_or_default(),
            ),
        ],
        data,
    )
        .into_response())
}

async fn delete_image(
    State(st): State<Arc<AppState>>,
    ctx: Ctx,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    writable(&st, &ctx, &id)?;
    st.images.remove(&id)?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str) -> ImageRecord {
        ImageRecord {
            id: id.into(),
            name: "img".into(),
            owner: "p1".into(),
            visibility: "private".into(),
            disk_format: "raw".into(),
            container_format: "bare".into(),
            status: "queued".into(),
            size: None,
            checksum: None,
            os_hash_value: None,
            min_disk: 0,
            min_ram: 0,
            created_at: 1,
            updated_at: 1,
            properties: BTreeMap::new(),
        }
    }

    #[test]
    fn the_index_survives_a_restart_and_delete_removes_the_file() {
        let dir = std::env::temp_dir().join(format!("novanet-images-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let s = ImageStore::in_dir(dir.clone()).unwrap();
        s.insert(record("a")).unwrap();
        assert!(s.insert(record("a")).is_err(), "a duplicate id is refused");
        std::fs::write(s.data_path("a").unwrap(), b"data").unwrap();
        let again = ImageStore::in_dir(dir.clone()).unwrap();
        assert_eq!(again.records(), vec![record("a")]);
        assert_eq!(again.read("a").unwrap(), b"data");
        again.remove("a").unwrap();
        assert!(!again.data_path("a").unwrap().exists());
        assert!(ImageStore::in_dir(dir.clone())
            .unwrap()
            .records()
            .is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
