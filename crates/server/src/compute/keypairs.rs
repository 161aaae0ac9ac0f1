//! `os-keypairs` as Nova served it from 2.1 to 2.35: import (an OpenSSH public key, checked
//! by decoding it) or generate (RSA, by `ssh-keygen`), MD5 fingerprints as `ssh-keygen -l -E
//! md5` prints them, `type` from 2.2, other users' keys for admins from 2.10.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use base64::Engine;
use novanet_core::Error;
use novanet_store::Keypair;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::error::{ApiError, ApiResult, Body};
use crate::identity::Ctx;
use crate::version::Microversion;
use crate::{iso8601, unix_now, AppState};

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/os-keypairs", get(list).post(create))
        .route("/os-keypairs/{name}", get(show).delete(delete))
}

/// Key types OpenSSH and Nova take.
const KEY_TYPES: &[&str] = &[
    "ssh-rsa",
    "ssh-dss",
    "ssh-ed25519",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
];

/// The key blob of `TYPE BASE64 [COMMENT]`, once its first field is checked to name the type
/// the line says: a key that does not decode, or whose blob is of another type, is refused.
pub fn key_blob(public_key: &str) -> Result<Vec<u8>, String> {
    let mut parts = public_key.split_whitespace();
    let (Some(kind), Some(b64)) = (parts.next(), parts.next()) else {
        return Err("is not an OpenSSH public key (TYPE BASE64 [COMMENT])".into());
    };
    if !KEY_TYPES.contains(&kind) {
        return Err(format!(
            "{kind:?} is not a key type ({})",
            KEY_TYPES.join(", ")
        ));
    }
    let blob = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|_| "its key is not base64".to_string())?;
    let n = blob
        .get(..4)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
        .ok_or("its key is too short")?;
    if blob.get(4..4 + n) != Some(kind.as_bytes()) {
        return Err(format!("its key is not a {kind} key"));
    }
    if blob.len() > 16 * 1024 {
        return Err("its key is too large".into());
    }
    Ok(blob)
}

/// `ssh-keygen -l -E md5`'s fingerprint, without the `MD5:` prefix, as Nova gives it.
pub fn fingerprint(blob: &[u8]) -> String {
    use md5::{Digest, Md5};
    Md5::digest(blob)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Nova's key pair names up to 2.91: letters, digits, space, `_` and `-`.
fn check_name(name: &str) -> ApiResult<()> {
    let ok = !name.trim().is_empty()
        && name.chars().count() <= 255
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, ' ' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(
            "name",
            format!("{name:?}: a key pair name is 1 to 255 letters, digits, spaces, '_' or '-'"),
        )
        .into())
    }
}

/// An RSA key pair from `ssh-keygen` (openssh-client), in a private temporary directory.
fn generate(comment: &str) -> ApiResult<(String, String)> {
    let dir =
        std::env::temp_dir().join(format!("novanet-keygen-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir(&dir)
        .map_err(|e| ApiError::unavailable(format!("cannot generate a key pair: {e}")))?;
    let key = dir.join("key");
    let out = std::process::Command::new("ssh-keygen")
        .args([
            "-q", "-t", "rsa", "-b", "2048", "-m", "PEM", "-N", "", "-C", comment, "-f",
        ])
        .arg(&key)
        .output();
    let read = |p: &std::path::Path| std::fs::read_to_string(p).ok();
    let res = match out {
        Ok(o) if o.status.success() => read(&key).zip(read(&key.with_extension("pub"))),
        _ => None,
    };
    let _ = std::fs::remove_dir_all(&dir);
    res.ok_or_else(|| {
        ApiError::unavailable("cannot generate a key pair: ssh-keygen (openssh-client) failed or is missing; import a public key instead")
    })
}

fn owner(ctx: &Ctx, v: Microversion, user_id: Option<&str>) -> ApiResult<String> {
    match user_id {
        Some(u) if u != ctx.user_id() => {
            if !v.at_least(10) {
                return Err(Error::invalid("user_id", "needs microversion 2.10 or later").into());
            }
            ctx.require_admin("os_compute_api:os-keypairs with another user's user_id")?;
            Ok(u.to_string())
        }
        _ => Ok(ctx.user_id().to_string()),
    }
}

#[derive(Deserialize)]
struct UserQuery {
    user_id: Option<String>,
}

async fn list(
    State(st): State<Arc<AppState>>,
    ctx: Ctx,
    v: Microversion,
    Query(q): Query<UserQuery>,
) -> ApiResult<Json<Value>> {
    let user = owner(&ctx, v, q.user_id.as_deref())?;
    let kps: Vec<Value> = st
        .store
        .keypairs(&user)?
        .iter()
        .map(|k| {
            let mut x =
                json!({"name": k.name, "public_key": k.public_key, "fingerprint": k.fingerprint});
            if v.at_least(2) {
                x["type"] = json!(k.kind);
            }
            json!({ "keypair": x })
        })
        .collect();
    Ok(Json(json!({ "keypairs": kps })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    keypair: CreateFields,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateFields {
    name: String,
    public_key: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    user_id: Option<String>,
}

async fn create(
    State(st): State<Arc<AppState>>,
    ctx: Ctx,
    v: Microversion,
    Body(b): Body<CreateBody>,
) -> ApiResult<Response> {
    let k = b.keypair;
    check_name(&k.name)?;
    let kind =
        match (k.kind.as_deref(), v.at_least(2)) {
            (None, _) | (Some("ssh"), true) => "ssh",
            (Some("x509"), true) => return Err(Error::invalid(
                "type",
                "x509 key pairs are not offered: novanet runs no certificate authority for them",
            )
            .into()),
            (Some(t), true) => {
                return Err(Error::invalid("type", format!("{t:?} is not ssh or x509")).into())
            }
            (Some(_), false) => {
                return Err(Error::invalid("type", "needs microversion 2.2 or later").into())
            }
        };
    let user = owner(&ctx, v, k.user_id.as_deref())?;
    let (public_key, private_key) = match k.public_key {
        Some(p) => (p, None),
        None => {
            let (private, public) =
                tokio::task::spawn_blocking(move || generate("Generated-by-Nova"))
                    .await
                    .map_err(|e| ApiError::unavailable(e.to_string()))??;
            (public.trim().to_string(), Some(private))
        }
    };
    let blob = key_blob(&public_key).map_err(|e| Error::invalid("public_key", e))?;
    let kp = Keypair {
        id: 0,
        name: k.name.clone(),
        user_id: user.clone(),
        fingerprint: fingerprint(&blob),
        public_key,
        kind: kind.to_string(),
        created_at: unix_now(),
    };
    st.store.create_keypair(&kp)?;
    tracing::info!(name = %kp.name, user = %user, "key pair created");
    let mut x = json!({"name": kp.name, "public_key": kp.public_key, "fingerprint": kp.fingerprint, "user_id": user});
    if let Some(p) = private_key {
        x["private_key"] = json!(p);
    }
    let code = if v.at_least(2) {
        x["type"] = json!(kind);
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((code, Json(json!({ "keypair": x }))).into_response())
}

async fn show(
    State(st): State<Arc<AppState>>,
    ctx: Ctx,
    v: Microversion,
    Path(name): Path<String>,
    Query(q): Query<UserQuery>,
) -> ApiResult<Json<Value>> {
    let user = owner(&ctx, v, q.user_id.as_deref())?;
    let k = st.store.keypair(&user, &name)?;
    let mut x = json!({"name": k.name, "public_key": k.public_key, "fingerprint": k.fingerprint,
                       "user_id": k.user_id, "deleted": false, "created_at": iso8601(k.created_at),
                       "updated_at": null, "deleted_at": null, "id": k.id});
    if v.at_least(2) {
        x["type"] = json!(k.kind);
    }
    Ok(Json(json!({ "keypair": x })))
}

async fn delete(
    State(st): State<Arc<AppState>>,
    ctx: Ctx,
    v: Microversion,
    Path(name): Path<String>,
    Query(q): Query<UserQuery>,
) -> ApiResult<StatusCode> {
    let user = owner(&ctx, v, q.user_id.as_deref())?;
    st.store.delete_keypair(&user, &name)?;
    tracing::info!(name = %name, user = %user, "key pair deleted");
    Ok(if v.at_least(2) {
        StatusCode::NO_CONTENT
    } else {
        StatusCode::ACCEPTED
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_are_ssh_keygens() {
        // `ssh-keygen -l -E md5` on this key prints MD5:ff:98:c5:f8:6b:de:5d:b2:7d:d0:fa:f1:49:90:23:06.
        let key = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAAAgQCyQiXymFLORE1cWoQTJsZtm1AEB4GlBSt4ydJaYddLtb5y6By6cnWzPV7f6Jt9mkooDQKitGQlf7QwuxM4BuNkzqKnT2Uk+9hJCPu3zOaugcjRVRgaz3bqTMZrl4eN9zhcZTwEP6g7I4WE30zDrcSkhwc8ITP8aCIsYbCF81MmjQ== test";
        assert_eq!(
            fingerprint(&key_blob(key).unwrap()),
            "ff:98:c5:f8:6b:de:5d:b2:7d:d0:fa:f1:49:90:23:06"
        );
        for bad in [
            "ssh-rsa JUNK nova@ubuntu",
            "ssh-rsa AAAAAAAAAAAAAAAA",
            "ssh-dss AAAAB3NzaC1yc2EAAAADAQABAAAAgQCyQiXymFLORE1cWoQTJsZtm1AEB4GlBSt4ydJaYddLtb5y6By6cnWzPV7f6Jt9mkooDQKitGQlf7QwuxM4BuNkzqKnT2Uk+9hJCPu3zOaugcjRVRgaz3bqTMZrl4eN9zhcZTwEP6g7I4WE30zDrcSkhwc8ITP8aCIsYbCF81MmjQ==",
            "x AAAA",
            "",
        ] {
            assert!(key_blob(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn names() {
        assert!(check_name("my key_1-a").is_ok());
        for bad in ["key_/.\\@:", "", "   ", "a\nb"] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }
}
