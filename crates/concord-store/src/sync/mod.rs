//! The sync path's write decisions, made once for every store implementation: what the
//! journal drops as a duplicate, in which order one processing step is applied, when an outbox
//! item absorbs a newer state or waits parked, what a settlement logs and accepts, how a
//! refused amend turns into cancel-and-replace, and how a lifecycle write keeps what a
//! settlement decided.
//!
//! As with [`crate::ledger`], a backend loads the rows a stage reads, calls a function here and
//! writes what it returns, in one transaction: [`journal`] (ingest), [`apply`] (one
//! processing step), [`enqueue`] (an outbox item), [`settle`] (a delivery's outcome),
//! [`amend`] (an `amend` the destination refused), [`lifecycle`] (the order lifecycle row).
//!
//! Must never: run SQL, do I/O or read a clock; interpret a payload beyond what the stage
//! needs (an order's `reference` and `status` when it is cancelled and replaced, its facts'
//! acceptance and replacement count).

pub(crate) mod amend;
pub(crate) mod apply;
pub(crate) mod enqueue;
pub(crate) mod journal;
pub(crate) mod lifecycle;
pub(crate) mod settle;
