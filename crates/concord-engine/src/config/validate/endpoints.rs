//! `[endpoints.NAME]`: one endpoint's connector type, URL, timeouts and options (TOML turned
//! into the JSON its connector parses), and the transport check — no credentials over plain
//! `http://` unless `allow_insecure_http`. Part of [`validate`](super::validate): no I/O; a URL
//! is checked, never fetched, and never quoted back in an error (it can carry credentials).
//! The connector's own options are checked by the connector, not here.

use super::{check_name, duration, positive, Result};
use crate::config::raw::RawEndpoint;
use crate::config::Issue;
use crate::connector::EndpointSpec;
use serde_json::Value;
use std::time::Duration;

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// `[endpoints.NAME]`.
pub(super) fn endpoint(name: &str, raw: RawEndpoint) -> Result<EndpointSpec> {
    let mut at = String::from("endpoints");
    crate::config::env::push_key(&mut at, name);
    check_name(&at, name, "endpoint name")?;
    if raw.connector.trim().is_empty() {
        return Err(Issue::new(
            format!("{at}.connector"),
            "expected a connector type such as \"sandbox-erp\", got an empty string",
        ));
    }
    check_url(&raw.url).map_err(|m| Issue::new(format!("{at}.url"), m))?;
    if raw.webhook_secret.as_ref().is_some_and(|s| s.is_empty()) {
        return Err(Issue::new(
            format!("{at}.webhook_secret"),
            "is empty (is its environment variable set to an empty value?); remove the field if the endpoint sends no webhooks",
        ));
    }
    let timeout = duration(
        &format!("{at}.timeout"),
        raw.timeout.as_deref(),
        DEFAULT_TIMEOUT,
        false,
    )?;
    let options = match raw.options {
        Some(table) => toml_to_json(toml::Value::Table(table)),
        None => Value::Object(Default::default()),
    };
    let max_response_bytes = match raw.max_response_bytes {
        Some(size) => positive(&format!("{at}.max_response_bytes"), Some(size.0), 0)?,
        None => crate::outbound::DEFAULT_MAX_RESPONSE_BYTES,
    };
    let allow_insecure_http = raw.allow_insecure_http.unwrap_or(false);
    let credentials = sent_credentials(&raw.url, &options);
    crate::outbound::check_transport(&raw.url, credentials.as_deref(), allow_insecure_http)
        .map_err(|m| Issue::new(format!("{at}.url"), m))?;
    Ok(EndpointSpec {
        name: name.to_string(),
        connector: raw.connector,
        url: raw.url,
        webhook_secret: raw.webhook_secret,
        timeout,
        max_response_bytes,
        allow_insecure_http,
        options,
    })
}

/// What an endpoint sends to its server that must not travel in clear: the first non-empty
/// option under a secret-looking name (`options.password`), else user info or a query string
/// in its URL. (Its `webhook_secret` is only used to check what the endpoint sends us.)
fn sent_credentials(url: &str, options: &Value) -> Option<String> {
    fn find(v: &Value, path: &mut String) -> bool {
        match v {
            Value::Object(map) => map.iter().any(|(k, v)| {
                let len = path.len();
                path.push('.');
                path.push_str(k);
                let secret = crate::secret::is_secret_name(k)
                    && !matches!(v, Value::Null)
                    && v.as_str().is_none_or(|s| !s.is_empty());
                if secret || find(v, path) {
                    return true;
                }
                path.truncate(len);
                false
            }),
            Value::Array(items) => items.iter().any(|i| find(i, path)),
            _ => false,
        }
    }
    let mut path = String::from("options");
    if find(options, &mut path) {
        return Some(format!("credentials (`{path}`)"));
    }
    crate::outbound::url_carries_credentials(url)
        .then(|| "the credentials in the url's user info or query string".to_string())
}

/// An `http://` or `https://` URL with a host (and a numeric port, if any). The value is never
/// quoted back: URLs can carry credentials.
pub(super) fn check_url(url: &str) -> std::result::Result<(), String> {
    const EXPECTED: &str =
        "expected an http(s) URL like \"https://erp.example.com\" or \"http://127.0.0.1:7001\"";
    let lower = url.to_ascii_lowercase();
    let rest = if lower.starts_with("http://") {
        &url[7..]
    } else if lower.starts_with("https://") {
        &url[8..]
    } else if let Some((scheme, _)) = url.split_once("://") {
        let scheme: String = scheme.chars().take(16).collect();
        return Err(format!(
            "{EXPECTED}; scheme `{scheme}` is not http or https"
        ));
    } else {
        return Err(format!(
            "{EXPECTED}; the scheme (http:// or https://) is missing"
        ));
    };
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("{EXPECTED}; it contains whitespace"));
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, hp)| hp);
    let (host, port) = if let Some(v6) = host_port.strip_prefix('[') {
        match v6.split_once(']') {
            Some((h, tail)) if !h.is_empty() => match tail {
                "" => (h, None),
                t => match t.strip_prefix(':') {
                    Some(p) => (h, Some(p)),
                    None => return Err(format!("{EXPECTED}; the host is malformed")),
                },
            },
            _ => return Err(format!("{EXPECTED}; the IPv6 host is malformed")),
        }
    } else {
        match host_port.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (host_port, None),
        }
    };
    if host.is_empty() {
        return Err(format!("{EXPECTED}; the host is missing"));
    }
    if let Some(p) = port {
        if p.parse::<u16>().is_err() {
            return Err(format!(
                "{EXPECTED}; the port is not a number from 0 to 65535"
            ));
        }
    }
    Ok(())
}

/// Connector options go to connectors as JSON. TOML datetimes become their RFC 3339 text.
fn toml_to_json(v: toml::Value) -> Value {
    match v {
        toml::Value::String(s) => Value::String(s),
        toml::Value::Integer(i) => Value::from(i),
        toml::Value::Float(f) => serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number),
        toml::Value::Boolean(b) => Value::Bool(b),
        toml::Value::Datetime(d) => Value::String(d.to_string()),
        toml::Value::Array(items) => Value::Array(items.into_iter().map(toml_to_json).collect()),
        toml::Value::Table(t) => {
            Value::Object(t.into_iter().map(|(k, v)| (k, toml_to_json(v))).collect())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::check_url;

    #[test]
    fn urls() {
        for ok in [
            "http://127.0.0.1:7001",
            "https://erp.example.com",
            "HTTPS://erp.example.com/api/v1?x=1",
            "http://user:pw@host:80/",
            "http://[::1]:8080/x",
            "http://localhost",
        ] {
            assert!(check_url(ok).is_ok(), "{ok}");
        }
        for (bad, why) in [
            ("ftp://x", "scheme `ftp`"),
            ("erp.example.com", "scheme (http:// or https://) is missing"),
            ("http://", "host is missing"),
            ("http:///path", "host is missing"),
            ("http://host:99999", "port"),
            ("http://host:abc", "port"),
            ("http://ho st", "whitespace"),
            ("http://[::1", "IPv6"),
        ] {
            let err = check_url(bad).unwrap_err();
            assert!(err.contains(why), "{bad}: {err}");
        }
    }
}
