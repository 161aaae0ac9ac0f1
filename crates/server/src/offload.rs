//! The store is synchronous (SQLite behind one connection lock): a handler that calls it
//! holds its thread until the store answers, and an async worker held that way stalls every
//! request queued behind it. These helpers move such work to where blocking is allowed.
//!
//! `block_in_place` rather than `spawn_blocking`: the handlers borrow the state and their
//! extracted arguments, and moving the worker's other tasks to a fresh thread costs less
//! than sending the handler's work to one. On a current-thread runtime (the in-process
//! tests) there is no other worker to hand the tasks to, so the work runs where it is.

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use tokio::runtime::{Handle, RuntimeFlavor};

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
        Some(handle) => tokio::task::block_in_place(|| handle.block_on(next.run(req))),
        None => next.run(req).await,
    }
}
