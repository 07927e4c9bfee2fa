//! Helpers for hubrelay's tests: a moto server on loopback ([`moto`]), a Lambda Runtime API emulator and
//! the AWS stage the bootstrap tests run against ([`runtime`]), and the SQS worker fixtures ([`worker`]).

pub mod moto;
pub mod runtime;
pub mod worker;
