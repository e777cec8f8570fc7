//! (mapping: being written)
