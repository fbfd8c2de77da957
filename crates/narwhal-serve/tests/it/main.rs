//! The server's routes and status codes, in-process: requests through `router(state)` with
//! tower's `oneshot` over a copy of `example/cache` (a cache real Nix wrote). The real clients
//! (Nix, narwhal push and fetch over TCP) are tested in `crates/narwhal/tests/it/serve.rs`.

#![allow(clippy::unwrap_used)]

mod routes;
