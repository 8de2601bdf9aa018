//! The mutating rules. Each edits a copy of the object's JSON; the engine turns the difference
//! into a JSON Patch, so the patch is always consistent with what was changed.

use crate::config::Config;
use crate::model::{
    CANARY_ANNOTATION, FieldError, Fields, INJECT_IDENTITY_ANNOTATION, POD_INDEX_LABEL,
    StatefulSetView, controlling_statefulset,
};
use crate::rules::{RuleId, join_names};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::{Map, Value, json};

/// `pod-identity-env`: adds identity variables to every container and init container of a
/// StatefulSet pod. Returns a warning when the pod is admitted unchanged for a reason the
/// user should know.
pub fn inject_pod_identity(
    meta: &ObjectMeta,
    namespace: &str,
    data: &mut Value,
    config: &Config,
) -> Result<Option<String>, FieldError> {
    let Some(statefulset) = controlling_statefulset(meta) else {
        return Ok(None);
    };
    if meta
        .annotations
        .as_ref()
        .and_then(|a| a.get(INJECT_IDENTITY_ANNOTATION))
        .is_some_and(|v| v == "false")
    {
        return Ok(None);
    }
    let pod_name = meta.name.as_deref().unwrap_or("");
    let Some(ordinal) = pod_ordinal(meta, pod_name, statefulset) else {
        return Ok(Some(format!(
            "{}: Pod {namespace}/{pod_name}: cannot tell its ordinal (no {POD_INDEX_LABEL} label and the name does not end in -<number> after {statefulset:?}); admitted without identity variables.",
            RuleId::PodIdentityEnv
        )));
    };
    let f = Fields::new(data);
    let hostname = f
        .str("spec.hostname")?
        .filter(|h| !h.is_empty())
        .unwrap_or(pod_name)
        .to_string();
    let subdomain = f
        .str("spec.subdomain")?
        .filter(|s| !s.is_empty())
        .map(str::to_string);

    let names = &config.identity_env_names;
    let field_ref = |path: &str| json!({"valueFrom": {"fieldRef": {"fieldPath": path}}});
    let mut vars: Vec<(&str, Value)> = vec![
        (&names.pod_name, field_ref("metadata.name")),
        (&names.pod_namespace, field_ref("metadata.namespace")),
        (&names.pod_ordinal, json!({"value": ordinal.to_string()})),
        (&names.statefulset_name, json!({"value": statefulset})),
        (&names.pod_hostname, json!({"value": hostname})),
    ];
    if let Some(subdomain) = &subdomain {
        vars.push((&names.statefulset_service, json!({"value": subdomain})));
        let fqdn = format!(
            "{hostname}.{subdomain}.{namespace}.svc.{}",
            config.cluster_domain
        );
        vars.push((&names.pod_fqdn, json!({"value": fqdn})));
    }

    let mut shadowed: Vec<String> = Vec::new();
    for list in ["containers", "initContainers"] {
        // Validate first so that a malformed container list is reported, not half-patched.
        Fields::new(data).array(&format!("spec.{list}"))?;
        let Some(containers) = data
            .get_mut("spec")
            .and_then(|s| s.get_mut(list))
            .and_then(Value::as_array_mut)
        else {
            continue;
        };
        for (i, container) in containers.iter_mut().enumerate() {
            let Some(container) = container.as_object_mut() else {
                return Err(FieldError {
                    path: format!("spec.{list}[{i}]"),
                    expected: "a map",
                    found: "another type".into(),
                });
            };
            let at = |mut e: FieldError| {
                e.path = format!("spec.{list}[{i}].{}", e.path);
                e
            };
            let sources = env_from_sources(container).map_err(at)?;
            let skipped = add_missing_env(container, &vars, &sources).map_err(at)?;
            if !skipped.is_empty() {
                let name = container.get("name").and_then(Value::as_str).unwrap_or("");
                let from: Vec<String> = sources
                    .iter()
                    .filter(|s| skipped.iter().any(|n| s.could_define(n)))
                    .map(EnvFromSource::describe)
                    .collect();
                shadowed.push(format!(
                    "container {name:?}: {} not added, since {} may define them",
                    join_names(&skipped),
                    join_names(&from)
                ));
            }
        }
    }
    if shadowed.is_empty() {
        return Ok(None);
    }
    Ok(Some(format!(
        "{}: Pod {namespace}/{pod_name}: {} (an env entry would override envFrom). To get them, give that envFrom a prefix these names do not start with, or define them in env.",
        RuleId::PodIdentityEnv,
        shadowed.join("; ")
    )))
}

/// One `envFrom` entry of a container: every key of its ConfigMap or Secret becomes a variable
/// named `prefix + key`.
struct EnvFromSource {
    prefix: String,
    /// `ConfigMap "name"` or `Secret "name"`.
    source: String,
}

impl EnvFromSource {
    /// Whether a key of the source could become the variable `name`. The keys are unknown here
    /// (reading ConfigMaps and Secrets is not sts-guard's to do), so any name with the prefix
    /// could be one.
    fn could_define(&self, name: &str) -> bool {
        name.starts_with(&self.prefix)
    }

    fn describe(&self) -> String {
        if self.prefix.is_empty() {
            format!("{} (envFrom, no prefix)", self.source)
        } else {
            format!("{} (envFrom prefix {:?})", self.source, self.prefix)
        }
    }
}

fn env_from_sources(container: &Map<String, Value>) -> Result<Vec<EnvFromSource>, FieldError> {
    let entries = match container.get("envFrom") {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(entries)) => entries,
        Some(_) => {
            return Err(FieldError {
                path: "envFrom".into(),
                expected: "a list",
                found: "another type".into(),
            });
        }
    };
    let mut sources = Vec::new();
    for (i, entry) in entries.iter().enumerate() {
        let f = Fields::new(entry);
        let at = |mut e: FieldError| {
            e.path = format!("envFrom[{i}].{}", e.path);
            e
        };
        let source = match (
            f.str("configMapRef.name").map_err(at)?,
            f.str("secretRef.name").map_err(at)?,
        ) {
            (Some(name), _) => format!("ConfigMap {name:?}"),
            (None, Some(name)) => format!("Secret {name:?}"),
            (None, None) => "an envFrom entry".to_string(),
        };
        sources.push(EnvFromSource {
            prefix: f.str("prefix").map_err(at)?.unwrap_or("").to_string(),
            source,
        });
    }
    Ok(sources)
}

/// The ordinal from the pod-index label, else from the `<statefulset>-<n>` name.
fn pod_ordinal(meta: &ObjectMeta, pod_name: &str, statefulset: &str) -> Option<u64> {
    let from_label = meta
        .labels
        .as_ref()
        .and_then(|l| l.get(POD_INDEX_LABEL))
        .and_then(|v| parse_decimal(v));
    from_label.or_else(|| {
        pod_name
            .strip_prefix(statefulset)
            .and_then(|rest| rest.strip_prefix('-'))
            .and_then(parse_decimal)
    })
}

fn parse_decimal(s: &str) -> Option<u64> {
    (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
        .then(|| s.parse().ok())
        .flatten()
}

/// Appends each variable the container does not define yet; the user's own definition wins,
/// in `env` and in `envFrom` alike: an `env` entry overrides a variable of the same name from
/// `envFrom`, so a name an `envFrom` source could define is left out. Returns those names.
fn add_missing_env<'v>(
    container: &mut Map<String, Value>,
    vars: &[(&'v str, Value)],
    env_from: &[EnvFromSource],
) -> Result<Vec<&'v str>, FieldError> {
    let existing: &[Value] = match container.get("env") {
        None | Some(Value::Null) => &[],
        Some(Value::Array(items)) => items,
        Some(_) => {
            return Err(FieldError {
                path: "env".into(),
                expected: "a list",
                found: "another type".into(),
            });
        }
    };
    let mut skipped = Vec::new();
    let mut added = Vec::new();
    for (name, source) in vars {
        let defined = existing
            .iter()
            .any(|e| e.get("name").and_then(Value::as_str) == Some(name));
        if defined {
            continue;
        }
        if env_from.iter().any(|from| from.could_define(name)) {
            skipped.push(*name);
            continue;
        }
        let mut entry = Map::new();
        entry.insert("name".into(), Value::String(name.to_string()));
        if let Value::Object(fields) = source {
            entry.extend(fields.clone());
        }
        added.push(Value::Object(entry));
    }
    if !added.is_empty() {
        let env = container
            .entry("env")
            .or_insert_with(|| Value::Array(Vec::new()));
        if env.is_null() {
            *env = Value::Array(Vec::new());
        }
        if let Some(env) = env.as_array_mut() {
            env.extend(added);
        }
    }
    Ok(skipped)
}

/// What `sts-partition-default` did, for the response.
pub struct PartitionChange {
    pub warning: Option<String>,
}

/// `sts-partition-default`: explicit partition on CREATE; staged canary rollouts on UPDATE.
pub fn default_partition(
    meta: &ObjectMeta,
    view: &StatefulSetView,
    data: &mut Value,
    old: Option<(&StatefulSetView, &Value)>,
    config: &Config,
) -> Result<PartitionChange, FieldError> {
    let none = PartitionChange { warning: None };
    if view.update_strategy != "RollingUpdate" {
        return Ok(none);
    }
    let Some((old_view, old_data)) = old else {
        if view.partition.is_none() {
            set_partition(data, 0);
        }
        return Ok(none);
    };
    let template_changed =
        Fields::new(data).get("spec.template") != Fields::new(old_data).get("spec.template");
    if !template_changed || view.partition != old_view.partition {
        return Ok(none);
    }
    let canary = match canary_size(meta, &view.namespace, config) {
        Ok(Some(n)) => n,
        Ok(None) => return Ok(none),
        Err(warning) => {
            return Ok(PartitionChange {
                warning: Some(warning),
            });
        }
    };
    let staged = view.ordinals_start + (view.replicas - canary).max(0);
    let current = view.partition.unwrap_or(0);
    if staged <= current {
        // Never lower a partition the user set.
        return Ok(none);
    }
    set_partition(data, staged);
    Ok(PartitionChange {
        warning: Some(format!(
            "{}: StatefulSet {}/{}: staged rollout: partition set to {staged}, so only the {canary} highest ordinals take the new revision; promote by lowering spec.updateStrategy.rollingUpdate.partition (to {} for all pods).",
            RuleId::StsPartitionDefault,
            view.namespace,
            view.name,
            view.ordinals_start
        )),
    })
}

/// The canary size: the object's annotation wins over the namespace default in config.
fn canary_size(meta: &ObjectMeta, namespace: &str, config: &Config) -> Result<Option<i64>, String> {
    if let Some(raw) = meta
        .annotations
        .as_ref()
        .and_then(|a| a.get(CANARY_ANNOTATION))
    {
        return match raw.trim().parse::<i64>() {
            Ok(n) if n >= 1 => Ok(Some(n)),
            _ => Err(format!(
                "{}: annotation {CANARY_ANNOTATION}={raw:?} is not a whole number ≥ 1; no staged rollout applied.",
                RuleId::StsPartitionDefault
            )),
        };
    }
    Ok(config.partition_canary.get(namespace).copied())
}

fn set_partition(data: &mut Value, partition: i64) {
    let Some(spec) = data.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    let strategy = spec
        .entry("updateStrategy")
        .or_insert_with(|| json!({"type": "RollingUpdate"}));
    if !strategy.is_object() {
        return;
    }
    if strategy.get("type").is_none_or(Value::is_null) {
        strategy["type"] = json!("RollingUpdate");
    }
    let rolling = strategy
        .as_object_mut()
        .map(|s| s.entry("rollingUpdate").or_insert_with(|| json!({})));
    if let Some(rolling) = rolling {
        if !rolling.is_object() {
            *rolling = json!({});
        }
        rolling["partition"] = json!(partition);
    }
}
