//! Concord's domain core: the canonical model of the nine kinds, their natural keys and
//! dependencies, validation of canonical records, content hashing, field-ownership merge, and the
//! pure arithmetic of retries (backoff with full jitter, circuit breaker), of the stock pool
//! (`inventory`) and of price lists (`pricing`: precedence, validity, tiers, minor units), the comparison of a
//! destination's records with the hub's (`reconcile`: drift); the
//! bounded domain of everything from outside (`limits`), the strict JSON parser every boundary
//! uses (`json`), and the one order of versions (`version`).
//!
//! Architecture invariant: this crate performs no I/O and reads no clock. Time is passed in as
//! milliseconds, randomness as a number in `[0, 1)`. Everything here is deterministic and unit-tested
//! on its own; the store, the engine and the connectors build on it.

pub mod hash;
pub mod inventory;
pub mod json;
pub mod kind;
pub mod lifecycle;
pub mod limits;
pub mod merge;
pub mod model;
pub mod pricing;
pub mod reconcile;
pub mod retry;
pub mod version;

pub use hash::content_hash;
pub use kind::Kind;
pub use merge::{merge, MergeOutcome, Ownership};
pub use model::{
    dependencies, natural_key, order_key_of_reference, order_scoped_key, validate, ValidationError,
};

/// Milliseconds since the Unix epoch. The only representation of time the core knows.
pub type Millis = i64;
