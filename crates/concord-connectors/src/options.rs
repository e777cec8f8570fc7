//! Parsing a connector's `[endpoints.NAME.options]` table (JSON by the time it gets here) into
//! its typed options: the pieces every connector's `config.rs` shares — error with a field path,
//! unknown options named by their path, non-empty strings. Must never do I/O.

use concord_engine::connector::BuildError;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// A build error at `path` (relative to the endpoint's table, e.g. `options.database`).
pub(crate) fn err(path: &str, message: impl Into<String>) -> BuildError {
    BuildError {
        path: path.to_string(),
        message: message.into(),
    }
}

/// Deserialize the options table of a `connector`; a missing table says what it needs
/// (`required`), an unknown option is reported at `options.<field>`.
pub(crate) fn parse_raw<T: DeserializeOwned>(
    options: &Value,
    connector: &str,
    required: &str,
) -> Result<T, BuildError> {
    if !options.is_object() {
        return Err(err("options", format!("is required: {required}")));
    }
    serde_json::from_value(options.clone()).map_err(|e| {
        let msg = e.to_string();
        // serde names the unknown field in backticks: `foo`.
        match msg
            .strip_prefix("unknown field `")
            .and_then(|r| r.split_once('`'))
        {
            Some((field, _)) => err(
                &format!("options.{field}"),
                format!("unknown option for {connector}; {msg}"),
            ),
            None => err("options", msg),
        }
    })
}

/// A trimmed string option; present but empty is an error at `path`.
pub(crate) fn non_empty(path: &str, v: Option<String>) -> Result<Option<String>, BuildError> {
    match v.map(|s| s.trim().to_string()) {
        Some(s) if s.is_empty() => Err(err(path, "must not be empty")),
        other => Ok(other),
    }
}
