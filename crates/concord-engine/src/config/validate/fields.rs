//! The field checks every section shares: durations, positive integers, amounts, names,
//! endpoint references and lists, jq programs. Each error names the field's path. No I/O.

use super::{Result, MAX_DURATION};
use crate::config::Issue;
use crate::connector::EndpointSpec;
use crate::mapping::{Budget, Lane, Mapping};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

pub(super) fn required_list(
    path: &str,
    list: Option<Vec<String>>,
    what: &str,
) -> Result<Vec<String>> {
    list.ok_or_else(|| {
        Issue::new(
            path,
            format!("missing: expected a list of {what} endpoint names, like [\"erp\"]"),
        )
    })
}

/// Every name is a defined endpoint, and none is listed twice.
pub(super) fn endpoint_list(
    path: &str,
    names: &[String],
    endpoints: &BTreeMap<String, EndpointSpec>,
) -> Result<()> {
    let mut seen = BTreeSet::new();
    for (i, name) in names.iter().enumerate() {
        let p = format!("{path}[{i}]");
        known_endpoint(&p, name, endpoints)?;
        if !seen.insert(name) {
            return Err(Issue::new(p, format!("`{name}` is listed twice")));
        }
    }
    Ok(())
}

pub(super) fn known_endpoint(
    path: &str,
    name: &str,
    endpoints: &BTreeMap<String, EndpointSpec>,
) -> Result<()> {
    if endpoints.contains_key(name) {
        return Ok(());
    }
    let known: Vec<String> = endpoints.keys().cloned().collect();
    Err(Issue::new(
        path,
        format!(
            "unknown endpoint `{name}` (expected one of {})",
            quoted_list(&known)
        ),
    ))
}

pub(super) fn quoted_list(names: &[String]) -> String {
    names
        .iter()
        .map(|n| format!("\"{n}\""))
        .collect::<Vec<_>>()
        .join(", ")
}

pub(super) fn check_name(path: &str, name: &str, what: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
    if ok {
        Ok(())
    } else {
        Err(Issue::new(
            path,
            format!(
                "invalid {what} {name:?}: expected lowercase letters, digits, `_` and `-` only"
            ),
        ))
    }
}

/// Compile the jq program at `path`, named by that path and run under `budget` on `lane`.
/// Nothing is run here: a program's cost depends on the records it will be fed.
pub(super) fn compile(path: &str, source: &str, budget: &Budget, lane: Lane) -> Result<Mapping> {
    Mapping::compile_as(path, source, *budget, lane).map_err(|e| Issue::new(path, e.to_string()))
}

pub(super) fn duration(
    path: &str,
    raw: Option<&str>,
    default: Duration,
    zero_ok: bool,
) -> Result<Duration> {
    let Some(text) = raw else {
        return Ok(default);
    };
    let d = humantime::parse_duration(text.trim()).map_err(|e| {
        Issue::new(
            path,
            format!("expected a duration like \"200ms\", \"30s\" or \"5m\", got {text:?}: {e}"),
        )
    })?;
    if d.is_zero() && !zero_ok {
        return Err(Issue::new(path, "must be longer than zero"));
    }
    // The engine adds durations to millisecond timestamps (i64): keep them far from overflow.
    if d > MAX_DURATION {
        return Err(Issue::new(
            path,
            format!("must be at most 100 years, got {text:?}"),
        ));
    }
    Ok(d)
}

/// A config number that is a quantity or an amount (`check`: `concord_core::limits::quantity` or
/// `money`): within the bounded domain the rest of the hub assumes, named by its path.
pub(super) fn config_amount(
    path: &str,
    raw: u64,
    check: fn(&str, i64) -> std::result::Result<i64, concord_core::limits::LimitError>,
) -> Result<i64> {
    let n = i64::try_from(raw).map_err(|_| Issue::new(path, format!("{raw} is too large")))?;
    check(path, n).map_err(|e| Issue::new(path, e.message))
}

pub(super) fn positive(path: &str, raw: Option<u64>, default: usize) -> Result<usize> {
    match raw {
        None => Ok(default),
        Some(0) => Err(Issue::new(path, "must be a positive integer, got 0")),
        Some(n) => usize::try_from(n).map_err(|_| Issue::new(path, format!("{n} is too large"))),
    }
}

pub(super) fn positive_u32(path: &str, raw: Option<u64>, default: u32) -> Result<u32> {
    match raw {
        None => Ok(default),
        Some(0) => Err(Issue::new(path, "must be a positive integer, got 0")),
        Some(n) => u32::try_from(n).map_err(|_| Issue::new(path, format!("{n} is too large"))),
    }
}
