//! What the server logs: one line per request (method, path, status, time, request id,
//! project) and one event per change, the request's id on both.

use std::io::Write;
use std::sync::{Arc, Mutex};

mod common;
use common::{network_body, Harness};

/// Everything the fmt subscriber writes, kept for the test to read.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn requests_and_changes_are_logged_with_the_request_id() {
    let out = Captured::default();
    let writer = out.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let (project, id) = tracing::subscriber::with_default(subscriber, || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let h = Harness::new("logging").await;
            let (s, headers, v) = h
                .req(
                    "POST",
                    "/v2.1/os-networks",
                    h.admin(),
                    Some(network_body("vmnet", "10.0.0.0/24")),
                )
                .await;
            assert_eq!(s, 200, "{v}");
            let id = headers["x-openstack-request-id"]
                .to_str()
                .unwrap()
                .to_string();
            let token = h.state.store.token(&h.admin, 0).unwrap();
            (token.project.id, id)
        })
    });
    let log = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
    let line = log
        .lines()
        .find(|l| l.contains("method=POST") && l.contains("path=/v2.1/os-networks"))
        .unwrap_or_else(|| panic!("no request line in:\n{log}"));
    for want in [
        "status=200".to_string(),
        format!("request_id={id}"),
        format!("project={project}"),
        "ms=".to_string(),
    ] {
        assert!(line.contains(&want), "{want} not in {line}");
    }
    let change = log
        .lines()
        .find(|l| l.contains("network created"))
        .unwrap_or_else(|| panic!("no change event in:\n{log}"));
    assert!(change.contains(&id), "{change}");
    assert!(change.contains("cidr"), "{change}");
}
