//! Case `http-job`: the classic webhook → REST job of `examples/http-inventory.toml` (that very
//! file, its two URLs pointed at this process), the figure users compare with n8n and
//! Node-RED. All in one process over real HTTP on 127.0.0.1:
//!
//! load generator ─ signed `POST /hooks/wms {sku, location, on_hand, ts}` ─► Concord (`http`
//! connector webhook, journal, processor, outbox, dispatcher) ─ `PUT /inventory/{sku}` ─►
//! receiver.
//!
//! The generator runs `--concurrency` senders, one event per POST (the classic job), as fast as
//! they are answered or, with `--rate`, at that many events per second; event n
//! sets SKU `n % skus` to a strictly increasing `on_hand`, so every value the receiver gets
//! names the event it came from. A warm-up first sends one event per SKU and waits until the
//! receiver has them all.
//!
//! Figures: `events_per_s` — durable throughput, events acknowledged (2xx, i.e. stored) per
//! second from the first send to the last acknowledgement; `delivered_per_s` — until the
//! receiver holds every SKU's final value; webhook round trip p50/p99 (send → 2xx); end-to-end
//! p50/p99 from the event's `ts` (its send time) to the PUT's arrival, over the values that
//! arrived (a value superseded while waiting is coalesced into the newer one: the newest state
//! is what a state kind delivers); `lost` — SKUs whose final value at the receiver is not the
//! last one sent (must be 0); `refused` — webhooks not answered 2xx. `--fail-percent` makes
//! the receiver answer that share of PUTs 503 (retries). One JSON line per run.

use crate::harness::{percentile, round1, round3, Server};
use anyhow::{bail, Context};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use concord_connectors::http::config::{Algorithm, Encoding};
use concord_connectors::http::webhook::sign;
use concord_engine::config::Config;
use concord_engine::connector::Connector;
use concord_engine::Engine;
use concord_store::{SqliteStore, Store};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const EXAMPLE: &str = include_str!("../../../examples/http-inventory.toml");
const SECRET: &str = "bench-webhook-secret";
const TOKEN: &str = "bench-api-token";
const LOCATION: &str = "WH1";
const GOAL_EVENTS_PER_S: f64 = 1_000.0;

#[derive(clap::Args, Clone)]
pub struct HttpJobArgs {
    /// Events sent (after the warm-up).
    #[arg(long, default_value_t = 20_000)]
    events: u64,
    /// SKUs the events are spread over (round robin).
    #[arg(long, default_value_t = 1_000)]
    skus: usize,
    /// Concurrent senders.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Send at this many events per second instead of as fast as possible (a latency run).
    #[arg(long)]
    rate: Option<u64>,
    /// Share of PUTs the receiver answers 503 (0–100), to exercise retries.
    #[arg(long, default_value_t = 0.0)]
    fail_percent: f64,
    /// Give up waiting for the receiver after this many seconds.
    #[arg(long, default_value_t = 300)]
    timeout: u64,
}

impl Default for HttpJobArgs {
    fn default() -> Self {
        HttpJobArgs {
            events: 20_000,
            skus: 1_000,
            concurrency: 16,
            rate: None,
            fail_percent: 0.0,
            timeout: 300,
        }
    }
}

/// What the receiver got: (sku, on_hand, when).
#[derive(Default)]
struct Received {
    log: Vec<(String, i64, Instant)>,
    puts: u64,
    refused: u64,
}

#[derive(Clone)]
struct Receiver {
    got: Arc<Mutex<Received>>,
    fail_percent: f64,
}

async fn put_inventory(
    State(r): State<Receiver>,
    Path(sku): Path<String>,
    headers: axum::http::HeaderMap,
    Json(body): Json<Value>,
) -> StatusCode {
    let at = Instant::now();
    let mut g = r.got.lock().unwrap_or_else(|p| p.into_inner());
    g.puts += 1;
    if headers.get("authorization").and_then(|v| v.to_str().ok())
        != Some(&format!("Bearer {TOKEN}")[..])
    {
        g.refused += 1;
        return StatusCode::UNAUTHORIZED;
    }
    if r.fail_percent > 0.0 && fastrand::f64() * 100.0 < r.fail_percent {
        g.refused += 1;
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    let on_hand = body["on_hand"].as_i64().unwrap_or(i64::MIN);
    g.log.push((sku, on_hand, at));
    StatusCode::OK
}

fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

struct Job {
    engine: Engine,
    tasks: tokio::task::JoinSet<()>,
    server: Server,
    hooks: String,
    receiver: Receiver,
    store: Arc<SqliteStore>,
    _dir: tempfile::TempDir,
}

impl Job {
    async fn start(args: &HttpJobArgs) -> anyhow::Result<Job> {
        let receiver = Receiver {
            got: Arc::new(Mutex::new(Received::default())),
            fail_percent: args.fail_percent.clamp(0.0, 100.0),
        };
        let app = axum::Router::new()
            .route("/inventory/{sku}", axum::routing::put(put_inventory))
            .with_state(receiver.clone());
        let api = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let api_url = format!("http://{}", api.local_addr()?);
        tokio::spawn(async move {
            let _ = axum::serve(api, app).await;
        });

        let dir = tempfile::tempdir().context("temporary store directory")?;
        let store_path = dir.path().join("concord.db");
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let text = EXAMPLE.replace("http://127.0.0.1:9200", &api_url).replace(
            "path = \"http-inventory.sqlite\"",
            &format!("path = {}", Value::String(store_path.display().to_string())),
        );
        if text == EXAMPLE {
            bail!("examples/http-inventory.toml changed: its URL or store path is not where the benchmark expects");
        }
        let config =
            Config::from_toml_str_with_env(&text, &dir.path().join("http-inventory.toml"), |n| {
                match n {
                    "WMS_WEBHOOK_SECRET" => Some(SECRET.into()),
                    "INVENTORY_API_TOKEN" => Some(TOKEN.into()),
                    _ => None,
                }
            })
            .context("examples/http-inventory.toml")?;
        let mut connectors: BTreeMap<String, Arc<dyn Connector>> = BTreeMap::new();
        for (name, spec) in &config.endpoints {
            let c = concord_connectors::build(spec)
                .map_err(|e| anyhow::anyhow!("endpoints.{name}.{}: {}", e.path, e.message))?;
            connectors.insert(name.clone(), c);
        }
        let store = Arc::new(SqliteStore::open(&store_path)?);
        let dyn_store: Arc<dyn Store> = store.clone();
        let engine = Engine::new(Arc::new(config), dyn_store, connectors)?;
        let tasks = engine.start().await?;
        let server = Server::start(&engine, listener);
        Ok(Job {
            engine,
            tasks,
            server,
            hooks: format!("http://{addr}/hooks/wms"),
            receiver,
            store,
            _dir: dir,
        })
    }

    async fn stop(mut self) {
        self.server.stop().await;
        self.engine.shutdown();
        while self.tasks.join_next().await.is_some() {}
        self.store.close().await;
    }

    /// The latest value per SKU the receiver holds.
    fn latest(&self) -> HashMap<String, i64> {
        let g = self.receiver.got.lock().unwrap_or_else(|p| p.into_inner());
        let mut m = HashMap::new();
        for (sku, v, _) in &g.log {
            let e = m.entry(sku.clone()).or_insert(i64::MIN);
            *e = (*e).max(*v);
        }
        m
    }
}

/// One signed webhook POST; the round trip, or why it failed.
async fn send(
    http: &reqwest::Client,
    url: &str,
    sku: &str,
    on_hand: i64,
) -> Result<Duration, String> {
    let body = json!({"sku": sku, "location": LOCATION, "on_hand": on_hand, "ts": now_micros()})
        .to_string();
    let ts = (now_micros() / 1_000_000).to_string();
    let mut signed = format!("{ts}.").into_bytes();
    signed.extend_from_slice(body.as_bytes());
    let sig = sign(Algorithm::Sha256, Encoding::Hex, SECRET.as_bytes(), &signed);
    let t0 = Instant::now();
    let r = http
        .post(url)
        .header("content-type", "application/json")
        .header("x-timestamp", ts)
        .header("x-signature", format!("sha256={sig}"))
        .body(body)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let rtt = t0.elapsed();
    let status = r.status();
    let _ = r.bytes().await;
    if status.is_success() {
        Ok(rtt)
    } else {
        Err(format!("HTTP {status}"))
    }
}

/// One event sent: (SKU index, value, when, round trip or why refused).
type Sent = (usize, i64, Instant, Result<Duration, String>);

fn sku_name(i: usize) -> String {
    format!("A-{:05}", i + 1)
}

pub async fn run(args: &HttpJobArgs) -> anyhow::Result<()> {
    if args.skus == 0 || args.concurrency == 0 {
        bail!("--skus and --concurrency must be at least 1");
    }
    let job = Job::start(args).await?;
    let result = measure(&job, args).await;
    job.stop().await;
    let v = result?;
    println!("{v}");
    Ok(())
}

async fn measure(job: &Job, args: &HttpJobArgs) -> anyhow::Result<Value> {
    let timeout = Duration::from_secs(args.timeout.max(1));
    let skus: Vec<String> = (0..args.skus).map(sku_name).collect();
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency)
        .build()?;

    // Warm-up: every SKU at 1.
    for s in &skus {
        send(&http, &job.hooks, s, 1)
            .await
            .map_err(|e| anyhow::anyhow!("warm-up webhook refused: {e}"))?;
    }
    let deadline = Instant::now() + timeout;
    while job.latest().len() < skus.len() || !job.engine.is_drained().await? {
        if Instant::now() > deadline {
            bail!("warm-up: the receiver did not get every SKU within {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (puts_before, refused_before) = {
        let mut g = job.receiver.got.lock().unwrap_or_else(|p| p.into_inner());
        g.log.clear();
        (g.puts, g.refused)
    };
    let stats_before = job.engine.stats(Some(i64::MAX));

    // The load: event n sets SKU n % k to n / k + 2.
    let k = skus.len() as u64;
    let next = Arc::new(AtomicU64::new(0));
    let sent: Arc<Mutex<Vec<Sent>>> =
        Arc::new(Mutex::new(Vec::with_capacity(args.events as usize)));
    let started = Instant::now();
    let mut senders = tokio::task::JoinSet::new();
    for _ in 0..args.concurrency {
        let (next, sent, http, url, skus) = (
            next.clone(),
            sent.clone(),
            http.clone(),
            job.hooks.clone(),
            skus.clone(),
        );
        let total = args.events;
        let rate = args.rate.filter(|r| *r > 0);
        senders.spawn(async move {
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= total {
                    return;
                }
                if let Some(r) = rate {
                    let due = started + Duration::from_secs_f64(n as f64 / r as f64);
                    tokio::time::sleep_until(due.into()).await;
                }
                let i = (n % k) as usize;
                let value = (n / k) as i64 + 2;
                let at = Instant::now();
                let r = send(&http, &url, &skus[i], value).await;
                sent.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push((i, value, at, r));
            }
        });
    }
    while senders.join_next().await.is_some() {}
    let acked_at = Instant::now();
    let sent = std::mem::take(&mut *sent.lock().unwrap_or_else(|p| p.into_inner()));
    let refused_hooks = sent.iter().filter(|s| s.3.is_err()).count() as u64;
    let mut target = vec![1i64; skus.len()];
    for (i, v, _, r) in &sent {
        if r.is_ok() {
            target[*i] = target[*i].max(*v);
        }
    }

    // Wait until the receiver holds every final value.
    let deadline = Instant::now() + timeout;
    let mut complete = true;
    let index: HashMap<&str, usize> = skus
        .iter()
        .enumerate()
        .map(|(i, s)| (s.as_str(), i))
        .collect();
    loop {
        let latest = job.latest();
        let done = skus
            .iter()
            .enumerate()
            .all(|(i, s)| latest.get(s).copied() == Some(target[i]));
        if done {
            break;
        }
        if Instant::now() > deadline {
            complete = false;
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let drained = {
        let d = Instant::now() + timeout;
        loop {
            if job.engine.is_drained().await? {
                break true;
            }
            if Instant::now() > d {
                break false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    let (log, puts, refused_puts) = {
        let g = job.receiver.got.lock().unwrap_or_else(|p| p.into_inner());
        (
            g.log.clone(),
            g.puts - puts_before,
            g.refused - refused_before,
        )
    };
    let latest = job.latest();
    let lost = skus
        .iter()
        .enumerate()
        .filter(|(i, s)| latest.get(*s).copied() != Some(target[*i]))
        .count();

    // Latencies.
    let mut rtt_ms: Vec<f64> = sent
        .iter()
        .filter_map(|s| s.3.as_ref().ok())
        .map(|d| d.as_secs_f64() * 1000.0)
        .collect();
    rtt_ms.sort_by(f64::total_cmp);
    let mut send_at: Vec<HashMap<i64, Instant>> = vec![HashMap::new(); skus.len()];
    for (i, v, at, r) in &sent {
        if r.is_ok() {
            send_at[*i].insert(*v, *at);
        }
    }
    let mut e2e_ms = Vec::with_capacity(log.len());
    let mut delivered_at = started;
    for (sku, v, at) in &log {
        if let Some(&i) = index.get(sku.as_str()) {
            if let Some(t) = send_at[i].remove(v) {
                e2e_ms.push(at.saturating_duration_since(t).as_secs_f64() * 1000.0);
            }
            if *v == target[i] && *at > delivered_at {
                delivered_at = *at;
            }
        }
    }
    e2e_ms.sort_by(f64::total_cmp);
    let acked = sent.len() as u64 - refused_hooks;
    let ack_secs = acked_at.saturating_duration_since(started).as_secs_f64();
    let delivered_secs = delivered_at
        .saturating_duration_since(started)
        .as_secs_f64();
    let stats = job.engine.stats(Some(i64::MAX));
    let events_per_s = acked as f64 / ack_secs.max(1e-9);
    eprintln!(
        "[http-job] {} events over {} SKUs by {} senders: acknowledged {acked} in {ack_secs:.3}s, \
         receiver complete at {delivered_secs:.3}s{}, drained: {drained}; {puts} PUTs ({refused_puts} answered 503), \
         {} arrived exactly, {} coalesced; engine: captured {} delivered {} retried {}",
        args.events,
        skus.len(),
        args.concurrency,
        if complete { "" } else { " (TIMED OUT)" },
        e2e_ms.len(),
        acked.saturating_sub(e2e_ms.len() as u64),
        stats.captured - stats_before.captured,
        stats.delivered - stats_before.delivered,
        stats.retried - stats_before.retried,
    );
    println!(
        "{:<9} {:>7} {:>9} {:>11} {:>9} {:>9} {:>9} {:>9} {:>5}",
        "case",
        "events",
        "events/s",
        "delivered/s",
        "hook p50",
        "hook p99",
        "e2e p50",
        "e2e p99",
        "lost"
    );
    println!(
        "{:<9} {:>7} {:>9.0} {:>11.0} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>5}",
        "http-job",
        args.events,
        events_per_s,
        acked as f64 / delivered_secs.max(1e-9),
        percentile(&rtt_ms, 0.5),
        percentile(&rtt_ms, 0.99),
        percentile(&e2e_ms, 0.5),
        percentile(&e2e_ms, 0.99),
        lost
    );
    println!(
        "goals (not asserted): http-job >= {GOAL_EVENTS_PER_S:.0} durable events/s on one core; lost = 0"
    );
    Ok(json!({
        "bench": if args.rate.is_some() { "http-job_latency" } else { "http-job" },
        "rate": args.rate,
        "events": args.events,
        "skus": skus.len(),
        "concurrency": args.concurrency,
        "events_per_s": round1(events_per_s),
        "delivered_per_s": round1(acked as f64 / delivered_secs.max(1e-9)),
        "webhook_p50_ms": round3(percentile(&rtt_ms, 0.5)),
        "webhook_p99_ms": round3(percentile(&rtt_ms, 0.99)),
        "e2e_p50_ms": round3(percentile(&e2e_ms, 0.5)),
        "e2e_p99_ms": round3(percentile(&e2e_ms, 0.99)),
        "lost": lost,
        "refused": refused_hooks,
        "puts": puts,
        "puts_503": refused_puts,
        "arrived_exactly": e2e_ms.len(),
        "seconds": round3(delivered_secs),
        "complete": complete,
    }))
}
