//! The update ledger and lead links on the local SQLite store (schema v3; contact merges v4).

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::{params, OptionalExtension};
use time::OffsetDateTime;

use crate::sqlite::{epoch_millis, sql_err, SqliteStore};
use hubrelay_core::store::{AppliedVersion, LeadLinks, Lease, StoreError, UpdateLedger};

pub(super) const SCHEMA_V3: &str = "
CREATE TABLE update_ledger (
    contact_id  TEXT PRIMARY KEY NOT NULL,
    lease_owner TEXT,
    lease_until INTEGER,
    versions    TEXT NOT NULL DEFAULT '{}'
);

CREATE TABLE lead_links (
    lead_id    TEXT PRIMARY KEY NOT NULL,
    contact_id TEXT NOT NULL,
    linked_at  INTEGER NOT NULL
);
";

pub(super) const SCHEMA_V4: &str = "
CREATE TABLE contact_merges (
    contact_id  TEXT PRIMARY KEY NOT NULL,
    survivor_id TEXT NOT NULL,
    merged_at   INTEGER NOT NULL
);
";

fn decode_versions(json: &str) -> Result<BTreeMap<String, AppliedVersion>, StoreError> {
    let raw: BTreeMap<String, String> =
        serde_json::from_str(json).map_err(|e| StoreError::Corrupt(format!("ledger versions: {e}")))?;
    raw.into_iter().map(|(k, v)| Ok((k, AppliedVersion::decode(&v)?))).collect()
}

#[async_trait]
impl UpdateLedger for SqliteStore {
    async fn lease(
        &self,
        contact_id: &str,
        owner: &str,
        now: OffsetDateTime,
        ttl: Duration,
    ) -> Result<Lease, StoreError> {
        let (contact_id, owner) = (contact_id.to_string(), owner.to_string());
        let now_ms = epoch_millis(now);
        let until = now_ms + ttl.as_millis() as i64;
        self.write(move |conn| {
            let row: Option<(Option<String>, Option<i64>, String)> = conn
                .query_row(
                    "SELECT lease_owner, lease_until, versions FROM update_ledger WHERE contact_id = ?1",
                    params![contact_id],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )
                .optional()
                .map_err(sql_err)?;
            let versions = match &row {
                Some((Some(holder), Some(lease_until), _)) if *holder != owner && *lease_until >= now_ms => {
                    return Ok(Lease::Busy)
                }
                Some((_, _, json)) => decode_versions(json)?,
                None => BTreeMap::new(),
            };
            conn.execute(
                "INSERT INTO update_ledger (contact_id, lease_owner, lease_until) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (contact_id) DO UPDATE SET lease_owner = ?2, lease_until = ?3",
                params![contact_id, owner, until],
            )
            .map_err(sql_err)?;
            Ok(Lease::Granted(versions))
        })
        .await
    }

    async fn commit(
        &self,
        contact_id: &str,
        owner: &str,
        applied: &BTreeMap<String, AppliedVersion>,
    ) -> Result<(), StoreError> {
        let (contact_id, owner) = (contact_id.to_string(), owner.to_string());
        let applied = applied.clone();
        self.write(move |conn| {
            let row: Option<(Option<String>, String)> = conn
                .query_row(
                    "SELECT lease_owner, versions FROM update_ledger WHERE contact_id = ?1",
                    params![contact_id],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()
                .map_err(sql_err)?;
            let mut versions = match &row {
                Some((_, json)) => decode_versions(json)?,
                None => BTreeMap::new(),
            };
            for (field, v) in applied {
                // Keep the newest: a lease that expired under a slow writer must not roll a value back.
                if versions.get(&field).is_none_or(|old| old.at <= v.at) {
                    versions.insert(field, v);
                }
            }
            let encoded: BTreeMap<&String, String> = versions.iter().map(|(k, v)| (k, v.encode())).collect();
            let json = serde_json::to_string(&encoded).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            let still_ours = row.as_ref().is_some_and(|(holder, _)| holder.as_deref() == Some(owner.as_str()));
            conn.execute(
                "INSERT INTO update_ledger (contact_id, versions) VALUES (?1, ?2) \
                 ON CONFLICT (contact_id) DO UPDATE SET versions = ?2, \
                 lease_owner = CASE WHEN ?3 THEN NULL ELSE lease_owner END, \
                 lease_until = CASE WHEN ?3 THEN NULL ELSE lease_until END",
                params![contact_id, json, still_ours],
            )
            .map_err(sql_err)?;
            Ok(())
        })
        .await
    }

    async fn release(&self, contact_id: &str, owner: &str) -> Result<(), StoreError> {
        let (contact_id, owner) = (contact_id.to_string(), owner.to_string());
        self.write(move |conn| {
            conn.execute(
                "UPDATE update_ledger SET lease_owner = NULL, lease_until = NULL \
                 WHERE contact_id = ?1 AND lease_owner = ?2",
                params![contact_id, owner],
            )
            .map_err(sql_err)?;
            Ok(())
        })
        .await
    }
}

/// Point `lead_id` at `contact_id` (the latest link wins).
pub(crate) fn write_link(
    conn: &rusqlite::Connection,
    lead_id: &str,
    contact_id: &str,
    at: i64,
) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO lead_links (lead_id, contact_id, linked_at) VALUES (?1, ?2, ?3) \
         ON CONFLICT (lead_id) DO UPDATE SET contact_id = ?2, linked_at = ?3",
    )
    .and_then(|mut stmt| stmt.execute(params![lead_id, contact_id, at]))
    .map_err(sql_err)?;
    Ok(())
}

#[async_trait]
impl LeadLinks for SqliteStore {
    async fn link(&self, lead_id: &str, contact_id: &str, now: OffsetDateTime) -> Result<(), StoreError> {
        let (lead_id, contact_id) = (lead_id.to_string(), contact_id.to_string());
        self.write(move |conn| write_link(conn, &lead_id, &contact_id, epoch_millis(now))).await
    }

    async fn contact_for(&self, lead_id: &str) -> Result<Option<String>, StoreError> {
        let lead_id = lead_id.to_string();
        self.read(move |conn| {
            conn.query_row("SELECT contact_id FROM lead_links WHERE lead_id = ?1", params![lead_id], |r| r.get(0))
                .optional()
                .map_err(sql_err)
        })
    }

    async fn record_merge(&self, merged: &str, survivor: &str, now: OffsetDateTime) -> Result<(), StoreError> {
        let (merged, survivor) = (merged.to_string(), survivor.to_string());
        let at = epoch_millis(now);
        self.write(move |conn| {
            conn.execute(
                "INSERT INTO contact_merges (contact_id, survivor_id, merged_at) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (contact_id) DO UPDATE SET survivor_id = ?2, merged_at = ?3",
                params![merged, survivor, at],
            )
            .map_err(sql_err)?;
            Ok(())
        })
        .await
    }

    async fn merged_into(&self, contact_id: &str) -> Result<Option<String>, StoreError> {
        let contact_id = contact_id.to_string();
        self.read(move |conn| {
            conn.query_row("SELECT survivor_id FROM contact_merges WHERE contact_id = ?1", params![contact_id], |r| {
                r.get(0)
            })
            .optional()
            .map_err(sql_err)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn v(at: OffsetDateTime, f: &str) -> AppliedVersion {
        AppliedVersion { at, fingerprint: f.into() }
    }

    #[tokio::test]
    async fn leases_exclude_others_until_released_or_expired() {
        let store = SqliteStore::open_in_memory().unwrap();
        let t = datetime!(2026-11-25 10:00 UTC);
        let ttl = Duration::from_secs(30);
        assert_eq!(store.lease("7", "a", t, ttl).await.unwrap(), Lease::Granted(BTreeMap::new()));
        assert_eq!(store.lease("7", "b", t, ttl).await.unwrap(), Lease::Busy);
        assert!(matches!(store.lease("7", "a", t, ttl).await.unwrap(), Lease::Granted(_)), "re-entrant");
        assert!(matches!(store.lease("8", "b", t, ttl).await.unwrap(), Lease::Granted(_)), "per contact");
        store.commit("7", "a", &BTreeMap::from([("status".into(), v(t, "x"))])).await.unwrap();
        assert_eq!(
            store.lease("7", "b", t, ttl).await.unwrap(),
            Lease::Granted(BTreeMap::from([("status".into(), v(t, "x"))]))
        );
        store.release("7", "b").await.unwrap();
        assert!(matches!(store.lease("7", "c", t, ttl).await.unwrap(), Lease::Granted(_)));
        let later = t + time::Duration::seconds(31);
        assert!(matches!(store.lease("7", "d", later, ttl).await.unwrap(), Lease::Granted(_)), "expired lease");
    }

    #[tokio::test]
    async fn commits_keep_the_newest_version_of_each_group() {
        let store = SqliteStore::open_in_memory().unwrap();
        let t = datetime!(2026-11-25 10:00 UTC);
        let older = t - time::Duration::minutes(1);
        store.commit("7", "a", &BTreeMap::from([("status".into(), v(t, "new"))])).await.unwrap();
        let both = BTreeMap::from([("status".into(), v(older, "old")), ("score".into(), v(older, "s"))]);
        store.commit("7", "b", &both).await.unwrap();
        let Lease::Granted(versions) = store.lease("7", "c", t, Duration::from_secs(1)).await.unwrap() else {
            panic!("busy")
        };
        assert_eq!(versions["status"], v(t, "new"));
        assert_eq!(versions["score"], v(older, "s"));
    }

    #[tokio::test]
    async fn lead_links_resolve_and_follow_the_latest_contact() {
        let store = SqliteStore::open_in_memory().unwrap();
        let t = datetime!(2026-11-25 10:00 UTC);
        assert_eq!(store.contact_for("L-1").await.unwrap(), None);
        store.link("L-1", "101", t).await.unwrap();
        store.link("L-1", "202", t).await.unwrap();
        assert_eq!(store.contact_for("L-1").await.unwrap().as_deref(), Some("202"));
        assert_eq!(store.merged_into("202").await.unwrap(), None);
        store.record_merge("202", "303", t).await.unwrap();
        store.record_merge("202", "404", t).await.unwrap();
        assert_eq!(store.merged_into("202").await.unwrap().as_deref(), Some("404"), "the latest merge wins");
    }
}
