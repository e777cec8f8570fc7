//! The `reservations` case's load: keep-alive HTTP clients, one request in flight each,
//! sharing the run's requests (request `n` is deterministic from its number), each keeping a
//! log of what it got; and the single reservations and availability reads of the untimed sweep.
//!
//! Must never judge the run: the logs are checked against the ledger by `measure`.

use super::CHANNEL;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// Request `n`: 1 or 2 lines over distinct SKUs, quantities 1–3.
fn request_lines(n: u64, skus: usize) -> Vec<(usize, i64)> {
    let mut rng = fastrand::Rng::with_seed(n.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0x5eed);
    let first = rng.usize(..skus);
    let mut lines = vec![(first, rng.i64(1..=3))];
    if rng.bool() {
        let mut second = rng.usize(..skus - 1);
        if second >= first {
            second += 1;
        }
        lines.push((second, rng.i64(1..=3)));
    }
    lines
}

/// What one client saw.
#[derive(Default)]
pub(super) struct ClientLog {
    pub(super) lat_ms: Vec<f64>,
    pub(super) reserved: u64,
    pub(super) refused: u64,
    /// 409s whose `short` list does not justify the refusal.
    pub(super) bad_refusals: u64,
    pub(super) errors: u64,
    pub(super) first_error: Option<String>,
    /// Units reserved per (sku index, location).
    pub(super) got: HashMap<(usize, String), i64>,
}

pub(super) async fn client(
    base: String,
    skus: Arc<Vec<String>>,
    index: Arc<HashMap<String, usize>>,
    next: Arc<AtomicU64>,
    total: u64,
    run: u64,
) -> ClientLog {
    let mut log = ClientLog::default();
    let http = match reqwest::Client::builder()
        .pool_max_idle_per_host(1)
        .tcp_nodelay(true)
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            log.errors += 1;
            log.first_error = Some(e.to_string());
            return log;
        }
    };
    let url = format!("{base}/v1/reservations");
    loop {
        let n = next.fetch_add(1, Ordering::Relaxed);
        if n >= total {
            return log;
        }
        let lines = request_lines(n, skus.len());
        let body = json!({
            "channel": CHANNEL,
            "key": format!("bench-{run}-{n}"),
            "lines": lines.iter().map(|(s, q)| json!({"sku": skus[*s], "quantity": q})).collect::<Vec<_>>(),
        });
        let t = Instant::now();
        let answer = async {
            let r = http.post(&url).json(&body).send().await?;
            let status = r.status();
            let body: Value = r.json().await?;
            Ok::<_, reqwest::Error>((status, body))
        }
        .await;
        log.lat_ms.push(t.elapsed().as_secs_f64() * 1000.0);
        match answer {
            Ok((status, body)) if status.as_u16() == 201 => {
                log.reserved += 1;
                for l in body["lines"].as_array().into_iter().flatten() {
                    let sku = l["sku"].as_str().and_then(|s| index.get(s));
                    let loc = l["location"].as_str();
                    match (sku, loc, l["quantity"].as_i64()) {
                        (Some(s), Some(loc), Some(q)) => {
                            *log.got.entry((*s, loc.to_string())).or_default() += q
                        }
                        _ => {
                            log.errors += 1;
                            log.first_error
                                .get_or_insert_with(|| format!("odd reservation line {l}"));
                        }
                    }
                }
            }
            Ok((status, body)) if status.as_u16() == 409 => {
                log.refused += 1;
                if !justified(&body) {
                    log.bad_refusals += 1;
                }
            }
            Ok((status, body)) => {
                log.errors += 1;
                log.first_error
                    .get_or_insert_with(|| format!("HTTP {status}: {body}"));
            }
            Err(e) => {
                log.errors += 1;
                log.first_error.get_or_insert_with(|| e.to_string());
            }
        }
    }
}

/// A 409 names at least one line that could not be filled.
fn justified(body: &Value) -> bool {
    body["short"].as_array().into_iter().flatten().any(|x| {
        match (x["requested"].as_i64(), x["available"].as_i64()) {
            (Some(r), Some(a)) => r > a,
            _ => false,
        }
    })
}

/// One reservation outside the timed load: (status, lines as (sku, location, quantity)).
pub(super) async fn reserve_once(
    http: &reqwest::Client,
    base: &str,
    key: &str,
    sku: &str,
    quantity: i64,
) -> anyhow::Result<(u16, Vec<(String, String, i64)>)> {
    let r = http
        .post(format!("{base}/v1/reservations"))
        .json(
            &json!({"channel": CHANNEL, "key": key, "lines": [{"sku": sku, "quantity": quantity}]}),
        )
        .send()
        .await?;
    let status = r.status().as_u16();
    let body: Value = r.json().await?;
    let lines = body["lines"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|l| {
            Some((
                l["sku"].as_str()?.to_string(),
                l["location"].as_str()?.to_string(),
                l["quantity"].as_i64()?,
            ))
        })
        .collect();
    Ok((status, lines))
}

/// `ats` of every SKU for the channel, from `GET /v1/availability`.
pub(super) async fn availability(
    http: &reqwest::Client,
    base: &str,
    skus: &[String],
) -> anyhow::Result<Vec<Option<i64>>> {
    let mut query: Vec<(&str, &str)> = vec![("channel", CHANNEL)];
    query.extend(skus.iter().map(|s| ("sku", s.as_str())));
    let avail: Value = http
        .get(format!("{base}/v1/availability"))
        .query(&query)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    Ok(skus
        .iter()
        .map(|s| {
            avail["skus"]
                .as_array()
                .and_then(|a| a.iter().find(|x| x["sku"].as_str() == Some(s.as_str())))
                .and_then(|x| x["ats"].as_i64())
        })
        .collect())
}
