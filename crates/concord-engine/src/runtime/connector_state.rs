//! Durable state connectors ask the engine to keep (`Connector::state_updates`): an OAuth2
//! refresh token the provider rotated is the case it exists for — the old token no longer
//! works, so losing the new one at a restart would lock the hub out of the API.
//!
//! At start, before any reader or dispatcher runs, each such connector gets its stored value
//! back (`restore_state`). Then one task per connector stores every new value it publishes
//! (only the latest matters; a failed write is retried with backoff), and stores the last one
//! again at shutdown if it was not yet.
//!
//! Must never: interpret or log the value (it is a secret).

use super::Inner;
use concord_store::StoreError;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinSet;

/// Hand every connector the state kept for it. Before anything calls the connectors.
pub(crate) async fn restore(inner: &Inner) -> Result<(), StoreError> {
    for (name, c) in &inner.connectors {
        if c.state_updates().is_none() {
            continue;
        }
        match inner.store.connector_state(name).await {
            Ok(Some(saved)) => c.restore_state(&saved),
            Ok(None) | Err(StoreError::Unsupported(_)) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// One task per connector that publishes state.
pub(crate) fn spawn(inner: &Arc<Inner>, tasks: &mut JoinSet<()>) {
    use futures::FutureExt;
    for (name, c) in &inner.connectors {
        if let Some(rx) = c.state_updates() {
            let (i, endpoint) = (inner.clone(), name.clone());
            super::supervise::spawn(
                inner,
                tasks,
                format!("connector_state:{name}"),
                move || keep(i.clone(), endpoint.clone(), rx.clone()).boxed(),
            );
        }
    }
}

async fn save(inner: &Inner, endpoint: &str, value: &str) -> bool {
    let mut delay = Duration::from_millis(50);
    for attempt in 1..=8 {
        match inner
            .store
            .set_connector_state(endpoint, value, inner.now())
            .await
        {
            Ok(()) => return true,
            Err(e) => {
                tracing::error!(%endpoint, attempt, error = %e, "cannot keep the connector's state (a rotated credential); retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    }
    false
}

async fn keep(
    inner: Arc<Inner>,
    endpoint: String,
    mut rx: tokio::sync::watch::Receiver<Option<String>>,
) {
    let mut shutdown = inner.shutdown.subscribe();
    let mut unsaved: Option<String> = None;
    loop {
        if let Some(v) = unsaved.take() {
            if !save(&inner, &endpoint, &v).await {
                unsaved = Some(v);
            }
        }
        tokio::select! {
            changed = rx.changed() => {
                if changed.is_err() {
                    break;
                }
                unsaved = rx.borrow_and_update().clone();
            }
            _ = shutdown.changed() => break,
        }
    }
    // A value published just before the stop.
    if rx.has_changed().unwrap_or(false) {
        unsaved = rx.borrow_and_update().clone();
    }
    if let Some(v) = unsaved {
        save(&inner, &endpoint, &v).await;
    }
}
