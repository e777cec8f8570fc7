//! Raw config → checked config. No I/O: durations, addresses, URLs and cron schedules are
//! parsed, jq programs compiled, names and cross-references checked, defaults filled in.
//! The first problem found is reported, with the path of its field.
//!
//! [`validate`] is the only entry point; it checks the sections in order, each in its file:
//! `settings.rs` (`[store]`, `[server]`, `[engine]`), `endpoints.rs`, `flows.rs` (flows and
//! `[ownership]`), `inventory.rs`, `pricing.rs`, `orders.rs`, `alerts.rs`, `access.rs`
//! (`[admin]`, `[commerce]`, `[metrics]`); `fields.rs` holds the field checks they share.
//! Nothing in this module may do I/O or report more than the first problem.

mod access;
mod alerts;
mod endpoints;
mod fields;
mod flows;
mod inventory;
mod orders;
mod pricing;
mod reconcile;
mod settings;

use super::raw::RawConfig;
use super::{Config, FlowConfig, Issue};
use endpoints::{check_url, endpoint};
use fields::{
    check_name, compile, config_amount, duration, endpoint_list, known_endpoint, positive,
    positive_u32, quoted_list, required_list,
};
use flows::{flow, inbound_mappings_agree, ownership};
use inventory::inventory;
use pricing::pricing;
use settings::{engine, server, store};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

/// Longest duration accepted anywhere (a hundred years): larger values are surely mistakes.
const MAX_DURATION: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

type Result<T> = std::result::Result<T, Issue>;

pub(crate) fn validate(raw: RawConfig, file: &Path) -> Result<Config> {
    let store = store(&raw.store, file)?;
    let server = server(&raw.server)?;
    let engine = engine(&raw.engine)?;

    if raw.endpoints.is_empty() {
        return Err(Issue::new(
            "endpoints",
            "at least one endpoint is required (an `[endpoints.NAME]` table)",
        ));
    }
    let mut endpoints = BTreeMap::new();
    for (name, ep) in raw.endpoints {
        let spec = endpoint(&name, ep)?;
        endpoints.insert(name, spec);
    }

    if raw.flows.is_empty() {
        return Err(Issue::new(
            "flows",
            "at least one flow is required (a `[[flows]]` table)",
        ));
    }
    let mut flows: Vec<FlowConfig> = Vec::with_capacity(raw.flows.len());
    for (i, f) in raw.flows.into_iter().enumerate() {
        let at = format!("flows[{i}]");
        let flow = flow(&at, f, &endpoints, &engine.jq)?;
        if let Some(j) = flows.iter().position(|g| g.name == flow.name) {
            return Err(Issue::new(
                format!("{at}.name"),
                format!(
                    "duplicate flow name `{}` (already used by flows[{j}])",
                    flow.name
                ),
            ));
        }
        flows.push(flow);
    }
    inbound_mappings_agree(&flows)?;

    let ownership = ownership(raw.ownership, &endpoints)?;

    let inventory = match raw.inventory {
        Some(inv) => Some(inventory(inv, &endpoints, &flows)?),
        None => None,
    };

    let pricing = match raw.pricing {
        Some(p) => Some(pricing(p)?),
        None => None,
    };
    let orders = orders::orders(raw.orders)?;
    let alerts = alerts::alerts(raw.alerts, &endpoints)?;
    let admin = access::admin(raw.admin)?;
    let commerce = access::commerce(raw.commerce, &endpoints)?;
    let metrics = access::metrics(raw.metrics)?;

    Ok(Config {
        path: file.to_path_buf(),
        store,
        server,
        engine,
        endpoints,
        flows,
        ownership,
        inventory,
        pricing,
        orders,
        alerts,
        admin,
        commerce,
        metrics,
        literal_secrets: Vec::new(),
    })
}
