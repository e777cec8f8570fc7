//! Price lists: which list applies to a buyer, which tier of it, the unit and extended price, and
//! the rule that produced them (design §5: "storefront reads of … price are served from the hub's
//! state"). Pure: the caller passes the candidate prices of one SKU and the time.
//!
//! Rules, in the order they are applied:
//! 1. **Scope** — a price applies to a query when its list is customer-specific for the query's
//!    customer, or for the customer's group, or a channel default (no customer, no group) for the
//!    query's channel (`channel` equal) or for every channel (`channel` absent).
//! 2. **Validity** — `valid_from` is inclusive (from 00:00 UTC of that day), `valid_to` exclusive
//!    (the list no longer applies from 00:00 UTC of that day). Absent bounds are open.
//! 3. **Currency** — the price's currency must equal the requested one; without a requested
//!    currency every currency matches.
//! 4. **Precedence** — customer-specific > customer group > channel-specific default > default
//!    for every channel. Ties within one level: the latest `valid_from` wins (an open start is
//!    the oldest), then the list name in ascending order, then the currency (deterministic).
//! 5. **Tier** — the tier with the highest `min_quantity` ≤ quantity; below the first tier the
//!    list's base `amount_minor` applies. A quantity equal to a break gets that break's price.
//! 6. **Money** — every amount is an integer in minor units; the extended price is
//!    `unit × quantity` exactly (checked: an overflow is an error, never a wrap). No step divides,
//!    so no rounding happens here; [`decimal_to_minor`] is the one place a decimal amount from an
//!    API becomes minor units, rounding half away from zero, explicitly.
//!
//! Must never: use floating point for money, read a clock, or do I/O.

use crate::model::Price;
use crate::Millis;
use serde::Serialize;
use std::cmp::Reverse;
use std::fmt;

const DAY_MS: i64 = 86_400_000;

/// The scope of a price list, most specific first (the derived order is the precedence).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    Customer,
    CustomerGroup,
    Channel,
    Default,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Customer => "customer",
            Scope::CustomerGroup => "customer_group",
            Scope::Channel => "channel",
            Scope::Default => "default",
        }
    }
}

/// A price with its validity window parsed, ready for repeated lookups.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub price: Price,
    /// Inclusive start, in milliseconds since the epoch.
    pub from: Option<Millis>,
    /// Exclusive end.
    pub to: Option<Millis>,
}

impl Rule {
    /// Parse the validity dates of a (validated) price. `Err` names the field.
    pub fn new(price: Price) -> Result<Rule, String> {
        let parse = |field: &str, v: &Option<String>| -> Result<Option<Millis>, String> {
            match v {
                None => Ok(None),
                Some(d) => parse_day(d)
                    .map(|day| Some(day * DAY_MS))
                    .ok_or_else(|| format!("{field}: must be a date YYYY-MM-DD, got {d:?}")),
            }
        };
        let from = parse("valid_from", &price.valid_from)?;
        let to = parse("valid_to", &price.valid_to)?;
        Ok(Rule { price, from, to })
    }

    pub fn scope(&self) -> Scope {
        let p = &self.price;
        if p.customer.is_some() {
            Scope::Customer
        } else if p.customer_group.is_some() {
            Scope::CustomerGroup
        } else if p.channel.is_some() {
            Scope::Channel
        } else {
            Scope::Default
        }
    }

    /// Whether the list applies to this buyer on this channel (scope only).
    pub fn applies_to(&self, channel: &str, customer: Option<&str>, group: Option<&str>) -> bool {
        let p = &self.price;
        match self.scope() {
            Scope::Customer => p.customer.as_deref() == customer && customer.is_some(),
            Scope::CustomerGroup => p.customer_group.as_deref() == group && group.is_some(),
            Scope::Channel => p.channel.as_deref() == Some(channel),
            Scope::Default => true,
        }
    }

    /// Whether the list is valid at `now` (from inclusive, to exclusive).
    pub fn is_valid_at(&self, now: Millis) -> bool {
        self.from.is_none_or(|f| now >= f) && self.to.is_none_or(|t| now < t)
    }

    /// The unit price for `quantity` and the break that produced it (`None`: the base price).
    pub fn unit_for(&self, quantity: i64) -> (i64, Option<i64>) {
        let p = &self.price;
        p.tiers
            .iter()
            .filter(|t| t.min_quantity <= quantity)
            .max_by_key(|t| t.min_quantity)
            .map_or((p.amount_minor, None), |t| {
                (t.amount_minor, Some(t.min_quantity))
            })
    }
}

/// What a lookup asks.
#[derive(Debug, Clone, Copy)]
pub struct Query<'a> {
    pub channel: &'a str,
    /// Canonical customer key (lower-cased e-mail).
    pub customer: Option<&'a str>,
    /// The customer's group, resolved by the caller from the customer entity.
    pub group: Option<&'a str>,
    pub sku: &'a str,
    pub quantity: i64,
    /// `None`: any currency.
    pub currency: Option<&'a str>,
    pub now: Millis,
}

/// The answer to a lookup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Quote {
    pub sku: String,
    pub quantity: i64,
    pub list: String,
    pub scope: Scope,
    pub currency: String,
    /// The tier break applied; `None` = the list's base price.
    pub tier_min_quantity: Option<i64>,
    pub unit_minor: i64,
    pub extended_minor: i64,
    /// Human-readable: which list and which tier, and why that list.
    pub rule: String,
}

/// Why no price applies. The message says which filter excluded the candidates.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoPrice {
    #[error("quantity: must be greater than 0, got {0}")]
    BadQuantity(i64),
    #[error("no price list has SKU `{0}`")]
    UnknownSku(String),
    #[error("no price list for SKU `{sku}` applies to this buyer on channel `{channel}` (lists with it: {lists})")]
    NoScope {
        sku: String,
        channel: String,
        lists: String,
    },
    #[error("no applicable price list for SKU `{sku}` is in {requested} (applicable lists are in {available})")]
    Currency {
        sku: String,
        requested: String,
        available: String,
    },
    #[error("no applicable price list for SKU `{sku}` is valid on {day} ({windows})")]
    NotValid {
        sku: String,
        day: String,
        windows: String,
    },
    #[error("extended price of {quantity} × {unit} overflows")]
    Overflow { quantity: i64, unit: i64 },
}

/// Pick the applicable price among `rules` (the candidates of `q.sku`; others are ignored) and
/// price `q.quantity` of it. See the module docs for the rules.
pub fn quote<'r, I>(rules: I, q: &Query<'_>) -> Result<Quote, NoPrice>
where
    I: IntoIterator<Item = &'r Rule> + Clone,
{
    if q.quantity <= 0 {
        return Err(NoPrice::BadQuantity(q.quantity));
    }
    let of_sku = |rules: I| rules.into_iter().filter(|r| r.price.sku == q.sku);
    let in_scope = |r: &&Rule| r.applies_to(q.channel, q.customer, q.group);
    let in_currency = |r: &&Rule| q.currency.is_none_or(|c| c == r.price.currency);
    let rank = |r: &'r Rule| {
        (
            r.scope(),
            Reverse(r.from.unwrap_or(Millis::MIN)),
            r.price.list.as_str(),
            r.price.currency.as_str(),
        )
    };
    // The hot path allocates nothing until the answer; diagnostics are built only on a miss.
    let best = of_sku(rules.clone())
        .filter(in_scope)
        .filter(in_currency)
        .filter(|r| r.is_valid_at(q.now))
        .min_by_key(|r| rank(r));
    let Some(r) = best else {
        let sku = q.sku.to_string();
        let any: Vec<&Rule> = of_sku(rules).collect();
        if any.is_empty() {
            return Err(NoPrice::UnknownSku(sku));
        }
        let scoped: Vec<&Rule> = any.iter().copied().filter(in_scope).collect();
        if scoped.is_empty() {
            return Err(NoPrice::NoScope {
                sku,
                channel: q.channel.to_string(),
                lists: join(any.iter().map(|r| describe_list(r))),
            });
        }
        let priced: Vec<&Rule> = scoped.iter().copied().filter(in_currency).collect();
        if priced.is_empty() {
            return Err(NoPrice::Currency {
                sku,
                requested: q.currency.unwrap_or_default().to_string(),
                available: join(scoped.iter().map(|r| r.price.currency.clone())),
            });
        }
        return Err(NoPrice::NotValid {
            sku,
            day: day_string(q.now),
            windows: join(priced.iter().map(|r| {
                format!(
                    "`{}` from {} to {}",
                    r.price.list,
                    r.price.valid_from.as_deref().unwrap_or("the start"),
                    r.price.valid_to.as_deref().unwrap_or("no end")
                )
            })),
        });
    };
    let (unit, tier) = r.unit_for(q.quantity);
    let extended = unit.checked_mul(q.quantity).ok_or(NoPrice::Overflow {
        quantity: q.quantity,
        unit,
    })?;
    let tier_text = match tier {
        Some(m) => format!("tier from {m} units"),
        None => "base price".to_string(),
    };
    Ok(Quote {
        sku: q.sku.to_string(),
        quantity: q.quantity,
        list: r.price.list.clone(),
        scope: r.scope(),
        currency: r.price.currency.clone(),
        tier_min_quantity: tier,
        unit_minor: unit,
        extended_minor: extended,
        rule: format!("{}, {tier_text}", describe_list(r)),
    })
}

fn describe_list(r: &Rule) -> String {
    let p = &r.price;
    match r.scope() {
        Scope::Customer => format!(
            "customer list `{}` of {}",
            p.list,
            p.customer.as_deref().unwrap_or_default()
        ),
        Scope::CustomerGroup => format!(
            "customer-group list `{}` of group `{}`",
            p.list,
            p.customer_group.as_deref().unwrap_or_default()
        ),
        Scope::Channel => format!(
            "channel list `{}` of `{}`",
            p.list,
            p.channel.as_deref().unwrap_or_default()
        ),
        Scope::Default => format!("default list `{}`", p.list),
    }
}

fn join(items: impl Iterator<Item = String>) -> String {
    let mut v: Vec<String> = items.collect();
    v.sort();
    v.dedup();
    v.join(", ")
}

/// Days since 1970-01-01 of a `YYYY-MM-DD` date; `None` when it is not a real calendar date
/// (the rule of `crate::limits::date`, the one place that decides which dates exist).
pub fn parse_day(s: &str) -> Option<i64> {
    Some(i64::from(crate::limits::date("", s).ok()?.to_epoch_days()))
}

/// `YYYY-MM-DD` (UTC) of a time.
pub fn day_string(t: Millis) -> String {
    let (y, m, d) = civil_from_days(t.div_euclid(DAY_MS));
    format!("{y:04}-{m:02}-{d:02}")
}

// Howard Hinnant's civil_from_days (proleptic Gregorian).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// A decimal amount (`"12.345"`, `"-3"`, `"0.5"`) as integer minor units with `exponent`
/// fraction digits (2 for USD), rounding half away from zero. `None` for anything that is not
/// a plain decimal or that overflows.
pub fn decimal_to_minor(s: &str, exponent: u32) -> Option<i64> {
    let s = s.trim();
    let (neg, digits) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    if int.is_empty() && frac.is_empty()
        || !int.bytes().chain(frac.bytes()).all(|c| c.is_ascii_digit())
    {
        return None;
    }
    let scale = 10i64.checked_pow(exponent)?;
    let mut value = if int.is_empty() {
        0
    } else {
        int.parse::<i64>().ok()?.checked_mul(scale)?
    };
    let e = exponent as usize;
    let kept = &frac[..frac.len().min(e)];
    if !kept.is_empty() {
        let pad = 10i64.checked_pow((e - kept.len()) as u32)?;
        value = value.checked_add(kept.parse::<i64>().ok()?.checked_mul(pad)?)?;
    }
    if frac.as_bytes().get(e).is_some_and(|c| *c >= b'5') {
        value = value.checked_add(1)?;
    }
    Some(if neg { -value } else { value })
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Tier;
    use proptest::prelude::*;

    const NOW: Millis = 1_780_000_000_000; // 2026-05-28

    fn price(list: &str, amount: i64, tiers: &[(i64, i64)]) -> Price {
        Price {
            sku: "A".into(),
            list: list.into(),
            currency: "USD".into(),
            amount_minor: amount,
            tiers: tiers
                .iter()
                .map(|&(min_quantity, amount_minor)| Tier {
                    min_quantity,
                    amount_minor,
                })
                .collect(),
            channel: None,
            customer_group: None,
            customer: None,
            valid_from: None,
            valid_to: None,
        }
    }

    fn rule(p: Price) -> Rule {
        Rule::new(p).unwrap()
    }

    fn q(customer: Option<&'static str>, group: Option<&'static str>, qty: i64) -> Query<'static> {
        Query {
            channel: "web",
            customer,
            group,
            sku: "A",
            quantity: qty,
            currency: Some("USD"),
            now: NOW,
        }
    }

    fn lists() -> Vec<Rule> {
        let base = price("default", 1000, &[(10, 900), (48, 800)]);
        let web = Price {
            channel: Some("web".into()),
            ..price("web", 990, &[])
        };
        let b2b = Price {
            channel: Some("b2b".into()),
            ..price("b2b", 950, &[])
        };
        let group = Price {
            customer_group: Some("wholesale".into()),
            ..price("wholesale", 850, &[(48, 700)])
        };
        let ann = Price {
            customer: Some("ann@example.com".into()),
            ..price("ann-special", 750, &[(100, 600)])
        };
        let expired = Price {
            customer: Some("bob@example.com".into()),
            valid_to: Some("2026-01-01".into()),
            ..price("bob-old", 500, &[])
        };
        let future = Price {
            customer: Some("bob@example.com".into()),
            valid_from: Some("2027-01-01".into()),
            ..price("bob-next", 400, &[])
        };
        let euro = Price {
            customer: Some("eve@example.com".into()),
            currency: "EUR".into(),
            ..price("eve-eur", 300, &[])
        };
        [base, web, b2b, group, ann, expired, future, euro]
            .into_iter()
            .map(rule)
            .collect()
    }

    #[test]
    fn precedence_and_tiers_table() {
        let rules = lists();
        // (customer, group, qty, list, tier, unit)
        type Row<'a> = (
            Option<&'a str>,
            Option<&'a str>,
            i64,
            &'a str,
            Option<i64>,
            i64,
        );
        let table: Vec<Row> = vec![
            (None, None, 1, "web", None, 990),
            (None, Some("retail"), 47, "web", None, 990),
            (None, Some("wholesale"), 1, "wholesale", None, 850),
            (None, Some("wholesale"), 47, "wholesale", None, 850),
            (None, Some("wholesale"), 48, "wholesale", Some(48), 700),
            (None, Some("wholesale"), 49, "wholesale", Some(48), 700),
            // customer-specific beats the customer's group
            (
                Some("ann@example.com"),
                Some("wholesale"),
                48,
                "ann-special",
                None,
                750,
            ),
            (Some("ann@example.com"), None, 99, "ann-special", None, 750),
            (
                Some("ann@example.com"),
                None,
                100,
                "ann-special",
                Some(100),
                600,
            ),
            // expired and future customer lists are skipped: the channel list applies
            (Some("bob@example.com"), None, 5, "web", None, 990),
            // another customer's list never applies
            (Some("zed@example.com"), None, 1, "web", None, 990),
            // a USD query skips eve's EUR list
            (Some("eve@example.com"), None, 1, "web", None, 990),
        ];
        for (customer, group, qty, list, tier, unit) in table {
            let got = quote(&rules, &q(customer, group, qty)).unwrap();
            assert_eq!(
                (got.list.as_str(), got.tier_min_quantity, got.unit_minor),
                (list, tier, unit),
                "{customer:?} {group:?} {qty}: {}",
                got.rule
            );
            assert_eq!(got.extended_minor, unit * qty);
        }
        // Channel without its own list: the default one, with its tiers (qty equal to a break).
        let mut query = q(None, None, 10);
        query.channel = "pos";
        let got = quote(&rules, &query).unwrap();
        assert_eq!((got.list.as_str(), got.unit_minor), ("default", 900));
        assert_eq!(got.scope, Scope::Default);
        assert!(got.rule.contains("tier from 10 units"), "{}", got.rule);
        query.quantity = 9;
        assert_eq!(quote(&rules, &query).unwrap().unit_minor, 1000);
    }

    #[test]
    fn validity_boundaries() {
        let p = Price {
            valid_from: Some("2026-05-28".into()),
            valid_to: Some("2026-05-29".into()),
            ..price("day", 100, &[])
        };
        let r = rule(p);
        let start = parse_day("2026-05-28").unwrap() * DAY_MS;
        assert!(r.is_valid_at(start), "valid_from is inclusive");
        assert!(!r.is_valid_at(start - 1));
        assert!(r.is_valid_at(start + DAY_MS - 1));
        assert!(!r.is_valid_at(start + DAY_MS), "valid_to is exclusive");
    }

    #[test]
    fn no_price_says_why() {
        let rules = lists();
        let mut query = q(Some("eve@example.com"), None, 1);
        query.currency = Some("GBP");
        let e = quote(&rules, &query).unwrap_err();
        assert!(matches!(e, NoPrice::Currency { .. }), "{e}");
        assert!(e.to_string().contains("GBP"), "{e}");
        // Only bob's lists, one expired and one future.
        let bob: Vec<Rule> = rules
            .iter()
            .filter(|r| r.price.list.starts_with("bob"))
            .cloned()
            .collect();
        let e = quote(&bob, &q(Some("bob@example.com"), None, 1)).unwrap_err();
        assert!(matches!(e, NoPrice::NotValid { .. }), "{e}");
        assert!(e.to_string().contains("2026-05-28"), "{e}");
        let e = quote(&bob, &q(Some("ann@example.com"), None, 1)).unwrap_err();
        assert!(matches!(e, NoPrice::NoScope { .. }), "{e}");
        let mut other = q(None, None, 1);
        other.sku = "Z";
        assert_eq!(
            quote(&rules, &other).unwrap_err(),
            NoPrice::UnknownSku("Z".into())
        );
        assert_eq!(
            quote(&rules, &q(None, None, 0)).unwrap_err(),
            NoPrice::BadQuantity(0)
        );
        let huge = [rule(price("default", i64::MAX / 2, &[]))];
        assert!(matches!(
            quote(&huge, &q(None, None, 3)).unwrap_err(),
            NoPrice::Overflow { .. }
        ));
    }

    #[test]
    fn any_currency_when_none_requested() {
        let rules = lists();
        let mut query = q(Some("eve@example.com"), None, 1);
        query.currency = None;
        let got = quote(&rules, &query).unwrap();
        assert_eq!(
            (got.list.as_str(), got.currency.as_str()),
            ("eve-eur", "EUR")
        );
    }

    #[test]
    fn same_level_ties_break_by_latest_start_then_name() {
        let older = Price {
            customer_group: Some("g".into()),
            valid_from: Some("2025-01-01".into()),
            ..price("b-older", 10, &[])
        };
        let newer = Price {
            customer_group: Some("g".into()),
            valid_from: Some("2026-01-01".into()),
            ..price("z-newer", 20, &[])
        };
        let open = Price {
            customer_group: Some("g".into()),
            ..price("a-open", 30, &[])
        };
        let rules: Vec<Rule> = [older, newer, open].into_iter().map(rule).collect();
        let got = quote(&rules, &q(None, Some("g"), 1)).unwrap();
        assert_eq!(got.list, "z-newer");
    }

    #[test]
    fn days_and_decimals() {
        assert_eq!(parse_day("1970-01-01"), Some(0));
        assert_eq!(parse_day("2024-02-29"), Some(19_782));
        assert_eq!(parse_day("2023-02-29"), None);
        assert_eq!(parse_day("2026-13-01"), None);
        assert_eq!(parse_day("2026-1-01"), None);
        assert_eq!(day_string(NOW), "2026-05-28");
        assert_eq!(day_string(19_782 * DAY_MS), "2024-02-29");
        assert_eq!(decimal_to_minor("12.345", 2), Some(1235));
        assert_eq!(decimal_to_minor("12.344", 2), Some(1234));
        assert_eq!(decimal_to_minor("-0.005", 2), Some(-1));
        assert_eq!(decimal_to_minor("7", 2), Some(700));
        assert_eq!(decimal_to_minor(".5", 0), Some(1));
        assert_eq!(decimal_to_minor("1e3", 2), None);
        assert_eq!(decimal_to_minor("", 2), None);
    }

    fn arb_price() -> impl Strategy<Value = Price> {
        (
            0i64..100_000,
            proptest::collection::btree_map(1i64..500, 0i64..100_000, 0..6),
        )
            .prop_map(|(base, tiers)| {
                let t: Vec<(i64, i64)> = tiers.into_iter().collect();
                price("default", base, &t)
            })
    }

    proptest! {
        #[test]
        fn chosen_unit_price_is_one_of_the_lists_prices(
            prices in proptest::collection::vec(arb_price(), 1..5),
            groups in proptest::collection::vec(proptest::option::of(0u8..3), 5),
            qty in 1i64..1_000,
        ) {
            let rules: Vec<Rule> = prices
                .into_iter()
                .zip(groups)
                .enumerate()
                .map(|(i, (mut p, g))| {
                    p.list = format!("l{i}");
                    p.customer_group = g.map(|g| format!("g{g}"));
                    rule(p)
                })
                .collect();
            let query = Query { group: Some("g1"), ..q(None, None, qty) };
            if let Ok(got) = quote(&rules, &query) {
                let chosen = rules.iter().find(|r| r.price.list == got.list).unwrap();
                let p = &chosen.price;
                let mut all: Vec<i64> = p.tiers.iter().map(|t| t.amount_minor).collect();
                all.push(p.amount_minor);
                prop_assert!(all.contains(&got.unit_minor));
                prop_assert_eq!(got.extended_minor, got.unit_minor * qty);
                // Nothing of a more specific scope applied and was skipped.
                prop_assert!(rules.iter().all(|r| !r.applies_to("web", None, Some("g1")) || r.scope() >= got.scope));
            }
        }

        /// Quantities, prices and tier breaks over all of i64: the extended price is exactly
        /// `unit × quantity` (checked in i128 here) or the quote is refused — never a wrap.
        #[test]
        fn money_over_all_of_i64(
            base in any::<i64>(),
            tiers in proptest::collection::vec((any::<i64>(), any::<i64>()), 0..4),
            qty in prop_oneof![any::<i64>(), Just(i64::MAX), Just(i64::MIN), 1i64..100],
        ) {
            let mut tiers = tiers;
            tiers.sort_by_key(|t| t.0);
            let r = rule(price("default", base, &tiers));
            match quote([&r], &q(None, None, qty)) {
                Ok(got) => {
                    prop_assert!(qty > 0);
                    prop_assert_eq!(
                        i128::from(got.extended_minor),
                        i128::from(got.unit_minor) * i128::from(qty)
                    );
                }
                Err(NoPrice::BadQuantity(q)) => prop_assert!(q <= 0 && q == qty),
                Err(NoPrice::Overflow { quantity, unit }) => {
                    prop_assert_eq!(quantity, qty);
                    prop_assert!(unit.checked_mul(quantity).is_none());
                }
                Err(other) => prop_assert!(false, "unexpected {}", other),
            }
        }

        #[test]
        fn tiers_monotone_when_the_list_is(
            base in 0i64..100_000,
            steps in proptest::collection::vec((1i64..50, 0i64..1_000), 0..8),
            a in 1i64..1_000,
            b in 1i64..1_000,
        ) {
            // Build a non-increasing list: each break lowers the price (or keeps it).
            let (mut min, mut amount, mut tiers) = (0i64, base, Vec::new());
            for (dq, da) in steps {
                min += dq;
                amount = (amount - da).max(0);
                tiers.push((min, amount));
            }
            let r = rule(price("default", base, &tiers));
            let (lo, hi) = (a.min(b), a.max(b));
            prop_assert!(r.unit_for(hi).0 <= r.unit_for(lo).0);
        }
    }
}
