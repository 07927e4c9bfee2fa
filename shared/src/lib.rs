//! hubrelay's common crate: everything the Lambdas and `hubrelay serve` share.
//!
//! Domain logic is plain Rust over small traits ([`store::IdempotencyStore`], [`store::RetryQueue`],
//! [`hubspot::HubSpot`]); AWS (DynamoDB, SQS) and SQLite adapters sit behind them.

pub mod auth;
pub mod aws;
pub mod config;
pub mod dates;
pub mod dlq;
pub mod domain;
pub mod error;
pub mod handler;
pub mod hubspot;
pub mod lead;
pub mod mapping;
#[cfg(feature = "local")]
pub mod partner_sandbox;
pub mod partners;
pub mod pii;
pub mod properties;
pub mod referral;
#[cfg(feature = "local")]
pub mod sandbox;
pub mod store;
pub mod updates;
pub mod worker;
