//! Types of the audit trail: an event as written, bounded ([`AuditEvent::bounded`]), and as
//! stored.
//!
//! Must never let an event from outside grow a row without bound.

use concord_core::{Kind, Millis};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// An audit-trail event (conflicts, operator actions, breaker transitions, …).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuditEvent {
    pub at: Millis,
    /// Short machine-readable type: `conflict`, `dlq.replay`, `dlq.drop`, `breaker.open`, …
    pub event: String,
    pub endpoint: Option<String>,
    pub kind: Option<Kind>,
    pub key: Option<String>,
    pub detail: Value,
}

/// Largest `detail` of an audit row, as JSON text (4 KiB). Details come from outside (a
/// request's path, a record's lines, a list of ids in an operator's request): a larger one is
/// replaced by `{"truncated": true, "bytes": <original size>, "preview": "<its first part>"}`.
pub const MAX_AUDIT_DETAIL_BYTES: usize = 4096;
/// Largest `event` of an audit row (bytes).
pub const MAX_AUDIT_EVENT_BYTES: usize = 128;
/// Largest `endpoint` and `key` of an audit row (bytes).
pub const MAX_AUDIT_FIELD_BYTES: usize = 1024;

impl AuditEvent {
    /// The event as every store keeps it: `detail` at most [`MAX_AUDIT_DETAIL_BYTES`] of JSON
    /// (else replaced by a marked preview), `event`, `endpoint` and `key` cut (at a character
    /// boundary, ending in `…`) to their limits. Implementations call this before writing, so an
    /// audit row is bounded whatever the caller put in it.
    pub fn bounded(mut self) -> AuditEvent {
        self.event = cut(self.event, MAX_AUDIT_EVENT_BYTES);
        self.endpoint = self.endpoint.map(|e| cut(e, MAX_AUDIT_FIELD_BYTES));
        self.key = self.key.map(|k| cut(k, MAX_AUDIT_FIELD_BYTES));
        let text = self.detail.to_string();
        if text.len() > MAX_AUDIT_DETAIL_BYTES {
            // The preview is a JSON string inside the marker: escaping can lengthen it (up to
            // six bytes for a control character), so shrink it until the whole fits.
            let mut budget = MAX_AUDIT_DETAIL_BYTES - 96;
            loop {
                let preview = cut(text.clone(), budget);
                let marked = serde_json::json!({
                    "truncated": true,
                    "bytes": text.len(),
                    "preview": preview,
                });
                if marked.to_string().len() <= MAX_AUDIT_DETAIL_BYTES || budget == 0 {
                    self.detail = marked;
                    break;
                }
                budget /= 2;
            }
        }
        self
    }
}

/// `s` cut to at most `max` bytes at a character boundary, ending in `…` when cut.
fn cut(s: String, max: usize) -> String {
    if s.len() <= max {
        return s;
    }
    let ellipsis = '…';
    let room = max.saturating_sub(ellipsis.len_utf8());
    let mut end = room;
    while end > 0 && !s.is_char_boundary(end) {
        end -= 1;
    }
    let mut out = s[..end].to_string();
    if max >= ellipsis.len_utf8() {
        out.push(ellipsis);
    }
    out
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StoredAudit {
    pub id: i64,
    #[serde(flatten)]
    pub event: AuditEvent,
}
