//! Reading Kubernetes objects from files, directories and stdin, as `check` and
//! `serve --manifests` need them: multi-document YAML, JSON (one or several concatenated
//! objects), and lists (`kind: List`). Every error names the file and, where there is one, the
//! line.
//!
//! Input is decoded as kubectl decodes it (a UTF-8 byte order mark is dropped, UTF-16 with a
//! byte order mark is read) and bounded by [`InputLimits`]; reading takes time linear in the
//! input.

use crate::yaml::{Document, DocumentSink};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube_core::{DynamicObject, TypeMeta};
use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt;
use std::io::Read;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// Default for [`InputLimits::max_file_bytes`]: 64 MiB.
pub const DEFAULT_MAX_FILE_BYTES: u64 = 64 << 20;
/// Default for [`InputLimits::max_total_bytes`]: 256 MiB.
pub const DEFAULT_MAX_TOTAL_BYTES: u64 = 256 << 20;

/// How much input [`read_paths`] reads before refusing: parsed objects take a multiple of
/// their text in memory, so the bounds on the text bound the memory too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InputLimits {
    /// Largest input (a file, or stdin), in bytes.
    pub max_file_bytes: u64,
    /// Largest sum of all inputs, in bytes.
    pub max_total_bytes: u64,
}

impl Default for InputLimits {
    fn default() -> Self {
        InputLimits {
            max_file_bytes: DEFAULT_MAX_FILE_BYTES,
            max_total_bytes: DEFAULT_MAX_TOTAL_BYTES,
        }
    }
}

/// `bytes` for people: "64 MiB", "1.5 KiB", "17 bytes".
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [(u64, &str); 3] = [(1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")];
    for (size, unit) in UNITS {
        if bytes >= size {
            return if bytes.is_multiple_of(size) {
                format!("{} {unit}", bytes / size)
            } else {
                format!("{:.1} {unit}", bytes as f64 / size as f64)
            };
        }
    }
    format!("{bytes} bytes")
}

/// Where an object came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourcePos {
    pub file: Arc<str>,
    /// 1-based position of the document in the file.
    pub document: usize,
    /// 1-based line where the object starts.
    pub line: usize,
}

impl fmt::Display for SourcePos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{} (document {})",
            self.file, self.line, self.document
        )
    }
}

/// One object read from input, not yet interpreted.
#[derive(Debug, Clone)]
pub struct Manifest {
    pub pos: SourcePos,
    pub value: Value,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct LoadError {
    pub file: String,
    pub line: Option<usize>,
    pub message: String,
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{}: {}", self.file, line, self.message),
            None => write!(f, "{}: {}", self.file, self.message),
        }
    }
}

/// Reads every path: files, directories (recursively, `.yaml`/`.yml`/`.json`, in name order)
/// and `-` for stdin. Returns what could be read and every error met, in input order. Files
/// are parsed on all cores (CI often passes hundreds of them). Inputs over `limits` are
/// errors; when the files' sizes already exceed them, nothing is parsed at all.
pub fn read_paths(paths: &[String], limits: &InputLimits) -> (Vec<Manifest>, Vec<LoadError>) {
    read_paths_with(paths, limits, &|manifest| manifest)
}

/// [`read_paths`], turning each object into what the caller keeps of it as soon as it is read,
/// on the reading thread: an object parsed takes many times its text in memory, so only one
/// document per reading thread is ever held whole.
pub fn read_paths_with<T: Send>(
    paths: &[String],
    limits: &InputLimits,
    convert: &(dyn Fn(Manifest) -> T + Sync),
) -> (Vec<T>, Vec<LoadError>) {
    let (inputs, mut errors, over_limit) = list_inputs(paths, limits);
    if over_limit {
        return (Vec::new(), errors);
    }
    // Bytes actually read: stdin has no size until read, and files may grow meanwhile.
    let total_read = AtomicU64::new(0);
    let results = map_in_parallel(&inputs, |input| {
        read_input(input, limits, &total_read, convert)
    });
    let mut manifests = Vec::new();
    for result in results {
        collect(result, &mut manifests, &mut errors);
    }
    (manifests, errors)
}

/// One input to read.
enum Input {
    Stdin,
    File(PathBuf),
}

/// The inputs `paths` name, in order, with the errors met listing them, and whether the
/// files' listed sizes already exceed `limits` (then nothing is to be read).
fn list_inputs(paths: &[String], limits: &InputLimits) -> (Vec<Input>, Vec<LoadError>, bool) {
    let mut inputs = Vec::new();
    let mut errors = Vec::new();
    let mut seen_dirs = HashSet::new();
    let mut stdin_listed = false;
    let mut listed_bytes: u64 = 0;
    let mut over_limit = false;
    for path in paths {
        if path == "-" {
            if !stdin_listed {
                stdin_listed = true;
                inputs.push(Input::Stdin);
            }
            continue;
        }
        let mut files = Vec::new();
        if let Err(e) = expand_path(Path::new(path), true, &mut files, &mut seen_dirs) {
            errors.push(e);
        }
        for (file, size) in files {
            // Sizes as listed, checked before anything is read, in input order.
            let name = || file.display().to_string();
            if size > limits.max_file_bytes {
                errors.push(too_large(name(), Some(size), limits, false));
                over_limit = true;
            } else if !over_limit {
                listed_bytes += size;
                if listed_bytes > limits.max_total_bytes {
                    errors.push(too_large(name(), None, limits, true));
                    over_limit = true;
                }
            }
            inputs.push(Input::File(file));
        }
    }
    (inputs, errors, over_limit)
}

/// Reads and parses one input; `total_read` counts the bytes of all inputs against the limit.
fn read_input<T>(
    input: &Input,
    limits: &InputLimits,
    total_read: &AtomicU64,
    convert: &dyn Fn(Manifest) -> T,
) -> FileResult<T> {
    let (name, bytes) = match input {
        Input::Stdin => (
            "<stdin>".to_string(),
            read_limited(std::io::stdin(), 0, limits),
        ),
        Input::File(file) => {
            let name = file.display().to_string();
            let bytes = std::fs::File::open(file).and_then(|f| {
                let size = f.metadata().map_or(0, |m| m.len());
                read_limited(f, size, limits)
            });
            (name, bytes)
        }
    };
    let bytes = bytes
        .map_err(|e| LoadError {
            file: name.clone(),
            line: None,
            message: format!("cannot read: {e}"),
        })?
        .ok_or_else(|| too_large(name.clone(), None, limits, false))?;
    let len = bytes.len() as u64;
    if total_read.fetch_add(len, Ordering::Relaxed) + len > limits.max_total_bytes {
        return Err(too_large(name, None, limits, true));
    }
    let format = match input {
        Input::Stdin => Format::Detect,
        Input::File(file) => Format::from_path(file),
    };
    parse_bytes_with(&name, &bytes, format, convert)
}

/// `f` over `items` on all cores (CI often passes hundreds of files), results in item order.
/// Each worker takes the next item when it finishes one, so a large file holds up no other.
fn map_in_parallel<I: Sync, R: Send>(items: &[I], f: impl Fn(&I) -> R + Sync) -> Vec<R> {
    let workers = std::thread::available_parallelism()
        .map(usize::from)
        .unwrap_or(1)
        .min(items.len());
    if workers <= 1 {
        return items.iter().map(f).collect();
    }
    let next = AtomicUsize::new(0);
    let mut done: Vec<(usize, R)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                scope.spawn(|| {
                    let mut mine = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(item) = items.get(i) else {
                            return mine;
                        };
                        mine.push((i, f(item)));
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| {
                h.join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect()
    });
    done.sort_unstable_by_key(|(i, _)| *i);
    done.into_iter().map(|(_, r)| r).collect()
}

/// All of `reader` (of about `size` bytes, when known), or `None` when it holds more than
/// `limits.max_file_bytes`.
fn read_limited(
    reader: impl Read,
    size: u64,
    limits: &InputLimits,
) -> std::io::Result<Option<Vec<u8>>> {
    let capacity = size.min(limits.max_file_bytes).saturating_add(1);
    let mut bytes = Vec::with_capacity(usize::try_from(capacity).unwrap_or(0));
    reader
        .take(limits.max_file_bytes.saturating_add(1))
        .read_to_end(&mut bytes)?;
    Ok((bytes.len() as u64 <= limits.max_file_bytes).then_some(bytes))
}

fn too_large(file: String, size: Option<u64>, limits: &InputLimits, total: bool) -> LoadError {
    let message = match (total, size) {
        (true, _) => format!(
            "with this input, the inputs are larger than the limit of {} in total \
             (--max-total-size)",
            human_bytes(limits.max_total_bytes)
        ),
        (false, Some(size)) => format!(
            "{}, larger than the limit of {} per file (--max-file-size)",
            human_bytes(size),
            human_bytes(limits.max_file_bytes)
        ),
        (false, None) => format!(
            "larger than the limit of {} per file (--max-file-size)",
            human_bytes(limits.max_file_bytes)
        ),
    };
    LoadError {
        file,
        line: None,
        message,
    }
}

/// The objects of one input, or why it could not be read.
type FileResult<T> = Result<Vec<T>, LoadError>;

fn collect<T>(result: FileResult<T>, manifests: &mut Vec<T>, errors: &mut Vec<LoadError>) {
    match result {
        Ok(found) => manifests.extend(found),
        Err(e) => errors.push(e),
    }
}

fn is_manifest_file(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml" | "json")
    )
}

/// Lists the manifest files under `path`, with their sizes. A path named explicitly is read whatever its
/// extension; inside directories only manifest extensions count. Symlinked directories are
/// followed once (a loop is not an endless walk).
fn expand_path(
    path: &Path,
    explicit: bool,
    files: &mut Vec<(PathBuf, u64)>,
    seen_dirs: &mut HashSet<PathBuf>,
) -> Result<(), LoadError> {
    let err = |message: String| LoadError {
        file: path.display().to_string(),
        line: None,
        message,
    };
    let meta = std::fs::metadata(path).map_err(|e| err(format!("cannot read: {e}")))?;
    if meta.is_file() {
        if explicit || is_manifest_file(path) {
            files.push((path.to_path_buf(), meta.len()));
        }
        return Ok(());
    }
    if !meta.is_dir() {
        return if explicit {
            Err(err("not a file or directory".into()))
        } else {
            Ok(())
        };
    }
    let canonical = std::fs::canonicalize(path).map_err(|e| err(format!("cannot read: {e}")))?;
    if !seen_dirs.insert(canonical) {
        return Ok(());
    }
    let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
        .map_err(|e| err(format!("cannot read directory: {e}")))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    for entry in entries {
        expand_path(&entry, false, files, seen_dirs)?;
    }
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Yaml,
    Json,
    /// stdin: JSON when it parses as JSON, YAML otherwise.
    Detect,
}

impl Format {
    fn from_path(path: &Path) -> Format {
        match path.extension().and_then(|e| e.to_str()) {
            Some("json") => Format::Json,
            _ => Format::Yaml,
        }
    }
}

/// Parses one input's bytes into its objects.
pub fn parse_bytes(file: &str, bytes: &[u8], format: Format) -> Result<Vec<Manifest>, LoadError> {
    parse_bytes_with(file, bytes, format, &|manifest| manifest)
}

/// [`parse_bytes`], turning each object into what the caller keeps of it as it is read.
pub fn parse_bytes_with<T>(
    file: &str,
    bytes: &[u8],
    format: Format,
    convert: &dyn Fn(Manifest) -> T,
) -> Result<Vec<T>, LoadError> {
    let text = decode(bytes).map_err(|(line, message)| LoadError {
        file: file.to_string(),
        line: Some(line),
        message: message.into(),
    })?;
    let text = text.as_ref();
    let mut sink = ObjectSink {
        file: Arc::from(file),
        convert,
        out: Vec::new(),
        documents: 0,
        error: None,
    };
    match format {
        Format::Json => parse_json(text, &mut sink)?,
        Format::Yaml => parse_yaml(text, &mut sink)?,
        Format::Detect => {
            let trimmed = text.trim_start();
            if trimmed.starts_with('{') || trimmed.starts_with('[') {
                // Not JSON after all: read it again as YAML.
                if let Err(e) = parse_json(text, &mut sink) {
                    if sink.error.is_some() {
                        return Err(e);
                    }
                    sink.restart();
                    parse_yaml(text, &mut sink)?;
                }
            } else {
                parse_yaml(text, &mut sink)?;
            }
        }
    }
    Ok(sink.out)
}

/// Takes the documents of one input as they are read: splits lists into their objects,
/// numbers the documents and converts each object.
struct ObjectSink<'c, T> {
    file: Arc<str>,
    convert: &'c dyn Fn(Manifest) -> T,
    out: Vec<T>,
    documents: usize,
    /// Why reading stopped.
    error: Option<LoadError>,
}

impl<T> DocumentSink for ObjectSink<'_, T> {
    fn document(&mut self, doc: Document) -> ControlFlow<()> {
        self.documents += 1;
        let (out, convert) = (&mut self.out, self.convert);
        match expand_document(&self.file, self.documents, doc, &mut |m| {
            out.push(convert(m))
        }) {
            Ok(()) => ControlFlow::Continue(()),
            Err(e) => {
                self.error = Some(e);
                ControlFlow::Break(())
            }
        }
    }

    fn restart(&mut self) {
        self.out.clear();
        self.documents = 0;
        self.error = None;
    }
}

impl<T> ObjectSink<'_, T> {
    /// The error that stopped reading, if any.
    fn finish(&mut self) -> Result<(), LoadError> {
        self.error.take().map_or(Ok(()), Err)
    }
}

/// The text of an input as kubectl decodes it (`unicode.BOMOverride`): a UTF-8 byte order
/// mark is dropped, UTF-16 with a byte order mark (little or big endian) is decoded, anything
/// else must be UTF-8. Errors carry the line.
fn decode(bytes: &[u8]) -> Result<Cow<'_, str>, (usize, &'static str)> {
    let line_of = |valid: &[u8]| valid.iter().filter(|&&b| b == b'\n').count() + 1;
    let utf8 = |bytes| {
        std::str::from_utf8(bytes)
            .map(Cow::Borrowed)
            .map_err(|e| (line_of(&bytes[..e.valid_up_to()]), "invalid UTF-8"))
    };
    let utf16 = |bytes: &[u8], unit: fn([u8; 2]) -> u16| {
        let mut text = String::with_capacity(bytes.len() / 2);
        let units = bytes.chunks_exact(2).map(|pair| unit([pair[0], pair[1]]));
        for c in char::decode_utf16(units) {
            let Ok(c) = c else {
                return Err((text.matches('\n').count() + 1, "invalid UTF-16"));
            };
            text.push(c);
        }
        if !bytes.len().is_multiple_of(2) {
            return Err((
                text.matches('\n').count() + 1,
                "invalid UTF-16 (odd number of bytes)",
            ));
        }
        Ok(Cow::Owned(text))
    };
    match bytes {
        [0xEF, 0xBB, 0xBF, rest @ ..] => utf8(rest),
        [0xFF, 0xFE, rest @ ..] => utf16(rest, u16::from_le_bytes),
        [0xFE, 0xFF, rest @ ..] => utf16(rest, u16::from_be_bytes),
        _ => utf8(bytes),
    }
}

fn parse_yaml<T>(text: &str, sink: &mut ObjectSink<'_, T>) -> Result<(), LoadError> {
    crate::yaml::read_stream(text, sink).map_err(|e| LoadError {
        file: sink.file.to_string(),
        line: Some(e.line),
        message: format!("YAML: {} (column {})", e.message, e.column),
    })?;
    sink.finish()
}

/// Line numbers of increasing byte offsets, counted on from the last one asked for: placing
/// every object of a text costs one pass over it.
struct LineCounter<'a> {
    text: &'a str,
    offset: usize,
    line: usize,
}

impl<'a> LineCounter<'a> {
    fn new(text: &'a str) -> Self {
        LineCounter {
            text,
            offset: 0,
            line: 1,
        }
    }

    /// The 1-based line of `offset`; offsets asked for must not decrease.
    fn line_of(&mut self, offset: usize) -> usize {
        debug_assert!(offset >= self.offset, "offsets must not decrease");
        if offset > self.offset {
            let newlines = self.text.as_bytes()[self.offset..offset]
                .iter()
                .filter(|&&b| b == b'\n')
                .count();
            self.line += newlines;
            self.offset = offset;
        }
        self.line
    }
}

/// The elements of a JSON list's `items`, unparsed, to find where each one starts.
#[derive(Deserialize)]
struct RawItems<'a> {
    #[serde(borrow)]
    items: Vec<&'a RawValue>,
}

fn parse_json<T>(text: &str, sink: &mut ObjectSink<'_, T>) -> Result<(), LoadError> {
    let mut lines = LineCounter::new(text);
    let mut stream = serde_json::Deserializer::from_str(text).into_iter::<Value>();
    loop {
        let start = stream.byte_offset();
        match stream.next() {
            None => break,
            Some(Ok(value)) => {
                let end = stream.byte_offset();
                let object = &text[start..end];
                let skipped = object.len() - object.trim_start().len();
                let line = lines.line_of(start + skipped);
                // Where the items of a List start: their raw text is a slice of `text`.
                let item_lines = match value.get("items") {
                    Some(Value::Array(_)) => serde_json::from_str::<RawItems>(object)
                        .map(|raw| {
                            raw.items
                                .iter()
                                .map(|item| {
                                    let at = item.get().as_ptr() as usize - text.as_ptr() as usize;
                                    lines.line_of(at)
                                })
                                .collect()
                        })
                        .unwrap_or_default(),
                    _ => Vec::new(),
                };
                let doc = Document {
                    line,
                    value,
                    item_lines,
                };
                if sink.document(doc).is_break() {
                    return sink.finish();
                }
            }
            Some(Err(e)) => {
                return Err(LoadError {
                    file: sink.file.to_string(),
                    line: Some(e.line()),
                    message: format!("JSON: {e}"),
                });
            }
        }
    }
    Ok(())
}

/// One document is one object, or a list of objects. As kubectl (cli-runtime) reads it, any
/// object with an `items` field is a list, whatever its kind: its items are the objects (none
/// when `items` is null). An item that is itself a list makes kubectl refuse the whole list
/// ("... is not a list: no Items field in this object"), so it is an error here too.
fn expand_document(
    file: &Arc<str>,
    document: usize,
    doc: Document,
    out: &mut dyn FnMut(Manifest),
) -> Result<(), LoadError> {
    let err = |line: usize, message: String| LoadError {
        file: file.to_string(),
        line: Some(line),
        message,
    };
    let Value::Object(mut map) = doc.value else {
        return Err(err(
            doc.line,
            "document is not a Kubernetes object (expected a map)".into(),
        ));
    };
    let list = match map.get("kind").and_then(Value::as_str) {
        Some(kind) if !kind.is_empty() => kind.to_string(),
        _ => "list".to_string(),
    };
    let items = match map.remove("items") {
        None => {
            out(Manifest {
                pos: SourcePos {
                    file: file.clone(),
                    document,
                    line: doc.line,
                },
                value: Value::Object(map),
            });
            return Ok(());
        }
        Some(Value::Null) => return Ok(()),
        Some(Value::Array(items)) => items,
        Some(_) => {
            return Err(err(
                doc.line,
                format!("items of the {list} is not a list; kubectl refuses it too"),
            ));
        }
    };
    for (i, item) in items.into_iter().enumerate() {
        let line = doc.item_lines.get(i).copied().unwrap_or(doc.line);
        let Value::Object(item) = item else {
            return Err(err(
                line,
                format!("items[{i}] of the {list} is not an object"),
            ));
        };
        if item.get("items").is_some_and(Value::is_array) {
            return Err(err(
                line,
                format!(
                    "items[{i}] of the {list} is itself a list; kubectl refuses a list in a list \
                     (\"... is not a list: no Items field in this object\")"
                ),
            ));
        }
        out(Manifest {
            pos: SourcePos {
                file: file.clone(),
                document,
                line,
            },
            value: Value::Object(item),
        });
    }
    Ok(())
}

/// A manifest's object as a `DynamicObject`: its type and metadata read, the rest (`spec`) left
/// for the views to take. Errors name the field path.
pub fn into_object(value: Value) -> Result<DynamicObject, String> {
    let Value::Object(mut map) = value else {
        return Err("not an object".into());
    };
    let mut take_string = |key: &str| match map.remove(key) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s),
        Some(Value::String(_)) | Some(Value::Null) | None => Err(format!("{key} is missing")),
        Some(_) => Err(format!("{key}: expected a string")),
    };
    let api_version = take_string("apiVersion")?;
    let kind = take_string("kind")?;
    let metadata: ObjectMeta = match map.remove("metadata") {
        None | Some(Value::Null) => ObjectMeta::default(),
        Some(mut meta) => {
            // managedFields can be most of an object's metadata and no rule reads them.
            if let Some(m) = meta.as_object_mut() {
                m.remove("managedFields");
            }
            // The fast path; on failure decode again, slowly, for an error naming the field.
            match ObjectMeta::deserialize(&meta) {
                Ok(meta) => meta,
                Err(_) => serde_path_to_error::deserialize(&meta)
                    .map_err(|e| format!("metadata.{}: {}", e.path(), e.inner()))?,
            }
        }
    };
    Ok(DynamicObject {
        types: Some(TypeMeta { api_version, kind }),
        metadata,
        data: Value::Object(map),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multi_document_yaml_and_lists_keep_positions() {
        let text = "apiVersion: v1\nkind: Service\nmetadata: {name: a}\n---\napiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Service\n  metadata: {name: b}\n- apiVersion: v1\n  kind: Service\n  metadata: {name: c}\n";
        let m = parse_bytes("f.yaml", text.as_bytes(), Format::Yaml).unwrap();
        let lines: Vec<(usize, usize)> = m.iter().map(|m| (m.pos.document, m.pos.line)).collect();
        assert_eq!(lines, vec![(1, 1), (2, 8), (2, 11)]);
    }

    #[test]
    fn concatenated_json_objects_are_read() {
        let text = "{\"apiVersion\":\"v1\",\"kind\":\"Service\"}\n{\"apiVersion\":\"v1\",\"kind\":\"Node\"}";
        let m = parse_bytes("f.json", text.as_bytes(), Format::Json).unwrap();
        assert_eq!(m.len(), 2);
        assert_eq!(m[1].pos.line, 2);
    }

    #[test]
    fn errors_name_file_and_line() {
        let err = parse_bytes("bad.yaml", b"a: 1\nb: [\n", Format::Yaml).unwrap_err();
        assert_eq!(err.file, "bad.yaml");
        assert!(err.line.is_some());
        let err = parse_bytes("bad.json", b"{\n\"a\": }", Format::Json).unwrap_err();
        assert_eq!(err.line, Some(2));
        let err = parse_bytes("bin.yaml", b"a: 1\nb: \xff\n", Format::Yaml).unwrap_err();
        assert_eq!((err.line, err.message.as_str()), (Some(2), "invalid UTF-8"));
        let err = parse_bytes("s.yaml", b"just a string\n", Format::Yaml).unwrap_err();
        assert!(
            err.to_string().starts_with("s.yaml:1: document is not"),
            "{err}"
        );
    }

    #[test]
    fn byte_order_marks_and_utf16_are_decoded_as_kubectl_decodes_them() {
        let yaml = "apiVersion: v1\nkind: Service\nmetadata: {name: a}\n";
        let json = r#"{"apiVersion":"v1","kind":"Service","metadata":{"name":"a"}}"#;
        let with_bom = |bom: &[u8], body: Vec<u8>| [bom, &body].concat();
        let le = |t: &str| {
            t.encode_utf16()
                .flat_map(u16::to_le_bytes)
                .collect::<Vec<u8>>()
        };
        let be = |t: &str| {
            t.encode_utf16()
                .flat_map(u16::to_be_bytes)
                .collect::<Vec<u8>>()
        };
        for (bytes, format) in [
            (with_bom(b"\xEF\xBB\xBF", yaml.into()), Format::Yaml),
            (with_bom(b"\xEF\xBB\xBF", json.into()), Format::Json),
            (with_bom(b"\xEF\xBB\xBF", json.into()), Format::Detect),
            (with_bom(b"\xFF\xFE", le(yaml)), Format::Yaml),
            (with_bom(b"\xFE\xFF", be(yaml)), Format::Yaml),
            (with_bom(b"\xFF\xFE", le(json)), Format::Json),
        ] {
            let m = parse_bytes("f", &bytes, format).unwrap();
            assert_eq!(m.len(), 1, "{bytes:?}");
            assert_eq!(m[0].value["metadata"]["name"], "a");
            assert_eq!(m[0].value["apiVersion"], "v1");
        }
        // Broken UTF-16 names its line; UTF-16 without a byte order mark is not guessed
        // (kubectl reads it as UTF-8 and refuses its NULs).
        let mut broken = with_bom(b"\xFF\xFE", le("a: 1\nb: "));
        broken.extend([0x00, 0xD8, b'x', 0]);
        let err = parse_bytes("f", &broken, Format::Yaml).unwrap_err();
        assert_eq!(
            (err.line, err.message.as_str()),
            (Some(2), "invalid UTF-16")
        );
        let err = parse_bytes("f", &le(yaml), Format::Yaml).unwrap_err();
        assert!(err.message.contains("U+0000"), "{err}");
    }

    #[test]
    fn any_object_with_items_is_a_list_and_a_list_in_a_list_is_refused() {
        // As kubectl v1.32 reads them (`kubectl label --local -f FILE -o json`).
        let text = "kind: Foo\nitems:\n- {kind: A}\n- {kind: B}\n---\nkind: List\nitems: null\n\
                    ---\nkind: List\n";
        let m = parse_bytes("f.yaml", text.as_bytes(), Format::Yaml).unwrap();
        let kinds: Vec<(&Value, usize)> =
            m.iter().map(|m| (&m.value["kind"], m.pos.line)).collect();
        assert_eq!(
            kinds,
            vec![(&"A".into(), 3), (&"B".into(), 4), (&"List".into(), 9)]
        );

        let nested = "kind: List\nitems:\n- {kind: A}\n- kind: List\n  items:\n  - {kind: B}\n";
        let err = parse_bytes("f.yaml", nested.as_bytes(), Format::Yaml).unwrap_err();
        assert_eq!(err.line, Some(4), "{err}");
        assert!(
            err.message
                .starts_with("items[1] of the List is itself a list"),
            "{err}"
        );
        let err = parse_bytes(
            "f.json",
            br#"{"kind":"ConfigMap","items":"x"}"#,
            Format::Json,
        )
        .unwrap_err();
        assert!(
            err.message.contains("items of the ConfigMap is not a list"),
            "{err}"
        );
    }

    #[test]
    fn concatenated_json_objects_and_list_items_get_their_lines() {
        let mut text = String::new();
        for i in 0..20_000 {
            text.push_str(&format!("{{\"kind\": \"Service\", \"n\": {i}}}\n"));
        }
        text.push_str(
            "{\"kind\": \"List\", \"items\": [\n  {\"kind\": \"A\"},\n\n  {\"kind\": \"B\"}]}\n",
        );
        text.push_str("  {\"kind\": \"C\"}");
        let m = parse_bytes("f.json", text.as_bytes(), Format::Json).unwrap();
        let lines: Vec<usize> = m.iter().map(|m| m.pos.line).collect();
        let mut want: Vec<usize> = (1..=20_000).collect();
        want.extend([20_002, 20_004, 20_005]);
        assert_eq!(lines, want);
    }

    #[test]
    fn objects_are_converted_as_they_are_read_one_document_at_a_time() {
        // Each document is handed over before the next is parsed: both objects before the
        // broken third document were converted when its error came.
        let converted = std::cell::Cell::new(0);
        let text = "kind: A\n---\nkind: B\n---\nkind: [\n";
        let err = parse_bytes_with("f.yaml", text.as_bytes(), Format::Yaml, &|_| {
            converted.set(converted.get() + 1)
        })
        .unwrap_err();
        assert_eq!((err.line, converted.get()), (Some(6), 2), "{err}");
        // Input read again from the top (stdin that looked like JSON but is YAML) is not
        // counted twice.
        let text = "{\"kind\": \"A\"}\n---\n{\"kind\": \"B\"}\n";
        let m = parse_bytes("-", text.as_bytes(), Format::Detect).unwrap();
        let docs: Vec<(usize, &Value)> = m
            .iter()
            .map(|m| (m.pos.document, &m.value["kind"]))
            .collect();
        assert_eq!(docs, vec![(1, &"A".into()), (2, &"B".into())]);
    }

    #[test]
    fn dynamic_object_keeps_metadata_out_of_data() {
        let v: Value = serde_json::from_str(r#"{"apiVersion":"apps/v1","kind":"StatefulSet","metadata":{"name":"w","labels":{"a":"b"}},"spec":{"replicas":2}}"#).unwrap();
        let d = into_object(v).unwrap();
        assert_eq!(d.metadata.name.as_deref(), Some("w"));
        assert_eq!(d.data, serde_json::json!({"spec": {"replicas": 2}}));
        let bad: Value = serde_json::from_str(
            r#"{"apiVersion":"v1","kind":"Service","metadata":{"labels":{"a":1}}}"#,
        )
        .unwrap();
        assert!(
            into_object(bad)
                .unwrap_err()
                .starts_with("metadata.labels.a: ")
        );
    }
}
