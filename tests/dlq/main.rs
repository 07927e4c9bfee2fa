//! `hubrelay events` and `hubrelay dlq` end to end: the real binary against a local data dir (SQLite store
//! prepared with dead letters and event records) and against moto server (SQS dead-letter and retry queues,
//! the DynamoDB event log, a CloudFormation stack for `--stack`). Its own test binary: it starts moto.

mod aws;
mod fixtures;
mod local;
