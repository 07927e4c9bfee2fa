//! Helpers for hubrelay's tests: a moto server on loopback ([`moto`]), a Lambda Runtime API emulator and
//! the AWS stage the bootstrap tests run against ([`runtime`]), the SQS worker fixtures ([`worker`]), and a
//! recording proxy that shows what hubrelay sent HubSpot ([`recording_proxy`]), and a portal admin's part of an
//! OAuth install ([`oauth`]).

pub mod emf;
pub mod moto;
pub mod oauth;
pub mod recording_proxy;
pub mod runtime;
pub mod worker;
