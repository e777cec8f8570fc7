//! The canonical model: one typed record per kind, how each is validated, its natural key and
//! what it depends on. Connectors map their APIs to these shapes (directly or through jq
//! mappings); the engine only ever merges and plans canonical records.
//!
//! Records are exchanged as JSON (`serde_json::Value`); [`validate`] parses one into its typed
//! struct, checks the rules serde cannot express (non-negative quantities, e-mail shape, …) and
//! returns the normalised JSON. Unknown fields are rejected (use `attributes` for extensions).
//! Money is always integer minor units (`*_minor`), never floats. Must never do I/O.
//!
//! `types.rs` holds the records, `validate.rs` their validation, `keys.rs` their natural keys
//! and dependencies; everything is re-exported here, so `concord_core::model::X` is the one path.

mod keys;
mod types;
mod validate;

pub use keys::{dependencies, natural_key, order_key_of_reference, order_scoped_key};
pub use types::*;
pub use validate::{validate, ValidationError};

/// An order of two lines whose customer e-mail needs normalising (the tests' shared record).
#[cfg(test)]
fn sample_order() -> serde_json::Value {
    serde_json::json!({"number": "1001", "customer": {"email": "Ann@Example.com"}, "currency": "USD",
           "lines": [{"sku": "A", "quantity": 2, "unit_price_minor": 1100}, {"sku": "B", "quantity": 1}]})
}
