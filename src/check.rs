//! `sts-guard check`: the validating rules run over manifest files, for CI.
//!
//! The files given together are one inventory (a Service in one file satisfies a StatefulSet in
//! another). Each StatefulSet and Service is judged as a CREATE through the same
//! [`evaluate`](crate::engine::evaluate) the webhook uses; DELETE-only rules do not apply.

use crate::config::Config;
use crate::engine::{Decision, Endpoint, Skip, Violation, evaluate};
use crate::inventory::StaticInventory;
use crate::manifest::{InputLimits, LoadError, Manifest, SourcePos, read_paths_with, to_dynamic};
use crate::model::{NodeView, ServiceView, StatefulSetView};
use crate::vocabulary::{Kind, ObjectRef, RuleId};
use k8s_openapi::api::authentication::v1::UserInfo;
use kube_core::admission::{AdmissionRequest, Operation};
use kube_core::{DynamicObject, GroupVersionKind, GroupVersionResource, TypeMeta};
use std::collections::HashSet;

/// An object read from input and interpreted.
pub struct LoadedObject {
    pub pos: SourcePos,
    /// The kind, when it is one sts-guard reads.
    pub known_kind: Option<Kind>,
    kind: String,
    name: String,
    pub namespace: String,
    /// A StatefulSet or Service as compact JSON until it is checked: an object parsed takes
    /// many times its text in memory, so the objects of a large input wait in this form.
    json: Option<Box<[u8]>>,
}

impl LoadedObject {
    pub fn kind(&self) -> &str {
        &self.kind
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The object the rules judge: a StatefulSet or a Service.
    fn judged(&self) -> Option<DynamicObject> {
        let json = self.json.as_ref()?;
        let value = serde_json::from_slice(json).expect("JSON written by serde_json reads back");
        Some(to_dynamic(value).expect("an object read once reads again"))
    }
}

/// What the inventory learns from one object.
enum Indexed {
    StatefulSet(StatefulSetView),
    Service(ServiceView),
    Node(NodeView),
}

/// One manifest interpreted on its own, in parallel as it is read.
type Prepared = Result<(LoadedObject, Option<Indexed>), LoadError>;

/// Interprets one manifest. `keep` keeps StatefulSets and Services for checking.
fn prepare(manifest: Manifest, default_namespace: &str, keep: bool) -> Prepared {
    let pos = manifest.pos;
    let at = |message: String| LoadError {
        file: pos.file.to_string(),
        line: Some(pos.line),
        message,
    };
    let field = |name: &str| manifest.value.get(name).and_then(|v| v.as_str());
    let judged = matches!(
        Kind::from_manifest(
            field("apiVersion").unwrap_or(""),
            field("kind").unwrap_or("")
        ),
        Some(Kind::StatefulSet | Kind::Service)
    );
    let json = (keep && judged).then(|| {
        serde_json::to_vec(&manifest.value)
            .expect("a JSON value serializes")
            .into_boxed_slice()
    });
    let object = to_dynamic(manifest.value).map_err(&at)?;
    let types = object.types.as_ref().expect("to_dynamic sets types");
    let known_kind = Kind::from_manifest(&types.api_version, &types.kind);
    let kind = types.kind.clone();
    let name = object.metadata.name.clone().unwrap_or_default();
    let indexed = match known_kind {
        Some(Kind::StatefulSet) => {
            Some(StatefulSetView::from_object(&object, default_namespace).map(Indexed::StatefulSet))
        }
        Some(Kind::Service) => {
            Some(ServiceView::from_object(&object, default_namespace).map(Indexed::Service))
        }
        Some(Kind::Node) => Some(NodeView::from_object(&object).map(Indexed::Node)),
        // Pods are judged only by the webhook (DELETE) and audit, never in files.
        Some(Kind::Pod) | None => None,
    }
    .transpose()
    .map_err(|e| at(format!("{kind} {name:?}: {e}")))?;
    if indexed.is_some() && name.is_empty() {
        return Err(at(format!("{kind}: metadata.name is missing")));
    }
    let namespace = object.metadata.namespace.clone();
    let loaded_object = loaded(
        pos,
        known_kind,
        kind,
        name,
        namespace,
        default_namespace,
        json,
    );
    Ok((loaded_object, indexed))
}

fn loaded(
    pos: SourcePos,
    known_kind: Option<Kind>,
    kind: String,
    name: String,
    namespace: Option<String>,
    default_namespace: &str,
    json: Option<Box<[u8]>>,
) -> LoadedObject {
    let namespace = namespace
        .filter(|ns| !ns.is_empty())
        .unwrap_or_else(|| default_namespace.to_string());
    LoadedObject {
        pos,
        known_kind,
        kind,
        name,
        namespace,
        json,
    }
}

/// Indexes the StatefulSets, Services and Nodes among prepared objects, in input order (a
/// later object with the same namespace and name replaces an earlier one).
fn index(prepared: Vec<Prepared>) -> Result<(Vec<LoadedObject>, StaticInventory), Vec<LoadError>> {
    let mut objects = Vec::with_capacity(prepared.len());
    let mut inventory = StaticInventory::new();
    let mut errors = Vec::new();
    for p in prepared {
        match p {
            Ok((object, indexed)) => {
                match indexed {
                    Some(Indexed::StatefulSet(v)) => inventory.add_statefulset(v),
                    Some(Indexed::Service(v)) => inventory.add_service(v),
                    Some(Indexed::Node(v)) => inventory.add_node(v),
                    None => {}
                }
                objects.push(object);
            }
            Err(e) => errors.push(e),
        }
    }
    if errors.is_empty() {
        Ok((objects, inventory))
    } else {
        Err(errors)
    }
}

/// Interprets manifests and indexes the StatefulSets, Services and Nodes among them.
pub fn load_objects(
    manifests: Vec<Manifest>,
    default_namespace: &str,
) -> Result<(Vec<LoadedObject>, StaticInventory), Vec<LoadError>> {
    index(
        manifests
            .into_iter()
            .map(|m| prepare(m, default_namespace, true))
            .collect(),
    )
}

/// Reads `paths` (see [`read_paths_with`]) and interprets each object as soon as it is read,
/// so that only one document per reading thread is held parsed: memory stays a small multiple
/// of the input. Read errors, if any, are returned alone.
pub fn load_paths(
    paths: &[String],
    limits: &InputLimits,
    default_namespace: &str,
) -> Result<(Vec<LoadedObject>, StaticInventory), Vec<LoadError>> {
    let (prepared, errors) =
        read_paths_with(paths, limits, &|m| prepare(m, default_namespace, true));
    if !errors.is_empty() {
        return Err(errors);
    }
    index(prepared)
}

/// [`load_paths`] for the inventory alone (`serve --manifests`, `review --manifests`).
pub fn load_inventory_paths(
    paths: &[String],
    limits: &InputLimits,
    default_namespace: &str,
) -> Result<StaticInventory, Vec<LoadError>> {
    let (prepared, errors) =
        read_paths_with(paths, limits, &|m| prepare(m, default_namespace, false));
    if !errors.is_empty() {
        return Err(errors);
    }
    index(prepared).map(|(_, inventory)| inventory)
}

/// A CREATE request for `object`, as kube-apiserver would send it.
pub fn create_request(object: DynamicObject, namespace: &str) -> AdmissionRequest<DynamicObject> {
    let types = object.types.clone().unwrap_or_default();
    let (group, version) = match types.api_version.split_once('/') {
        Some((g, v)) => (g.to_string(), v.to_string()),
        None => (String::new(), types.api_version.clone()),
    };
    // Kinds sts-guard does not know get no resource; the engine reads only `kind`.
    let resource = Kind::from_manifest(&types.api_version, &types.kind).map_or("", Kind::plural);
    AdmissionRequest {
        types: TypeMeta {
            api_version: "admission.k8s.io/v1".into(),
            kind: "AdmissionReview".into(),
        },
        uid: String::new(),
        kind: GroupVersionKind::gvk(&group, &version, &types.kind),
        resource: GroupVersionResource::gvr(&group, &version, resource),
        sub_resource: None,
        request_kind: None,
        request_resource: None,
        request_sub_resource: None,
        name: object.metadata.name.clone().unwrap_or_default(),
        namespace: Some(namespace.to_string()),
        operation: Operation::Create,
        user_info: UserInfo::default(),
        object: Some(object),
        old_object: None,
        dry_run: true,
        options: None,
    }
}

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

/// Checks every StatefulSet and Service among `objects` against `inventory`.
pub fn check_objects(
    objects: Vec<LoadedObject>,
    inventory: &StaticInventory,
    config: &Config,
) -> CheckReport {
    let mut results: Vec<ObjectResult> = objects
        .into_iter()
        .map(|o| {
            let (skipped, decision) = match o.known_kind {
                Some(Kind::StatefulSet | Kind::Service) => {
                    let object = o.judged().expect("StatefulSets and Services are kept");
                    let request = create_request(object, &o.namespace);
                    let decision = evaluate(&request, inventory, config, Endpoint::Validate);
                    let skipped = (decision.skipped == Some(Skip::ExcludedNamespace))
                        .then_some("excluded namespace");
                    (skipped, decision)
                }
                Some(Kind::Node | Kind::Pod) | None => (Some("not checked"), Decision::default()),
            };
            ObjectResult {
                pos: Some(o.pos),
                kind: o.kind,
                namespace: o.namespace,
                name: o.name,
                skipped,
                decision,
            }
        })
        .collect();
    drop_reported_twins(&mut results);
    CheckReport {
        objects: results,
        ..CheckReport::default()
    }
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
