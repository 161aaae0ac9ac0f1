//! The store is synchronous (SQLite behind one connection lock): a handler that calls it
//! holds its thread until the store answers, and an async worker held that way stalls every
//! request queued behind it. These helpers move such work to where blocking is allowed.
//!
//! A whole handler goes to the blocking pool (`spawn_blocking`), not `block_in_place`: the
//! request body is fed by the connection's task, which is the task `block_in_place` would
//! block, so a handler reading its body there would wait forever. A short piece of store
//! work inside an async handler uses `block_in_place` (`blocking`). On a current-thread
//! runtime (the in-process tests) neither applies and the work runs where it is.

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::runtime::{Handle, RuntimeFlavor};

use crate::error::ApiError;

fn on_a_multi_thread_runtime() -> Option<Handle> {
    Handle::try_current()
        .ok()
        .filter(|h| h.runtime_flavor() == RuntimeFlavor::MultiThread)
}

/// Runs `f`, which may block on the store, without holding up an async worker.
pub fn blocking<T>(f: impl FnOnce() -> T) -> T {
    match on_a_multi_thread_runtime() {
        Some(_) => tokio::task::block_in_place(f),
        None => f(),
    }
}

/// Middleware for routes whose handlers call the store: the whole handler runs off the
/// async workers. Not for routes that wait long (the agents' long poll): each waiting
/// request would hold a thread.
pub async fn off_the_workers(req: Request, next: Next) -> Response {
    match on_a_multi_thread_runtime() {
        Some(handle) => {
            let handler = tokio::task::spawn_blocking(move || handle.block_on(next.run(req)));
            handler
                .await
                .unwrap_or_else(|e| ApiError::internal(e).into_response())
        }
        None => next.run(req).await,
    }
}
