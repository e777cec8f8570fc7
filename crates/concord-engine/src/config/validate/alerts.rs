//! `[alerts]` → [`AlertsConfig`]: the webhook is an http(s) URL, durations parse, rule names
//! are unique, each rule's condition is known and carries exactly the threshold it uses, and a
//! rule's `endpoint` is a configured one. Part of [`validate`](super::validate): no I/O; must
//! never quote the webhook URL in an error (it can carry credentials).

use super::{check_name, check_url, duration, known_endpoint, Result};
use crate::config::alerts::{AlertCondition, AlertRule, AlertsConfig};
use crate::config::raw::{RawAlertRule, RawAlerts};
use crate::config::Issue;
use crate::connector::EndpointSpec;
use std::collections::BTreeMap;
use std::time::Duration;

const CONDITIONS: &str = "`dead_letters`, `lag`, `breaker_open`, `oversold_risk` or `drift`";

pub(super) fn alerts(
    raw: RawAlerts,
    endpoints: &BTreeMap<String, EndpointSpec>,
) -> Result<AlertsConfig> {
    let defaults = AlertsConfig::default();
    if let Some(url) = &raw.webhook_url {
        check_url(url).map_err(|m| Issue::new("alerts.webhook_url", m))?;
        let credentials = crate::outbound::url_carries_credentials(url)
            .then_some("the credentials in its user info or query string");
        crate::outbound::check_transport(
            url,
            credentials,
            raw.allow_insecure_http.unwrap_or(false),
        )
        .map_err(|m| Issue::new("alerts.webhook_url", m))?;
    }
    if raw.webhook_secret.as_ref().is_some_and(|s| s.is_empty()) {
        return Err(Issue::new(
            "alerts.webhook_secret",
            "is empty (is its environment variable set to an empty value?); remove the field to send unsigned notifications",
        ));
    }
    let interval = duration(
        "alerts.interval",
        raw.interval.as_deref(),
        defaults.interval,
        false,
    )?;
    let timeout = duration(
        "alerts.timeout",
        raw.timeout.as_deref(),
        defaults.timeout,
        false,
    )?;
    let mut rules: Vec<AlertRule> = Vec::with_capacity(raw.rules.len());
    for (i, r) in raw.rules.into_iter().enumerate() {
        let at = format!("alerts.rules[{i}]");
        let rule = rule(&at, r, endpoints)?;
        if let Some(j) = rules.iter().position(|x| x.name == rule.name) {
            return Err(Issue::new(
                format!("{at}.name"),
                format!(
                    "duplicate rule name `{}` (already used by alerts.rules[{j}])",
                    rule.name
                ),
            ));
        }
        rules.push(rule);
    }
    Ok(AlertsConfig {
        webhook_url: raw.webhook_url,
        webhook_secret: raw.webhook_secret,
        interval,
        timeout,
        rules,
    })
}

fn rule(
    at: &str,
    raw: RawAlertRule,
    endpoints: &BTreeMap<String, EndpointSpec>,
) -> Result<AlertRule> {
    let path = |f: &str| format!("{at}.{f}");
    check_name(&path("name"), &raw.name, "rule")?;
    // Each condition uses one threshold field; the others must be absent so that a rule never
    // silently ignores what its author wrote.
    let unused = |field: &str, present: bool, cond: &str| -> Result<()> {
        if present {
            Err(Issue::new(
                path(field),
                format!("is not used by condition `{cond}`; remove it"),
            ))
        } else {
            Ok(())
        }
    };
    let cond = raw.condition.as_str();
    let condition = match cond {
        "dead_letters" | "oversold_risk" | "drift" => {
            unused("lag_above", raw.lag_above.is_some(), cond)?;
            unused("open_for", raw.open_for.is_some(), cond)?;
            let above = raw.above.unwrap_or(0);
            if cond == "dead_letters" {
                AlertCondition::DeadLetters { above }
            } else if cond == "drift" {
                AlertCondition::Drift { above }
            } else {
                unused("endpoint", raw.endpoint.is_some(), cond)?;
                AlertCondition::OversoldRisk { above }
            }
        }
        "lag" => {
            unused("above", raw.above.is_some(), cond)?;
            unused("open_for", raw.open_for.is_some(), cond)?;
            if raw.lag_above.is_none() {
                return Err(Issue::new(
                    path("lag_above"),
                    "is required for condition `lag` (a duration such as \"30s\")",
                ));
            }
            AlertCondition::Lag {
                above: duration(
                    &path("lag_above"),
                    raw.lag_above.as_deref(),
                    Duration::ZERO,
                    false,
                )?,
            }
        }
        "breaker_open" => {
            unused("above", raw.above.is_some(), cond)?;
            unused("lag_above", raw.lag_above.is_some(), cond)?;
            AlertCondition::BreakerOpen {
                longer_than: duration(
                    &path("open_for"),
                    raw.open_for.as_deref(),
                    Duration::ZERO,
                    true,
                )?,
            }
        }
        other => {
            return Err(Issue::new(
                path("condition"),
                format!("unknown condition {other:?}; expected {CONDITIONS}"),
            ))
        }
    };
    if let Some(e) = &raw.endpoint {
        known_endpoint(&path("endpoint"), e, endpoints)?;
    }
    Ok(AlertRule {
        name: raw.name,
        condition,
        endpoint: raw.endpoint,
    })
}

#[cfg(test)]
mod tests {
    use crate::config::{AlertCondition, Config, ConfigError};
    use std::path::Path;
    use std::time::Duration;

    fn load(alerts: &str) -> Result<Config, ConfigError> {
        let text = format!(
            r#"
[endpoints.erp]
connector = "sandbox-erp"
url = "http://127.0.0.1:7001"
[endpoints.web1]
connector = "sandbox-shop"
url = "http://127.0.0.1:7002"
[[flows]]
name = "f"
kind = "stock"
pattern = "broadcast"
mode = "realtime"
from = ["erp"]
to = ["web1"]
{alerts}
"#
        );
        Config::from_toml_str_with_env(&text, Path::new("/etc/concord.toml"), |_| None)
    }

    #[track_caller]
    fn assert_err(alerts: &str, path: &str, message: &str) {
        match load(alerts) {
            Ok(_) => panic!("expected an error at {path} containing {message:?}, got Ok"),
            Err(e) => {
                assert_eq!(e.path, path, "{e}");
                assert!(e.message.contains(message), "{e}");
            }
        }
    }

    #[test]
    fn absent_means_no_rules() {
        let c = load("").unwrap();
        assert!(c.alerts.rules.is_empty());
        assert_eq!(c.alerts.webhook_url, None);
    }

    #[test]
    fn every_condition_is_read() {
        let c = load(
            r#"
[alerts]
webhook_url = "http://127.0.0.1:9000/alerts"
interval = "2s"
[[alerts.rules]]
name = "dlq"
condition = "dead_letters"
above = 3
[[alerts.rules]]
name = "slow-web"
condition = "lag"
lag_above = "30s"
endpoint = "web1"
[[alerts.rules]]
name = "breaker"
condition = "breaker_open"
open_for = "1m"
[[alerts.rules]]
name = "oversold"
condition = "oversold_risk"
"#,
        )
        .unwrap();
        let a = &c.alerts;
        assert_eq!(
            a.webhook_url.as_deref(),
            Some("http://127.0.0.1:9000/alerts")
        );
        assert_eq!(a.interval, Duration::from_secs(2));
        let conds: Vec<_> = a.rules.iter().map(|r| r.condition).collect();
        assert_eq!(
            conds,
            [
                AlertCondition::DeadLetters { above: 3 },
                AlertCondition::Lag {
                    above: Duration::from_secs(30)
                },
                AlertCondition::BreakerOpen {
                    longer_than: Duration::from_secs(60)
                },
                AlertCondition::OversoldRisk { above: 0 },
            ]
        );
        assert_eq!(a.rules[1].endpoint.as_deref(), Some("web1"));
    }

    #[test]
    fn errors_name_the_field() {
        assert_err(
            "[alerts]\nwebhook_url = \"ftp://x\"",
            "alerts.webhook_url",
            "scheme",
        );
        assert_err(
            "[alerts]\ninterval = \"0s\"",
            "alerts.interval",
            "longer than zero",
        );
        let rule = |body: &str| format!("[[alerts.rules]]\nname = \"r\"\n{body}");
        assert_err(
            &rule("condition = \"cpu\""),
            "alerts.rules[0].condition",
            "unknown condition \"cpu\"",
        );
        assert_err(
            &rule("condition = \"lag\""),
            "alerts.rules[0].lag_above",
            "required",
        );
        assert_err(
            &rule("condition = \"lag\"\nlag_above = \"soon\""),
            "alerts.rules[0].lag_above",
            "expected a duration",
        );
        assert_err(
            &rule("condition = \"dead_letters\"\nlag_above = \"1s\""),
            "alerts.rules[0].lag_above",
            "not used by condition `dead_letters`",
        );
        assert_err(
            &rule("condition = \"oversold_risk\"\nendpoint = \"erp\""),
            "alerts.rules[0].endpoint",
            "not used",
        );
        assert_err(
            &rule("condition = \"breaker_open\"\nendpoint = \"crm\""),
            "alerts.rules[0].endpoint",
            "unknown endpoint `crm`",
        );
        assert_err(
            "[[alerts.rules]]\nname = \"Bad Name\"\ncondition = \"lag\"",
            "alerts.rules[0].name",
            "invalid rule",
        );
        assert_err(
            &format!(
                "{}\n{}",
                rule("condition = \"dead_letters\""),
                rule("condition = \"oversold_risk\"")
            ),
            "alerts.rules[1].name",
            "duplicate rule name `r`",
        );
        assert_err(
            &rule("condition = \"lag\"\nlag_above = \"1s\"\nfor = \"1m\""),
            "alerts.rules[0].for",
            "unknown field",
        );
    }
}
