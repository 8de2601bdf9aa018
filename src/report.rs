//! What `check` and `audit` found (the report types both fill) and their output: text for people, JSON for scripts, SARIF 2.1.0 for code
//! scanning, the per-namespace, per-rule summary of `audit`, and `audit`'s policy reports
//! (`wgpolicyk8s.io` PolicyReports, `openreports.io` Reports).

use crate::engine::{Decision, Violation};
use crate::manifest::SourcePos;
use crate::vocabulary::{Action, Effect, Kind, ObjectRef, RULES, RuleFacts, RuleId};
use k8s_openapi::jiff::Timestamp;
use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fmt::Write;

/// The verdict on one object.
pub struct ObjectResult {
    /// Where the object was read; `None` for objects read from a live cluster (`audit`).
    pub pos: Option<SourcePos>,
    pub kind: String,
    pub namespace: String,
    pub name: String,
    /// `None` when the object was checked; why not otherwise.
    pub skipped: Option<&'static str>,
    pub decision: Decision,
}

impl ObjectResult {
    pub fn verdict(&self) -> &'static str {
        if self.skipped.is_some() {
            "skipped"
        } else if !self.decision.allowed() {
            "deny"
        } else if self.decision.has_warnings() {
            "warn"
        } else {
            "ok"
        }
    }
}

#[derive(Default)]
pub struct CheckReport {
    pub objects: Vec<ObjectResult>,
    /// Objects checked without any finding that are counted but not listed in `objects`
    /// (`audit` lists only objects with something to say; `check` lists every object).
    pub unlisted_ok: usize,
    /// Objects skipped (excluded namespace) that are counted but not listed.
    pub unlisted_skipped: usize,
}

impl CheckReport {
    pub fn denied(&self) -> usize {
        self.objects
            .iter()
            .filter(|o| o.verdict() == "deny")
            .count()
    }

    /// Every object, listed or not.
    pub fn total(&self) -> usize {
        self.objects.len() + self.unlisted_ok + self.unlisted_skipped
    }

    /// Objects that were checked (not skipped), listed or not.
    pub fn checked(&self) -> usize {
        self.objects.iter().filter(|o| o.skipped.is_none()).count() + self.unlisted_ok
    }

    pub fn warned(&self) -> usize {
        self.objects
            .iter()
            .filter(|o| o.verdict() == "warn")
            .count()
    }

    pub fn violations(&self) -> impl Iterator<Item = (&ObjectResult, &Violation)> {
        self.objects
            .iter()
            .flat_map(|o| o.decision.violations.iter().map(move |v| (o, v)))
    }
}

/// Objects read from the cluster, by kind.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Listed {
    pub nodes: usize,
    pub services: usize,
    pub statefulsets: usize,
    /// StatefulSet pods (those labelled `statefulset.kubernetes.io/pod-name`).
    pub pods: usize,
    /// PersistentVolumeClaims (listed only when a StatefulSet has claim templates).
    pub claims: usize,
    /// ControllerRevisions read (the update revision of each rollout under way).
    pub revisions: usize,
}

/// What one audit (`sts-guard audit`, or `serve`'s background audit) found in a live cluster.
pub struct AuditReport {
    /// The objects with findings (others are counted in `unlisted_ok`/`unlisted_skipped`),
    /// in namespace, kind and name order.
    pub report: CheckReport,
    pub listed: Listed,
    /// When the read began; the time the rules judged ages against.
    pub at: Timestamp,
    /// The namespaces with a StatefulSet, Service or StatefulSet pod judged (not excluded),
    /// findings or not: a report per namespace covers the clean ones too.
    pub namespaces: BTreeSet<String>,
}

/// In a set of files the same broken pair would be reported twice: on the StatefulSet
/// (`sts-service-headless`) and on its Service (`svc-governing-headless`). The finding belongs
/// to the StatefulSet, whose promise breaks; the Service's twin is dropped when every
/// StatefulSet it names already reports it. (The webhook has no such pair: it judges one
/// request at a time.)
pub(crate) fn drop_reported_twins(results: &mut [ObjectResult]) {
    let reported: HashSet<(ObjectRef, RuleId)> = results
        .iter()
        .flat_map(|r| r.decision.violations.iter())
        .map(|v| (v.object.clone(), v.rule))
        .collect();
    for result in results
        .iter_mut()
        .filter(|r| r.kind == Kind::Service.name())
    {
        result.decision.violations.retain(|v| {
            let twin = match v.rule {
                RuleId::SvcGoverningHeadless => RuleId::StsServiceHeadless,
                RuleId::SvcGoverningSelector => RuleId::StsServiceSelectsPods,
                _ => return true,
            };
            !v.related
                .iter()
                .all(|sts| reported.contains(&(sts.clone(), twin)))
        });
    }
}

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

/// One object of `check`'s and `audit`'s JSON.
fn object_json(o: &ObjectResult) -> Value {
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
}

fn summary_of(report: &CheckReport) -> Value {
    json!({
        "objects": report.total(),
        "checked": report.checked(),
        "denied": report.denied(),
    })
}

pub fn json(report: &CheckReport) -> Value {
    let objects: Vec<Value> = report.objects.iter().map(object_json).collect();
    json!({
        "summary": summary_of(report),
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

/// `sts-guard audit -o json`, and `GET /audit` of `serve`: `check`'s JSON (objects without
/// `file`/`line`) plus the scope, when the read began, the objects read per kind and the
/// per-namespace, per-rule counts. Serialized as it is written, one object at a time (no tree
/// of the whole report: a large cluster's findings take tens of MiB as text already), with the
/// keys in the order a `serde_json::Value` would have them.
pub struct AuditJson<'a> {
    pub audited: &'a AuditReport,
    pub scope: &'a str,
}

impl Serialize for AuditJson<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        struct Objects<'a>(&'a [ObjectResult]);
        impl Serialize for Objects<'_> {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                let mut seq = serializer.serialize_seq(Some(self.0.len()))?;
                for o in self.0 {
                    seq.serialize_element(&object_json(o))?;
                }
                seq.end()
            }
        }
        let audited = self.audited;
        let listed = &audited.listed;
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("at", &audited.at.to_string())?;
        map.serialize_entry(
            "byNamespace",
            &summary_json(&by_namespace_and_rule(&audited.report)),
        )?;
        map.serialize_entry(
            "listed",
            &json!({
                "nodes": listed.nodes,
                "services": listed.services,
                "statefulsets": listed.statefulsets,
                "pods": listed.pods,
                "persistentvolumeclaims": listed.claims,
                "controllerrevisions": listed.revisions,
            }),
        )?;
        map.serialize_entry("objects", &Objects(&audited.report.objects))?;
        map.serialize_entry("scope", self.scope)?;
        map.serialize_entry("summary", &summary_of(&audited.report))?;
        map.end()
    }
}

/// The policy report formats of the ecosystem, read by Policy Reporter and the like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyReportFormat {
    /// `wgpolicyk8s.io/v1alpha2` `PolicyReport` and `ClusterPolicyReport` (Kyverno's).
    WgPolicy,
    /// `openreports.io/v1alpha1` `Report` and `ClusterReport`, which replace them
    /// (Kubewarden writes them by default).
    OpenReports,
}

impl PolicyReportFormat {
    fn api_version(self) -> &'static str {
        match self {
            PolicyReportFormat::WgPolicy => "wgpolicyk8s.io/v1alpha2",
            PolicyReportFormat::OpenReports => "openreports.io/v1alpha1",
        }
    }

    /// The kind of a namespace's report and of the cluster-scoped one.
    fn kinds(self) -> (&'static str, &'static str) {
        match self {
            PolicyReportFormat::WgPolicy => ("PolicyReport", "ClusterPolicyReport"),
            PolicyReportFormat::OpenReports => ("Report", "ClusterReport"),
        }
    }
}

/// The name of every report sts-guard writes, and its `source`.
pub const REPORT_SOURCE: &str = "sts-guard";

/// The audit as policy reports, one `kubectl apply -f` away from the cluster: a `v1` `List`
/// of one report per audited namespace (clean namespaces get an empty one, so that applying a
/// later audit clears what was fixed) and a cluster-scoped report for objects without a
/// namespace (no rule judges one today, so it appears only if one does). Each violation is a
/// result: policy = rule id, `fail` for a denial and `warn` for a warning, the rule table's
/// severity, the object as the result's resource; an object that cannot be read is an
/// `error` result of `invalid-object`.
pub fn policy_reports(audited: &AuditReport, format: PolicyReportFormat) -> Value {
    let at = audited.at;
    let mut by_namespace: BTreeMap<&str, Vec<Value>> = audited
        .namespaces
        .iter()
        .map(|ns| (ns.as_str(), Vec::new()))
        .collect();
    for obj in &audited.report.objects {
        let results = by_namespace.entry(obj.namespace.as_str()).or_default();
        let mut resource = json!({
            "apiVersion": Kind::from_name(&obj.kind).map_or("v1", Kind::api_version),
            "kind": obj.kind,
            "name": obj.name,
        });
        if !obj.namespace.is_empty() {
            resource["namespace"] = json!(obj.namespace);
        }
        for v in &obj.decision.violations {
            let mut properties = json!({"field": v.field});
            if !v.related.is_empty() {
                let related: Vec<String> = v.related.iter().map(ToString::to_string).collect();
                properties["related"] = json!(related.join(", "));
            }
            results.push(json!({
                "source": REPORT_SOURCE,
                "policy": v.rule.as_str(),
                "severity": v.rule.severity().as_str(),
                "result": if v.action == Action::Deny { "fail" } else { "warn" },
                "scored": true,
                "timestamp": {"seconds": at.as_second(), "nanos": 0},
                "resources": [resource.clone()],
                "message": format!("{} {}", v.problem, v.hint),
                "properties": properties,
            }));
        }
        if let Some(invalid) = &obj.decision.invalid {
            results.push(json!({
                "source": REPORT_SOURCE,
                "policy": "invalid-object",
                "result": "error",
                "scored": true,
                "timestamp": {"seconds": at.as_second(), "nanos": 0},
                "resources": [resource.clone()],
                "message": invalid,
            }));
        }
    }
    let (namespaced_kind, cluster_kind) = format.kinds();
    let items: Vec<Value> = by_namespace
        .into_iter()
        .map(|(namespace, results)| {
            let mut summary = json!({"pass": 0, "fail": 0, "warn": 0, "error": 0, "skip": 0});
            for r in &results {
                let key = r["result"].as_str().unwrap_or("error");
                summary[key] = json!(summary[key].as_u64().unwrap_or(0) + 1);
            }
            let mut metadata = json!({
                "name": REPORT_SOURCE,
                "labels": {"app.kubernetes.io/managed-by": REPORT_SOURCE},
            });
            let kind = if namespace.is_empty() {
                cluster_kind
            } else {
                metadata["namespace"] = json!(namespace);
                namespaced_kind
            };
            let mut report = json!({
                "apiVersion": format.api_version(),
                "kind": kind,
                "metadata": metadata,
                "summary": summary,
                "results": results,
            });
            // A PolicyReport names its source per result only; a Report also once for all.
            if format == PolicyReportFormat::OpenReports {
                report["source"] = json!(REPORT_SOURCE);
            }
            report
        })
        .collect();
    json!({"apiVersion": "v1", "kind": "List", "items": items})
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{Decision, Violation};
    use crate::vocabulary::{ObjectRef, RuleId};

    fn audited() -> AuditReport {
        let object = ObjectRef::new(Kind::StatefulSet, "shop", "cart");
        let mut decision = Decision::default();
        decision.violations.push(Violation {
            rule: RuleId::StsServiceExists,
            action: Action::Deny,
            object: object.clone(),
            field: "spec.serviceName".into(),
            problem: "no Service.".into(),
            hint: "Create it.".into(),
            related: vec![ObjectRef::new(Kind::Service, "shop", "cart-svc")],
            not_denied: None,
        });
        let mut node = ObjectResult {
            pos: None,
            kind: "Node".into(),
            namespace: String::new(),
            name: "n1".into(),
            skipped: None,
            decision: Decision::default(),
        };
        node.decision.invalid = Some("spec.taints: expected a list".into());
        AuditReport {
            report: CheckReport {
                objects: vec![
                    node,
                    ObjectResult {
                        pos: None,
                        kind: object.kind.to_string(),
                        namespace: object.namespace,
                        name: object.name,
                        skipped: None,
                        decision,
                    },
                ],
                unlisted_ok: 3,
                unlisted_skipped: 1,
            },
            listed: Listed {
                nodes: 1,
                services: 2,
                statefulsets: 3,
                pods: 4,
                claims: 5,
                revisions: 6,
            },
            at: "2025-06-01T12:00:00Z".parse().unwrap(),
            namespaces: ["quiet".to_string(), "shop".to_string()].into(),
        }
    }

    #[test]
    fn the_audit_json_is_written_as_the_value_of_it_would_print() {
        let audited = audited();
        let streamed = serde_json::to_string_pretty(&AuditJson {
            audited: &audited,
            scope: "all namespaces",
        })
        .unwrap();
        let mut value = json(&audited.report);
        value["scope"] = json!("all namespaces");
        value["at"] = json!("2025-06-01T12:00:00Z");
        value["listed"] = json!({"nodes": 1, "services": 2, "statefulsets": 3, "pods": 4,
            "persistentvolumeclaims": 5, "controllerrevisions": 6});
        value["byNamespace"] = summary_json(&by_namespace_and_rule(&audited.report));
        assert_eq!(streamed, format!("{value:#}"));
    }

    #[test]
    fn policy_reports_cover_clean_namespaces_and_put_cluster_scoped_objects_in_a_cluster_report() {
        let report = policy_reports(&audited(), PolicyReportFormat::OpenReports);
        let items = report["items"].as_array().unwrap();
        let kinds: Vec<(&str, &str)> = items
            .iter()
            .map(|r| {
                (
                    r["kind"].as_str().unwrap(),
                    r["metadata"]["namespace"].as_str().unwrap_or("-"),
                )
            })
            .collect();
        assert_eq!(
            kinds,
            [
                ("ClusterReport", "-"),
                ("Report", "quiet"),
                ("Report", "shop")
            ]
        );
        let cluster = &items[0];
        assert_eq!(cluster["results"][0]["result"], "error");
        assert_eq!(cluster["results"][0]["policy"], "invalid-object");
        assert_eq!(
            cluster["results"][0]["resources"],
            json!([{"apiVersion": "v1", "kind": "Node", "name": "n1"}])
        );
        assert_eq!(cluster["summary"]["error"], 1);
        assert_eq!(items[1]["results"], json!([]));
        let shop = &items[2]["results"][0];
        assert_eq!(shop["properties"]["related"], "Service shop/cart-svc");
        assert_eq!(
            shop["timestamp"],
            json!({"seconds": 1748779200, "nanos": 0})
        );
        assert_eq!(shop["message"], "no Service. Create it.");
    }
}
