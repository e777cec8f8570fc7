//! Unit tests of `copy.rs`: the table list against SQLite's schema, refusal of an open or foreign store, the content hash.

use super::*;

fn fresh_sqlite() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("s.sqlite");
    let store = crate::SqliteStore::open(&path).expect("open");
    drop(store);
    (dir, path)
}

#[test]
fn tables_are_exactly_the_sqlite_schemas_and_parents_come_first() {
    let (_dir, path) = fresh_sqlite();
    let conn = Connection::open(&path).expect("open");
    let tables = sqlite_tables(&conn).expect("tables");
    let listed: BTreeSet<String> = TABLES
        .iter()
        .copied()
        .chain(DERIVED.iter().map(|d| d.0))
        .map(str::to_string)
        .collect();
    assert_eq!(tables, listed);
    for (i, table) in TABLES.iter().enumerate() {
        let mut stmt = conn
            .prepare(&format!("PRAGMA foreign_key_list(\"{table}\")"))
            .expect("fk list");
        let parents: Vec<String> = stmt
            .query_map([], |r| r.get::<_, String>(2))
            .expect("fks")
            .collect::<rusqlite::Result<_>>()
            .expect("fks");
        for parent in parents {
            let at = TABLES.iter().position(|t| *t == parent).expect("listed");
            assert!(at < i, "{table} refers to {parent}, which must come first");
        }
    }
}

#[test]
fn a_store_in_use_is_refused_and_a_stopped_one_opens() {
    let (_dir, path) = fresh_sqlite();
    let open = crate::SqliteStore::open(&path).expect("open");
    assert!(matches!(
        open_source(&path),
        Err(CopyError::SourceInUse { .. })
    ));
    drop(open);
    let src = open_source(&path).expect("stopped store opens");
    assert_eq!(src.columns.len(), TABLES.len());
    // While we hold it, a hub cannot open it either.
    assert!(crate::SqliteStore::open(&path).is_err());
}

#[test]
fn another_schema_version_and_a_missing_file_are_refused() {
    let (dir, path) = fresh_sqlite();
    let conn = Connection::open(&path).expect("open");
    conn.execute_batch("PRAGMA user_version = 99").expect("set");
    drop(conn);
    assert!(matches!(
        open_source(&path),
        Err(CopyError::SourceVersion { found: 99, .. })
    ));
    let missing = dir.path().join("nope.sqlite");
    assert!(matches!(
        open_source(&missing),
        Err(CopyError::Source { .. })
    ));
    assert!(!missing.exists(), "never created");
}

#[test]
fn the_canonical_form_tells_values_apart() {
    let hash = |rows: &[Vec<Cell>]| {
        let mut h = RowHasher::default();
        for r in rows {
            h.add(r);
        }
        h.finish().1
    };
    let a = hash(&[vec![Cell::Text(Some(String::new()))]]);
    let b = hash(&[vec![Cell::Text(None)]]);
    let c = hash(&[vec![Cell::Int(Some(1)), Cell::Text(Some("2".into()))]]);
    let d = hash(&[vec![Cell::Int(Some(12))]]);
    let e = hash(&[vec![
        Cell::Text(Some("ab".into())),
        Cell::Text(Some("c".into())),
    ]]);
    let f = hash(&[vec![
        Cell::Text(Some("a".into())),
        Cell::Text(Some("bc".into())),
    ]]);
    let g = hash(&[vec![Cell::Int(Some(1))], vec![Cell::Int(Some(2))]]);
    let h = hash(&[vec![Cell::Int(Some(1)), Cell::Int(Some(2))]]);
    assert_ne!(a, b);
    assert_ne!(c, d);
    assert_ne!(e, f);
    assert_ne!(g, h);
    assert_eq!(
        hash(&[vec![Cell::Real(Some(0.1))]]),
        hash(&[vec![Cell::Real(Some(0.1))]])
    );
}
