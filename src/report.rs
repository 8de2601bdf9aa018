//! `check` and `audit` output: text for people, JSON for scripts, SARIF 2.1.0 for code
//! scanning, and the per-namespace, per-rule summary of `audit`.

use crate::check::CheckReport;
use crate::vocabulary::{Action, Effect, RULES, RuleFacts, RuleId};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::fmt::Write;

pub fn text(report: &CheckReport) -> String {
    let mut out = findings_text(report);
    out.push_str(&summary_line(report));
    out
}

/// One line per violation, warning note and unreadable object, each led by where the object
/// was read (nothing for objects from a live cluster: the message names them).
pub fn findings_text(report: &CheckReport) -> String {
    let mut out = String::new();
    for obj in &report.objects {
        let at = obj
            .pos
            .as_ref()
            .map(|pos| format!("{pos}: "))
            .unwrap_or_default();
        for v in &obj.decision.violations {
            let level = match v.action {
                Action::Deny => "DENY",
                _ => "WARN",
            };
            let _ = writeln!(out, "{at}{level} {v}");
            let _ = writeln!(out, "    field: {}", v.field);
        }
        for note in &obj.decision.notes {
            let _ = writeln!(out, "{at}WARN {note}");
        }
        if let Some(invalid) = &obj.decision.invalid {
            let _ = writeln!(out, "{at}DENY {invalid}");
        }
    }
    out
}

/// `N objects checked, M skipped: D denied, W with warnings.`
pub fn summary_line(report: &CheckReport) -> String {
    let checked = report.checked();
    format!(
        "{checked} objects checked, {} skipped: {} denied, {} with warnings.\n",
        report.total() - checked,
        report.denied(),
        report.warned()
    )
}

/// Denials and warnings counted by namespace, then rule (unreadable objects count under
/// `invalid-object`).
pub type RuleCounts = BTreeMap<String, BTreeMap<&'static str, Counts>>;

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub deny: usize,
    pub warn: usize,
}

pub fn by_namespace_and_rule(report: &CheckReport) -> RuleCounts {
    let mut counts = RuleCounts::new();
    for obj in &report.objects {
        let by_rule = counts.entry(obj.namespace.clone()).or_default();
        for v in &obj.decision.violations {
            let c = by_rule.entry(v.rule.as_str()).or_default();
            match v.action {
                Action::Deny => c.deny += 1,
                _ => c.warn += 1,
            }
        }
        if obj.decision.invalid.is_some() {
            by_rule.entry("invalid-object").or_default().deny += 1;
        }
        if by_rule.is_empty() {
            counts.remove(&obj.namespace);
        }
    }
    counts
}

/// The per-namespace, per-rule table, aligned for a terminal.
pub fn summary_table(counts: &RuleCounts) -> String {
    let mut rows: Vec<[String; 4]> = vec![["NAMESPACE", "RULE", "DENY", "WARN"].map(String::from)];
    for (namespace, by_rule) in counts {
        for (rule, c) in by_rule {
            rows.push([
                namespace.clone(),
                rule.to_string(),
                c.deny.to_string(),
                c.warn.to_string(),
            ]);
        }
    }
    let widths: Vec<usize> = (0..4)
        .map(|i| rows.iter().map(|r| r[i].len()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in &rows {
        let line = format!(
            "{:<w0$}  {:<w1$}  {:>w2$}  {:>w3$}",
            row[0],
            row[1],
            row[2],
            row[3],
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2],
            w3 = widths[3]
        );
        let _ = writeln!(out, "{}", line.trim_end());
    }
    out
}

/// The same table as JSON: `{"namespace": {"rule": {"deny": n, "warn": n}}}`.
pub fn summary_json(counts: &RuleCounts) -> Value {
    let map: serde_json::Map<String, Value> = counts
        .iter()
        .map(|(namespace, by_rule)| {
            let rules: serde_json::Map<String, Value> = by_rule
                .iter()
                .map(|(rule, c)| (rule.to_string(), json!({"deny": c.deny, "warn": c.warn})))
                .collect();
            (namespace.clone(), Value::Object(rules))
        })
        .collect();
    Value::Object(map)
}

pub fn json(report: &CheckReport) -> Value {
    let objects: Vec<Value> = report
        .objects
        .iter()
        .map(|o| {
            let mut object = json!({
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
            });
            if let Some(pos) = &o.pos {
                object["file"] = json!(&*pos.file);
                object["document"] = json!(pos.document);
                object["line"] = json!(pos.line);
            }
            object
        })
        .collect();
    json!({
        "summary": {
            "objects": report.total(),
            "checked": report.checked(),
            "denied": report.denied(),
        },
        "objects": objects,
    })
}

/// SARIF 2.1.0 as GitHub code scanning accepts it: every rule described in the driver, one
/// result per violation with the file and line of the object.
pub fn sarif(report: &CheckReport) -> Value {
    // The validating rules of the rule table, in its order; `ruleIndex` points into this list.
    let described: Vec<(&RuleFacts, Action)> = RULES
        .iter()
        .filter_map(|r| match r.effect {
            Effect::Validating { default, .. } => Some((r, default)),
            Effect::Mutating => None,
        })
        .collect();
    let rules: Vec<Value> = described
        .iter()
        .map(|(r, default)| {
            let level = match default {
                Action::Deny => "error",
                _ => "warning",
            };
            json!({
                "id": r.id,
                "name": r.id,
                "shortDescription": {"text": r.summary},
                "fullDescription": {"text": r.summary},
                "defaultConfiguration": {"level": level},
                "help": {"text": format!("{} See the sts-guard README, section \"Rules\".", r.summary)},
            })
        })
        .collect();
    let index_of = |rule: RuleId| {
        described
            .iter()
            .position(|(r, _)| r.rule == rule)
            .unwrap_or(0)
    };
    let results: Vec<Value> = report
        .violations()
        .map(|(o, v)| {
            let mut location = json!({
                "logicalLocations": [{
                    "name": format!("{}/{}", o.namespace, o.name),
                    "kind": "object",
                    "fullyQualifiedName": v.object.to_string(),
                }],
            });
            // Objects from a live cluster have no file: the logical location alone names them.
            if let Some(pos) = &o.pos {
                location["physicalLocation"] = json!({
                    "artifactLocation": {"uri": sarif_uri(&pos.file)},
                    "region": {"startLine": pos.line},
                });
            }
            json!({
                "ruleId": v.rule.as_str(),
                "ruleIndex": index_of(v.rule),
                "level": if v.action == Action::Deny { "error" } else { "warning" },
                "message": {"text": v.to_string()},
                "locations": [location],
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
