//! The `vendure` connector's options (`[endpoints.NAME.options]`), parsed and checked without
//! I/O. Unknown options are refused with their path (`options.<name>`), so a typo fails at load.
//!
//! ```toml
//! [endpoints.vendure]
//! connector = "vendure"
//! url = "http://127.0.0.1:3011"      # the server root; GraphQL goes to <url>/<admin_api_path>
//! timeout = "10s"
//! [endpoints.vendure.options]
//! user = "superadmin"                # default "superadmin"
//! password = "${VENDURE_PASSWORD}"   # required; use an ${ENV} reference
//! channel_token = "..."              # optional: the Vendure channel (`vendure-token` header)
//! currency = "USD"                   # optional: prices in other currencies are per-currency
//! language = "en"                    # language of names written; default "en"
//! admin_api_path = "admin-api"       # default "admin-api"
//! # Concord location name -> Vendure stock location id or name. A location not listed here is
//! # looked up by its own name.
//! stock_locations = { default = "Default Stock Location", WH2 = "2" }
//! settle_on_ship = true              # settle authorized payments when the ERP ships (default)
//! list_limit = 1000                  # Vendure's `adminListQueryLimit` (default 1000): the most
//!                                    # rows one list query may ask for
//! ```
//!
//! Must never: do I/O or print the password.

use crate::options::{err, non_empty, parse_raw};
use concord_engine::connector::BuildError;
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    user: Option<String>,
    password: Option<String>,
    channel_token: Option<String>,
    currency: Option<String>,
    language: Option<String>,
    admin_api_path: Option<String>,
    stock_locations: Option<BTreeMap<String, Value>>,
    settle_on_ship: Option<bool>,
    list_limit: Option<u64>,
}

/// Checked options.
#[derive(Clone, PartialEq)]
pub struct Options {
    pub user: String,
    pub password: String,
    pub channel_token: Option<String>,
    /// Upper-case ISO 4217 code, when configured.
    pub currency: Option<String>,
    pub language: String,
    pub admin_api_path: String,
    /// Concord location → Vendure stock location id or name.
    pub stock_locations: BTreeMap<String, String>,
    /// Settle (capture) an order's authorized payments when the ERP ships it: Vendure's default
    /// order process only lets paid orders become `Shipped`. Default true.
    pub settle_on_ship: bool,
    /// The most rows one Admin API list query may ask for: the server's
    /// `apiOptions.adminListQueryLimit` (Vendure refuses a larger `take`). Default 1000.
    pub list_limit: usize,
}

impl std::fmt::Debug for Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Options")
            .field("user", &self.user)
            .field("password", &"***")
            .field("channel_token", &self.channel_token.as_ref().map(|_| "***"))
            .field("currency", &self.currency)
            .field("language", &self.language)
            .field("stock_locations", &self.stock_locations)
            .field("list_limit", &self.list_limit)
            .finish_non_exhaustive()
    }
}

impl Options {
    pub fn parse(options: &Value) -> Result<Options, BuildError> {
        let raw: Raw = parse_raw(options, "vendure", "a table with at least `password`")?;
        let password = raw
            .password
            .filter(|p| !p.is_empty())
            .ok_or_else(|| err("options.password", "is required (use \"${ENV_VAR}\")"))?;
        let user = non_empty("options.user", raw.user)?.unwrap_or_else(|| "superadmin".into());
        let currency = non_empty("options.currency", raw.currency)?;
        if let Some(c) = &currency {
            if c.len() != 3 || !c.chars().all(|ch| ch.is_ascii_alphabetic()) {
                return Err(err(
                    "options.currency",
                    "must be an ISO 4217 code like `USD`",
                ));
            }
        }
        let mut stock_locations = BTreeMap::new();
        for (name, v) in raw.stock_locations.unwrap_or_default() {
            let path = format!("options.stock_locations.{name}");
            let target = match &v {
                Value::String(s) if !s.trim().is_empty() => s.trim().to_string(),
                Value::Number(n) if n.as_u64().is_some() => n.to_string(),
                _ => {
                    return Err(err(
                        &path,
                        "must be a Vendure stock location id or name (a non-empty string)",
                    ))
                }
            };
            stock_locations.insert(name, target);
        }
        let admin_api_path = non_empty("options.admin_api_path", raw.admin_api_path)?
            .unwrap_or_else(|| "admin-api".into())
            .trim_matches('/')
            .to_string();
        let list_limit = match raw.list_limit {
            None => 1000,
            Some(n) if (1..=100_000).contains(&n) => n as usize,
            Some(n) => {
                return Err(err(
                    "options.list_limit",
                    format!("must be 1 to 100000 (Vendure's adminListQueryLimit), got {n}"),
                ))
            }
        };
        Ok(Options {
            list_limit,
            user,
            password,
            channel_token: non_empty("options.channel_token", raw.channel_token)?,
            currency: currency.map(|c| c.to_ascii_uppercase()),
            language: non_empty("options.language", raw.language)?.unwrap_or_else(|| "en".into()),
            admin_api_path,
            stock_locations,
            settle_on_ship: raw.settle_on_ship.unwrap_or(true),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn options_are_checked_with_paths() {
        let o = Options::parse(&json!({"password": "pw", "currency": "usd",
                                       "stock_locations": {"default": "Default Stock Location",
                                                           "WH2": 2}}))
        .unwrap();
        assert_eq!(o.user, "superadmin");
        assert_eq!(o.currency.as_deref(), Some("USD"));
        assert_eq!(o.stock_locations["WH2"], "2");
        assert_eq!(o.admin_api_path, "admin-api");
        assert!(!format!("{o:?}").contains("pw"));
        let e = |v: Value| Options::parse(&v).unwrap_err().path;
        assert_eq!(e(json!({"password": "p", "pasword": 1})), "options.pasword");
        assert_eq!(e(json!({})), "options.password");
        assert_eq!(e(Value::Null), "options");
        assert_eq!(
            e(json!({"password": "p", "currency": "dollars"})),
            "options.currency"
        );
        assert_eq!(
            e(json!({"password": "p", "stock_locations": {"WH": ""}})),
            "options.stock_locations.WH"
        );
        assert_eq!(e(json!({"password": "p", "user": " "})), "options.user");
        assert_eq!(o.list_limit, 1000);
        assert_eq!(
            e(json!({"password": "p", "list_limit": 0})),
            "options.list_limit"
        );
        assert_eq!(
            Options::parse(&json!({"password": "p", "list_limit": 5}))
                .unwrap()
                .list_limit,
            5
        );
    }
}
