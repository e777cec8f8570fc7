//! The sandbox emulators as a hub's tests wire them: the ERP and storefronts sending their
//! signed webhooks to the hub at `base` (and storefronts checking out through it), the listener
//! the hub is served on (bound first: the emulators need its address), and the config stanzas
//! naming them.
//!
//! Must never start anything on a fixed port.

use concord_sandbox::erp::{ErpHandle, ErpOptions, ErpSim};
use concord_sandbox::shop::{HubCheckout, ShopHandle, ShopOptions, ShopSim};
use std::net::SocketAddr;
use std::path::Path;

/// A listener for the hub on a free local port, its address and base URL: bound first, because
/// the sandboxes need the hub's address (webhooks, checkouts) before the hub starts.
pub async fn hub_listener() -> (tokio::net::TcpListener, SocketAddr, String) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the hub");
    let addr = listener.local_addr().expect("addr");
    (listener, addr, format!("http://{addr}"))
}

/// The sandbox ERP, sending its webhooks to the hub at `base` signed with `secret`; the rest of
/// its options from `options`.
pub async fn start_erp(base: &str, secret: &str, options: ErpOptions) -> ErpHandle {
    ErpSim::start(ErpOptions {
        webhook_url: Some(format!("{base}/hooks/erp")),
        webhook_secret: Some(secret.into()),
        ..options
    })
    .await
    .expect("start the ERP")
}

/// The sandbox storefront `name`, sending its webhooks to the hub at `base` signed with `secret`;
/// with `checkout: Some(key)` it checks out through the hub (with that storefront key, if any).
pub async fn start_shop(
    base: &str,
    secret: &str,
    name: &str,
    checkout: Option<Option<&str>>,
) -> ShopHandle {
    ShopSim::start(ShopOptions {
        name: name.to_string(),
        webhook_url: Some(format!("{base}/hooks/{name}")),
        webhook_secret: Some(secret.into()),
        hub: checkout.map(|key| HubCheckout {
            base_url: base.to_string(),
            channel: name.to_string(),
            key: key.map(str::to_string),
        }),
        ..ShopOptions::default()
    })
    .await
    .expect("start a storefront")
}

/// The start of a test hub's config: `[store]` in `dir`, `[server]` on `addr`, `[engine]` with a
/// fast backoff, and the sandbox ERP at `erp_url` as endpoint `erp`.
pub fn config_head(dir: &Path, addr: SocketAddr, erp_url: &str, secret: &str) -> String {
    format!(
        r#"
[store]
path = "{store}"

[server]
listen = "{addr}"

[engine]
backoff_base = "50ms"
backoff_cap = "500ms"

[endpoints.erp]
connector = "sandbox-erp"
url = "{erp_url}"
webhook_secret = "{secret}"
timeout = "5s"
"#,
        store = dir.join("concord.sqlite").display(),
    )
}

/// `[endpoints.{name}]`: a sandbox storefront at `url`.
pub fn shop_endpoint(name: &str, url: &str, secret: &str) -> String {
    format!(
        "[endpoints.{name}]\nconnector = \"sandbox-shop\"\nurl = \"{url}\"\nwebhook_secret = \"{secret}\"\ntimeout = \"5s\"\n"
    )
}
