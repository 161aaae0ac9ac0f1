//! `servers/{id}/action`: the actions nova-network's API had on a server (fixed IPs,
//! floating IPs, security groups, and the lifecycle ones it only records).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use novanet_core::model::{Instance, PowerAction};
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

/// The lifecycle action `action` asks for, if the server's state allows it (nova's
/// `check_instance_state`): stop a running or failed server, start a stopped one, reboot
/// (SOFT only a running one, HARD any), never while an earlier action is under way.
fn lifecycle(i: &Instance, action: &str, arg: &Value) -> ApiResult<PowerAction> {
    let state = i.power.state();
    let conflict = |what: &str| {
        ApiError::new(
            crate::error::ErrorKind::Conflict,
            format!(
                "Cannot '{action}' instance {} while it is in {what}",
                i.uuid
            ),
        )
    };
    if let Some(task) = state.task_state {
        return Err(conflict(&format!("task_state {task}")));
    }
    let allowed: &[&str] = match action {
        "os-stop" => &["active", "error"],
        "os-start" => &["stopped"],
        _ => match arg.get("type").and_then(Value::as_str) {
            Some(t) if t.eq_ignore_ascii_case("SOFT") => &["active"],
            Some(t) if t.eq_ignore_ascii_case("HARD") => &["active", "stopped", "error"],
            _ => {
                return Err(ApiError::bad_request(
                    "reboot needs \"type\": \"SOFT\" or \"HARD\"",
                ))
            }
        },
    };
    if !allowed.contains(&state.vm_state) {
        return Err(conflict(&format!("vm_state {}", state.vm_state)));
    }
    Ok(match action {
        "os-stop" => PowerAction::Stop,
        "os-start" => PowerAction::Start,
        _ => PowerAction::Reboot,
    })
}

/// `os-getConsoleOutput`: the last `length` lines (all when absent or -1) of the serial
/// console its host's driver last reported.
fn console_output(st: &AppState, i: &Instance, arg: &Value) -> ApiResult<Response> {
    let length = match arg.get("length") {
        None | Some(Value::Null) => None,
        Some(v) => {
            let n = v
                .as_i64()
                .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
                .ok_or_else(|| ApiError::bad_request("length: not an integer"))?;
            match n {
                -1 => None,
                n if n < 0 => return Err(ApiError::bad_request("length: -1 or more")),
                n => Some(n as usize),
            }
        }
    };
    let text = st.store.console_output(&i.uuid)?.unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let from = length.map_or(0, |n| lines.len().saturating_sub(n));
    let mut output = lines[from..].join("\n");
    if !output.is_empty() {
        output.push('\n');
    }
    Ok(axum::Json(serde_json::json!({ "output": output })).into_response())
}

fn str_arg<'a>(v: &'a Value, key: &str, action: &str) -> ApiResult<&'a str> {
    v.get(key)
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::bad_request(format!("{action} needs \"{key}\"")))
}

/// A locked server's lifecycle and addresses are an admin's to change (nova's
/// `check_instance_lock`).
pub(super) fn check_lock(i: &Instance, ctx: &Ctx) -> ApiResult<()> {
    if i.locked_by.is_some() && !ctx.is_admin() {
        return Err(ApiError::new(
            crate::error::ErrorKind::Conflict,
            format!("Instance {} is locked", i.uuid),
        ));
    }
    Ok(())
}

fn lock(st: &AppState, i: &Instance, by: Option<String>) -> ApiResult<()> {
    let u = novanet_core::model::InstanceUpdate {
        locked_by: Some(by),
        ..Default::default()
    };
    st.store.update_instance(&i.uuid, &u, unix_now())?;
    Ok(())
}

async fn server_action(
    State(st): State<Arc<AppState>>,
    ctx: Ctx,
    request: axum::Extension<crate::version::RequestId>,
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
            check_lock(&i, &ctx)?;
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
        // nova-network's own: the network is re-planned from the store anyway.
        "resetNetwork" | "injectNetworkInfo" => {}
        "lock" => {
            let by = if ctx.is_admin() { "admin" } else { "owner" };
            lock(&st, &i, Some(by.to_string()))?;
        }
        "unlock" => {
            // An owner may not lift an admin's lock (nova's unlock_override is admin only).
            if i.locked_by.as_deref() == Some("admin") && !ctx.is_admin() {
                return Err(ApiError::forbidden(
                    "Policy doesn't allow os_compute_api:os-lock-server:unlock:unlock_override to be performed.",
                ));
            }
            lock(&st, &i, None)?;
        }
        "os-stop" | "os-start" | "reboot" => {
            check_lock(&i, &ctx)?;
            let power = lifecycle(&i, action, arg)?;
            st.store.request_power_action(&i.uuid, power, unix_now())?;
        }
        "os-getConsoleOutput" => return console_output(&st, &i, arg),
        "removeFixedIp" => {
            check_lock(&i, &ctx)?;
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
    // Nova's names for the actions it keeps (os-instance-actions).
    let kept = match action.as_str() {
        "os-stop" => Some("stop"),
        "os-start" => Some("start"),
        "reboot" | "lock" | "unlock" => Some(action.as_str()),
        _ => None,
    };
    if let Some(kept) = kept {
        super::instance_actions::record(&st, &ctx, &request, &i.uuid, kept);
    }
    tracing::info!(server = %i.uuid, action = %action, "server action done");
    Ok(ok_empty(StatusCode::ACCEPTED))
}
