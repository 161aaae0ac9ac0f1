//! Cloudpipe (`/os-cloudpipe`, admin): each VLAN project's VPN instance, its public address
//! and port, and a user's ready OpenVPN client configuration (novanet's own routes).

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use serde::Deserialize;
use serde_json::{json, Value};

use super::output::{done, or_dash, print_items, Column};
use super::wire::{read, Item};
use crate::session::{err, Auth, Res, Session};
use crate::table::out;

#[derive(Deserialize)]
pub struct Cloudpipe {
    #[serde(default)]
    project_id: Option<String>,
    #[serde(default)]
    public_ip: Option<String>,
    #[serde(default)]
    public_port: Option<Value>,
    #[serde(default)]
    internal_ip: Option<String>,
    #[serde(default)]
    state: Option<String>,
}

#[derive(Deserialize)]
struct CloudpipeList {
    #[serde(default)]
    cloudpipes: Vec<Item<Cloudpipe>>,
}

/// novaclient's four columns, and the state it did not show.
pub fn list(s: &Session, as_json: bool) -> Res<()> {
    let v: CloudpipeList = read(s.get("/os-cloudpipe")?, "GET /os-cloudpipe")?;
    let cols: &[Column<Cloudpipe>] = &[
        ("Project Id", |c| or_dash(&c.project_id)),
        ("Public IP", |c| or_dash(&c.public_ip)),
        ("Public Port", |c| {
            c.public_port
                .as_ref()
                .filter(|p| !p.is_null())
                .map_or("-".into(), |p| p.to_string())
        }),
        ("Internal IP", |c| or_dash(&c.internal_ip)),
        ("State", |c| or_dash(&c.state)),
    ];
    print_items(&v.cloudpipes, cols, as_json);
    Ok(())
}

pub fn create(s: &Session, auth: &Auth, project: &str) -> Res<()> {
    let id = s.project_id_of(&auth.auth_url, project)?;
    let v = s.call(
        "POST",
        "/os-cloudpipe",
        Some(json!({"cloudpipe": {"project_id": id}})),
    )?;
    done(format_args!(
        "VPN instance {} of project {id}",
        v["instance_id"].as_str().unwrap_or("-")
    ));
    Ok(())
}

pub fn configure(s: &Session, address: &str, port: &str) -> Res<()> {
    s.call(
        "PUT",
        "/os-cloudpipe/configure-project",
        Some(json!({"configure_project": {"vpn_ip": address, "vpn_port": port}})),
    )?;
    done(format_args!(
        "The VPN of project {} is reached at {address}:{port}/udp",
        s.project_id
    ));
    Ok(())
}

/// Writes (or prints) `user`'s `.ovpn` for `project`'s VPN; a file is made mode 0600, as
/// it holds the user's private key.
pub fn client(
    s: &Session,
    auth: &Auth,
    project: &str,
    user: &str,
    output: Option<&Path>,
) -> Res<()> {
    let id = s.project_id_of(&auth.auth_url, project)?;
    let path = format!("/novanet/v1/cloudpipe/{id}/clients");
    let v = s.call("POST", &path, Some(json!({"client": {"user": user}})))?;
    let ovpn = v["client"]["ovpn"]
        .as_str()
        .ok_or_else(|| err(format!("ERROR: the answer to POST {path} has no ovpn")))?;
    match output {
        None => out(ovpn.trim_end()),
        Some(file) => {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(file)
                .and_then(|mut f| f.write_all(ovpn.as_bytes()).map(|_| f))
                .map_err(|e| err(format!("ERROR: writing {}: {e}", file.display())))?;
            let _ = f.flush();
            done(format_args!(
                "Wrote {user}'s OpenVPN configuration for project {id} to {}",
                file.display()
            ));
        }
    }
    Ok(())
}

pub fn revoke(s: &Session, auth: &Auth, project: &str, user: &str) -> Res<()> {
    let id = s.project_id_of(&auth.auth_url, project)?;
    let v = s.call(
        "DELETE",
        &format!("/novanet/v1/cloudpipe/{id}/clients/{user}"),
        None,
    )?;
    if v["revoked"] == json!(true) {
        done(format_args!(
            "Revoked {user}'s VPN certificate for project {id}"
        ));
    } else {
        done(format_args!(
            "{user} had no VPN certificate for project {id}"
        ));
    }
    Ok(())
}
