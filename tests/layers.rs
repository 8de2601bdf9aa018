//! The module layers of `src/`, checked: `cargo test --test layers`.
//!
//! Every `crate::…` and `super::…` path in `src/**/*.rs` (outside comments, strings,
//! `#[cfg(test)]` items and `#![cfg(test)]` files) is an edge from the file's top-level module
//! to the module it names.
//! The test fails when an edge points up [`LAYERS`], when the top-level modules import each
//! other in a loop (printed with file:line of every edge), or when a module is in no layer.
//! Imports within one top-level module (`cli::serve` → `cli`) are not edges.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Bottom first. A module may import its own layer and the layers below it, never above.
const LAYERS: &[(&str, &[&str])] = &[
    // Plain words: rule ids, actions, findings, the rule table, kinds; the YAML reader; how
    // the process asks memory of the kernel and copies it.
    (
        "vocabulary",
        &["vocabulary", "yaml", "allocator", "mem_copy"],
    ),
    // Typed views of objects and the structs they are decoded from; manifests read from files
    // into objects; the AdmissionReview envelope.
    (
        "views",
        &["shape", "model", "subject", "manifest", "request"],
    ),
    // Answers lookups (files, watch caches); knows nothing of rules or the engine.
    ("inventory", &["inventory"]),
    // Validating and mutating rules, each with the parameter struct it takes.
    ("rules", &["rules"]),
    // The config file: rule actions and the rules' parameter structs.
    ("config", &["config"]),
    // Evaluation, policy, and live confirmation of cache answers.
    ("engine", &["engine"]),
    // The ways in: AdmissionReview bodies, the HTTPS server (and its batched log writer),
    // manifest check, cluster audit, reports.
    (
        "transports",
        &[
            "admission",
            "server",
            "log_writer",
            "check",
            "audit",
            "report",
        ],
    ),
    // One file per command, each owning its arguments.
    ("cli", &["cli"]),
];

/// One `crate::`/`super::` path that leaves its file's top-level module.
#[derive(Debug, Clone)]
struct Edge {
    from: String,
    to: String,
    file: String,
    line: usize,
}

#[test]
fn imports_point_down_the_layers_without_cycles() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&root, &mut files);
    let mut edges = Vec::new();
    let mut modules = BTreeSet::new();
    for file in &files {
        let rel = file.strip_prefix(&root).unwrap();
        let Some(module) = module_path(rel) else {
            continue; // lib.rs and main.rs: the crate root declares modules, imports none
        };
        modules.insert(module[0].clone());
        let text = std::fs::read_to_string(file).unwrap();
        // A file that is test code as a whole imports what tests import.
        if blank_comments_and_literals(&text).contains("#![cfg(test)]") {
            continue;
        }
        let shown = format!("src/{}", rel.display());
        edges.extend(edges_of(&module, &text, &shown));
    }

    let layer_of = |module: &str| LAYERS.iter().position(|(_, mods)| mods.contains(&module));
    let mut problems = Vec::new();
    for module in &modules {
        if layer_of(module).is_none() {
            problems.push(format!("module `{module}` is in no layer of LAYERS"));
        }
    }
    for edge in &edges {
        if let (Some(from), Some(to)) = (layer_of(&edge.from), layer_of(&edge.to))
            && to > from
        {
            problems.push(format!(
                "{}:{}: `{}` ({}) imports `{}` ({}), a layer above it",
                edge.file, edge.line, edge.from, LAYERS[from].0, edge.to, LAYERS[to].0
            ));
        }
    }
    for cycle in cycles(&edges) {
        let mut text = format!(
            "import cycle {} -> {}:",
            cycle
                .iter()
                .map(|e| e.from.as_str())
                .collect::<Vec<_>>()
                .join(" -> "),
            cycle[0].from
        );
        for edge in &cycle {
            text.push_str(&format!(
                "\n    {} -> {} at {}:{}",
                edge.from, edge.to, edge.file, edge.line
            ));
        }
        problems.push(text);
    }
    assert!(
        problems.is_empty(),
        "the layers of src/ are broken:\n{}",
        problems.join("\n")
    );
    assert!(
        edges.len() > 20,
        "found only {} imports: is the scan broken?",
        edges.len()
    );
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `engine/evaluator.rs` → `[engine, evaluator]`; `engine/mod.rs` and `engine.rs` → `[engine]`.
fn module_path(rel: &Path) -> Option<Vec<String>> {
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_string())
        .collect();
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    match parts.as_slice() {
        [] => None,
        [only] if only == "lib" || only == "main" => None,
        _ => Some(parts),
    }
}

/// The edges one file adds: the top-level module each `crate::`/`super::` path names.
fn edges_of(module: &[String], text: &str, file: &str) -> Vec<Edge> {
    let code = strip(text);
    let mut edges = Vec::new();
    for (i, line) in code.lines().enumerate() {
        for target in targets(line, module) {
            if target != module[0] {
                edges.push(Edge {
                    from: module[0].clone(),
                    to: target,
                    file: file.to_string(),
                    line: i + 1,
                });
            }
        }
    }
    edges
}

/// The top-level modules the paths on one (stripped) line lead to.
fn targets(line: &str, module: &[String]) -> Vec<String> {
    let bytes = line.as_bytes();
    let mut found = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let starts_word = i == 0 || !is_ident(bytes[i - 1]);
        if !starts_word || !is_ident(bytes[i]) {
            i += 1;
            continue;
        }
        let mut end = i;
        while end < bytes.len() && is_ident(bytes[end]) {
            end += 1;
        }
        let word = &line[i..end];
        if (word == "crate" || word == "super") && line[end..].starts_with("::") {
            // Resolve `super::super::…` against the file's module path.
            let mut base: Vec<String> = if word == "crate" {
                Vec::new()
            } else {
                module[..module.len() - 1].to_vec()
            };
            let mut rest = &line[end + 2..];
            while let Some(after) = rest.strip_prefix("super::") {
                base.pop();
                rest = after;
            }
            let consumed = line.len() - rest.len();
            if let Some(first) = base.first() {
                found.push(first.clone());
            } else if let Some(group) = rest.strip_prefix('{') {
                found.extend(group_heads(group));
            } else {
                let head: String = rest
                    .bytes()
                    .take_while(|&b| is_ident(b))
                    .map(char::from)
                    .collect();
                if !head.is_empty() && head != "self" {
                    found.push(head);
                }
            }
            i = consumed;
        } else {
            i = end;
        }
    }
    found
}

/// `a::X, b::{Y, Z}, c}` → `[a, b, c]`: the first name of each top-level item of a use group.
fn group_heads(group: &str) -> Vec<String> {
    let mut heads = Vec::new();
    let mut depth = 0;
    let mut at_item_start = true;
    for (i, b) in group.bytes().enumerate() {
        match b {
            b'{' => depth += 1,
            b'}' if depth == 0 => break,
            b'}' => depth -= 1,
            b',' if depth == 0 => at_item_start = true,
            _ if at_item_start && is_ident(b) => {
                let head: String = group[i..]
                    .bytes()
                    .take_while(|&b| is_ident(b))
                    .map(char::from)
                    .collect();
                if head != "self" {
                    heads.push(head);
                }
                at_item_start = false;
            }
            _ => {}
        }
    }
    heads
}

fn is_ident(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// The code with comments, string and char literals and `#[cfg(test)]` items blanked out;
/// newlines are kept so line numbers still hold.
fn strip(text: &str) -> String {
    let code = blank_comments_and_literals(text);
    let mut b = code.into_bytes();
    let marker = b"#[cfg(test)]";
    let mut i = 0;
    while i + marker.len() <= b.len() {
        if b[i..].starts_with(marker) {
            let end = item_end(&b, i + marker.len());
            for c in &mut b[i..end] {
                if *c != b'\n' {
                    *c = b' ';
                }
            }
            i = end;
        } else {
            i += 1;
        }
    }
    String::from_utf8(b).unwrap()
}

fn blank_comments_and_literals(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    let blank = |out: &mut Vec<u8>, bytes: &[u8]| {
        out.extend(bytes.iter().map(|&c| if c == b'\n' { b'\n' } else { b' ' }));
    };
    while i < b.len() {
        let rest = &b[i..];
        let end = if rest.starts_with(b"//") {
            i + rest.iter().position(|&c| c == b'\n').unwrap_or(rest.len())
        } else if rest.starts_with(b"/*") {
            let mut depth = 0;
            let mut j = i;
            loop {
                if b[j..].starts_with(b"/*") {
                    depth += 1;
                    j += 2;
                } else if b[j..].starts_with(b"*/") {
                    depth -= 1;
                    j += 2;
                    if depth == 0 {
                        break j;
                    }
                } else {
                    j += 1;
                }
                if j >= b.len() {
                    break b.len();
                }
            }
        } else if let Some(hashes) = raw_string_start(b, i) {
            let open = i + rest.iter().position(|&c| c == b'"').unwrap() + 1;
            let mut close = Vec::from(&b"\""[..]);
            close.extend(std::iter::repeat_n(b'#', hashes));
            let mut j = open;
            while j < b.len() && !b[j..].starts_with(&close) {
                j += 1;
            }
            (j + close.len()).min(b.len())
        } else if rest[0] == b'"' && (i == 0 || !is_ident(b[i - 1]) || b[i - 1] == b'b') {
            let mut j = i + 1;
            while j < b.len() && b[j] != b'"' {
                j += if b[j] == b'\\' { 2 } else { 1 };
            }
            (j + 1).min(b.len())
        } else if rest[0] == b'\'' {
            // A char literal ('x', '\n', '\u{1F600}'), not a lifetime ('a).
            match (rest.get(1), rest.get(2)) {
                (Some(b'\\'), _) => {
                    i + 3
                        + rest
                            .get(3..)
                            .and_then(|r| r.iter().position(|&c| c == b'\''))
                            .unwrap_or(0)
                        + 1
                }
                (Some(_), Some(b'\'')) => i + 3,
                _ => i + 1,
            }
        } else {
            out.push(b[i]);
            i += 1;
            continue;
        };
        blank(&mut out, &b[i..end]);
        i = end;
    }
    String::from_utf8(out).unwrap()
}

/// `r"`, `r#"`, `br##"`: the number of hashes of a raw string starting at `i`.
fn raw_string_start(b: &[u8], i: usize) -> Option<usize> {
    if i > 0 && is_ident(b[i - 1]) {
        return None;
    }
    let mut j = i;
    if b.get(j) == Some(&b'b') {
        j += 1;
    }
    if b.get(j) != Some(&b'r') {
        return None;
    }
    j += 1;
    let hashes = b[j..].iter().take_while(|&&c| c == b'#').count();
    (b.get(j + hashes) == Some(&b'"')).then_some(hashes)
}

/// The end of the item starting at `i`: its first `;` at brace depth 0, or its closing `}`.
/// Runs on code whose strings and comments are already blanked.
fn item_end(b: &[u8], i: usize) -> usize {
    let mut depth = 0usize;
    let mut j = i;
    while j < b.len() {
        match b[j] {
            b'{' => depth += 1,
            b'}' => {
                depth -= 1;
                if depth == 0 {
                    return j + 1;
                }
            }
            b';' if depth == 0 => return j + 1,
            _ => {}
        }
        j += 1;
    }
    b.len()
}

/// Each cycle between top-level modules once, as the edges that close it.
fn cycles(edges: &[Edge]) -> Vec<Vec<Edge>> {
    let mut graph: BTreeMap<&str, BTreeMap<&str, &Edge>> = BTreeMap::new();
    for edge in edges {
        graph
            .entry(edge.from.as_str())
            .or_default()
            .entry(edge.to.as_str())
            .or_insert(edge);
    }
    let mut found: Vec<Vec<Edge>> = Vec::new();
    let mut seen: BTreeSet<BTreeSet<String>> = BTreeSet::new();
    for &start in graph.keys() {
        // Breadth-first from `start`'s neighbours back to `start`: the shortest loop through it.
        let mut came_from: BTreeMap<&str, &Edge> = BTreeMap::new();
        let mut queue: std::collections::VecDeque<&str> = [start].into();
        while let Some(node) = queue.pop_front() {
            for (&next, &edge) in graph.get(node).into_iter().flatten() {
                if came_from.contains_key(next) {
                    continue;
                }
                came_from.insert(next, edge);
                if next == start {
                    queue.clear();
                    break;
                }
                queue.push_back(next);
            }
        }
        let Some(&last) = came_from.get(start) else {
            continue;
        };
        let mut cycle = vec![last.clone()];
        let mut at = last.from.as_str();
        while at != start {
            let edge = came_from[at];
            cycle.push(edge.clone());
            at = edge.from.as_str();
        }
        cycle.reverse();
        let members: BTreeSet<String> = cycle.iter().map(|e| e.from.clone()).collect();
        if seen.insert(members) {
            found.push(cycle);
        }
    }
    found
}

#[test]
fn the_scan_reads_paths_and_skips_comments_strings_and_tests() {
    let module = vec!["engine".to_string(), "evaluator".to_string()];
    let text = r##"
use crate::rules::{Findings, RuleId};
use crate::{config::Config, inventory::{Inventory, Lookup}, self};
use super::Decision;
use super::super::model::ObjectRef;
// use crate::cli::Cli;
/* use crate::server; /* nested */ use crate::check; */
const S: &str = "crate::audit::run";
const R: &str = r#"crate::report "quoted" text"#;
fn f<'a>(x: &'a str) -> char { let _ = crate::yaml::parse(x); '"' }
#[cfg(test)]
mod tests {
    use crate::admission::review;
}
#[cfg(test)]
use crate::manifest::Manifest;
fn g() { crate::vocabulary::Kind::Pod; }
"##;
    let edges = edges_of(&module, text, "x.rs");
    let found: Vec<(String, usize)> = edges.iter().map(|e| (e.to.clone(), e.line)).collect();
    let expect = |m: &str, line: usize| (m.to_string(), line);
    assert_eq!(
        found,
        [
            expect("rules", 2),
            expect("config", 3),
            expect("inventory", 3),
            expect("model", 5),
            expect("yaml", 10),
            expect("vocabulary", 17),
        ]
    );
}

#[test]
fn a_loop_is_reported_with_every_edge() {
    let edge = |from: &str, to: &str, line| Edge {
        from: from.into(),
        to: to.into(),
        file: format!("src/{from}.rs"),
        line,
    };
    let edges = [
        edge("a", "b", 1),
        edge("b", "c", 2),
        edge("c", "a", 3),
        edge("c", "d", 4),
    ];
    let found = cycles(&edges);
    assert_eq!(found.len(), 1);
    let lines: Vec<usize> = found[0].iter().map(|e| e.line).collect();
    assert_eq!(lines, [1, 2, 3]);
}
