//! The planner's reads: what one batch looks up in the store (xrefs, entities, planned hashes,
//! whether a record is known at an endpoint), read ahead in a few batched calls, overlaid with
//! what earlier entries of the same batch decided so later entries see it.
//!
//! It only reads and remembers; it never writes to the store (everything the batch decides is
//! committed by the one `Store::apply` in `mod.rs`) and never decides anything.

use super::planner::Planner;
use super::resolve::record_of;
use crate::runtime::EngineError;
use concord_core::{natural_key, Kind};
use concord_store::{Entity, JournalEntry};
use serde_json::Value;
use std::collections::{BTreeSet, HashMap};

/// One batch's view of the store: the overlays (what this batch decided) take precedence over
/// the prefetched reads (made at the start of the batch, misses remembered too), which take
/// precedence over a read at the time of the lookup.
#[derive(Default)]
pub(super) struct Cache {
    /// Entities this batch wrote (the merged state).
    pub(super) entities: HashMap<(Kind, String), Entity>,
    /// Xrefs this batch created: (endpoint, kind, external id) → canonical key.
    pub(super) xref_keys: HashMap<(String, Kind, String), String>,
    /// (endpoint, kind, key) known at that endpoint (an xref exists or is being created).
    pub(super) known_at: BTreeSet<(String, Kind, String)>,
    /// Hashes this batch planned: (destination, kind, key) → content hash.
    pub(super) planned: HashMap<(String, Kind, String), String>,
    /// Store reads for the whole batch, made at its start (see [`Planner::prefetch`]).
    pub(super) pre_keys: HashMap<(String, Kind, String), Option<String>>,
    pre_entities: HashMap<(Kind, String), Option<Entity>>,
    pre_hashes: HashMap<(String, Kind, String), Option<String>>,
}

impl Planner<'_> {
    /// Read what the batch's entries will look up — their xrefs, then the entities and planned
    /// hashes of the keys they resolve to — in three batched store calls instead of three reads
    /// per entry. Reading at the start of the batch rather than entry by entry changes nothing:
    /// this processor is the only writer of entities and planned hashes until its `apply`, and
    /// a concurrent settlement could as well have landed just after a per-entry read.
    pub(super) async fn prefetch(&mut self, entries: &[JournalEntry]) -> Result<(), EngineError> {
        let config = &self.inner.config;
        let mut ids: Vec<(String, Kind, String)> = Vec::new();
        let mut seen = BTreeSet::new();
        for e in entries {
            if config.flows_for(e.kind, &e.endpoint).next().is_none() {
                continue;
            }
            let id = (e.endpoint.clone(), e.kind, e.external_id.clone());
            if seen.insert(id.clone()) {
                ids.push(id);
            }
        }
        let found = self.inner.store.xref_keys(&ids).await?;
        self.cache.pre_keys = ids.into_iter().zip(found).collect();
        let mut entity_keys: Vec<(Kind, String)> = Vec::new();
        let mut hash_keys: Vec<(String, Kind, String)> = Vec::new();
        let mut order_keys: Vec<String> = Vec::new();
        let (mut seen_e, mut seen_h) = (BTreeSet::new(), BTreeSet::new());
        for e in entries {
            if e.kind.is_order_scoped() {
                if let Some(o) = e.payload.get("order").and_then(Value::as_str) {
                    order_keys.push(o.to_string());
                }
            }
            let id = (e.endpoint.clone(), e.kind, e.external_id.clone());
            let key = match self.cache.pre_keys.get(&id) {
                Some(Some(k)) => k.clone(),
                Some(None) => match natural_key(e.kind, &record_of(e), &e.endpoint) {
                    Ok(k) => k,
                    Err(_) => continue,
                },
                None => continue,
            };
            for flow in config.flows_for(e.kind, &e.endpoint) {
                for dest in flow.to.iter().filter(|d| **d != e.endpoint) {
                    let k = (dest.clone(), e.kind, key.clone());
                    if seen_h.insert(k.clone()) {
                        hash_keys.push(k);
                    }
                }
            }
            if e.kind == Kind::Order {
                order_keys.push(key.clone());
            }
            if seen_e.insert((e.kind, key.clone())) {
                entity_keys.push((e.kind, key));
            }
        }
        // Only batches with orders or order-scoped records read lifecycle rows.
        self.orders.prefetch(self.inner, order_keys).await?;
        let store = &self.inner.store;
        let (entities, hashes) =
            tokio::try_join!(store.entities(&entity_keys), store.hashes_of(&hash_keys))?;
        self.cache.pre_entities = entity_keys.into_iter().zip(entities).collect();
        self.cache.pre_hashes = hash_keys
            .into_iter()
            .zip(hashes.into_iter().map(|(planned, _)| planned))
            .collect();
        Ok(())
    }

    pub(in crate::runtime) async fn entity(
        &mut self,
        kind: Kind,
        key: &str,
    ) -> Result<Option<Entity>, EngineError> {
        let k = (kind, key.to_string());
        if let Some(e) = self.cache.entities.get(&k) {
            return Ok(Some(e.clone()));
        }
        if let Some(e) = self.cache.pre_entities.get(&k) {
            return Ok(e.clone());
        }
        Ok(self.inner.store.entity(kind, key).await?)
    }

    pub(super) async fn is_known_at(
        &mut self,
        endpoint: &str,
        kind: Kind,
        key: &str,
    ) -> Result<bool, EngineError> {
        let k = (endpoint.to_string(), kind, key.to_string());
        if self.cache.known_at.contains(&k) {
            return Ok(true);
        }
        let known = self
            .inner
            .store
            .xref_external(endpoint, kind, key)
            .await?
            .is_some();
        if known {
            self.cache.known_at.insert(k);
        }
        Ok(known)
    }

    pub(in crate::runtime) async fn planned_hash(
        &mut self,
        dest: &str,
        kind: Kind,
        key: &str,
    ) -> Result<Option<String>, EngineError> {
        let k = (dest.to_string(), kind, key.to_string());
        if let Some(h) = self.cache.planned.get(&k) {
            return Ok(Some(h.clone()));
        }
        if let Some(h) = self.cache.pre_hashes.get(&k) {
            return Ok(h.clone());
        }
        Ok(self.inner.store.hashes(dest, kind, key).await?.0)
    }
}
