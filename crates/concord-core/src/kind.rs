//! The nine canonical kinds and how the engine treats each (state vs command, order-scoped).
//! Must never grow I/O or configuration: it is the vocabulary every other crate shares.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// A canonical entity type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Kind {
    Product,
    Stock,
    Price,
    Customer,
    Order,
    Shipment,
    Invoice,
    Payment,
    Refund,
}

impl Kind {
    pub const ALL: [Kind; 9] = [
        Kind::Product,
        Kind::Stock,
        Kind::Price,
        Kind::Customer,
        Kind::Order,
        Kind::Shipment,
        Kind::Invoice,
        Kind::Payment,
        Kind::Refund,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Product => "product",
            Kind::Stock => "stock",
            Kind::Price => "price",
            Kind::Customer => "customer",
            Kind::Order => "order",
            Kind::Shipment => "shipment",
            Kind::Invoice => "invoice",
            Kind::Payment => "payment",
            Kind::Refund => "refund",
        }
    }

    /// State kinds describe "how things are now": only the newest state matters, so pending
    /// deliveries of the same key are coalesced. Command kinds (orders and what follows them) are
    /// delivered in order and never coalesced away.
    pub fn is_state(self) -> bool {
        matches!(
            self,
            Kind::Product | Kind::Stock | Kind::Price | Kind::Customer
        )
    }

    /// Kinds that belong to one order: they are routed back only to the channel the order came
    /// from.
    pub fn is_order_scoped(self) -> bool {
        matches!(
            self,
            Kind::Shipment | Kind::Invoice | Kind::Payment | Kind::Refund
        )
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Error for an unknown kind name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown kind `{0}`, expected one of product, stock, price, customer, order, shipment, invoice, payment, refund")]
pub struct UnknownKind(pub String);

impl FromStr for Kind {
    type Err = UnknownKind;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Kind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| UnknownKind(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for k in Kind::ALL {
            assert_eq!(k.as_str().parse::<Kind>().unwrap(), k);
            assert_eq!(serde_json::to_value(k).unwrap(), k.as_str());
        }
        assert!("stocks".parse::<Kind>().is_err());
    }

    #[test]
    fn state_and_command_kinds_partition() {
        let state: Vec<_> = Kind::ALL.into_iter().filter(|k| k.is_state()).collect();
        assert_eq!(
            state,
            [Kind::Product, Kind::Stock, Kind::Price, Kind::Customer]
        );
        assert!(!Kind::Order.is_state());
        assert!(Kind::Shipment.is_order_scoped() && !Kind::Order.is_order_scoped());
    }
}
