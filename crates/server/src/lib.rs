//! `novanet server`: the identity and compute APIs, the agents' host plans and the lease
//! hook endpoint, over one store. `app(state)` builds the whole HTTP service so that tests
//! drive it in-process.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body as AxumBody;
use axum::extract::Request;
use axum::http::Uri;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use novanet_core::config::Config;
use novanet_store::Store;
use serde_json::{json, Value};
use tower::util::MapRequest;
use tower::ServiceExt;

pub mod ca;
pub mod compute;
pub mod configdrive;
pub mod error;
pub mod explain;
pub mod hostapi;
pub mod hypervisor;
pub mod identity;
pub mod identity_admin;
pub mod keystone;
pub mod metadata;
pub mod metrics;
pub mod offload;
pub mod openapi;
pub mod plans;
pub mod version;

pub struct AppState {
    pub store: Arc<dyn Store>,
    pub cfg: Arc<Config>,
    /// Each host's plan, kept up to date from the store's change log; agents' long polls
    /// wait on it.
    pub plans: plans::Plans,
    pub metadata_cache: metadata::Cache,
    /// Set by `[keystone_authtoken]`: tokens are Keystone's, not this server's.
    pub keystone: Option<Arc<keystone::ExternalKeystone>>,
    /// Where clients reach this server (`public_endpoint`, else `http://my_ip:8774`): the
    /// catalog and version documents point there, never at a request's `Host` header.
    pub public_base: String,
    pub logins: identity::LoginGuard,
    /// Request counters and latencies for `/novanet/v1/metrics`.
    pub metrics: metrics::Metrics,
    /// Uploaded images (the built-in ones are `compute::IMAGES`).
    pub images: compute::ImageStore,
    /// The cloudpipe certificate authority (the data directory's `ca/`).
    pub ca: ca::Ca,
}

impl AppState {
    /// Uploaded images are kept in memory: for in-process servers (tests, bench).
    pub fn new(store: Arc<dyn Store>, cfg: Config) -> Arc<AppState> {
        Self::with_images(store, cfg, compute::ImageStore::in_memory())
    }

    pub fn with_images(
        store: Arc<dyn Store>,
        cfg: Config,
        images: compute::ImageStore,
    ) -> Arc<AppState> {
        Self::with_parts(store, cfg, images, ca::Ca::temporary())
    }

    /// A server keeping its uploaded images and its cloudpipe CA where it is told.
    pub fn with_parts(
        store: Arc<dyn Store>,
        cfg: Config,
        images: compute::ImageStore,
        ca: ca::Ca,
    ) -> Arc<AppState> {
        let cursor = store.generation().unwrap_or(0);
        let keystone = cfg
            .keystone_authtoken
            .clone()
            .map(|k| Arc::new(keystone::ExternalKeystone::new(k)));
        let public_base = cfg
            .public_endpoint
            .clone()
            .unwrap_or_else(|| format!("http://{}:8774", cfg.my_ip))
            .trim_end_matches('/')
            .to_string();
        let st = Arc::new(AppState {
            store,
            public_base,
            logins: identity::LoginGuard::default(),
            metrics: metrics::Metrics::default(),
            cfg: Arc::new(cfg),
            plans: plans::Plans::new(cursor),
            metadata_cache: metadata::Cache::default(),
            keystone,
            images,
            ca,
        });
        st.metadata_cache.saw_generation(cursor);
        // This process's own changes reach the plans (and wake the agents they touch) as
        // soon as they commit; other processes' within `serve`'s next look.
        let weak = Arc::downgrade(&st);
        st.store.on_commit(Arc::new(move |_| {
            if let Some(st) = weak.upgrade() {
                st.catch_up();
            }
        }));
        st
    }

    /// Brings the kept plans up to date with the store's change log (it also moves when
    /// `novanet manage` or another server writes).
    pub fn catch_up(&self) {
        // The metadata cache compares its entries with the generation the change log was
        // read up to, instead of asking the store on every request.
        match self.plans.catch_up(self.store.as_ref(), &self.cfg) {
            Ok(g) => self.metadata_cache.saw_generation(g),
            Err(e) => tracing::error!(error = %e, "reading the change log"),
        }
    }
}

pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// `2026-11-25T12:00:00.000000Z` (keystone's format).
pub fn iso8601(secs: i64) -> String {
    let days = secs.div_euclid(86400);
    let rem = secs.rem_euclid(86400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.000000Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// The API router (without the path normalisation `app` adds).
pub fn router(state: Arc<AppState>) -> Router {
    // Every handler here may block on the store; the agents' long poll (hostapi's
    // `plan_routes`) waits for changes instead, answering from the kept plans.
    let store_bound = Router::new()
        .merge(identity::routes())
        .merge(identity_admin::routes())
        .merge(compute::image_routes())
        .nest("/v2.1", compute::routes())
        .merge(hostapi::routes())
        .merge(hypervisor::routes())
        .merge(configdrive::routes())
        .merge(metrics::routes())
        .merge(explain::routes())
        .merge(compute::cloudpipe_admin_routes())
        .route_layer(axum::middleware::from_fn(offload::off_the_workers));
    Router::new()
        .route("/", get(root))
        .route("/v2.0", get(v20))
        .merge(store_bound)
        .merge(hostapi::plan_routes())
        .route("/openapi.json", get(openapi::document))
        .fallback(|| async { error::ApiError::not_found("The resource could not be found.") })
        .layer(axum::middleware::from_fn(json_faults))
        .layer(axum::middleware::from_fn(version::headers))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            version::request_log,
        ))
        .with_state(state)
}

/// axum's own rejections (a path segment that is not UTF-8, a query string that does not
/// parse, an unknown method) are plain text; clients expect every fault in the API's shape.
async fn json_faults(req: Request, next: axum::middleware::Next) -> Response {
    let identity = req.uri().path().starts_with("/identity");
    let resp = next.run(req).await;
    let status = resp.status();
    let is_json = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return resp;
    }
    let (parts, body) = resp.into_parts();
    let bytes = axum::body::to_bytes(body, 64 * 1024)
        .await
        .unwrap_or_default();
    let text = String::from_utf8_lossy(&bytes).trim().to_string();
    let message = if text.is_empty() {
        status.canonical_reason().unwrap_or("error").to_string()
    } else {
        text
    };
    let fault = error::ApiError::new(error::ErrorKind::from_status(status), message);
    let mut out = if identity {
        fault.in_keystone_shape()
    } else {
        fault
    }
    .into_response();
    // Keep what the rejection said beyond its body (Allow on 405, for one).
    for (k, v) in parts.headers.iter() {
        if k != "content-type" && k != "content-length" {
            out.headers_mut().insert(k.clone(), v.clone());
        }
    }
    out
}

fn v20_doc(base: &str) -> Value {
    json!({"id": "v2.0", "status": "SUPPORTED", "version": "", "min_version": "",
           "updated": "2011-01-21T11:33:21Z", "links": [{"rel": "self", "href": format!("{base}/v2/")}],
           "media-types": [{"base": "application/json", "type": "application/vnd.openstack.compute+json;version=2"}]})
}

async fn v20(axum::extract::State(st): axum::extract::State<Arc<AppState>>) -> Response {
    Json(json!({"version": v20_doc(&st.public_base)})).into_response()
}

async fn root(axum::extract::State(st): axum::extract::State<Arc<AppState>>) -> Response {
    let base = st.public_base.as_str();
    let mut v21 = compute::version_doc(base);
    v21["status"] = json!("CURRENT");
    let v20 = v20_doc(base);
    Json(json!({"versions": [v20, v21]})).into_response()
}

/// Accepts the path spellings clients use for the same resource: `/compute/v2.1/...`,
/// `/v2/...`, a project id after the version (`/v2.1/{project_id}/servers`), and a trailing
/// slash.
pub fn normalise_path(path: &str) -> String {
    let mut p = path
        .strip_prefix("/compute")
        .filter(|r| r.starts_with("/v2"))
        .unwrap_or(path)
        .to_string();
    // The v2.0 version document keeps its own path (its self link is /v2/).
    if p == "/v2" || p == "/v2/" {
        return "/v2.0".into();
    }
    if p.starts_with("/v2/") {
        p = format!("/v2.1{}", &p[3..]);
    }
    if let Some(rest) = p.strip_prefix("/v2.1/") {
        let (first, tail) = rest.split_once('/').unwrap_or((rest, ""));
        let is_project = first.len() == 32 && first.bytes().all(|b| b.is_ascii_hexdigit());
        if is_project {
            p = if tail.is_empty() {
                "/v2.1".into()
            } else {
                format!("/v2.1/{tail}")
            };
        }
    }
    while p.len() > 1 && p.ends_with('/') && !p.starts_with("/identity") {
        p.pop();
    }
    p
}

type NormaliseFn = fn(Request) -> Request;

fn normalise(mut req: Request) -> Request {
    let path = req.uri().path();
    let new_path = normalise_path(path);
    if new_path != path {
        let pq = match req.uri().query() {
            Some(q) => format!("{new_path}?{q}"),
            None => new_path,
        };
        let mut parts = req.uri().clone().into_parts();
        parts.path_and_query = pq.parse().ok();
        if let Ok(uri) = Uri::from_parts(parts) {
            *req.uri_mut() = uri;
        }
    }
    req
}

/// The whole HTTP service: path normalisation in front of the router.
pub fn app(state: Arc<AppState>) -> MapRequest<Router, NormaliseFn> {
    router(state).map_request(normalise as NormaliseFn)
}

/// Serves the API on `listener` until the process ends, with the background tasks: the
/// change log reader (for other processes' changes) and the stale fixed IP sweep.
pub async fn serve(state: Arc<AppState>, listener: tokio::net::TcpListener) -> std::io::Result<()> {
    let st = state.clone();
    tokio::spawn(async move {
        loop {
            let s = st.clone();
            if let Err(e) = tokio::task::spawn_blocking(move || s.catch_up()).await {
                tracing::error!(error = %e, "reading the change log");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let st = state.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(60)).await;
            let s = st.clone();
            let swept = tokio::task::spawn_blocking(move || {
                s.store.disassociate_stale_fixed_ips(
                    unix_now(),
                    s.cfg.fixed_ip_disassociate_timeout as i64,
                )
            })
            .await;
            if let Ok(Err(e)) = swept {
                tracing::error!(error = %e, "releasing stale fixed IPs");
            }
        }
    });
    let service = app(state);
    // The peer address reaches handlers as `ConnectInfo` (login throttling per source).
    axum::serve(
        listener,
        axum::ServiceExt::<Request>::into_make_service_with_connect_info::<std::net::SocketAddr>(
            service,
        ),
    )
    .await
}

/// Serves the metadata API (on its own port, as nova-api-metadata did).
pub async fn serve_metadata(
    state: Arc<AppState>,
    listener: tokio::net::TcpListener,
) -> std::io::Result<()> {
    let app = metadata::router(state);
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .await
}

/// For in-process tests: send one request through the full service.
pub async fn call(state: Arc<AppState>, req: Request<AxumBody>) -> Response {
    app(state).oneshot(req).await.unwrap_or_else(|e| match e {})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_normalised() {
        assert_eq!(normalise_path("/compute/v2.1/servers"), "/v2.1/servers");
        assert_eq!(
            normalise_path("/v2.1/0123456789abcdef0123456789abcdef/servers/detail"),
            "/v2.1/servers/detail"
        );
        assert_eq!(
            normalise_path("/v2/0123456789abcdef0123456789abcdef/os-networks"),
            "/v2.1/os-networks"
        );
        assert_eq!(normalise_path("/v2.1"), "/v2.1");
        assert_eq!(normalise_path("/compute/v2.1/"), "/v2.1");
        assert_eq!(normalise_path("/identity/v3/"), "/identity/v3/");
        assert_eq!(normalise_path("/v2.1/servers/"), "/v2.1/servers");
    }

    #[test]
    fn iso_dates() {
        assert_eq!(iso8601(0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(iso8601(1_795_608_000), "2026-11-25T12:00:00.000000Z");
    }
}
