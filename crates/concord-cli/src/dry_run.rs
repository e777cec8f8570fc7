//! `concord run --dry-run [--store PATH]` (issue 16): the hub captures and plans against the
//! real endpoints but writes nothing to them (`concord_engine::runtime::dry_run`: no
//! dispatcher, and every connector's `write` refused); on stop it lists every planned write.
//!
//! Nothing planned in a dry run is ever delivered later: the dry run plans into its own store
//! file — `--store`, else the configured store's name with `.dry-run` before its extension —
//! never the configured one (a SQLite file even when the hub's store is PostgreSQL), and marks it; `concord run` refuses a marked store. An existing
//! file that is a real hub's store (it has a journal and no mark) is refused too.

use crate::wiring::{self, ConfigProblem};
use concord_engine::runtime::dry_run::without_writes;
use concord_engine::Engine;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Most planned writes listed at the end (the admin API's `GET /api/v1/dry-run` pages them all).
const LISTED: usize = 10_000;

/// The dry run's store next to `configured`: `concord.sqlite` → `concord.dry-run.sqlite`.
pub fn default_store(configured: &Path) -> PathBuf {
    let stem = configured
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "concord".into());
    let name = match configured.extension() {
        Some(ext) => format!("{stem}.dry-run.{}", ext.to_string_lossy()),
        None => format!("{stem}.dry-run"),
    };
    configured.with_file_name(name)
}

/// The same file, as far as the paths tell (both made absolute, `.` and `..` resolved when the
/// files exist).
fn same_file(a: &Path, b: &Path) -> bool {
    let norm = |p: &Path| {
        std::fs::canonicalize(p).unwrap_or_else(|_| {
            std::env::current_dir()
                .map(|d| d.join(p))
                .unwrap_or_else(|_| p.to_path_buf())
        })
    };
    norm(a) == norm(b)
}

/// The dry run's engine: the config's connectors without writes, over the dry run's own store,
/// marked.
pub async fn engine(path: &Path, store: Option<PathBuf>) -> anyhow::Result<Engine> {
    let (config, connectors) = wiring::load(path)?;
    let store_path = store.unwrap_or_else(|| default_store(&config.store.path));
    if same_file(&store_path, &config.store.path) {
        return Err(ConfigProblem(format!(
            "{}: a dry run needs its own store, not the hub's ({}): what it plans must never be delivered by a real run",
            path.display(),
            store_path.display()
        ))
        .into());
    }
    let mut config = (*config).clone();
    // Always a SQLite file, even when the hub's store is PostgreSQL (`[store] url`).
    config.store.path = store_path.clone();
    config.store.url = None;
    let existed = store_path.exists();
    let store = wiring::open_store(&config).await?;
    let engine = Engine::new(Arc::new(config), store.clone(), without_writes(connectors))?;
    if existed && !engine.store_is_dry_run().await? && store.stats().await?.journal_total > 0 {
        return Err(ConfigProblem(format!(
            "{}: {} is a hub's store, not a dry run's; give the dry run another --store",
            path.display(),
            store_path.display()
        ))
        .into());
    }
    engine.set_dry_run().await?;
    eprintln!(
        "concord: DRY RUN: capturing and planning, writing nothing to any endpoint; planned writes go to {} and are listed at the end",
        store_path.display()
    );
    Ok(engine)
}

/// Print every planned write: destination, kind, op, key and the payload, then what it would
/// change at the destination (read from its listing where its connector can list the kind).
pub async fn report(engine: &Engine) -> anyhow::Result<()> {
    let planned = engine.planned_differences(LISTED).await?;
    println!(
        "dry run: {} planned write(s) (nothing was written)",
        planned.len()
    );
    for w in &planned {
        let item = &w.item;
        println!(
            "  {} {} {} {} {}",
            item.dest,
            item.kind,
            item.op,
            item.key,
            serde_json::to_string(&item.payload)?
        );
        let change = match (&w.current, w.compared) {
            (_, false) => "not compared (the destination cannot be listed)".to_string(),
            (None, true) => "new at the destination".to_string(),
            (Some(_), true) if w.differences.is_empty() => {
                "no change to the fields the destination returns".to_string()
            }
            (Some(_), true) => w
                .differences
                .iter()
                .map(|d| format!("{}: {} → {}", d.field, d.actual, d.expected))
                .collect::<Vec<_>>()
                .join("; "),
        };
        println!("      {change}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_store_is_beside_the_configured_one() {
        assert_eq!(
            default_store(Path::new("/var/lib/concord/concord.sqlite")),
            PathBuf::from("/var/lib/concord/concord.dry-run.sqlite")
        );
        assert_eq!(
            default_store(Path::new("data/hub")),
            PathBuf::from("data/hub.dry-run")
        );
        assert!(same_file(Path::new("x.sqlite"), Path::new("./x.sqlite")));
        assert!(!same_file(
            Path::new("x.sqlite"),
            Path::new("x.dry-run.sqlite")
        ));
    }
}
