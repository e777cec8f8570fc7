//! Concord's sync engine: configuration (TOML, validated at load), jq mappings, the connector
//! contract, and the runtime that moves changes along capture → journal → resolve → merge →
//! plan → outbox → deliver.
//!
//! Architecture invariant: the engine is the only component that reads or writes the store on
//! the sync path; connectors only speak their APIs and classify outcomes.

pub mod config;
pub mod connector;
pub mod mapping;
pub mod outbound;
pub mod runtime;
pub mod secret;

pub use runtime::{CaptureError, Engine, EngineError, Readiness, TaskFailure, WebhookAck};
