//! What a compute host's hypervisor driver asks for: the instances placed on that host, each
//! with its flavor's size, its image and its VIFs (MAC and bridge).
//! A host API call of its own rather than part of the host plan: the plan is network
//! state patched by deltas, and nothing here changes how the network is built.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use novanet_core::model::PowerReport;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::compute::{FLAVORS, IMAGES};
use crate::error::{ApiResult, Body};
use crate::identity::Ctx;
use crate::AppState;

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/novanet/v1/hosts/{host}/instances", get(host_instances))
        .route(
            "/novanet/v1/hosts/{host}/instances/state",
            post(report_states),
        )
        .route("/novanet/v1/hosts/{host}/metadata", get(host_metadata))
}

#[derive(Deserialize)]
struct StateReport {
    instances: Vec<PowerReport>,
}

/// The most of a console kept per VM: nova's `console-log` readers want the last lines.
const CONSOLE_KEEP: usize = 64 * 1024;

/// `POST /novanet/v1/hosts/{host}/instances/state` (admin): a driver's report on its VMs.
async fn report_states(
    State(st): State<Arc<AppState>>,
    ctx: Ctx,
    Path(host): Path<String>,
    Body(mut r): Body<StateReport>,
) -> ApiResult<Json<Value>> {
    ctx.require_admin("hypervisor reports")?;
    for i in &mut r.instances {
        if let Some(fault) = &mut i.fault {
            *fault = clip_front(fault, 1024);
        }
        if let Some(c) = &mut i.console {
            *c = clip_front(c, CONSOLE_KEEP);
        }
    }
    let changed = st.store.report_power(&host, &r.instances)?;
    Ok(Json(json!({ "host": host, "changed": changed })))
}

/// The last `max` bytes of `s`, cut at a character boundary.
fn clip_front(s: &str, max: usize) -> String {
    let mut from = s.len().saturating_sub(max);
    while !s.is_char_boundary(from) {
        from += 1;
    }
    s[from..].to_string()
}

/// The metadata of every instance placed on a host, as the metadata service would answer
/// it: a multi-host compute host's agent keeps this copy and answers its own instances from
/// it (`metadata_host = 127.0.0.1`), also while no server answers. In dual stack the host
/// also answers at `fe80::a9fe:a9fe` on the bridges it is the gateway of, so the copy also
/// holds the instances on the (single-host) networks it is the network host of.
async fn host_metadata(
    State(st): State<Arc<AppState>>,
    ctx: Ctx,
    Path(host): Path<String>,
) -> ApiResult<Json<Value>> {
    ctx.require_admin("a host's instances' metadata")?;
    let served: Vec<String> = if st.cfg.use_ipv6 {
        st.store
            .networks()?
            .into_iter()
            .filter(|n| !n.multi_host && n.host.as_deref() == Some(host.as_str()))
            .filter(|n| n.cidr_v6.is_some())
            .map(|n| n.uuid)
            .collect()
    } else {
        Vec::new()
    };
    let mut metas = Vec::new();
    for i in st.store.instances(None)? {
        let on_host = i.spec.host.as_deref() == Some(host.as_str());
        let on_served = !on_host
            && !served.is_empty()
            && st
                .store
                .instance_addresses(&i.uuid)?
                .iter()
                .any(|a| served.contains(&a.network_uuid));
        if on_host || on_served {
            metas.extend(crate::metadata::build_meta(&st, i));
        }
    }
    Ok(Json(json!({ "instances": metas })))
}

/// An image as a driver boots it: uploaded (`data` true: fetch `/image/v2/images/{id}/file`)
/// or built in (a name only: nothing to boot from).
fn image_view(st: &AppState, key: &str) -> Value {
    if let Some(r) = st
        .images
        .records()
        .into_iter()
        .find(|r| r.id == key || r.name == key)
    {
        let prop = |k: &str| r.properties.get(k).cloned();
        return json!({
            "id": r.id, "name": r.name, "disk_format": r.disk_format,
            "size": r.size, "checksum": r.checksum, "data": r.status == "active",
            "kernel_id": prop("kernel_id"), "ramdisk_id": prop("ramdisk_id"),
            "os_command_line": prop("os_command_line"),
        });
    }
    let builtin = IMAGES.iter().find(|i| i.0 == key || i.1 == key);
    json!({"id": builtin.map(|i| i.0), "name": builtin.map_or(key, |i| i.1), "data": false})
}

async fn host_instances(
    State(st): State<Arc<AppState>>,
    ctx: Ctx,
    Path(host): Path<String>,
) -> ApiResult<Json<Value>> {
    ctx.require_admin("a host's instances")?;
    let bridges: BTreeMap<String, Option<String>> = st
        .store
        .networks()?
        .into_iter()
        .map(|n| (n.uuid, n.bridge))
        .collect();
    let mut out = Vec::new();
    for i in st.store.instances(None)? {
        if i.spec.host.as_deref() != Some(host.as_str()) {
            continue;
        }
        let flavor = FLAVORS
            .iter()
            .find(|f| Some(f.0) == i.spec.flavor_id.as_deref())
            .unwrap_or(&FLAVORS[0]);
        let mut vifs: Vec<Value> = Vec::new();
        for a in st.store.instance_addresses(&i.uuid)? {
            if vifs.iter().any(|v| v["uuid"] == a.vif_uuid.as_str()) {
                continue;
            }
            vifs.push(json!({
                "uuid": a.vif_uuid, "mac": a.mac, "network_uuid": a.network_uuid,
                "bridge": bridges.get(&a.network_uuid).cloned().flatten(),
            }));
        }
        out.push(json!({
            "uuid": i.uuid, "name": i.spec.name, "hostname": i.hostname,
            "flavor": {"id": flavor.0, "name": flavor.1, "memory_mb": flavor.2, "disk_gb": flavor.3, "vcpus": flavor.4},
            "image": i.spec.image_id.as_deref().map(|k| image_view(&st, k)),
            "vifs": vifs,
            "power": {"action_id": i.power.action_id, "action": i.power.action},
        }));
    }
    Ok(Json(json!({ "host": host, "instances": out })))
}
