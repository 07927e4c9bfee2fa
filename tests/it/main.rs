//! Integration tests: start the real `hubrelay serve` (with its embedded HubSpot sandbox) and talk HTTP
//! to it; the AWS path runs against moto server started by the harness.

mod activities;
mod advocate;
mod app_webhooks;
mod auth;
mod cli;
mod conformance;
mod console;
mod followups;
mod hardening;
mod harness;
mod import;
mod leads;
mod malformed;
mod notifications;
mod openapi;
mod outbound;
mod platform;
mod privacy;
mod referrals;
mod retries;
mod smoke;
mod status;
mod tenants;
mod tenants_oauth;
