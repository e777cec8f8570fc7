//! The customer book both emulators keep (same API on both): customers by id, an index by
//! e-mail (create is idempotent on it), ids `{prefix}{n}` in creation order.
//!
//! Emitting the change and counting the write stay with the emulator (under its state lock).

use super::core::with_id;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};

#[derive(Default)]
pub(crate) struct Customers {
    by_id: BTreeMap<String, Value>,
    by_email: HashMap<String, String>,
    next: u64,
}

/// Why [`Customers::update`] refused.
pub(crate) enum UpdateRefused {
    NotFound,
    /// The new e-mail belongs to this other customer.
    EmailTaken(String),
}

fn email_of(c: &Value) -> String {
    c["email"].as_str().unwrap_or_default().to_string()
}

impl Customers {
    /// The id of the customer with `c`'s (canonical) e-mail, created as `{prefix}{n}` when the
    /// e-mail is new: `(id, created)`.
    pub fn ensure(&mut self, prefix: &str, c: &Value) -> (String, bool) {
        let email = email_of(c);
        if let Some(id) = self.by_email.get(&email) {
            return (id.clone(), false);
        }
        self.next += 1;
        let id = format!("{prefix}{}", self.next);
        self.by_email.insert(email, id.clone());
        self.by_id.insert(id.clone(), c.clone());
        (id, true)
    }

    /// Replace customer `id` by `c` (canonical), moving the e-mail index.
    pub fn update(&mut self, id: &str, c: &Value) -> Result<(), UpdateRefused> {
        let email = email_of(c);
        let Some(old) = self.by_id.get(id) else {
            return Err(UpdateRefused::NotFound);
        };
        let old_email = email_of(old);
        if let Some(other) = self.by_email.get(&email).filter(|o| *o != id) {
            return Err(UpdateRefused::EmailTaken(other.clone()));
        }
        self.by_email.remove(&old_email);
        self.by_email.insert(email, id.to_string());
        self.by_id.insert(id.to_string(), c.clone());
        Ok(())
    }

    /// The canonical record of customer `id`.
    pub fn get(&self, id: &str) -> Option<&Value> {
        self.by_id.get(id)
    }

    /// Customer `id` as `{"id": id, ..canonical}`.
    pub fn with_id(&self, id: &str) -> Option<Value> {
        self.by_id.get(id).map(|c| with_id(id, c))
    }

    /// Every customer (or the one with `email`, compared trimmed and lower-cased) as
    /// `{"id": id, ..canonical}`, by id.
    pub fn find(&self, email: Option<&str>) -> Vec<Value> {
        let email = email.map(|e| e.trim().to_lowercase());
        self.by_id
            .iter()
            .filter(|(_, c)| email.as_deref().is_none_or(|e| c["email"] == e))
            .map(|(id, c)| with_id(id, c))
            .collect()
    }
}
