//! The agents' side of the server: heartbeats, host plans (long-polled), lease events.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, State};
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
use crate::{unix_now, AppState};

/// The longest an agent's plan request waits for a change.
pub const MAX_WAIT: Duration = Duration::from_secs(30);

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/novanet/v1/hosts/{host}/report", post(report))
        .route("/novanet/v1/hosts/{host}/plan", get(plan))
        .route("/novanet/v1/leases", post(lease))
        .route("/novanet/v1/vifs/{uuid}/plug", post(plug))
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
}

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
    st.store.report_service(
        &novanet_store::ServiceReport {
            host: host.clone(),
            network_host: r.network_host,
            networks,
            options: r.options.clone(),
        },
        unix_now(),
    )?;
    let claimed = if r.network_host {
        st.store.claim_networks(&host)?
    } else {
        0
    };
    Ok(Json(json!({"host": host, "claimed_networks": claimed})))
}

#[derive(Deserialize)]
struct PlanQuery {
    /// Answer only once the generation is past this one (or the wait is over).
    after: Option<u64>,
    /// Seconds to wait for a change.
    wait: Option<u64>,
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
fn sg_rule(r: SecurityGroupRule) -> Option<SgRule> {
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
            eprintln!("novanet server: rule {} left out of plans: {e}", r.id);
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

pub fn compute_plan(st: &AppState, host: &str) -> ApiResult<HostPlan> {
    // Read the generation first: a change racing with this read shows up as a newer
    // generation on the next poll, never as a lost update.
    let generation = st.store.generation()?;
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
    let snap = Snapshot {
        networks: &networks,
        bound: &bound,
        floating: &floating,
        rules: &rules,
        provider_rules: &provider_rules,
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

async fn plan(
    State(st): State<Arc<AppState>>,
    ctx: Ctx,
    Path(host): Path<String>,
    Query(q): Query<PlanQuery>,
) -> ApiResult<Json<HostPlan>> {
    ctx.require_admin("host plans")?;
    if let Some(after) = q.after {
        // The store may be ahead of the last generation seen (no watcher task runs in
        // process, and the watcher only looks every 100 ms): never wait for a change that
        // has already happened.
        st.refresh_generation();
        let wait = Duration::from_secs(q.wait.unwrap_or(25)).min(MAX_WAIT);
        let mut rx = st.generation.subscribe();
        let _ = tokio::time::timeout(wait, rx.wait_for(|g| *g > after)).await;
    }
    Ok(Json(compute_plan(&st, &host)?))
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
    st.refresh_generation();
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
    st.refresh_generation();
    Ok(Json(json!({"vif": uuid, "device": p.device})))
}
