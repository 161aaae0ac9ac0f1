//! `os-tenant-networks`: the networks a project sees, and the ones it makes for itself
//! within quota_networks.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use axum::{Json, Router};
use novanet_core::model::Network;
use novanet_core::net::Ipv4Cidr;
use novanet_core::planning::NetworkRequest;
use novanet_core::Error;
use novanet_store::NetworkUpdate;
use serde_json::{json, Map, Value};

use super::networks::claim_for_network_host;
use super::networks::find_visible_network;
use super::ok_empty;
use crate::error::{ApiError, ApiResult, Body};
use crate::identity::Ctx;
use crate::AppState;

pub(super) fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route(
            "/os-tenant-networks",
            get(list_tenant_networks).post(create_tenant_network),
        )
        .route(
            "/os-tenant-networks/{id}",
            get(show_tenant_network).delete(delete_tenant_network),
        )
}

fn tenant_view(n: &Network) -> Value {
    json!({"id": n.uuid, "cidr": n.cidr, "label": n.label})
}

async fn list_tenant_networks(State(st): State<Arc<AppState>>, ctx: Ctx) -> ApiResult<Json<Value>> {
    let nets: Vec<Value> = st
        .store
        .networks()?
        .iter()
        .filter(|n| n.project_id.is_none() || n.project_id.as_deref() == Some(ctx.project_id()))
        .map(tenant_view)
        .collect();
    Ok(Json(json!({ "networks": nets })))
}

async fn show_tenant_network(
    State(st): State<Arc<AppState>>,
    ctx: Ctx,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let n = find_visible_network(&st, &ctx, &id)?;
    Ok(Json(json!({ "network": tenant_view(&n) })))
}

/// What a project may send to `os-tenant-networks`: a label and a CIDR (nova's `ipam` flag
/// is accepted and means nothing here). Everything that reaches a host (bridge, interface,
/// MTU, DHCP server, gateway...) comes from the configuration, as nova's did.
const TENANT_NETWORK_FIELDS: &[&str] = &["label", "cidr", "ipam"];

async fn create_tenant_network(
    State(st): State<Arc<AppState>>,
    ctx: Ctx,
    Body(b): Body<Map<String, Value>>,
) -> ApiResult<Json<Value>> {
    let net = b
        .get("network")
        .and_then(Value::as_object)
        .ok_or_else(|| Error::invalid("network", "the body needs a \"network\" object"))?;
    if let Some(k) = net
        .keys()
        .find(|k| !TENANT_NETWORK_FIELDS.contains(&k.as_str()))
    {
        return Err(Error::invalid(
            k.as_str(),
            "may not be set on a project network: give only label and cidr; the rest comes from the configuration",
        )
        .into());
    }
    let text = |field: &str| -> ApiResult<String> {
        net.get(field)
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| Error::invalid(field, "is required and must be a string").into())
    };
    let label = text("label")?;
    let cidr_text = text("cidr")?;
    let cidr: Ipv4Cidr = cidr_text
        .parse()
        .map_err(|e: String| Error::invalid("cidr", e))?;
    if let Some(why) = novanet_core::valid::special_purpose_v4(&cidr) {
        return Err(Error::invalid("cidr", format!("{cidr} overlaps {why}")).into());
    }
    if cidr.size() < 4 {
        return Err(ApiError::bad_request(
            "Requested network does not contain enough (2+) usable hosts",
        ));
    }
    if !ctx.is_admin() && cidr.size() > st.cfg.max_tenant_network_size {
        return Err(Error::invalid(
            "cidr",
            format!(
                "{cidr} has {} addresses; a project network may have at most {} (max_tenant_network_size)",
                cidr.size(),
                st.cfg.max_tenant_network_size
            ),
        )
        .into());
    }
    tenant_range_free(&st, &cidr)?;
    let quota = super::quotas::limit(&st, ctx.project_id(), "networks")?;
    let own = super::quotas::project_networks(&st, ctx.project_id())?;
    if quota >= 0 && own >= quota {
        return Err(Error::OverLimit(format!(
            "quota exceeded for networks: the project has {own} of {quota} (quota_networks)"
        ))
        .into());
    }
    let req = NetworkRequest {
        label,
        cidr: Some(cidr.to_string()),
        num_networks: Some(1),
        network_size: Some(cidr.size()),
        project_id: Some(ctx.project_id().to_string()),
        bridge: st.cfg.flat_network_bridge.clone(),
        ..NetworkRequest::default()
    };
    let (nets, _) = st.store.create_networks(&req, &st.cfg)?;
    for n in &nets {
        tracing::info!(network = %n.uuid, label = %n.label, cidr = ?n.cidr, project = %ctx.project_id(), "tenant network created");
    }
    claim_for_network_host(&st)?;
    Ok(Json(json!({ "network": tenant_view(&nets[0]) })))
}

/// A project's range may not overlap what the hosts themselves use (their configured
/// addresses and the DMZ) or a floating IP pool; overlaps with other networks are the
/// planner's conflict.
fn tenant_range_free(st: &AppState, cidr: &Ipv4Cidr) -> ApiResult<()> {
    let cfg = &st.cfg;
    for (what, ip) in [
        ("my_ip", Some(cfg.my_ip.as_str())),
        ("routing_source_ip", cfg.routing_source_ip.as_deref()),
        ("metadata_host", cfg.metadata_host.as_deref()),
        ("vpn_ip", cfg.vpn_ip.as_deref()),
    ] {
        if let Some(a) = ip.and_then(|a| a.parse::<std::net::Ipv4Addr>().ok()) {
            if cidr.contains(a) {
                return Err(Error::invalid(
                    "cidr",
                    format!("{cidr} holds the hosts' own address {a} ({what})"),
                )
                .into());
            }
        }
    }
    for d in cfg
        .dmz_cidr
        .iter()
        .filter_map(|d| d.parse::<Ipv4Cidr>().ok())
    {
        if d.overlaps(cidr) {
            return Err(Error::invalid("cidr", format!("{cidr} overlaps dmz_cidr {d}")).into());
        }
    }
    for s in st.store.services()? {
        for n in s.networks.iter().filter_map(|n| n.parse::<Ipv4Cidr>().ok()) {
            if n.overlaps(cidr) {
                return Err(Error::invalid(
                    "cidr",
                    format!("{cidr} overlaps {n}, a network of host {}", s.host),
                )
                .into());
            }
        }
    }
    if let Some(f) = st
        .store
        .floating_ips(None)?
        .iter()
        .find(|f| f.address.parse().is_ok_and(|a| cidr.contains(a)))
    {
        return Err(Error::invalid(
            "cidr",
            format!(
                "{cidr} overlaps the floating IP pool {} ({})",
                f.pool, f.address
            ),
        )
        .into());
    }
    Ok(())
}

async fn delete_tenant_network(
    State(st): State<Arc<AppState>>,
    ctx: Ctx,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let n = find_visible_network(&st, &ctx, &id)?;
    if !ctx.is_admin() && n.project_id.as_deref() != Some(ctx.project_id()) {
        return Err(ApiError::forbidden(
            "only the project's own networks can be deleted",
        ));
    }
    st.store.update_network(
        &n.uuid,
        &NetworkUpdate {
            project_id: Some(None),
            host: Some(None),
            ..Default::default()
        },
    )?;
    st.store.delete_network(&n.uuid, false)?;
    tracing::info!(network = %n.uuid, label = %n.label, "tenant network deleted");
    Ok(ok_empty(StatusCode::ACCEPTED))
}
