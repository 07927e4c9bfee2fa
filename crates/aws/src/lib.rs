//! hubrelay on AWS: the DynamoDB and SQS adapters of hubrelay-core's ports, secrets from SSM / Secrets
//! Manager, the SQS worker driver, and the app each Lambda runs.

pub mod console;
pub mod dynamodb;
pub mod dynamodb_budget;
mod dynamodb_events;
pub mod dynamodb_imports;
pub mod dynamodb_oauth;
mod dynamodb_privacy;
pub mod dynamodb_retention;
pub mod dynamodb_tenants;
mod dynamodb_updates;
pub mod emf;
pub mod lambda;
mod lambda_referrals;
pub mod lambda_tenants;
pub mod sdk;
pub mod sqs;
mod sqs_dlq;
pub mod sqs_seal;
pub mod sqs_worker;

pub use sqs_dlq::SqsDeadLetters;
