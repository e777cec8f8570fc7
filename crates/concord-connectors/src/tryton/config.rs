//! The `tryton` connector's options (`[endpoints.NAME.options]`), parsed and checked without
//! I/O. Unknown options are refused with their path (`options.<name>`), so a typo fails at load.
//!
//! ```toml
//! [endpoints.erp]
//! connector = "tryton"
//! url = "http://127.0.0.1:8011"      # the server root; JSON-RPC goes to <url>/<database>/rpc/
//! timeout = "10s"                    # per JSON-RPC request
//! [endpoints.erp.options]
//! database = "concord"               # required
//! user = "admin"                     # default "admin"
//! password = "${TRYTON_PASSWORD}"    # required; use an ${ENV} reference
//! warehouses = ["WH", "WH2"]         # warehouse codes whose stock is read; default: all
//! order_warehouse = "WH"             # where sales are created; default: first of `warehouses`
//! sale_flow = "confirm"              # "quote" | "confirm" | "process"; default "confirm"
//! payment_term = "Direct"            # by name, when the party has no customer payment term
//! payment_method = "Channel payments" # invoice payment method for channel payments (by name);
//!                                    # default: the company's only one
//! default_country = "US"             # for addresses Tryton holds without a country
//! shipment_states = ["done"]         # which customer-shipment states are read; default all
//! ```
//!
//! Must never: do I/O or print the password.

use crate::options::{err, non_empty, parse_raw};
use concord_engine::connector::BuildError;
use serde::Deserialize;
use serde_json::Value;

/// What happens to a sale created from a channel order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum SaleFlow {
    /// Created and quoted: no stock moves yet.
    Quote,
    /// Quoted and confirmed: Tryton processes it (shipment and draft invoice created).
    #[default]
    Confirm,
    /// Confirmed, then `process` called explicitly (for servers that delay processing).
    Process,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    database: Option<String>,
    user: Option<String>,
    password: Option<String>,
    warehouses: Option<Vec<String>>,
    order_warehouse: Option<String>,
    sale_flow: Option<SaleFlow>,
    payment_term: Option<String>,
    payment_method: Option<String>,
    default_country: Option<String>,
    shipment_states: Option<Vec<String>>,
}

/// Checked options.
#[derive(Clone, PartialEq)]
pub struct Options {
    pub database: String,
    pub user: String,
    pub password: String,
    /// Empty = every warehouse.
    pub warehouses: Vec<String>,
    pub order_warehouse: Option<String>,
    pub sale_flow: SaleFlow,
    pub payment_term: Option<String>,
    /// `account.invoice.payment.method` name channel payments are recorded with.
    pub payment_method: Option<String>,
    pub default_country: Option<String>,
    /// Empty = every state.
    pub shipment_states: Vec<String>,
}

impl std::fmt::Debug for Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Options")
            .field("database", &self.database)
            .field("user", &self.user)
            .field("password", &"***")
            .field("warehouses", &self.warehouses)
            .field("order_warehouse", &self.order_warehouse)
            .field("sale_flow", &self.sale_flow)
            .finish_non_exhaustive()
    }
}

const SHIPMENT_STATES: &[&str] = &[
    "draft",
    "waiting",
    "assigned",
    "picked",
    "packed",
    "shipped",
    "done",
    "cancelled",
];

impl Options {
    pub fn parse(options: &Value) -> Result<Options, BuildError> {
        let raw: Raw = parse_raw(
            options,
            "tryton",
            "a table with at least `database` and `password`",
        )?;
        let database = non_empty("options.database", raw.database)?
            .ok_or_else(|| err("options.database", "is required (the Tryton database name)"))?;
        let password = raw
            .password
            .filter(|p| !p.is_empty())
            .ok_or_else(|| err("options.password", "is required (use \"${ENV_VAR}\")"))?;
        let user = non_empty("options.user", raw.user)?.unwrap_or_else(|| "admin".into());
        let warehouses = raw.warehouses.unwrap_or_default();
        for (i, w) in warehouses.iter().enumerate() {
            if w.trim().is_empty() {
                return Err(err(
                    &format!("options.warehouses[{i}]"),
                    "must be a warehouse code",
                ));
            }
        }
        let order_warehouse = non_empty("options.order_warehouse", raw.order_warehouse)?;
        if let Some(o) = &order_warehouse {
            if !warehouses.is_empty() && !warehouses.contains(o) {
                return Err(err(
                    "options.order_warehouse",
                    format!("`{o}` is not one of `warehouses`"),
                ));
            }
        }
        let shipment_states = raw.shipment_states.unwrap_or_default();
        for (i, s) in shipment_states.iter().enumerate() {
            if !SHIPMENT_STATES.contains(&s.as_str()) {
                return Err(err(
                    &format!("options.shipment_states[{i}]"),
                    format!("`{s}` is not one of {}", SHIPMENT_STATES.join(", ")),
                ));
            }
        }
        let default_country = non_empty("options.default_country", raw.default_country)?;
        if let Some(c) = &default_country {
            if c.len() != 2 || !c.chars().all(|ch| ch.is_ascii_alphabetic()) {
                return Err(err(
                    "options.default_country",
                    "must be an ISO 3166-1 alpha-2 code",
                ));
            }
        }
        Ok(Options {
            database,
            user,
            password,
            order_warehouse: order_warehouse.or_else(|| warehouses.first().cloned()),
            warehouses,
            sale_flow: raw.sale_flow.unwrap_or_default(),
            payment_term: non_empty("options.payment_term", raw.payment_term)?,
            payment_method: non_empty("options.payment_method", raw.payment_method)?,
            default_country: default_country.map(|c| c.to_ascii_uppercase()),
            shipment_states,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn options_are_checked_with_paths() {
        let o = Options::parse(&json!({"database": "db", "password": "pw",
                                       "warehouses": ["WH", "WH2"], "sale_flow": "process"}))
        .unwrap();
        assert_eq!(o.order_warehouse.as_deref(), Some("WH"));
        assert_eq!(o.sale_flow, SaleFlow::Process);
        assert!(!format!("{o:?}").contains("pw"));
        let e = |v: Value| Options::parse(&v).unwrap_err().path;
        assert_eq!(
            e(json!({"database": "db", "password": "p", "wharehouse": 1})),
            "options.wharehouse"
        );
        assert_eq!(e(json!({"password": "p"})), "options.database");
        assert_eq!(e(json!({"database": "db"})), "options.password");
        assert_eq!(e(Value::Null), "options");
        assert_eq!(
            e(json!({"database": "d", "password": "p", "sale_flow": "ship"})),
            "options"
        );
        assert_eq!(
            e(
                json!({"database": "d", "password": "p", "warehouses": ["WH"],
                     "order_warehouse": "X"})
            ),
            "options.order_warehouse"
        );
        assert_eq!(
            e(json!({"database": "d", "password": "p", "shipment_states": ["gone"]})),
            "options.shipment_states[0]"
        );
    }
}
