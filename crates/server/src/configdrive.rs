//! The config drive a hypervisor attaches (nova's `force_config_drive`): an ISO 9660 image
//! labelled `config-2` with the metadata trees as files, built by genisoimage as nova's
//! `mkisofs_cmd` did (xorriso's mkisofs emulation when genisoimage is missing).

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use axum::extract::{Path as UrlPath, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::error::{ApiError, ApiResult};
use crate::identity::Ctx;
use crate::AppState;

/// The volume label cloud-init looks for (`config-2`, nova's `CONFIGDRIVEVOLNAME`).
pub const VOLUME_LABEL: &str = "config-2";
/// The largest config drive served; nova's was a 64 MiB vfat or an ISO of what it held.
const MAX_ISO: u64 = 64 << 20;

pub fn routes() -> Router<Arc<AppState>> {
    Router::new().route("/novanet/v1/instances/{id}/config-drive", get(config_drive))
}

/// nova's genisoimage arguments (nova/virt/configdrive.py), reading from `dir`.
pub fn mkisofs_args(out: &Path, dir: &Path) -> Vec<String> {
    [
        "-o",
        &out.display().to_string(),
        "-ldots",
        "-allow-lowercase",
        "-allow-multidot",
        "-l",
        "-publisher",
        "novanet",
        "-quiet",
        "-J",
        "-r",
        "-V",
        VOLUME_LABEL,
        &dir.display().to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// Builds the ISO image of `files` (relative paths made by the metadata trees, never by a
/// request) in a private temporary directory.
pub fn build_iso(files: &[(String, Vec<u8>)]) -> Result<Vec<u8>, String> {
    let work = std::env::temp_dir().join(format!(
        "novanet-config-drive-{}",
        uuid::Uuid::new_v4().simple()
    ));
    let result = build_in(&work, files);
    let _ = std::fs::remove_dir_all(&work);
    result
}

fn build_in(work: &Path, files: &[(String, Vec<u8>)]) -> Result<Vec<u8>, String> {
    let tree = work.join("tree");
    let io = |what: &Path, e: std::io::Error| format!("{}: {e}", what.display());
    std::fs::create_dir_all(&tree).map_err(|e| io(&tree, e))?;
    for (rel, bytes) in files {
        if rel
            .split('/')
            .any(|s| s.is_empty() || s == "." || s == "..")
        {
            return Err(format!("{rel:?} is not a config drive path"));
        }
        let p = tree.join(rel);
        if let Some(d) = p.parent() {
            std::fs::create_dir_all(d).map_err(|e| io(d, e))?;
        }
        std::fs::write(&p, bytes).map_err(|e| io(&p, e))?;
    }
    let out = work.join("config.iso");
    let args = mkisofs_args(&out, &tree);
    let run = |prog: &str, pre: &[&str]| {
        Command::new(prog)
            .args(pre)
            .args(&args)
            .stdin(std::process::Stdio::null())
            .output()
    };
    let output = match run("genisoimage", &[]) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => run("xorriso", &["-as", "mkisofs"])
            .map_err(|e| {
            format!("neither genisoimage nor xorriso could run ({e}): install genisoimage")
        })?,
        other => other.map_err(|e| format!("genisoimage: {e}"))?,
    };
    if !output.status.success() {
        return Err(format!(
            "genisoimage failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    let len = std::fs::metadata(&out).map_err(|e| io(&out, e))?.len();
    if len > MAX_ISO {
        return Err(format!("the config drive would be {len} bytes"));
    }
    std::fs::read(&out).map_err(|e| io(&out, e))
}

/// `GET /novanet/v1/instances/{id}/config-drive` (admin): the ISO bytes, for the
/// hypervisor integration that attaches it.
async fn config_drive(
    State(st): State<Arc<AppState>>,
    ctx: Ctx,
    UrlPath(id): UrlPath<String>,
) -> ApiResult<Response> {
    ctx.require_admin("config drives")?;
    let inst = st
        .store
        .instance(&id)
        .map_err(|_| ApiError::not_found(format!("Instance {id} could not be found.")))?;
    let meta = crate::metadata::build_meta(&st, inst)
        .ok_or_else(|| ApiError::unavailable("the instance's metadata could not be read"))?;
    let files = crate::metadata::config_drive_files(&meta);
    let iso = tokio::task::spawn_blocking(move || build_iso(&files))
        .await
        .map_err(|e| ApiError::unavailable(e.to_string()))?
        .map_err(ApiError::unavailable)?;
    Ok((
        [
            ("content-type", "application/x-iso9660-image"),
            (
                "content-disposition",
                "attachment; filename=\"config-drive.iso\"",
            ),
        ],
        iso,
    )
        .into_response())
}
