//! The connectors' outbound HTTP against misbehaving servers (issue 12): a redirect is an error
//! naming where it pointed and is never followed (the login body with the password stays
//! here), an answer larger than the endpoint's `max_response_bytes` is refused whether or not
//! it declares its length, and errors never carry a URL's credentials. Real HTTP on 127.0.0.1;
//! the connectors are built through the registry from an `EndpointSpec`, as the hub builds them.

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::Router;
use concord_core::Kind;
use concord_engine::connector::{Connector, DeliveryError, EndpointSpec, ReadRequest};
use serde_json::json;
use std::sync::{Arc, Mutex};
use std::time::Duration;

type Handler = Arc<dyn Fn() -> Response + Send + Sync>;

/// A server answering every request with `answer()`, keeping each request's body.
async fn server(answer: Handler) -> (String, Arc<Mutex<Vec<Bytes>>>) {
    let seen: Arc<Mutex<Vec<Bytes>>> = Arc::default();
    let keep = seen.clone();
    let app = Router::new().fallback(any(move |_: HeaderMap, body: Bytes| {
        let keep = keep.clone();
        let answer = answer.clone();
        async move {
            keep.lock().expect("lock").push(body);
            answer()
        }
    }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (base, seen)
}

fn tryton(url: &str, max_response_bytes: usize) -> Arc<dyn Connector> {
    let mut spec = EndpointSpec::new(
        "erp",
        "tryton",
        url,
        json!({"database": "db", "user": "admin", "password": "the-password"}),
    );
    spec.timeout = Duration::from_secs(10);
    spec.max_response_bytes = max_response_bytes;
    concord_connectors::build(&spec).expect("build")
}

async fn read(c: &Arc<dyn Connector>) -> DeliveryError {
    c.read_changes(ReadRequest {
        kind: Kind::Product,
        cursor: None,
        limit: 10,
        overlap: Duration::ZERO,
    })
    .await
    .expect_err("the read must fail")
}

/// Regression: the clients followed redirects, re-sending Tryton's login body (with the
/// password) to wherever a 3xx pointed.
#[tokio::test]
async fn a_redirect_is_refused_naming_its_host_and_never_followed() {
    let (elsewhere, taken) = server(Arc::new(|| StatusCode::OK.into_response())).await;
    // `localhost` instead of 127.0.0.1, so the error can be seen to name the Location's host.
    let target = format!("{}/steal?k=v", elsewhere.replace("127.0.0.1", "localhost"));
    let (erp, _) = server(Arc::new(move || {
        (
            StatusCode::TEMPORARY_REDIRECT,
            [(header::LOCATION, target.clone())],
        )
            .into_response()
    }))
    .await;
    let e = read(&tryton(&erp, 1 << 20)).await;
    assert!(e.is_permanent(), "{e}");
    let text = e.to_string();
    assert!(
        text.contains("redirect") && text.contains("host `localhost`"),
        "{text}"
    );
    assert!(!text.contains("steal") && !text.contains("k=v"), "{text}");
    assert!(
        taken.lock().expect("lock").is_empty(),
        "the redirect was followed: the login went to another server"
    );
}

/// Regression: response bodies were read without a size cap.
#[tokio::test]
async fn an_oversize_answer_is_refused_with_or_without_a_declared_length() {
    const LIMIT: usize = 64 * 1024;
    // Declared length (a plain body): refused before reading.
    let (declared, _) = server(Arc::new(|| {
        (StatusCode::OK, vec![b'x'; LIMIT + 1]).into_response()
    }))
    .await;
    // No declared length: a stream of 1 KiB chunks, 8 MiB in all; reading stops at the limit.
    let (streamed, _) = server(Arc::new(|| {
        let chunks = futures::stream::iter(
            (0..8 * 1024).map(|_| Ok::<_, std::io::Error>(Bytes::from(vec![b'y'; 1024]))),
        );
        Response::new(Body::from_stream(chunks))
    }))
    .await;
    for url in [declared, streamed] {
        let e = read(&tryton(&url, LIMIT)).await;
        assert!(e.is_permanent(), "{e}");
        assert!(
            e.to_string()
                .contains(&format!("larger than {LIMIT} bytes refused")),
            "{e}"
        );
    }
    // Within the limit the same answer is read (and then fails as the JSON-RPC it is not).
    let (small, _) = server(Arc::new(|| (StatusCode::OK, "not json").into_response())).await;
    let e = read(&tryton(&small, LIMIT)).await;
    assert!(e.to_string().contains("malformed JSON-RPC"), "{e}");
}

/// Regression: transport errors carried the full URL, user info and query included.
#[tokio::test]
async fn errors_never_carry_a_urls_credentials() {
    // Nothing listens on port 9: connection refused, and the error names the URL.
    let spec = EndpointSpec::new(
        "web",
        "sandbox-shop",
        "http://ann:url-password@127.0.0.1:9/base?token=url-token",
        serde_json::Value::Null,
    );
    let c = concord_connectors::build(&spec).expect("build");
    let e = c
        .read_snapshot(ReadRequest {
            kind: Kind::Stock,
            cursor: None,
            limit: 10,
            overlap: Duration::ZERO,
        })
        .await
        .expect_err("nothing listens");
    let text = e.to_string();
    assert!(matches!(e, DeliveryError::Unavailable { .. }), "{text}");
    assert!(text.contains("127.0.0.1:9"), "the host stays: {text}");
    assert!(
        !text.contains("url-password") && !text.contains("url-token"),
        "{text}"
    );
    assert!(!format!("{spec:?}").contains("url-password"));
}
