//! Which HubSpot API version hubrelay speaks, and the paths each version uses.
//!
//! HubSpot's date-based versions put the version after the API family (`/crm/objects/2026-09/contacts`,
//! `/crm/properties/2026-09/contacts`, `/crm/associations/2026-09/...`, `/account-info/2026-09/...`). The
//! legacy `v3` paths (`/crm/v3/objects/contacts`, with v4 for association reads) stay available as a mode:
//! HubSpot stops supporting v4 paths in March 2027 and v3 in September 2027, so it is a stopgap.

use std::fmt;

/// `HUBSPOT_API_VERSION`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiVersion {
    /// A date-based version, `YYYY-03` or `YYYY-09`.
    Dated(String),
    /// `/crm/v3/...` (and `/crm/v4/...` for association reads): unsupported by HubSpot from September 2027.
    Legacy,
}

/// The version new installs use: the newest one HubSpot has released (September 2026).
pub const DEFAULT_API_VERSION: &str = "2026-09";

/// The dated releases hubrelay speaks (HubSpot supports each for 18 months; the next is due in March 2027).
pub const RELEASES: [&str; 3] = ["2025-09", "2026-03", DEFAULT_API_VERSION];

impl Default for ApiVersion {
    fn default() -> Self {
        ApiVersion::Dated(DEFAULT_API_VERSION.into())
    }
}

impl fmt::Display for ApiVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ApiVersion::Dated(v) => f.write_str(v),
            ApiVersion::Legacy => f.write_str("v3"),
        }
    }
}

impl std::str::FromStr for ApiVersion {
    type Err = String;

    /// `v3`, or a dated release HubSpot has shipped ([`RELEASES`]): a later one would answer 404 on every call,
    /// so it is refused at start rather than taken.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.eq_ignore_ascii_case("v3") {
            return Ok(ApiVersion::Legacy);
        }
        if RELEASES.contains(&s) {
            return Ok(ApiVersion::Dated(s.to_string()));
        }
        Err(format!(
            "`{s}` is not a HubSpot API version this hubrelay knows: use {} (the default {DEFAULT_API_VERSION}), or v3 for the legacy paths",
            RELEASES.join(", ")
        ))
    }
}

impl ApiVersion {
    /// A CRM object path: `rest` is what follows `objects/` (`contacts/batch/upsert`, `notes/123`, ...).
    pub fn objects(&self, rest: &str) -> String {
        match self {
            ApiVersion::Dated(v) => format!("/crm/objects/{v}/{rest}"),
            ApiVersion::Legacy => format!("/crm/v3/objects/{rest}"),
        }
    }

    /// A property path: `rest` is what follows `properties/` (`contacts`, `contacts/{name}`).
    pub fn properties(&self, rest: &str) -> String {
        match self {
            ApiVersion::Dated(v) => format!("/crm/properties/{v}/{rest}"),
            ApiVersion::Legacy => format!("/crm/v3/properties/{rest}"),
        }
    }

    /// Account information: `rest` is `details` or `api-usage/daily/private-apps`.
    pub fn account_info(&self, rest: &str) -> String {
        match self {
            ApiVersion::Dated(v) => format!("/account-info/{v}/{rest}"),
            ApiVersion::Legacy => format!("/account-info/v3/{rest}"),
        }
    }

    /// How a record's associations to one object type are read.
    pub fn association_read(&self, from: &str, id: &str, to: &str) -> AssociationRead {
        match self {
            // The dated specs list no per-record GET; batch/read with one input, paged by `after`.
            ApiVersion::Dated(v) => {
                AssociationRead::Batch { path: format!("/crm/associations/{v}/{from}/{to}/batch/read") }
            }
            ApiVersion::Legacy => {
                AssociationRead::Get { path: format!("/crm/v4/objects/{from}/{id}/associations/{to}") }
            }
        }
    }
}

/// The call that reads one record's associations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AssociationRead {
    /// `POST` `{"inputs":[{"id":…,"after":…}]}`; each result's `paging.next.after` names the next page.
    Batch { path: String },
    /// `GET ?limit=…&after=…`; `paging.next.after` names the next page.
    Get { path: String },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dated_paths_put_the_version_after_the_api_family() {
        let v = ApiVersion::default();
        assert_eq!(v.objects("contacts/batch/upsert"), "/crm/objects/2026-09/contacts/batch/upsert");
        assert_eq!(v.properties("contacts"), "/crm/properties/2026-09/contacts");
        assert_eq!(v.account_info("details"), "/account-info/2026-09/details");
        assert_eq!(
            v.association_read("contacts", "7", "notes"),
            AssociationRead::Batch { path: "/crm/associations/2026-09/contacts/notes/batch/read".into() }
        );
    }

    #[test]
    fn legacy_paths_are_v3_with_v4_association_reads() {
        let v: ApiVersion = "v3".parse().unwrap();
        assert_eq!(v.objects("contacts/7"), "/crm/v3/objects/contacts/7");
        assert_eq!(v.properties("contacts"), "/crm/v3/properties/contacts");
        assert_eq!(
            v.association_read("deals", "9", "contacts"),
            AssociationRead::Get { path: "/crm/v4/objects/deals/9/associations/contacts".into() }
        );
    }

    #[test]
    fn versions_parse_as_hubspot_releases_them() {
        assert_eq!("2026-03".parse::<ApiVersion>().unwrap(), ApiVersion::Dated("2026-03".into()));
        assert_eq!("V3".parse::<ApiVersion>().unwrap(), ApiVersion::Legacy);
        for bad in ["2026-10", "2025-03", "26-09", "v4", "", "2026-09-beta", "latest", "2031-09"] {
            let e = bad.parse::<ApiVersion>().unwrap_err();
            assert!(e.contains("not a HubSpot API version this hubrelay knows"), "{bad}: {e}");
        }
    }
}
