//! Backfill (design §10, `concord backfill FLOW`): one flow run as a one-off migration, in the
//! foreground, through the normal path (capture → journal → … → delivery).
//!
//! The engine starts as for `run` — processor, every dispatcher, the stock pool — but the only
//! reader is the migration of this flow from each of its sources (`capture::migrate`): pages of
//! the source's full listing stored atomically with their page token under the stream
//! `<kind>:migration:<flow>`, `done` at the end. A killed backfill therefore resumes from the
//! last stored page, and a finished one is known to be finished. [`Engine::forget_backfill`]
//! resets the cursors (to an empty value, read as "from the start") so that it runs again.
//!
//! Other flows' pollers do not run during a backfill; their feeds resume at the next `run`.

use super::{capture, Engine, EngineError};
use crate::config::FlowConfig;
use concord_store::CursorUpdate;
use futures::FutureExt;
use tokio::task::JoinSet;

/// Where a backfill stands, read from the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackfillState {
    /// Per source endpoint: its stored migration cursor (`None` = never started, `Some("done")`
    /// = read to the end).
    pub sources: Vec<(String, Option<String>)>,
    /// Journal entries not yet processed (any flow).
    pub journal_pending: u64,
    /// Over the flow's destinations: items pending or in flight, parked (waiting for
    /// dependencies), delivered and dead-lettered (all time, every flow to that destination).
    pub queued: u64,
    pub parked: u64,
    pub done: u64,
    pub dead: u64,
}

impl BackfillState {
    /// Every source has been read to the end.
    pub fn read_to_end(&self) -> bool {
        self.sources
            .iter()
            .all(|(_, c)| c.as_deref() == Some("done"))
    }

    /// Read to the end, every captured record processed and nothing left to deliver.
    pub fn finished(&self) -> bool {
        self.read_to_end() && self.journal_pending == 0 && self.queued == 0
    }
}

impl Engine {
    /// The flow named `name`, if it can be backfilled: each of its sources must be able to list
    /// the flow's kind (whatever the flow's mode).
    pub fn backfill_flow(&self, name: &str) -> Result<&FlowConfig, EngineError> {
        let (i, flow) = self
            .inner
            .config
            .flows
            .iter()
            .enumerate()
            .find(|(_, f)| f.name == name)
            .ok_or_else(|| EngineError::UnknownFlow(name.to_string()))?;
        for src in &flow.from {
            let c = self
                .inner
                .connectors
                .get(src)
                .ok_or_else(|| EngineError::MissingConnector(src.clone()))?;
            if !c.capabilities().kind(flow.kind).read.snapshot {
                return Err(EngineError::Capability {
                    path: format!("flows[{i}].from"),
                    message: format!(
                        "endpoint `{src}` ({}) cannot list its {} records, which a backfill needs",
                        c.connector_type(),
                        flow.kind
                    ),
                });
            }
        }
        Ok(flow)
    }

    /// Where the backfill of flow `name` stands.
    pub async fn backfill_state(&self, name: &str) -> Result<BackfillState, EngineError> {
        let flow = self.backfill_flow(name)?;
        let stream = capture::migration_stream(flow.kind, &flow.name);
        let mut sources = Vec::new();
        for src in &flow.from {
            let c = self.inner.store.cursor(src, &stream).await?;
            sources.push((src.clone(), c.filter(|v| !v.is_empty())));
        }
        let stats = self.inner.store.stats().await?;
        let mut state = BackfillState {
            sources,
            journal_pending: stats.journal_pending,
            queued: 0,
            parked: 0,
            done: 0,
            dead: 0,
        };
        for q in stats.queues.iter().filter(|q| flow.to.contains(&q.dest)) {
            state.queued += q.pending + q.inflight;
            state.parked += q.parked;
            state.done += q.done;
            state.dead += q.dead;
        }
        Ok(state)
    }

    /// Forget where the backfill of flow `name` got to, so that it reads everything again.
    pub async fn forget_backfill(&self, name: &str) -> Result<(), EngineError> {
        let flow = self.backfill_flow(name)?;
        let stream = capture::migration_stream(flow.kind, &flow.name);
        for src in &flow.from {
            let cursor = CursorUpdate {
                endpoint: src.clone(),
                stream: stream.clone(),
                value: String::new(),
            };
            self.inner.store.ingest(Vec::new(), Some(cursor)).await?;
        }
        Ok(())
    }

    /// Start the engine for a backfill of flow `name`: every task [`Engine::start`] starts
    /// except the readers, and the migration of this flow from each of its sources (resuming
    /// from its stored cursor; nothing to read when it is `done`). Stop with
    /// [`Engine::shutdown`].
    pub async fn start_backfill(&self, name: &str) -> Result<JoinSet<()>, EngineError> {
        let flow = self.backfill_flow(name)?.clone();
        let mut tasks = self.start_without_readers().await?;
        for src in &flow.from {
            let inner = self.inner.clone();
            let (src, kind, page, name) =
                (src.clone(), flow.kind, flow.page_size, flow.name.clone());
            let task = format!("migration:{name}:{src}");
            super::supervise::spawn(&self.inner, &mut tasks, task, move || {
                capture::migrate(inner.clone(), src.clone(), kind, page, name.clone()).boxed()
            });
        }
        Ok(tasks)
    }
}
