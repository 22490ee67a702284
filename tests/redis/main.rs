//! Shared rate limits and the shared cache against real `redis-server`
//! processes started by the tests (own port, own temp dir, stopped at the end).

#[path = "../support/mod.rs"]
mod support;

mod cache;
mod cluster;
mod limits;
mod sentinel;
mod server;
