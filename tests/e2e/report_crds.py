"""The CustomResourceDefinitions of the policy report formats `sts-guard audit` writes, for the
end-to-end run: `wgpolicyk8s.io/v1alpha2` PolicyReport and ClusterPolicyReport
(kubernetes-sigs/wg-policy-prototypes, `policy-report/apis/wgpolicyk8s.io/v1alpha2`) and
`openreports.io/v1alpha1` Report and ClusterReport (openreports/reports-api,
`apis/openreports.io/v1alpha1`). Written from the fields of those Go types and their
kubebuilder markers (enums, required fields), as structural schemas without
`x-kubernetes-preserve-unknown-fields`: the API server prunes, and `kubectl apply` (strict
field validation) refuses, any field the published schema does not have.
"""

from __future__ import annotations

RESULTS = ["pass", "fail", "warn", "error", "skip"]
SEVERITIES = ["critical", "high", "low", "medium", "info"]

STRING = {"type": "string"}
INTEGER = {"type": "integer"}

# core/v1 ObjectReference.
OBJECT_REFERENCE = {
    "type": "object",
    "x-kubernetes-map-type": "atomic",
    "properties": {name: STRING for name in
                   ("apiVersion", "fieldPath", "kind", "name", "namespace", "resourceVersion", "uid")},
}

# meta/v1 LabelSelector.
LABEL_SELECTOR = {
    "type": "object",
    "x-kubernetes-map-type": "atomic",
    "properties": {
        "matchLabels": {"type": "object", "additionalProperties": STRING},
        "matchExpressions": {
            "type": "array",
            "x-kubernetes-list-type": "atomic",
            "items": {
                "type": "object",
                "required": ["key", "operator"],
                "properties": {"key": STRING, "operator": STRING,
                               "values": {"type": "array", "items": STRING, "x-kubernetes-list-type": "atomic"}},
            },
        },
    },
}

SUMMARY = {"type": "object", "properties": {name: INTEGER for name in RESULTS}}

# PolicyReportResult (wgpolicyk8s.io) and ReportResult (openreports.io) have the same fields.
RESULT = {
    "type": "object",
    "required": ["policy"],
    "properties": {
        "source": STRING,
        "policy": STRING,
        "rule": STRING,
        "category": STRING,
        "severity": {"type": "string", "enum": SEVERITIES},
        "timestamp": {
            "type": "object",
            "required": ["nanos", "seconds"],
            "properties": {"seconds": {"type": "integer", "format": "int64"},
                           "nanos": {"type": "integer", "format": "int32"}},
        },
        "result": {"type": "string", "enum": RESULTS},
        "scored": {"type": "boolean"},
        "resources": {"type": "array", "items": OBJECT_REFERENCE},
        "resourceSelector": LABEL_SELECTOR,
        "message": STRING,
        "properties": {"type": "object", "additionalProperties": STRING},
    },
}


def report_schema(*, with_source: bool) -> dict:
    properties = {
        "apiVersion": STRING,
        "kind": STRING,
        "metadata": {"type": "object"},
        "scope": OBJECT_REFERENCE,
        "scopeSelector": LABEL_SELECTOR,
        "summary": SUMMARY,
        "results": {"type": "array", "items": RESULT},
    }
    if with_source:
        # openreports.io adds the report-level source and a generator/consumer contract.
        properties["source"] = STRING
        properties["configuration"] = {
            "type": "object",
            "required": ["limits"],
            "properties": {"limits": {"type": "object", "properties": {
                "maxResults": INTEGER,
                "statusFilter": {"type": "array", "items": {"type": "string", "enum": RESULTS}},
            }}},
        }
    return {"type": "object", "properties": properties}


def crd(group: str, version: str, kind: str, plural: str, short: str, scope: str, *, with_source: bool) -> dict:
    columns = [{"name": name.capitalize(), "type": "integer", "jsonPath": f".summary.{name}"} for name in RESULTS]
    columns.append({"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"})
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{group}"},
        "spec": {
            "group": group,
            "scope": scope,
            "names": {"kind": kind, "listKind": f"{kind}List", "plural": plural,
                      "singular": kind.lower(), "shortNames": [short]},
            "versions": [{
                "name": version, "served": True, "storage": True,
                "schema": {"openAPIV3Schema": report_schema(with_source=with_source)},
                "additionalPrinterColumns": columns,
            }],
        },
    }


def report_crds() -> list[dict]:
    return [
        crd("wgpolicyk8s.io", "v1alpha2", "PolicyReport", "policyreports", "polr", "Namespaced", with_source=False),
        crd("wgpolicyk8s.io", "v1alpha2", "ClusterPolicyReport", "clusterpolicyreports", "cpolr", "Cluster",
            with_source=False),
        crd("openreports.io", "v1alpha1", "Report", "reports", "reps", "Namespaced", with_source=True),
        crd("openreports.io", "v1alpha1", "ClusterReport", "clusterreports", "creps", "Cluster", with_source=True),
    ]
