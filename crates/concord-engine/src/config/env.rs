//! `${NAME}` references in string values, resolved before the raw TOML is deserialized.
//!
//! Every string value anywhere in the document (not the keys) may contain `${NAME}`; it is
//! replaced by the environment variable `NAME`. `$${` is a literal `${`; a `$` not followed by
//! `{` is kept as is. A missing variable is an error naming the field and the variable (never
//! the value of anything).

use super::Issue;

/// Resolve references in every string of `value`, in place. `lookup` reads one variable.
/// Returns the substituted values (so error messages can be scrubbed of them).
pub(crate) fn resolve(
    value: &mut toml::Value,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<String>, Issue> {
    let mut substituted = Vec::new();
    walk(value, &mut String::new(), lookup, &mut substituted)?;
    Ok(substituted)
}

fn walk(
    value: &mut toml::Value,
    path: &mut String,
    lookup: &dyn Fn(&str) -> Option<String>,
    substituted: &mut Vec<String>,
) -> Result<(), Issue> {
    match value {
        toml::Value::String(s) => {
            if s.contains('$') {
                *s = expand(s, lookup, substituted)
                    .map_err(|message| Issue::new(path.clone(), message))?;
            }
        }
        toml::Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                walk(item, path, lookup, substituted)?;
                path.truncate(len);
            }
        }
        toml::Value::Table(table) => {
            for (key, item) in table.iter_mut() {
                let len = path.len();
                push_key(path, key);
                walk(item, path, lookup, substituted)?;
                path.truncate(len);
            }
        }
        toml::Value::Integer(_)
        | toml::Value::Float(_)
        | toml::Value::Boolean(_)
        | toml::Value::Datetime(_) => {}
    }
    Ok(())
}

/// Field paths of secrets written in the file as literals instead of `${ENV}` references: an
/// endpoint's `webhook_secret`, an option under a secret-looking name at any depth of
/// `endpoints.NAME.options` (`password`, `api_key`, …), `[alerts] webhook_secret`, a `url` /
/// `webhook_url` carrying credentials (user info or a query string), and a `[store] url` with a
/// password. Called on the document
/// before [`resolve`]; a value containing at least one reference counts as referenced.
pub(crate) fn literal_secrets(doc: &toml::Value) -> Vec<String> {
    let mut out = Vec::new();
    let literal = |v: &toml::Value| match v {
        toml::Value::String(s) => !s.is_empty() && !has_reference(s),
        _ => false,
    };
    let literal_url = |v: &toml::Value| {
        literal(v)
            && v.as_str()
                .is_some_and(crate::outbound::url_carries_credentials)
    };
    if let Some(endpoints) = doc.get("endpoints").and_then(toml::Value::as_table) {
        for (name, ep) in endpoints {
            let mut at = String::from("endpoints");
            push_key(&mut at, name);
            if ep.get("webhook_secret").is_some_and(literal) {
                out.push(format!("{at}.webhook_secret"));
            }
            if ep.get("url").is_some_and(literal_url) {
                out.push(format!("{at}.url"));
            }
            if let Some(options) = ep.get("options") {
                secret_leaves(
                    options,
                    &mut format!("{at}.options"),
                    false,
                    &literal,
                    &mut out,
                );
            }
        }
    }
    // A PostgreSQL store URL with its password written in: `postgres://user:pw@host/db`.
    if let Some(url) = doc.get("store").and_then(|s| s.get("url")) {
        if literal(url)
            && url
                .as_str()
                .and_then(|u| reqwest::Url::parse(u).ok())
                .is_some_and(|u| u.password().is_some())
        {
            out.push("store.url".to_string());
        }
    }
    if let Some(alerts) = doc.get("alerts") {
        if alerts.get("webhook_secret").is_some_and(literal) {
            out.push("alerts.webhook_secret".to_string());
        }
        if alerts.get("webhook_url").is_some_and(literal_url) {
            out.push("alerts.webhook_url".to_string());
        }
    }
    out
}

/// Literal strings under a secret-looking key (`under_secret`: an ancestor key is one).
fn secret_leaves(
    v: &toml::Value,
    path: &mut String,
    under_secret: bool,
    literal: &dyn Fn(&toml::Value) -> bool,
    out: &mut Vec<String>,
) {
    match v {
        toml::Value::Table(t) => {
            for (k, item) in t {
                let len = path.len();
                push_key(path, k);
                let secret = under_secret || crate::secret::is_secret_name(k);
                secret_leaves(item, path, secret, literal, out);
                path.truncate(len);
            }
        }
        toml::Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                secret_leaves(item, path, under_secret, literal, out);
                path.truncate(len);
            }
        }
        other => {
            if under_secret && literal(other) {
                out.push(path.clone());
            }
        }
    }
}

/// Does `s` contain a `${NAME}` reference (a malformed one counts: it is reported elsewhere)?
fn has_reference(s: &str) -> bool {
    let mut found = Vec::new();
    expand(s, &|_| Some(String::new()), &mut found).map_or(true, |_| !found.is_empty())
}

/// Append `.key` (the key quoted when it is not a bare TOML key).
pub(crate) fn push_key(path: &mut String, key: &str) {
    if !path.is_empty() {
        path.push('.');
    }
    let bare = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if bare {
        path.push_str(key);
    } else {
        path.push_str(&format!("{key:?}"));
    }
}

/// Expand one string.
pub(crate) fn expand(
    s: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    substituted: &mut Vec<String>,
) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(tail) = after.strip_prefix("${") {
            // `$${` → literal `${`
            out.push_str("${");
            rest = tail;
        } else if let Some(tail) = after.strip_prefix('{') {
            let Some(end) = tail.find('}') else {
                return Err("unterminated `${` (write `$${` for a literal `${`)".to_string());
            };
            let name = &tail[..end];
            let valid = !name.is_empty()
                && !name.starts_with(|c: char| c.is_ascii_digit())
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid {
                return Err(format!(
                    "invalid environment variable name `{name}` in `${{...}}` (expected letters, digits and `_`; write `$${{` for a literal `${{`)"
                ));
            }
            match lookup(name) {
                Some(v) => {
                    out.push_str(&v);
                    substituted.push(v);
                }
                None => {
                    return Err(format!("environment variable `{name}` is not set"));
                }
            }
            rest = &tail[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "A" => Some("alpha".into()),
            "EMPTY" => Some(String::new()),
            "B_2" => Some("${A}".into()),
            _ => None,
        }
    }

    fn ex(s: &str) -> Result<String, String> {
        expand(s, &env, &mut Vec::new())
    }

    #[test]
    fn expands_references() {
        assert_eq!(ex("${A}").as_deref(), Ok("alpha"));
        assert_eq!(ex("x-${A}-${A}/").as_deref(), Ok("x-alpha-alpha/"));
        assert_eq!(ex("${EMPTY}").as_deref(), Ok(""));
        // Substituted text is not expanded again.
        assert_eq!(ex("${B_2}").as_deref(), Ok("${A}"));
    }

    #[test]
    fn dollars_that_are_not_references_stay() {
        assert_eq!(ex("$A $ $$ a$").as_deref(), Ok("$A $ $$ a$"));
        assert_eq!(ex("$${A}").as_deref(), Ok("${A}"));
        assert_eq!(
            ex(".price | \"$\\(.)\"").as_deref(),
            Ok(".price | \"$\\(.)\"")
        );
    }

    #[test]
    fn bad_references_are_errors() {
        assert!(ex("${MISSING}")
            .unwrap_err()
            .contains("`MISSING` is not set"));
        assert!(ex("${A").unwrap_err().contains("unterminated"));
        assert!(ex("${}")
            .unwrap_err()
            .contains("invalid environment variable name"));
        assert!(ex("${A-B}")
            .unwrap_err()
            .contains("invalid environment variable name"));
    }

    #[test]
    fn missing_variable_names_the_field_path() {
        let mut v: toml::Value =
            toml::from_str("[endpoints.erp]\nurl = \"x\"\nheaders = [\"ok\", \"${NOPE}\"]\n")
                .unwrap();
        let issue = resolve(&mut v, &env).unwrap_err();
        assert_eq!(issue.path, "endpoints.erp.headers[1]");
        assert!(issue.message.contains("`NOPE`"));
    }

    #[test]
    fn literal_secrets_are_found_by_path() {
        let doc: toml::Value = toml::from_str(
            r#"
[endpoints.erp]
url = "http://127.0.0.1:8011"
webhook_secret = "plain-hook"
[endpoints.erp.options]
user = "admin"
password = "hunter2"
database = "${DB}"
[endpoints.erp.options.auth]
client_secret = "x"
[endpoints.web]
url = "https://ann:pw@shop.example.com"
webhook_secret = "${WEB_SECRET}"
[endpoints.web.options]
api_key = "pre-${KEY}"
token = "$${not-a-reference}"
empty_password = ""
[alerts]
webhook_url = "https://hooks.example/x?token=abc"
webhook_secret = "s"
"#,
        )
        .unwrap();
        let mut found = literal_secrets(&doc);
        found.sort();
        assert_eq!(
            found,
            [
                "alerts.webhook_secret",
                "alerts.webhook_url",
                "endpoints.erp.options.auth.client_secret",
                "endpoints.erp.options.password",
                "endpoints.erp.webhook_secret",
                "endpoints.web.options.token",
                "endpoints.web.url",
            ]
        );
    }

    #[test]
    fn resolves_everywhere_and_reports_values() {
        let mut v: toml::Value =
            toml::from_str("a = \"${A}\"\n[t]\nlist = [[\"${A}\"]]\n[t.\"odd key\"]\nx = 1\n")
                .unwrap();
        let subs = resolve(&mut v, &env).unwrap();
        assert_eq!(v["a"].as_str(), Some("alpha"));
        assert_eq!(v["t"]["list"][0][0].as_str(), Some("alpha"));
        assert_eq!(subs, ["alpha", "alpha"]);
        let mut p = String::from("t");
        push_key(&mut p, "odd key");
        assert_eq!(p, "t.\"odd key\"");
    }
}
