//! serde_json ⇄ jaq values, bounded.
//!
//! Integers cross without loss (every `i64`/`u64` stays an integer, no `f64` rounding) and
//! object keys keep their order. Inputs are measured before they are converted (size in
//! approximately serialized bytes, and nesting), outputs while they are converted: a value
//! over either bound is refused, never half-converted. [`MAX_DEPTH`] is also serde_json's own
//! parsing limit, so whatever a mapping emits can be read back from the store.
//!
//! Must never: recurse deeper than [`MAX_DEPTH`] levels, or keep converting past the size
//! bound.

use super::budget::Limit;
use super::MAX_DEPTH;
use jaq_json::{Num, Val};
use serde_json::Value;

/// Why an output could not be converted.
pub(crate) enum Refused {
    /// Over a bound.
    Limit(Limit),
    /// Not representable as JSON (an object key that is not a string).
    NotJson(String),
}

/// Check that `v` is at most `max_bytes` bytes of JSON and [`MAX_DEPTH`] levels deep. Stops
/// at the first bound crossed, so it costs at most the bound.
pub(crate) fn check_input(v: &Value, max_bytes: usize) -> Result<(), Limit> {
    let mut left = max_bytes;
    measure(v, 1, &mut left, max_bytes)
}

fn measure(v: &Value, depth: usize, left: &mut usize, max: usize) -> Result<(), Limit> {
    let size = match v {
        Value::Null => 4,
        Value::Bool(_) => 5,
        Value::Number(n) => number_len(n),
        Value::String(s) => s.len() + 2,
        Value::Array(xs) => 2 + xs.len(),
        Value::Object(m) => 2 + m.len() * 2 + m.keys().map(|k| k.len() + 2).sum::<usize>(),
    };
    *left = left.checked_sub(size).ok_or(Limit::InputBytes(max))?;
    match v {
        Value::Array(_) | Value::Object(_) if depth > MAX_DEPTH => {
            Err(Limit::InputDepth(MAX_DEPTH))
        }
        Value::Array(xs) => xs.iter().try_for_each(|x| measure(x, depth + 1, left, max)),
        Value::Object(m) => m
            .values()
            .try_for_each(|x| measure(x, depth + 1, left, max)),
        _ => Ok(()),
    }
}

fn number_len(n: &serde_json::Number) -> usize {
    match (n.as_u64(), n.as_i64()) {
        (Some(u), _) => digits(u),
        (None, Some(i)) => 1 + digits(i.unsigned_abs()),
        // At most the longest shortest-round-trip form of an f64.
        _ => 24,
    }
}

fn digits(u: u64) -> usize {
    u.checked_ilog10().map_or(1, |l| l as usize + 1)
}

/// A checked input (see [`check_input`]) as a jaq value.
pub(crate) fn from_json(v: &Value) -> Val {
    match v {
        Value::Null => Val::Null,
        Value::Bool(b) => Val::Bool(*b),
        Value::Number(n) => Val::Num(if let Some(i) = n.as_i64() {
            Num::from_integral(i)
        } else if let Some(u) = n.as_u64() {
            Num::from_integral(u)
        } else {
            Num::Float(n.as_f64().unwrap_or(f64::NAN))
        }),
        Value::String(s) => Val::utf8_str(s.clone().into_bytes()),
        Value::Array(xs) => xs.iter().map(from_json).collect(),
        Value::Object(m) => Val::obj(
            m.iter()
                .map(|(k, v)| (Val::utf8_str(k.clone().into_bytes()), from_json(v)))
                .collect(),
        ),
    }
}

/// A jaq output as JSON, refused when it is larger than `max_bytes` or deeper than
/// [`MAX_DEPTH`].
pub(crate) fn to_json(v: &Val, max_bytes: usize) -> Result<Value, Refused> {
    let mut left = max_bytes;
    convert(v, 1, &mut left, max_bytes)
}

fn convert(v: &Val, depth: usize, left: &mut usize, max: usize) -> Result<Value, Refused> {
    if matches!(v, Val::Arr(_) | Val::Obj(_)) && depth > MAX_DEPTH {
        return Err(Refused::Limit(Limit::OutputDepth(MAX_DEPTH)));
    }
    Ok(match v {
        Val::Null => {
            take(left, max, 4)?;
            Value::Null
        }
        Val::Bool(b) => {
            take(left, max, 5)?;
            Value::Bool(*b)
        }
        Val::Num(n) => {
            let out = num_to_json(n);
            take(
                left,
                max,
                match &out {
                    Value::Number(n) => number_len(n),
                    _ => 4,
                },
            )?;
            out
        }
        Val::TStr(b) | Val::BStr(b) => {
            take(left, max, b.len() + 2)?;
            Value::String(String::from_utf8_lossy(b).into_owned())
        }
        Val::Arr(xs) => {
            take(left, max, 2 + xs.len())?;
            let mut out = Vec::with_capacity(xs.len());
            for x in xs.iter() {
                out.push(convert(x, depth + 1, left, max)?);
            }
            Value::Array(out)
        }
        Val::Obj(m) => {
            take(left, max, 2 + m.len() * 2)?;
            let mut out = serde_json::Map::with_capacity(m.len());
            for (k, v) in m.iter() {
                let key = match k {
                    Val::TStr(b) | Val::BStr(b) => String::from_utf8_lossy(b).into_owned(),
                    other => {
                        return Err(Refused::NotJson(format!(
                            "object key {} is not a string",
                            super::describe(other)
                        )))
                    }
                };
                take(left, max, key.len() + 2)?;
                let value = convert(v, depth + 1, left, max)?;
                out.insert(key, value);
            }
            Value::Object(out)
        }
    })
}

/// Count `n` more output bytes against what is `left` of `max`.
fn take(left: &mut usize, max: usize, n: usize) -> Result<(), Refused> {
    *left = left
        .checked_sub(n)
        .ok_or(Refused::Limit(Limit::OutputBytes(max)))?;
    Ok(())
}

fn num_to_json(n: &Num) -> Value {
    match n {
        Num::Int(i) => Value::from(*i as i64),
        Num::Float(f) => float_to_json(*f),
        // Big integers and decimal literals: keep them exact when serde_json can (u64, i64),
        // else the nearest f64.
        Num::BigInt(_) | Num::Dec(_) => {
            let text = n.to_string();
            serde_json::from_str::<serde_json::Number>(&text)
                .map(Value::Number)
                .unwrap_or_else(|_| float_to_json(text.parse().unwrap_or(f64::NAN)))
        }
    }
}

/// As jq does: NaN becomes `null`, infinities the largest finite numbers.
fn float_to_json(f: f64) -> Value {
    let f = if f.is_infinite() {
        f64::MAX.copysign(f)
    } else {
        f
    };
    serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)
}
