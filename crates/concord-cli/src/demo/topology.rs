//! The demo's topology: a sandbox ERP and two sandbox storefronts (real HTTP servers on
//! 127.0.0.1) pointed at the hub, the catalogue they start with (stock at two locations, a few
//! hot SKUs with less stock than demand, a contract price list for one B2B customer), and the
//! hub's configuration for them (`demo.toml`, with the addresses and the webhook secret filled
//! in, written privately into the demo's directory).
//!
//! Must never start the hub itself nor put anything into its store: the hub is configured by a
//! normal config file, as a user's would be, and learns everything through its connectors.

use crate::wiring;
use anyhow::Context;
use concord_sandbox::erp::{ErpHandle, ErpOptions, ErpSim};
use concord_sandbox::shop::{HubCheckout, ShopHandle, ShopOptions, ShopSim};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub(super) const LOCATIONS: [&str; 2] = ["WH1", "WH2"];
pub(super) const HELD_CUSTOMER: &str = "held@example.com";
/// The B2B customer with a contract price list in the ERP, and the SKU it covers.
pub(super) const CONTRACT_CUSTOMER: &str = "buyer@acme.example";
pub(super) const CONTRACT_SKU: &str = "SKU-0001";
/// The first SKUs are hot: little stock (per location), in every other checkout, rarely
/// restocked — demand exceeds supply, so the hub refuses some checkouts.
pub(super) const HOT_SKUS: usize = 3;
const HOT_STOCK: i64 = 4;
/// The demo's admin tokens (their hashes are in `demo.toml`). DEMO ONLY: fixed and printed so
/// anyone can log in to the demo's dashboard; never use fixed tokens in a real config.
const DEMO_VIEWER_TOKEN: &str = "concord-demo-viewer";
const DEMO_OPERATOR_TOKEN: &str = "concord-demo-operator";

/// The demo's storefront key of `channel` (hashes in `demo.toml`; DEMO ONLY, fixed).
pub(super) fn demo_key(channel: &str) -> String {
    format!("concord-demo-key-{channel}")
}

/// The sandboxes of the demo: the ERP, and the storefronts by channel name (`web1`, `web2`).
pub(super) struct Systems {
    pub(super) erp: ErpHandle,
    pub(super) shops: Vec<(String, ShopHandle)>,
}

impl Systems {
    /// Starts the ERP and both storefronts with their webhooks pointed at the hub on `addr`
    /// (signed with `secret`), the storefronts checking out through the hub's `/v1`, and seeds
    /// the ERP's catalogue of `skus` SKUs.
    pub(super) async fn start(addr: SocketAddr, secret: &str, skus: usize) -> anyhow::Result<Self> {
        let hook = |ep: &str| format!("http://{addr}/hooks/{ep}");
        let erp = ErpSim::start(ErpOptions {
            webhook_url: Some(hook("erp")),
            webhook_secret: Some(secret.to_string()),
            auto_ship_after: Some(Duration::from_millis(1500)),
            credit_hold: vec![HELD_CUSTOMER.to_string()],
            // The lifecycle showcase's order is shipped by hand, in two parcels.
            hold_for: vec![crate::showcase::SHOWCASE_CUSTOMER.to_string()],
            ..ErpOptions::default()
        })
        .await?;
        let mut shops = Vec::new();
        for name in ["web1", "web2"] {
            let shop = ShopSim::start(ShopOptions {
                name: name.to_string(),
                webhook_url: Some(hook(name)),
                webhook_secret: Some(secret.to_string()),
                hub: Some(HubCheckout {
                    base_url: format!("http://{addr}"),
                    channel: name.to_string(),
                    key: Some(demo_key(name)),
                }),
                ..ShopOptions::default()
            })
            .await?;
            shops.push((name.to_string(), shop));
        }
        erp.seed(skus, &LOCATIONS, 30)?;
        // A contract price list for one B2B customer (shown in the final summary).
        erp.upsert_price(
            serde_json::json!({"sku": CONTRACT_SKU, "list": "acme-contract",
            "currency": "USD", "amount_minor": 900, "customer": CONTRACT_CUSTOMER,
            "tiers": [{"min_quantity": 48, "amount_minor": 750}]}),
        )?;
        for i in 1..=HOT_SKUS.min(skus) {
            for loc in LOCATIONS {
                erp.set_stock(&format!("SKU-{i:04}"), loc, HOT_STOCK)?;
            }
        }
        Ok(Systems { erp, shops })
    }

    /// Writes the hub's configuration for these systems into `dir` (`concord.toml`, its store
    /// `concord.sqlite` beside it) and returns the config's path.
    pub(super) fn write_config(
        &self,
        dir: &Path,
        addr: SocketAddr,
        secret: &str,
    ) -> anyhow::Result<PathBuf> {
        let store_path = dir.join("concord.sqlite");
        let config_path = dir.join("concord.toml");
        let text = include_str!("../demo.toml")
            .replace("{{STORE}}", &store_path.display().to_string())
            .replace("{{LISTEN}}", &addr.to_string())
            .replace("{{ERP_URL}}", &self.erp.base_url())
            .replace("{{WEB1_URL}}", &self.shops[0].1.base_url())
            .replace("{{WEB2_URL}}", &self.shops[1].1.base_url())
            .replace("{{SECRET}}", secret);
        // The config holds the webhook secret: private, like the store next to it.
        wiring::write_private(&config_path, &text)
            .with_context(|| format!("writing {}", config_path.display()))?;
        Ok(config_path)
    }

    /// Prints where everything runs, how to reach it and the demo's tokens.
    pub(super) fn print_banner(&self, dir: &Path, addr: SocketAddr, config_path: &Path) {
        println!("concord demo: data in {}", dir.display());
        println!(
            "  ERP   {}  (sandbox, auto-ships orders after 1.5 s)",
            self.erp.base_url()
        );
        for (name, s) in &self.shops {
            println!("  {name:<5} {}  (sandbox storefront)", s.base_url());
        }
        println!(
            "  hub   http://{addr}  (/v1 storefront API, /metrics with an admin token, /healthz, webhooks at /hooks/<endpoint>)"
        );
        println!(
            "  both stores check out through the hub's stock pool; SKU-0001..SKU-{HOT_SKUS:04} are hot (demand > supply)"
        );
        println!("  config {}", config_path.display());
        println!(
            "  dashboard http://{addr}/  admin API http://{addr}/api/v1 (OpenAPI: /api/v1/openapi.json)"
        );
        println!(
            "    tokens (demo only, fixed): viewer {DEMO_VIEWER_TOKEN}  operator {DEMO_OPERATOR_TOKEN}"
        );
    }

    /// Stops every sandbox.
    pub(super) async fn shutdown(&self) {
        self.erp.shutdown().await;
        for (_, s) in &self.shops {
            s.shutdown().await;
        }
    }
}
