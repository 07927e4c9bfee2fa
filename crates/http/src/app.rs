//! The one place a deployment is wired: stores, HubSpot clients and settings in; every function's service,
//! the retry worker and the routes out. `hubrelay serve` and every Lambda build theirs here, so a setting
//! means the same thing everywhere.

use std::sync::Arc;

use axum::Router;
use hubrelay_core::batching::UpsertBatcher;
use hubrelay_core::config::{ConfigError, RelaySettings};
use hubrelay_core::domain::FunctionName;
use hubrelay_core::hubspot::HubSpot;
use hubrelay_core::metrics::Metrics;
use hubrelay_core::missing_properties::MissingProperties;
use hubrelay_core::notify::Notifications;
use hubrelay_core::outbound::OutboundSender;
use hubrelay_core::partners::advocate::AdvocateParticipants;
use hubrelay_core::partners::{Extole, Impact};
use hubrelay_core::privacy::PersonalData;
use hubrelay_core::referral::deliver::ReferralDelivery;
use hubrelay_core::store::{ContactVersions, EventLog, IdempotencyStore, LeadLinks, RetryQueue, UpdateLedger};
use hubrelay_core::updates::UpdateDelivery;
use hubrelay_core::worker::{ContactLocks, RetryWorker};

use crate::intake::{Intake, IN_PROGRESS_WAIT};
use crate::referrals::{ReferralService, ReferralSource};
use crate::{referral_routes, update_routes, LeadService, UpdateService, ACTIVITIES_PATH, STATUS_PATH};

/// Where a deployment keeps its state: one store for records (SQLite, or the DynamoDB table) and the
/// retry queue (with its dead-letter queue).
#[derive(Clone)]
pub struct Stores {
    pub idempotency: Arc<dyn IdempotencyStore>,
    pub events: Arc<dyn EventLog>,
    pub versions: Arc<dyn ContactVersions>,
    pub ledger: Arc<dyn UpdateLedger>,
    pub links: Arc<dyn LeadLinks>,
    pub queue: Arc<dyn RetryQueue>,
}

impl Stores {
    /// `records` keeps idempotency keys, the event log, contact versions, the update ledger and lead links.
    pub fn new<R>(records: Arc<R>, queue: Arc<dyn RetryQueue>) -> Stores
    where
        R: IdempotencyStore + EventLog + ContactVersions + UpdateLedger + LeadLinks + 'static,
    {
        Stores {
            idempotency: records.clone(),
            events: records.clone(),
            versions: records.clone(),
            ledger: records.clone(),
            links: records,
            queue,
        }
    }
}

/// A deployment's settings and stores, and what they build.
pub struct Relay {
    settings: RelaySettings,
    stores: Stores,
    /// Shared by the inline path and the worker of one process (`hubrelay serve`); `None` in a Lambda.
    locks: Option<Arc<ContactLocks>>,
    /// Properties HubSpot said the portal lacks, shared by every service this relay builds.
    missing: Arc<MissingProperties>,
    /// The least time between two inline `batch/upsert` calls, when leads are micro-batched.
    inline_batching: Option<std::time::Duration>,
    /// Where its services and worker count outcomes (scoped to the relay's tenant).
    metrics: Metrics,
    /// Told of events dead-lettered and of dead-lettered events delivered (scoped to the relay's tenant).
    notifications: Notifications,
    /// Where HubSpot's GDPR deletions erase the person (`serve`'s store); `None`: they are parked.
    personal: Option<Arc<dyn PersonalData>>,
    /// Where HubSpot's contact changes are sent (outbound contact sync), when configured.
    outbound: Option<Arc<dyn OutboundSender>>,
    /// impact.com Advocate participants (the participant sync), when configured.
    advocate: Option<Arc<dyn AdvocateParticipants>>,
}

impl Relay {
    pub fn new(settings: &RelaySettings, stores: Stores) -> Relay {
        Relay {
            settings: settings.clone(),
            stores,
            locks: None,
            missing: MissingProperties::new(),
            inline_batching: None,
            metrics: Metrics::default(),
            notifications: Notifications::default(),
            personal: None,
            outbound: None,
            advocate: None,
        }
    }

    /// Sync HubSpot contacts to impact.com Advocate participants through `advocate`.
    pub fn with_advocate(mut self, advocate: Arc<dyn AdvocateParticipants>) -> Self {
        self.advocate = Some(advocate);
        self
    }

    /// Send HubSpot's contact changes (app webhooks on the HubSpot referral route) through `sender`.
    pub fn with_outbound(mut self, sender: Arc<dyn OutboundSender>) -> Self {
        self.outbound = Some(sender);
        self
    }

    /// Let the worker erase a person HubSpot GDPR-deleted (`contact.privacyDeletion`) from `personal`.
    pub fn with_personal_data(mut self, personal: Arc<dyn PersonalData>) -> Self {
        self.personal = Some(personal);
        self
    }

    /// Send notices of events dead-lettered, and of dead-lettered events delivered, through `notifications`.
    pub fn with_notifications(mut self, notifications: Notifications) -> Self {
        self.notifications = notifications;
        self
    }

    /// Count every outcome of this relay's services and worker in `metrics` (scoped to its tenant).
    pub fn with_metrics(mut self, metrics: Metrics) -> Self {
        self.metrics = metrics;
        self
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Per-contact locks shared by the inline path and the worker of the same process, so an inline
    /// delivery never lands between the worker's check of a contact and its write.
    pub fn with_contact_locks(mut self, locks: Arc<ContactLocks>) -> Self {
        self.locks = Some(locks);
        self
    }

    /// Micro-batch the inline path: leads arriving together share one call, and calls start at most once per
    /// `min_interval` — the inline path's share of the portal's budget (the worker keeps the rest).
    pub fn with_inline_batching(mut self, min_interval: std::time::Duration) -> Self {
        self.inline_batching = Some(min_interval);
        self
    }

    /// Where the request path queues events (`serve` puts a queue in front of its store that wakes its worker).
    pub fn with_queue(mut self, queue: Arc<dyn RetryQueue>) -> Self {
        self.stores.queue = queue;
        self
    }

    /// The steps every endpoint shares (auth, body limit, idempotency, retry queue, event log). Fails when
    /// no sender auth is configured (the worker needs none, an endpoint does).
    pub fn intake(&self) -> Result<Intake, ConfigError> {
        let s = &self.settings;
        Ok(Intake {
            auth: s.authenticator()?,
            idempotency: self.stores.idempotency.clone(),
            queue: self.stores.queue.clone(),
            events: self.stores.events.clone(),
            schedule: s.retry_schedule.clone(),
            max_body_bytes: s.max_body_bytes,
            in_progress_wait: IN_PROGRESS_WAIT,
            jitter: s.retry_jitter,
            metrics: self.metrics.clone(),
            notifications: self.notifications.clone(),
        })
    }

    /// `POST /v1/leads`: one HubSpot call through `hubspot`, lead ids linked to their contacts.
    pub fn lead_service(&self, hubspot: Arc<dyn HubSpot>) -> Result<LeadService, ConfigError> {
        let service = LeadService::new(self.intake()?, self.settings.mapping.clone(), hubspot.clone())
            .linking_lead_ids()
            .with_missing_properties(self.missing.clone());
        let service = match self.inline_batching {
            Some(interval) => {
                service.with_batcher(UpsertBatcher::spawn(hubspot.clone(), interval, self.missing.clone()))
            }
            None => service,
        };
        Ok(match &self.locks {
            Some(locks) => service.with_contact_locks(locks.clone()),
            None => service,
        })
    }

    /// Status updates and activities written through `hubspot`, in order per contact.
    pub fn update_delivery(&self, hubspot: Arc<dyn HubSpot>) -> UpdateDelivery {
        UpdateDelivery::new(
            hubspot,
            self.stores.ledger.clone(),
            self.stores.links.clone(),
            self.settings.mapping.clone(),
        )
    }

    /// `POST /v1/leads/status` ([`FunctionName::StatusUpdate`]) or `/v1/leads/activities` ([`FunctionName::Activity`]).
    pub fn update_service(
        &self,
        function: FunctionName,
        hubspot: Arc<dyn HubSpot>,
    ) -> Result<UpdateService, ConfigError> {
        Ok(UpdateService::new(function, self.intake()?, Arc::new(self.update_delivery(hubspot))))
    }

    /// The three referral routes (`/v1/referrals/{hubspot,extole,impact}`) with the partners' webhook secrets.
    pub fn referral_routes(&self) -> Result<Router, ConfigError> {
        let (extole, impact) = self.settings.referral.verifiers()?;
        let config = &self.settings.referral.config;
        let service = |source, verifier| -> Result<_, ConfigError> {
            let service = ReferralService::new(source, self.intake()?, verifier, config.clone());
            Ok(Arc::new(match (&self.settings.outbound, source) {
                (Some(target), ReferralSource::HubSpot) => service.with_outbound(target.own_source_ids.clone()),
                _ => service,
            }))
        };
        Ok(referral_routes(service(ReferralSource::HubSpot, None)?)
            .merge(referral_routes(service(ReferralSource::Extole, extole)?))
            .merge(referral_routes(service(ReferralSource::Impact, impact)?)))
    }

    /// The status and activity routes, both through `hubspot`.
    pub fn update_routes(&self, hubspot: Arc<dyn HubSpot>) -> Result<Router, ConfigError> {
        let status = self.update_service(FunctionName::StatusUpdate, hubspot.clone())?;
        let activity = self.update_service(FunctionName::Activity, hubspot)?;
        Ok(update_routes(STATUS_PATH, Arc::new(status)).merge(update_routes(ACTIVITIES_PATH, Arc::new(activity))))
    }

    /// The worker of the retry queue: leads in batches, status updates, activities and referral actions
    /// (a partner left out parks its actions as `not_configured` until it is configured and they are redriven).
    pub fn retry_worker(
        &self,
        hubspot: Arc<dyn HubSpot>,
        extole: Option<Arc<dyn Extole>>,
        impact: Option<Arc<dyn Impact>>,
    ) -> RetryWorker {
        let s = &self.settings;
        let mut referrals = ReferralDelivery::new(hubspot.clone(), extole, impact, s.referral.config.clone())
            .with_links(self.stores.links.clone());
        if let Some(personal) = &self.personal {
            referrals = referrals.with_personal_data(personal.clone());
        }
        if let Some(outbound) = &self.outbound {
            referrals = referrals.with_outbound(outbound.clone());
        }
        if let Some(advocate) = &self.advocate {
            referrals = referrals.with_advocate(advocate.clone());
        }
        let worker = RetryWorker::new(
            hubspot.clone(),
            s.mapping.clone(),
            s.retry_schedule.clone(),
            s.retry_jitter,
            self.stores.versions.clone(),
            self.stores.events.clone(),
        )
        .with_lead_links(self.stores.links.clone())
        .with_follow_ups(self.stores.queue.clone())
        .with_missing_properties(self.missing.clone())
        .with_updates(Arc::new(self.update_delivery(hubspot)))
        .with_referrals(Arc::new(referrals))
        .with_metrics(self.metrics.clone())
        .with_notifications(self.notifications.clone());
        match &self.locks {
            Some(locks) => worker.with_contact_locks(locks.clone()),
            None => worker,
        }
    }
}
