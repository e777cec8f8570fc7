//! jq programs of the `http` connector's configuration, on top of the engine's [`Mapping`]
//! (one jaq setup for the whole hub: same standard library, same refusal of `env` and `halt`).
//!
//! A program is written against one input (`.`, e.g. the record or the response body) and a
//! fixed set of named variables for its place in the configuration (`$key`, `$refs`, `$found`,
//! `$cursor`, …). The engine's `Mapping` binds only `$dest`, `$source` and `$kind`, so the other
//! variables are bound by a prelude compiled in front of the user's program:
//! `. as $__c | $__c.v.key as $key | … | $__c.i | (PROGRAM)`. A program that names a variable
//! its place does not offer fails to compile at load, with the field path.
//!
//! Every run of a configured program goes through [`Program::run`] / [`Program::test`], which
//! await the engine's jq threads: like every mapping, a configured program never runs on an
//! async worker and is stopped at its budget (the default [`Budget`] of `Mapping::compile`).
//!
//! [`Budget`]: concord_engine::mapping::Budget
//!
//! Must never: run a program that was not compiled at load, or bind the hub's secrets.

use concord_engine::mapping::{MapVars, Mapping};
use serde_json::{Map, Value};
use std::fmt;

/// A compiled jq program with its named variables.
#[derive(Clone)]
pub struct Program {
    mapping: Mapping,
    source: String,
    names: &'static [&'static str],
}

impl fmt::Debug for Program {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Program").field(&self.source).finish()
    }
}

impl PartialEq for Program {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source && self.names == other.names
    }
}

/// Variables bound for one run, by name (without `$`). Names not given are bound to `null`.
#[derive(Debug, Default, Clone)]
pub struct Vars(Map<String, Value>);

impl Vars {
    pub fn new() -> Vars {
        Vars(Map::new())
    }

    pub fn with(mut self, name: &str, value: Value) -> Vars {
        self.0.insert(name.to_string(), value);
        self
    }

    pub fn set(&mut self, name: &str, value: Value) {
        self.0.insert(name.to_string(), value);
    }

    pub fn get(&self, name: &str) -> Option<&Value> {
        self.0.get(name)
    }
}

/// Is `name` usable as a jq variable name (`[A-Za-z_][A-Za-z0-9_]*`)?
pub fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

impl Program {
    /// Compile `source` with the variables `names` bound. Errors say where in the program
    /// (line and column of the program as written).
    pub fn compile(source: &str, names: &'static [&'static str]) -> Result<Program, String> {
        Program::compile_with(source, names, &[])
    }

    /// Like [`Program::compile`], with extra variable names known only at load (the names of
    /// a write's steps). They must be identifiers (checked by the caller).
    pub fn compile_with(
        source: &str,
        names: &'static [&'static str],
        extra: &[String],
    ) -> Result<Program, String> {
        if source.trim().is_empty() {
            return Err("is an empty jq program".into());
        }
        let mut prelude = String::from(". as $__c | ");
        for n in names
            .iter()
            .copied()
            .chain(extra.iter().map(String::as_str))
        {
            prelude.push_str(&format!("$__c.v.{n} as ${n} | "));
        }
        // The program starts on the second line, so positions shift by exactly one line. The
        // closing parenthesis is on its own line: a trailing `# comment` cannot swallow it.
        prelude.push_str("$__c.i | (\n");
        let full = format!("{prelude}{source}\n)");
        let mapping = Mapping::compile(&full).map_err(|e| shift_lines(&e.to_string()))?;
        Ok(Program {
            mapping,
            source: source.to_string(),
            names,
        })
    }

    /// The program as written in the configuration.
    pub fn source(&self) -> &str {
        &self.source
    }

    fn context(&self, input: &Value, vars: &Vars) -> Value {
        let mut c = Map::with_capacity(2);
        c.insert("i".into(), input.clone());
        c.insert("v".into(), Value::Object(vars.0.clone()));
        Value::Object(c)
    }

    /// Run the program: exactly one output.
    pub async fn run(&self, input: &Value, vars: &Vars, env: &MapVars) -> Result<Value, String> {
        self.mapping
            .apply(&self.context(input, vars), env)
            .await
            .map_err(|e| e.to_string())
    }

    /// Run a test: exactly one boolean.
    pub async fn test(&self, input: &Value, vars: &Vars, env: &MapVars) -> Result<bool, String> {
        self.mapping
            .test(&self.context(input, vars), env)
            .await
            .map_err(|e| e.to_string())
    }
}

/// Error positions count the prelude's line; the user's program starts on line 2.
fn shift_lines(msg: &str) -> String {
    let mut out = String::with_capacity(msg.len());
    let mut rest = msg;
    while let Some(at) = rest.find("at line ") {
        let (head, tail) = rest.split_at(at + "at line ".len());
        out.push_str(head);
        let digits: String = tail.chars().take_while(char::is_ascii_digit).collect();
        match digits.parse::<usize>() {
            Ok(n) => out.push_str(&n.saturating_sub(1).max(1).to_string()),
            Err(_) => out.push_str(&digits),
        }
        rest = &tail[digits.len()..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[tokio::test]
    async fn variables_are_bound_and_unknown_ones_refused_at_compile() {
        let p = Program::compile(
            "{sku: .sku, key: $key, n: ($refs | length)}",
            &["key", "refs"],
        )
        .unwrap();
        let out = p
            .run(
                &json!({"sku": "A"}),
                &Vars::new()
                    .with("key", json!("K"))
                    .with("refs", json!({"a": 1})),
                &MapVars::default(),
            )
            .await
            .unwrap();
        assert_eq!(out, json!({"sku": "A", "key": "K", "n": 1}));
        // A name not given at run time is null.
        assert_eq!(
            p.run(&json!({}), &Vars::new(), &MapVars::default())
                .await
                .unwrap(),
            json!({"sku": null, "key": null, "n": 0})
        );
        let e = Program::compile(".sku | $nope", &["key"]).unwrap_err();
        assert!(e.contains("nope"), "{e}");
        assert!(Program::compile("  ", &[]).is_err());
    }

    #[tokio::test]
    async fn error_positions_are_those_of_the_program_as_written() {
        let e = Program::compile(".a |\n  .b | ]", &[]).unwrap_err();
        assert!(e.contains("line 2"), "{e}");
        // A trailing comment does not eat the closing parenthesis.
        let p = Program::compile(".a # the a", &[]).unwrap();
        assert_eq!(
            p.run(&json!({"a": 1}), &Vars::new(), &MapVars::default())
                .await
                .unwrap(),
            json!(1)
        );
    }

    #[test]
    fn identifiers() {
        assert!(is_identifier("item"));
        assert!(is_identifier("_x1"));
        assert!(!is_identifier("1x"));
        assert!(!is_identifier("a-b"));
        assert!(!is_identifier(""));
    }
}
