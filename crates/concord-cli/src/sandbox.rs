//! `concord sandbox`: run the built-in ERP and storefront emulators on fixed ports, as separate
//! systems, for `concord run -c examples/sandbox.toml`, dry runs of a config, or poking at the
//! sandbox HTTP APIs by hand (their control calls are listed in the `concord-sandbox` crate
//! docs). Like the demo, the storefronts check out through the hub's stock pool (`--checkout
//! hub`, the default): a checkout reserves at `<hub>/v1/reservations` with the store's
//! storefront key, and each order line carries the location its reservation took, so the ERP
//! commits the units where the hub held them. Must never start the engine: that is `concord
//! run`'s job.

use anyhow::Context;
use clap::{Args, ValueEnum};
use concord_sandbox::erp::{ErpOptions, ErpSim};
use concord_sandbox::shop::{HubCheckout, ShopOptions, ShopSim};
use std::net::SocketAddr;
use std::process::ExitCode;

/// How the sandbox storefronts check out.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checkout {
    /// Reserve in the hub's stock pool first (all lines or none; 409 when the hub says no), as
    /// in `concord demo`: the hub is the one arbiter between the stores.
    Hub,
    /// Sell from the store's own inventory copy (what the hub last pushed to it).
    Local,
}

#[derive(Args, Debug, Clone)]
pub struct SandboxArgs {
    /// Where the sandbox ERP listens.
    #[arg(long, default_value = "127.0.0.1:7001")]
    pub erp: SocketAddr,
    /// Where the first sandbox storefront (`web1`) listens.
    #[arg(long, default_value = "127.0.0.1:7002")]
    pub web1: SocketAddr,
    /// Where the second sandbox storefront (`web2`) listens.
    #[arg(long, default_value = "127.0.0.1:7003")]
    pub web2: SocketAddr,
    /// Concord's base URL: webhooks go to `<hub>/hooks/<endpoint>`, and (with `--checkout hub`)
    /// checkouts reserve stock at `<hub>/v1/reservations`.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub hub: String,
    /// How the storefronts check out: through the hub's stock pool (`hub`, like the demo; the
    /// hub's config needs `[inventory]` with channels `web1` and `web2`) or from each store's
    /// own inventory copy (`local`).
    #[arg(long, value_enum, default_value_t = Checkout::Hub)]
    pub checkout: Checkout,
    /// web1's storefront key for the hub's `/v1` (a `[[commerce.keys]]` key of channel `web1`,
    /// from `concord token new --name web1 --channel web1`); not needed while `/v1` is open.
    #[arg(long, env = "CONCORD_WEB1_STOREFRONT_KEY", hide_env_values = true)]
    pub web1_key: Option<String>,
    /// web2's storefront key for the hub's `/v1` (channel `web2`).
    #[arg(long, env = "CONCORD_WEB2_STOREFRONT_KEY", hide_env_values = true)]
    pub web2_key: Option<String>,
    /// SKUs to seed in the ERP (SKU-0001…), with stock in WH1 and WH2.
    #[arg(long, default_value_t = 20)]
    pub skus: usize,
    /// Ship each accepted sales order after this many milliseconds (0 = never).
    #[arg(long, default_value_t = 2000)]
    pub auto_ship_ms: u64,
}

fn secret(var: &str) -> anyhow::Result<String> {
    std::env::var(var).map_err(|_| {
        crate::wiring::ConfigProblem(format!(
            "environment variable {var} is not set: the sandbox signs its webhooks with it (set the same value Concord's config reads)"
        ))
        .into()
    })
}

pub async fn run(args: SandboxArgs) -> anyhow::Result<ExitCode> {
    let hub = args.hub.trim_end_matches('/').to_string();
    let hook = |ep: &str| format!("{hub}/hooks/{ep}");
    let erp = ErpSim::start(ErpOptions {
        bind: args.erp,
        webhook_url: Some(hook("erp")),
        webhook_secret: Some(secret("CONCORD_ERP_WEBHOOK_SECRET")?),
        auto_ship_after: (args.auto_ship_ms > 0)
            .then(|| std::time::Duration::from_millis(args.auto_ship_ms)),
        ..ErpOptions::default()
    })
    .await
    .context("starting the sandbox ERP")?;
    erp.seed(args.skus, &["WH1", "WH2"], 30)?;
    let mut shops = Vec::new();
    for (name, bind, var, key) in [
        (
            "web1",
            args.web1,
            "CONCORD_WEB1_WEBHOOK_SECRET",
            args.web1_key.clone(),
        ),
        (
            "web2",
            args.web2,
            "CONCORD_WEB2_WEBHOOK_SECRET",
            args.web2_key.clone(),
        ),
    ] {
        // The pool channel is the store's endpoint name, as in `examples/sandbox.toml`.
        let through_hub = (args.checkout == Checkout::Hub).then(|| HubCheckout {
            base_url: hub.clone(),
            channel: name.to_string(),
            key: key.filter(|k| !k.trim().is_empty()),
        });
        let checkout = match &through_hub {
            Some(h) => format!(
                "checkout through the hub's stock pool at {hub}/v1/reservations, {}",
                if h.key.is_some() {
                    "with its storefront key"
                } else {
                    "without a key (the hub's /v1 must be open)"
                }
            ),
            None => "checkout from its own inventory copy".to_string(),
        };
        let shop = ShopSim::start(ShopOptions {
            bind,
            name: name.to_string(),
            webhook_url: Some(hook(name)),
            webhook_secret: Some(secret(var)?),
            hub: through_hub,
            ..ShopOptions::default()
        })
        .await
        .with_context(|| format!("starting the sandbox storefront {name}"))?;
        shops.push((shop, checkout));
    }
    println!(
        "sandbox ERP    {}  (webhooks to {})",
        erp.base_url(),
        hook("erp")
    );
    for (s, checkout) in &shops {
        println!(
            "sandbox store  {}  {}  (webhooks to {}; {checkout})",
            s.name(),
            s.base_url(),
            hook(s.name())
        );
    }
    let shops: Vec<_> = shops.into_iter().map(|(s, _)| s).collect();
    println!(
        "place an order:  curl -s -XPOST {}/api/checkout -H 'content-type: application/json' \\",
        shops[0].base_url()
    );
    println!("                   -d '{{\"email\":\"ann@example.com\",\"name\":\"Ann\",\"lines\":[{{\"sku\":\"SKU-0001\",\"quantity\":2}}]}}'");
    println!("change stock:    curl -s -XPUT {}/api/stock/SKU-0001/WH1 -H 'content-type: application/json' -d '{{\"sku\":\"SKU-0001\",\"location\":\"WH1\",\"on_hand\":50}}'", erp.base_url());
    // The order lifecycle: what the merchant, the customer and the warehouse do (control calls).
    let (shop, erp_url) = (shops[0].base_url(), erp.base_url());
    println!("edit an order:   curl -s -XPOST {shop}/_control/orders/ord_1/edit -d '{{\"lines\":[{{\"sku\":\"SKU-0001\",\"quantity\":3}}]}}'");
    println!("cancel it:       curl -s -XPOST {shop}/_control/orders/ord_1/cancel");
    println!("capture / refund: curl -s -XPOST {shop}/_control/orders/ord_1/capture; curl -s -XPOST {shop}/_control/orders/ord_1/refund -d '{{\"amount_minor\":500}}'");
    println!("ship part of SO-1: curl -s -XPOST {erp_url}/_control/sales-orders/SO-1/ship -d '{{\"lines\":[{{\"sku\":\"SKU-0001\",\"quantity\":1}}],\"carrier\":\"DHL\",\"tracking_number\":\"JD0146\"}}'");
    println!("invoice it:      curl -s -XPOST {erp_url}/_control/sales-orders/SO-1/invoice");
    println!("receive a return: curl -s -XPOST {erp_url}/_control/returns/RMA-1/receive");
    println!("a goods receipt: curl -s -XPOST {erp_url}/_control/stock/SKU-0001/WH1/adjust -d '{{\"delta\":10}}'");
    println!("a rep's order:   curl -s -XPOST {erp_url}/_control/rep-orders -d '{{\"email\":\"rep@example.com\",\"lines\":[{{\"sku\":\"SKU-0001\",\"quantity\":5}}]}}'");
    println!("a 10 s outage:   curl -s -XPOST {shop}/_control/outage -d '{{\"duration_ms\":10000}}'   (the port closes, then comes back)");
    println!("Ctrl-C to stop");
    let _ = tokio::signal::ctrl_c().await;
    erp.shutdown().await;
    for s in &shops {
        s.shutdown().await;
    }
    Ok(ExitCode::SUCCESS)
}
