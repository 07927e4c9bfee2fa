//! The turn of a `serve`'s retry workers: one tick's store work at a time across every worker of the process
//! (the default tenant's and each tenant's), handed round in order, so twenty backlogs' SQLite writes take one
//! core and leave the other to the request path. A worker steps out of its turn while it waits on HubSpot (its
//! rate limit, the call itself) or on a referral partner: a tenant whose portal or partner is slow or at its limit
//! then holds nobody up, and every tenant can drain at its own portal's pace at once.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use hubrelay_core::domain::ContactUpsert;
use hubrelay_core::hubspot::{
    CrmObject, Engagement, EngagementKind, HubSpot, HubSpotError, PropertyDefinition, UpsertResults,
};
use hubrelay_core::partners::extole::{ExtoleAccepted, ExtoleEvent};
use hubrelay_core::partners::impact::{ImpactAccepted, ImpactConversion};
use hubrelay_core::partners::{Extole, Impact, PartnerError};

/// One worker's place in the process's lane.
pub struct Turn {
    lane: Arc<Semaphore>,
    state: Mutex<TurnState>,
}

#[derive(Default)]
struct TurnState {
    /// Held while the worker does store work within a tick.
    permit: Option<OwnedSemaphorePermit>,
    /// In a tick (between [`Turn::take`] and [`Turn::give_back`]).
    ticking: bool,
    /// HubSpot calls in flight, the turn given up for them.
    out: usize,
    /// A call that answered is taking the turn back (one at a time: two waiting for the lane's one permit, the
    /// second would wait on the first, which keeps it until the tick ends).
    returning: bool,
}

impl Turn {
    pub fn new(lane: Arc<Semaphore>) -> Arc<Turn> {
        Arc::new(Turn { lane, state: Mutex::new(TurnState::default()) })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, TurnState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits for the worker's turn (in order with the others); `false` when the lane is gone.
    pub async fn take(&self) -> bool {
        let Ok(permit) = self.lane.clone().acquire_owned().await else { return false };
        let mut state = self.state();
        state.permit = Some(permit);
        state.ticking = true;
        true
    }

    /// The tick is over: the next worker's turn.
    pub fn give_back(&self) {
        let mut state = self.state();
        state.permit = None;
        state.ticking = false;
    }

    /// Runs `call` (a HubSpot request, with its rate-limit wait) out of the turn; the turn is taken again, in
    /// order, when the tick's last call in flight has answered.
    pub async fn outside<T>(&self, call: impl Future<Output = T>) -> T {
        /// Counts the call as answered however it ends (a dropped future included).
        struct Out<'a>(&'a Turn);
        impl Drop for Out<'_> {
            fn drop(&mut self) {
                self.0.state().out -= 1;
            }
        }
        {
            let mut state = self.state();
            state.out += 1;
            state.permit = None;
        }
        let out = Out(self);
        let result = call.await;
        drop(out);
        let back = {
            let mut state = self.state();
            let back = state.ticking && state.out == 0 && state.permit.is_none() && !state.returning;
            state.returning |= back;
            back
        };
        if back {
            let permit = self.lane.clone().acquire_owned().await;
            let mut state = self.state();
            state.returning = false;
            if let Ok(permit) = permit {
                if state.ticking && state.out == 0 && state.permit.is_none() {
                    state.permit = Some(permit);
                }
            }
        }
        result
    }
}

/// A worker's HubSpot client whose every call runs outside the worker's turn.
pub struct OutsideTurn {
    inner: Arc<dyn HubSpot>,
    turn: Arc<Turn>,
}

impl OutsideTurn {
    pub fn new(inner: Arc<dyn HubSpot>, turn: Arc<Turn>) -> Self {
        OutsideTurn { inner, turn }
    }
}

#[async_trait]
impl HubSpot for OutsideTurn {
    async fn upsert_contacts(&self, inputs: &[ContactUpsert]) -> Result<UpsertResults, HubSpotError> {
        self.turn.outside(self.inner.upsert_contacts(inputs)).await
    }

    async fn list_properties(&self) -> Result<Vec<PropertyDefinition>, HubSpotError> {
        self.turn.outside(self.inner.list_properties()).await
    }

    async fn create_property(&self, property: &PropertyDefinition) -> Result<(), HubSpotError> {
        self.turn.outside(self.inner.create_property(property)).await
    }

    async fn create_deal(
        &self,
        properties: &BTreeMap<String, String>,
        contact_id: &str,
    ) -> Result<String, HubSpotError> {
        self.turn.outside(self.inner.create_deal(properties, contact_id)).await
    }

    async fn gdpr_delete_contact(&self, id: &str, by_email: bool) -> Result<bool, HubSpotError> {
        self.turn.outside(self.inner.gdpr_delete_contact(id, by_email)).await
    }

    async fn read_contacts_by_email(
        &self,
        emails: &[String],
        properties: &[&str],
    ) -> Result<Vec<CrmObject>, HubSpotError> {
        self.turn.outside(self.inner.read_contacts_by_email(emails, properties)).await
    }

    async fn search_contacts(
        &self,
        property: &str,
        value: &str,
        properties: &[&str],
    ) -> Result<Vec<CrmObject>, HubSpotError> {
        self.turn.outside(self.inner.search_contacts(property, value, properties)).await
    }

    async fn update_contact(&self, id: &str, properties: &BTreeMap<String, String>) -> Result<(), HubSpotError> {
        self.turn.outside(self.inner.update_contact(id, properties)).await
    }

    async fn create_engagement(&self, engagement: &Engagement) -> Result<String, HubSpotError> {
        self.turn.outside(self.inner.create_engagement(engagement)).await
    }

    async fn contact_id_by_email(&self, email: &str) -> Result<Option<String>, HubSpotError> {
        self.turn.outside(self.inner.contact_id_by_email(email)).await
    }

    async fn associated_ids(&self, from: &str, id: &str, to: &str) -> Result<Vec<String>, HubSpotError> {
        self.turn.outside(self.inner.associated_ids(from, id, to)).await
    }

    async fn contact_engagements(&self, contact_id: &str, kind: EngagementKind) -> Result<Vec<String>, HubSpotError> {
        self.turn.outside(self.inner.contact_engagements(contact_id, kind)).await
    }

    async fn engagement_properties(
        &self,
        kind: EngagementKind,
        id: &str,
        properties: &[&str],
    ) -> Result<BTreeMap<String, String>, HubSpotError> {
        self.turn.outside(self.inner.engagement_properties(kind, id, properties)).await
    }

    async fn read_archived_contact(&self, id: &str, properties: &[&str]) -> Result<Option<CrmObject>, HubSpotError> {
        self.turn.outside(self.inner.read_archived_contact(id, properties)).await
    }

    async fn read_object(
        &self,
        object: &str,
        id: &str,
        properties: &[&str],
        associations: &[&str],
    ) -> Result<Option<CrmObject>, HubSpotError> {
        self.turn.outside(self.inner.read_object(object, id, properties, associations)).await
    }
}

/// A worker's Extole client whose calls run outside the worker's turn.
pub struct ExtoleOutsideTurn(pub Arc<dyn Extole>, pub Arc<Turn>);

#[async_trait]
impl Extole for ExtoleOutsideTurn {
    async fn send_event(&self, event: &ExtoleEvent) -> Result<ExtoleAccepted, PartnerError> {
        self.1.outside(self.0.send_event(event)).await
    }
}

/// A worker's impact.com client whose calls run outside the worker's turn.
pub struct ImpactOutsideTurn(pub Arc<dyn Impact>, pub Arc<Turn>);

#[async_trait]
impl Impact for ImpactOutsideTurn {
    async fn send_conversion(&self, conversion: &ImpactConversion) -> Result<ImpactAccepted, PartnerError> {
        self.1.outside(self.0.send_conversion(conversion)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn a_worker_waiting_on_hubspot_leaves_its_turn_to_the_others() {
        let lane = Arc::new(Semaphore::new(1));
        let (slow, other) = (Turn::new(lane.clone()), Turn::new(lane.clone()));
        assert!(slow.take().await);
        // While the slow worker's call waits, the other worker gets its turn.
        let call = slow.outside(async {
            assert!(tokio::time::timeout(Duration::from_secs(1), other.take()).await.unwrap());
            other.give_back();
            "answered"
        });
        assert_eq!(call.await, "answered");
        // Back in its turn after the call: the other waits until the tick is over.
        assert_eq!(lane.available_permits(), 0);
        assert!(tokio::time::timeout(Duration::from_millis(50), other.take()).await.is_err());
        slow.give_back();
        assert!(tokio::time::timeout(Duration::from_secs(1), other.take()).await.unwrap());
        other.give_back();
        assert_eq!(lane.available_permits(), 1);
    }

    #[tokio::test]
    async fn a_call_given_up_still_counts_as_answered() {
        let lane = Arc::new(Semaphore::new(1));
        let turn = Turn::new(lane.clone());
        assert!(turn.take().await);
        let never = turn.outside(std::future::pending::<()>());
        assert!(tokio::time::timeout(Duration::from_millis(20), never).await.is_err());
        // The next call takes the turn back when it answers, as if the first had.
        turn.outside(async {}).await;
        assert_eq!(lane.available_permits(), 0, "in its turn again");
        turn.give_back();
        assert_eq!(lane.available_permits(), 1);
    }

    #[tokio::test]
    async fn a_call_answering_while_another_takes_the_turn_back_does_not_wait_for_it() {
        let lane = Arc::new(Semaphore::new(1));
        let (turn, other) = (Turn::new(lane.clone()), Turn::new(lane.clone()));
        assert!(turn.take().await);
        // The other worker holds the lane while this one's first call answers and waits to come back.
        let first = turn.outside(async {
            assert!(other.take().await);
        });
        let mut first = Box::pin(first);
        assert!(tokio::time::timeout(Duration::from_millis(20), &mut first).await.is_err(), "waiting for the lane");
        // A second call answers meanwhile: it must not queue behind the first for the one permit.
        tokio::time::timeout(Duration::from_secs(1), turn.outside(async {})).await.expect("not stuck");
        other.give_back();
        tokio::time::timeout(Duration::from_secs(1), first).await.expect("back in turn");
        turn.give_back();
        assert_eq!(lane.available_permits(), 1);
    }

    #[tokio::test]
    async fn concurrent_calls_take_the_turn_back_once() {
        let lane = Arc::new(Semaphore::new(1));
        let turn = Turn::new(lane.clone());
        assert!(turn.take().await);
        let pause = || tokio::time::sleep(Duration::from_millis(20));
        tokio::join!(turn.outside(pause()), turn.outside(pause()), turn.outside(pause()));
        assert_eq!(lane.available_permits(), 0, "one permit, held again");
        turn.give_back();
        assert_eq!(lane.available_permits(), 1);
        // Outside a tick (the inline path's calls, say) nothing is taken.
        turn.outside(pause()).await;
        assert_eq!(lane.available_permits(), 1);
    }
}
