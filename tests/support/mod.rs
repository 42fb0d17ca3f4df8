//! Helpers shared by the integration tests; each test binary uses only part of them.
#![allow(dead_code)]

pub mod deb;
pub mod host;
pub mod repo;
pub mod server;
pub mod sign;
pub mod strict;
pub mod tor;
pub mod tree;
