//! `[[flows]]` and `[ownership]`: each flow's pattern, kind, sources and destinations (by
//! name, each a configured endpoint, with the arity its pattern allows), its jq filter and
//! mappings (compiled against the engine's jq budget), its timers; that all flows reading one
//! kind from one endpoint map it alike; and that each field's owner is a configured endpoint.
//! Part of [`validate`](super::validate), called after the endpoints are checked: no I/O.

use super::{
    check_name, compile, duration, endpoint_list, known_endpoint, positive, quoted_list,
    required_list, Result,
};
use crate::config::raw::{RawFlow, RawMode, RawOwnership, RawPattern};
use crate::config::{FlowConfig, Issue, Mode, Pattern};
use crate::connector::EndpointSpec;
use crate::mapping::{Budget, Lane, Mapping};
use concord_core::{Kind, Ownership};
use std::collections::BTreeMap;
use std::str::FromStr;
use std::time::Duration;

const DEFAULT_OVERLAP: Duration = Duration::from_secs(5);
const DEFAULT_PAGE_SIZE: usize = 500;

/// `flows[i]` (`at`), whose endpoints are already checked.
pub(super) fn flow(
    at: &str,
    raw: RawFlow,
    endpoints: &BTreeMap<String, EndpointSpec>,
    budget: &Budget,
) -> Result<FlowConfig> {
    check_name(&format!("{at}.name"), &raw.name, "flow name")?;
    let field = |name: &str| format!("{at}.{name}");

    // Pattern and endpoints.
    let pattern = match raw.pattern {
        RawPattern::Broadcast => Pattern::Broadcast,
        RawPattern::Aggregation => Pattern::Aggregation,
        RawPattern::Bidirectional => Pattern::Bidirectional,
        RawPattern::Correlation => Pattern::Correlation,
        RawPattern::Migration => Pattern::Migration,
    };
    let (from, to) = if pattern == Pattern::Bidirectional {
        for (name, given) in [("from", raw.from.is_some()), ("to", raw.to.is_some())] {
            if given {
                return Err(Issue::new(
                    field(name),
                    "a bidirectional flow names its two endpoints in `between = [\"a\", \"b\"]`, not in `from`/`to`",
                ));
            }
        }
        let Some(between) = raw.between else {
            return Err(Issue::new(
                field("between"),
                "missing: a bidirectional flow needs `between = [\"a\", \"b\"]` (two endpoints)",
            ));
        };
        endpoint_list(&field("between"), &between, endpoints)?;
        if between.len() != 2 {
            return Err(Issue::new(
                field("between"),
                format!(
                    "expected exactly 2 distinct endpoints, got {}",
                    between.len()
                ),
            ));
        }
        (between.clone(), between)
    } else {
        if raw.between.is_some() {
            return Err(Issue::new(
                field("between"),
                format!(
                    "`between` is only for bidirectional flows; a {} flow uses `from` and `to`",
                    pattern.as_str()
                ),
            ));
        }
        let from = required_list(&field("from"), raw.from, "source")?;
        let to = required_list(&field("to"), raw.to, "destination")?;
        endpoint_list(&field("from"), &from, endpoints)?;
        endpoint_list(&field("to"), &to, endpoints)?;
        let (from_rule, to_rule) = match pattern {
            Pattern::Broadcast => (Arity::One, Arity::AtLeastOne),
            Pattern::Aggregation => (Arity::AtLeastOne, Arity::One),
            _ => (Arity::AtLeastOne, Arity::AtLeastOne),
        };
        from_rule.check(&field("from"), pattern, from.len(), "source")?;
        to_rule.check(&field("to"), pattern, to.len(), "destination")?;
        if let Some(both) = to.iter().find(|t| from.contains(t)) {
            return Err(Issue::new(
                field("to"),
                format!(
                    "`{both}` is both a source and a destination; only a bidirectional flow (`between`) may do that"
                ),
            ));
        }
        (from, to)
    };

    // Mode and its fields.
    let mode_kind = match (raw.mode, pattern) {
        (Some(m), _) => m,
        (None, Pattern::Migration) => RawMode::Migration,
        (None, _) => {
            return Err(Issue::new(
                field("mode"),
                "missing: expected one of \"realtime\", \"delta\", \"batch\", \"migration\"",
            ))
        }
    };
    if pattern == Pattern::Migration && mode_kind != RawMode::Migration {
        return Err(Issue::new(
            field("mode"),
            "the migration pattern runs once: expected mode \"migration\"",
        ));
    }
    let mode_name = match mode_kind {
        RawMode::Realtime => "realtime",
        RawMode::Delta => "delta",
        RawMode::Batch => "batch",
        RawMode::Migration => "migration",
    };
    for (name, given, allowed) in [
        ("poll", raw.poll.is_some(), RawMode::Realtime),
        ("interval", raw.interval.is_some(), RawMode::Delta),
        ("schedule", raw.schedule.is_some(), RawMode::Batch),
    ] {
        if given && mode_kind != allowed {
            let owner = match allowed {
                RawMode::Realtime => "realtime",
                RawMode::Delta => "delta",
                _ => "batch",
            };
            return Err(Issue::new(
                field(name),
                format!("`{name}` is only for mode \"{owner}\", but this flow's mode is \"{mode_name}\""),
            ));
        }
    }
    let mode = match mode_kind {
        RawMode::Realtime => Mode::Realtime {
            poll: match raw.poll.as_deref() {
                None => None,
                Some(p) => Some(duration(&field("poll"), Some(p), Duration::ZERO, false)?),
            },
        },
        RawMode::Delta => {
            let Some(interval) = raw.interval.as_deref() else {
                return Err(Issue::new(
                    field("interval"),
                    "missing: mode \"delta\" needs `interval`, how often to poll (e.g. \"2s\")",
                ));
            };
            Mode::Delta {
                interval: duration(&field("interval"), Some(interval), Duration::ZERO, false)?,
            }
        }
        RawMode::Batch => {
            let Some(expr) = raw.schedule else {
                return Err(Issue::new(
                    field("schedule"),
                    "missing: mode \"batch\" needs `schedule`, a cron expression with seconds (e.g. \"0 */5 * * * *\")",
                ));
            };
            let schedule = cron::Schedule::from_str(expr.trim()).map_err(|e| {
                Issue::new(
                    field("schedule"),
                    format!("invalid cron schedule {expr:?}: {e} (expected 6 or 7 fields: sec min hour day-of-month month day-of-week [year])"),
                )
            })?;
            Mode::Batch {
                schedule: Box::new(schedule),
                expr,
            }
        }
        RawMode::Migration => Mode::Migration,
    };

    // jq programs.
    let filter = raw
        .filter
        .as_deref()
        .map(|src| compile(&field("filter"), src, budget, Lane::Outbound))
        .transpose()?;
    let map_in = raw
        .map_in
        .as_deref()
        .map(|src| compile(&field("map_in"), src, budget, Lane::Inbound))
        .transpose()?;
    let mut map_out = BTreeMap::new();
    for (dest, src) in raw.map_out {
        let mut p = field("map_out");
        crate::config::env::push_key(&mut p, &dest);
        if dest != "*" && !to.contains(&dest) {
            return Err(Issue::new(
                p,
                format!(
                    "`{dest}` is not a destination of this flow (expected one of {} or \"*\")",
                    quoted_list(&to)
                ),
            ));
        }
        let m = compile(&p, &src, budget, Lane::Outbound)?;
        map_out.insert(dest, m);
    }

    let reconcile = super::reconcile::schedule(at, raw.kind, pattern, raw.reconcile, raw.heal)?;
    Ok(FlowConfig {
        name: raw.name,
        kind: raw.kind,
        pattern,
        reconcile,
        mode,
        from,
        to,
        filter,
        map_in,
        map_out,
        overlap: duration(
            &field("overlap"),
            raw.overlap.as_deref(),
            DEFAULT_OVERLAP,
            true,
        )?,
        page_size: positive(&field("page_size"), raw.page_size, DEFAULT_PAGE_SIZE)?,
    })
}

/// All flows that read one kind from one endpoint must map it in the same way: the record is
/// captured (and mapped) once per endpoint and kind, not once per flow.
pub(super) fn inbound_mappings_agree(flows: &[FlowConfig]) -> Result<()> {
    let mut seen: BTreeMap<(&str, Kind), (usize, &Mapping)> = BTreeMap::new();
    for (i, f) in flows.iter().enumerate() {
        let Some(m) = &f.map_in else { continue };
        for source in &f.from {
            match seen.get(&(source.as_str(), f.kind)) {
                Some((j, other)) if other.source().trim() != m.source().trim() => {
                    return Err(Issue::new(
                        format!("flows[{i}].map_in"),
                        format!(
                            "inbound mapping must agree: flows[{j}] (`{}`) also reads {} from `{source}` with a different `map_in`",
                            flows[*j].name, f.kind
                        ),
                    ));
                }
                Some(_) => {}
                None => {
                    seen.insert((source.as_str(), f.kind), (i, m));
                }
            }
        }
    }
    Ok(())
}

#[derive(Clone, Copy)]
enum Arity {
    One,
    AtLeastOne,
}

impl Arity {
    fn check(self, path: &str, pattern: Pattern, n: usize, what: &str) -> Result<()> {
        match self {
            Arity::One if n != 1 => Err(Issue::new(
                path,
                format!("{} flow has exactly one {what}, got {n}", article(pattern)),
            )),
            Arity::AtLeastOne if n == 0 => Err(Issue::new(
                path,
                format!(
                    "{} flow needs at least one {what}, got none",
                    article(pattern)
                ),
            )),
            _ => Ok(()),
        }
    }
}

/// "a broadcast", "an aggregation".
fn article(pattern: Pattern) -> String {
    let name = pattern.as_str();
    let an = name.starts_with(['a', 'e', 'i', 'o', 'u']);
    format!("{} {name}", if an { "an" } else { "a" })
}

/// `[ownership.KIND]`: the kind is a canonical kind and every owner a configured endpoint.
pub(super) fn ownership(
    raw: BTreeMap<String, RawOwnership>,
    endpoints: &BTreeMap<String, EndpointSpec>,
) -> Result<BTreeMap<Kind, Ownership>> {
    let mut ownership = BTreeMap::new();
    for (kind_name, own) in raw {
        let mut at = String::from("ownership");
        crate::config::env::push_key(&mut at, &kind_name);
        let kind = Kind::from_str(&kind_name).map_err(|e| Issue::new(&at, e.to_string()))?;
        if let Some(owner) = &own.default {
            known_endpoint(&format!("{at}.default"), owner, endpoints)?;
        }
        for (field, owner) in &own.fields {
            let mut p = format!("{at}.fields");
            crate::config::env::push_key(&mut p, field);
            known_endpoint(&p, owner, endpoints)?;
        }
        ownership.insert(
            kind,
            Ownership {
                default: own.default,
                fields: own.fields,
            },
        );
    }
    Ok(ownership)
}
