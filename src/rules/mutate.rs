//! The mutating rules. Each reads the object and returns the few JSON Patch `add` operations
//! it needs, built directly: no copy of the object and no diff, so the cost grows linearly with
//! the object (a pod with thousands of containers costs what its bytes cost). A unit property
//! test holds the operations to what mutating a copy and diffing it would give.

use crate::model::{
    CANARY_ANNOTATION, FieldError, Fields, INJECT_IDENTITY_ANNOTATION, POD_INDEX_LABEL,
    StatefulSetView, controlling_statefulset,
};
use crate::rules::{RuleId, join_names};
use json_patch::jsonptr::PointerBuf;
use json_patch::{AddOperation, PatchOperation};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::{Map, Value, json};
use std::collections::HashMap;

/// At most this many identity variables are added to one pod (a few hundred containers; about
/// 200 KB of patch). A pod that would need more is admitted unchanged with a warning rather
/// than answered with a patch many times its own size.
pub const MAX_IDENTITY_VARIABLES: usize = 2_000;

/// What `pod-identity-env` takes from config: the variables' names and the cluster domain of
/// the FQDN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityEnv {
    pub names: EnvNames,
    pub cluster_domain: String,
}

impl Default for IdentityEnv {
    fn default() -> Self {
        IdentityEnv {
            names: EnvNames::default(),
            cluster_domain: "cluster.local".into(),
        }
    }
}

/// The identity variables' names. Each defaults to its key, which config renames it by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvNames {
    pub pod_name: String,
    pub pod_namespace: String,
    pub pod_ordinal: String,
    pub statefulset_name: String,
    pub pod_hostname: String,
    pub statefulset_service: String,
    pub pod_fqdn: String,
}

impl EnvNames {
    /// Every variable by its key: the one list of the keys.
    pub fn by_key_mut(&mut self) -> [(&'static str, &mut String); 7] {
        [
            ("POD_NAME", &mut self.pod_name),
            ("POD_NAMESPACE", &mut self.pod_namespace),
            ("POD_ORDINAL", &mut self.pod_ordinal),
            ("STATEFULSET_NAME", &mut self.statefulset_name),
            ("POD_HOSTNAME", &mut self.pod_hostname),
            ("STATEFULSET_SERVICE", &mut self.statefulset_service),
            ("POD_FQDN", &mut self.pod_fqdn),
        ]
    }
}

impl Default for EnvNames {
    fn default() -> Self {
        let mut names = EnvNames {
            pod_name: String::new(),
            pod_namespace: String::new(),
            pod_ordinal: String::new(),
            statefulset_name: String::new(),
            pod_hostname: String::new(),
            statefulset_service: String::new(),
            pod_fqdn: String::new(),
        };
        for (key, name) in names.by_key_mut() {
            *name = key.to_string();
        }
        names
    }
}

/// What `sts-partition-default` takes from config: the canary size N per namespace.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PartitionDefaults {
    pub canary: HashMap<String, i64>,
}

/// What a mutating rule wants done: patch operations and a warning for the user.
#[derive(Debug, Default)]
pub struct Mutation {
    pub operations: Vec<PatchOperation>,
    pub warning: Option<String>,
}

impl Mutation {
    fn warn(warning: String) -> Mutation {
        Mutation {
            operations: Vec::new(),
            warning: Some(warning),
        }
    }
}

/// A JSON Patch `add` at the path made of `tokens` (escaped as JSON Pointer requires).
fn add<'t>(tokens: impl IntoIterator<Item = &'t str>, value: Value) -> PatchOperation {
    PatchOperation::Add(AddOperation {
        path: PointerBuf::from_tokens(tokens),
        value,
    })
}

/// `pod-identity-env`: adds identity variables to every container and init container of a
/// StatefulSet pod. Warns when the pod is admitted unchanged for a reason the user should know.
pub fn inject_pod_identity(
    meta: &ObjectMeta,
    namespace: &str,
    data: &Value,
    config: &IdentityEnv,
) -> Result<Mutation, FieldError> {
    let Some(statefulset) = controlling_statefulset(meta) else {
        return Ok(Mutation::default());
    };
    if meta
        .annotations
        .as_ref()
        .and_then(|a| a.get(INJECT_IDENTITY_ANNOTATION))
        .is_some_and(|v| v == "false")
    {
        return Ok(Mutation::default());
    }
    let pod_name = meta.name.as_deref().unwrap_or("");
    let Some(ordinal) = pod_ordinal(meta, pod_name, statefulset) else {
        return Ok(Mutation::warn(format!(
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

    let names = &config.names;
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

    // Planned first, so that a pod beyond the cap costs no patch at all.
    let mut plans = Vec::new();
    let mut shadowed = Vec::new();
    for_each_container(&f, |list, index, container| {
        let sources = env_from_sources(container)?;
        let plan = plan_env(container, &vars, &sources, list, index)?;
        if !plan.shadowed.is_empty() {
            let name = container.get("name").and_then(Value::as_str).unwrap_or("");
            let from: Vec<String> = sources
                .iter()
                .filter(|s| plan.shadowed.iter().any(|n| s.could_define(n)))
                .map(EnvFromSource::describe)
                .collect();
            shadowed.push(format!(
                "container {name:?}: {} not added, since {} may define them",
                join_names(&plan.shadowed),
                join_names(&from)
            ));
        }
        plans.push(plan);
        Ok(())
    })?;
    let needed: usize = plans.iter().map(|plan| plan.missing.len()).sum();
    if needed > MAX_IDENTITY_VARIABLES {
        return Ok(Mutation::warn(format!(
            "{}: Pod {namespace}/{pod_name}: its containers would take {needed} identity variables, more than the {MAX_IDENTITY_VARIABLES} one pod gets; admitted without them.",
            RuleId::PodIdentityEnv
        )));
    }
    let warning = (!shadowed.is_empty()).then(|| {
        format!(
            "{}: Pod {namespace}/{pod_name}: {} (an env entry would override envFrom). To get them, give that envFrom a prefix these names do not start with, or define them in env.",
            RuleId::PodIdentityEnv,
            shadowed.join("; ")
        )
    });
    let mut operations = Vec::with_capacity(needed);
    for plan in plans {
        plan.operations(&vars, &mut operations);
    }
    Ok(Mutation {
        operations,
        warning,
    })
}

/// Calls `visit` with every container and init container (list name, index, fields); errors
/// name the container's path.
fn for_each_container<'a>(
    f: &Fields<'a>,
    mut visit: impl FnMut(&'static str, usize, &'a Map<String, Value>) -> Result<(), FieldError>,
) -> Result<(), FieldError> {
    for list in ["containers", "initContainers"] {
        for (i, container) in f.array(&format!("spec.{list}"))?.iter().enumerate() {
            let Some(container) = container.as_object() else {
                return Err(FieldError {
                    path: format!("spec.{list}[{i}]"),
                    expected: "a map",
                    found: "another type".into(),
                });
            };
            visit(list, i, container).map_err(|mut e| {
                e.path = format!("spec.{list}[{i}].{}", e.path);
                e
            })?;
        }
    }
    Ok(())
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

/// What one container gets: the indices (into the variables) of those it lacks, and whether
/// its `env` is to be created (absent or null) rather than appended to.
struct EnvPlan<'v> {
    list: &'static str,
    index: usize,
    create_env: bool,
    missing: Vec<usize>,
    /// Names left out because an `envFrom` source could define them.
    shadowed: Vec<&'v str>,
}

/// The user's own definition wins, in `env` and in `envFrom` alike: an `env` entry overrides a
/// variable of the same name from `envFrom`, so a name an `envFrom` source could define is
/// left out.
fn plan_env<'v>(
    container: &Map<String, Value>,
    vars: &[(&'v str, Value)],
    env_from: &[EnvFromSource],
    list: &'static str,
    index: usize,
) -> Result<EnvPlan<'v>, FieldError> {
    let (create_env, existing): (bool, &[Value]) = match container.get("env") {
        None | Some(Value::Null) => (true, &[]),
        Some(Value::Array(items)) => (false, items),
        Some(_) => {
            return Err(FieldError {
                path: "env".into(),
                expected: "a list",
                found: "another type".into(),
            });
        }
    };
    let mut plan = EnvPlan {
        list,
        index,
        create_env,
        missing: Vec::new(),
        shadowed: Vec::new(),
    };
    for (i, (name, _)) in vars.iter().enumerate() {
        let defined = existing
            .iter()
            .any(|e| e.get("name").and_then(Value::as_str) == Some(name));
        if defined {
            continue;
        }
        if env_from.iter().any(|from| from.could_define(name)) {
            plan.shadowed.push(name);
        } else {
            plan.missing.push(i);
        }
    }
    Ok(plan)
}

impl EnvPlan<'_> {
    /// One `add` of the whole list where `env` is to be created, else one append per variable.
    fn operations(&self, vars: &[(&str, Value)], operations: &mut Vec<PatchOperation>) {
        if self.missing.is_empty() {
            return;
        }
        let entry = |i: &usize| {
            let (name, source) = &vars[*i];
            let mut entry = Map::new();
            entry.insert("name".into(), Value::String(name.to_string()));
            if let Value::Object(fields) = source {
                entry.extend(fields.clone());
            }
            Value::Object(entry)
        };
        let index = self.index.to_string();
        let env = ["spec", self.list, &index, "env"];
        if self.create_env {
            operations.push(add(
                env,
                Value::Array(self.missing.iter().map(entry).collect()),
            ));
        } else {
            for i in &self.missing {
                operations.push(add(env.into_iter().chain(["-"]), entry(i)));
            }
        }
    }
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

/// `sts-partition-default`: explicit partition on CREATE; staged canary rollouts on UPDATE.
pub fn default_partition(
    meta: &ObjectMeta,
    view: &StatefulSetView,
    data: &Value,
    old: Option<(&StatefulSetView, &Value)>,
    config: &PartitionDefaults,
) -> Result<Mutation, FieldError> {
    if &*view.update_strategy != "RollingUpdate" {
        return Ok(Mutation::default());
    }
    let Some(old) = old else {
        let mut mutation = Mutation::default();
        if view.partition.is_none() {
            mutation.operations = partition_operations(data, 0);
        }
        return Ok(mutation);
    };
    let stage = match staged_rollout(meta, view, data, old, config) {
        Ok(Some(stage)) => stage,
        Ok(None) => return Ok(Mutation::default()),
        Err(warning) => return Ok(Mutation::warn(warning)),
    };
    Ok(Mutation {
        operations: partition_operations(data, stage.partition),
        warning: Some(format!(
            "{}: StatefulSet {}/{}: staged rollout: partition set to {}, so only the {} highest ordinals take the new revision; promote by lowering spec.updateStrategy.rollingUpdate.partition (to {} for all pods).",
            RuleId::StsPartitionDefault,
            view.namespace,
            view.name,
            stage.partition,
            stage.canary,
            view.ordinals_start
        )),
    })
}

/// A staged rollout an UPDATE still needs: the partition that holds all but the `canary`
/// highest ordinals on the old revision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StagedRollout {
    pub canary: i64,
    pub partition: i64,
}

/// The staged rollout an UPDATE of a RollingUpdate StatefulSet should get and does not have
/// yet: its template changes, it does not change the partition itself, a canary size applies
/// (annotation or namespace config) and the partition is below the staged one. `Err` is the
/// warning for an unreadable annotation. The mutation applies it; the validating rule
/// `sts-canary-partition` refuses an update that arrives without it.
pub fn staged_rollout(
    meta: &ObjectMeta,
    view: &StatefulSetView,
    data: &Value,
    (old_view, old_data): (&StatefulSetView, &Value),
    config: &PartitionDefaults,
) -> Result<Option<StagedRollout>, String> {
    if &*view.update_strategy != "RollingUpdate" {
        return Ok(None);
    }
    let template_changed =
        Fields::new(data).get("spec.template") != Fields::new(old_data).get("spec.template");
    if !template_changed || view.partition != old_view.partition {
        return Ok(None);
    }
    let Some(canary) = canary_size(meta, &view.namespace, config)? else {
        return Ok(None);
    };
    let partition = view.ordinals_start + (view.replicas - canary).max(0);
    // Never lower a partition the user set.
    Ok((partition > view.partition.unwrap_or(0)).then_some(StagedRollout { canary, partition }))
}

/// The canary size: the object's annotation wins over the namespace default in config.
fn canary_size(
    meta: &ObjectMeta,
    namespace: &str,
    config: &PartitionDefaults,
) -> Result<Option<i64>, String> {
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
    Ok(config.canary.get(namespace).copied())
}

/// The operations that set `spec.updateStrategy.rollingUpdate.partition`, creating what is
/// missing (a null or non-map `rollingUpdate` is replaced; a non-map `updateStrategy` is left
/// alone, as the API server will refuse it anyway).
fn partition_operations(data: &Value, partition: i64) -> Vec<PatchOperation> {
    let Some(spec) = data.get("spec").and_then(Value::as_object) else {
        return Vec::new();
    };
    let Some(strategy) = spec.get("updateStrategy") else {
        return vec![add(
            ["spec", "updateStrategy"],
            json!({"type": "RollingUpdate", "rollingUpdate": {"partition": partition}}),
        )];
    };
    let Some(strategy) = strategy.as_object() else {
        return Vec::new();
    };
    let mut operations = Vec::new();
    if strategy.get("type").is_none_or(Value::is_null) {
        operations.push(add(
            ["spec", "updateStrategy", "type"],
            json!("RollingUpdate"),
        ));
    }
    operations.push(match strategy.get("rollingUpdate") {
        Some(Value::Object(_)) => add(
            ["spec", "updateStrategy", "rollingUpdate", "partition"],
            json!(partition),
        ),
        _ => add(
            ["spec", "updateStrategy", "rollingUpdate"],
            json!({"partition": partition}),
        ),
    });
    operations
}

#[cfg(test)]
pub(super) const ROWS: &[super::rows::Row] = {
    use super::rows::{
        Row, canary, created, new_image, pod, reported, rolling, service, statefulset, updated,
        with,
    };
    use crate::engine::Endpoint::Mutate;
    use RuleId::*;
    use serde_json::Value;

    fn governed() -> [Value; 2] {
        [statefulset(3), service("web", "None")]
    }
    /// The template change of a RollingUpdate StatefulSet at partition 0, a canary of one pod
    /// or not.
    fn template_change(is_canary: bool) -> Vec<RuleId> {
        let old = if is_canary { canary(0) } else { rolling(0) };
        let request = updated(old.clone(), new_image(old));
        reported(Mutate, request, &governed())
    }

    &[
        Row {
            rule: PodIdentityEnv,
            case: "a pod of a StatefulSet is created",
            fires: true,
            run: || reported(Mutate, created(pod(0)), &governed()),
        },
        Row {
            rule: PodIdentityEnv,
            case: "a pod no StatefulSet controls is created",
            fires: false,
            run: || {
                let plain = with(pod(0), "metadata.ownerReferences", Value::Null);
                reported(Mutate, created(plain), &governed())
            },
        },
        Row {
            rule: StsPartitionDefault,
            case: "a canary's template changes",
            fires: true,
            run: || template_change(true),
        },
        Row {
            rule: StsPartitionDefault,
            case: "the template of a StatefulSet without a canary changes",
            fires: false,
            run: || template_change(false),
        },
    ]
};

#[cfg(test)]
mod tests {
    //! The operations built directly must do exactly what mutating a copy of the object and
    //! diffing it (the simple, always-right way) does, and a second pass must add nothing.
    use super::*;
    use proptest::prelude::*;

    fn apply(data: &Value, operations: &[PatchOperation]) -> Value {
        let mut patched = data.clone();
        json_patch::patch(&mut patched, operations).expect("the patch applies");
        patched
    }

    /// The reference: append each missing variable to a copy, then diff.
    fn reference_identity(data: &Value, vars: &[(&str, Value)]) -> Value {
        let mut copy = data.clone();
        for list in ["containers", "initContainers"] {
            let Some(containers) = copy["spec"].get_mut(list).and_then(Value::as_array_mut) else {
                continue;
            };
            for container in containers {
                let env = container
                    .as_object_mut()
                    .unwrap()
                    .entry("env")
                    .or_insert_with(|| json!([]));
                if env.is_null() {
                    *env = json!([]);
                }
                let env = env.as_array_mut().unwrap();
                for (name, source) in vars {
                    if !env.iter().any(|e| e["name"] == *name) {
                        let mut entry = json!({"name": name});
                        entry
                            .as_object_mut()
                            .unwrap()
                            .extend(source.as_object().unwrap().clone());
                        env.push(entry);
                    }
                }
            }
        }
        apply(data, &json_patch::diff(data, &copy).0)
    }

    fn env_list() -> impl Strategy<Value = Value> {
        let name = prop::sample::select(vec![
            "POD_NAME",
            "POD_ORDINAL",
            "POD_FQDN",
            "STATEFULSET_SERVICE",
            "OTHER",
            "a/b~c",
        ]);
        prop_oneof![
            Just(Value::Null),
            Just(json!("absent")),
            prop::collection::vec((name, "[a-z]{0,3}"), 0..4).prop_map(|vars| json!(
                vars.into_iter()
                    .map(|(n, v)| json!({"name": n, "value": v}))
                    .collect::<Vec<_>>()
            )),
        ]
    }

    fn containers() -> impl Strategy<Value = Value> {
        prop::collection::vec(env_list(), 0..4).prop_map(|envs| {
            json!(
                envs.into_iter()
                    .enumerate()
                    .map(|(i, env)| match env {
                        Value::String(_) => json!({"name": format!("c{i}"), "image": "x"}),
                        env => json!({"name": format!("c{i}"), "image": "x", "env": env}),
                    })
                    .collect::<Vec<_>>()
            )
        })
    }

    fn pod_meta() -> ObjectMeta {
        serde_json::from_value(json!({
            "name": "web-3", "namespace": "default",
            "labels": {"apps.kubernetes.io/pod-index": "3"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "web", "uid": "u", "controller": true}]
        }))
        .unwrap()
    }

    proptest! {
        #[test]
        fn identity_operations_equal_the_diff_of_a_mutated_copy(
            containers in containers(),
            init in prop::option::of(containers()),
            subdomain in prop::option::of("[a-z]{1,4}"),
            hostname in prop::option::of("[a-z]{1,4}"),
        ) {
            let mut spec = json!({"containers": containers});
            if let Some(init) = init { spec["initContainers"] = init; }
            if let Some(s) = &subdomain { spec["subdomain"] = json!(s); }
            if let Some(h) = &hostname { spec["hostname"] = json!(h); }
            let data = json!({"spec": spec});
            let config = IdentityEnv::default();
            let mutation = inject_pod_identity(&pod_meta(), "default", &data, &config).unwrap();
            prop_assert!(mutation.warning.is_none());

            let host = hostname.clone().unwrap_or_else(|| "web-3".into());
            let field_ref = |path: &str| json!({"valueFrom": {"fieldRef": {"fieldPath": path}}});
            let mut vars = vec![
                ("POD_NAME", field_ref("metadata.name")),
                ("POD_NAMESPACE", field_ref("metadata.namespace")),
                ("POD_ORDINAL", json!({"value": "3"})),
                ("STATEFULSET_NAME", json!({"value": "web"})),
                ("POD_HOSTNAME", json!({"value": host.clone()})),
            ];
            if let Some(s) = &subdomain {
                vars.push(("STATEFULSET_SERVICE", json!({"value": s})));
                vars.push(("POD_FQDN", json!({"value": format!("{host}.{s}.default.svc.cluster.local")})));
            }
            let patched = apply(&data, &mutation.operations);
            prop_assert_eq!(&patched, &reference_identity(&data, &vars));
            // Reinvocation: the patched pod needs nothing more.
            let again = inject_pod_identity(&pod_meta(), "default", &patched, &config).unwrap();
            prop_assert!(again.operations.is_empty(), "{:?}", again.operations);
        }

        #[test]
        fn partition_operations_equal_the_diff_of_a_mutated_copy(
            strategy in prop_oneof![
                Just(None),
                Just(Some(Value::Null)),
                Just(Some(json!("junk"))),
                (prop::option::of(prop_oneof![Just(Value::Null), Just(json!("RollingUpdate"))]),
                 prop::option::of(prop_oneof![Just(Value::Null), Just(json!({})), Just(json!("junk")),
                                              Just(json!({"partition": 1, "maxUnavailable": 2}))]))
                    .prop_map(|(kind, rolling)| {
                        let mut s = json!({});
                        if let Some(k) = kind { s["type"] = k; }
                        if let Some(r) = rolling { s["rollingUpdate"] = r; }
                        Some(s)
                    }),
            ],
            partition in 0i64..5,
        ) {
            let mut data = json!({"spec": {"replicas": 3}});
            if let Some(s) = strategy { data["spec"]["updateStrategy"] = s; }
            // The reference: what the copy-and-diff implementation did.
            let mut copy = data.clone();
            {
                let spec = copy["spec"].as_object_mut().unwrap();
                let strategy = spec.entry("updateStrategy").or_insert_with(|| json!({"type": "RollingUpdate"}));
                if strategy.is_object() {
                    if strategy.get("type").is_none_or(Value::is_null) {
                        strategy["type"] = json!("RollingUpdate");
                    }
                    let rolling = strategy.as_object_mut().unwrap().entry("rollingUpdate").or_insert_with(|| json!({}));
                    if !rolling.is_object() {
                        *rolling = json!({});
                    }
                    rolling["partition"] = json!(partition);
                }
            }
            let expected = apply(&data, &json_patch::diff(&data, &copy).0);
            prop_assert_eq!(apply(&data, &partition_operations(&data, partition)), expected);
        }
    }

    #[test]
    fn a_pod_beyond_the_variable_cap_is_admitted_unchanged_with_a_warning() {
        let containers: Vec<Value> = (0..MAX_IDENTITY_VARIABLES / 5 + 1)
            .map(|i| json!({"name": format!("c{i}"), "image": "x"}))
            .collect();
        let data = json!({"spec": {"containers": containers}});
        let mutation =
            inject_pod_identity(&pod_meta(), "default", &data, &IdentityEnv::default()).unwrap();
        assert!(mutation.operations.is_empty());
        let warning = mutation.warning.unwrap();
        assert!(
            warning.starts_with(
                "pod-identity-env: Pod default/web-3: its containers would take 2005 identity variables, more than the 2000 one pod gets"
            ),
            "{warning}"
        );
    }
}
