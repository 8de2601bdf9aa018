//! The mutating rules. Each reads the object and returns the few JSON Patch `add` operations
//! it needs, built directly: no copy of the object and no diff, so the cost grows linearly with
//! the object (a pod with thousands of containers costs what its bytes cost). A unit property
//! test holds the operations to what mutating a copy and diffing it would give.

use crate::model::{
    CANARY_ANNOTATION, EnvContainer, FieldError, INJECT_IDENTITY_ANNOTATION, NameOnly,
    POD_INDEX_LABEL, PodIdentitySpec, StatefulSetSpec, StatefulSetView, controlling_statefulset,
};
use crate::rules::{RuleId, join_names};
use crate::shape::{Checked, Found, OrNull};
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
/// `spec` decodes what the rule reads of the pod's spec; it is called only for a pod the rule
/// acts on, so other pods (every pod CREATE reaches the webhook before Kubernetes 1.30's
/// matchConditions) cost no decode.
pub fn inject_pod_identity<'s>(
    meta: &ObjectMeta,
    namespace: &str,
    spec: impl FnOnce() -> Checked<PodIdentitySpec<'s>>,
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
    let decoded = spec();
    let empty = PodIdentitySpec::default();
    let spec = decoded.get("spec")?.unwrap_or(&empty);
    let hostname = spec
        .hostname
        .str("spec.hostname")?
        .filter(|h| !h.is_empty())
        .unwrap_or(pod_name)
        .to_string();
    let subdomain = spec
        .subdomain
        .str("spec.subdomain")?
        .filter(|s| !s.is_empty())
        .map(str::to_string);

    let names = &config.names;
    let field_ref = |path: &str| json!({"valueFrom": {"fieldRef": {"fieldPath": path}}});
    let mut vars: Vec<(&str, Value)> = Vec::with_capacity(7);
    vars.extend([
        (&*names.pod_name, field_ref("metadata.name")),
        (&names.pod_namespace, field_ref("metadata.namespace")),
        (&names.pod_ordinal, json!({"value": ordinal.to_string()})),
        (&names.statefulset_name, json!({"value": statefulset})),
        (&names.pod_hostname, json!({"value": hostname})),
    ]);
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
    for (list, path, containers) in [
        ("containers", "spec.containers", &spec.containers),
        (
            "initContainers",
            "spec.initContainers",
            &spec.init_containers,
        ),
    ] {
        for (index, container) in containers.items(path)?.iter().enumerate() {
            let container = container
                .item(path, index)?
                .ok_or_else(|| Found::Null.at(&format!("{path}[{index}]"), "a map"))?;
            let sources = env_from_sources(container).map_err(|e| e.within(path, index))?;
            let plan = plan_env(container, &vars, &sources, list, index)
                .map_err(|e| e.within(path, index))?;
            if !plan.shadowed.is_empty() {
                let name = match &container.name {
                    Checked::Found(name) => &**name,
                    _ => "",
                };
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
        }
    }
    let needed: usize = plans.iter().map(EnvPlan::needed).sum();
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

/// What one container gets: the variables it lacks (bits indexing the variables), and whether
/// its `env` is to be created (absent or null) rather than appended to.
struct EnvPlan<'v> {
    list: &'static str,
    index: usize,
    create_env: bool,
    missing: u16,
    /// Names left out because an `envFrom` source could define them.
    shadowed: Vec<&'v str>,
}

/// The user's own definition wins, in `env` and in `envFrom` alike: an `env` entry overrides a
/// variable of the same name from `envFrom`, so a name an `envFrom` source could define is
/// left out.
fn plan_env<'v>(
    container: &EnvContainer,
    vars: &[(&'v str, Value)],
    env_from: &[EnvFromSource],
    list: &'static str,
    index: usize,
) -> Result<EnvPlan<'v>, FieldError> {
    let existing = container.env.items("env")?;
    let mut plan = EnvPlan {
        list,
        index,
        create_env: !container.env.is_present(),
        missing: 0,
        shadowed: Vec::new(),
    };
    for (i, (name, _)) in vars.iter().enumerate() {
        let defined = existing.iter().any(|entry| match entry {
            Checked::Found(entry) => matches!(&entry.name, Checked::Found(n) if n == name),
            _ => false,
        });
        if defined {
            continue;
        }
        if env_from.iter().any(|from| from.could_define(name)) {
            plan.shadowed.push(name);
        } else {
            plan.missing |= 1 << i;
        }
    }
    Ok(plan)
}

impl EnvPlan<'_> {
    fn needed(&self) -> usize {
        self.missing.count_ones() as usize
    }

    /// The indices of the variables it lacks, in order.
    fn missing(&self) -> impl Iterator<Item = usize> + '_ {
        (0..16).filter(|i| self.missing & (1 << i) != 0)
    }

    /// One `add` of the whole list where `env` is to be created, else one append per variable.
    fn operations(&self, vars: &[(&str, Value)], operations: &mut Vec<PatchOperation>) {
        if self.missing == 0 {
            return;
        }
        let entry = |i: usize| {
            let (name, source) = &vars[i];
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
            operations.push(add(env, Value::Array(self.missing().map(entry).collect())));
        } else {
            for i in self.missing() {
                operations.push(add(env.into_iter().chain(["-"]), entry(i)));
            }
        }
    }
}

/// One `envFrom` entry of a container: every key of its ConfigMap or Secret becomes a variable
/// named `prefix + key`.
struct EnvFromSource<'a> {
    prefix: &'a str,
    /// `("ConfigMap", name)` or `("Secret", name)`; neither for an entry that names none.
    source: Option<(&'static str, &'a str)>,
}

impl EnvFromSource<'_> {
    /// Whether a key of the source could become the variable `name`. The keys are unknown here
    /// (reading ConfigMaps and Secrets is not sts-guard's to do), so any name with the prefix
    /// could be one.
    fn could_define(&self, name: &str) -> bool {
        name.starts_with(self.prefix)
    }

    fn describe(&self) -> String {
        let source = match self.source {
            Some((kind, name)) => format!("{kind} {name:?}"),
            None => "an envFrom entry".to_string(),
        };
        if self.prefix.is_empty() {
            format!("{source} (envFrom, no prefix)")
        } else {
            format!("{source} (envFrom prefix {:?})", self.prefix)
        }
    }
}

fn env_from_sources<'a>(container: &'a EnvContainer) -> Result<Vec<EnvFromSource<'a>>, FieldError> {
    let entries = container.env_from.items("envFrom")?;
    let mut sources = Vec::with_capacity(entries.len());
    for (i, entry) in entries.iter().enumerate() {
        let at = |e: FieldError| e.within("envFrom", i);
        let name = |r: &'a Checked<NameOnly>, path: &str| -> Result<Option<&'a str>, FieldError> {
            match r.get(path)? {
                Some(r) => r.name.str(&format!("{path}.name")),
                None => Ok(None),
            }
        };
        let (config_map, secret, prefix) = match entry.item("envFrom", i)? {
            // A null entry names no source and has no prefix: it could define any name.
            None => (None, None, None),
            Some(entry) => (
                name(&entry.config_map_ref, "configMapRef").map_err(at)?,
                name(&entry.secret_ref, "secretRef").map_err(at)?,
                entry.prefix.str("prefix").map_err(at)?,
            ),
        };
        sources.push(EnvFromSource {
            prefix: prefix.unwrap_or(""),
            source: match (config_map, secret) {
                (Some(name), _) => Some(("ConfigMap", name)),
                (None, Some(name)) => Some(("Secret", name)),
                (None, None) => None,
            },
        });
    }
    Ok(sources)
}

/// `sts-partition-default`: explicit partition on CREATE; staged canary rollouts on UPDATE.
pub fn default_partition(
    meta: &ObjectMeta,
    view: &StatefulSetView,
    spec: &Checked<StatefulSetSpec>,
    update: Option<StatefulSetUpdate>,
    config: &PartitionDefaults,
) -> Result<Mutation, FieldError> {
    if &*view.update_strategy != "RollingUpdate" {
        return Ok(Mutation::default());
    }
    let Some(update) = update else {
        let mut mutation = Mutation::default();
        if view.partition.is_none() {
            mutation.operations = partition_operations(spec, 0);
        }
        return Ok(mutation);
    };
    let stage = match staged_rollout(meta, view, update, config) {
        Ok(Some(stage)) => stage,
        Ok(None) => return Ok(Mutation::default()),
        Err(warning) => return Ok(Mutation::warn(warning)),
    };
    Ok(Mutation {
        operations: partition_operations(spec, stage.partition),
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

/// An UPDATE of a StatefulSet, as the staged rollout reads it.
#[derive(Debug, Clone, Copy)]
pub struct StatefulSetUpdate<'a> {
    pub old: &'a StatefulSetView,
    pub template_changed: bool,
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
    update: StatefulSetUpdate,
    config: &PartitionDefaults,
) -> Result<Option<StagedRollout>, String> {
    if &*view.update_strategy != "RollingUpdate" {
        return Ok(None);
    }
    if !update.template_changed || view.partition != update.old.partition {
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
fn partition_operations(spec: &Checked<StatefulSetSpec>, partition: i64) -> Vec<PatchOperation> {
    let Checked::Found(spec) = spec else {
        return Vec::new();
    };
    let strategy = match &spec.update_strategy {
        OrNull { null: true, .. } => return Vec::new(),
        OrNull {
            value: Checked::Absent,
            ..
        } => {
            return vec![add(
                ["spec", "updateStrategy"],
                json!({"type": "RollingUpdate", "rollingUpdate": {"partition": partition}}),
            )];
        }
        OrNull {
            value: Checked::Wrong(_),
            ..
        } => return Vec::new(),
        OrNull {
            value: Checked::Found(strategy),
            ..
        } => strategy,
    };
    let mut operations = Vec::new();
    if !strategy.kind.is_present() {
        operations.push(add(
            ["spec", "updateStrategy", "type"],
            json!("RollingUpdate"),
        ));
    }
    operations.push(match &strategy.rolling_update {
        Checked::Found(_) => add(
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
    use crate::shape::checked;
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

    /// The rule on `pod_meta()` with `data`, the pod's fields but its metadata.
    fn inject(data: &Value, config: &IdentityEnv) -> Result<Mutation, FieldError> {
        inject_pod_identity(&pod_meta(), "default", || checked(data.get("spec")), config)
    }

    #[test]
    fn a_pod_the_rule_does_not_act_on_has_its_spec_left_undecoded() {
        let not_decoded = || -> Checked<PodIdentitySpec<'static>> { panic!("spec decoded") };
        let config = IdentityEnv::default();
        let plain = ObjectMeta {
            name: Some("web-3".into()),
            ..ObjectMeta::default()
        };
        let mut opted_out = pod_meta();
        opted_out.annotations =
            Some([(INJECT_IDENTITY_ANNOTATION.to_string(), "false".to_string())].into());
        for meta in [plain, opted_out] {
            let mutation = inject_pod_identity(&meta, "default", not_decoded, &config).unwrap();
            assert!(mutation.operations.is_empty() && mutation.warning.is_none());
        }
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
            let mutation = inject(&data, &config).unwrap();
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
            let again = inject(&patched, &config).unwrap();
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
            prop_assert_eq!(apply(&data, &partition_operations(&checked(data.get("spec")), partition)), expected);
        }
    }

    #[test]
    fn a_pod_beyond_the_variable_cap_is_admitted_unchanged_with_a_warning() {
        let containers: Vec<Value> = (0..MAX_IDENTITY_VARIABLES / 5 + 1)
            .map(|i| json!({"name": format!("c{i}"), "image": "x"}))
            .collect();
        let data = json!({"spec": {"containers": containers}});
        let mutation = inject(&data, &IdentityEnv::default()).unwrap();
        assert!(mutation.operations.is_empty());
        let warning = mutation.warning.unwrap();
        assert!(
            warning.starts_with(
                "pod-identity-env: Pod default/web-3: its containers would take 2005 identity variables, more than the 2000 one pod gets"
            ),
            "{warning}"
        );
    }

    #[test]
    fn wrong_types_where_injection_reads_are_named_by_their_path() {
        let error = |spec: Value| {
            inject(&json!({"spec": spec}), &IdentityEnv::default())
                .unwrap_err()
                .to_string()
        };
        let ok = json!({"name": "c", "image": "x"});
        for (spec, message) in [
            (json!(5), "spec: expected a map, found number 5"),
            (
                json!({"hostname": 1}),
                "spec.hostname: expected a string, found number 1",
            ),
            (
                json!({"containers": {}}),
                "spec.containers: expected a list, found a map",
            ),
            (
                json!({"containers": [ok, "c"]}),
                "spec.containers[1]: expected a map, found string \"c\"",
            ),
            (
                json!({"containers": [ok], "initContainers": [{"name": "i", "env": 5}]}),
                "spec.initContainers[0].env: expected a list, found number 5",
            ),
            (
                json!({"containers": [{"name": "c", "envFrom": ["x"]}]}),
                "spec.containers[0].envFrom[0]: expected a map, found string \"x\"",
            ),
            (
                json!({"containers": [{"name": "c", "envFrom": [{"configMapRef": {"name": 3}}]}]}),
                "spec.containers[0].envFrom[0].configMapRef.name: expected a string, found number 3",
            ),
            (
                json!({"containers": [{"name": "c", "envFrom": [{"secretRef": []}]}]}),
                "spec.containers[0].envFrom[0].secretRef: expected a map, found a list",
            ),
        ] {
            assert_eq!(error(spec.clone()), message, "{spec}");
        }
    }

    #[test]
    fn env_entries_of_another_type_define_nothing_and_a_null_env_from_entry_could_define_all() {
        let data = json!({"spec": {"containers": [
            {"name": "a", "env": [5, {"name": 7}, {"name": "POD_NAME", "value": "mine"}]},
            {"name": "b", "envFrom": [null]},
        ]}});
        let mutation = inject(&data, &IdentityEnv::default()).unwrap();
        let patched = apply(&data, &mutation.operations);
        let names: Vec<&str> = patched["spec"]["containers"][0]["env"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|e| e["name"].as_str())
            .collect();
        assert_eq!(
            names,
            [
                "POD_NAME",
                "POD_NAMESPACE",
                "POD_ORDINAL",
                "STATEFULSET_NAME",
                "POD_HOSTNAME"
            ]
        );
        assert_eq!(patched["spec"]["containers"][1].get("env"), None);
        let warning = mutation.warning.unwrap();
        assert!(
            warning.contains("container \"b\": ")
                && warning.contains("since an envFrom entry (envFrom, no prefix) may define them"),
            "{warning}"
        );
    }
}
