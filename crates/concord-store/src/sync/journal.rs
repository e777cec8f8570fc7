//! Ingest: what the journal drops as a duplicate, and how a capture is journaled.
//!
//! A duplicate is the *same* change delivered again — a webhook retried, a poll re-reading its
//! overlap — so it is recognised by identity: the version string equal to the last one
//! journaled for (endpoint, kind, external id). That is not the order of versions
//! (`concord_core::version::compare`), which decides staleness later, in the engine: an older
//! change is still journaled (it is history) and judged stale there.
//!
//! Must never: read or write storage, or drop a capture whose version differs in any way from
//! the last one journaled.

use crate::{Capture, Direction, JournalId, JournalStatus, NewDeadLetter};

/// Is `capture` the last change journaled for its record again (`last`: that change's version)?
pub(crate) fn is_duplicate(last: Option<&str>, capture: &Capture) -> bool {
    last == Some(capture.version.as_str())
}

/// The status a capture is journaled with: refused at capture → `Rejected`, else `Pending`.
pub(crate) fn status(capture: &Capture) -> JournalStatus {
    if capture.rejected.is_some() {
        JournalStatus::Rejected
    } else {
        JournalStatus::Pending
    }
}

/// The inbound dead letter a rejected capture gets with its journal entry `id`.
pub(crate) fn rejection(capture: &Capture, id: JournalId) -> Option<NewDeadLetter> {
    let reason = capture.rejected.as_ref()?;
    Some(NewDeadLetter {
        direction: Direction::Inbound,
        endpoint: capture.endpoint.clone(),
        kind: capture.kind,
        key: capture.external_id.clone(),
        payload: capture.payload.clone(),
        reason: reason.clone(),
        journal_id: Some(id),
        flow: None,
        at: capture.received_at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use concord_core::Kind;
    use serde_json::json;

    fn capture(version: &str, rejected: Option<&str>) -> Capture {
        Capture {
            endpoint: "erp".into(),
            kind: Kind::Stock,
            external_id: "A@L1".into(),
            version: version.into(),
            payload: json!({"on_hand": 1}),
            received_at: 5,
            rejected: rejected.map(Into::into),
        }
    }

    #[test]
    fn a_duplicate_is_the_same_version_string() {
        let cases = [
            (None, "1", false),
            (Some("1"), "1", true),
            (Some("1"), "2", false),
            (Some("2"), "1", false),
            // Equal in the order of versions, but not the same change as sent.
            (Some("10"), "010", false),
            (
                Some("2026-01-01T10:00:00+02:00"),
                "2026-01-01T08:00:00Z",
                false,
            ),
            (Some(""), "", true),
        ];
        for (last, version, want) in cases {
            assert_eq!(
                is_duplicate(last, &capture(version, None)),
                want,
                "{last:?} then {version}"
            );
        }
    }

    #[test]
    fn a_rejected_capture_is_journaled_rejected_with_a_dead_letter() {
        let ok = capture("1", None);
        assert_eq!(status(&ok), JournalStatus::Pending);
        assert_eq!(rejection(&ok, 7), None);
        let bad = capture("1", Some("on_hand: not a number"));
        assert_eq!(status(&bad), JournalStatus::Rejected);
        let dl = rejection(&bad, 7).unwrap();
        assert_eq!(
            (
                dl.direction,
                dl.key.as_str(),
                dl.journal_id,
                dl.at,
                dl.reason.as_str()
            ),
            (
                Direction::Inbound,
                "A@L1",
                Some(7),
                5,
                "on_hand: not a number"
            )
        );
    }
}
