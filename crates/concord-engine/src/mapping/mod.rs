//! jq mappings and filters, compiled once at config load with [jaq](https://docs.rs/jaq-core),
//! and run off the async workers under a budget.
//!
//! A [`Mapping`] is a jq program with the jq standard library (jaq-core, jaq-std and jaq-json
//! definitions and natives) and three global variables:
//!
//! | variable  | value                                              |
//! |-----------|----------------------------------------------------|
//! | `$dest`   | the destination endpoint (`""` for inbound/filter)  |
//! | `$source` | the endpoint the change came from                  |
//! | `$kind`   | the kind (`"stock"`, `"order"`, …)                  |
//!
//! A mapping must produce exactly one output; a filter ([`Mapping::test`]) exactly one boolean.
//!
//! **Bounded work.** A program written in the config runs on data from outside, so it must
//! never stall or crash the hub, whatever it is fed:
//! - every evaluation runs on a jq thread ([`pool`]), never on an async worker; the caller
//!   awaits it (a flow's filter and mapping go together, in one trip: [`filter_then_map`]),
//!   and a caller that stops waiting stops the evaluation;
//! - it is metered ([`budget`]): at most `[engine] jq_steps` steps, `jq_timeout` of wall-clock
//!   time and [`pool::EVAL_STACK`] of native stack (deep recursion stops cleanly instead of
//!   overflowing and aborting the process); over budget it stops with
//!   [`MappingError::Budget`], naming the program (its config path) and the limit. jq's `try`
//!   cannot catch the budget;
//! - its input is refused before evaluation when larger than `jq_max_bytes` of JSON or nested
//!   deeper than [`MAX_DEPTH`] levels, and so is its output (which the store must be able to
//!   read back);
//! - `range` and `fromjson` are replaced by metered, depth-checked versions ([`natives`]).
//!
//! What the meter cannot see: the time and memory of a single native call between two steps.
//! With bounded inputs that is bounded too, except for programs that build pathological
//! values themselves (a string repeated a billion times with `"x" * n`, a value nested or
//! shared hundreds of thousands of levels deep and then printed): the budget does not defend
//! against a config written to harm the hub, only against programs that loop, recurse or grow
//! with their input.
//!
//! Values cross between `serde_json` and jaq without loss for integers (every `i64`/`u64` stays
//! an integer, no `f64` rounding) and with object key order preserved ([`json`]).
//!
//! Three jq features are deliberately not available: `env` (a mapping could copy the hub's
//! secrets into a payload sent to a third party), `input`/`inputs` (a mapping sees one record),
//! and the effect of `halt` (jaq's helper would exit the whole process; here `halt` is reported
//! as an error of the mapping).
//!
//! Thread safety: the compiled program holds only terms (strings, integers) and function
//! pointers, so it is `Send + Sync` without jaq-json's `sync` feature; jaq values (which use
//! `Rc`) are created and dropped inside one evaluation on one jq thread and never leave it.

mod budget;
mod json;
mod natives;
mod pool;
#[cfg(test)]
mod tests;

pub use budget::{Budget, Limit};
pub use pool::Lane;

use budget::{Metered, MeteredLut, Stopped};
use jaq_core::load::{Arena, File, Loader};
use jaq_core::{Compiler, Ctx, Vars};
use jaq_json::Val;
use serde_json::Value;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio::sync::oneshot;

type Filter = jaq_core::Filter<Metered>;

/// Stop counting outputs after this many (the program may be an infinite stream).
const MAX_COUNTED_OUTPUTS: usize = 100;

/// Deepest nesting of a mapping's input and output, and of what `fromjson` parses: serde_json's
/// own parsing limit, so everything a mapping emits can be read back from the store.
pub const MAX_DEPTH: usize = 128;

/// The name of a program compiled without one (tests, tools).
const UNNAMED: &str = "jq program";

/// The global variables a mapping sees.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MapVars {
    /// Destination endpoint (`$dest`).
    pub dest: String,
    /// Source endpoint (`$source`).
    pub source: String,
    /// Kind name (`$kind`).
    pub kind: String,
}

/// A mapping failed to compile or to run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MappingError {
    /// The program does not parse or refers to something undefined. Carries every problem with
    /// its line and column in the program.
    #[error("jq compile error: {0}")]
    Compile(String),
    /// The program raised an error at run time (`error(...)`, a type error, `halt`).
    #[error("jq error: {0}")]
    Runtime(String),
    /// The program produced no output (e.g. `empty`, or `select` dropped the input).
    #[error("jq program produced no output")]
    NoOutput,
    /// The program produced several outputs (`.[]` on a list); the count is capped at 100.
    #[error("jq program produced {0} outputs, expected one")]
    ManyOutputs(String),
    /// A filter produced something other than `true` or `false`.
    #[error("jq filter must produce a boolean, got {0}")]
    NotBoolean(String),
    /// The output cannot be represented as JSON (e.g. an object key that is not a string).
    #[error("jq output is not JSON: {0}")]
    NotJson(String),
    /// The evaluation budget stopped the program, or refused its input or output. `mapping`
    /// is the program's config path (`flows[2].map_out.web1`).
    #[error("jq program `{mapping}` {limit}")]
    Budget { mapping: String, limit: Limit },
    /// No jq thread could run the program (the process could not start one).
    #[error("jq program `{mapping}` could not run: {reason}")]
    Unavailable { mapping: String, reason: String },
}

/// A compiled jq program. Cheap to clone (shared), `Send + Sync`.
#[derive(Clone)]
pub struct Mapping {
    inner: Arc<Inner>,
}

struct Inner {
    source: String,
    name: String,
    budget: Budget,
    lane: Lane,
    filter: Filter,
}

impl fmt::Debug for Mapping {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Mapping").field(&self.inner.source).finish()
    }
}

/// Two mappings are equal when their programs' texts are equal.
impl PartialEq for Mapping {
    fn eq(&self, other: &Self) -> bool {
        self.inner.source == other.inner.source
    }
}

impl Eq for Mapping {}

const GLOBALS: [&str; 3] = ["$dest", "$source", "$kind"];

/// Held by the future awaiting an evaluation; marks it abandoned when dropped.
struct Waiting(Arc<AtomicBool>);

impl Drop for Waiting {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// What an evaluation must produce.
#[derive(Clone, Copy)]
enum Want {
    Value,
    Bool,
}

enum Out {
    Value(Value),
    Bool(bool),
}

impl Mapping {
    /// Compile a jq program with the default [`Budget`], on the outbound [`Lane`]. Errors name
    /// what is wrong and where (line, column).
    pub fn compile(source: &str) -> Result<Mapping, MappingError> {
        Mapping::compile_as(UNNAMED, source, Budget::default(), Lane::Outbound)
    }

    /// Compile a jq program named `name` (its config path, quoted by budget errors) that runs
    /// on `lane` under `budget`.
    pub fn compile_as(
        name: &str,
        source: &str,
        budget: Budget,
        lane: Lane,
    ) -> Result<Mapping, MappingError> {
        let defs = jaq_core::defs()
            .chain(jaq_std::defs())
            .chain(jaq_json::defs());
        // `env` would expose the process environment (secrets) to mappings; `range` and
        // `fromjson` are replaced by bounded versions.
        let funs = jaq_core::funs::<Metered>()
            .chain(jaq_std::funs::<Metered>())
            .chain(jaq_json::funs::<Metered>())
            .filter(|(name, args, _)| *name != "env" && !natives::replaced(name, args.len()))
            .chain(natives::funs());
        let arena = Arena::default();
        let program = File {
            code: source,
            path: (),
        };
        let modules = Loader::new(defs)
            .load(&arena, program)
            .map_err(|errs| MappingError::Compile(load_errors(source, errs)))?;
        let filter = Compiler::default()
            .with_funs(funs)
            .with_global_vars(GLOBALS)
            .compile(modules)
            .map_err(|errs| MappingError::Compile(compile_errors(source, errs)))?;
        Ok(Mapping {
            inner: Arc::new(Inner {
                source: source.to_string(),
                name: name.to_string(),
                budget,
                lane,
                filter,
            }),
        })
    }

    /// The program's text, as written in the config.
    pub fn source(&self) -> &str {
        &self.inner.source
    }

    /// The program's name: its config path (`flows[0].map_out.web1`).
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The budget every evaluation of this program runs under.
    pub fn budget(&self) -> &Budget {
        &self.inner.budget
    }

    /// Run the program on `input`; it must produce exactly one output. Runs on a jq thread
    /// under the program's budget; the caller only awaits.
    pub async fn apply(&self, input: &Value, vars: &MapVars) -> Result<Value, MappingError> {
        match self.evaluate(input, vars, Want::Value).await? {
            Out::Value(v) => Ok(v),
            Out::Bool(b) => Ok(Value::Bool(b)),
        }
    }

    /// Run a filter on `input`; it must produce exactly one boolean. Runs like
    /// [`Mapping::apply`].
    pub async fn test(&self, input: &Value, vars: &MapVars) -> Result<bool, MappingError> {
        match self.evaluate(input, vars, Want::Bool).await? {
            Out::Bool(b) => Ok(b),
            Out::Value(v) => Err(MappingError::NotBoolean(v.to_string())),
        }
    }

    async fn evaluate(
        &self,
        input: &Value,
        vars: &MapVars,
        want: Want,
    ) -> Result<Out, MappingError> {
        // Refused here, before the copy handed to the jq thread is made.
        json::check_input(input, self.inner.budget.max_bytes).map_err(|l| self.over(l))?;
        let mapping = self.clone();
        on_jq_thread(
            self.inner.lane,
            self.name(),
            input,
            vars,
            move |input, vars, abandoned| mapping.evaluate_here(input, vars, want, abandoned),
        )
        .await?
    }

    /// One evaluation on this thread (a jq thread), metered.
    fn evaluate_here(
        &self,
        input: &Value,
        vars: &MapVars,
        want: Want,
        abandoned: Arc<AtomicBool>,
    ) -> Result<Out, MappingError> {
        let run = || {
            let out = self.run_one(input, vars)?;
            match (want, out) {
                (Want::Bool, Val::Bool(b)) => Ok(Out::Bool(b)),
                (Want::Bool, other) => Err(MappingError::NotBoolean(describe(&other))),
                (Want::Value, out) => match json::to_json(&out, self.inner.budget.max_bytes) {
                    Ok(v) => Ok(Out::Value(v)),
                    Err(json::Refused::Limit(l)) => Err(self.over(l)),
                    Err(json::Refused::NotJson(m)) => Err(MappingError::NotJson(m)),
                },
            }
        };
        match budget::metered(&self.inner.budget, pool::EVAL_STACK, abandoned, run) {
            Ok(out) => out,
            Err(Stopped::Budget(limit)) => Err(self.over(limit)),
            // Nobody reads this.
            Err(Stopped::Abandoned) => Err(MappingError::Unavailable {
                mapping: self.inner.name.clone(),
                reason: "abandoned by its caller".into(),
            }),
            Err(Stopped::Panic(msg)) => Err(MappingError::Runtime(format!(
                "the jq interpreter failed: {msg}"
            ))),
        }
    }

    fn over(&self, limit: Limit) -> MappingError {
        MappingError::Budget {
            mapping: self.inner.name.clone(),
            limit,
        }
    }

    fn run_one(&self, input: &Value, vars: &MapVars) -> Result<Val, MappingError> {
        let filter = &self.inner.filter;
        // Same order as `GLOBALS`.
        let globals =
            [&vars.dest, &vars.source, &vars.kind].map(|s| Val::utf8_str(s.clone().into_bytes()));
        let ctx = Ctx::<Metered>::new(MeteredLut(&filter.lut), Vars::new(globals));
        let mut outputs = filter.id.run((ctx, json::from_json(input)));
        let first = match outputs.next() {
            None => return Err(MappingError::NoOutput),
            Some(x) => x.map_err(exn_message)?,
        };
        let mut count = 1;
        for next in outputs {
            // An error after the first output is still an error of the program.
            next.map_err(exn_message)?;
            count += 1;
            if count >= MAX_COUNTED_OUTPUTS {
                return Err(MappingError::ManyOutputs(format!(
                    "at least {MAX_COUNTED_OUTPUTS}"
                )));
            }
        }
        if count > 1 {
            return Err(MappingError::ManyOutputs(count.to_string()));
        }
        Ok(first)
    }
}

/// What a flow's filter and mapping made of one record for one destination.
#[derive(Debug, Clone, PartialEq)]
pub enum Filtered {
    /// The filter said `false`.
    Dropped,
    /// The record in the destination's shape (the record itself when there is no mapping).
    Kept(Value),
}

/// Which of a flow's two programs failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Filter,
    Mapping,
}

/// Run a flow's `filter` and then, when it keeps the record, its `mapping`, in one trip to a
/// jq thread (the trip costs about as much as a small program). Each program runs under its
/// own budget. A failure says which program failed; a record the filter drops is never
/// mapped.
pub async fn filter_then_map(
    filter: Option<&Mapping>,
    mapping: Option<&Mapping>,
    input: &Value,
    vars: &MapVars,
) -> Result<Filtered, (Stage, MappingError)> {
    let (filter, mapping) = match (filter, mapping) {
        (None, None) => return Ok(Filtered::Kept(input.clone())),
        (None, Some(m)) => {
            return m
                .apply(input, vars)
                .await
                .map(Filtered::Kept)
                .map_err(|e| (Stage::Mapping, e))
        }
        (Some(f), None) => {
            return match f.test(input, vars).await {
                Ok(true) => Ok(Filtered::Kept(input.clone())),
                Ok(false) => Ok(Filtered::Dropped),
                Err(e) => Err((Stage::Filter, e)),
            }
        }
        (Some(f), Some(m)) => (f.clone(), m.clone()),
    };
    let over = |m: &Mapping, l| m.over(l);
    json::check_input(input, filter.inner.budget.max_bytes)
        .map_err(|l| (Stage::Filter, over(&filter, l)))?;
    // A record too large for the mapping is refused only if the filter keeps it.
    let too_large = json::check_input(input, mapping.inner.budget.max_bytes).err();
    let name = filter.inner.name.clone();
    let out = on_jq_thread(
        filter.inner.lane,
        &name,
        input,
        vars,
        move |input, vars, abandoned| {
            match filter.evaluate_here(input, vars, Want::Bool, abandoned.clone()) {
                Ok(Out::Bool(true)) => {}
                Ok(Out::Bool(false)) => return Ok(Filtered::Dropped),
                Ok(Out::Value(v)) => {
                    return Err((Stage::Filter, MappingError::NotBoolean(v.to_string())))
                }
                Err(e) => return Err((Stage::Filter, e)),
            }
            if let Some(limit) = too_large {
                return Err((Stage::Mapping, mapping.over(limit)));
            }
            match mapping.evaluate_here(input, vars, Want::Value, abandoned) {
                Ok(Out::Value(v)) => Ok(Filtered::Kept(v)),
                Ok(Out::Bool(b)) => Ok(Filtered::Kept(Value::Bool(b))),
                Err(e) => Err((Stage::Mapping, e)),
            }
        },
    )
    .await;
    out.map_err(|e| (Stage::Filter, e))?
}

/// Run `job` on a thread of `lane` with its own copy of `input` and `vars`, and await its
/// result. The job is told (through the flag) when the caller stops waiting. `name` names the
/// program when no thread can run it.
async fn on_jq_thread<T: Send + 'static>(
    lane: Lane,
    name: &str,
    input: &Value,
    vars: &MapVars,
    job: impl FnOnce(&Value, &MapVars, Arc<AtomicBool>) -> T + Send + 'static,
) -> Result<T, MappingError> {
    let (tx, rx) = oneshot::channel();
    // Dropped with this future: a caller that stops waiting (shutdown, a closed request)
    // also stops the evaluation, or skips it while it is still queued.
    let waiting = Waiting(Arc::new(AtomicBool::new(false)));
    let job = {
        let input = input.clone();
        let vars = vars.clone();
        let abandoned = waiting.0.clone();
        Box::new(move || {
            if abandoned.load(Ordering::Relaxed) {
                return;
            }
            // The receiver may be gone (the caller gave up): nothing to report then.
            let _ = tx.send(job(&input, &vars, abandoned));
        })
    };
    let unavailable = |reason: String| MappingError::Unavailable {
        mapping: name.to_string(),
        reason,
    };
    pool::submit(lane, job).await.map_err(unavailable)?;
    let out = rx
        .await
        .map_err(|_| unavailable("the jq thread stopped".into()))?;
    drop(waiting);
    Ok(out)
}

/// Turn a jaq exception into our error. Not `jaq_core::unwrap_valr`: that one calls
/// `std::process::exit` when the program calls `halt`.
fn exn_message(e: jaq_core::Exn<'_, Val>) -> MappingError {
    match e.get_err() {
        // `error("no sku")` reads "no sku", not "\"no sku\"" (as jq prints it).
        Ok(err) => MappingError::Runtime(match err.into_val() {
            Val::TStr(b) | Val::BStr(b) => String::from_utf8_lossy(&b).into_owned(),
            other => other.to_string(),
        }),
        Err(other) => match other.get_halt() {
            Ok(code) => MappingError::Runtime(format!("halt({code}) is not allowed in a mapping")),
            Err(other) => MappingError::Runtime(format!("unexpected jq exception: {other:?}")),
        },
    }
}

/// What a value is, for an error: its kind and a short excerpt. Never prints a whole array or
/// object (an output can be large or deep).
fn describe(v: &Val) -> String {
    match v {
        Val::Null => "null".into(),
        Val::Bool(b) => format!("boolean {b}"),
        Val::Num(n) => format!("number {n}"),
        Val::BStr(b) | Val::TStr(b) => {
            let text = String::from_utf8_lossy(b);
            if text.chars().count() > 80 {
                format!("string {:?}…", text.chars().take(80).collect::<String>())
            } else {
                format!("string {text:?}")
            }
        }
        Val::Arr(xs) => format!("array of {} element(s)", xs.len()),
        Val::Obj(m) => format!("object of {} key(s)", m.len()),
    }
}

// ---- error positions ------------------------------------------------------------------------

/// Byte offset of `part` inside `code`, when `part` is a slice of `code`. jaq's errors carry
/// slices of the program text; slices of the built-in definitions have no position here.
fn offset_in(code: &str, part: &str) -> Option<usize> {
    let start = code.as_ptr() as usize;
    let at = part.as_ptr() as usize;
    (at >= start && at + part.len() <= start + code.len()).then(|| at - start)
}

/// " at line L, column C" (1-based, columns in characters), or "" when unknown.
fn position(code: &str, part: &str) -> String {
    let Some(offset) = offset_in(code, part) else {
        return String::new();
    };
    let before = &code[..offset];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    format!(" at line {line}, column {col}")
}

fn found(code: &str, part: &str) -> String {
    let token: String = part.chars().take(20).collect();
    if token.is_empty() || offset_in(code, part) == Some(code.len()) {
        "end of program".to_string()
    } else {
        format!("`{token}`")
    }
}

fn load_errors(code: &str, errs: jaq_core::load::Errors<&str, ()>) -> String {
    use jaq_core::load::Error;
    let mut msgs = Vec::new();
    for (_file, err) in errs {
        match err {
            Error::Io(es) => {
                for (path, e) in es {
                    msgs.push(format!("cannot load module `{path}`: {e}"));
                }
            }
            Error::Lex(es) => {
                for (expect, part) in es {
                    msgs.push(format!(
                        "expected {}, found {}{}",
                        lex_expect(&expect),
                        found(code, part),
                        position(code, part)
                    ));
                }
            }
            Error::Parse(es) => {
                for (expect, part) in es {
                    msgs.push(format!(
                        "expected {}, found {}{}",
                        expect.as_str(),
                        found(code, part),
                        position(code, part)
                    ));
                }
            }
        }
    }
    msgs.join("; ")
}

fn lex_expect(e: &jaq_core::load::lex::Expect<&str>) -> &'static str {
    use jaq_core::load::lex::Expect;
    // `Expect::as_str` panics on delimiters it does not know; name them ourselves.
    match e {
        Expect::Delim(d) if !["(", "[", "{", "\""].contains(d) => "closing delimiter",
        other => other.as_str(),
    }
}

fn compile_errors(code: &str, errs: jaq_core::compile::Errors<&str, ()>) -> String {
    let mut msgs = Vec::new();
    for (_file, es) in errs {
        for (name, undefined) in es {
            let what = match undefined {
                jaq_core::compile::Undefined::Filter(arity) => format!("filter `{name}/{arity}`"),
                other => format!("{} `{name}`", other.as_str()),
            };
            msgs.push(format!("undefined {what}{}", position(code, name)));
        }
    }
    msgs.join("; ")
}
