//! Helpers shared by the integration tests; each test binary uses only part of them.
#![allow(dead_code)]

pub mod deb;
pub mod front;
pub mod host;
pub mod image;
pub mod repo;
pub mod server;
pub mod sign;
pub mod skip;
pub mod strict;
pub mod tor;
pub mod tree;
