//! Hidden commands for scripts and the lab: a raw GET, and reporting where a VIF is plugged.

use serde_json::json;

use crate::session::{Res, Session};
use crate::table::out;

/// Prints the answer to a GET as the server sent it (any path: it is for scripts).
pub fn api_get(s: &Session, path: &str) -> Res<()> {
    out(&s.get(path)?.to_string());
    Ok(())
}

pub fn vif_plug(s: &Session, vif: &str, device: &str) -> Res<()> {
    s.call(
        "POST",
        &format!("/novanet/v1/vifs/{vif}/plug"),
        Some(json!({ "device": device })),
    )?;
    Ok(())
}
