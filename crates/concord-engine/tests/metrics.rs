//! What the Prometheus metrics publish about the stock pool (issue 12): by default no series per
//! SKU — `concord_ats{channel, sku}` published the whole catalogue and its stock and grew with
//! every SKU ever seen — only a per-channel count of figures planned; `[metrics] per_sku = true`
//! brings the per-SKU gauge back. A real engine, fake endpoints, and a process-wide Prometheus
//! recorder (each test uses its own SKU, so they can share it).

mod support;

use concord_core::Kind;
use metrics_exporter_prometheus::PrometheusHandle;
use std::sync::OnceLock;
use support::{config_text, stock, wait_until, Fake, Harness, DEADLINE};

fn recorder() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            metrics_exporter_prometheus::PrometheusBuilder::new()
                .install_recorder()
                .expect("install the recorder")
        })
        .clone()
}

const POOL: &str = r#"
[[flows]]
name = "stock"
kind = "stock"
pattern = "broadcast"
mode = "realtime"
from = ["erp"]
to = ["web"]

[inventory]
source = "erp"
[inventory.channels.web]
locations = ["WH"]
"#;

/// Start a pool hub (`extra` appended to its config), report 5 units of `sku` from the ERP and
/// wait until the channel got its figure; the rendered metrics then.
async fn broadcast(sku: &str, extra: &str) -> String {
    let handle = recorder();
    let config = format!("{}\n{extra}", config_text(&["erp", "web"], &[], POOL));
    let h = Harness::start(
        &config,
        vec![
            Fake::new("erp", &[Kind::Stock]),
            Fake::new("web", &[Kind::Stock]),
        ],
    )
    .await;
    h.capture(
        "erp",
        &[(Kind::Stock, &format!("{sku}@WH"), Some("1"), stock(sku, 5))],
    )
    .await;
    wait_until(
        "the channel receives the SKU's figure",
        DEADLINE,
        async || {
            h.fake("web")
                .writes()
                .iter()
                .any(|w| w.ok() && w.op.key.contains(sku))
        },
    )
    .await;
    let text = handle.render();
    h.stop().await;
    text
}

/// Regression: every SKU became a `concord_ats` series, by default.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_per_sku_series_by_default() {
    let text = broadcast("QUIET-SKU-1", "").await;
    assert!(
        !text.contains("QUIET-SKU-1"),
        "a per-SKU series was published:\n{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("concord_ats_updates_total{") && l.contains("channel=\"web\"")),
        "the per-channel count is there:\n{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_sku_series_are_opt_in() {
    let text = broadcast("LOUD-SKU-1", "[metrics]\nper_sku = true\n").await;
    assert!(
        text.lines().any(|l| l.starts_with("concord_ats{")
            && l.contains("sku=\"LOUD-SKU-1\"")
            && l.ends_with(" 5")),
        "{text}"
    );
}
