//! Concord's connectors: one module per API (Vector-style), each implementing
//! `concord_engine::connector::Connector`, plus the sandbox ERP and storefront emulators the demo,
//! dry runs and fault tests run against.
//!
//! [`build`] is the registry: it turns an endpoint's configuration into a connector by its type
//! name. Building does no I/O.
//!
//! Must never: touch the store, sleep or retry (the engine does that), or decide routing.

pub mod http;
pub mod identity;
mod options;
pub mod sandbox;
pub mod tryton;
pub mod vendure;

use concord_engine::connector::{BuildError, Connector, EndpointSpec};
use std::sync::Arc;

/// Connector type names [`build`] knows.
pub fn connector_types() -> &'static [&'static str] {
    &["http", "sandbox-erp", "sandbox-shop", "tryton", "vendure"]
}

/// Build the connector an endpoint names.
pub fn build(spec: &EndpointSpec) -> Result<Arc<dyn Connector>, BuildError> {
    match spec.connector.as_str() {
        "http" => Ok(Arc::new(http::HttpConnector::new(spec)?)),
        "sandbox-erp" => Ok(Arc::new(sandbox::SandboxErpConnector::new(spec)?)),
        "sandbox-shop" => Ok(Arc::new(sandbox::SandboxShopConnector::new(spec)?)),
        "tryton" => Ok(Arc::new(tryton::TrytonConnector::new(spec)?)),
        "vendure" => Ok(Arc::new(vendure::VendureConnector::new(spec)?)),
        other => Err(BuildError {
            path: "connector".into(),
            message: format!(
                "unknown connector `{other}`, expected one of {}",
                connector_types().join(", ")
            ),
        }),
    }
}
