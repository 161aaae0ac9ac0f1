//! What an operator's Prometheus scrapes: `GET /metrics` or `GET /novanet/v1/metrics`
//! (admin; the text exposition format) and `GET /healthz` (no token: whether this server reaches its store).
//!
//! Request counters and latency histograms are kept per route template (the path of
//! `openapi::ROUTES` a request matched, never the raw path: ids would make a series per
//! resource); the cloud's figures (instances, addresses, floating IPs, agents) are read from
//! the store at scrape time.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use novanet_store::Store;

use crate::error::ApiResult;
use crate::identity::Ctx;
use crate::AppState;

/// Upper bounds of the latency histogram's buckets, in seconds.
const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

#[derive(Default)]
struct Histogram {
    /// Observations at or below each bucket's bound (not cumulative here; summed on render).
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

#[derive(Default)]
pub struct Metrics {
    /// (route, method, status) -> requests.
    requests: Mutex<BTreeMap<(&'static str, String, u16), u64>>,
    /// (route, method) -> latency.
    latency: Mutex<BTreeMap<(&'static str, String), Histogram>>,
}

/// The route template a request path matches, or `unmatched`.
pub fn route_of(method: &str, path: &str) -> &'static str {
    let method = method.to_ascii_lowercase();
    let segs: Vec<&str> = path.trim_end_matches('/').split('/').collect();
    crate::openapi::ROUTES
        .iter()
        .filter(|(m, _, _)| *m == method)
        .map(|(_, p, _)| *p)
        .chain(["/healthz", "/metrics", "/novanet/v1/metrics"])
        .find(|p| {
            let pat: Vec<&str> = p.split('/').collect();
            pat.len() == segs.len()
                && pat
                    .iter()
                    .zip(&segs)
                    .all(|(a, b)| a == b || (a.starts_with('{') && !b.is_empty()))
        })
        .unwrap_or("unmatched")
}

impl Metrics {
    pub fn observe(&self, method: &str, path: &str, status: u16, seconds: f64) {
        let route = route_of(method, path);
        *self
            .requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry((route, method.to_string(), status))
            .or_default() += 1;
        let mut latency = self.latency.lock().unwrap_or_else(|p| p.into_inner());
        let h = latency.entry((route, method.to_string())).or_default();
        if let Some(i) = BUCKETS.iter().position(|b| seconds <= *b) {
            h.counts[i] += 1;
        }
        h.count += 1;
        h.sum += seconds;
    }

    fn render_requests(&self, out: &mut String) {
        out.push_str("# HELP novanet_http_requests_total API requests answered, by route template, method and status.\n");
        out.push_str("# TYPE novanet_http_requests_total counter\n");
        for ((route, method, status), n) in self
            .requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            let _ = writeln!(
                out,
                "novanet_http_requests_total{{route=\"{route}\",method=\"{method}\",status=\"{status}\"}} {n}"
            );
        }
        out.push_str("# HELP novanet_http_request_duration_seconds Time to answer API requests, by route template and method.\n");
        out.push_str("# TYPE novanet_http_request_duration_seconds histogram\n");
        for ((route, method), h) in self
            .latency
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            let labels = format!("route=\"{route}\",method=\"{method}\"");
            let mut cumulative = 0;
            for (b, c) in BUCKETS.iter().zip(h.counts) {
                cumulative += c;
                let _ = writeln!(
                    out,
                    "novanet_http_request_duration_seconds_bucket{{{labels},le=\"{b}\"}} {cumulative}"
                );
            }
            let _ = writeln!(
                out,
                "novanet_http_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {}",
                h.count
            );
            let _ = writeln!(
                out,
                "novanet_http_request_duration_seconds_sum{{{labels}}} {}",
                h.sum
            );
            let _ = writeln!(
                out,
                "novanet_http_request_duration_seconds_count{{{labels}}} {}",
                h.count
            );
        }
    }
}

/// A label value as the exposition format wants it (labels here are names an admin gave).
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn gauge(out: &mut String, name: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
}

/// The cloud's figures, from the store.
fn render_cloud(
    store: &dyn Store,
    service_down_time: u64,
    now: i64,
    out: &mut String,
) -> novanet_core::Result<()> {
    gauge(
        out,
        "novanet_store_generation",
        "The store's generation: every committed change moves it.",
    );
    let _ = writeln!(out, "novanet_store_generation {}", store.generation()?);
    gauge(out, "novanet_instances", "Instances, by host.");
    for (host, n) in store.instance_counts()? {
        let _ = writeln!(out, "novanet_instances{{host=\"{}\"}} {n}", label(&host));
    }
    gauge(
        out,
        "novanet_fixed_ips",
        "Fixed IPs of each network, by state (allocated, reserved, free).",
    );
    let networks = store.networks()?;
    let mut per_net: BTreeMap<i64, [u64; 3]> = BTreeMap::new();
    for f in store.fixed_ips(None)? {
        let e = per_net.entry(f.fixed.network_id).or_default();
        let i = if f.fixed.allocated {
            0
        } else if f.fixed.reserved {
            1
        } else {
            2
        };
        e[i] += 1;
    }
    for n in &networks {
        let c = per_net.get(&n.id).copied().unwrap_or_default();
        for (state, v) in ["allocated", "reserved", "free"].iter().zip(c) {
            let _ = writeln!(
                out,
                "novanet_fixed_ips{{network=\"{}\",label=\"{}\",state=\"{state}\"}} {v}",
                n.uuid,
                label(&n.label)
            );
        }
    }
    gauge(
        out,
        "novanet_floating_ips",
        "Floating IPs of each pool, by state (associated, allocated to a project, free).",
    );
    let mut per_pool: BTreeMap<String, [u64; 3]> = BTreeMap::new();
    for f in store.floating_ips(None)? {
        let e = per_pool.entry(f.pool.clone()).or_default();
        let i = if f.fixed_ip.is_some() {
            0
        } else if f.project_id.is_some() {
            1
        } else {
            2
        };
        e[i] += 1;
    }
    for (pool, c) in per_pool {
        for (state, v) in ["associated", "allocated", "free"].iter().zip(c) {
            let _ = writeln!(
                out,
                "novanet_floating_ips{{pool=\"{}\",state=\"{state}\"}} {v}",
                label(&pool)
            );
        }
    }
    gauge(
        out,
        "novanet_agent_last_report_seconds",
        "Seconds since each host's agent last reported.",
    );
    let services = store.services()?;
    for s in &services {
        let _ = writeln!(
            out,
            "novanet_agent_last_report_seconds{{host=\"{}\"}} {}",
            label(&s.host),
            (now - s.last_seen).max(0)
        );
    }
    gauge(
        out,
        "novanet_agent_up",
        "1 when a host's agent reported within service_down_time.",
    );
    for s in &services {
        let up = (now - s.last_seen) <= service_down_time as i64;
        let _ = writeln!(
            out,
            "novanet_agent_up{{host=\"{}\"}} {}",
            label(&s.host),
            u8::from(up)
        );
    }
    Ok(())
}

/// The store's transaction times by noun and kind (read, write).
fn render_store_times(out: &mut String) {
    use novanet_store::timing;
    out.push_str("# HELP novanet_store_operation_duration_seconds Store transactions, by noun (the engine's file) and kind (read, write).\n");
    out.push_str("# TYPE novanet_store_operation_duration_seconds histogram\n");
    for ((noun, kind), t) in timing::snapshot() {
        let labels = format!("noun=\"{noun}\",kind=\"{kind}\"");
        let mut cumulative = 0;
        for (b, c) in timing::BUCKETS.iter().zip(t.buckets) {
            cumulative += c;
            let _ = writeln!(
                out,
                "novanet_store_operation_duration_seconds_bucket{{{labels},le=\"{b}\"}} {cumulative}"
            );
        }
        let _ = writeln!(
            out,
            "novanet_store_operation_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {}",
            t.count
        );
        let _ = writeln!(
            out,
            "novanet_store_operation_duration_seconds_sum{{{labels}}} {}",
            t.sum
        );
        let _ = writeln!(
            out,
            "novanet_store_operation_duration_seconds_count{{{labels}}} {}",
            t.count
        );
    }
}

async fn metrics(State(st): State<Arc<AppState>>, ctx: Ctx) -> ApiResult<Response> {
    ctx.require_admin("reading the server's metrics")?;
    let mut out = String::new();
    st.metrics.render_requests(&mut out);
    let now = crate::unix_now();
    render_cloud(st.store.as_ref(), st.cfg.service_down_time, now, &mut out)?;
    render_store_times(&mut out);
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        out,
    )
        .into_response())
}

/// 200 when the store answers, 503 otherwise: what a load balancer in front of several
/// servers asks.
async fn healthz(State(st): State<Arc<AppState>>) -> Response {
    match st.store.generation() {
        Ok(_) => (StatusCode::OK, "ok\n").into_response(),
        Err(e) => {
            tracing::error!(error = %e, "health check: the store does not answer");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "the store does not answer\n",
            )
                .into_response()
        }
    }
}

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/novanet/v1/metrics", get(metrics))
        .route("/healthz", get(healthz))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_counted_by_route_template() {
        assert_eq!(
            route_of("GET", "/v2.1/servers/abc/ips"),
            "/v2.1/servers/{id}/ips"
        );
        assert_eq!(route_of("GET", "/v2.1/os-networks"), "/v2.1/os-networks");
        assert_eq!(route_of("GET", "/no/such/thing"), "unmatched");
        let m = Metrics::default();
        m.observe("GET", "/v2.1/servers/a", 200, 0.003);
        m.observe("GET", "/v2.1/servers/b", 200, 0.2);
        m.observe("GET", "/v2.1/servers/b", 404, 20.0);
        let mut out = String::new();
        m.render_requests(&mut out);
        assert!(out.contains(
            "novanet_http_requests_total{route=\"/v2.1/servers/{id}\",method=\"GET\",status=\"200\"} 2"
        ), "{out}");
        assert!(out.contains(
            "novanet_http_request_duration_seconds_bucket{route=\"/v2.1/servers/{id}\",method=\"GET\",le=\"0.005\"} 1"
        ), "{out}");
        assert!(out.contains(
            "novanet_http_request_duration_seconds_bucket{route=\"/v2.1/servers/{id}\",method=\"GET\",le=\"+Inf\"} 3"
        ), "{out}");
        assert!(out.contains(
            "novanet_http_request_duration_seconds_count{route=\"/v2.1/servers/{id}\",method=\"GET\"} 3"
        ), "{out}");
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
