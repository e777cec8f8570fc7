//! `options.auth`: how requests authenticate — none, bearer, basic, api_key, oauth2
//! (client credentials or refresh token) or login (a request whose response gives a token or
//! a cookie). No I/O (tokens are fetched by `http/auth.rs`); every secret is a [`Secret`],
//! never printed.

use super::super::jq::Program;
use super::request::{
    de, duration, header_name, opt_program, plain_request, request, RawRequest, Request, Result,
};
use super::{Secret, DEFAULT_REFRESH_BEFORE, LOGIN};
use crate::options::err;
use serde::Deserialize;
use serde_json::Value;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiKeyIn {
    Header,
    Query,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grant {
    ClientCredentials,
    RefreshToken,
}

/// How requests authenticate.
#[derive(Debug, Clone, PartialEq)]
pub enum Auth {
    None,
    Bearer {
        token: Secret,
    },
    Basic {
        user: String,
        password: Secret,
    },
    ApiKey {
        name: String,
        value: Secret,
        location: ApiKeyIn,
    },
    OAuth2 {
        /// Absolute URL, or a path on the endpoint's URL.
        token_url: String,
        client_id: String,
        client_secret: Option<Secret>,
        grant: Grant,
        refresh_token: Option<Secret>,
        scope: Option<String>,
        /// Send the client credentials as HTTP Basic (default) or in the form body.
        basic_client_auth: bool,
        refresh_before: Duration,
    },
    /// OAuth 1.0a token-based authentication: each request signed (RFC 5849).
    OAuth1(Box<super::super::oauth1::Keys>),
    Login {
        request: Request,
        /// jq on the response body: the token (used as `prefix` + token in `header`).
        token: Option<Program>,
        /// Or the cookies the response sets (empty with `token`): the first is the session
        /// cookie and must be set; the others (`also_cookies`: a load balancer's route cookie,
        /// e.g. SAP Business One's `ROUTEID`) are sent along when the response sets them.
        cookies: Vec<String>,
        header: String,
        prefix: String,
        /// Log in again after this long (default: only on 401).
        ttl: Option<Duration>,
    },
}

pub(super) fn auth(path: &str, v: Option<&Value>) -> Result<Auth> {
    let Some(v) = v else { return Ok(Auth::None) };
    let obj = v
        .as_object()
        .ok_or_else(|| err(path, "must be a table with a `type`"))?;
    let ty = obj
        .get("type")
        .and_then(Value::as_str)
        .ok_or_else(|| {
            err(
                &format!("{path}.type"),
                "is required: none, bearer, basic, api_key, oauth1, oauth2 or login",
            )
        })?
        .to_string();
    let mut rest = obj.clone();
    rest.remove("type");
    let rest = Value::Object(rest);
    let secret = |field: &str, v: Option<String>| -> Result<Secret> {
        match v {
            Some(s) if !s.is_empty() => Ok(Secret(s)),
            _ => Err(err(
                &format!("{path}.{field}"),
                "is required (use a \"${ENV_VAR}\" reference)",
            )),
        }
    };
    match ty.as_str() {
        "none" => {
            de::<Empty>(&rest, path)?;
            Ok(Auth::None)
        }
        "bearer" => {
            let r: RawBearer = de(&rest, path)?;
            Ok(Auth::Bearer {
                token: secret("token", r.token)?,
            })
        }
        "basic" => {
            let r: RawBasic = de(&rest, path)?;
            let user = r
                .user
                .filter(|u| !u.is_empty())
                .ok_or_else(|| err(&format!("{path}.user"), "is required"))?;
            if user.contains(':') {
                return Err(err(&format!("{path}.user"), "must not contain `:`"));
            }
            Ok(Auth::Basic {
                user,
                // An API key as the user name with an empty password is common (Stripe, Medusa).
                password: Secret(r.password.unwrap_or_default()),
            })
        }
        "api_key" => {
            let r: RawApiKey = de(&rest, path)?;
            let name = r
                .name
                .filter(|n| !n.is_empty())
                .ok_or_else(|| err(&format!("{path}.name"), "is required"))?;
            let location = match r.location.as_deref() {
                None | Some("header") => ApiKeyIn::Header,
                Some("query") => ApiKeyIn::Query,
                Some(other) => {
                    return Err(err(
                        &format!("{path}.in"),
                        format!("`{other}` is not one of header, query"),
                    ))
                }
            };
            let name = match location {
                ApiKeyIn::Header => header_name(&format!("{path}.name"), &name)?,
                ApiKeyIn::Query => name,
            };
            Ok(Auth::ApiKey {
                name,
                value: secret("value", r.value)?,
                location,
            })
        }
        "oauth2" => {
            let r: RawOAuth2 = de(&rest, path)?;
            let token_url = r
                .token_url
                .filter(|u| !u.is_empty())
                .ok_or_else(|| err(&format!("{path}.token_url"), "is required"))?;
            if !(token_url.starts_with('/')
                || token_url.starts_with("https://")
                || token_url.starts_with("http://"))
            {
                return Err(err(
                    &format!("{path}.token_url"),
                    "must be an http(s) URL or a path on the endpoint's url",
                ));
            }
            let grant = match r.grant.as_deref() {
                None | Some("client_credentials") => Grant::ClientCredentials,
                Some("refresh_token") => Grant::RefreshToken,
                Some(other) => {
                    return Err(err(
                        &format!("{path}.grant"),
                        format!("`{other}` is not one of client_credentials, refresh_token"),
                    ))
                }
            };
            let refresh_token = match grant {
                Grant::RefreshToken => Some(secret("refresh_token", r.refresh_token)?),
                Grant::ClientCredentials => r.refresh_token.map(Secret),
            };
            let client_secret = match grant {
                Grant::ClientCredentials => Some(secret("client_secret", r.client_secret)?),
                Grant::RefreshToken => r.client_secret.filter(|s| !s.is_empty()).map(Secret),
            };
            let basic_client_auth = match r.client_auth.as_deref() {
                None | Some("basic") => true,
                Some("body") => false,
                Some(other) => {
                    return Err(err(
                        &format!("{path}.client_auth"),
                        format!("`{other}` is not one of basic, body"),
                    ))
                }
            };
            Ok(Auth::OAuth2 {
                token_url,
                client_id: r
                    .client_id
                    .filter(|c| !c.is_empty())
                    .ok_or_else(|| err(&format!("{path}.client_id"), "is required"))?,
                client_secret,
                grant,
                refresh_token,
                scope: r.scope,
                basic_client_auth,
                refresh_before: duration(
                    &format!("{path}.refresh_before"),
                    r.refresh_before.as_deref(),
                    DEFAULT_REFRESH_BEFORE,
                )?,
            })
        }
        "oauth1" => {
            let r: RawOAuth1 = de(&rest, path)?;
            let method = match r.signature_method.as_deref() {
                None | Some("HMAC-SHA256") => super::super::oauth1::Method::HmacSha256,
                Some("HMAC-SHA1") => super::super::oauth1::Method::HmacSha1,
                Some(other) => {
                    return Err(err(
                        &format!("{path}.signature_method"),
                        format!("`{other}` is not one of HMAC-SHA256, HMAC-SHA1"),
                    ))
                }
            };
            let named = |field: &str, v: Option<String>| -> Result<String> {
                v.filter(|s| !s.is_empty())
                    .ok_or_else(|| err(&format!("{path}.{field}"), "is required"))
            };
            Ok(Auth::OAuth1(Box::new(super::super::oauth1::Keys {
                consumer_key: named("consumer_key", r.consumer_key)?,
                consumer_secret: secret("consumer_secret", r.consumer_secret)?,
                token: named("token", r.token)?,
                token_secret: secret("token_secret", r.token_secret)?,
                realm: r.realm.filter(|s| !s.is_empty()),
                method,
            })))
        }
        "login" => {
            let r: RawLogin = de(&rest, path)?;
            let raw_req = r
                .request
                .ok_or_else(|| err(&format!("{path}.request"), "is required"))?;
            plain_request(&format!("{path}.request"), &raw_req)?;
            let request = request(&format!("{path}.request"), &raw_req, LOGIN, &[])?;
            let token = opt_program(&format!("{path}.token"), r.token.as_ref(), LOGIN, &[])?;
            let cookie = r.cookie.filter(|c| !c.is_empty());
            if token.is_some() == cookie.is_some() {
                return Err(err(
                    path,
                    "needs exactly one of `token` (jq on the login response) or `cookie` (the name of the session cookie)",
                ));
            }
            let also_cookies = r.also_cookies.unwrap_or_default();
            if !also_cookies.is_empty() && cookie.is_none() {
                return Err(err(
                    &format!("{path}.also_cookies"),
                    "needs `cookie` (the session cookie they go with)",
                ));
            }
            for (i, c) in also_cookies.iter().enumerate() {
                if c.is_empty() || c.contains(['=', ';', ' ']) {
                    return Err(err(
                        &format!("{path}.also_cookies[{i}]"),
                        format!("`{c}` is not a cookie name"),
                    ));
                }
            }
            Ok(Auth::Login {
                request,
                token,
                cookies: cookie.into_iter().chain(also_cookies).collect(),
                header: header_name(
                    &format!("{path}.header"),
                    r.header.as_deref().unwrap_or("authorization"),
                )?,
                prefix: r.prefix.unwrap_or_else(|| "Bearer ".into()),
                ttl: r
                    .ttl
                    .as_deref()
                    .map(|t| duration(&format!("{path}.ttl"), Some(t), Duration::ZERO))
                    .transpose()?,
            })
        }
        other => Err(err(
            &format!("{path}.type"),
            format!("`{other}` is not one of none, bearer, basic, api_key, oauth1, oauth2, login"),
        )),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Empty {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBearer {
    /// The token (`${ENV}`).
    token: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBasic {
    user: Option<String>,
    password: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawApiKey {
    /// Header or query parameter name.
    name: Option<String>,
    value: Option<String>,
    /// `header` (default) or `query`.
    #[serde(rename = "in")]
    location: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOAuth2 {
    token_url: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
    /// `client_credentials` (default) or `refresh_token`.
    grant: Option<String>,
    /// The refresh token to start from; when the provider rotates it, the new one is kept
    /// in the store and used from then on (until this value changes in the config).
    refresh_token: Option<String>,
    scope: Option<String>,
    /// `basic` (default) or `body`.
    client_auth: Option<String>,
    /// Refresh this long before the access token expires (default 60s).
    refresh_before: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOAuth1 {
    /// The integration's consumer key.
    consumer_key: Option<String>,
    /// Its consumer secret (`${ENV}`).
    consumer_secret: Option<String>,
    /// The access token (token id).
    token: Option<String>,
    /// Its secret (`${ENV}`).
    token_secret: Option<String>,
    /// `realm` of the header (NetSuite: the account id, e.g. `1234567_SB1`).
    realm: Option<String>,
    /// `HMAC-SHA256` (default) or `HMAC-SHA1`.
    signature_method: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLogin {
    request: Option<RawRequest>,
    token: Option<String>,
    cookie: Option<String>,
    /// With `cookie`: more cookies of the login response, sent along when it sets them.
    also_cookies: Option<Vec<String>>,
    /// Header the token goes in (default `authorization`).
    header: Option<String>,
    /// Before the token (default `"Bearer "`).
    prefix: Option<String>,
    ttl: Option<String>,
}
