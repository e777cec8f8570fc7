//! `[pricing]` → [`PricingConfig`]: the currency is a three-letter ISO 4217 code, the tolerance
//! is an amount within the bounded domain (`concord_core::limits::money`), `check_orders` defaults to on. Part of [`validate`](super::validate): no I/O,
//! and it must never look at other sections (pricing needs no endpoint or flow to be checked).

use super::{config_amount, Result};
use crate::config::raw::RawPricing;
use crate::config::{Issue, PricingConfig};

pub(super) fn pricing(raw: RawPricing) -> Result<PricingConfig> {
    if let Some(c) = &raw.currency {
        if c.len() != 3 || !c.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(Issue::new(
                "pricing.currency",
                format!("must be a three-letter ISO 4217 code such as USD, got {c:?}"),
            ));
        }
    }
    let tolerance_minor = config_amount(
        "pricing.tolerance_minor",
        raw.tolerance_minor.unwrap_or(0),
        concord_core::limits::money,
    )?;
    Ok(PricingConfig {
        currency: raw.currency,
        tolerance_minor,
        check_orders: raw.check_orders.unwrap_or(true),
    })
}
