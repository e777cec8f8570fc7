//! Conformance checks: processing: `apply` commits one processing step (entities, xrefs, items,
//! journal status) atomically and never rewrites an existing xref.
//!
//! Written only against `&dyn Store` through [`Fixture`]: never SQL, never an implementation
//! type. Each public check is listed in `store_conformance_tests!` and re-exported by
//! `conformance/mod.rs`.

use super::{capture, item, stored, xref, Fixture, ERP, SHOP};
use crate::{
    AuditEvent, DeadLetterFilter, Direction, EntityWrite, ItemState, JournalStatus, NewDeadLetter,
    ProcessBatch, Xref,
};
use concord_core::{Kind, Millis};
use serde_json::json;

pub async fn apply_commits_a_processing_step(fx: &Fixture) {
    let s = fx.store();
    let ids: Vec<i64> = s
        .ingest(
            vec![
                capture(ERP, Kind::Product, "E-1", "7"),
                capture(SHOP, Kind::Product, "S-1", "3"),
            ],
            None,
        )
        .await
        .unwrap()
        .into_iter()
        .map(stored)
        .collect();
    let write = |endpoint: &str, version: &str, name: &str, at: Millis| EntityWrite {
        kind: Kind::Product,
        key: "SKU-1".into(),
        state: json!({ "sku": "SKU-1", "name": name }),
        hash: format!("h-{name}"),
        endpoint: endpoint.into(),
        version: version.into(),
        at,
    };
    let mut it = item(SHOP, Kind::Product, "SKU-1", "h-shop-1");
    it.journal_id = Some(ids[0]);
    s.apply(
        ProcessBatch {
            journal: vec![(
                ids[0],
                JournalStatus::Processed,
                Some("applied".into()),
                Some("SKU-1".into()),
            )],
            entities: vec![write(ERP, "7", "Mug", 2_000)],
            xrefs: vec![xref(ERP, Kind::Product, "E-1", "SKU-1")],
            items: vec![it],
            dead_letters: vec![NewDeadLetter {
                direction: Direction::Inbound,
                endpoint: ERP.into(),
                kind: Kind::Product,
                key: "SKU-1".into(),
                payload: json!({ "why": "test" }),
                reason: "mapping failed".into(),
                journal_id: Some(ids[0]),
                flow: Some("products".into()),
                at: 2_000,
            }],
            audit: vec![AuditEvent {
                at: 2_000,
                event: "conflict".into(),
                endpoint: Some(ERP.into()),
                kind: Some(Kind::Product),
                key: Some("SKU-1".into()),
                detail: json!({ "field": "price" }),
            }],
            ..ProcessBatch::default()
        },
        2_000,
    )
    .await
    .unwrap();

    let e = s.journal_entry(ids[0]).await.unwrap().unwrap();
    assert_eq!(e.status, JournalStatus::Processed);
    assert_eq!(
        (e.note.as_deref(), e.key.as_deref()),
        (Some("applied"), Some("SKU-1"))
    );
    let pending: Vec<i64> = s
        .pending_journal(10)
        .await
        .unwrap()
        .iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(pending, [ids[1]]);

    let ent = s
        .entity(Kind::Product, "SKU-1")
        .await
        .unwrap()
        .expect("entity written");
    assert_eq!(ent.state, json!({ "sku": "SKU-1", "name": "Mug" }));
    assert_eq!((ent.hash.as_str(), ent.updated_at), ("h-Mug", 2_000));
    assert_eq!(ent.versions.get(ERP).map(String::as_str), Some("7"));
    assert_eq!(s.entity(Kind::Product, "SKU-2").await.unwrap(), None);
    assert_eq!(
        s.entity(Kind::Price, "SKU-1").await.unwrap(),
        None,
        "kinds are separate"
    );

    assert_eq!(
        s.xref_key(ERP, Kind::Product, "E-1")
            .await
            .unwrap()
            .as_deref(),
        Some("SKU-1")
    );
    assert_eq!(
        s.xref_external(ERP, Kind::Product, "SKU-1")
            .await
            .unwrap()
            .as_deref(),
        Some("E-1")
    );
    assert_eq!(s.xref_key(SHOP, Kind::Product, "E-1").await.unwrap(), None);

    let pending_items = s.items(Some(SHOP), ItemState::Pending, 10).await.unwrap();
    assert_eq!(pending_items.len(), 1);
    assert_eq!(pending_items[0].journal_id, Some(ids[0]));
    assert_eq!(pending_items[0].created_at, 2_000);
    assert_eq!(
        s.hashes(SHOP, Kind::Product, "SKU-1").await.unwrap(),
        (Some("h-shop-1".into()), None),
        "enqueueing sets the planned hash"
    );
    let dls = s.dead_letters(DeadLetterFilter::default()).await.unwrap();
    assert_eq!(dls.len(), 1);
    assert_eq!(
        (dls[0].reason.as_str(), dls[0].journal_id),
        ("mapping failed", Some(ids[0]))
    );
    assert_eq!(
        dls[0].flow.as_deref(),
        Some("products"),
        "the flow a dead letter names is kept (its replay goes through it)"
    );
    let audit = s.audit_log(10).await.unwrap();
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0].event.event, "conflict");
    assert_eq!(audit[0].event.detail, json!({ "field": "price" }));

    // A second source's version is added to the versions map, not replacing the first's.
    s.apply(
        ProcessBatch {
            journal: vec![(
                ids[1],
                JournalStatus::Processed,
                Some("applied".into()),
                Some("SKU-1".into()),
            )],
            entities: vec![write(SHOP, "3", "Big mug", 3_000)],
            ..ProcessBatch::default()
        },
        3_000,
    )
    .await
    .unwrap();
    let ent = s.entity(Kind::Product, "SKU-1").await.unwrap().unwrap();
    assert_eq!(ent.state["name"], "Big mug");
    assert_eq!(ent.updated_at, 3_000);
    assert_eq!(
        ent.versions.into_iter().collect::<Vec<_>>(),
        [
            (ERP.to_string(), "7".to_string()),
            (SHOP.to_string(), "3".to_string())
        ]
    );
}

/// Xrefs are unique both ways and insert-if-absent: conflicting ones are ignored, not errors.
pub async fn apply_never_changes_existing_xrefs(fx: &Fixture) {
    let s = fx.store();
    let batch = |x: Vec<Xref>| ProcessBatch {
        xrefs: x,
        ..ProcessBatch::default()
    };
    s.apply(batch(vec![xref(SHOP, Kind::Customer, "101", "c1")]), 1)
        .await
        .unwrap();
    s.apply(
        batch(vec![
            xref(SHOP, Kind::Customer, "101", "c2"), // same external id, other key
            xref(SHOP, Kind::Customer, "102", "c1"), // same key, other external id
            xref(SHOP, Kind::Customer, "101", "c1"), // the same again
        ]),
        2,
    )
    .await
    .expect("conflicting xrefs are ignored, not errors");
    assert_eq!(
        s.xref_key(SHOP, Kind::Customer, "101")
            .await
            .unwrap()
            .as_deref(),
        Some("c1")
    );
    assert_eq!(
        s.xref_external(SHOP, Kind::Customer, "c1")
            .await
            .unwrap()
            .as_deref(),
        Some("101")
    );
    assert_eq!(s.xref_key(SHOP, Kind::Customer, "102").await.unwrap(), None);
    assert_eq!(
        s.xref_external(SHOP, Kind::Customer, "c2").await.unwrap(),
        None
    );
    // The same ids at another endpoint or kind are independent.
    s.apply(
        batch(vec![
            xref(ERP, Kind::Customer, "101", "c2"),
            xref(SHOP, Kind::Order, "101", "c2"),
        ]),
        3,
    )
    .await
    .unwrap();
    assert_eq!(
        s.xref_key(ERP, Kind::Customer, "101")
            .await
            .unwrap()
            .as_deref(),
        Some("c2")
    );
    assert_eq!(
        s.xref_key(SHOP, Kind::Order, "101")
            .await
            .unwrap()
            .as_deref(),
        Some("c2")
    );
}
