//! `options.write.KIND`: how one kind is written — its ops (`create`, `update`, `upsert`,
//! `cancel`, `delete`, `amend`), each one request or named steps (`when`, `select`,
//! `if_missing`), the `find` made before a create, the created id and version, bulk writes
//! and the idempotency header. No I/O: the writing itself is `http/write.rs`.

use super::super::jq::{is_identifier, Program};
use super::request::{
    de, header_name, opt_program, plain_request, program, request, RawRequest, Request, Result,
};
use super::{BULK, RESERVED, RESPONSE, WRITE};
use crate::options::err;
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;

/// What a named step does when it finds nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IfMissing {
    #[default]
    Continue,
    Retry,
    Skip,
    Fail,
}

/// One step of a write.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub name: Option<String>,
    pub when: Option<Program>,
    pub request: Request,
    pub select: Option<Program>,
    pub if_missing: IfMissing,
}

/// The lookup made before a create (and to find the id of an update without a known one).
#[derive(Debug, Clone, PartialEq)]
pub struct Find {
    pub request: Request,
    /// jq on the response: the record found, or `null`/nothing for none.
    pub select: Option<Program>,
    pub not_found: Vec<u16>,
    /// jq on the found record: its id.
    pub id: Program,
}

/// A bulk write: many items in one request.
#[derive(Debug, Clone, PartialEq)]
pub struct Bulk {
    /// Most items per request.
    pub max: usize,
    /// The ops sent in bulk (default `upsert`).
    pub ops: Vec<String>,
    pub request: Request,
    /// jq on the response: one entry per item, in order: `{id?, version?, error?}`; absent:
    /// every item succeeded without an id.
    pub results: Option<Program>,
}

/// How one kind is written.
#[derive(Debug, Clone, PartialEq)]
pub struct Write {
    pub find: Option<Find>,
    /// jq on the last step's response body (and the steps' bindings): the created record's id.
    pub id: Option<Program>,
    pub version: Option<Program>,
    /// Steps by op (`create`, `update`, `upsert`, `cancel`, `delete`, `amend`).
    pub ops: BTreeMap<String, Vec<Step>>,
    pub bulk: Option<Bulk>,
    /// Header carrying a key deterministic per item and content.
    pub idempotency_header: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWrite {
    /// Lookup before a create (and to find the id of an update without a known one).
    find: Option<RawRequest>,
    /// jq on the last step's response: the id of the record written (default `.id`).
    id: Option<String>,
    /// jq on the last step's response: its version there.
    version: Option<String>,
    create: Option<Value>,
    update: Option<Value>,
    upsert: Option<Value>,
    cancel: Option<Value>,
    delete: Option<Value>,
    amend: Option<Value>,
    bulk: Option<Value>,
    /// Header carrying a key deterministic per outbox item and content (e.g.
    /// `Idempotency-Key`): a retried request is recognised by the API.
    idempotency_header: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBulk {
    /// Most items per request (≥ 2).
    max: Option<u64>,
    /// Ops sent in bulk (default `["upsert"]`).
    ops: Option<Vec<String>>,
    request: Option<RawRequest>,
    /// jq on the response: one `{id?, version?, error?}` per item, in order.
    results: Option<String>,
}

pub const OPS: &[&str] = &["create", "update", "upsert", "cancel", "delete", "amend"];

/// The steps of one op: one request (a table) or several (an array of tables).
pub(super) fn steps(path: &str, v: &Value) -> Result<Vec<Step>> {
    let raws: Vec<(String, RawRequest)> = match v {
        Value::Array(items) => {
            if items.is_empty() {
                return Err(err(path, "needs at least one step"));
            }
            items
                .iter()
                .enumerate()
                .map(|(i, item)| {
                    let at = format!("{path}[{i}]");
                    de(item, &at).map(|r| (at, r))
                })
                .collect::<Result<_>>()?
        }
        other => vec![(path.to_string(), de(other, path)?)],
    };
    let mut names: Vec<String> = Vec::new();
    let mut out = Vec::new();
    for (at, raw) in raws {
        for (field, present) in [
            ("not_found", raw.not_found.is_some()),
            ("id", raw.id.is_some()),
        ] {
            if present {
                return Err(err(
                    &format!("{at}.{field}"),
                    "is only allowed in `find` (the write's `id` reads the created id)",
                ));
            }
        }
        if raw.select.is_some() && raw.name.is_none() {
            return Err(err(
                &format!("{at}.select"),
                "needs a `name`: the selected value is bound as `$NAME` for later steps",
            ));
        }
        let if_missing = match raw.if_missing.as_deref() {
            None | Some("continue") => IfMissing::Continue,
            Some("retry") => IfMissing::Retry,
            Some("skip") => IfMissing::Skip,
            Some("fail") => IfMissing::Fail,
            Some(other) => {
                return Err(err(
                    &format!("{at}.if_missing"),
                    format!("`{other}` is not one of continue, retry, skip, fail"),
                ))
            }
        };
        if raw.if_missing.is_some() && raw.name.is_none() {
            return Err(err(
                &format!("{at}.if_missing"),
                "needs a `name` (it judges the step's selected value)",
            ));
        }
        let step = Step {
            name: raw.name.clone(),
            when: opt_program(&format!("{at}.when"), raw.when.as_ref(), WRITE, &names)?,
            request: request(&at, &raw, WRITE, &names)?,
            select: opt_program(&format!("{at}.select"), raw.select.as_ref(), WRITE, &names)?,
            if_missing,
        };
        if let Some(n) = &raw.name {
            if !is_identifier(n) || RESERVED.contains(&n.as_str()) {
                return Err(err(
                    &format!("{at}.name"),
                    format!(
                        "`{n}` must be an identifier (letters, digits, `_`) other than {}",
                        RESERVED.join(", ")
                    ),
                ));
            }
            if names.contains(n) {
                return Err(err(
                    &format!("{at}.name"),
                    format!("`{n}` is used by an earlier step"),
                ));
            }
            names.push(n.clone());
        }
        out.push(step);
    }
    Ok(out)
}

pub(super) fn write(path: &str, v: &Value) -> Result<Write> {
    let r: RawWrite = de(v, path)?;
    let find = match &r.find {
        None => None,
        Some(raw) => {
            let at = format!("{path}.find");
            for (field, present) in [
                ("name", raw.name.is_some()),
                ("when", raw.when.is_some()),
                ("if_missing", raw.if_missing.is_some()),
            ] {
                if present {
                    return Err(err(
                        &format!("{at}.{field}"),
                        "is not allowed in `find` (its result is `$found`)",
                    ));
                }
            }
            for (i, s) in raw.not_found.iter().flatten().enumerate() {
                if !(100..=599).contains(s) {
                    return Err(err(
                        &format!("{at}.not_found[{i}]"),
                        format!("{s} is not an HTTP status"),
                    ));
                }
            }
            Some(Find {
                request: request(&at, raw, WRITE, &[])?,
                select: opt_program(&format!("{at}.select"), raw.select.as_ref(), WRITE, &[])?,
                not_found: raw.not_found.clone().unwrap_or_else(|| vec![404]),
                id: program(
                    &format!("{at}.id"),
                    raw.id.as_deref().unwrap_or(".id"),
                    WRITE,
                )?,
            })
        }
    };
    let mut ops = BTreeMap::new();
    let mut all_names: Vec<String> = Vec::new();
    for (op, v) in [
        ("create", &r.create),
        ("update", &r.update),
        ("upsert", &r.upsert),
        ("cancel", &r.cancel),
        ("delete", &r.delete),
        ("amend", &r.amend),
    ] {
        if let Some(v) = v {
            let s = steps(&format!("{path}.{op}"), v)?;
            for n in s.iter().filter_map(|s| s.name.clone()) {
                if !all_names.contains(&n) {
                    all_names.push(n);
                }
            }
            ops.insert(op.to_string(), s);
        }
    }
    if ops.is_empty() {
        return Err(err(
            path,
            format!(
                "needs at least one of {} (the request(s) of that operation)",
                OPS.join(", ")
            ),
        ));
    }
    let bulk = match &r.bulk {
        None => None,
        Some(v) => {
            let at = format!("{path}.bulk");
            let b: RawBulk = de(v, &at)?;
            let max = match b.max {
                None => 100,
                Some(n) if n >= 2 => usize::try_from(n.min(10_000)).unwrap_or(10_000),
                Some(_) => return Err(err(&format!("{at}.max"), "must be at least 2")),
            };
            let ops_ = b.ops.unwrap_or_else(|| vec!["upsert".into()]);
            for (i, o) in ops_.iter().enumerate() {
                if !["create", "update", "upsert"].contains(&o.as_str()) {
                    return Err(err(
                        &format!("{at}.ops[{i}]"),
                        format!("`{o}` is not one of create, update, upsert"),
                    ));
                }
            }
            let raw_req = b
                .request
                .ok_or_else(|| err(&format!("{at}.request"), "is required"))?;
            plain_request(&format!("{at}.request"), &raw_req)?;
            Some(Bulk {
                max,
                ops: ops_,
                request: request(&format!("{at}.request"), &raw_req, BULK, &[])?,
                results: opt_program(&format!("{at}.results"), b.results.as_ref(), RESPONSE, &[])?,
            })
        }
    };
    Ok(Write {
        find,
        id: opt_program(&format!("{path}.id"), r.id.as_ref(), WRITE, &all_names)?,
        version: opt_program(
            &format!("{path}.version"),
            r.version.as_ref(),
            WRITE,
            &all_names,
        )?,
        ops,
        bulk,
        idempotency_header: r
            .idempotency_header
            .map(|h| header_name(&format!("{path}.idempotency_header"), &h))
            .transpose()?,
    })
}
