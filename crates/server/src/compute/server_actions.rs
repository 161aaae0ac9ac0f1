//! `servers/{id}/action`: the actions nova-network's API had on a server (fixed IPs,
//! floating IPs, security groups, and the lifecycle ones it only records).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::post;
use axum::Router;
use serde_json::{Map, Value};

use super::ok_empty;
use super::one_action;
use super::servers::find_server;
use crate::error::{ApiError, ApiResult, Body};
use crate::identity::Ctx;
use crate::{unix_now, AppState};

pub(super) fn routes() -> Router<Arc<AppState>> {
    Router::new().route("/servers/{id}/action", post(server_action))
}

fn str_arg<'a>(v: &'a Value, key: &str, action: &str) -> ApiResult<&'a str> {
    v.get(key)
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::bad_request(format!("{action} needs \"{key}\"")))
}

async fn server_action(
    State(st): State<Arc<AppState>>,
    ctx: Ctx,
    Path(id): Path<String>,
    Body(b): Body<Map<String, Value>>,
) -> ApiResult<Response> {
    let i = find_server(&st, &ctx, &id)?;
    let (action, arg) = one_action(&b)?;
    let scope = ctx.scope();
    match action.as_str() {
        "addFloatingIp" => {
            let address = str_arg(arg, "address", action)?;
            let fixed = arg.get("fixed_address").and_then(Value::as_str);
            let f = st
                .store
                .floating_ip(address)
                .map_err(|_| ApiError::not_found(format!("floating IP {address} not found")))?;
            if f.auto_assigned {
                return Err(ApiError::forbidden(
                    "Cannot associate auto assigned floating IP",
                ));
            }
            // Admins (scope None) may use any project's address, or an unallocated one.
            st.store
                .associate_floating_ip(address, &i.uuid, fixed, scope)?;
        }
        "removeFloatingIp" => {
            let address = str_arg(arg, "address", action)?;
            let f = st
                .store
                .floating_ip(address)
                .map_err(|_| ApiError::not_found(format!("floating IP {address} not found")))?;
            if f.auto_assigned {
                return Err(ApiError::forbidden(
                    "Cannot disassociate auto assigned floating IP",
                ));
            }
            st.store
                .disassociate_floating_ip(address, Some(&i.uuid), scope)?;
        }
        "addFixedIp" => {
            let net = arg
                .get("networkId")
                .map(|v| {
                    v.as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| v.to_string())
                })
                .ok_or_else(|| ApiError::bad_request("addFixedIp needs \"networkId\""))?;
            st.store.add_fixed_ip(&i.uuid, &net, &st.cfg)?;
        }
        // A record has no guest to reboot or re-network; nova-network's own actions too.
        "reboot" | "resetNetwork" | "injectNetworkInfo" => {}
        "removeFixedIp" => {
            let address = str_arg(arg, "address", action)?;
            st.store.remove_fixed_ip(&i.uuid, address, unix_now())?;
        }
        "addSecurityGroup" | "removeSecurityGroup" => {
            let name = str_arg(arg, "name", action)?;
            st.store.ensure_default_group(&i.spec.project_id)?;
            let g = st
                .store
                .security_groups(Some(&i.spec.project_id))?
                .into_iter()
                .find(|g| g.name == name)
                .ok_or_else(|| {
                    ApiError::not_found(format!(
                        "Security group {name} not found for project {}.",
                        i.spec.project_id
                    ))
                })?;
            if action == "addSecurityGroup" {
                st.store.add_instance_security_group(&i.uuid, g.id)?;
            } else {
                st.store.remove_instance_security_group(&i.uuid, g.id)?;
            }
        }
        other => {
            return Err(ApiError::bad_request(format!(
                "unsupported server action {other:?}"
            )))
        }
    }
    tracing::info!(server = %i.uuid, action = %action, "server action done");
    Ok(ok_empty(StatusCode::ACCEPTED))
}
