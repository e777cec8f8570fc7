//! The cursor of Vendure's changed-since polling: pages of rows by `updatedAt` that can
//! neither skip nor stall, however many rows share one `updatedAt`. It speaks to a
//! [`ListSource`] (Vendure's Admin API in `super`, a fake in the tests) and knows nothing of
//! kinds or records.
//!
//! The cursor cannot skip or stall, however many rows share one `updatedAt`. Vendure on SQLite
//! stamps `updatedAt` to the **second** (TypeORM's `UpdateDateColumn`; checked on 3.7: a batch
//! of customers created in one request all carry `…:29.000Z`), its `after`/`before` filters are
//! strict, its list queries page by `skip`/`take` (at most `adminListQueryLimit` rows, option
//! `list_limit`), and `ID` filters have no `>`: there is no keyset on `(updatedAt, id)` to ask
//! for. So the connector pages by second, and **within one second by id** (`sort: {id: ASC}`,
//! `skip`), with the position kept in the cursor. Cursor, one of:
//! - `T` (an RFC 3339 second, the old format too): every row stamped before `T` was returned;
//!   the rows stamped `T` are (re-)read from the first.
//! - `T#n#id`: the same, and of the rows stamped `T` in id order the first `n` were returned,
//!   the `n`-th being `id` (the *anchor*).
//!
//! A page is at most `limit` rows (`ReadRequest::limit`, capped by `list_limit`):
//! - from `T`: rows stamped `T` or later, in `updatedAt` order. Not full → all of it, and the
//!   cursor becomes the newest row's second (re-read next time, so a row committed later within
//!   that second is still seen). Full, spanning several seconds → the rows before the last
//!   second; the cursor becomes that second (the next page starts there, so rows sharing it are
//!   never split by a tie order Vendure does not define). Full, all within one second `S` → the
//!   rows of `S` are paged by id instead, from the first.
//! - within `S` from `n` (anchor `id`): the rows of `S` in id order from position `n − 1`; the
//!   first must be the anchor — otherwise rows before it left `S` (an order updated since moves
//!   to a later second, where it is read again) and the positions shifted, so `S` is read again
//!   from its first row (duplicates, which the journal drops, never a gap). Full → the cursor
//!   moves on to `S#(n + page)#last id`. Exhausted → `S + 1 s` when a newer row exists (`S` is
//!   past, no row can join it), else `S` (it may still be the current second: re-read next
//!   cycle, as a not-full page is).
//!
//! Overlap (`ReadRequest::overlap`, the engine's re-read window for rows committed late, on the
//! first page of a poll cycle) re-reads the newest `limit` rows stamped in
//! `[T − overlap, T)` *besides* the page from `T` — never instead of it — so a cycle that ends
//! after its first page (the engine stops on a page that yields no records, as a refund page of
//! orders without refunds does) still moves the cursor on, and the cursor never goes back. A
//! cursor within a second has no overlap re-read (it only exists between two pages of a cycle,
//! or after one that failed). Re-read rows carry no version, so the journal drops them by
//! content hash.
//!
//! Must never: move the cursor past a row it did not return, or move it back.

use crate::vendure::mapping::{format_ts, parse_ts, second_of, ts_minus, ts_plus};
use chrono::{DateTime, Utc};
use concord_engine::connector::DeliveryError;
use serde_json::Value;
use std::time::Duration;

const SECOND: Duration = Duration::from_secs(1);

/// How a list query sorts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Sort {
    UpdatedAsc,
    UpdatedDesc,
    IdAsc,
}

/// One list query: rows stamped in `[from, until)` (a bound left out is open), sorted, paged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Window {
    pub(super) from: Option<DateTime<Utc>>,
    pub(super) until: Option<DateTime<Utc>>,
    pub(super) sort: Sort,
    pub(super) skip: usize,
    pub(super) take: usize,
}

/// Where list queries go: Vendure's Admin API, or a fake in the unit tests.
pub(super) trait ListSource {
    async fn list(&self, w: &Window) -> Result<Vec<Value>, DeliveryError>;
}

/// The stored cursor (module doc).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Cursor {
    /// Every row stamped before this second was returned.
    Before(DateTime<Utc>),
    /// … and of the rows stamped `at`, in id order, the first `n`, the last being `last`.
    Within {
        at: DateTime<Utc>,
        n: usize,
        last: String,
    },
}

impl Cursor {
    fn parse(c: &str) -> Result<Cursor, DeliveryError> {
        let bad = || DeliveryError::Permanent {
            reason: format!(
                "cursor `{c}` is not a timestamp like 2026-11-25T19:56:49.000Z (optionally \
                 followed by #<position>#<id>)"
            ),
        };
        let mut parts = c.splitn(3, '#');
        let at = parts
            .next()
            .and_then(parse_ts)
            .map(second_of)
            .ok_or_else(bad)?;
        match (parts.next(), parts.next()) {
            (None, _) => Ok(Cursor::Before(at)),
            (Some(n), Some(last)) if !last.is_empty() => Ok(Cursor::Within {
                at,
                n: n.parse().ok().filter(|n| *n > 0).ok_or_else(bad)?,
                last: last.to_string(),
            }),
            _ => Err(bad()),
        }
    }

    pub(super) fn format(&self) -> String {
        match self {
            Cursor::Before(t) => format_ts(*t),
            Cursor::Within { at, n, last } => format!("{}#{n}#{last}", format_ts(*at)),
        }
    }
}

fn updated_at(row: &Value) -> Option<DateTime<Utc>> {
    row.get("updatedAt")
        .and_then(Value::as_str)
        .and_then(parse_ts)
}

fn id_of(row: &Value) -> Option<&str> {
    row.get("id").and_then(Value::as_str)
}

/// One page: rows, the new cursor (`None`: unchanged), and whether more may follow.
type Changed = (Vec<Value>, Option<Cursor>, bool);

/// The most rows one query may ask for, and the most a page may hold (≤ `cap`).
#[derive(Debug, Clone, Copy)]
pub(super) struct Limits {
    pub(super) page: usize,
    pub(super) cap: usize,
}

/// The next page of rows changed since `cursor` (module doc).
pub(super) async fn changed<S: ListSource>(
    src: &S,
    cursor: Option<&str>,
    overlap: Duration,
    limits: Limits,
) -> Result<Changed, DeliveryError> {
    let cap = limits.cap.max(1);
    let lim = Limits {
        page: limits.page.clamp(1, cap),
        cap,
    };
    let limit = lim.page;
    match cursor.map(Cursor::parse).transpose()? {
        None => forward(src, None, lim).await,
        Some(Cursor::Within { at, n, last }) => within(src, at, Some((n, last)), lim).await,
        Some(Cursor::Before(t)) => {
            let mut rows = Vec::new();
            if !overlap.is_zero() {
                rows = src
                    .list(&Window {
                        from: Some(second_of(ts_minus(t, overlap))),
                        until: Some(t),
                        sort: Sort::UpdatedDesc,
                        skip: 0,
                        take: limit,
                    })
                    .await?;
                rows.reverse();
            }
            let (more_rows, cursor, more) = forward(src, Some(t), lim).await?;
            rows.extend(more_rows);
            Ok((rows, cursor, more))
        }
    }
}

/// Rows stamped `from` (a second) or later, in `updatedAt` order (module doc).
async fn forward<S: ListSource>(
    src: &S,
    from: Option<DateTime<Utc>>,
    lim: Limits,
) -> Result<Changed, DeliveryError> {
    let limit = lim.page;
    let rows = src
        .list(&Window {
            from,
            until: None,
            sort: Sort::UpdatedAsc,
            skip: 0,
            take: limit,
        })
        .await?;
    let second = |r: &Value| updated_at(r).map(second_of);
    if rows.len() < limit {
        let newest = rows.iter().filter_map(second).max();
        let cursor = match (newest, from) {
            (Some(n), Some(f)) if n > f => Some(Cursor::Before(n)),
            (Some(n), None) => Some(Cursor::Before(n)),
            _ => None,
        };
        return Ok((rows, cursor, false));
    }
    let (Some(first), Some(last)) = (
        rows.iter().filter_map(second).min(),
        rows.iter().filter_map(second).max(),
    ) else {
        // No row says when it changed (never seen from Vendure): hand them over, stay put.
        return Ok((rows, None, false));
    };
    if last > first {
        // A row without a timestamp stays with the page: dropping it would lose it.
        let rows = rows
            .into_iter()
            .filter(|r| second(r).is_none_or(|s| s < last))
            .collect();
        return Ok((rows, Some(Cursor::Before(last)), true));
    }
    within(src, first, None, lim).await
}

/// The rows stamped second `at`, in id order, after position `n` (anchor `last`).
async fn within<S: ListSource>(
    src: &S,
    at: DateTime<Utc>,
    mut position: Option<(usize, String)>,
    lim: Limits,
) -> Result<Changed, DeliveryError> {
    let until = ts_plus(at, SECOND);
    loop {
        // The anchor is read again as the first row, within the query cap (a cap of 1 row
        // leaves no room for it: positions are then trusted as they are).
        let (skip, take, anchored) = match &position {
            Some((n, _)) if lim.cap >= 2 => (n - 1, (lim.page + 1).min(lim.cap), true),
            Some((n, _)) => (*n, lim.page, false),
            None => (0, lim.page, false),
        };
        let mut rows = src
            .list(&Window {
                from: Some(at),
                until: Some(until),
                sort: Sort::IdAsc,
                skip,
                take,
            })
            .await?;
        let full = rows.len() >= take;
        let n = match &position {
            None => 0,
            Some((n, last)) => {
                if anchored {
                    if rows.first().and_then(id_of) != Some(last.as_str()) {
                        // Rows before the anchor left this second: read it again from the first.
                        position = None;
                        continue;
                    }
                    rows.remove(0);
                }
                *n
            }
        };
        if full && !rows.is_empty() {
            let last = rows.last().and_then(id_of).unwrap_or_default().to_string();
            let n = n + rows.len();
            return Ok((rows, Some(Cursor::Within { at, n, last }), true));
        }
        // This second is exhausted. Past (a newer row exists) → on to the next; else it may
        // still be the current second: re-read it next time.
        let newer = src
            .list(&Window {
                from: Some(until),
                until: None,
                sort: Sort::UpdatedAsc,
                skip: 0,
                take: 1,
            })
            .await?;
        return Ok(if newer.is_empty() {
            (rows, Some(Cursor::Before(at)), false)
        } else {
            (rows, Some(Cursor::Before(until)), true)
        });
    }
}

#[cfg(test)]
mod tests {
    //! The cursor logic against an in-memory Vendure: rows `(second, id)`, `updatedAt` order
    //! with ties in an order Vendure does not define (here: scrambled), `skip`/`take`, and a
    //! `take` cap like `adminListQueryLimit`.
    use super::*;
    use serde_json::json;
    use std::cell::RefCell;
    use std::collections::BTreeMap;

    const T0: i64 = 1_796_000_000;

    /// Changes the fake's rows (id → second) before a query.
    type Mutator = dyn FnMut(&mut BTreeMap<u64, i64>);

    struct Fake {
        /// id → second.
        rows: RefCell<BTreeMap<u64, i64>>,
        max_take: usize,
        /// Called before every list query (tests move rows there).
        before_list: RefCell<Box<Mutator>>,
    }

    fn ts(second: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(second, 0).unwrap()
    }

    impl Fake {
        fn new(rows: impl IntoIterator<Item = (u64, i64)>, max_take: usize) -> Fake {
            Fake {
                rows: RefCell::new(rows.into_iter().collect()),
                max_take,
                before_list: RefCell::new(Box::new(|_| {})),
            }
        }
    }

    impl ListSource for Fake {
        async fn list(&self, w: &Window) -> Result<Vec<Value>, DeliveryError> {
            assert!(w.take <= self.max_take, "take {} over the cap", w.take);
            (self.before_list.borrow_mut())(&mut self.rows.borrow_mut());
            let mut rows: Vec<(u64, i64)> = self
                .rows
                .borrow()
                .iter()
                .map(|(id, s)| (*id, *s))
                .filter(|(_, s)| w.from.is_none_or(|f| ts(*s) >= f))
                .filter(|(_, s)| w.until.is_none_or(|u| ts(*s) < u))
                .collect();
            // Ties in no particular order: scrambled by a hash of the id.
            let scramble = |id: u64| id.wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(17);
            match w.sort {
                Sort::UpdatedAsc => rows.sort_by_key(|(id, s)| (*s, scramble(*id))),
                Sort::UpdatedDesc => rows.sort_by_key(|(id, s)| (-*s, scramble(*id))),
                Sort::IdAsc => rows.sort_by_key(|(id, _)| *id),
            }
            Ok(rows
                .into_iter()
                .skip(w.skip)
                .take(w.take)
                .map(|(id, s)| json!({"id": id.to_string(), "updatedAt": format_ts(ts(s))}))
                .collect())
        }
    }

    fn block<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    /// One poll cycle from `cursor` (pages until `more` is false, at most 10 000): the ids read
    /// in order, and the cursor it ends at.
    fn cycle(src: &Fake, mut cursor: Option<String>, limit: usize) -> (Vec<u64>, Option<String>) {
        let mut seen = Vec::new();
        for _ in 0..10_000 {
            let (rows, next, more) = block(changed(
                src,
                cursor.as_deref(),
                Duration::ZERO,
                Limits {
                    page: limit,
                    cap: src.max_take,
                },
            ))
            .unwrap();
            assert!(
                rows.len() <= limit,
                "a page of {} rows, limit {limit}",
                rows.len()
            );
            seen.extend(
                rows.iter()
                    .map(|r| id_of(r).unwrap().parse::<u64>().unwrap()),
            );
            if let Some(c) = next {
                let c = c.format();
                let at = |c: &str| match Cursor::parse(c).unwrap() {
                    Cursor::Before(t) | Cursor::Within { at: t, .. } => t,
                };
                if let Some(old) = &cursor {
                    assert!(at(&c) >= at(old), "the cursor went back: {old} → {c}");
                }
                cursor = Some(c);
            }
            if !more {
                return (seen, cursor);
            }
        }
        panic!("the cycle never ended");
    }

    /// Rows: `counts[i]` rows stamped second `T0 + i`, ids interleaved across seconds so that
    /// id order and time order disagree.
    fn rows(counts: &[usize]) -> Vec<(u64, i64)> {
        let mut out = Vec::new();
        let mut id = 1u64;
        let most = counts.iter().copied().max().unwrap_or(0);
        for k in 0..most {
            for (i, c) in counts.iter().enumerate() {
                if k < *c {
                    out.push((id, T0 + i as i64));
                    id += 1;
                }
            }
        }
        out
    }

    #[test]
    fn every_row_is_read_exactly_once_however_many_share_one_second() {
        for counts in [
            vec![1, 1, 1],
            vec![12],
            vec![0, 7, 0, 1, 30, 2],
            vec![5, 5, 5, 5],
            vec![1, 1000, 1],
            vec![3, 0, 0, 0, 999, 1000, 1001],
        ] {
            for (limit, cap) in [
                (1, 1),
                (1, 2),
                (2, 2),
                (3, 4),
                (5, 5),
                (7, 1000),
                (1000, 1000),
            ] {
                let all = rows(&counts);
                if all.len() > 100 && limit < 5 {
                    continue; // thousands of one-row pages: slow, and nothing new
                }
                let fake = Fake::new(all.clone(), cap);
                let (mut seen, end) = cycle(&fake, None, limit);
                let n = seen.len();
                seen.sort_unstable();
                seen.dedup();
                assert_eq!(seen.len(), n, "{counts:?}/{limit}/{cap}: a row read twice");
                let mut want: Vec<u64> = all.iter().map(|r| r.0).collect();
                want.sort_unstable();
                assert_eq!(seen, want, "{counts:?}/{limit}/{cap}: every row");
                // The next cycle re-reads only the newest second, and nothing else.
                let newest = all.iter().map(|r| r.1).max().unwrap();
                let (again, _) = cycle(&fake, end, limit);
                let expect = all.iter().filter(|r| r.1 == newest).count();
                assert_eq!(again.len(), expect, "{counts:?}/{limit}/{cap}");
            }
        }
    }

    #[test]
    fn a_second_with_more_rows_than_one_query_may_take_is_read_whole() {
        // The bug this guards: 1,001 rows in one second, at most 1,000 per query. The reader
        // before took one query of that second and moved on a second: one row was never read.
        let fake = Fake::new(rows(&[1001, 1]), 1000);
        let (seen, _) = cycle(&fake, None, 1000);
        assert_eq!(seen.len(), 1002);
    }

    #[test]
    fn rows_leaving_a_second_mid_paging_are_never_skipped() {
        // 20 rows in one past second; after the first page, rows read on it and not yet read
        // are updated (moved to a later second) between pages: the positions shift under the
        // cursor, which must notice and read the second again rather than skip.
        for limit in [2, 3, 5] {
            let all = rows(&[20, 1]);
            let fake = Fake::new(all.clone(), limit + 1);
            let calls = std::rc::Rc::new(std::cell::Cell::new(0));
            let c = calls.clone();
            *fake.before_list.borrow_mut() = Box::new(move |rows: &mut BTreeMap<u64, i64>| {
                c.set(c.get() + 1);
                // Every third query, the lowest id still in the first second moves on.
                if c.get() % 3 == 0 {
                    if let Some((id, _)) =
                        rows.iter().find(|(_, s)| **s == T0).map(|(i, s)| (*i, *s))
                    {
                        rows.insert(id, T0 + 5);
                    }
                }
            });
            let (seen, _) = cycle(&fake, None, limit);
            let seen: std::collections::BTreeSet<u64> = seen.into_iter().collect();
            let now = fake.rows.borrow().clone();
            for id in now.keys() {
                assert!(
                    seen.contains(id),
                    "limit {limit}: row {id} never read ({now:?})"
                );
            }
            assert!(calls.get() > 3, "rows did move");
        }
    }

    #[test]
    fn overlap_rereads_behind_the_cursor_and_never_moves_it_back() {
        let all = rows(&[50, 50, 50]);
        let fake = Fake::new(all, 10);
        let cursor = Cursor::Before(ts(T0 + 2)).format();
        let (rows, next, more) = block(changed(
            &fake,
            Some(&cursor),
            Duration::from_secs(5),
            Limits { page: 5, cap: 10 },
        ))
        .unwrap();
        // 5 re-read rows of the window before the cursor, then 5 of the cursor's second.
        assert_eq!(rows.len(), 10);
        assert!(more);
        let Some(Cursor::Within { at, n: 5, .. }) = next else {
            panic!("the page from the cursor moved it on");
        };
        assert_eq!(at, ts(T0 + 2));
        // Re-read rows are older than the cursor, newest first of the window.
        assert!(rows[..5]
            .iter()
            .all(|r| updated_at(r).unwrap() == ts(T0 + 1)));
    }

    #[test]
    fn cursors_round_trip_and_old_ones_still_parse() {
        let old = "2026-11-25T19:56:49.000Z";
        assert_eq!(Cursor::parse(old).unwrap().format(), old);
        let c = Cursor::Within {
            at: parse_ts(old).unwrap(),
            n: 7,
            last: "42".into(),
        };
        assert_eq!(Cursor::parse(&c.format()).unwrap(), c);
        for bad in [
            "",
            "yesterday",
            "2026-11-25T19:56:49.000Z#0#1",
            "2026-11-25T19:56:49.000Z#x#1",
            "2026-11-25T19:56:49.000Z#3",
            "2026-11-25T19:56:49.000Z#3#",
        ] {
            assert!(Cursor::parse(bad).is_err(), "{bad}");
        }
    }
}
