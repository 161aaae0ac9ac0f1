//! Compute API microversions and request ids, on every response as Nova sends them: the
//! version asked for (`X-OpenStack-Nova-API-Version: 2.16` or `OpenStack-API-Version:
//! compute 2.16`, `latest` for the newest) is checked, handed to handlers, and echoed back
//! with `Vary`; each request gets an `x-openstack-request-id` (also `x-compute-request-id`),
//! the id its log line carries.
//!
//! `request_log` writes that line: one `tracing` event per request once it is answered, and a
//! span around the handler so that whatever a handler logs carries the request's id too.

use axum::extract::{FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::sync::{Arc, OnceLock};
use std::time::Instant;
use tracing::Instrument;

use crate::error::{ApiError, ErrorKind};

/// A compute microversion, `2.N`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Microversion(pub u32);

impl Microversion {
    pub const MIN: Microversion = Microversion(1);
    pub const MAX: Microversion = Microversion(35);

    pub fn at_least(self, minor: u32) -> bool {
        self.0 >= minor
    }

    fn parse(s: &str) -> Option<Microversion> {
        let s = s.trim();
        if s.eq_ignore_ascii_case("latest") {
            return Some(Microversion::MAX);
        }
        let (major, minor) = s.split_once('.')?;
        let canonical = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
        if major != "2" || !canonical(minor) || (minor.len() > 1 && minor.starts_with('0')) {
            return None;
        }
        minor.parse().ok().map(Microversion)
    }
}

impl std::fmt::Display for Microversion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "2.{}", self.0)
    }
}

/// The version a request asks for: the newer header wins, absent means 2.1.
fn requested(h: &HeaderMap) -> Result<Microversion, ApiError> {
    let new = h
        .get_all("openstack-api-version")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .find_map(|v| {
            let mut w = v.split_whitespace();
            (w.next()?.eq_ignore_ascii_case("compute")).then(|| w.next().unwrap_or("").to_string())
        });
    let old = h
        .get("x-openstack-nova-api-version")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let Some(text) = new.or(old) else {
        return Ok(Microversion::MIN);
    };
    let v = Microversion::parse(&text).ok_or_else(|| {
        ApiError::bad_request(format!(
            "Invalid API version request: {text:?} (give 2.N, or latest)"
        ))
    })?;
    if v > Microversion::MAX || v < Microversion::MIN {
        return Err(ApiError::new(
            ErrorKind::NotAcceptable,
            format!(
                "Version {v} is not supported by the API. Minimum is {} and maximum is {}.",
                Microversion::MIN,
                Microversion::MAX
            ),
        ));
    }
    Ok(v)
}

/// A request's id: `req-` and a UUID, as OpenStack's services make them.
#[derive(Clone, Debug)]
pub struct RequestId(pub String);

impl RequestId {
    fn new() -> RequestId {
        RequestId(format!("req-{}", uuid::Uuid::new_v4()))
    }
}

/// The project a request acts for, known only once its token is checked (`Ctx` fills it in)
/// and wanted by the request's log line, which is written outside the handler.
#[derive(Clone, Debug, Default)]
pub struct RequestProject(Arc<OnceLock<String>>);

impl RequestProject {
    pub fn set(&self, project_id: &str) {
        let _ = self.0.set(project_id.to_string());
    }
}

/// The outermost middleware: gives the request its id and logs one line when it is answered
/// (method, path, status, time in ms, request id, project).
pub async fn request_log(
    axum::extract::State(st): axum::extract::State<Arc<crate::AppState>>,
    mut req: Request,
    next: Next,
) -> Response {
    let id = RequestId::new();
    let project = RequestProject::default();
    req.extensions_mut().insert(id.clone());
    req.extensions_mut().insert(project.clone());
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let started = Instant::now();
    let span = tracing::info_span!("request", request_id = %id.0);
    let resp = next.run(req).instrument(span).await;
    let seconds = started.elapsed().as_secs_f64();
    st.metrics
        .observe(method.as_str(), &path, resp.status().as_u16(), seconds);
    let ms = (seconds * 10_000.0).round() / 10.0;
    tracing::info!(
        method = %method,
        path = %path,
        status = resp.status().as_u16(),
        ms,
        request_id = %id.0,
        project = %project.0.get().map_or("-", String::as_str),
        "request"
    );
    resp
}

/// The middleware: version check for compute paths, headers on every response.
pub async fn headers(mut req: Request, next: Next) -> Response {
    let id = match req.extensions().get::<RequestId>() {
        Some(id) => id.0.clone(),
        None => {
            let id = RequestId::new();
            req.extensions_mut().insert(id.clone());
            id.0
        }
    };
    let compute = req.uri().path().starts_with("/v2");
    let version = if compute {
        match requested(req.headers()) {
            Ok(v) => Some(v),
            Err(e) => {
                let mut r = e.into_response();
                add_id(r.headers_mut(), &id);
                return r;
            }
        }
    } else {
        None
    };
    if let Some(v) = version {
        req.extensions_mut().insert(v);
    }
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    add_id(h, &id);
    if let Some(v) = version {
        let value = |s: String| HeaderValue::from_str(&s).expect("ascii header");
        h.insert("x-openstack-nova-api-version", value(v.to_string()));
        h.insert("openstack-api-version", value(format!("compute {v}")));
        h.insert(
            "vary",
            HeaderValue::from_static("OpenStack-API-Version, X-OpenStack-Nova-API-Version"),
        );
    }
    resp
}

fn add_id(h: &mut HeaderMap, id: &str) {
    let v = HeaderValue::from_str(id).expect("ascii id");
    h.insert("x-openstack-request-id", v.clone());
    h.insert("x-compute-request-id", v);
}

impl<S: Send + Sync> FromRequestParts<S> for Microversion {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(parts
            .extensions
            .get::<Microversion>()
            .copied()
            .unwrap_or(Microversion::MIN))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        let h = |k: &str, v: &str| {
            let mut m = HeaderMap::new();
            m.insert(
                axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
            m
        };
        assert_eq!(requested(&HeaderMap::new()).unwrap(), Microversion(1));
        assert_eq!(
            requested(&h("x-openstack-nova-api-version", "2.16")).unwrap(),
            Microversion(16)
        );
        assert_eq!(
            requested(&h("openstack-api-version", "compute 2.26")).unwrap(),
            Microversion(26)
        );
        assert_eq!(
            requested(&h("openstack-api-version", "compute latest")).unwrap(),
            Microversion::MAX
        );
        for bad in ["2.x", "3.1", "2.", "two", "2.01"] {
            assert!(matches!(
                requested(&h("x-openstack-nova-api-version", bad)),
                Err(ApiError {
                    kind: ErrorKind::BadRequest,
                    ..
                })
            ));
        }
        assert!(matches!(
            requested(&h("x-openstack-nova-api-version", "2.36")),
            Err(ApiError {
                kind: ErrorKind::NotAcceptable,
                ..
            })
        ));
    }
}
