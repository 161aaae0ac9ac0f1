//! The agents' side of the server: heartbeats, host plans (long-polled), lease events.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use novanet_core::firewall::Proto;
use novanet_core::plan::{host_plan, GroupRule, HostPlan, SgRule, Snapshot};
use novanet_core::valid::{CidrText, IfName};
use novanet_core::Error;
use serde::Deserialize;
use serde_json::{json, Value};

use novanet_store::SecurityGroupRule;

use crate::error::{ApiError, ApiResult, Body};
use crate::identity::Ctx;
use crate::{plans, unix_now, AppState};

/// The longest an agent's plan request waits for a change.
pub const MAX_WAIT: Duration = Duration::from_secs(30);

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/novanet/v1/hosts/{host}/report", post(report))
        .route("/novanet/v1/hosts/{host}/diagnosis", get(diagnosis))
        .route("/novanet/v1/leases", post(lease))
        .route("/novanet/v1/vifs/{uuid}/plug", post(plug))
}

/// The agents' long poll: apart from the others because it waits (a thread held per waiting
/// agent would be hundreds). Its store work stays on the async workers: it answers from the
/// kept plans, and moving each poll's few microseconds of work to another thread cost more
/// than it saved (`bench scale`).
pub fn plan_routes() -> Router<Arc<AppState>> {
    Router::new().route("/novanet/v1/hosts/{host}/plan", get(plan))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Report {
    #[serde(default)]
    network_host: bool,
    /// The host's own IPv4 networks (CIDRs); project networks may not overlap them.
    #[serde(default)]
    networks: Vec<String>,
    /// The host's own options (flat_interface, public_interface, ...) from its configuration.
    #[serde(default)]
    options: novanet_core::config::HostOptions,
    /// The host's latest `diagnose` checks (`{"checks": [...], ...}`), kept for
    /// `novanet diagnose --host`.
    #[serde(default)]
    diagnosis: Option<Value>,
}

/// The largest diagnosis kept (its checks name a few lines per network and address).
const MAX_DIAGNOSIS: usize = 1 << 20;

async fn report(
    State(st): State<Arc<AppState>>,
    ctx: Ctx,
    Path(host): Path<String>,
    Body(r): Body<Report>,
) -> ApiResult<Json<Value>> {
    ctx.require_admin("agent reports")?;
    check_host_name(&host)?;
    let mut networks = Vec::new();
    for n in &r.networks {
        let c: novanet_core::net::Ipv4Cidr = n
            .parse()
            .map_err(|e: String| Error::invalid("networks", e))?;
        networks.push(c.to_string());
    }
    r.options.validate()?;
    let diagnosis = match &r.diagnosis {
        None => None,
        Some(d) if d.get("checks").is_some_and(Value::is_array) => {
            let text = d.to_string();
            if text.len() > MAX_DIAGNOSIS {
                return Err(Error::invalid(
                    "diagnosis",
                    format!("{} bytes, more than {MAX_DIAGNOSIS}", text.len()),
                )
                .into());
            }
            Some(text)
        }
        Some(_) => {
            return Err(Error::invalid("diagnosis", "an object with a \"checks\" list").into())
        }
    };
    st.store.report_service(
        &novanet_store::ServiceReport {
            host: host.clone(),
            network_host: r.network_host,
            networks,
            options: r.options.clone(),
        },
        unix_now(),
    )?;
    if let Some(text) = &diagnosis {
        st.store.set_diagnosis(&host, text, unix_now())?;
    }
    let claimed = if r.network_host {
        st.store.claim_networks(&host)?
    } else {
        0
    };
    Ok(Json(json!({"host": host, "claimed_networks": claimed})))
}

/// A host's latest diagnosis, as its agent sent it with a heartbeat.
async fn diagnosis(
    State(st): State<Arc<AppState>>,
    ctx: Ctx,
    Path(host): Path<String>,
) -> ApiResult<Json<Value>> {
    ctx.require_admin("host diagnoses")?;
    check_host_name(&host)?;
    let Some((text, at)) = st.store.diagnosis(&host)? else {
        return Err(ApiError::not_found(format!(
            "no diagnosis from host {host} (its agent sends one with each heartbeat once it holds a plan)"
        )));
    };
    let d: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    Ok(Json(
        json!({"host": host, "reported_at": at, "diagnosis": d}),
    ))
}

#[derive(Deserialize)]
struct PlanQuery {
    /// The generation of the plan the caller holds: answer only once the plan is past it
    /// (or the wait is over).
    after: Option<u64>,
    /// Seconds to wait for a change.
    wait: Option<u64>,
    /// With `after`: the epoch of the server the held plan came from. Then the answer is
    /// `{"epoch", "generation"}` and, if the plan changed, `"plan"` (the whole plan) or
    /// `"deltas"` (what changed since `after`, to apply in order).
    epoch: Option<u64>,
    /// `delta` (the default) or `full`: how a changed plan is sent with `epoch`.
    form: Option<String>,
}

/// Host names as services report them: DNS names (`compute-1`, `node.example.org`).
fn check_host_name(host: &str) -> ApiResult<()> {
    let ok = !host.is_empty()
        && host.len() <= 255
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
    if ok {
        Ok(())
    } else {
        Err(Error::invalid("host", format!("{host:?} is not a host name")).into())
    }
}

/// A stored rule as the plan's model has it; None (and a log line) for a rule whose
/// stored CIDR does not parse, which only a store written by hand can hold.
pub(crate) fn sg_rule(r: SecurityGroupRule) -> Option<SgRule> {
    let canonical = |c: &str| -> Result<CidrText, String> {
        let c = if c.contains(':') {
            c.parse::<novanet_core::net::Ipv6Cidr>()?.to_string()
        } else {
            c.parse::<novanet_core::net::Ipv4Cidr>()?.to_string()
        };
        CidrText::new(c)
    };
    let cidr = match r.cidr.as_deref().map(canonical).transpose() {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(rule = r.id, error = %e, "rule left out of plans");
            return None;
        }
    };
    Some(SgRule {
        proto: match r.protocol.as_deref() {
            Some("tcp") => Some(Proto::Tcp),
            Some("udp") => Some(Proto::Udp),
            Some("icmp") => Some(Proto::Icmp),
            _ => None,
        },
        from_port: r.from_port,
        to_port: r.to_port,
        cidr,
        group: r.group_id,
    })
}

/// A host's plan computed from the whole store, as it was before plans were scoped to their
/// host: what the kept plans are checked against.
pub fn compute_plan(st: &AppState, host: &str) -> ApiResult<HostPlan> {
    // Read the generation first: a change racing with this read shows up as a newer
    // generation on the next poll, never as a lost update.
    let generation = st.store.host_generation(host)?;
    let networks = st.store.networks()?;
    let ids: Vec<i64> = networks.iter().map(|n| n.id).collect();
    let bound = st.store.bound_addresses(&ids)?;
    let floating = st.store.floating_ips(None)?;
    let rules: Vec<GroupRule> = st
        .store
        .security_groups(None)?
        .into_iter()
        .flat_map(|g| g.rules)
        .filter_map(|r| {
            let group_id = r.parent_group_id;
            sg_rule(r).map(|rule| GroupRule { group_id, rule })
        })
        .collect();
    let provider_rules: Vec<SgRule> = st
        .store
        .provider_rules()?
        .into_iter()
        .filter_map(sg_rule)
        .collect();
    let inputs = st.store.host_inputs(host)?;
    let peers = crate::plans::segment_peers(inputs.segment_peers);
    let own = crate::plans::host_addresses(inputs.host_addresses);
    let snap = Snapshot {
        networks: &networks,
        bound: &bound,
        floating: &floating,
        rules: &rules,
        provider_rules: &provider_rules,
        segment_peers: &peers,
        host_addresses: &own,
    };
    // The host's own options (its agent's configuration) over the server's.
    let options = st
        .store
        .services()?
        .into_iter()
        .find(|s| s.host == host)
        .map(|s| s.options)
        .unwrap_or_default();
    let cfg = if options.is_empty() {
        st.cfg.clone()
    } else {
        Arc::new(options.apply(&st.cfg))
    };
    Ok(host_plan(&snap, &cfg, host, generation))
}

fn json_body(body: Vec<u8>) -> Response {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response()
}

async fn plan(
    State(st): State<Arc<AppState>>,
    ctx: Ctx,
    Path(host): Path<String>,
    Query(q): Query<PlanQuery>,
) -> ApiResult<Response> {
    ctx.require_admin("host plans")?;
    check_host_name(&host)?;
    let deltas = match q.form.as_deref() {
        None | Some("delta") => true,
        Some("full") => false,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "form {other:?}: delta or full"
            )))
        }
    };
    // The store may be ahead of the plans (another process wrote, and `serve` only looks
    // every 100 ms): never wait for a change that has already happened.
    st.catch_up();
    let wait = Duration::from_secs(q.wait.unwrap_or(25)).min(MAX_WAIT);
    let (store, cfg) = (st.store.as_ref(), &st.cfg);
    let Some(epoch) = q.epoch else {
        // The whole plan, once its generation is past `after`.
        let (mut body, generation, mut rx) = st.plans.current(store, cfg, &host)?;
        if let Some(after) = q.after.filter(|a| generation <= *a) {
            if tokio::time::timeout(wait, rx.wait_for(|g| *g > after))
                .await
                .is_ok()
            {
                body = st.plans.current(store, cfg, &host)?.0;
            }
        }
        return Ok(json_body(body));
    };
    let held = q.after.map(|g| (epoch, g));
    let (mut poll, mut rx) = st.plans.poll(store, cfg, &host, held, deltas)?;
    if let (plans::Poll::Unchanged(_), Some(after)) = (&poll, q.after) {
        // Woken by a change, by the plan leaving the cache, or at the end of the wait.
        let _ = tokio::time::timeout(wait, rx.wait_for(|g| *g > after)).await;
        poll = st.plans.poll(store, cfg, &host, held, deltas)?.0;
    }
    Ok(json_body(match poll {
        plans::Poll::Changed(body) => body,
        plans::Poll::Unchanged(generation) => {
            serde_json::to_vec(&json!({"epoch": st.plans.epoch, "generation": generation}))
                .expect("JSON")
        }
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LeaseEvent {
    action: String,
    address: String,
    mac: Option<String>,
    #[serde(default)]
    hostname: Option<String>,
}

async fn lease(
    State(st): State<Arc<AppState>>,
    ctx: Ctx,
    Body(e): Body<LeaseEvent>,
) -> ApiResult<Json<Value>> {
    ctx.require_admin("lease events")?;
    let _ = e.hostname;
    let changed = match e.action.as_str() {
        "add" | "old" => st.store.lease_fixed_ip(&e.address, e.mac.as_deref())?,
        "del" => st
            .store
            .release_fixed_ip(&e.address, e.mac.as_deref(), unix_now())?,
        other => {
            return Err(ApiError::bad_request(format!(
                "unknown lease action {other:?} (add, old, del)"
            )))
        }
    };
    Ok(Json(json!({"changed": changed})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Plug {
    device: String,
}

/// The hypervisor says where it plugged a VIF, as a port binding does: the agent filters
/// and anti-spoofs on that device.
async fn plug(
    State(st): State<Arc<AppState>>,
    ctx: Ctx,
    Path(uuid): Path<String>,
    Body(p): Body<Plug>,
) -> ApiResult<Json<Value>> {
    ctx.require_admin("VIF plugging")?;
    IfName::new(p.device.as_str()).map_err(|e| Error::invalid("device", e))?;
    st.store.set_vif_device(&uuid, &p.device)?;
    Ok(Json(json!({"vif": uuid, "device": p.device})))
}
