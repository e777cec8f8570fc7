//! SQLite implementation of [`crate::Store`] (being written).
/// Placeholder until the implementation lands.
pub struct SqliteStore;
