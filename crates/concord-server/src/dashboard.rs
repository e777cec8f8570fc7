//! The dashboard at `/`: a single page (plain HTML, CSS and JavaScript, no build step) embedded
//! in the binary with `include_str!` and served from memory. The page itself carries no data and
//! needs no token; everything it shows comes from the admin API (`/api/v1`, see [`crate::admin`])
//! with the session cookie of `POST /api/v1/session`, so access control stays in one place.
//!
//! Answers carry a strict Content-Security-Policy (scripts, styles and requests only from this
//! origin; no inline script or style; no framing), `X-Content-Type-Options: nosniff` and
//! `Cache-Control: no-cache` (a new binary's page is picked up at once).
//!
//! Must never embed data or secrets in the assets, and never serve anything but these files.

use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

const INDEX: &str = include_str!("dashboard/index.html");
const APP_JS: &str = include_str!("dashboard/app.js");
const APP_CSS: &str = include_str!("dashboard/app.css");
const FAVICON: &str = include_str!("dashboard/favicon.svg");

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

/// `/`, `/assets/app.js`, `/assets/app.css`, `/assets/favicon.svg`.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route(
            "/",
            get(|| async { asset("text/html; charset=utf-8", INDEX) }),
        )
        .route(
            "/assets/app.js",
            get(|| async { asset("text/javascript; charset=utf-8", APP_JS) }),
        )
        .route(
            "/assets/app.css",
            get(|| async { asset("text/css; charset=utf-8", APP_CSS) }),
        )
        .route(
            "/assets/favicon.svg",
            get(|| async { asset("image/svg+xml", FAVICON) }),
        )
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut r = body.into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use tower::ServiceExt;

    async fn get(path: &str) -> (StatusCode, String, String) {
        let app: Router = routes();
        let r = app
            .oneshot(Request::get(path).body(Body::empty()).expect("request"))
            .await
            .expect("response");
        let status = r.status();
        let ct = r
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        assert!(r.headers().contains_key(header::CONTENT_SECURITY_POLICY));
        let body = axum::body::to_bytes(r.into_body(), 1 << 20)
            .await
            .expect("body");
        (status, ct, String::from_utf8_lossy(&body).into_owned())
    }

    #[tokio::test]
    async fn serves_the_embedded_page_and_assets() {
        let (s, ct, body) = get("/").await;
        assert_eq!(s, StatusCode::OK);
        assert!(ct.starts_with("text/html"));
        assert!(body.contains("/assets/app.js") && body.contains("Keyboard shortcuts"));
        let (s, ct, body) = get("/assets/app.js").await;
        assert_eq!(s, StatusCode::OK);
        assert!(ct.starts_with("text/javascript"));
        assert!(body.contains("/api/v1"));
        let (s, ct, _) = get("/assets/app.css").await;
        assert_eq!((s, ct.starts_with("text/css")), (StatusCode::OK, true));
        let (s, _, _) = get("/assets/favicon.svg").await;
        assert_eq!(s, StatusCode::OK);
    }

    #[test]
    fn the_drift_page_reads_the_reconcile_api_and_is_linked() {
        // The page (`#/drift`, `#/drift/ID`) is in the navigation and the help, and reads the
        // stored runs and runs one through the admin API's reconcile routes only.
        assert!(INDEX.contains(r##"href="#/drift" data-nav="drift""##));
        assert!(INDEX.contains("Drift (reconciliation runs)"));
        for needle in [
            "drift: driftPage",
            "api(\"/reconcile?limit=",
            "api(`/reconcile/${enc(id)}`)",
            "api(\"/reconcile\", { method: \"POST\"",
            "c: \"#/drift\"",
        ] {
            assert!(APP_JS.contains(needle), "app.js lacks {needle}");
        }
    }

    #[test]
    fn the_script_inserts_values_as_text_only() {
        // Every value from the API (a drifted key, a destination's field) is untrusted: the page
        // builds elements and text nodes, never HTML from strings.
        for sink in [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
            "eval(",
            "new Function",
        ] {
            assert!(!APP_JS.contains(sink), "app.js uses {sink}");
        }
    }

    #[test]
    fn the_page_has_no_inline_script_or_style() {
        // The CSP forbids them; this keeps the page working under it.
        assert!(!INDEX.contains("<script>") && !INDEX.contains("style="));
        assert!(!INDEX.contains("<style"));
    }
}
