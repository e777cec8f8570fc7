//! Conformance checks: batched lookups: the many-key reads answer exactly as the single-key ones,
//! and `entities_of_kind` pages by key.
//!
//! Written only against `&dyn Store` through [`Fixture`]: never SQL, never an implementation
//! type. Each public check is listed in `store_conformance_tests!` and re-exported by
//! `conformance/mod.rs`.

use super::{capture, item, stored, Fixture, ERP, SHOP};
use crate::{EntityWrite, JournalStatus, ProcessBatch, Xref};
use concord_core::Kind;
use serde_json::json;

/// Each batched lookup answers exactly what its single lookup answers, one result per input and
/// in input order (repeats and misses included).
pub async fn batched_lookups_match_single_ones(fx: &Fixture) {
    let s = fx.store();
    let ids: Vec<i64> = s
        .ingest(vec![capture(ERP, Kind::Product, "E-1", "1")], None)
        .await
        .unwrap()
        .into_iter()
        .map(stored)
        .collect();
    s.apply(
        ProcessBatch {
            journal: vec![(ids[0], JournalStatus::Processed, None, Some("SKU-1".into()))],
            entities: vec![EntityWrite {
                kind: Kind::Product,
                key: "SKU-1".into(),
                state: json!({"sku": "SKU-1", "name": "One"}),
                hash: "h-one".into(),
                endpoint: ERP.into(),
                version: "1".into(),
                at: 1_000,
            }],
            xrefs: vec![Xref {
                endpoint: ERP.into(),
                kind: Kind::Product,
                external_id: "E-1".into(),
                key: "SKU-1".into(),
            }],
            items: vec![item(SHOP, Kind::Product, "SKU-1", "h-shop")],
            ..ProcessBatch::default()
        },
        1_000,
    )
    .await
    .unwrap();
    let t = |a: &str, k: Kind, b: &str| (a.to_string(), k, b.to_string());

    let xids = vec![
        t(ERP, Kind::Product, "E-1"),
        t(ERP, Kind::Product, "E-2"),
        t(SHOP, Kind::Product, "E-1"),
        t(ERP, Kind::Product, "E-1"),
    ];
    let mut single = Vec::new();
    for (e, k, x) in &xids {
        single.push(s.xref_key(e, *k, x).await.unwrap());
    }
    assert_eq!(s.xref_keys(&xids).await.unwrap(), single, "xref_keys");
    assert_eq!(single[0].as_deref(), Some("SKU-1"));

    let xkeys = vec![
        t(ERP, Kind::Product, "SKU-1"),
        t(ERP, Kind::Product, "SKU-2"),
    ];
    let mut single = Vec::new();
    for (e, k, key) in &xkeys {
        single.push(s.xref_external(e, *k, key).await.unwrap());
    }
    assert_eq!(
        s.xref_externals(&xkeys).await.unwrap(),
        single,
        "xref_externals"
    );
    assert_eq!(single[0].as_deref(), Some("E-1"));

    let ekeys = vec![
        (Kind::Product, "SKU-2".to_string()),
        (Kind::Product, "SKU-1".to_string()),
        (Kind::Customer, "SKU-1".to_string()),
    ];
    let mut single = Vec::new();
    for (k, key) in &ekeys {
        single.push(s.entity(*k, key).await.unwrap());
    }
    let batched = s.entities(&ekeys).await.unwrap();
    assert_eq!(batched, single, "entities");
    assert_eq!(batched[1].as_ref().map(|e| e.hash.as_str()), Some("h-one"));

    let hkeys = vec![
        t(SHOP, Kind::Product, "SKU-1"),
        t(SHOP, Kind::Product, "SKU-9"),
    ];
    let mut single = Vec::new();
    for (d, k, key) in &hkeys {
        single.push(s.hashes(d, *k, key).await.unwrap());
    }
    assert_eq!(s.hashes_of(&hkeys).await.unwrap(), single, "hashes_of");
    assert_eq!(single[0].0.as_deref(), Some("h-shop"));

    assert!(s.xref_keys(&[]).await.unwrap().is_empty());
    assert!(s.entities(&[]).await.unwrap().is_empty());
}

/// `entities_of_kind` returns only that kind, in key order, paged strictly after `after`.
pub async fn entities_of_kind_pages_by_key(fx: &Fixture) {
    let store = fx.store();
    let write = |kind: Kind, key: &str| EntityWrite {
        kind,
        key: key.into(),
        state: json!({"key": key}),
        hash: format!("h-{key}"),
        endpoint: ERP.into(),
        version: "1".into(),
        at: 5,
    };
    let batch = ProcessBatch {
        entities: vec![
            write(Kind::Price, "default:B"),
            write(Kind::Price, "default:A"),
            write(Kind::Customer, "a@b.co"),
            write(Kind::Price, "vip:A"),
        ],
        ..ProcessBatch::default()
    };
    store.apply(batch, 5).await.unwrap();
    let keys = |v: Vec<crate::Entity>| v.into_iter().map(|e| e.key).collect::<Vec<_>>();
    let first = store.entities_of_kind(Kind::Price, None, 2).await.unwrap();
    assert_eq!(
        first[0].state,
        json!({"key": "default:A"}),
        "state is returned"
    );
    assert_eq!(first[0].hash, "h-default:A");
    assert_eq!(keys(first), ["default:A", "default:B"], "first page by key");
    let next = store
        .entities_of_kind(Kind::Price, Some("default:B"), 2)
        .await
        .unwrap();
    assert_eq!(keys(next), ["vip:A"], "next page strictly after the cursor");
    let rest = store
        .entities_of_kind(Kind::Price, Some("vip:A"), 2)
        .await
        .unwrap();
    assert!(rest.is_empty(), "past the end");
    let customers = store
        .entities_of_kind(Kind::Customer, None, 10)
        .await
        .unwrap();
    assert_eq!(keys(customers), ["a@b.co"], "only the asked kind");
}
