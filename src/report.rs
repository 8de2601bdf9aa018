//! `check` output: text for people, JSON for scripts, SARIF 2.1.0 for code scanning.

use crate::check::CheckReport;
use crate::rules::{Action, RuleId};
use serde_json::{Value, json};
use std::fmt::Write;

pub fn text(report: &CheckReport) -> String {
    let mut out = String::new();
    for obj in &report.objects {
        for v in &obj.decision.violations {
            let level = match v.action {
                Action::Deny => "DENY",
                _ => "WARN",
            };
            let _ = writeln!(out, "{}: {level} {v}", obj.pos);
            let _ = writeln!(out, "    field: {}", v.field);
        }
        for note in &obj.decision.notes {
            let _ = writeln!(out, "{}: WARN {note}", obj.pos);
        }
        if let Some(invalid) = &obj.decision.invalid {
            let _ = writeln!(out, "{}: DENY {invalid}", obj.pos);
        }
    }
    let checked = report
        .objects
        .iter()
        .filter(|o| o.skipped.is_none())
        .count();
    let warned = report
        .objects
        .iter()
        .filter(|o| o.verdict() == "warn")
        .count();
    let _ = writeln!(
        out,
        "{checked} objects checked, {} skipped: {} denied, {warned} with warnings.",
        report.objects.len() - checked,
        report.denied()
    );
    out
}

pub fn json(report: &CheckReport) -> Value {
    let objects: Vec<Value> = report
        .objects
        .iter()
        .map(|o| {
            json!({
                "file": &*o.pos.file,
                "document": o.pos.document,
                "line": o.pos.line,
                "kind": o.kind,
                "namespace": o.namespace,
                "name": o.name,
                "verdict": o.verdict(),
                "skipped": o.skipped,
                "violations": o.decision.violations.iter().map(|v| json!({
                    "rule": v.rule.as_str(),
                    "action": v.action.as_str(),
                    "field": v.field,
                    "message": v.to_string(),
                    "problem": v.problem,
                    "hint": v.hint,
                })).collect::<Vec<_>>(),
                "warnings": o.decision.notes,
                "invalid": o.decision.invalid,
            })
        })
        .collect();
    json!({
        "summary": {
            "objects": report.objects.len(),
            "checked": report.objects.iter().filter(|o| o.skipped.is_none()).count(),
            "denied": report.denied(),
        },
        "objects": objects,
    })
}

/// SARIF 2.1.0 as GitHub code scanning accepts it: every rule described in the driver, one
/// result per violation with the file and line of the object.
pub fn sarif(report: &CheckReport) -> Value {
    let rules: Vec<Value> = RuleId::ALL
        .iter()
        .filter(|r| !r.is_mutating())
        .map(|r| {
            let level = match r.default_action() {
                Some(Action::Deny) => "error",
                _ => "warning",
            };
            json!({
                "id": r.as_str(),
                "name": r.as_str(),
                "shortDescription": {"text": r.summary()},
                "fullDescription": {"text": r.summary()},
                "defaultConfiguration": {"level": level},
                "help": {"text": format!("{} See the sts-guard README, section \"Rules\".", r.summary())},
            })
        })
        .collect();
    let index_of = |rule: RuleId| {
        RuleId::ALL
            .iter()
            .filter(|r| !r.is_mutating())
            .position(|r| *r == rule)
            .unwrap_or(0)
    };
    let results: Vec<Value> = report
        .violations()
        .map(|(o, v)| {
            json!({
                "ruleId": v.rule.as_str(),
                "ruleIndex": index_of(v.rule),
                "level": if v.action == Action::Deny { "error" } else { "warning" },
                "message": {"text": v.to_string()},
                "locations": [{
                    "physicalLocation": {
                        "artifactLocation": {"uri": sarif_uri(&o.pos.file)},
                        "region": {"startLine": o.pos.line},
                    },
                    "logicalLocations": [{
                        "name": format!("{}/{}", o.namespace, o.name),
                        "kind": "object",
                        "fullyQualifiedName": v.object.to_string(),
                    }],
                }],
                "partialFingerprints": {
                    "stsGuardObject/v1": format!("{}:{}:{}", v.rule, v.object, v.field),
                },
            })
        })
        .collect();
    json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {
                "name": "sts-guard",
                "version": env!("CARGO_PKG_VERSION"),
                "informationUri": "https://github.com/sts-guard/sts-guard",
                "rules": rules,
            }},
            "results": results,
        }],
    })
}

/// A relative path with forward slashes, as code scanning maps it onto the repository.
fn sarif_uri(file: &str) -> String {
    let file = file.strip_prefix("./").unwrap_or(file);
    if file == "<stdin>" {
        return "stdin".to_string();
    }
    file.replace('\\', "/")
}
