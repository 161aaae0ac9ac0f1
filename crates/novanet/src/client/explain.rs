//! `novanet explain SRC DST [PROTO PORT]`: the server's walk through the host plans, printed
//! hop by hop (or its JSON).

use novanet_core::explain::Explanation;

use crate::session::{err, Res, Session};
use crate::table::out;

pub fn explain(
    s: &Session,
    src: &str,
    dst: &str,
    proto: Option<String>,
    port: Option<String>,
    json: bool,
) -> Res<()> {
    let mut query = vec![("src", src.to_string()), ("dst", dst.to_string())];
    query.extend(proto.map(|p| ("proto", p)));
    query.extend(port.map(|p| ("port", p)));
    let query: Vec<String> = query
        .iter()
        .map(|(k, v)| format!("{k}={}", encode(v)))
        .collect();
    let v = s.get(&format!("/novanet/v1/explain?{}", query.join("&")))?;
    if json {
        out(&serde_json::to_string_pretty(&v).unwrap_or_default());
        return Ok(());
    }
    let e: Explanation = serde_json::from_value(v).map_err(|e| {
        err(format!(
            "ERROR: the server's explanation did not parse: {e}"
        ))
    })?;
    out(e.render().trim_end());
    Ok(())
}

/// A query value, percent-encoded but for the characters that need no escape.
fn encode(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn query_values_are_encoded() {
        assert_eq!(super::encode("web 1&x=y"), "web%201%26x%3Dy");
        assert_eq!(super::encode("10.0.0.2"), "10.0.0.2");
    }
}
