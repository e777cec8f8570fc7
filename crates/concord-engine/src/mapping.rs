//! jq mappings and filters, compiled once at config load with [jaq](https://docs.rs/jaq-core).
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
//! Values cross between `serde_json` and jaq without loss for integers (every `i64`/`u64` stays an
//! integer, no `f64` rounding) and with object key order preserved.
//!
//! Two jq natives are deliberately not available: `env` (a mapping could copy the hub's
//! secrets into a payload sent to a third party) and the effect of `halt` (jaq's helper would
//! exit the whole process; here `halt` is reported as an error of the mapping).
//!
//! Thread safety: the compiled program holds only terms (strings, integers) and function
//! pointers, so it is `Send + Sync` without jaq-json's `sync` feature; jaq values (which use
//! `Rc`) are created and dropped inside one [`Mapping::apply`] call and never leave it.

use jaq_core::data::JustLut;
use jaq_core::load::{Arena, File, Loader};
use jaq_core::{Compiler, Ctx, Vars};
use jaq_json::{Num, Val};
use serde_json::Value;
use std::fmt;
use std::sync::Arc;

type Data = JustLut<Val>;
type Filter = jaq_core::Filter<Data>;

/// Stop counting outputs after this many (the program may be an infinite stream).
const MAX_COUNTED_OUTPUTS: usize = 100;

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
}

/// A compiled jq program. Cheap to clone (shared), `Send + Sync`.
#[derive(Clone)]
pub struct Mapping {
    inner: Arc<Inner>,
}

struct Inner {
    source: String,
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

impl Mapping {
    /// Compile a jq program. Errors name what is wrong and where (line, column).
    pub fn compile(source: &str) -> Result<Mapping, MappingError> {
        let defs = jaq_core::defs()
            .chain(jaq_std::defs())
            .chain(jaq_json::defs());
        // `env` would expose the process environment (secrets) to mappings.
        let funs = jaq_core::funs::<Data>()
            .chain(jaq_std::funs::<Data>())
            .chain(jaq_json::funs::<Data>())
            .filter(|(name, _, _)| *name != "env");
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
                filter,
            }),
        })
    }

    /// The program's text, as written in the config.
    pub fn source(&self) -> &str {
        &self.inner.source
    }

    /// Run the program on `input`; it must produce exactly one output.
    pub fn apply(&self, input: &Value, vars: &MapVars) -> Result<Value, MappingError> {
        let out = self.run_one(input, vars)?;
        to_json(&out)
    }

    /// Run a filter on `input`; it must produce exactly one boolean.
    pub fn test(&self, input: &Value, vars: &MapVars) -> Result<bool, MappingError> {
        match self.run_one(input, vars)? {
            Val::Bool(b) => Ok(b),
            other => Err(MappingError::NotBoolean(describe(&other))),
        }
    }

    fn run_one(&self, input: &Value, vars: &MapVars) -> Result<Val, MappingError> {
        let filter = &self.inner.filter;
        // Same order as `GLOBALS`.
        let globals =
            [&vars.dest, &vars.source, &vars.kind].map(|s| Val::utf8_str(s.clone().into_bytes()));
        let ctx = Ctx::<Data>::new(&filter.lut, Vars::new(globals));
        let mut outputs = filter.id.run((ctx, from_json(input)));
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

fn describe(v: &Val) -> String {
    let kind = match v {
        Val::Null => "null",
        Val::Bool(_) => "boolean",
        Val::Num(_) => "number",
        Val::BStr(_) | Val::TStr(_) => "string",
        Val::Arr(_) => "array",
        Val::Obj(_) => "object",
    };
    let mut text = v.to_string();
    if text.chars().count() > 80 {
        text = text.chars().take(80).collect::<String>() + "…";
    }
    format!("{kind} {text}")
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

// ---- serde_json ⇄ jaq values ---------------------------------------------------------------

fn from_json(v: &Value) -> Val {
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

fn to_json(v: &Val) -> Result<Value, MappingError> {
    Ok(match v {
        Val::Null => Value::Null,
        Val::Bool(b) => Value::Bool(*b),
        Val::Num(n) => num_to_json(n),
        Val::TStr(b) | Val::BStr(b) => Value::String(String::from_utf8_lossy(b).into_owned()),
        Val::Arr(xs) => Value::Array(xs.iter().map(to_json).collect::<Result<_, _>>()?),
        Val::Obj(m) => {
            let mut out = serde_json::Map::with_capacity(m.len());
            for (k, v) in m.iter() {
                let key = match k {
                    Val::TStr(b) | Val::BStr(b) => String::from_utf8_lossy(b).into_owned(),
                    other => {
                        return Err(MappingError::NotJson(format!(
                            "object key {} is not a string",
                            describe(other)
                        )))
                    }
                };
                out.insert(key, to_json(v)?);
            }
            Value::Object(out)
        }
    })
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn vars(dest: &str) -> MapVars {
        MapVars {
            dest: dest.into(),
            source: "erp".into(),
            kind: "stock".into(),
        }
    }

    fn run(program: &str, input: Value) -> Result<Value, MappingError> {
        Mapping::compile(program)?.apply(&input, &vars("web1"))
    }

    #[test]
    fn mapping_is_send_sync_clone() {
        fn assert_send_sync<T: Send + Sync + Clone + 'static>() {}
        assert_send_sync::<Mapping>();
    }

    #[test]
    fn renames_fields() {
        let out = run(
            "{sku: .code, title: .name}",
            json!({"code": "A-1", "name": "Apple", "x": 1}),
        );
        assert_eq!(out, Ok(json!({"sku": "A-1", "title": "Apple"})));
    }

    #[test]
    fn computes_available() {
        let out = run(
            "{sku, available: (.on_hand - .committed)}",
            json!({"sku": "A", "on_hand": 10, "committed": 3, "location": "WH1"}),
        );
        assert_eq!(out, Ok(json!({"sku": "A", "available": 7})));
        // Integers stay integers (not 7.0).
        assert!(out.unwrap()["available"].is_i64());
    }

    #[test]
    fn sees_globals() {
        let m = Mapping::compile(r#"{to: $dest, from: $source, kind: $kind}"#).unwrap();
        let out = m.apply(&json!(null), &vars("web2")).unwrap();
        assert_eq!(out, json!({"to": "web2", "from": "erp", "kind": "stock"}));
        let m = Mapping::compile(r#"if $dest == "web1" then .a else .b end"#).unwrap();
        assert_eq!(
            m.apply(&json!({"a": 1, "b": 2}), &vars("web1")),
            Ok(json!(1))
        );
        assert_eq!(
            m.apply(&json!({"a": 1, "b": 2}), &vars("web2")),
            Ok(json!(2))
        );
    }

    #[test]
    fn std_library_is_available() {
        let out = run(
            r#"{skus: [.lines[] | .sku] | map(ascii_downcase) | sort, n: (.lines | length), j: tojson}"#,
            json!({"lines": [{"sku": "B"}, {"sku": "A"}]}),
        );
        let out = out.unwrap();
        assert_eq!(out["skus"], json!(["a", "b"]));
        assert_eq!(out["n"], json!(2));
    }

    #[test]
    fn integers_round_trip_exactly() {
        for n in [
            0i64,
            -1,
            (1 << 53) + 1,
            i64::MAX,
            i64::MIN,
            9_007_199_254_740_993,
        ] {
            assert_eq!(run(".", json!(n)), Ok(json!(n)), "{n}");
            assert_eq!(run(".x", json!({"x": n})), Ok(json!(n)), "{n}");
        }
        assert_eq!(run(".", json!(u64::MAX)), Ok(json!(u64::MAX)));
        assert_eq!(
            run(". + 1", json!((1i64 << 53) + 1)),
            Ok(json!((1i64 << 53) + 2))
        );
        assert_eq!(run(".", json!(19.99)), Ok(json!(19.99)));
        assert_eq!(run("1.50", json!(null)), Ok(json!(1.5)));
        assert_eq!(run("100000000000000000000", json!(null)), Ok(json!(1e20)));
    }

    #[test]
    fn objects_round_trip_with_key_order() {
        let input = json!({"z": 1, "a": {"y": [1, "x", null, true], "b": false}, "m": 2.5});
        assert_eq!(run(".", input.clone()), Ok(input));
    }

    #[test]
    fn zero_outputs_is_an_error() {
        let err = run("empty", json!(1)).unwrap_err();
        assert_eq!(err, MappingError::NoOutput);
        assert!(err.to_string().contains("produced no output"));
        assert_eq!(run("select(. > 5)", json!(1)), Err(MappingError::NoOutput));
    }

    #[test]
    fn several_outputs_is_an_error() {
        let err = run(".[]", json!([1, 2, 3])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "jq program produced 3 outputs, expected one"
        );
        let err = run("range(1000000)", json!(null)).unwrap_err();
        assert!(err.to_string().contains("at least 100 outputs"), "{err}");
    }

    #[test]
    fn compile_errors_say_what_and_where() {
        let err = Mapping::compile("{sku, available: (.on_hand - }").unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, MappingError::Compile(_)));
        assert!(msg.contains("expected"), "{msg}");
        assert!(msg.contains("line 1, column"), "{msg}");

        let err = Mapping::compile(".a |\n  frobnicate(.b)")
            .unwrap_err()
            .to_string();
        assert!(err.contains("undefined filter `frobnicate/1`"), "{err}");
        assert!(err.contains("line 2, column 3"), "{err}");

        let err = Mapping::compile("$nope").unwrap_err().to_string();
        assert!(err.contains("undefined variable"), "{err}");

        let err = Mapping::compile("\"abc").unwrap_err().to_string();
        assert!(err.contains("closing quote"), "{err}");
    }

    #[test]
    fn env_is_not_available() {
        let err = Mapping::compile("env.HOME").unwrap_err().to_string();
        assert!(err.contains("undefined filter `env/0`"), "{err}");
    }

    #[test]
    fn runtime_errors_carry_the_message() {
        let err = run(r#"error("no sku")"#, json!({})).unwrap_err();
        assert_eq!(err, MappingError::Runtime("no sku".into()));
        let err = run(".a - .b", json!({"a": "x", "b": 1})).unwrap_err();
        assert!(matches!(err, MappingError::Runtime(_)), "{err}");
        // An error after a first output is still an error.
        assert!(
            matches!(run(r#"1, error("late")"#, json!(null)), Err(MappingError::Runtime(m)) if m == "late")
        );
    }

    #[test]
    fn halt_is_an_error_not_an_exit() {
        let err = run("halt", json!(null)).unwrap_err();
        assert!(err.to_string().contains("halt(0)"), "{err}");
        let err = run(r#""bye" | halt_error(3)"#, json!(null)).unwrap_err();
        assert!(err.to_string().contains("halt(3)"), "{err}");
    }

    #[test]
    fn filters_must_be_boolean() {
        let f = Mapping::compile(".on_hand >= 0").unwrap();
        assert_eq!(f.test(&json!({"on_hand": 3}), &vars("")), Ok(true));
        assert_eq!(f.test(&json!({"on_hand": -1}), &vars("")), Ok(false));
        let f = Mapping::compile(".on_hand").unwrap();
        let err = f.test(&json!({"on_hand": 3}), &vars("")).unwrap_err();
        assert_eq!(err, MappingError::NotBoolean("number 3".into()));
        assert!(err.to_string().contains("must produce a boolean"));
    }

    #[test]
    fn non_string_keys_are_rejected() {
        let err = run("{(1): 2}", json!(null));
        assert!(matches!(
            err,
            Err(MappingError::NotJson(_)) | Err(MappingError::Runtime(_))
        ));
    }

    #[test]
    fn clones_share_and_work_across_threads() {
        let m = Mapping::compile("{sku, available: (.on_hand - .committed)}").unwrap();
        let handles: Vec<_> = (0..4)
            .map(|i| {
                let m = m.clone();
                std::thread::spawn(move || {
                    m.apply(
                        &json!({"sku": "A", "on_hand": 10 + i, "committed": 1}),
                        &vars("w"),
                    )
                })
            })
            .collect();
        for (i, h) in handles.into_iter().enumerate() {
            let out = h.join().unwrap().unwrap();
            assert_eq!(out["available"], json!(9 + i as i64));
        }
        assert_eq!(m.source(), "{sku, available: (.on_hand - .committed)}");
    }
}
