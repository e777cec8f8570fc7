//! The canonical records: one typed struct per kind (and the pieces they share: addresses,
//! item lines, statuses), with the serde shape every connector and mapping produces. Unknown
//! fields are rejected (`deny_unknown_fields`; extensions go in `attributes`); money is always
//! integer minor units (`*_minor`), never floats.
//!
//! Must never hold a rule serde cannot express: bounds, e-mail shape, tier order and the like
//! are checked in `validate.rs`, keys are built in `keys.rs`.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

type Attrs = Map<String, Value>;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Address {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub line1: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line2: Option<String>,
    pub city: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postal_code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// ISO 3166-1 alpha-2.
    pub country: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Product {
    pub sku: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub barcode: Option<String>,
    #[serde(default = "yes")]
    pub active: bool,
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub attributes: Attrs,
}

/// A purchase-order lot expected at a location.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Incoming {
    pub quantity: i64,
    /// ISO date (`YYYY-MM-DD`) the lot is expected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eta: Option<String>,
}

/// Stock of one SKU at one location, as the system of record reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stock {
    pub sku: String,
    pub location: String,
    pub on_hand: i64,
    /// Allocated by the ERP to its own open orders.
    #[serde(default)]
    pub committed: i64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub incoming: Vec<Incoming>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tier {
    pub min_quantity: i64,
    pub amount_minor: i64,
}

/// The price of one SKU on one price list. The list's own attributes (scope, validity) are
/// carried on every price of the list, so that one record is self-sufficient for a lookup
/// (`crate::pricing`). Scope: no `customer` and no `customer_group` = a channel default list
/// (for every channel, or only `channel` when set); `customer_group` = the list of a group;
/// `customer` (canonical customer key, the e-mail) = a customer-specific list. Setting both
/// `customer` and `customer_group` is invalid.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Price {
    pub sku: String,
    /// Price list name; `default` is the channel's base list.
    #[serde(default = "default_list")]
    pub list: String,
    pub currency: String,
    /// Unit price for quantities below the first tier, in minor units.
    pub amount_minor: i64,
    /// Quantity breaks: from `min_quantity` on, the unit price is `amount_minor`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tiers: Vec<Tier>,
    /// Restrict a default list to one channel (endpoint name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    /// A customer-group list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_group: Option<String>,
    /// A customer-specific list (canonical customer key: the lower-cased e-mail).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer: Option<String>,
    /// First day the list applies (`YYYY-MM-DD`, inclusive, from 00:00 UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_from: Option<String>,
    /// Day the list stops applying (`YYYY-MM-DD`, exclusive: from 00:00 UTC it no longer does).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_to: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Customer {
    pub email: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub company: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_number: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<Address>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomerRef {
    pub email: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrderLine {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line_id: Option<String>,
    pub sku: String,
    pub quantity: i64,
    #[serde(default)]
    pub unit_price_minor: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ship_to: Option<Address>,
    /// The stock location the line is taken from, when the channel knows it (a checkout that
    /// reserved through the stock pool gets it from the reservation, design §5): the ERP commits
    /// and ships the line there. Absent: the ERP picks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
}

/// Order status as the canonical lifecycle names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    #[default]
    Placed,
    Accepted,
    PartiallyShipped,
    Shipped,
    Invoiced,
    Paid,
    Closed,
    Cancelled,
    PartiallyRefunded,
    Refunded,
    Returned,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Order {
    /// The selling endpoint; defaults to the endpoint the order was captured from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    /// The channel's order number.
    pub number: String,
    pub customer: CustomerRef,
    #[serde(default)]
    pub status: OrderStatus,
    pub currency: String,
    pub lines: Vec<OrderLine>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shipping_address: Option<Address>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub billing_address: Option<Address>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_minor: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placed_at: Option<String>,
    /// The ERP's own number once accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub erp_number: Option<String>,
    /// The reference the ERP order is keyed by, when it is not the canonical key
    /// (`channel/number`): set by the engine for cancel-and-replace — the replacement order is
    /// `"{key}~{n}"` (n = 2, 3, …). Connectors use it when present, else the write's key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ItemQty {
    pub sku: String,
    pub quantity: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ShipmentStatus {
    #[default]
    Pending,
    Shipped,
    Delivered,
    Cancelled,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Shipment {
    pub id: String,
    /// Canonical key of the order (`channel/number`).
    pub order: String,
    #[serde(default)]
    pub status: ShipmentStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub carrier: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracking_number: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracking_url: Option<String>,
    pub lines: Vec<ItemQty>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<Address>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shipped_at: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum InvoiceStatus {
    #[default]
    Draft,
    Posted,
    Paid,
    Cancelled,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Invoice {
    pub number: String,
    pub order: String,
    #[serde(default)]
    pub status: InvoiceStatus,
    pub currency: String,
    pub total_minor: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub due_date: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum PaymentStatus {
    #[default]
    Authorized,
    Captured,
    Refunded,
    Failed,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Payment {
    pub id: String,
    pub order: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invoice: Option<String>,
    pub amount_minor: i64,
    pub currency: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    #[serde(default)]
    pub status: PaymentStatus,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Refund {
    pub id: String,
    pub order: String,
    pub amount_minor: i64,
    pub currency: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lines: Vec<ItemQty>,
    #[serde(default)]
    pub restock: bool,
}

fn yes() -> bool {
    true
}
fn default_list() -> String {
    "default".to_string()
}
