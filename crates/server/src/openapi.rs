//! `/openapi.json`: what this server serves, generated from one table of routes.

use axum::Json;
use serde_json::{json, Map, Value};

/// (method, path, summary). Compute paths also answer under `/v2.1/{project_id}` and
/// `/compute/v2.1`.
pub const ROUTES: &[(&str, &str, &str)] = &[
    ("get", "/identity/v3", "Identity version document"),
    ("get", "/healthz", "Whether this server reaches its store: 200, or 503 (no token)"),
    ("get", "/novanet/v1/metrics", "Metrics in Prometheus's text format (admin)"),
    ("get", "/novanet/v1/explain", "Why SRC can or cannot reach DST (?src=&dst=&proto=&port=), walked through the host plans (admin)"),
    ("get", "/metrics", "Metrics in Prometheus's text format, where Prometheus looks by default (admin)"),
    ("post", "/identity/v3/auth/tokens", "Issue a project-scoped token (password method)"),
    ("get", "/identity/v3/auth/tokens", "Validate the token in X-Subject-Token"),
    ("head", "/identity/v3/auth/tokens", "Check the token in X-Subject-Token"),
    ("delete", "/identity/v3/auth/tokens", "Revoke the token in X-Subject-Token"),
    ("get", "/identity/v3/domains", "Domains (?name=): the Default domain"),
    ("get", "/identity/v3/domains/{id}", "Show a domain"),
    ("get", "/identity/v3/roles", "Roles (?name=): admin, member, reader"),
    ("post", "/identity/v3/roles", "Create a role (admin; only the default roles exist)"),
    ("get", "/identity/v3/roles/{id}", "Show a role"),
    ("get", "/identity/v3/projects", "List projects (admin; ?name=)"),
    ("post", "/identity/v3/projects", "Create a project (admin)"),
    ("get", "/identity/v3/projects/{id}", "Show a project (its members, or admin)"),
    ("patch", "/identity/v3/projects/{id}", "Rename a project (admin)"),
    ("delete", "/identity/v3/projects/{id}", "Delete a project (admin)"),
    ("get", "/identity/v3/users", "List users (admin; ?name=)"),
    ("post", "/identity/v3/users", "Create a user with a password (admin)"),
    ("get", "/identity/v3/users/{id}", "Show a user (itself, or admin)"),
    ("patch", "/identity/v3/users/{id}", "Rename a user or change its password (admin)"),
    ("delete", "/identity/v3/users/{id}", "Delete a user (admin)"),
    ("get", "/identity/v3/users/{id}/projects", "The projects a user has roles on (itself, or admin)"),
    ("get", "/identity/v3/projects/{project}/users/{user}/roles", "A user's roles on a project (admin)"),
    ("put", "/identity/v3/projects/{project}/users/{user}/roles/{role}", "Grant a role (admin)"),
    ("head", "/identity/v3/projects/{project}/users/{user}/roles/{role}", "Check a role grant (admin)"),
    ("delete", "/identity/v3/projects/{project}/users/{user}/roles/{role}", "Revoke a role (admin)"),
    ("get", "/identity/v3/role_assignments", "Role assignments (?user.id=, ?scope.project.id=, ?role.id=; admin unless one's own)"),
    ("get", "/v2.1", "Compute version document (microversions 2.1 to 2.35)"),
    ("get", "/v2.1/os-networks", "List networks"),
    ("post", "/v2.1/os-networks", "Create a network (admin)"),
    ("post", "/v2.1/os-networks/add", "Associate a network with the caller's project (admin)"),
    ("get", "/v2.1/os-networks/{id}", "Show a network"),
    ("delete", "/v2.1/os-networks/{id}", "Delete a network (admin)"),
    ("post", "/v2.1/os-networks/{id}/action", "disassociate, disassociate_host, disassociate_project, associate_host (admin)"),
    ("get", "/v2.1/os-tenant-networks", "List the project's networks"),
    ("post", "/v2.1/os-tenant-networks", "Create a project network"),
    ("get", "/v2.1/os-tenant-networks/{id}", "Show a project network"),
    ("delete", "/v2.1/os-tenant-networks/{id}", "Delete a project network"),
    ("get", "/v2.1/os-fixed-ips/{address}", "Show a fixed IP (admin)"),
    ("post", "/v2.1/os-fixed-ips/{address}/action", "reserve / unreserve a fixed IP (admin)"),
    ("get", "/v2.1/os-floating-ip-pools", "List floating IP pools"),
    ("get", "/v2.1/os-floating-ips", "List the project's floating IPs"),
    ("post", "/v2.1/os-floating-ips", "Allocate a floating IP"),
    ("get", "/v2.1/os-floating-ips/{id}", "Show a floating IP"),
    ("delete", "/v2.1/os-floating-ips/{id}", "Disassociate and release a floating IP"),
    ("get", "/v2.1/os-floating-ips-bulk", "List all floating IPs (admin)"),
    ("post", "/v2.1/os-floating-ips-bulk", "Create floating IPs from a range (admin)"),
    ("get", "/v2.1/os-floating-ips-bulk/{host}", "List a host's floating IPs (admin)"),
    ("put", "/v2.1/os-floating-ips-bulk/delete", "Delete floating IPs of a range (admin)"),
    ("get", "/v2.1/os-security-groups", "List security groups"),
    ("post", "/v2.1/os-security-groups", "Create a security group"),
    ("get", "/v2.1/os-security-groups/{id}", "Show a security group"),
    ("put", "/v2.1/os-security-groups/{id}", "Rename a security group or change its description"),
    ("delete", "/v2.1/os-security-groups/{id}", "Delete a security group"),
    ("post", "/v2.1/os-security-group-rules", "Add a rule"),
    ("delete", "/v2.1/os-security-group-rules/{id}", "Delete a rule"),
    ("get", "/v2.1/os-security-group-default-rules", "List default rules (admin)"),
    ("post", "/v2.1/os-security-group-default-rules", "Add a default rule (admin)"),
    ("get", "/v2.1/os-security-group-default-rules/{id}", "Show a default rule (admin)"),
    ("delete", "/v2.1/os-security-group-default-rules/{id}", "Delete a default rule (admin)"),
    ("get", "/v2.1/os-provider-firewall-rules", "List provider firewall rules (admin)"),
    ("post", "/v2.1/os-provider-firewall-rules", "Add a provider rule: what it matches is dropped for every instance (admin)"),
    ("get", "/v2.1/os-provider-firewall-rules/{id}", "Show a provider firewall rule (admin)"),
    ("delete", "/v2.1/os-provider-firewall-rules/{id}", "Delete a provider firewall rule (admin)"),
    ("get", "/v2.1/os-keypairs", "List key pairs"),
    ("post", "/v2.1/os-keypairs", "Import a key pair"),
    ("get", "/v2.1/os-keypairs/{name}", "Show a key pair"),
    ("delete", "/v2.1/os-keypairs/{name}", "Delete a key pair"),
    ("get", "/v2.1/os-services", "Hosts whose agents reported in (admin)"),
    ("get", "/v2.1/flavors", "List flavors"),
    ("get", "/v2.1/flavors/detail", "List flavors with details"),
    ("get", "/v2.1/flavors/{id}", "Show a flavor"),
    ("get", "/v2.1/servers", "List servers"),
    ("post", "/v2.1/servers", "Create a server (allocates its networking)"),
    ("get", "/v2.1/servers/detail", "List servers with details"),
    ("get", "/v2.1/servers/{id}", "Show a server"),
    ("put", "/v2.1/servers/{id}", "Rename a server, set its access addresses (and description from 2.19)"),
    ("delete", "/v2.1/servers/{id}", "Delete a server (releases its networking)"),
    ("get", "/v2.1/servers/{id}/metadata", "A server's metadata"),
    ("put", "/v2.1/servers/{id}/metadata", "Replace a server's metadata"),
    ("post", "/v2.1/servers/{id}/metadata", "Add to or change a server's metadata"),
    ("get", "/v2.1/servers/{id}/metadata/{key}", "One metadata item"),
    ("put", "/v2.1/servers/{id}/metadata/{key}", "Set one metadata item"),
    ("delete", "/v2.1/servers/{id}/metadata/{key}", "Delete one metadata item"),
    ("get", "/v2.1/servers/{id}/tags", "A server's tags (2.26)"),
    ("put", "/v2.1/servers/{id}/tags", "Replace a server's tags (2.26)"),
    ("delete", "/v2.1/servers/{id}/tags", "Delete a server's tags (2.26)"),
    ("get", "/v2.1/servers/{id}/tags/{tag}", "Whether a server has a tag (2.26)"),
    ("put", "/v2.1/servers/{id}/tags/{tag}", "Add a tag (2.26)"),
    ("delete", "/v2.1/servers/{id}/tags/{tag}", "Delete a tag (2.26)"),
    ("get", "/v2.1/servers/{id}/ips", "A server's addresses by network"),
    ("get", "/v2.1/servers/{id}/ips/{network}", "A server's addresses on one network"),
    ("get", "/v2.1/servers/{id}/os-instance-actions", "What was asked of a server, newest first"),
    ("get", "/v2.1/servers/{id}/os-instance-actions/{request_id}", "One request on a server"),
    ("get", "/v2.1/os-availability-zone", "Availability zones"),
    ("get", "/v2.1/os-availability-zone/detail", "Availability zones with their hosts (admin)"),
    ("get", "/v2.1/extensions", "The API extensions a nova-network cloud had"),
    ("get", "/v2.1/extensions/{alias}", "One extension"),
    ("get", "/v2.1/os-quota-class-sets/{id}", "The default quota class (admin)"),
    ("put", "/v2.1/os-quota-class-sets/{id}", "Change the default quotas (admin)"),
    ("post", "/v2.1/servers/{id}/action", "addFloatingIp, removeFloatingIp, addFixedIp, removeFixedIp, addSecurityGroup, removeSecurityGroup"),
    ("get", "/v2.1/servers/{id}/os-virtual-interfaces", "List a server's VIFs"),
    ("get", "/v2.1/servers/{id}/os-security-groups", "List a server's security groups"),
    ("get", "/v2.1/limits", "Quotas"),
    ("get", "/v2.1/os-quota-sets/{tenant_id}", "A project's quotas"),
    ("put", "/v2.1/os-quota-sets/{tenant_id}", "Set a project's quotas (admin)"),
    ("delete", "/v2.1/os-quota-sets/{tenant_id}", "Revert a project's quotas to the defaults (admin)"),
    ("get", "/v2.1/os-quota-sets/{tenant_id}/defaults", "The default quotas"),
    ("get", "/v2.1/os-quota-sets/{tenant_id}/detail", "A project's quotas with their use"),
    ("get", "/image/v2/images", "List images (?name= filters)"),
    ("post", "/image/v2/images", "Create an image record (queued until its data is uploaded)"),
    ("get", "/image/v2/images/{id}", "Show an image"),
    ("delete", "/image/v2/images/{id}", "Delete an image and its data (its project's members, or admin)"),
    ("put", "/image/v2/images/{id}/file", "Upload an image's data, once (application/octet-stream)"),
    ("get", "/image/v2/images/{id}/file", "Download an image's data (204 when it has none)"),
    ("post", "/novanet/v1/hosts/{host}/report", "Agent heartbeat, with the host's latest diagnosis (admin)"),
    ("get", "/novanet/v1/hosts/{host}/diagnosis", "A host's latest diagnosis, as its agent sent it (admin)"),
    ("get", "/novanet/v1/hosts/{host}/plan", "A host's desired state; ?after=GEN long-polls, with ?epoch= as deltas over the plan held (admin)"),
    ("post", "/novanet/v1/leases", "dnsmasq lease events: add, old, del (admin)"),
    ("get", "/novanet/v1/hosts/{host}/instances", "The instances placed on a host, with flavor, image and VIFs, for its hypervisor driver (admin)"),
    ("post", "/novanet/v1/hosts/{host}/instances/state", "A hypervisor driver's report on its VMs: power state, fault, console tail (admin)"),
    ("get", "/novanet/v1/hosts/{host}/metadata", "The metadata of the instances placed on a host, which its agent keeps and serves them (multi-host, metadata_host 127.0.0.1) (admin)"),
    ("post", "/novanet/v1/vifs/{uuid}/plug", "The hypervisor reports a VIF's host-side device (admin)"),
    ("get", "/novanet/v1/instances/{id}/config-drive", "An instance's config drive, an ISO 9660 image labelled config-2 (admin)"),
    ("get", "/v2.1/os-cloudpipe", "Each VLAN project's VPN: pending, running, down or invalid (admin)"),
    ("post", "/v2.1/os-cloudpipe", "Boot a project's VPN instance on its network's VPN address (admin)"),
    ("put", "/v2.1/os-cloudpipe/configure-project", "Set the caller's project's VPN public address and port (admin)"),
    ("post", "/novanet/v1/cloudpipe/{project}/clients", "A user's OpenVPN client configuration (.ovpn) for a project's VPN (admin)"),
    ("delete", "/novanet/v1/cloudpipe/{project}/clients/{user}", "Revoke a user's VPN client certificate (admin)"),
];

/// Request and response schemas, kept as data beside this file: `operations` maps
/// `"METHOD PATH"` (as in [`ROUTES`]) to an OpenAPI operation fragment (`requestBody`,
/// `responses`, extra `parameters`) merged over the generated one; `components` is copied.
const SCHEMAS: &str = include_str!("../openapi/schemas.json");

fn schemas() -> Value {
    serde_json::from_str(SCHEMAS).expect("openapi/schemas.json is valid JSON (tested)")
}

pub async fn document() -> Json<Value> {
    Json(build())
}

/// The whole OpenAPI document.
pub fn build() -> Value {
    let extra = schemas();
    let mut paths: Map<String, Value> = Map::new();
    for (method, path, summary) in ROUTES {
        let entry = paths.entry(path.to_string()).or_insert_with(|| json!({}));
        let params: Vec<Value> = path
            .split('/')
            .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(|p| json!({"name": p, "in": "path", "required": true, "schema": {"type": "string"}}))
            .collect();
        let mut op = json!({
            "summary": summary,
            "parameters": params,
            "responses": {"default": {"description": "JSON body; errors as {\"<fault>\": {\"code\", \"message\"}}"}},
        });
        let key = format!("{} {path}", method.to_uppercase());
        if let Some(Value::Object(more)) = extra["operations"].get(&key) {
            for (k, v) in more {
                match (k.as_str(), v) {
                    ("parameters", Value::Array(ps)) => {
                        if let Some(Value::Array(have)) = op.get_mut("parameters") {
                            have.extend(ps.iter().cloned());
                        }
                    }
                    _ => op[k] = v.clone(),
                }
            }
        }
        entry[*method] = op;
    }
    json!({
        "openapi": "3.0.3",
        "info": {"title": "novanet", "version": env!("CARGO_PKG_VERSION"),
                 "description": "nova-network's APIs: Keystone v3 identity, Nova compute v2.1 (2.1-2.35), host agent API"},
        "paths": paths,
        "components": extra["components"].clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schemas_name_only_known_routes() {
        let extra = schemas();
        let ops = extra["operations"]
            .as_object()
            .expect("operations is an object");
        for key in ops.keys() {
            let (method, path) = key.split_once(' ').expect("METHOD PATH");
            assert!(
                ROUTES
                    .iter()
                    .any(|(m, p, _)| m.eq_ignore_ascii_case(method) && *p == path),
                "openapi/schemas.json names {key}, which is not a route"
            );
        }
    }
}
