//! Shared helpers for the integration tests of the shared crate.

pub mod moto;
pub mod runtime;
pub mod worker;
