//! Writes of the `http` connector: the configured steps of an op, with lookup-before-create so
//! a retried or replayed create never makes a second record.
//!
//! Which steps run for the engine's op:
//! - `upsert`: the `upsert` steps when configured (an idempotent `PUT`); else the record's id —
//!   known from the xref, or found by `find` — selects `update` (none configured: the record
//!   is there, the write is done), and no id selects `create`.
//! - `create`: a known or found record is not created again: the write is done with its id
//!   (this is what makes a retried create, or a replay after a lost answer, write once); else
//!   `create` (or `upsert`).
//! - `update`: `update` (or `upsert`) with the id; no id → `create` (the destination never got
//!   the record); `update_only` (correlation): no id → nothing written.
//! - `cancel`, `delete`, `amend`: their steps, with the id when known or found.
//!
//! Steps run in order; each may be skipped by its `when`, and each named step binds its
//! response (after `select`) as `$NAME` for the next. The record's id at the endpoint is the
//! write's `id` program on the last response (default: the id found or known, else the last
//! response's `.id`).
//!
//! Every request of one item carries the same idempotency key
//! (`concord-<item>-<hash of kind, key, op, payload>`): as `$idempotency_key` and in the
//! configured `idempotency_header`, so an API that supports such keys recognises a retry.
//!
//! Bulk (`bulk`): the ops it lists go as one request for the whole batch; `results` maps the
//! response back to one outcome per item.
//!
//! Must never: create when the lookup found the record; retry (the engine does).

use super::client::Client;
use super::config::{Bulk, Find, IfMissing, Step, Write};
use super::jq::Vars;
use super::limits::{headers_json, snippet};
use concord_core::Kind;
use concord_engine::connector::{DeliveryError, WriteOp, WriteOutcome};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// The idempotency key of one item's content.
pub fn idempotency_key(op: &WriteOp) -> String {
    let mut h = Sha256::new();
    h.update(op.kind.as_str().as_bytes());
    h.update([0]);
    h.update(op.key.as_bytes());
    h.update([0]);
    h.update(op.op.as_bytes());
    h.update([0]);
    h.update(serde_json::to_vec(&op.payload).unwrap_or_default());
    format!(
        "concord-{}-{}",
        op.item_id,
        &hex::encode(h.finalize())[..16]
    )
}

fn as_id(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn permanent(kind: Kind, op: &str, msg: impl std::fmt::Display) -> DeliveryError {
    DeliveryError::Permanent {
        reason: format!("options.write.{kind}.{op}: {msg}"),
    }
}

/// The variables of one item's programs.
fn base_vars(client: &Client, op: &WriteOp, id: Option<&str>, key: &str) -> Vars {
    let refs: serde_json::Map<String, Value> = op
        .refs
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect();
    Vars::new()
        .with("vars", client.vars().clone())
        .with("record", op.payload.clone())
        .with("key", Value::String(op.key.clone()))
        .with("op", Value::String(op.op.clone()))
        .with("refs", Value::Object(refs))
        .with("id", id.map_or(Value::Null, |s| Value::String(s.into())))
        .with("found", Value::Null)
        .with("idempotency_key", Value::String(key.into()))
}

/// Run `find`: the record found (or `None`) and its id.
async fn find(
    client: &Client,
    kind: Kind,
    f: &Find,
    op: &WriteOp,
    vars: &Vars,
) -> Result<Option<(Value, Option<String>)>, DeliveryError> {
    let env = client.env(Some(kind));
    let p = client
        .prepare_for(&f.request, &op.payload, vars, Some(kind))
        .await?;
    let sent = client.send(p).await?;
    if f.not_found.contains(&sent.status) {
        return Ok(None);
    }
    client.classify(&f.request, &sent).await?;
    let mut v = vars.clone();
    v.set("status", Value::from(sent.status));
    let found = match &f.select {
        Some(p) => p
            .run(&sent.body, &v, &env)
            .await
            .map_err(|e| permanent(kind, "find.select", e))?,
        None => sent.body.clone(),
    };
    let found = match found {
        Value::Null => return Ok(None),
        Value::Array(items) if items.is_empty() => return Ok(None),
        Value::Array(mut items) if items.len() == 1 => items.remove(0),
        Value::Array(items) => {
            return Err(permanent(
                kind,
                "find",
                format!(
                    "matched {} records; make `select` pick the one record (or null)",
                    items.len()
                ),
            ))
        }
        other => other,
    };
    let id =
        f.id.run(&found, &v, &env)
            .await
            .map_err(|e| permanent(kind, "find.id", e))?;
    Ok(Some((found.clone(), as_id(&id))))
}

/// Run the steps of `name` for one item.
async fn run_steps(
    client: &Client,
    kind: Kind,
    cfg: &Write,
    (name, steps): (&str, &[Step]),
    op: &WriteOp,
    mut vars: Vars,
    known_id: Option<String>,
) -> Result<WriteOutcome, DeliveryError> {
    let env = client.env(Some(kind));
    let idem = vars
        .get("idempotency_key")
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_default();
    let extra: Vec<(String, String)> = cfg
        .idempotency_header
        .iter()
        .map(|h| (h.clone(), idem.clone()))
        .collect();
    let mut last: Option<Value> = None;
    for (i, step) in steps.iter().enumerate() {
        if let Some(w) = &step.when {
            let go = w
                .test(&op.payload, &vars, &env)
                .await
                .map_err(|e| permanent(kind, &format!("{name}[{i}].when"), e))?;
            if !go {
                continue;
            }
        }
        let sent = client
            .call(&step.request, &op.payload, &vars, Some(kind), &extra)
            .await?;
        vars.set("status", Value::from(sent.status));
        if let Some(n) = &step.name {
            let bound = match &step.select {
                Some(p) => {
                    let mut sv = vars.clone();
                    sv.set("headers", headers_json(&sent.headers));
                    p.run(&sent.body, &sv, &env)
                        .await
                        .map_err(|e| permanent(kind, &format!("{name}[{i}].select"), e))?
                }
                None => sent.body.clone(),
            };
            let missing =
                matches!(&bound, Value::Null) || matches!(&bound, Value::Array(a) if a.is_empty());
            if missing {
                let what = format!("options.write.{kind}.{name}[{i}] (`{n}`) found nothing");
                match step.if_missing {
                    IfMissing::Continue => {}
                    IfMissing::Retry => {
                        return Err(DeliveryError::NotYet {
                            reason: format!("{what} yet; retrying later"),
                            retry_after: None,
                        })
                    }
                    IfMissing::Skip => {
                        return Ok(WriteOutcome::Done {
                            external_id: known_id,
                            version: None,
                        })
                    }
                    IfMissing::Fail => return Err(DeliveryError::Permanent { reason: what }),
                }
            }
            vars.set(n, bound);
        }
        last = Some(sent.body);
    }
    let last = last.unwrap_or(Value::Null);
    let external_id = match &cfg.id {
        Some(p) => as_id(
            &p.run(&last, &vars, &env)
                .await
                .map_err(|e| permanent(kind, "id", e))?,
        )
        .or(known_id),
        None => known_id.or_else(|| last.get("id").and_then(as_id)),
    };
    let version = match &cfg.version {
        Some(p) => as_id(
            &p.run(&last, &vars, &env)
                .await
                .map_err(|e| permanent(kind, "version", e))?,
        ),
        None => None,
    };
    Ok(WriteOutcome::Done {
        external_id,
        version,
    })
}

/// Write one item.
pub async fn write_one(
    client: &Client,
    kind: Kind,
    cfg: &Write,
    op: &WriteOp,
) -> Result<WriteOutcome, DeliveryError> {
    let key = idempotency_key(op);
    let mut vars = base_vars(client, op, op.external_id.as_deref(), &key);
    let steps = |n: &'static str| cfg.ops.get(n).map(|s| (n, s.as_slice()));
    // The record's id at the endpoint: known (xref), else looked up when a find is configured
    // and the op needs to know whether the record exists.
    let mut id = op.external_id.clone();
    let needs_lookup = id.is_none()
        && cfg.find.is_some()
        && !(op.op == "upsert" && cfg.ops.contains_key("upsert"));
    if needs_lookup {
        if let Some(f) = &cfg.find {
            if let Some((found, found_id)) = find(client, kind, f, op, &vars).await? {
                vars.set("found", found);
                id = found_id;
                if id.is_none() {
                    return Err(permanent(
                        kind,
                        "find.id",
                        "the record was found but its id is null",
                    ));
                }
            }
        }
    }
    if let Some(i) = &id {
        vars.set("id", Value::String(i.clone()));
    }
    let plan = match op.op.as_str() {
        "upsert" => match (steps("upsert"), &id) {
            (Some(s), _) => Some(s),
            (None, Some(_)) => steps("update").or(None),
            (None, None) => steps("create"),
        },
        "create" => {
            if id.is_some() {
                // Already there (xref, or found by the lookup): never a second record.
                return Ok(WriteOutcome::Done {
                    external_id: id,
                    version: None,
                });
            }
            steps("create").or_else(|| steps("upsert"))
        }
        "update" | "update_only" => match &id {
            Some(_) => steps("update").or_else(|| steps("upsert")),
            None if op.op == "update_only" && cfg.find.is_some() => {
                return Ok(WriteOutcome::NoMatch)
            }
            None => steps("update")
                .filter(|_| cfg.find.is_none() && !cfg.ops.contains_key("create"))
                .or_else(|| steps("create"))
                .or_else(|| steps("upsert")),
        },
        "cancel" | "delete" => {
            if id.is_none() && cfg.find.is_some() {
                // Nothing there to cancel or delete.
                return Ok(WriteOutcome::Done {
                    external_id: None,
                    version: None,
                });
            }
            if op.op == "cancel" {
                steps("cancel")
            } else {
                steps("delete")
            }
        }
        "amend" => steps("amend"),
        _ => None,
    };
    let Some((name, list)) = plan else {
        if op.op == "upsert" && id.is_some() {
            // Found, and no update configured: the record is there, nothing to change.
            return Ok(WriteOutcome::Done {
                external_id: id,
                version: None,
            });
        }
        return Err(DeliveryError::Permanent {
            reason: format!(
                "options.write.{kind} has no steps for op `{}` (configured: {})",
                op.op,
                cfg.ops.keys().cloned().collect::<Vec<_>>().join(", ")
            ),
        });
    };
    run_steps(client, kind, cfg, (name, list), op, vars, id).await
}

/// Write a batch in one bulk request.
pub async fn write_bulk(
    client: &Client,
    kind: Kind,
    bulk: &Bulk,
    ops: &[WriteOp],
) -> Vec<WriteOutcome> {
    let fail = |e: DeliveryError| {
        ops.iter()
            .map(|_| WriteOutcome::Failed(e.clone()))
            .collect()
    };
    let items: Vec<Value> = ops
        .iter()
        .map(|o| {
            json!({"record": o.payload, "key": o.key, "op": o.op, "id": o.external_id,
                   "refs": o.refs})
        })
        .collect();
    let input = Value::Array(items);
    let vars = Vars::new().with("vars", client.vars().clone());
    let sent = match client
        .call(&bulk.request, &input, &vars, Some(kind), &[])
        .await
    {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    let Some(results) = &bulk.results else {
        return ops
            .iter()
            .map(|o| WriteOutcome::Done {
                external_id: o.external_id.clone(),
                version: None,
            })
            .collect();
    };
    let env = client.env(Some(kind));
    let rv = Vars::new()
        .with("vars", client.vars().clone())
        .with("headers", headers_json(&sent.headers))
        .with("status", Value::from(sent.status));
    let list = match results.run(&sent.body, &rv, &env).await {
        Ok(Value::Array(l)) if l.len() == ops.len() => l,
        Ok(other) => {
            return fail(permanent(
                kind,
                "bulk.results",
                format!(
                    "expected an array of {} results, got {}",
                    ops.len(),
                    snippet(&other)
                ),
            ))
        }
        Err(e) => return fail(permanent(kind, "bulk.results", e)),
    };
    list.iter()
        .zip(ops)
        .map(|(r, o)| match r.get("error").filter(|e| !e.is_null()) {
            Some(e) => WriteOutcome::Failed(DeliveryError::Permanent {
                reason: format!("bulk item `{}`: {}", o.key, snippet(e)),
            }),
            None => WriteOutcome::Done {
                external_id: r
                    .get("id")
                    .and_then(as_id)
                    .or_else(|| o.external_id.clone()),
                version: r.get("version").and_then(as_id),
            },
        })
        .collect()
}
