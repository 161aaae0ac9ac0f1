//! `os-cloudpipe` (admin): each VLAN project's way in from outside, an OpenVPN server in
//! the project's own VPN instance on its network's reserved `vpn_private_address`, reached
//! at the network's `vpn_public_address:vpn_public_port` (the network host DNATs it, see
//! `core::plan`). nova's `nova/cloudpipe` and `api/openstack/compute/cloudpipe.py`, with
//! the VPN instance configured only from its user data (a boot script carrying its
//! certificates and OpenVPN's configuration), and novanet's own routes for a user's client
//! configuration (`.ovpn`) and its revocation.

use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post, put};
use axum::{Json, Router};
use novanet_core::firewall::VPN_PRIVATE_PORT;
use novanet_core::model::{InstanceSpec, Network, RequestedNetwork};
use novanet_core::net::Ipv4Cidr;
use novanet_core::secgroup::NewRule;
use novanet_core::Error;
use novanet_store::NetworkUpdate;
use serde::Deserialize;
use serde_json::{json, Value};

use super::ok_empty;
use super::servers::schedule;
use crate::ca::{CaError, CertName, Credentials};
use crate::error::{ApiError, ApiResult, Body};
use crate::identity::Ctx;
use crate::{iso8601, AppState};

/// The addresses OpenVPN gives its clients inside the tunnel; the VPN instance masquerades
/// them onto the project's network, so the project's VMs see the VPN instance.
pub const CLIENT_POOL: &str = "172.31.255.0";
pub const CLIENT_POOL_MASK: &str = "255.255.255.0";

/// Where the VPN instance fetches the current CRL (the metadata service answers it to
/// instances), and how often.
pub const CRL_PATH: &str = "/cloudpipe/crl.pem";
pub const CRL_REFRESH_SECONDS: u32 = 10;

const POLICY: &str = "os_compute_api:os-cloudpipe";

pub(super) fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/os-cloudpipe", get(list).post(create))
        .route("/os-cloudpipe/{id}", put(configure))
}

pub(super) fn admin_routes() -> Router<Arc<AppState>> {
    Router::new()
        .route(
            "/novanet/v1/cloudpipe/{project}/clients",
            post(client_config),
        )
        .route(
            "/novanet/v1/cloudpipe/{project}/clients/{user}",
            axum::routing::delete(revoke_client),
        )
}

impl From<CaError> for ApiError {
    fn from(e: CaError) -> Self {
        match e {
            CaError::BadName { .. } => ApiError::bad_request(e.to_string()),
            other => ApiError::internal(other),
        }
    }
}

/// The project's VLAN network that carries its VPN (the first one it has).
fn project_network(st: &AppState, project: &str) -> ApiResult<Option<Network>> {
    Ok(st
        .store
        .networks()?
        .into_iter()
        .find(|n| n.project_id.as_deref() == Some(project) && n.vpn_private_address.is_some()))
}

/// The public address and port, when both are set and valid.
fn public_endpoint(n: &Network) -> Option<(Ipv4Addr, u16)> {
    let ip = n.vpn_public_address.as_deref()?.parse().ok()?;
    let port = u16::try_from(n.vpn_public_port?).ok().filter(|p| *p > 0)?;
    Some((ip, port))
}

/// One project's entry, as nova's `_vpn_dict`: `pending` without a VPN instance, `invalid`
/// without a public address and port, else `running` or `down` from an OpenVPN probe.
fn view(st: &AppState, n: &Network) -> ApiResult<Value> {
    let private = n.vpn_private_address.clone().unwrap_or_default();
    let inst = st.store.instance_by_fixed_ip(&private)?;
    let state = vpn_state(inst.is_some(), public_endpoint(n), |ip, port| {
        vpn_ping(ip, port, Duration::from_millis(500))
    });
    let mut v = json!({
        "project_id": n.project_id, "internal_ip": private,
        "public_ip": n.vpn_public_address, "public_port": n.vpn_public_port, "state": state,
    });
    if let Some(i) = inst {
        v["instance_id"] = json!(i.uuid);
        v["created_at"] = json!(iso8601(i.created_at));
    }
    Ok(v)
}

/// nova's states: the probe runs only for a VPN instance with a valid public endpoint.
pub fn vpn_state(
    has_instance: bool,
    endpoint: Option<(Ipv4Addr, u16)>,
    probe: impl FnOnce(Ipv4Addr, u16) -> bool,
) -> &'static str {
    match (has_instance, endpoint) {
        (false, _) => "pending",
        (true, None) => "invalid",
        (true, Some((ip, port))) if probe(ip, port) => "running",
        (true, Some(_)) => "down",
    }
}

async fn list(State(st): State<Arc<AppState>>, ctx: Ctx) -> ApiResult<Json<Value>> {
    ctx.require_admin(POLICY)?;
    let mut seen = std::collections::BTreeSet::new();
    let mut out = Vec::new();
    for n in st.store.networks()? {
        let Some(p) = n.project_id.clone() else {
            continue;
        };
        if n.vpn_private_address.is_some() && seen.insert(p) {
            out.push(view(&st, &n)?);
        }
    }
    Ok(Json(json!({ "cloudpipes": out })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    cloudpipe: CreateCloudpipe,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateCloudpipe {
    project_id: Option<String>,
}

/// nova's `launch_vpn_instance`: the project's network (associated now if it has none),
/// its `PROJECT-vpn` group, and the VPN instance on the network's VPN address with the
/// server's certificates in its user data. An existing VPN instance is returned as it is.
async fn create(
    State(st): State<Arc<AppState>>,
    ctx: Ctx,
    Body(b): Body<CreateBody>,
) -> ApiResult<Json<Value>> {
    ctx.require_admin(POLICY)?;
    let project = b
        .cloudpipe
        .project_id
        .unwrap_or_else(|| ctx.project_id().to_string());
    let name = CertName::new("project_id", &project)?;
    let net = match project_network(&st, &project)? {
        Some(n) => n,
        None => st
            .store
            .associate_project_network(&project, None)
            .map_err(|e| match e {
                Error::Exhausted(_) | Error::NotFound(_) => ApiError::bad_request(
                    "Unable to claim IP for VPN instances, ensure it isn't running, and try again in a few minutes",
                ),
                other => other.into(),
            })?,
    };
    let Some(private) = net.vpn_private_address.clone() else {
        return Err(ApiError::bad_request(format!(
            "network {} of project {project} has no VPN address (cloudpipe needs the VLAN manager)",
            net.uuid
        )));
    };
    if let Some(i) = st.store.instance_by_fixed_ip(&private)? {
        return Ok(Json(json!({ "instance_id": i.uuid })));
    }
    let group = ensure_vpn_group(&st, &project)?;
    let files = st.ca.server_files(name.as_str())?;
    let cidr: Ipv4Cidr = net
        .cidr
        .as_deref()
        .unwrap_or_default()
        .parse()
        .map_err(|e| ApiError::internal(format!("network {}: cidr: {e}", net.uuid)))?;
    let script = boot_script(&name, &cidr, &files);
    use base64::Engine;
    let user_data = base64::engine::general_purpose::STANDARD.encode(script);
    let spec = InstanceSpec {
        name: format!("{project}-vpn"),
        project_id: project.clone(),
        user_id: ctx.user_id().to_string(),
        host: schedule(&st, &ctx, None)?,
        user_data: Some(user_data),
        security_groups: vec![group],
        flavor_id: Some("1".into()),
        image_id: Some(super::IMAGES[1].0.to_string()),
        networks: vec![RequestedNetwork {
            uuid: net.uuid.clone(),
            fixed_ip: Some(private),
        }],
        vpn: true,
        ..InstanceSpec::default()
    };
    let i = st.store.create_instance(&spec, &st.cfg)?;
    tracing::info!(server = %i.uuid, project = %project, host = ?i.spec.host, "cloudpipe VPN instance created");
    Ok(Json(json!({ "instance_id": i.uuid })))
}

/// The project's `PROJECT-vpn` group: udp 1194 and icmp from anywhere, as nova made it.
fn ensure_vpn_group(st: &AppState, project: &str) -> ApiResult<String> {
    let name = format!("{project}-vpn");
    let have = st.store.security_groups(Some(project))?;
    if have.iter().any(|g| g.name == name) {
        return Ok(name);
    }
    let g = st
        .store
        .create_security_group(project, &name, "Group for vpn", -1)?;
    for (proto, from, to) in [("udp", 1194, 1194), ("icmp", -1, -1)] {
        let rule = NewRule {
            protocol: Some(proto.into()),
            from_port: Some(from),
            to_port: Some(to),
            cidr: Some("0.0.0.0/0".into()),
            group_id: None,
        };
        st.store.add_security_group_rule(g.id, &rule, -1)?;
    }
    Ok(name)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigureBody {
    configure_project: ConfigureProject,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigureProject {
    vpn_ip: Value,
    vpn_port: Value,
}

/// Checks a VPN public address and port (nova-manage vpn change, cloudpipe-configure).
pub fn vpn_endpoint(ip: &Value, port: &Value) -> Result<(String, u32), Error> {
    let ip = ip
        .as_str()
        .and_then(|s| s.parse::<Ipv4Addr>().ok())
        .ok_or_else(|| Error::invalid("vpn_ip", format!("{ip} is not an IPv4 address")))?;
    let port = match port {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
    .filter(|p| (1..=65535).contains(p))
    .ok_or_else(|| Error::invalid("vpn_port", format!("{port} is not a port (1 to 65535)")))?;
    Ok((ip.to_string(), port as u32))
}

/// `PUT /os-cloudpipe/configure-project`: the caller's project's VPN public address and
/// port, on all of its networks.
async fn configure(
    State(st): State<Arc<AppState>>,
    ctx: Ctx,
    Path(id): Path<String>,
    Body(b): Body<ConfigureBody>,
) -> ApiResult<Response> {
    ctx.require_admin(POLICY)?;
    if id != "configure-project" {
        return Err(ApiError::bad_request(format!(
            "Unknown action {id}: only configure-project"
        )));
    }
    let c = b.configure_project;
    let endpoint = vpn_endpoint(&c.vpn_ip, &c.vpn_port)?;
    set_vpn_endpoint(&st, ctx.project_id(), endpoint)?;
    Ok(ok_empty(StatusCode::ACCEPTED))
}

/// Sets the VPN public address and port of every network of `project` (none: nothing, as
/// nova did); how many.
pub fn set_vpn_endpoint(st: &AppState, project: &str, endpoint: (String, u32)) -> ApiResult<usize> {
    let mut n = 0;
    for net in st.store.networks()? {
        if net.project_id.as_deref() == Some(project) {
            st.store.update_network(
                &net.uuid,
                &NetworkUpdate {
                    vpn_public: Some(endpoint.clone()),
                    ..NetworkUpdate::default()
                },
            )?;
            n += 1;
        }
    }
    Ok(n)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ClientBody {
    client: ClientRequest,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ClientRequest {
    user: String,
}

/// A user's ready OpenVPN client configuration for a project's VPN: the CA, the user's
/// certificate and key (issued now unless they have one), the public address and port.
async fn client_config(
    State(st): State<Arc<AppState>>,
    ctx: Ctx,
    Path(project): Path<String>,
    Body(b): Body<ClientBody>,
) -> ApiResult<Json<Value>> {
    ctx.require_admin(POLICY)?;
    CertName::new("project_id", &project)?;
    let user = b.client.user;
    CertName::new("user", &user)?;
    let net = project_network(&st, &project)?.ok_or_else(|| {
        ApiError::from(Error::conflict(format!(
            "project {project} has no VLAN network with a VPN address (cloudpipe-create gives it one)"
        )))
    })?;
    let Some((ip, port)) = public_endpoint(&net) else {
        return Err(ApiError::bad_request(format!(
            "project {project}'s VPN has no public address and port: set them with cloudpipe-configure"
        )));
    };
    let files = st.ca.client_files(&project, &user)?;
    let ovpn = client_ovpn(ip, port, &files.ca, &files.cert, &files.key);
    Ok(Json(json!({"client": {
        "project_id": project, "user": user, "public_ip": ip.to_string(), "public_port": port,
        "ovpn": ovpn,
    }})))
}

/// Revokes a user's client certificate: `{"revoked": false}` when they had none.
async fn revoke_client(
    State(st): State<Arc<AppState>>,
    ctx: Ctx,
    Path((project, user)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    ctx.require_admin(POLICY)?;
    let revoked = st.ca.revoke_client(&project, &user)?;
    if revoked {
        tracing::info!(project = %project, user = %user, "cloudpipe client certificate revoked");
    }
    // Idempotent: afterwards the user holds no valid certificate either way.
    Ok(Json(json!({"revoked": revoked})))
}

/// OpenVPN's client configuration with everything inline.
pub fn client_ovpn(ip: Ipv4Addr, port: u16, ca: &str, cert: &str, key: &str) -> String {
    format!(
        "# novanet cloudpipe: OpenVPN client configuration\n\
client\ndev tun\nproto udp\nremote {ip} {port}\nnobind\nresolv-retry 5\n\
remote-cert-tls server\nverb 3\n\
<ca>\n{}\n</ca>\n<cert>\n{}\n</cert>\n<key>\n{}\n</key>\n",
        ca.trim_end(),
        cert.trim_end(),
        key.trim_end()
    )
}

/// The VPN instance's user data: a shell script (cloud-init runs it once at first boot)
/// that writes the CA, the server's certificate and key and OpenVPN's configuration into
/// `$NOVANET_VPN_DIR` (default `/var/lib/novanet-vpn`), lets the clients reach only the
/// project's network (forwarded and masqueraded), starts OpenVPN, and fetches the CRL from
/// the metadata service every `CRL_REFRESH_SECONDS` (OpenVPN reads it at each handshake).
pub fn boot_script(project: &CertName, cidr: &Ipv4Cidr, files: &Credentials) -> String {
    let net = cidr.network();
    let mask = cidr.netmask();
    let port = VPN_PRIVATE_PORT;
    format!(
        r#"#!/bin/sh
# novanet cloudpipe: project {project}'s OpenVPN server. Written by novanet.
set -e
dir="${{NOVANET_VPN_DIR:-/var/lib/novanet-vpn}}"
umask 077
mkdir -p "$dir"
cd "$dir"
cat > ca.crt <<'NOVANET_EOF'
{ca}
NOVANET_EOF
cat > server.crt <<'NOVANET_EOF'
{cert}
NOVANET_EOF
cat > server.key <<'NOVANET_EOF'
{key}
NOVANET_EOF
cat > server.conf <<NOVANET_EOF
port {port}
proto udp
dev tun
topology subnet
server {pool} {pool_mask}
push "route {net} {mask}"
ca $dir/ca.crt
cert $dir/server.crt
key $dir/server.key
dh none
crl-verify $dir/crl.pem
keepalive 10 60
verb 3
NOVANET_EOF
fetch_crl() {{
    if command -v curl >/dev/null; then
        curl -sf -o crl.new http://169.254.169.254{crl_path}
    else
        wget -q -O crl.new http://169.254.169.254{crl_path}
    fi && mv crl.new crl.pem
}}
until fetch_crl; do sleep 1; done
echo 1 > /proc/sys/net/ipv4/ip_forward
iptables -A FORWARD -i tun+ ! -d {net}/{prefix} -j DROP
iptables -t nat -A POSTROUTING -s {pool}/24 -d {net}/{prefix} -j MASQUERADE
openvpn --config "$dir/server.conf" --daemon novanet-vpn --writepid "$dir/openvpn.pid" --log "$dir/openvpn.log"
(while sleep {refresh}; do fetch_crl || true; done) >/dev/null 2>&1 &
echo $! > "$dir/crl-fetch.pid"
"#,
        project = project.as_str(),
        ca = files.ca.trim_end(),
        cert = files.cert.trim_end(),
        key = files.key.trim_end(),
        pool = CLIENT_POOL,
        pool_mask = CLIENT_POOL_MASK,
        prefix = cidr.prefix(),
        crl_path = CRL_PATH,
        refresh = CRL_REFRESH_SECONDS,
    )
}

/// OpenVPN's client hard reset (`P_CONTROL_HARD_RESET_CLIENT_V2`, key 0) with `session`,
/// no acknowledgements, packet id 0: the packet nova's `vpn_ping` sent.
pub fn client_reset(session: u64) -> [u8; 14] {
    let mut p = [0u8; 14];
    p[0] = 7 << 3;
    p[1..9].copy_from_slice(&session.to_be_bytes());
    p
}

/// Whether `reply` is a server's hard reset (`P_CONTROL_HARD_RESET_SERVER_V2`) that
/// acknowledges our `session`.
pub fn is_server_reset(reply: &[u8], session: u64) -> bool {
    reply.len() >= 22
        && reply[0] >> 3 == 8
        && reply[9] >= 1
        && reply
            .get(10 + 4 * usize::from(reply[9])..)
            .and_then(|r| r.get(..8))
            == Some(&session.to_be_bytes()[..])
}

/// nova's `vpn_ping`: does an OpenVPN server answer at `ip:port` (UDP) within `timeout`?
pub fn vpn_ping(ip: Ipv4Addr, port: u16, timeout: Duration) -> bool {
    let Ok(sock) = UdpSocket::bind("0.0.0.0:0") else {
        return false;
    };
    let session = u64::from_be_bytes(
        uuid::Uuid::new_v4().as_bytes()[..8]
            .try_into()
            .unwrap_or([1; 8]),
    );
    if sock.set_read_timeout(Some(timeout)).is_err()
        || sock
            .send_to(&client_reset(session), SocketAddrV4::new(ip, port))
            .is_err()
    {
        return false;
    }
    let mut buf = [0u8; 1500];
    let deadline = std::time::Instant::now() + timeout;
    while std::time::Instant::now() < deadline {
        match sock.recv_from(&mut buf) {
            Ok((n, _)) if is_server_reset(&buf[..n], session) => return true,
            Ok(_) => continue,
            Err(_) => return false,
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_probe_is_novas_packet_and_knows_a_server_reset() {
        let p = client_reset(0x0102_0304_0506_0708);
        assert_eq!(p, [0x38, 1, 2, 3, 4, 5, 6, 7, 8, 0, 0, 0, 0, 0]);
        // A server's reset: opcode 8, its session, one ack (packet 0), our session, id 0.
        let mut r = vec![0x40];
        r.extend(9u64.to_be_bytes());
        r.push(1);
        r.extend([0, 0, 0, 0]);
        r.extend(0x0102_0304_0506_0708u64.to_be_bytes());
        r.extend([0, 0, 0, 0]);
        assert!(is_server_reset(&r, 0x0102_0304_0506_0708));
        assert!(!is_server_reset(&r, 7));
        assert!(!is_server_reset(&r[..20], 0x0102_0304_0506_0708));
        let mut other = r.clone();
        other[0] = 0x38;
        assert!(!is_server_reset(&other, 0x0102_0304_0506_0708));
        // Nothing listens: down.
        assert!(!vpn_ping(
            Ipv4Addr::LOCALHOST,
            9,
            Duration::from_millis(100)
        ));
    }

    #[test]
    fn states_as_nova_reported_them() {
        let at = Some((Ipv4Addr::new(192, 168, 56, 200), 1000));
        let never = |_: Ipv4Addr, _: u16| -> bool { panic!("no probe without an instance") };
        assert_eq!(vpn_state(false, at, never), "pending");
        let never = |_: Ipv4Addr, _: u16| -> bool { panic!("no probe without an endpoint") };
        assert_eq!(vpn_state(true, None, never), "invalid");
        assert_eq!(vpn_state(true, at, |_, p| p == 1000), "running");
        assert_eq!(vpn_state(true, at, |_, _| false), "down");
        let mut n = Network {
            vpn_public_address: Some("192.168.56.200".into()),
            vpn_public_port: Some(0),
            ..Network::default()
        };
        assert_eq!(public_endpoint(&n), None, "port 0");
        n.vpn_public_port = Some(1000);
        assert_eq!(public_endpoint(&n), at);
        n.vpn_public_address = Some("not an address".into());
        assert_eq!(public_endpoint(&n), None);
    }

    #[test]
    fn endpoint_values_are_checked_by_name() {
        assert_eq!(
            vpn_endpoint(&json!("192.168.56.200"), &json!("1000")).unwrap(),
            ("192.168.56.200".to_string(), 1000)
        );
        let e = vpn_endpoint(&json!("1.2.3"), &json!(1000)).unwrap_err();
        assert!(e.to_string().contains("vpn_ip"), "{e}");
        let e = vpn_endpoint(&json!("1.2.3.4"), &json!(0)).unwrap_err();
        assert!(e.to_string().contains("vpn_port"), "{e}");
        let e = vpn_endpoint(&json!("1.2.3.4"), &json!("70000")).unwrap_err();
        assert!(e.to_string().contains("vpn_port"), "{e}");
    }

    #[test]
    fn the_ovpn_and_the_boot_script_carry_what_each_end_needs() {
        let files = Credentials {
            ca: "-----BEGIN CERTIFICATE-----\nCA\n-----END CERTIFICATE-----\n".into(),
            cert: "SERVER CERT\n".into(),
            key: "SERVER KEY\n".into(),
        };
        let script = boot_script(
            &CertName::new("project_id", "p1").unwrap(),
            &"10.0.1.0/24".parse().unwrap(),
            &files,
        );
        for want in [
            "#!/bin/sh\n",
            "cat > ca.crt <<'NOVANET_EOF'\n-----BEGIN CERTIFICATE-----\nCA\n-----END CERTIFICATE-----\nNOVANET_EOF\n",
            "SERVER KEY\nNOVANET_EOF\n",
            "port 1194\n",
            "server 172.31.255.0 255.255.255.0\n",
            "push \"route 10.0.1.0 255.255.255.0\"\n",
            "crl-verify $dir/crl.pem\n",
            "http://169.254.169.254/cloudpipe/crl.pem",
            "! -d 10.0.1.0/24 -j DROP",
        ] {
            assert!(script.contains(want), "{want:?} in {script}");
        }
        let ovpn = client_ovpn(
            "192.168.56.200".parse().unwrap(),
            1000,
            "CA\n",
            "CERT\n",
            "KEY\n",
        );
        assert!(ovpn.contains("\nremote 192.168.56.200 1000\n"));
        assert!(ovpn.ends_with("<ca>\nCA\n</ca>\n<cert>\nCERT\n</cert>\n<key>\nKEY\n</key>\n"));
    }
}
