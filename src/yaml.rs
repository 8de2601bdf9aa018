//! YAML to JSON the way kubectl reads manifests.
//!
//! kubectl decodes YAML with go-yaml v2 semantics (YAML 1.1): `0755` is octal, `yes`/`on` are
//! booleans, a duplicated key keeps the last value, and `<<` merges mappings. A strict YAML 1.2
//! reader would reject or misread manifests that kubectl applies without complaint, so this
//! module builds `serde_json::Value`s from yaml-rust2's event stream with those rules.
//!
//! Hostile input yields an error, never a crash, a hang or a memory blow-up:
//! - every character is read: a control character that libyaml refuses is refused here too
//!   (yaml-rust2 alone would end the stream at a NUL and drop every document after it);
//! - the builder keeps its own stack (no recursion) and refuses nesting deeper than
//!   [`MAX_DEPTH`];
//! - anchors and aliases may copy at most [`MAX_ALIAS_NODES`] values per stream;
//! - time is linear in the input: a text is read once, or when quoted scalars are indented less
//!   than libyaml allows and yaml-rust2 does not, at most [`MAX_PASSES`] times (see `quoted`).

mod quoted;

pub use quoted::MAX_PASSES;

use serde_json::{Map, Number, Value};
use std::collections::{HashMap, HashSet};
use std::ops::ControlFlow;
use yaml_rust2::parser::{Event, Parser, Tag};
use yaml_rust2::scanner::TScalarStyle;

/// Nesting deeper than this is refused (serde_json's own recursion limit is 128).
pub const MAX_DEPTH: usize = 128;
/// Upper bound on values copied for anchors and aliases, per stream ("billion laughs"): in a
/// text with aliases, an anchored value is copied once where it is defined and once per alias.
pub const MAX_ALIAS_NODES: usize = 1_000_000;

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
        pending_key: Option<PendingKey>,
        anchor: usize,
    },
}

enum PendingKey {
    Key(String),
    Merge,
}

struct Builder<'s> {
    stack: Vec<Frame>,
    anchors: HashMap<usize, Value>,
    /// Values copied for anchors and aliases so far, bounded by [`MAX_ALIAS_NODES`].
    copied_nodes: usize,
    sink: &'s mut dyn DocumentSink,
    /// The sink asked to stop.
    stopped: bool,
    doc_line: Option<usize>,
    item_lines: Vec<usize>,
}

/// Receives the documents of a stream as they are read, so that a caller can keep what it
/// needs of each and let the rest go before the next one is built.
pub trait DocumentSink {
    /// The next document. `Break` stops reading; the sink keeps its own reason.
    fn document(&mut self, doc: Document) -> ControlFlow<()>;
    /// Reading starts over from the top of the text: forget every document received.
    fn restart(&mut self);
}

impl DocumentSink for Vec<Document> {
    fn document(&mut self, doc: Document) -> ControlFlow<()> {
        self.push(doc);
        ControlFlow::Continue(())
    }

    fn restart(&mut self) {
        self.clear();
    }
}

/// Parses every document of a YAML stream. Empty documents (only comments, or `---` alone)
/// are dropped, as kubectl drops them.
pub fn parse_stream(source: &str) -> Result<Vec<Document>, YamlError> {
    let mut docs = Vec::new();
    read_stream(source, &mut docs)?;
    Ok(docs)
}

/// Parses every document of a YAML stream into `sink`, one at a time. After an error, the
/// sink may hold documents from before it.
pub fn read_stream(source: &str, sink: &mut dyn DocumentSink) -> Result<(), YamlError> {
    read_stream_counting(source, sink, &mut 0)
}

/// [`read_stream`], counting in `passes` how often the whole text was read.
fn read_stream_counting(
    source: &str,
    sink: &mut dyn DocumentSink,
    passes: &mut usize,
) -> Result<(), YamlError> {
    check_characters(source)?;
    *passes += 1;
    match parse_events(source, sink, &HashSet::new(), &mut HashSet::new()) {
        Err(e) if e.message == quoted::UNDER_INDENTED => {
            quoted::parse_reindented(source, sink, e, passes)
        }
        Err(e) if e.message == STOPPED => Ok(()),
        other => other,
    }
}

/// The "error" [`parse_events`] ends with where the sink asked to stop.
const STOPPED: &str = "stopped by the sink";

/// libyaml reads only printable characters (YAML 1.1 `c-printable`) and refuses any other
/// with "control characters are not allowed", so kubectl refuses such a file. yaml-rust2 would
/// end the stream silently at a NUL, even in a comment, and accept the others.
fn check_characters(source: &str) -> Result<(), YamlError> {
    if source
        .bytes()
        .all(|b| matches!(b, b'\t' | b'\n' | b'\r' | b' '..=b'~'))
    {
        return Ok(());
    }
    let printable = |c: char| {
        matches!(c, '\t' | '\n' | '\r' | ' '..='~' | '\u{85}' | '\u{A0}'..='\u{D7FF}'
            | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
    };
    let (mut line, mut line_start) = (1, 0);
    for (i, c) in source.char_indices() {
        if c == '\n' {
            line += 1;
            line_start = i + 1;
        } else if !printable(c) {
            return Err(YamlError {
                line,
                column: source[line_start..i].chars().count() + 1,
                message: format!(
                    "control character U+{:04X} is not allowed; kubectl refuses it too",
                    u32::from(c)
                ),
            });
        }
    }
    Ok(())
}

/// A position in a text: 1-based line, 0-based column in characters.
type Position = (usize, usize);

/// Reads `source` into `sink`, ending with a [`STOPPED`] error where the sink stops it. Adds to
/// `seen` each position of `watch` where a quoted scalar starts, as far as the text was read.
fn parse_events(
    source: &str,
    sink: &mut dyn DocumentSink,
    watch: &HashSet<Position>,
    seen: &mut HashSet<Position>,
) -> Result<(), YamlError> {
    let mut parser = Parser::new_from_str(source);
    // Without a `*` there is no alias, and anchored values need not be kept (nor copied).
    let keep_anchors = source.contains('*');
    let mut b = Builder {
        stack: Vec::new(),
        anchors: HashMap::new(),
        copied_nodes: 0,
        sink,
        stopped: false,
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
                let quoted = matches!(
                    style,
                    TScalarStyle::SingleQuoted | TScalarStyle::DoubleQuoted
                );
                if quoted && !watch.is_empty() && watch.contains(&(mark.line(), mark.col())) {
                    seen.insert((mark.line(), mark.col()));
                }
                // go-yaml merges on a plain `<<` (or one tagged `!!merge`); a quoted "<<" is
                // an ordinary key.
                let merge_key = text == "<<"
                    && match &tag {
                        None => style == TScalarStyle::Plain,
                        Some(tag) => is_core_tag(tag, "merge"),
                    };
                let value = resolve_scalar(&text, style, tag.as_ref()).map_err(at)?;
                if anchor > 0 && keep_anchors {
                    b.copy(&value).map_err(at)?;
                    b.anchors.insert(anchor, value.clone());
                }
                b.push_value(value, merge_key).map_err(at)?;
            }
            Event::Alias(id) => {
                b.note_line(mark.line());
                let nodes = b
                    .anchors
                    .get(&id)
                    .map(count_nodes)
                    .ok_or_else(|| at("alias refers to an unknown anchor".into()))?;
                // Counted before the copy is made.
                b.count_copy(nodes).map_err(at)?;
                let value = b.anchors[&id].clone();
                b.push_value(value, false).map_err(at)?;
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
                if anchor > 0 && keep_anchors {
                    b.copy(&value).map_err(at)?;
                    b.anchors.insert(anchor, value.clone());
                }
                b.push_value(value, false).map_err(at)?;
            }
        }
        if b.stopped {
            return Err(at(STOPPED.into()));
        }
    }
    Ok(())
}

fn is_core_tag(tag: &Tag, suffix: &str) -> bool {
    (tag.handle == "!!" || tag.handle == "tag:yaml.org,2002:") && tag.suffix == suffix
}

impl Builder<'_> {
    /// Counts `value` against the copy budget before it is copied.
    fn copy(&mut self, value: &Value) -> Result<(), String> {
        self.count_copy(count_nodes(value))
    }

    fn count_copy(&mut self, nodes: usize) -> Result<(), String> {
        self.copied_nodes += nodes;
        if self.copied_nodes > MAX_ALIAS_NODES {
            return Err(format!(
                "aliases and anchors expand to more than {MAX_ALIAS_NODES} values"
            ));
        }
        Ok(())
    }

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

    /// Adds a finished value to the collection being built; `merge_key` marks a `<<` key.
    fn push_value(&mut self, value: Value, merge_key: bool) -> Result<(), String> {
        match self.stack.last_mut() {
            None => {
                let item_lines = std::mem::take(&mut self.item_lines);
                // Drop documents that hold nothing (a bare `---` or only comments).
                if !value.is_null() {
                    let doc = Document {
                        line: self.doc_line.unwrap_or(1),
                        value,
                        item_lines,
                    };
                    self.stopped = self.sink.document(doc).is_break();
                }
                Ok(())
            }
            Some(Frame::Seq { items, .. }) => {
                items.push(value);
                Ok(())
            }
            Some(Frame::Map {
                map, pending_key, ..
            }) => match pending_key.take() {
                None => {
                    let key = match value {
                        _ if merge_key => {
                            *pending_key = Some(PendingKey::Merge);
                            return Ok(());
                        }
                        Value::String(s) => s,
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
                    map.insert(key, value);
                    Ok(())
                }
                // go-yaml v2, which kubectl uses, merges by setting each merged key in
                // document order like any other key: a merge overrides the keys before it and
                // later keys override the merge. Of a sequence of mappings the earlier ones
                // win, so they are set last. Each entry is moved once, never re-copied.
                Some(PendingKey::Merge) => match value {
                    Value::Object(source) => {
                        map.extend(source);
                        Ok(())
                    }
                    Value::Array(sources) if sources.iter().all(Value::is_object) => {
                        for source in sources.into_iter().rev() {
                            if let Value::Object(source) = source {
                                map.extend(source);
                            }
                        }
                        Ok(())
                    }
                    _ => Err("`<<` merges only mappings".into()),
                },
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

    /// [`parse_stream`], counting in `passes` how often the whole text was read.
    fn parse_stream_counting(source: &str, passes: &mut usize) -> Result<Vec<Document>, YamlError> {
        let mut docs = Vec::new();
        read_stream_counting(source, &mut docs, passes)?;
        Ok(docs)
    }

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

    #[test]
    fn nul_and_other_control_characters_are_refused_where_they_are() {
        // yaml-rust2 alone ends the stream at a NUL: the second document was never read.
        for (src, line, column, code) in [
            ("a: 1\n# x\0y\n---\nb: 2\n", 2, 4, "U+0000"),
            ("a: 1\nb: \"x\u{1}\"\n", 2, 6, "U+0001"),
            ("a: \u{7f}\n", 1, 4, "U+007F"),
            ("a: \u{80}\n", 1, 4, "U+0080"),
            ("a: \u{FFFE}\n", 1, 4, "U+FFFE"),
        ] {
            let err = parse_stream(src).unwrap_err();
            assert_eq!((err.line, err.column), (line, column), "{src:?}: {err}");
            assert!(err.message.contains(code), "{src:?}: {err}");
        }
        // What libyaml reads is read: tab, CR, NEL, non-ASCII, a BOM inside a scalar.
        assert_eq!(
            one("a:\t\"x\u{85}\u{e9}\u{FEFF}\"\r\nb: \u{1F600}\n"),
            json!({"a": "x\u{85}\u{e9}\u{FEFF}", "b": "\u{1F600}"})
        );
    }

    #[test]
    fn merge_keys_set_keys_in_document_order_like_kubectl() {
        // As `kubectl label --local -f` (v1.32) reads it: a merge overrides the keys before
        // it, later keys override the merge, earlier mappings of a merged sequence win.
        assert_eq!(
            one("<<: [{a: 1}, {a: 2, b: 2}]\nb: 3\n<<: {c: 4, b: 5}\nd: 1\n<<: {d: 2}\n"),
            json!({"a": 1, "b": 5, "c": 4, "d": 2})
        );
        assert_eq!(one("<<: {b: 5}\nb: 3\n"), json!({"b": 3}));
        // A quoted "<<" is a key; a `!!merge` tag merges.
        assert_eq!(
            one("\"<<\": {c: 4}\nx: 1\n"),
            json!({"<<": {"c": 4}, "x": 1})
        );
        assert_eq!(one("!!merge <<: {c: 4}\nx: 1\n"), json!({"c": 4, "x": 1}));
        assert!(parse_stream("<<: [{a: 1}, 2]\n").is_err());
    }

    #[test]
    fn merging_into_a_large_map_keeps_every_key() {
        let n = 20_000;
        let mut src = String::new();
        for i in 0..n {
            src.push_str(&format!("e{i}: 1\n"));
        }
        src.push_str("<<:\n");
        for i in 0..n {
            src.push_str(&format!("  m{i}: 2\n"));
        }
        let value = one(&src);
        assert_eq!(value.as_object().unwrap().len(), 2 * n);
        assert_eq!((&value["e7"], &value["m7"]), (&json!(1), &json!(2)));
    }

    #[test]
    fn anchors_are_copied_only_when_aliases_can_use_them_and_count_against_the_budget() {
        // 100 nested anchored mappings around 20,000 values: kept for aliases, that is 2
        // million copied values — refused; without any alias nothing is copied.
        let mut src = String::new();
        for depth in 0..100 {
            src.push_str(&format!("{}k{depth}: &a{depth}\n", "  ".repeat(depth)));
        }
        src.push_str(&format!("{}leaf: [", "  ".repeat(100)));
        src.push_str(&"1, ".repeat(20_000));
        src.push_str("1]\n");
        assert!(parse_stream(&src).is_ok());
        src.push_str("other: *a99\n");
        let err = parse_stream(&src).unwrap_err();
        assert!(err.message.contains("aliases and anchors"), "{err}");
    }

    /// `k{i}: '...'` scalars whose continuation lines are indented no deeper than the key.
    fn under_indented(n: usize) -> (String, String) {
        let (mut src, mut deep) = (String::from("data:\n"), String::from("data:\n"));
        for i in 0..n {
            src.push_str(&format!("  k{i}: '[\n  x,\n  ]'\n  d{i}: \"p\n q\"\n"));
            deep.push_str(&format!(
                "  k{i}: '[\n      x,\n      ]'\n  d{i}: \"p\n      q\"\n"
            ));
        }
        (src, deep)
    }

    #[test]
    fn under_indented_quoted_scalars_are_all_fixed_in_one_more_pass() {
        let (src, deep) = under_indented(2_000);
        let mut passes = 0;
        let docs = parse_stream_counting(&src, &mut passes).unwrap();
        // One reading that fails, one with every scalar indented: not one per scalar.
        assert_eq!(passes, 2);
        assert_eq!(docs, parse_stream(&deep).unwrap());
        assert_eq!(docs[0].value["data"]["k1999"], json!("[ x, ]"));
        assert_eq!(docs[0].value["data"]["d1999"], json!("p q"));
    }

    #[test]
    fn quotes_the_quoted_scalar_finder_misreads_never_change_what_is_read() {
        // Quotes in a block scalar (whose content is less indented than its `|` line), a plain
        // scalar, a comment and a flow sequence, beside under-indented quoted scalars.
        let src = "a:\n  |\n 'y\n z'\nb: don't 'stop\n  here\n# it's\nc:\n  d: 'x\n  y'\n\
                   e: [\"f\n  g\", h'i]\nj:\n  k: \"l\n m\"\n";
        let fixed = "a:\n  |\n 'y\n z'\nb: don't 'stop\n  here\n# it's\nc:\n  d: 'x\n      y'\n\
                     e: [\"f\n  g\", h'i]\nj:\n  k: \"l\n      m\"\n";
        let mut passes = 0;
        let docs = parse_stream_counting(src, &mut passes).unwrap();
        assert_eq!(docs, parse_stream(fixed).unwrap());
        assert_eq!(docs[0].value["a"], json!("'y\nz'\n"));
        assert!(passes <= 4, "{passes}");
    }

    #[test]
    fn a_document_marker_inside_a_quoted_scalar_is_refused_like_libyaml() {
        let err = parse_stream("a:\n  b: 'x\n y\n---\n  z'\n").unwrap_err();
        assert!(err.message.contains("document indicator"), "{err}");
        assert_eq!(err.line, 2);
    }
}
