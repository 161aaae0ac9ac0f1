//! `GET /novanet/v1/explain?src=&dst=&proto=&port=` (admin): why A can or cannot reach B,
//! answered offline from the store through the hosts' plans (`novanet_core::explain`).

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::routing::get;
use axum::{Json, Router};
use novanet_core::explain::{explain, Cloud, Explanation, InstanceInfo, Traffic};
use novanet_core::plan::HostPlan;
use novanet_core::Error;
use serde::Deserialize;
use serde_json::Value;

use crate::error::ApiResult;
use crate::hostapi::compute_plan;
use crate::identity::Ctx;
use crate::AppState;

pub fn routes() -> Router<Arc<AppState>> {
    Router::new().route("/novanet/v1/explain", get(explain_path))
}

#[derive(Deserialize)]
struct ExplainQuery {
    src: Option<String>,
    dst: Option<String>,
    proto: Option<String>,
    port: Option<String>,
}

fn required(field: &str, v: Option<String>) -> Result<String, Error> {
    v.filter(|s| !s.trim().is_empty()).ok_or_else(|| {
        Error::invalid(
            field,
            "give an instance (name or UUID), a fixed or floating address, or `outside`",
        )
    })
}

async fn explain_path(
    State(st): State<Arc<AppState>>,
    ctx: Ctx,
    Query(q): Query<ExplainQuery>,
) -> ApiResult<Json<Value>> {
    ctx.require_admin("explaining a path")?;
    let src = required("src", q.src)?;
    let dst = required("dst", q.dst)?;
    let e = explain_in_store(&st, &src, &dst, q.proto.as_deref(), q.port.as_deref())?;
    Ok(Json(
        serde_json::to_value(e).expect("an explanation serialises"),
    ))
}

/// The walk over the plans computed from the store as it is now.
fn explain_in_store(
    st: &AppState,
    src: &str,
    dst: &str,
    proto: Option<&str>,
    port: Option<&str>,
) -> ApiResult<Explanation> {
    let traffic = Traffic::parse(proto, port)?;
    let (plans, instances) = cloud_from_store(st)?;
    let cloud = Cloud {
        plans: &plans,
        instances: &instances,
    };
    Ok(explain(&cloud, src, dst, traffic)?)
}

/// What the walk reads, from the store as it is now: the plan of every host a path can
/// cross and every instance (also what `novanet manage explain` reads, without a server).
pub fn cloud_from_store(st: &AppState) -> ApiResult<(Vec<HostPlan>, Vec<InstanceInfo>)> {
    let (instances, hosts) = cloud_inputs(st)?;
    let plans = hosts
        .iter()
        .map(|h| compute_plan(st, h))
        .collect::<ApiResult<Vec<_>>>()?;
    Ok((plans, instances))
}

/// Every instance with its fixed addresses, and every host a path can cross: the
/// instances' hosts, the network hosts and the hosts holding floating IPs.
fn cloud_inputs(st: &AppState) -> ApiResult<(Vec<InstanceInfo>, BTreeSet<String>)> {
    let networks = st.store.networks()?;
    let ids: Vec<i64> = networks.iter().map(|n| n.id).collect();
    let mut addresses: BTreeMap<String, Vec<Ipv4Addr>> = BTreeMap::new();
    for b in st
        .store
        .bound_addresses(&ids)?
        .into_iter()
        .filter(|b| b.allocated)
    {
        if let Ok(a) = b.address.parse() {
            addresses.entry(b.instance_uuid).or_default().push(a);
        }
    }
    let mut hosts: BTreeSet<String> = networks.iter().filter_map(|n| n.host.clone()).collect();
    hosts.extend(
        st.store
            .floating_ips(None)?
            .into_iter()
            .filter_map(|f| f.host),
    );
    let instances: Vec<InstanceInfo> = st
        .store
        .instances(None)?
        .into_iter()
        .map(|i| InstanceInfo {
            addresses: addresses.remove(&i.uuid).unwrap_or_default(),
            name: i.spec.name,
            uuid: i.uuid,
            host: i.spec.host,
        })
        .collect();
    hosts.extend(instances.iter().filter_map(|i| i.host.clone()));
    Ok((instances, hosts))
}
