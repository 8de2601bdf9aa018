//! YAML to JSON the way kubectl reads manifests.
//!
//! kubectl decodes YAML with go-yaml v2 semantics (YAML 1.1): `0755` is octal, `yes`/`on` are
//! booleans, a duplicated key keeps the last value, and `<<` merges mappings. A strict YAML 1.2
//! reader would reject or misread manifests that kubectl applies without complaint, so this
//! module builds `serde_json::Value`s from yaml-rust2's event stream with those rules.
//! The builder keeps its own stack (no recursion) and bounds depth and alias expansion, so
//! hostile input yields an error rather than a stack overflow or a memory blow-up.

use serde_json::{Map, Number, Value};
use std::collections::HashMap;
use yaml_rust2::parser::{Event, Parser, Tag};
use yaml_rust2::scanner::TScalarStyle;

/// Nesting deeper than this is refused (serde_json's own recursion limit is 128).
pub const MAX_DEPTH: usize = 128;
/// Upper bound on values produced by alias expansion, per stream ("billion laughs").
const MAX_ALIAS_NODES: usize = 1_000_000;

/// One YAML document of a stream.
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    /// 1-based line where the document's content starts.
    pub line: usize,
    pub value: Value,
    /// When the root is a mapping with an `items` sequence of mappings (a `kind: List`),
    /// the 1-based start line of each item, in order.
    pub item_lines: Vec<usize>,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("line {line}, column {column}: {message}")]
pub struct YamlError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

enum Frame {
    Seq {
        items: Vec<Value>,
        anchor: usize,
    },
    Map {
        map: Map<String, Value>,
        /// Keys written explicitly; merged (`<<`) keys never override these.
        explicit: Vec<String>,
        pending_key: Option<PendingKey>,
        anchor: usize,
    },
}

enum PendingKey {
    Key(String),
    Merge,
}

struct Builder {
    stack: Vec<Frame>,
    anchors: HashMap<usize, Value>,
    alias_nodes: usize,
    docs: Vec<Document>,
    doc_line: Option<usize>,
    item_lines: Vec<usize>,
}

/// Parses every document of a YAML stream. Empty documents (only comments, or `---` alone)
/// are dropped, as kubectl drops them.
pub fn parse_stream(source: &str) -> Result<Vec<Document>, YamlError> {
    let mut text = std::borrow::Cow::Borrowed(source);
    // Each retry indents one more quoted scalar; bounded by the number of lines.
    for _ in 0..=source.lines().count() {
        match parse_events(&text) {
            Err(e) if e.message == UNDER_INDENTED_QUOTED => {
                match indent_quoted_scalar(&text, e.line, e.column) {
                    Some(fixed) => text = std::borrow::Cow::Owned(fixed),
                    None => return Err(e),
                }
            }
            other => return other,
        }
    }
    parse_events(&text)
}

const UNDER_INDENTED_QUOTED: &str = "invalid indentation in quoted scalar";

/// libyaml (and so go-yaml and kubectl) accepts continuation lines of a multi-line quoted
/// scalar indented no deeper than its key; yaml-rust2 refuses them. Leading white space of a
/// continuation line is folded away, so indenting those lines further changes neither the
/// value nor any line number. Returns `None` when the scalar cannot be delimited.
fn indent_quoted_scalar(text: &str, line: usize, column: usize) -> Option<String> {
    let mut lines: Vec<String> = text.split('\n').map(str::to_string).collect();
    let first = lines.get(line.checked_sub(1)?)?;
    let start = first.char_indices().nth(column.checked_sub(1)?)?.0;
    let quote = first[start..]
        .chars()
        .next()
        .filter(|c| *c == '\'' || *c == '"')?;
    // Find the closing quote, following the scalar over line breaks.
    let mut in_first = true;
    let mut offset = start + 1;
    for idx in line - 1..lines.len() {
        let body = if in_first {
            &lines[idx][offset..]
        } else {
            &lines[idx][..]
        };
        let mut chars = body.chars().peekable();
        let mut closed = false;
        let mut escaped = false;
        while let Some(c) = chars.next() {
            if quote == '"' {
                if escaped {
                    escaped = false;
                } else if c == '\\' {
                    escaped = true;
                } else if c == '"' {
                    closed = true;
                    break;
                }
            } else if c == '\'' {
                if chars.peek() == Some(&'\'') {
                    chars.next();
                } else {
                    closed = true;
                    break;
                }
            }
        }
        if !in_first {
            lines[idx] = format!("{}{}", " ".repeat(column + 1), lines[idx]);
        }
        if closed {
            return Some(lines.join("\n"));
        }
        in_first = false;
        offset = 0;
    }
    None
}

fn parse_events(source: &str) -> Result<Vec<Document>, YamlError> {
    let mut parser = Parser::new_from_str(source);
    let mut b = Builder {
        stack: Vec::new(),
        anchors: HashMap::new(),
        alias_nodes: 0,
        docs: Vec::new(),
        doc_line: None,
        item_lines: Vec::new(),
    };
    loop {
        let (event, mark) = parser.next_token().map_err(|e| YamlError {
            line: e.marker().line(),
            column: e.marker().col() + 1,
            message: e.info().to_string(),
        })?;
        let at = |message: String| YamlError {
            line: mark.line(),
            column: mark.col() + 1,
            message,
        };
        match event {
            Event::StreamEnd => break,
            Event::StreamStart | Event::Nothing => {}
            Event::DocumentStart => {
                b.anchors.clear();
                b.doc_line = None;
                b.item_lines.clear();
            }
            Event::DocumentEnd => {}
            Event::Scalar(text, style, anchor, tag) => {
                b.note_line(mark.line());
                let value = resolve_scalar(&text, style, tag.as_ref()).map_err(at)?;
                if anchor > 0 {
                    b.anchors.insert(anchor, value.clone());
                }
                b.push_value(value, false).map_err(at)?;
            }
            Event::Alias(id) => {
                b.note_line(mark.line());
                let value = b
                    .anchors
                    .get(&id)
                    .cloned()
                    .ok_or_else(|| at("alias refers to an unknown anchor".into()))?;
                b.alias_nodes += count_nodes(&value);
                if b.alias_nodes > MAX_ALIAS_NODES {
                    return Err(at(format!(
                        "aliases expand to more than {MAX_ALIAS_NODES} values"
                    )));
                }
                b.push_value(value, true).map_err(at)?;
            }
            Event::SequenceStart(anchor, _) => {
                b.note_line(mark.line());
                b.open(Frame::Seq {
                    items: Vec::new(),
                    anchor,
                })
                .map_err(at)?;
            }
            Event::MappingStart(anchor, _) => {
                b.note_line(mark.line());
                if b.is_list_item_position() {
                    b.item_lines.push(mark.line());
                }
                b.open(Frame::Map {
                    map: Map::new(),
                    explicit: Vec::new(),
                    pending_key: None,
                    anchor,
                })
                .map_err(at)?;
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let (value, anchor) = match b.stack.pop() {
                    Some(Frame::Seq { items, anchor }) => (Value::Array(items), anchor),
                    Some(Frame::Map { map, anchor, .. }) => (Value::Object(map), anchor),
                    None => return Err(at("unbalanced collection end".into())),
                };
                if anchor > 0 {
                    b.anchors.insert(anchor, value.clone());
                }
                b.push_value(value, false).map_err(at)?;
            }
        }
    }
    Ok(b.docs)
}

impl Builder {
    fn note_line(&mut self, line: usize) {
        if self.doc_line.is_none() {
            self.doc_line = Some(line);
        }
    }

    /// True when the next mapping would be an element of the root mapping's `items` sequence.
    fn is_list_item_position(&self) -> bool {
        matches!(
            self.stack.as_slice(),
            [Frame::Map { pending_key: Some(PendingKey::Key(k)), .. }, Frame::Seq { .. }] if k == "items"
        )
    }

    fn open(&mut self, frame: Frame) -> Result<(), String> {
        if self.stack.len() >= MAX_DEPTH {
            return Err(format!("nesting deeper than {MAX_DEPTH} levels"));
        }
        if let Some(Frame::Map {
            pending_key: None, ..
        }) = self.stack.last()
        {
            return Err("a mapping or sequence as a mapping key is not supported".into());
        }
        self.stack.push(frame);
        Ok(())
    }

    fn push_value(&mut self, value: Value, from_alias: bool) -> Result<(), String> {
        match self.stack.last_mut() {
            None => {
                self.docs.push(Document {
                    line: self.doc_line.unwrap_or(1),
                    value,
                    item_lines: std::mem::take(&mut self.item_lines),
                });
                // Drop documents that hold nothing (a bare `---` or only comments).
                if self.docs.last().is_some_and(|d| d.value.is_null()) {
                    self.docs.pop();
                }
                Ok(())
            }
            Some(Frame::Seq { items, .. }) => {
                items.push(value);
                Ok(())
            }
            Some(Frame::Map {
                map,
                explicit,
                pending_key,
                ..
            }) => match pending_key.take() {
                None => {
                    let key = match &value {
                        Value::String(s) if s == "<<" && !from_alias => {
                            *pending_key = Some(PendingKey::Merge);
                            return Ok(());
                        }
                        Value::String(s) => s.clone(),
                        Value::Null => "null".to_string(),
                        Value::Bool(b) => b.to_string(),
                        Value::Number(n) => n.to_string(),
                        _ => {
                            return Err(
                                "a mapping or sequence as a mapping key is not supported".into()
                            );
                        }
                    };
                    *pending_key = Some(PendingKey::Key(key));
                    Ok(())
                }
                Some(PendingKey::Key(key)) => {
                    explicit.push(key.clone());
                    map.insert(key, value);
                    Ok(())
                }
                Some(PendingKey::Merge) => {
                    let sources = match value {
                        Value::Object(m) => vec![m],
                        Value::Array(items) => items
                            .into_iter()
                            .map(|v| match v {
                                Value::Object(m) => Ok(m),
                                _ => Err("`<<` merges only mappings".to_string()),
                            })
                            .collect::<Result<_, _>>()?,
                        _ => return Err("`<<` merges only mappings".into()),
                    };
                    // Earlier sources win over later ones; explicit keys win over all.
                    for source in sources {
                        for (k, v) in source {
                            if !explicit.contains(&k) && !map.contains_key(&k) {
                                map.insert(k, v);
                            }
                        }
                    }
                    Ok(())
                }
            },
        }
    }
}

fn count_nodes(value: &Value) -> usize {
    let mut count = 0;
    let mut work = vec![value];
    while let Some(v) = work.pop() {
        count += 1;
        match v {
            Value::Array(items) => work.extend(items.iter()),
            Value::Object(map) => work.extend(map.values()),
            _ => {}
        }
    }
    count
}

/// Resolves a scalar as go-yaml v2 does (YAML 1.1 core types).
fn resolve_scalar(text: &str, style: TScalarStyle, tag: Option<&Tag>) -> Result<Value, String> {
    if let Some(tag) = tag {
        let suffix = tag.suffix.as_str();
        if tag.handle == "!!" || tag.handle == "tag:yaml.org,2002:" {
            return match suffix {
                "str" | "binary" | "timestamp" => Ok(Value::String(text.to_string())),
                "null" => Ok(Value::Null),
                "bool" => resolve_plain(text)
                    .filter(Value::is_boolean)
                    .ok_or_else(|| format!("{text:?} is not a !!bool")),
                "int" => resolve_plain(text)
                    .filter(|v| v.is_i64() || v.is_u64())
                    .ok_or_else(|| format!("{text:?} is not an !!int")),
                "float" => resolve_plain(text)
                    .filter(Value::is_number)
                    .ok_or_else(|| format!("{text:?} is not a !!float")),
                _ => Ok(Value::String(text.to_string())),
            };
        }
        // Local or unknown tags: keep the text (go-yaml does the same for unknown tags).
        return Ok(Value::String(text.to_string()));
    }
    if style != TScalarStyle::Plain {
        return Ok(Value::String(text.to_string()));
    }
    Ok(resolve_plain(text).unwrap_or_else(|| Value::String(text.to_string())))
}

/// The typed value of a plain scalar, or `None` when it is a string.
fn resolve_plain(text: &str) -> Option<Value> {
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return Some(Value::Null),
        "y" | "Y" | "yes" | "Yes" | "YES" | "true" | "True" | "TRUE" | "on" | "On" | "ON" => {
            return Some(Value::Bool(true));
        }
        "n" | "N" | "no" | "No" | "NO" | "false" | "False" | "FALSE" | "off" | "Off" | "OFF" => {
            return Some(Value::Bool(false));
        }
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" | "-.inf" | "-.Inf" | "-.INF"
        | ".nan" | ".NaN" | ".NAN" => {
            // JSON has no infinities or NaN; kubectl's YAML-to-JSON conversion fails on them too.
            return None;
        }
        _ => {}
    }
    let first = text.as_bytes()[0];
    if !(first.is_ascii_digit() || matches!(first, b'-' | b'+' | b'.')) {
        return None;
    }
    resolve_int(text)
        .map(Value::Number)
        .or_else(|| resolve_float(text))
}

fn resolve_int(text: &str) -> Option<Number> {
    let cleaned: String = text.chars().filter(|&c| c != '_').collect();
    let (negative, digits) = match cleaned.as_bytes().first()? {
        b'-' => (true, &cleaned[1..]),
        b'+' => (false, &cleaned[1..]),
        _ => (false, &cleaned[..]),
    };
    if digits.is_empty() {
        return None;
    }
    let (radix, body) = if let Some(rest) = digits.strip_prefix("0x") {
        (16, rest)
    } else if let Some(rest) = digits.strip_prefix("0b") {
        (2, rest)
    } else if let Some(rest) = digits.strip_prefix("0o") {
        (8, rest)
    } else if digits.len() > 1 && digits.starts_with('0') {
        (8, &digits[1..])
    } else {
        (10, digits)
    };
    if body.is_empty() || !body.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    let magnitude = u64::from_str_radix(body, radix).ok()?;
    if negative {
        let n = i64::try_from(magnitude)
            .ok()
            .map(|m| -m)
            .or((magnitude == 1u64 << 63).then_some(i64::MIN))?;
        Some(Number::from(n))
    } else {
        Some(Number::from(magnitude))
    }
}

fn resolve_float(text: &str) -> Option<Value> {
    let cleaned: String = text.chars().filter(|&c| c != '_').collect();
    // YAML 1.1 floats need a digit; reject Rust-only spellings like "inf" or "1e".
    if !cleaned.bytes().any(|b| b.is_ascii_digit())
        || cleaned
            .bytes()
            .any(|b| !(b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'-' | b'+')))
    {
        return None;
    }
    let f: f64 = cleaned.parse().ok()?;
    Number::from_f64(f).map(Value::Number)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn one(src: &str) -> Value {
        let docs = parse_stream(src).unwrap();
        assert_eq!(docs.len(), 1, "{docs:?}");
        docs.into_iter().next().unwrap().value
    }

    #[test]
    fn yaml_1_1_scalars_resolve_like_kubectl() {
        assert_eq!(
            one(
                "a: 0755\nb: yes\nc: off\nd: 0x1F\ne: 1_000\nf: 1.5\ng: ~\nh: '0755'\ni: 08\nj: -3"
            ),
            json!({"a": 493, "b": true, "c": false, "d": 31, "e": 1000, "f": 1.5, "g": null,
                   "h": "0755", "i": 8.0, "j": -3})
        );
    }

    #[test]
    fn yaml_1_1_boolean_keys_become_strings_as_in_kubectl() {
        assert_eq!(one("y: 1\non: 2\n3: 4\n"), json!({"true": 2, "3": 4}));
    }

    #[test]
    fn duplicated_key_keeps_the_last_value() {
        assert_eq!(
            one("metadata:\n  name: a\nmetadata:\n  name: b\n"),
            json!({"metadata": {"name": "b"}})
        );
    }

    #[test]
    fn flow_style_with_trailing_commas_parses() {
        assert_eq!(
            one("{apiVersion: v1, metadata: {labels: {app.kubernetes.io/name: x,},},}"),
            json!({"apiVersion": "v1", "metadata": {"labels": {"app.kubernetes.io/name": "x"}}})
        );
    }

    #[test]
    fn merge_keys_and_anchors() {
        assert_eq!(
            one("base: &b {x: 1, z: 2}\nderived:\n  <<: *b\n  z: 3\n"),
            json!({"base": {"x": 1, "z": 2}, "derived": {"x": 1, "z": 3}})
        );
    }

    #[test]
    fn documents_record_their_lines_and_empty_ones_are_dropped() {
        let docs = parse_stream("# c\n---\na: 1\n---\n---\n# only a comment\n---\nb: 2\n").unwrap();
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[0].line, 3);
        assert_eq!(docs[1].line, 8);
    }

    #[test]
    fn list_items_record_their_lines() {
        let docs = parse_stream("kind: List\nitems:\n- kind: A\n  x: 1\n- kind: B\n").unwrap();
        assert_eq!(docs[0].item_lines, vec![3, 5]);
    }

    #[test]
    fn quoted_scalar_continuation_at_key_indent_is_accepted_like_libyaml() {
        assert_eq!(
            one("a:\n  b: '[\n    x,\n  ]'\n  c: \"p\n  q\"\nd: 1\n"),
            json!({"a": {"b": "[ x, ]", "c": "p q"}, "d": 1})
        );
    }

    #[test]
    fn syntax_error_names_the_line() {
        let err = parse_stream("a: 1\nb: [1, 2\nc: 3\n").unwrap_err();
        assert!(err.line >= 2, "{err}");
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let src = "[".repeat(100_000);
        let err = parse_stream(&src).unwrap_err();
        assert!(
            err.message.contains("nesting") || err.message.contains("recursion limit"),
            "{err}"
        );
        let block: String = (0..200).map(|i| format!("{}k:\n", " ".repeat(i))).collect();
        let err = parse_stream(&block).unwrap_err();
        assert!(err.message.contains("nesting"), "{err}");
    }

    #[test]
    fn billion_laughs_is_refused() {
        let mut src = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
        let mut prev = 'a';
        for name in 'b'..='k' {
            src.push_str(&format!(
                "{name}: &{name} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]\n"
            ));
            prev = name;
        }
        let err = parse_stream(&src).unwrap_err();
        assert!(err.message.contains("aliases"), "{err}");
    }
}
