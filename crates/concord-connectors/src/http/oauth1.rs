//! OAuth 1.0a request signing (RFC 5849) for the `http` connector's `auth = { type = "oauth1" }`:
//! token-based authentication as NetSuite (and others) take it — a consumer key and secret, a
//! token and its secret, each request signed with HMAC-SHA256 (or HMAC-SHA1) over its signature
//! base string, in an `Authorization: OAuth …` header with an optional `realm` (NetSuite: the
//! account id).
//!
//! The signature base string (RFC 5849 §3.4.1): the method in upper case, the base string URI
//! (scheme and host in lower case, the port only when not the scheme's default, the path, no
//! query), and the normalized parameters — the query's parameters and the `oauth_*` protocol
//! parameters (not `realm`, not `oauth_signature`; JSON bodies are not signed), each name and
//! value percent-encoded with the RFC 3986 unreserved set, sorted by name then value, joined by
//! `&` — each part percent-encoded again and joined by `&`. The key is
//! `encode(consumer_secret)&encode(token_secret)`.
//!
//! Must never: print a secret (the keys' `Debug` redacts them), or reuse a nonce on purpose.

use super::config::Secret;
use base64::Engine as _;
use hmac::{Hmac, Mac};

/// The signature method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    HmacSha256,
    HmacSha1,
}

impl Method {
    pub fn name(self) -> &'static str {
        match self {
            Method::HmacSha256 => "HMAC-SHA256",
            Method::HmacSha1 => "HMAC-SHA1",
        }
    }
}

/// The credentials of token-based authentication.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    pub consumer_key: String,
    pub consumer_secret: Secret,
    pub token: String,
    pub token_secret: Secret,
    /// `realm` in the header (NetSuite: the account id, e.g. `1234567_SB1`); not signed.
    pub realm: Option<String>,
    pub method: Method,
}

/// RFC 5849 §3.6: percent-encode everything but the RFC 3986 unreserved characters.
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// RFC 5849 §3.4.1.2: the base string URI of `url`.
pub fn base_uri(url: &reqwest::Url) -> String {
    let scheme = url.scheme().to_ascii_lowercase();
    let host = url.host_str().unwrap_or("").to_ascii_lowercase();
    let port = match (url.port(), scheme.as_str()) {
        (Some(80), "http") | (Some(443), "https") | (None, _) => String::new(),
        (Some(p), _) => format!(":{p}"),
    };
    format!("{scheme}://{host}{port}{}", url.path())
}

/// RFC 5849 §3.4.1: the signature base string of a request whose (decoded) parameters —
/// query and protocol parameters, not `realm` nor `oauth_signature` — are `params`.
pub fn base_string(method: &str, base_uri: &str, params: &[(String, String)]) -> String {
    let mut pairs: Vec<(String, String)> =
        params.iter().map(|(k, v)| (encode(k), encode(v))).collect();
    pairs.sort();
    let normalized = pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    format!(
        "{}&{}&{}",
        method.to_ascii_uppercase(),
        encode(base_uri),
        encode(&normalized)
    )
}

/// The base64 signature of `text` under `consumer_secret&token_secret`.
pub fn signature(method: Method, consumer_secret: &str, token_secret: &str, text: &str) -> String {
    let key = format!("{}&{}", encode(consumer_secret), encode(token_secret));
    let bytes = match method {
        Method::HmacSha256 => match Hmac::<sha2::Sha256>::new_from_slice(key.as_bytes()) {
            Ok(mut m) => {
                m.update(text.as_bytes());
                m.finalize().into_bytes().to_vec()
            }
            Err(_) => Vec::new(),
        },
        Method::HmacSha1 => match Hmac::<sha1::Sha1>::new_from_slice(key.as_bytes()) {
            Ok(mut m) => {
                m.update(text.as_bytes());
                m.finalize().into_bytes().to_vec()
            }
            Err(_) => Vec::new(),
        },
    };
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// A fresh nonce: 128 bits from the operating system's random source, hex.
pub fn nonce() -> String {
    let mut b = [0u8; 16];
    if getrandom::fill(&mut b).is_err() {
        // No OS randomness: the time in nanoseconds still differs per request.
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        b = t.to_le_bytes();
    }
    hex::encode(b)
}

impl Keys {
    /// The `Authorization` header value for `method` on `url` (its query included in the
    /// signature) at `timestamp` (Unix seconds) with `nonce`.
    pub fn header(&self, method: &str, url: &reqwest::Url, timestamp: u64, nonce: &str) -> String {
        let protocol = [
            ("oauth_consumer_key", self.consumer_key.clone()),
            ("oauth_nonce", nonce.to_string()),
            ("oauth_signature_method", self.method.name().to_string()),
            ("oauth_timestamp", timestamp.to_string()),
            ("oauth_token", self.token.clone()),
            ("oauth_version", "1.0".to_string()),
        ];
        let mut params: Vec<(String, String)> = url
            .query_pairs()
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        params.extend(protocol.iter().map(|(k, v)| (k.to_string(), v.clone())));
        let text = base_string(method, &base_uri(url), &params);
        let sig = signature(
            self.method,
            self.consumer_secret.expose(),
            self.token_secret.expose(),
            &text,
        );
        let mut parts = Vec::new();
        if let Some(r) = &self.realm {
            parts.push(format!("realm=\"{}\"", encode(r)));
        }
        for (k, v) in &protocol {
            parts.push(format!("{k}=\"{}\"", encode(v)));
        }
        parts.push(format!("oauth_signature=\"{}\"", encode(&sig)));
        format!("OAuth {}", parts.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(k: &str, v: &str) -> (String, String) {
        (k.to_string(), v.to_string())
    }

    /// RFC 5849 §3.4.1.1's example: the request
    /// `POST /request?b5=%3D%253D&a3=a&c%40=&a2=r%20b` on example.com with the body `c2&a3=2+q`
    /// and its protocol parameters gives exactly the base string printed in the RFC.
    #[test]
    fn the_rfc_5849_example_base_string() {
        let url =
            reqwest::Url::parse("http://EXAMPLE.COM:80/request?b5=%3D%253D&a3=a&c%40=&a2=r%20b")
                .unwrap();
        let mut params: Vec<(String, String)> = url
            .query_pairs()
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        params.extend([
            p("c2", ""),
            p("a3", "2 q"),
            p("oauth_consumer_key", "9djdj82h48djs9d2"),
            p("oauth_token", "kkk9d7dh3k39sjv7"),
            p("oauth_signature_method", "HMAC-SHA1"),
            p("oauth_timestamp", "137131201"),
            p("oauth_nonce", "7d8f3e4a"),
        ]);
        assert_eq!(
            base_string("post", &base_uri(&url), &params),
            "POST&http%3A%2F%2Fexample.com%2Frequest&a2%3Dr%2520b%26a3%3D2%2520q\
             %26a3%3Da%26b5%3D%253D%25253D%26c%2540%3D%26c2%3D%26oauth_consumer_\
             key%3D9djdj82h48djs9d2%26oauth_nonce%3D7d8f3e4a%26oauth_signature_m\
             ethod%3DHMAC-SHA1%26oauth_timestamp%3D137131201%26oauth_token%3Dkkk\
             9d7dh3k39sjv7"
        );
    }

    /// X's (Twitter's) documented worked example ("Creating a signature"): its base string and
    /// the HMAC-SHA1 signature every conforming implementation gives for it.
    #[test]
    fn the_x_worked_example_signs_as_documented() {
        let keys = Keys {
            consumer_key: "xvz1evFS4wEEPTGEFPHBog".into(),
            consumer_secret: Secret("kAcSOqF21Fu85e7zjz7ZN2U4ZRhfV3WpwPAoE3Z7kBw".into()),
            token: "370773112-GmHxMAgYyLbNEtIKZeRNFsMKPR9EyMZeS9weJAEb".into(),
            token_secret: Secret("LswwdoUaIvS8ltyTt5jkRh4J50vUPVVHtR2YPi5kE".into()),
            realm: None,
            method: Method::HmacSha1,
        };
        // The example's `status` is a form body parameter; form and query parameters are signed
        // alike, so it goes in the query here (this connector's bodies are JSON, never signed).
        let mut url =
            reqwest::Url::parse("https://api.twitter.com/1.1/statuses/update.json").unwrap();
        url.query_pairs_mut()
            .append_pair("include_entities", "true")
            .append_pair(
                "status",
                "Hello Ladies + Gentlemen, a signed OAuth request!",
            );
        let header = keys.header(
            "POST",
            &url,
            1318622958,
            "kYjzVBB8Y0ZFabxSWbWovY3uYSQ2pTgmZeNu2VS4cg",
        );
        assert!(
            header.contains("oauth_signature=\"hCtSmYh%2BiHYCEqBWrE7C7hYmtUk%3D\""),
            "{header}"
        );
        assert!(header.starts_with("OAuth oauth_consumer_key=\"xvz1evFS4wEEPTGEFPHBog\", "));
        let params: Vec<(String, String)> = url
            .query_pairs()
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .chain([
                p("oauth_consumer_key", "xvz1evFS4wEEPTGEFPHBog"),
                p("oauth_nonce", "kYjzVBB8Y0ZFabxSWbWovY3uYSQ2pTgmZeNu2VS4cg"),
                p("oauth_signature_method", "HMAC-SHA1"),
                p("oauth_timestamp", "1318622958"),
                p(
                    "oauth_token",
                    "370773112-GmHxMAgYyLbNEtIKZeRNFsMKPR9EyMZeS9weJAEb",
                ),
                p("oauth_version", "1.0"),
            ])
            .collect();
        assert_eq!(
            base_string("POST", &base_uri(&url), &params),
            "POST&https%3A%2F%2Fapi.twitter.com%2F1.1%2Fstatuses%2Fupdate.json&include_entities%3Dtrue\
             %26oauth_consumer_key%3Dxvz1evFS4wEEPTGEFPHBog%26oauth_nonce%3DkYjzVBB8Y0ZFabxSWbWovY3uYSQ2pTgmZeNu2VS4cg\
             %26oauth_signature_method%3DHMAC-SHA1%26oauth_timestamp%3D1318622958\
             %26oauth_token%3D370773112-GmHxMAgYyLbNEtIKZeRNFsMKPR9EyMZeS9weJAEb%26oauth_version%3D1.0\
             %26status%3DHello%2520Ladies%2520%252B%2520Gentlemen%252C%2520a%2520signed%2520OAuth%2520request%2521"
        );
    }

    #[test]
    fn hmac_sha256_the_realm_and_the_port() {
        // HMAC-SHA256 (NetSuite's method) over the same text differs from SHA-1 and is 32 bytes.
        let s = signature(Method::HmacSha256, "cs", "ts", "text");
        assert_eq!(
            base64::engine::general_purpose::STANDARD
                .decode(&s)
                .unwrap()
                .len(),
            32
        );
        assert_ne!(s, signature(Method::HmacSha1, "cs", "ts", "text"));
        assert_ne!(s, signature(Method::HmacSha256, "cs", "other", "text"));
        let keys = Keys {
            consumer_key: "ck".into(),
            consumer_secret: Secret("cs".into()),
            token: "tk".into(),
            token_secret: Secret("ts".into()),
            realm: Some("1234567_SB1".into()),
            method: Method::HmacSha256,
        };
        let url = reqwest::Url::parse("https://1234567-sb1.suitetalk.api.netsuite.com/services/rest/query/v1/suiteql?limit=2&offset=4").unwrap();
        let h = keys.header("POST", &url, 1700000000, "n1");
        assert!(h.starts_with("OAuth realm=\"1234567_SB1\", "), "{h}");
        assert!(h.contains("oauth_signature_method=\"HMAC-SHA256\""));
        assert!(
            !h.contains("cs") && !h.contains("\"ts\""),
            "no secret in the header: {h}"
        );
        // The query is signed: another offset, another signature; the same request, the same.
        let other = reqwest::Url::parse("https://1234567-sb1.suitetalk.api.netsuite.com/services/rest/query/v1/suiteql?limit=2&offset=6").unwrap();
        assert_ne!(h, keys.header("POST", &other, 1700000000, "n1"));
        assert_eq!(h, keys.header("POST", &url, 1700000000, "n1"));
        assert_eq!(
            base_uri(&reqwest::Url::parse("HTTPS://Example.com:8443/a/b?x=1").unwrap()),
            "https://example.com:8443/a/b"
        );
        assert_eq!(
            base_uri(&reqwest::Url::parse("https://example.com:443/").unwrap()),
            "https://example.com/"
        );
        assert_ne!(nonce(), nonce());
        assert_eq!(encode("a b+c~*"), "a%20b%2Bc~%2A");
    }
}
