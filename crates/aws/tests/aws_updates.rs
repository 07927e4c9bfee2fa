//! The update ledger and lead links on DynamoDB (moto server): leases exclude other writers, expire, and
//! committed versions only move forward.

use std::collections::BTreeMap;
use std::time::Duration;

use hubrelay_aws::dynamodb::DynamoIdempotencyStore;
use hubrelay_core::store::{AppliedVersion, LeadLinks, Lease, UpdateLedger};
use hubrelay_testkit::moto;
use time::macros::datetime;
use time::OffsetDateTime;

const T0: OffsetDateTime = datetime!(2026-11-25 10:00:00.500 UTC);
const TTL: Duration = Duration::from_secs(30);

async fn store() -> DynamoIdempotencyStore {
    let client = moto::dynamodb(moto::shared());
    let table = moto::idempotency_table(&client).await;
    DynamoIdempotencyStore::new(client, table)
}

fn v(at: OffsetDateTime, fingerprint: &str) -> AppliedVersion {
    AppliedVersion { at, fingerprint: fingerprint.into() }
}

fn granted(lease: Lease) -> BTreeMap<String, AppliedVersion> {
    match lease {
        Lease::Granted(versions) => versions,
        Lease::Busy => panic!("expected the lease"),
    }
}

#[tokio::test]
async fn dynamo_leases_exclude_other_writers_until_commit_release_or_expiry() {
    let s = store().await;
    assert!(granted(s.lease("101", "evt_a", T0, TTL).await.unwrap()).is_empty());
    assert_eq!(s.lease("101", "evt_b", T0, TTL).await.unwrap(), Lease::Busy);
    granted(s.lease("101", "evt_a", T0, TTL).await.unwrap()); // the holder may take it again
    granted(s.lease("202", "evt_b", T0, TTL).await.unwrap()); // per contact

    let applied = BTreeMap::from([("status".to_string(), v(T0, "f1")), ("score".to_string(), v(T0, "f2"))]);
    s.commit("101", "evt_a", &applied).await.unwrap();
    assert_eq!(granted(s.lease("101", "evt_b", T0, TTL).await.unwrap()), applied);
    s.release("101", "evt_c").await.unwrap(); // not the holder: a no-op
    assert_eq!(s.lease("101", "evt_c", T0, TTL).await.unwrap(), Lease::Busy);
    s.release("101", "evt_b").await.unwrap();
    granted(s.lease("101", "evt_c", T0, TTL).await.unwrap());
    // A crashed holder's lease expires.
    let later = T0 + time::Duration::seconds(31);
    assert_eq!(granted(s.lease("101", "evt_d", later, TTL).await.unwrap()), applied);
}

#[tokio::test]
async fn dynamo_a_writer_whose_lease_expired_records_only_newer_versions() {
    let s = store().await;
    granted(s.lease("303", "slow", T0, TTL).await.unwrap());
    let later = T0 + time::Duration::seconds(40);
    granted(s.lease("303", "fast", later, TTL).await.unwrap());
    let newer = T0 + time::Duration::minutes(5);
    s.commit("303", "fast", &BTreeMap::from([("status".to_string(), v(newer, "new"))])).await.unwrap();
    // The slow writer finishes late: its older status must not roll the version back; its new group counts.
    let slow = BTreeMap::from([("status".to_string(), v(T0, "old")), ("dealer".to_string(), v(T0, "d"))]);
    s.commit("303", "slow", &slow).await.unwrap();
    let versions = granted(s.lease("303", "next", later, TTL).await.unwrap());
    assert_eq!(versions["status"], v(newer, "new"));
    assert_eq!(versions["dealer"], v(T0, "d"));
}

#[tokio::test]
async fn dynamo_lead_links_resolve_to_the_latest_contact() {
    let s = store().await;
    assert_eq!(s.contact_for("aimbase_rollick-1").await.unwrap(), None);
    s.link("aimbase_rollick-1", "501", T0).await.unwrap();
    assert_eq!(s.contact_for("aimbase_rollick-1").await.unwrap().as_deref(), Some("501"));
    s.link("aimbase_rollick-1", "777", T0).await.unwrap();
    assert_eq!(s.contact_for("aimbase_rollick-1").await.unwrap().as_deref(), Some("777"));
    // A HubSpot merge: the merged-away id names its survivor.
    assert_eq!(s.merged_into("777").await.unwrap(), None);
    s.record_merge("777", "901", T0).await.unwrap();
    assert_eq!(s.merged_into("777").await.unwrap().as_deref(), Some("901"));
}
