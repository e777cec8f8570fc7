//! How the storefront (`/v1`) and admin (`/api/v1`) APIs read what a client sends: one strict
//! reading for every handler, so no endpoint can be more lenient than another.
//!
//! - [`require_json`] (middleware on both APIs): a request that carries a body must declare
//!   `Content-Type: application/json` (optionally `; charset=utf-8`), else 415. A browser sends
//!   `text/plain`, form and multipart bodies cross-site without asking (a "simple request"), so
//!   a JSON endpoint that accepted them could be driven by any web page.
//! - [`parse_json`]: the body as JSON with duplicate keys refused and nesting bounded
//!   (`concord_core::json::parse_strict`), then as the handler's type, naming the field.
//! - [`query_pairs`]: the query string percent-decoded strictly: a name or value that is not
//!   UTF-8 once decoded (`%FF`) is a 400 naming it, never replaced by U+FFFD. Every parameter of
//!   both APIs is an identifier (a channel, SKU, key, e-mail, state, number), so each value is
//!   held to `concord_core::limits::key_chars` (at most 256 bytes, no control characters).
//!
//! Webhooks (`/hooks/*`) are not read here: senders label their bodies in many ways, so they
//! keep their Content-Type as is; their bodies go through the same strict JSON parser in the
//! connectors. Must never: accept a duplicate key, decode anything lossily, or read a body a
//! Content-Type does not declare as JSON.

use crate::{ApiError, ErrorCode};
use axum::extract::Request;
use axum::http::{header, HeaderMap};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

fn invalid_json(message: String) -> ApiError {
    ApiError::new(ErrorCode::InvalidJson, message)
}

/// The error of a value that did not deserialize as `T`, at `path` (`serde_path_to_error`'s
/// rendering; `.` or empty at the top). serde's own messages for a missing or unknown field
/// (`missing field `x``, `unknown field `x`, expected …`) get their own codes, naming the
/// field at fault.
pub(crate) fn deserialize_error(path: &str, inner: &str, top: &str) -> ApiError {
    let at_top = path == "." || path.is_empty();
    let name = |prefix: &str| {
        let rest = inner.strip_prefix(prefix)?;
        rest.find('`').map(|end| &rest[..end])
    };
    if let Some(name) = name("missing field `") {
        // The path is the value that lacks the field.
        let field = if at_top {
            name.to_string()
        } else {
            format!("{path}.{name}")
        };
        return ApiError::new(ErrorCode::MissingField, format!("{field}: required"))
            .with_field(field);
    }
    if let Some(name) = name("unknown field `") {
        // The path already ends with the unknown key itself.
        let (field, shown) = if at_top {
            (name.to_string(), top)
        } else {
            (path.to_string(), path)
        };
        return ApiError::new(ErrorCode::UnknownField, format!("{shown}: {inner}"))
            .with_field(field);
    }
    if at_top {
        ApiError::new(ErrorCode::InvalidJson, format!("{top}: {inner}"))
    } else {
        ApiError::invalid_field(path, inner)
    }
}

/// Is this `Content-Type` JSON: `application/json`, with at most a `charset=utf-8` parameter
/// (any case, any spacing)?
pub fn is_json(content_type: &str) -> bool {
    let mut parts = content_type.split(';');
    let essence = parts.next().unwrap_or("").trim();
    if !essence.eq_ignore_ascii_case("application/json") {
        return false;
    }
    parts.all(|p| {
        let p = p.trim();
        match p.split_once('=') {
            Some((name, value)) if name.trim().eq_ignore_ascii_case("charset") => {
                value.trim().trim_matches('"').eq_ignore_ascii_case("utf-8")
            }
            _ => p.is_empty(),
        }
    })
}

/// Middleware: 415 for a request with a body that is not declared JSON (see the module docs).
/// Requests without a body (GET, DELETE, an action without one) pass whatever their headers.
pub async fn require_json(req: Request, next: Next) -> Response {
    // HTTP/1.1 framing (RFC 9112 §6.3): a request has a body exactly when it carries a
    // `Transfer-Encoding` or a non-zero `Content-Length`. (The body's size hint is no guide:
    // the timeout layer's wrapper does not forward it.)
    let headers = req.headers();
    let has_body = headers.contains_key(header::TRANSFER_ENCODING)
        || headers
            .get(header::CONTENT_LENGTH)
            .is_some_and(|v| v.to_str().map_or(true, |n| n.trim() != "0"));
    if has_body {
        if let Err(e) = check_content_type(req.headers()) {
            return e.into_response();
        }
    }
    next.run(req).await
}

fn check_content_type(headers: &HeaderMap) -> Result<(), ApiError> {
    let declared = headers
        .get(header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap_or("(not ASCII)"));
    match declared {
        Some(ct) if is_json(ct) => Ok(()),
        other => Err(ApiError::new(
            ErrorCode::UnsupportedMediaType,
            format!(
                "Content-Type: this endpoint reads JSON; send `Content-Type: application/json`, got {}",
                other.map_or("none".to_string(), concord_core::limits::excerpt)
            ),
        )),
    }
}

/// Parse a JSON body into `T`: strictly (duplicate keys refused, nesting bounded), then naming
/// the offending field on failure.
pub fn parse_json<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, ApiError> {
    std::str::from_utf8(body).map_err(|e| invalid_json(format!("body is not UTF-8: {e}")))?;
    let value = concord_core::json::parse_strict(body).map_err(|e| match e {
        concord_core::json::JsonError::DuplicateKey { .. } => invalid_json(e.to_string()),
        concord_core::json::JsonError::Syntax { message, .. } => {
            invalid_json(format!("invalid JSON body: {message}"))
        }
    })?;
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        deserialize_error(&path, &e.into_inner().to_string(), "invalid JSON body")
    })
}

/// The query string as (name, value) pairs, `+` as a space and `%XX` decoded, refusing a name
/// or value that is not UTF-8 once decoded (400 naming it).
pub fn query_pairs(raw: Option<&str>) -> Result<Vec<(String, String)>, ApiError> {
    let mut out = Vec::new();
    for pair in raw.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let name = decode(name).map_err(|_| {
            ApiError::new(
                ErrorCode::BadRequest,
                format!(
                    "query string: the parameter name {} is not UTF-8 once decoded",
                    concord_core::limits::excerpt(name)
                ),
            )
        })?;
        let shown = concord_core::limits::excerpt(&name);
        let shown = shown.trim_matches('"');
        let value = decode(value)
            .map_err(|_| ApiError::invalid_field(shown, "the value is not UTF-8 once decoded"))?;
        concord_core::limits::key_chars(shown, &name)
            .and_then(|()| concord_core::limits::key_chars(shown, &value))
            .map_err(|e| {
                ApiError::new(ErrorCode::InvalidField, e.to_string()).with_field(e.field)
            })?;
        out.push((name, value));
    }
    Ok(out)
}

/// `application/x-www-form-urlencoded` decoding of one name or value, strictly UTF-8: `+` is a
/// space, then `%XX` is decoded by `percent-encoding` (rust-url's decoder). A `%` not followed by
/// two hex digits stays as it is (as browsers and `form_urlencoded` do). Not
/// `form_urlencoded::parse`, which replaces invalid UTF-8 with U+FFFD instead of refusing it.
fn decode(s: &str) -> Result<String, std::str::Utf8Error> {
    let spaced = s.replace('+', " ");
    percent_encoding::percent_decode_str(&spaced)
        .decode_utf8()
        .map(std::borrow::Cow::into_owned)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::StatusCode;

    #[test]
    fn json_content_types() {
        for ok in [
            "application/json",
            "Application/JSON",
            "application/json; charset=utf-8",
            "application/json;charset=UTF-8",
            "application/json; charset=\"utf-8\"",
        ] {
            assert!(is_json(ok), "{ok}");
        }
        for bad in [
            "",
            "text/plain",
            "text/plain; charset=utf-8",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            "application/jsonx",
            "application/json; charset=latin1",
            "application/json; boundary=x",
            "application/vnd.api+json",
        ] {
            assert!(!is_json(bad), "{bad}");
        }
    }

    #[test]
    fn queries_decode_strictly() {
        let q = query_pairs(Some("channel=web1&sku=A+B&sku=%C3%A9&empty=&flag")).unwrap();
        assert_eq!(
            q,
            [
                ("channel", "web1"),
                ("sku", "A B"),
                ("sku", "é"),
                ("empty", ""),
                ("flag", "")
            ]
            .map(|(a, b)| (a.to_string(), b.to_string()))
        );
        assert_eq!(query_pairs(None).unwrap(), vec![]);
        assert_eq!(
            query_pairs(Some("a=100%&b=%4")).unwrap(),
            [("a", "100%"), ("b", "%4")].map(|(a, b)| (a.to_string(), b.to_string()))
        );
        let e = query_pairs(Some("channel=web1&sku=%FF")).unwrap_err();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert_eq!(
            (e.code, e.field.as_deref()),
            (ErrorCode::InvalidField, Some("sku"))
        );
        assert!(e.message.contains("UTF-8"), "{}", e.message);
        // `+` is a space, `%2B` a plus; a `%` that starts no escape is kept, and the escape
        // after it still decodes.
        assert_eq!(decode("a+b%2Bc").unwrap(), "a b+c");
        assert_eq!(decode("%%41%").unwrap(), "%A%");
        assert_eq!(decode("%zz%4").unwrap(), "%zz%4");
        assert_eq!(decode("%e2%82%ac").unwrap(), "€");
        assert!(decode("%C3").is_err());
        let e = query_pairs(Some("%C3%28=1")).unwrap_err();
        assert_eq!((e.code, e.field), (ErrorCode::BadRequest, None));
        let e = query_pairs(Some("sku=A%00B")).unwrap_err();
        assert_eq!(
            (e.code, e.field.as_deref()),
            (ErrorCode::InvalidField, Some("sku"))
        );
        assert!(e.message.contains("U+0000"), "{}", e.message);
        let long = format!("sku={}", "x".repeat(300));
        let e = query_pairs(Some(&long)).unwrap_err();
        assert_eq!(
            (e.code, e.field.as_deref()),
            (ErrorCode::InvalidField, Some("sku"))
        );
        // The message quotes a bounded excerpt of the value, never all of it.
        assert!(e.message.len() < 200, "{}", e.message);
    }

    #[test]
    fn bodies_refuse_duplicates_and_name_fields() {
        #[derive(Deserialize, Debug)]
        #[allow(dead_code)]
        #[serde(deny_unknown_fields)]
        struct B {
            a: i64,
        }
        let e = parse_json::<B>(br#"{"a": 1, "a": 2}"#).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidJson);
        // The duplicate is named in the message (the key may sit at any depth).
        assert!(e.message.contains("`a`"), "{}", e.message);
        let e = parse_json::<B>(br#"{"a": "x"}"#).unwrap_err();
        assert_eq!(
            (e.code, e.field.as_deref()),
            (ErrorCode::InvalidField, Some("a"))
        );
        assert!(e.message.starts_with("a: "), "{}", e.message);
        let e = parse_json::<B>(b"{\"a\": 1").unwrap_err();
        assert_eq!((e.code, e.field), (ErrorCode::InvalidJson, None));
        let e = parse_json::<B>(b"{}").unwrap_err();
        assert_eq!(
            (e.code, e.field.as_deref()),
            (ErrorCode::MissingField, Some("a"))
        );
        let e = parse_json::<B>(br#"{"a": 1, "b": 2}"#).unwrap_err();
        assert_eq!(
            (e.code, e.field.as_deref()),
            (ErrorCode::UnknownField, Some("b"))
        );
        #[derive(Deserialize, Debug)]
        #[allow(dead_code)]
        struct Outer {
            b: B,
        }
        let e = parse_json::<Outer>(br#"{"b": {}}"#).unwrap_err();
        assert_eq!(
            (e.code, e.field.as_deref()),
            (ErrorCode::MissingField, Some("b.a"))
        );
        let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        assert_eq!(
            parse_json::<serde_json::Value>(deep.as_bytes())
                .unwrap_err()
                .status,
            StatusCode::BAD_REQUEST
        );
    }
}
