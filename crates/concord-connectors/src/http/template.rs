//! String templates of the `http` connector's requests: a path, a query value or a header value
//! with `{jq}` placeholders, e.g. `/admin/orders/{$id}/fulfillments` or `Bearer {$vars.token}`.
//!
//! Each placeholder is a jq program compiled at load (see [`super::jq`]) and evaluated at send
//! time; it must produce a string or a number. `{{` and `}}` are literal braces; a placeholder
//! cannot contain braces (bind a complex value to a variable instead). In a path, each
//! placeholder's value is percent-encoded as one path segment, so a value can never add a
//! segment, a query or a fragment (`../`, `?`, `#` are encoded). A query value that is exactly
//! one placeholder may also produce `null` (the parameter is left out) or an array (the
//! parameter is repeated once per element).
//!
//! Must never: put an unencoded value into a URL path.

use super::jq::{Program, Vars};
use concord_engine::mapping::MapVars;
use serde_json::Value;

#[derive(Debug, Clone, PartialEq)]
enum Part {
    Lit(String),
    Expr(Program),
}

/// A parsed template.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    parts: Vec<Part>,
    source: String,
}

/// How placeholder values are put into the text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encode {
    /// As one percent-encoded path segment.
    PathSegment,
    /// As is (query values are encoded by the URL builder; header values are checked there).
    Raw,
}

impl Template {
    /// Parse and compile a template whose placeholders may use `names` (and `extra`).
    pub fn parse(
        source: &str,
        names: &'static [&'static str],
        extra: &[String],
    ) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut lit = String::new();
        let mut chars = source.char_indices().peekable();
        while let Some((i, c)) = chars.next() {
            match c {
                '{' if chars.peek().map(|p| p.1) == Some('{') => {
                    chars.next();
                    lit.push('{');
                }
                '}' if chars.peek().map(|p| p.1) == Some('}') => {
                    chars.next();
                    lit.push('}');
                }
                '{' => {
                    let start = i + 1;
                    let mut end = None;
                    for (j, d) in chars.by_ref() {
                        match d {
                            '}' => {
                                end = Some(j);
                                break;
                            }
                            '{' => {
                                return Err(format!(
                                    "placeholder at character {} contains `{{`; bind the value to a variable instead",
                                    i + 1
                                ))
                            }
                            _ => {}
                        }
                    }
                    let end = end.ok_or_else(|| {
                        format!("placeholder at character {} is not closed with `}}`", i + 1)
                    })?;
                    let code = &source[start..end];
                    let program = Program::compile_with(code, names, extra)
                        .map_err(|e| format!("placeholder `{{{code}}}`: {e}"))?;
                    if !lit.is_empty() {
                        parts.push(Part::Lit(std::mem::take(&mut lit)));
                    }
                    parts.push(Part::Expr(program));
                }
                '}' => {
                    return Err(format!(
                        "unmatched `}}` at character {} (write `}}}}` for a literal brace)",
                        i + 1
                    ))
                }
                other => lit.push(other),
            }
        }
        if !lit.is_empty() {
            parts.push(Part::Lit(lit));
        }
        Ok(Template {
            parts,
            source: source.to_string(),
        })
    }

    /// The template as written.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Render to text.
    pub async fn render(
        &self,
        input: &Value,
        vars: &Vars,
        env: &MapVars,
        encode: Encode,
    ) -> Result<String, String> {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Lit(s) => out.push_str(s),
                Part::Expr(prog) => {
                    let v = prog
                        .run(input, vars, env)
                        .await
                        .map_err(|e| format!("`{{{}}}`: {e}", prog.source()))?;
                    let text =
                        scalar_text(&v).map_err(|e| format!("`{{{}}}` {e}", prog.source()))?;
                    match encode {
                        Encode::PathSegment => out.push_str(&encode_segment(&text)),
                        Encode::Raw => out.push_str(&text),
                    }
                }
            }
        }
        Ok(out)
    }

    /// Render a query value: a template that is exactly one placeholder may give `null` (no
    /// value: the parameter is left out) or an array (one value per element).
    pub async fn render_query(
        &self,
        input: &Value,
        vars: &Vars,
        env: &MapVars,
    ) -> Result<Vec<String>, String> {
        if let [Part::Expr(prog)] = self.parts.as_slice() {
            let v = prog
                .run(input, vars, env)
                .await
                .map_err(|e| format!("`{{{}}}`: {e}", prog.source()))?;
            return match v {
                Value::Null => Ok(Vec::new()),
                Value::Array(items) => items
                    .iter()
                    .map(|x| {
                        scalar_text(x).map_err(|e| format!("`{{{}}}` element {e}", prog.source()))
                    })
                    .collect(),
                other => Ok(vec![
                    scalar_text(&other).map_err(|e| format!("`{{{}}}` {e}", prog.source()))?
                ]),
            };
        }
        Ok(vec![self.render(input, vars, env, Encode::Raw).await?])
    }
}

/// The text of a string, number or boolean.
fn scalar_text(v: &Value) -> Result<String, String> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        Value::Null => Err("gave null, expected a string or a number".into()),
        Value::Array(_) => Err("gave an array, expected a string or a number".into()),
        Value::Object(_) => Err("gave an object, expected a string or a number".into()),
    }
}

/// Percent-encode everything but RFC 3986's unreserved characters.
pub fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn t(s: &str) -> Template {
        Template::parse(s, &["id", "vars"], &[]).unwrap()
    }

    #[tokio::test]
    async fn placeholders_render_and_path_values_are_one_segment() {
        let v = Vars::new().with("id", json!("a/../b?c#d e"));
        let env = MapVars::default();
        assert_eq!(
            t("/orders/{$id}/items")
                .render(&json!({}), &v, &env, Encode::PathSegment)
                .await,
            Ok("/orders/a%2F..%2Fb%3Fc%23d%20e/items".into())
        );
        assert_eq!(
            t("{{literal}} {.n}")
                .render(&json!({"n": 3}), &v, &env, Encode::Raw)
                .await,
            Ok("{literal} 3".into())
        );
        assert!(t("/x/{.missing}")
            .render(&json!({}), &v, &env, Encode::PathSegment)
            .await
            .unwrap_err()
            .contains("null"));
    }

    #[tokio::test]
    async fn query_values_may_be_absent_or_repeated() {
        let env = MapVars::default();
        let v = Vars::new();
        assert_eq!(
            t("{.a}").render_query(&json!({"a": null}), &v, &env).await,
            Ok(vec![])
        );
        assert_eq!(
            t("{.a}")
                .render_query(&json!({"a": ["x", 2]}), &v, &env)
                .await,
            Ok(vec!["x".to_string(), "2".to_string()])
        );
        assert_eq!(
            t("p-{.a}").render_query(&json!({"a": 1}), &v, &env).await,
            Ok(vec!["p-1".to_string()])
        );
    }

    #[test]
    fn malformed_templates_are_refused() {
        let bad = |s: &str| Template::parse(s, &[], &[]).unwrap_err();
        assert!(bad("/x/{.a").contains("not closed"));
        assert!(bad("/x/}").contains("unmatched"));
        assert!(bad("/x/{ {a: 1} }").contains("contains `{`"));
        assert!(bad("/x/{$nope}").contains("nope"));
    }
}
