//! Our replacements for the jq natives that would escape the budget.
//!
//! - `range/3` (and so `range/1`, `range/2`, which jaq defines with it): jaq's produces its
//!   numbers in a Rust loop that never passes the meter, so `last(range(1e15))` or
//!   `[range(1e9)]` would run (and allocate) without limit. Ours counts a step per number.
//! - `fromjson`: jaq's parser recurses once per nesting level without a limit, so one string
//!   of a million `[` (from a webhook field) would overflow the stack and abort the process.
//!   Ours refuses text nested deeper than [`super::MAX_DEPTH`] levels before parsing, as the
//!   hub's own JSON readers do.
//!
//! Everything else is jaq's. Must never: change what a program means (same outputs, same
//! errors, except the two limits above).

use super::budget::{self, Metered};
use super::MAX_DEPTH;
use jaq_core::native::{self, v, Filter};
use jaq_core::{Error, Exn, RunPtr, ValX};
use jaq_json::Val;

/// The natives that replace jaq's of the same name and arity.
pub(crate) fn funs() -> impl Iterator<Item = native::Fun<Metered>> {
    let natives: [Filter<RunPtr<Metered>>; 2] = [
        ("range", v(3), |mut cv| {
            let by = cv.0.pop_var();
            let to = cv.0.pop_var();
            let from = cv.0.pop_var();
            Box::new(range(Ok(from), to, by))
        }),
        ("fromjson", v(0), |cv| {
            let parsed =
                cv.1.try_as_utf8_bytes_owned()
                    .and_then(|text| fromjson(&cv.1, &text));
            match parsed {
                Ok(values) => Box::new(values.into_iter().map(|r| r.map_err(Exn::from))),
                Err(e) => Box::new(std::iter::once(Err(Exn::from(e)))),
            }
        }),
    ];
    natives.into_iter().map(native::run::<Metered>)
}

/// Whether jaq's own native `(name, arity)` is replaced here.
pub(crate) fn replaced(name: &str, arity: usize) -> bool {
    matches!((name, arity), ("range", 3) | ("fromjson", 0))
}

/// jaq's `range($from; $to; $by)` (jaq-core 3.1.2, `funs.rs`, MIT), with a step per number.
fn range<'a>(mut from: ValX<'a, Val>, to: Val, by: Val) -> impl Iterator<Item = ValX<'a, Val>> {
    use std::cmp::Ordering::{Equal, Greater, Less};
    let cmp = by.partial_cmp(&Val::from(0isize)).unwrap_or(Equal);
    std::iter::from_fn(move || match from.clone() {
        Ok(x) => {
            budget::tick();
            match cmp {
                Greater => x < to,
                Less => x > to,
                Equal => x != to,
            }
            .then(|| std::mem::replace(&mut from, (x + by.clone()).map_err(Exn::from)))
        }
        e @ Err(_) => {
            // Nothing after the error.
            from = Ok(to.clone());
            Some(e)
        }
    })
}

/// jaq's `fromjson` (every JSON value in the text, in order), refusing text nested deeper
/// than [`MAX_DEPTH`] before jaq's recursive parser sees it.
fn fromjson(input: &Val, text: &[u8]) -> Result<Vec<Result<Val, Error<Val>>>, Error<Val>> {
    if nesting(text) > MAX_DEPTH {
        return Err(Error::str(format_args!(
            "cannot parse {} as JSON: nested deeper than {MAX_DEPTH} levels",
            short(input)
        )));
    }
    Ok(jaq_json::read::parse_many(text)
        .map(|r| {
            r.map_err(|e| Error::str(format_args!("cannot parse {} as JSON: {e}", short(input))))
        })
        .collect())
}

/// The deepest nesting of `[` and `{` outside strings. Brackets inside `#` comments (which
/// jaq's reader allows) count too: an overestimate only ever refuses, never lets through.
fn nesting(text: &[u8]) -> usize {
    let (mut depth, mut deepest) = (0usize, 0usize);
    let (mut in_string, mut escaped) = (false, false);
    for &b in text {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

/// The value as jq would print it, cut to 60 characters (errors quote their input).
fn short(v: &Val) -> String {
    let text = v.to_string();
    if text.chars().count() > 60 {
        text.chars().take(60).collect::<String>() + "…"
    } else {
        text
    }
}
