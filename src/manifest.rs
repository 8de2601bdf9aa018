//! Reading Kubernetes objects from files, directories and stdin, as `check` and
//! `serve --manifests` need them: multi-document YAML, JSON (one or several concatenated
//! objects), and `kind: List`. Every error names the file and, where there is one, the line.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube_core::{DynamicObject, TypeMeta};
use serde::Deserialize;
use serde_json::Value;
use std::collections::HashSet;
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

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
/// are parsed on all cores (CI often passes hundreds of them).
pub fn read_paths(paths: &[String]) -> (Vec<Manifest>, Vec<LoadError>) {
    enum Input {
        Stdin,
        File(PathBuf),
    }
    let mut inputs = Vec::new();
    let mut errors = Vec::new();
    let mut seen_dirs = HashSet::new();
    let mut stdin_listed = false;
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
        inputs.extend(files.into_iter().map(Input::File));
    }
    let read_one = |input: &Input| -> FileResult {
        match input {
            Input::Stdin => {
                let mut bytes = Vec::new();
                std::io::stdin()
                    .read_to_end(&mut bytes)
                    .map_err(|e| LoadError {
                        file: "<stdin>".into(),
                        line: None,
                        message: format!("cannot read: {e}"),
                    })?;
                parse_bytes("<stdin>", &bytes, Format::Detect)
            }
            Input::File(file) => {
                let name = file.display().to_string();
                let bytes = std::fs::read(file).map_err(|e| LoadError {
                    file: name.clone(),
                    line: None,
                    message: format!("cannot read: {e}"),
                })?;
                parse_bytes(&name, &bytes, Format::from_path(file))
            }
        }
    };
    let workers = std::thread::available_parallelism()
        .map(usize::from)
        .unwrap_or(1)
        .min(inputs.len().max(1));
    let results: Vec<FileResult> = if workers <= 1 {
        inputs.iter().map(read_one).collect()
    } else {
        let next = std::sync::atomic::AtomicUsize::new(0);
        let slots: Vec<std::sync::Mutex<Option<FileResult>>> =
            inputs.iter().map(|_| std::sync::Mutex::new(None)).collect();
        std::thread::scope(|scope| {
            for _ in 0..workers {
                scope.spawn(|| {
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(input) = inputs.get(i) else { break };
                        let result = read_one(input);
                        *slots[i].lock().unwrap_or_else(|e| e.into_inner()) = Some(result);
                    }
                });
            }
        });
        slots
            .into_iter()
            .filter_map(|slot| slot.into_inner().unwrap_or_else(|e| e.into_inner()))
            .collect()
    };
    let mut manifests = Vec::new();
    for result in results {
        collect(result, &mut manifests, &mut errors);
    }
    (manifests, errors)
}

/// The objects of one input, or why it could not be read.
type FileResult = Result<Vec<Manifest>, LoadError>;

fn collect(
    result: Result<Vec<Manifest>, LoadError>,
    manifests: &mut Vec<Manifest>,
    errors: &mut Vec<LoadError>,
) {
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

/// Lists the manifest files under `path`. A path named explicitly is read whatever its
/// extension; inside directories only manifest extensions count. Symlinked directories are
/// followed once (a loop is not an endless walk).
fn expand_path(
    path: &Path,
    explicit: bool,
    files: &mut Vec<PathBuf>,
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
            files.push(path.to_path_buf());
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
    let text = std::str::from_utf8(bytes).map_err(|e| {
        let line = bytes[..e.valid_up_to()]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1;
        LoadError {
            file: file.to_string(),
            line: Some(line),
            message: "invalid UTF-8".into(),
        }
    })?;
    let file: Arc<str> = Arc::from(file);
    let docs = match format {
        Format::Json => parse_json(&file, text)?,
        Format::Yaml => parse_yaml(&file, text)?,
        Format::Detect => {
            let trimmed = text.trim_start();
            match trimmed.starts_with('{') || trimmed.starts_with('[') {
                true => parse_json(&file, text).or_else(|_| parse_yaml(&file, text))?,
                false => parse_yaml(&file, text)?,
            }
        }
    };
    let mut out = Vec::new();
    for doc in docs {
        expand_document(&file, doc, &mut out)?;
    }
    Ok(out)
}

fn parse_yaml(file: &Arc<str>, text: &str) -> Result<Vec<crate::yaml::Document>, LoadError> {
    crate::yaml::parse_stream(text).map_err(|e| LoadError {
        file: file.to_string(),
        line: Some(e.line),
        message: format!("YAML: {} (column {})", e.message, e.column),
    })
}

fn parse_json(file: &Arc<str>, text: &str) -> Result<Vec<crate::yaml::Document>, LoadError> {
    let mut docs = Vec::new();
    let mut stream = serde_json::Deserializer::from_str(text).into_iter::<Value>();
    loop {
        let start = stream.byte_offset();
        match stream.next() {
            None => break,
            Some(Ok(value)) => {
                let skipped = text[start..].len() - text[start..].trim_start().len();
                let line = text[..start + skipped].matches('\n').count() + 1;
                // Item lines of a JSON List: JSON is YAML, so the YAML reader can place them.
                let item_lines = match value.get("items") {
                    Some(Value::Array(_)) => {
                        crate::yaml::parse_stream(&text[start..stream.byte_offset()])
                            .ok()
                            .and_then(|d| d.into_iter().next())
                            .map(|d| {
                                let first = text[..start].matches('\n').count();
                                d.item_lines.iter().map(|l| l + first).collect()
                            })
                            .unwrap_or_default()
                    }
                    _ => Vec::new(),
                };
                docs.push(crate::yaml::Document {
                    line,
                    value,
                    item_lines,
                });
            }
            Some(Err(e)) => {
                return Err(LoadError {
                    file: file.to_string(),
                    line: Some(e.line()),
                    message: format!("JSON: {e}"),
                });
            }
        }
    }
    Ok(docs)
}

/// One document is one object, or a `kind: List` (or `ServiceList`, ...) of objects.
fn expand_document(
    file: &Arc<str>,
    doc: crate::yaml::Document,
    out: &mut Vec<Manifest>,
) -> Result<(), LoadError> {
    let document = out.last().map_or(0, |m: &Manifest| m.pos.document) + 1;
    let err = |line: usize, message: String| LoadError {
        file: file.to_string(),
        line: Some(line),
        message,
    };
    let Value::Object(map) = &doc.value else {
        return Err(err(
            doc.line,
            "document is not a Kubernetes object (expected a map)".into(),
        ));
    };
    let kind = map.get("kind").and_then(Value::as_str).unwrap_or("");
    if kind.ends_with("List") && map.get("items").is_some_and(Value::is_array) {
        let Some(Value::Array(items)) = map.get("items") else {
            unreachable!("checked above")
        };
        for (i, item) in items.iter().enumerate() {
            let line = doc.item_lines.get(i).copied().unwrap_or(doc.line);
            if !item.is_object() {
                return Err(err(
                    line,
                    format!("items[{i}] of the {kind} is not an object"),
                ));
            }
            out.push(Manifest {
                pos: SourcePos {
                    file: file.clone(),
                    document,
                    line,
                },
                value: item.clone(),
            });
        }
        return Ok(());
    }
    out.push(Manifest {
        pos: SourcePos {
            file: file.clone(),
            document,
            line: doc.line,
        },
        value: doc.value,
    });
    Ok(())
}

/// Turns a manifest into the `DynamicObject` the engine reads. Errors name the field path.
pub fn to_dynamic(value: Value) -> Result<DynamicObject, String> {
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
    fn dynamic_object_keeps_metadata_out_of_data() {
        let v: Value = serde_json::from_str(r#"{"apiVersion":"apps/v1","kind":"StatefulSet","metadata":{"name":"w","labels":{"a":"b"}},"spec":{"replicas":2}}"#).unwrap();
        let d = to_dynamic(v).unwrap();
        assert_eq!(d.metadata.name.as_deref(), Some("w"));
        assert_eq!(d.data, serde_json::json!({"spec": {"replicas": 2}}));
        let bad: Value = serde_json::from_str(
            r#"{"apiVersion":"v1","kind":"Service","metadata":{"labels":{"a":1}}}"#,
        )
        .unwrap();
        assert!(
            to_dynamic(bad)
                .unwrap_err()
                .starts_with("metadata.labels.a: ")
        );
    }
}
