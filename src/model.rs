//! Typed views of the objects the rules read.
//!
//! Rules never walk raw JSON themselves: they read these views, which hold only the fields the
//! policy needs (the cluster inventory keeps nothing else in memory). A view is built from an
//! object's metadata and a `shaped!` struct of its spec that declares the fields it reads (and
//! so what a decoder keeps for it), by `from_parts`: a review's and a watched object's specs
//! are decoded into those structs straight from their text ([`crate::subject`]), a manifest's
//! from the spec of its `DynamicObject` (`check`'s StatefulSets owned, to be judged later; its
//! Services and Nodes by `from_object`). A field of the wrong type is a [`FieldError`] naming
//! its path, never a silent default. What the rules read beside the views is declared the same way
//! ([`StatefulSetSpec`] holds both, [`PodDeleteSpec`], [`PodIdentitySpec`]).

use crate::shape::{Checked, Found, OrNull, Present, StrMap, checked, shaped};
pub use crate::shape::{FieldError, clip};
use crate::vocabulary::Kind;
pub use crate::vocabulary::ObjectRef;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube_core::DynamicObject;
use std::borrow::Cow;
use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::sync::{Arc, Mutex, OnceLock};

pub type Labels = BTreeMap<String, String>;

/// The strings many cached objects share (namespaces, label keys and values, enum-like spec
/// fields), held once: [`intern`] hands out clones of one `Arc<str>` per distinct text.
struct Interner {
    set: HashSet<Arc<str>>,
    /// Size after the last sweep; the next sweep runs when the set has doubled since.
    swept_at: usize,
}

static INTERNER: OnceLock<Mutex<Interner>> = OnceLock::new();

/// The shared copy of `text`. Strings no view holds any more are dropped from the table
/// whenever it has doubled since the last sweep, so it never outgrows twice what is in use.
pub fn intern(text: &str) -> Arc<str> {
    let table = INTERNER.get_or_init(|| {
        Mutex::new(Interner {
            set: HashSet::new(),
            swept_at: 0,
        })
    });
    let mut table = table.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(found) = table.set.get(text) {
        return found.clone();
    }
    if table.set.len() >= 1024 && table.set.len() >= 2 * table.swept_at {
        table.set.retain(|s| Arc::strong_count(s) > 1);
        table.swept_at = table.set.len();
        if table.set.capacity() > 4 * table.set.len().max(256) {
            table.set.shrink_to_fit();
        }
    }
    let shared: Arc<str> = Arc::from(text);
    table.set.insert(shared.clone());
    shared
}

/// Read access to a set of labels, whichever way it is stored.
pub trait LabelMap {
    fn label(&self, key: &str) -> Option<&str>;
    fn pairs(&self) -> impl Iterator<Item = (&str, &str)>;
    fn is_empty(&self) -> bool;
}

impl LabelMap for Labels {
    fn label(&self, key: &str) -> Option<&str> {
        self.get(key).map(String::as_str)
    }
    fn pairs(&self) -> impl Iterator<Item = (&str, &str)> {
        self.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
    fn is_empty(&self) -> bool {
        BTreeMap::is_empty(self)
    }
}

/// Labels or a selector as cached views keep them: pairs sorted by key in one boxed slice,
/// keys and values interned (most objects of a namespace share them).
#[derive(Clone, PartialEq, Eq, Hash, Default)]
pub struct LabelSet(Box<[(Arc<str>, Arc<str>)]>);

impl LabelSet {
    pub fn new() -> Self {
        Self::default()
    }

    /// From pairs in any order; a later duplicate key wins, as in a map.
    pub fn from_pairs<K: AsRef<str>, V: AsRef<str>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        let mut list: Vec<(Arc<str>, Arc<str>)> = pairs
            .into_iter()
            .map(|(k, v)| (intern(k.as_ref()), intern(v.as_ref())))
            .collect();
        // Stable sort keeps the input order among equal keys; keep the last of each, in place
        // (`later` is removed once it has taken the kept slot).
        list.sort_by(|a, b| a.0.cmp(&b.0));
        list.dedup_by(|later, kept| {
            let same = later.0 == kept.0;
            if same {
                std::mem::swap(later, kept);
            }
            same
        });
        LabelSet(list.into_boxed_slice())
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .binary_search_by(|(k, _)| (**k).cmp(key))
            .ok()
            .map(|i| &*self.0[i].1)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (&**k, &**v))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// As an ordinary map (for code that builds objects or collects pods' labels).
    pub fn to_labels(&self) -> Labels {
        self.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }
}

impl LabelMap for LabelSet {
    fn label(&self, key: &str) -> Option<&str> {
        self.get(key)
    }
    fn pairs(&self) -> impl Iterator<Item = (&str, &str)> {
        self.iter()
    }
    fn is_empty(&self) -> bool {
        LabelSet::is_empty(self)
    }
}

impl fmt::Debug for LabelSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl From<Labels> for LabelSet {
    fn from(labels: Labels) -> Self {
        LabelSet::from_pairs(labels)
    }
}

impl From<&Labels> for LabelSet {
    fn from(labels: &Labels) -> Self {
        LabelSet::from_pairs(labels.iter())
    }
}

impl<K: AsRef<str>, V: AsRef<str>> FromIterator<(K, V)> for LabelSet {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        LabelSet::from_pairs(iter)
    }
}

impl serde::Serialize for LabelSet {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.iter())
    }
}

/// Decodes a map of strings straight into interned pairs, without an intermediate map.
impl<'de> serde::Deserialize<'de> for LabelSet {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Pairs;
        impl<'de> serde::de::Visitor<'de> for Pairs {
            type Value = LabelSet;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a map of strings")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<LabelSet, A::Error> {
                let mut pairs: Vec<(std::borrow::Cow<'de, str>, std::borrow::Cow<'de, str>)> =
                    Vec::new();
                while let Some(pair) = map.next_entry()? {
                    pairs.push(pair);
                }
                Ok(LabelSet::from_pairs(pairs))
            }
        }
        d.deserialize_map(Pairs)
    }
}

/// Annotation on a pod (or its template) that makes a force delete a deliberate break-glass step.
pub const ALLOW_FORCE_DELETE_ANNOTATION: &str = "sts-guard.io/allow-force-delete";
/// Pod template annotation that switches identity injection off for one StatefulSet.
pub const INJECT_IDENTITY_ANNOTATION: &str = "sts-guard.io/inject-identity";
/// StatefulSet annotation asking for staged (canary) rollouts of N pods.
pub const CANARY_ANNOTATION: &str = "sts-guard.io/canary";
/// Label the StatefulSet controller puts on each pod with its ordinal (Kubernetes ≥ 1.28).
pub const POD_INDEX_LABEL: &str = "apps.kubernetes.io/pod-index";
/// Taint the node lifecycle uses to mark a node confirmed shut down.
pub const OUT_OF_SERVICE_TAINT: &str = "node.kubernetes.io/out-of-service";

/// Annotations Helm writes on every object of a release (Helm 3.2 and later).
pub const HELM_RELEASE_NAME_ANNOTATION: &str = "meta.helm.sh/release-name";
pub const HELM_RELEASE_NAMESPACE_ANNOTATION: &str = "meta.helm.sh/release-namespace";
/// Annotation Argo CD tracks its objects by: `<application>:<group>/<kind>:<namespace>/<name>`.
pub const ARGOCD_TRACKING_ANNOTATION: &str = "argocd.argoproj.io/tracking-id";
/// Labels Flux's kustomize-controller and helm-controller put on what they apply.
pub const FLUX_KUSTOMIZATION_NAME_LABEL: &str = "kustomize.toolkit.fluxcd.io/name";
pub const FLUX_KUSTOMIZATION_NAMESPACE_LABEL: &str = "kustomize.toolkit.fluxcd.io/namespace";
pub const FLUX_HELMRELEASE_NAME_LABEL: &str = "helm.toolkit.fluxcd.io/name";
pub const FLUX_HELMRELEASE_NAMESPACE_LABEL: &str = "helm.toolkit.fluxcd.io/namespace";
/// The recommended labels that name an application's instance and the tool that manages it
/// (also Argo CD's label tracking).
pub const INSTANCE_LABEL: &str = "app.kubernetes.io/instance";
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// The labels [`Ownership`] reads: what a watched StatefulSet keeps of its labels.
pub const OWNERSHIP_LABELS: &[&str] = &[
    INSTANCE_LABEL,
    MANAGED_BY_LABEL,
    FLUX_KUSTOMIZATION_NAME_LABEL,
    FLUX_KUSTOMIZATION_NAMESPACE_LABEL,
    FLUX_HELMRELEASE_NAME_LABEL,
    FLUX_HELMRELEASE_NAMESPACE_LABEL,
];
/// The annotations [`Ownership`] reads.
pub const OWNERSHIP_ANNOTATIONS: &[&str] = &[
    HELM_RELEASE_NAME_ANNOTATION,
    HELM_RELEASE_NAMESPACE_ANNOTATION,
    ARGOCD_TRACKING_ANNOTATION,
];

/// What kind of owner an [`Owner`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum OwnerKind {
    /// An `ownerReferences` entry: id `<uid> <Kind>/<name>`.
    Object,
    /// id `<namespace>/<release>`.
    HelmRelease,
    /// id: the application as the tracking annotation names it.
    ArgoCdApplication,
    /// id `<namespace>/<name>`.
    FluxKustomization,
    /// id `<namespace>/<name>`.
    FluxHelmRelease,
    /// id `<instance>`, or `<instance> <managed-by>` (label values hold no spaces).
    Instance,
}

/// Something an object belongs to together with other objects: the owner the garbage
/// collector follows, or the application a deploying tool marks it with.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Owner {
    pub kind: OwnerKind,
    /// Unique among owners of its kind; interned.
    pub id: Arc<str>,
}

impl fmt::Display for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let id = &*self.id;
        match self.kind {
            OwnerKind::Object => {
                let kind_name = id.split_once(' ').map_or(id, |(_, rest)| rest);
                let (kind, name) = kind_name.split_once('/').unwrap_or(("object", kind_name));
                write!(f, "owner {kind} {name:?}")
            }
            OwnerKind::HelmRelease => {
                let (namespace, name) = id.split_once('/').unwrap_or(("", id));
                write!(f, "Helm release {name:?} (namespace {namespace})")
            }
            OwnerKind::ArgoCdApplication => write!(f, "Argo CD application {id:?}"),
            OwnerKind::FluxKustomization => write!(f, "Flux Kustomization {id}"),
            OwnerKind::FluxHelmRelease => write!(f, "Flux HelmRelease {id}"),
            OwnerKind::Instance => match id.split_once(' ') {
                Some((instance, managed_by)) => {
                    write!(f, "{INSTANCE_LABEL} {instance:?} (managed by {managed_by})")
                }
                None => write!(f, "{INSTANCE_LABEL} {id:?}"),
            },
        }
    }
}

/// Every [`Owner`] an object's metadata names, sorted. Two objects with an owner in common
/// are parts of one application: Helm, Argo CD, Flux, `kubectl delete -f` and the garbage
/// collector remove them together, one request at a time.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Ownership(Box<[Owner]>);

impl Ownership {
    pub fn from_meta(meta: &ObjectMeta) -> Ownership {
        let label = |key: &str| {
            meta.labels
                .as_ref()
                .and_then(|l| l.get(key))
                .map(String::as_str)
                .filter(|v| !v.is_empty())
        };
        let annotation = |key: &str| {
            meta.annotations
                .as_ref()
                .and_then(|a| a.get(key))
                .map(String::as_str)
                .filter(|v| !v.is_empty())
        };
        let own_namespace = meta.namespace.as_deref().unwrap_or("");
        let mut owners = Vec::new();
        let mut add = |kind: OwnerKind, id: &str| {
            owners.push(Owner {
                kind,
                id: intern(id),
            })
        };
        for reference in meta.owner_references.iter().flatten() {
            if !reference.uid.is_empty() {
                add(
                    OwnerKind::Object,
                    &format!("{} {}/{}", reference.uid, reference.kind, reference.name),
                );
            }
        }
        if let Some(release) = annotation(HELM_RELEASE_NAME_ANNOTATION) {
            let namespace = annotation(HELM_RELEASE_NAMESPACE_ANNOTATION).unwrap_or(own_namespace);
            add(OwnerKind::HelmRelease, &format!("{namespace}/{release}"));
        }
        if let Some(tracking) = annotation(ARGOCD_TRACKING_ANNOTATION) {
            let application = tracking.split_once(':').map_or(tracking, |(app, _)| app);
            add(OwnerKind::ArgoCdApplication, application);
        }
        for (kind, name, namespace) in [
            (
                OwnerKind::FluxKustomization,
                FLUX_KUSTOMIZATION_NAME_LABEL,
                FLUX_KUSTOMIZATION_NAMESPACE_LABEL,
            ),
            (
                OwnerKind::FluxHelmRelease,
                FLUX_HELMRELEASE_NAME_LABEL,
                FLUX_HELMRELEASE_NAMESPACE_LABEL,
            ),
        ] {
            if let Some(name) = label(name) {
                let namespace = label(namespace).unwrap_or(own_namespace);
                add(kind, &format!("{namespace}/{name}"));
            }
        }
        if let Some(instance) = label(INSTANCE_LABEL) {
            match label(MANAGED_BY_LABEL) {
                Some(managed_by) => add(OwnerKind::Instance, &format!("{instance} {managed_by}")),
                None => add(OwnerKind::Instance, instance),
            }
        }
        owners.sort();
        owners.dedup();
        Ownership(owners.into_boxed_slice())
    }

    pub fn owners(&self) -> &[Owner] {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The first owner both have, if any.
    pub fn shared_with(&self, other: &Ownership) -> Option<&Owner> {
        self.0.iter().find(|owner| other.0.contains(owner))
    }
}

/// True when every pair of `selector` is among `labels` (set inclusion).
pub fn selector_matches(selector: &impl LabelMap, labels: &impl LabelMap) -> bool {
    selector.pairs().all(|(k, v)| labels.label(k) == Some(v))
}

/// Renders labels as `a=1,b=2` for messages.
pub fn format_labels(labels: &impl LabelMap) -> String {
    if labels.is_empty() {
        return "(none)".to_string();
    }
    labels
        .pairs()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

fn name_and_namespace(meta: &ObjectMeta, default_namespace: &str) -> (Box<str>, Arc<str>) {
    let namespace = meta
        .namespace
        .as_deref()
        .filter(|ns| !ns.is_empty())
        .unwrap_or(default_namespace);
    (
        meta.name.as_deref().unwrap_or_default().into(),
        intern(namespace),
    )
}

shaped! {
    /// A Service's spec as [`ServiceView`] reads it.
    pub struct ServiceViewSpec<'a> {
        #[serde(borrow)]
        "clusterIP" cluster_ip: Checked<Cow<'a, str>>,
        #[serde(borrow)]
        "type" service_type: Checked<Cow<'a, str>>,
        #[serde(borrow)]
        "selector" selector: Checked<StrMap<'a>>,
    }
}

shaped! {
    /// A StatefulSet's spec as [`StatefulSetView`] and the validating rules beside it read it:
    /// one struct, so that a review decodes it in one pass.
    pub struct StatefulSetSpec<'a> {
        #[serde(borrow)]
        "serviceName" service_name: Checked<Cow<'a, str>>,
        "replicas" replicas: Checked<i64>,
        #[serde(borrow)]
        "selector" selector: Checked<LabelSelector<'a>>,
        #[serde(borrow)]
        "template" template: Checked<PodTemplate<'a>>,
        #[serde(borrow)]
        "ordinals" ordinals: Checked<Ordinals<'a>>,
        #[serde(borrow)]
        "podManagementPolicy" pod_management_policy: Checked<Cow<'a, str>>,
        #[serde(borrow)]
        "updateStrategy" update_strategy: OrNull<UpdateStrategy<'a>>,
        #[serde(borrow)]
        "volumeClaimTemplates" claim_templates: Checked<Vec<Checked<ClaimTemplate<'a>>>>,
        #[serde(borrow)]
        "persistentVolumeClaimRetentionPolicy" retention: Checked<RetentionPolicy<'a>>,
    }
}

shaped! {
    pub struct LabelSelector<'a> {
        #[serde(borrow)]
        "matchLabels" match_labels: Checked<StrMap<'a>>,
    }
}

shaped! {
    /// The pod template: its labels for the view, its spec for the rules.
    pub struct PodTemplate<'a> {
        #[serde(borrow)]
        "metadata" metadata: Checked<LabelsOnly<'a>>,
        #[serde(borrow)]
        "spec" spec: Checked<RulePodSpec<'a>>,
    }
}

shaped! {
    pub struct LabelsOnly<'a> {
        #[serde(borrow)]
        "labels" labels: Checked<StrMap<'a>>,
    }
}

shaped! {
    pub struct Ordinals<'a> {
        "start" start: Checked<i64>,
    }
}

shaped! {
    pub struct UpdateStrategy<'a> {
        #[serde(borrow)]
        "type" kind: Checked<Cow<'a, str>>,
        #[serde(borrow)]
        "rollingUpdate" rolling_update: Checked<RollingUpdate<'a>>,
    }
}

shaped! {
    pub struct RollingUpdate<'a> {
        "partition" partition: Checked<i64>,
    }
}

shaped! {
    /// A Node's spec as [`NodeView`] reads it.
    pub struct NodeViewSpec<'a> {
        #[serde(borrow)]
        "taints" taints: Checked<Vec<Checked<Taint<'a>>>>,
    }
}

shaped! {
    pub struct Taint<'a> {
        #[serde(borrow)]
        "key" key: Checked<Cow<'a, str>>,
    }
}

shaped! {
    pub struct RulePodSpec<'a> {
        #[serde(borrow)]
        "volumes" volumes: Checked<Vec<Checked<Volume<'a>>>>,
        "terminationGracePeriodSeconds" termination_grace_period_seconds: Checked<i64>,
        #[serde(borrow)]
        "containers" containers: Checked<Vec<Checked<ProbedContainer<'a>>>>,
        #[serde(borrow)]
        "initContainers" init_containers: Checked<Vec<Checked<ProbedContainer<'a>>>>,
    }
}

shaped! {
    pub struct Volume<'a> {
        #[serde(borrow)]
        "name" name: Checked<Cow<'a, str>>,
        #[serde(borrow)]
        "persistentVolumeClaim" persistent_volume_claim: Checked<ClaimSource<'a>>,
    }
}

shaped! {
    pub struct ClaimSource<'a> {
        #[serde(borrow)]
        "claimName" claim_name: Checked<Cow<'a, str>>,
    }
}

shaped! {
    /// A container as far as ordered start reads it: whether it gates readiness.
    pub struct ProbedContainer<'a> {
        #[serde(borrow)]
        "restartPolicy" restart_policy: Checked<Cow<'a, str>>,
        "readinessProbe" readiness_probe: Checked<Present>,
        "startupProbe" startup_probe: Checked<Present>,
    }
}

shaped! {
    pub struct ClaimTemplate<'a> {
        #[serde(borrow)]
        "metadata" metadata: Checked<NameOnly<'a>>,
    }
}

/// The names of `spec.volumeClaimTemplates` (a null entry names none): what the storage rules
/// and `sts-guard audit` read of them. Errors name the field path.
pub fn claim_template_names<'s>(
    templates: &'s Checked<Vec<Checked<ClaimTemplate<'_>>>>,
) -> Result<Vec<&'s str>, FieldError> {
    let list = "spec.volumeClaimTemplates";
    let mut names = Vec::new();
    for (i, item) in templates.items(list)?.iter().enumerate() {
        let Some(template) = item.item(list, i)? else {
            continue;
        };
        let name = template
            .metadata
            .field("metadata", |m| &m.name)
            .and_then(|name| name.str("metadata.name"))
            .map_err(|e| e.within(list, i))?;
        names.extend(name);
    }
    Ok(names)
}

shaped! {
    pub struct NameOnly<'a> {
        #[serde(borrow)]
        "name" name: Checked<Cow<'a, str>>,
    }
}

shaped! {
    pub struct RetentionPolicy<'a> {
        #[serde(borrow)]
        "whenDeleted" when_deleted: Checked<Cow<'a, str>>,
        #[serde(borrow)]
        "whenScaled" when_scaled: Checked<Cow<'a, str>>,
    }
}

shaped! {
    /// What identity injection reads of a pod's spec: the names its variables take, and each
    /// container's variables and envFrom sources.
    pub struct PodIdentitySpec<'a> {
        #[serde(borrow)]
        "hostname" hostname: Checked<Cow<'a, str>>,
        #[serde(borrow)]
        "subdomain" subdomain: Checked<Cow<'a, str>>,
        #[serde(borrow)]
        "containers" containers: Checked<Vec<Checked<EnvContainer<'a>>>>,
        #[serde(borrow)]
        "initContainers" init_containers: Checked<Vec<Checked<EnvContainer<'a>>>>,
    }
}

shaped! {
    /// A container as identity injection reads it: its name, the variables it defines and the
    /// envFrom sources that could define more.
    pub struct EnvContainer<'a> {
        #[serde(borrow)]
        "name" name: Checked<Cow<'a, str>>,
        #[serde(borrow)]
        "env" env: Checked<Vec<Checked<NameOnly<'a>>>>,
        #[serde(borrow)]
        "envFrom" env_from: Checked<Vec<Checked<EnvFromSpec<'a>>>>,
    }
}

shaped! {
    pub struct EnvFromSpec<'a> {
        #[serde(borrow)]
        "prefix" prefix: Checked<Cow<'a, str>>,
        #[serde(borrow)]
        "configMapRef" config_map_ref: Checked<NameOnly<'a>>,
        #[serde(borrow)]
        "secretRef" secret_ref: Checked<NameOnly<'a>>,
    }
}

shaped! {
    /// A pod under DELETE, as `pod-force-delete` reads its spec.
    pub struct PodDeleteSpec<'a> {
        #[serde(borrow)]
        "nodeName" node_name: Checked<Cow<'a, str>>,
        "terminationGracePeriodSeconds" termination_grace_period_seconds: Checked<i64>,
    }
}

shaped! {
    pub struct PodPhase<'a> {
        #[serde(borrow)]
        "phase" phase: Checked<Cow<'a, str>>,
    }
}

/// Labels or a selector read from a [`StrMap`], as the compact interned form views keep; a
/// value that is not a string is named by its key.
fn label_set(map: &Checked<StrMap>, path: &str) -> Result<LabelSet, FieldError> {
    let Some(map) = map.get(path)? else {
        return Ok(LabelSet::new());
    };
    for (key, value) in &map.0 {
        match value {
            Checked::Found(_) => {}
            Checked::Wrong(found) => return Err(found.at(&format!("{path}.{key}"), "a string")),
            Checked::Absent => return Err(Found::Null.at(&format!("{path}.{key}"), "a string")),
        }
    }
    // Every value is a string by now; an exact-size iterator collects in one allocation.
    Ok(LabelSet::from_pairs(map.0.iter().map(|(key, value)| {
        let value = match value {
            Checked::Found(value) => &**value,
            _ => "",
        };
        (&**key, value)
    })))
}

/// What the rules need to know of a Service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceView {
    /// Interned.
    pub namespace: Arc<str>,
    pub name: Box<str>,
    pub cluster_ip: Option<Box<str>>,
    /// Interned.
    pub service_type: Option<Arc<str>>,
    pub selector: LabelSet,
}

impl ServiceView {
    pub fn from_object(obj: &DynamicObject, default_namespace: &str) -> Result<Self, FieldError> {
        Self::from_parts(
            &obj.metadata,
            &checked(obj.data.get("spec")),
            default_namespace,
        )
    }

    /// The view of a Service with this metadata and spec (an object's `spec`, decoded).
    pub fn from_parts(
        meta: &ObjectMeta,
        spec: &Checked<ServiceViewSpec>,
        default_namespace: &str,
    ) -> Result<Self, FieldError> {
        let (name, namespace) = name_and_namespace(meta, default_namespace);
        Ok(ServiceView {
            namespace,
            name,
            cluster_ip: spec
                .field("spec", |s| &s.cluster_ip)?
                .str("spec.clusterIP")?
                .map(Box::from),
            service_type: spec
                .field("spec", |s| &s.service_type)?
                .str("spec.type")?
                .map(intern),
            selector: label_set(spec.field("spec", |s| &s.selector)?, "spec.selector")?,
        })
    }

    /// A headless Service has `clusterIP: None`. An ExternalName Service never is, whatever
    /// its clusterIP says.
    pub fn is_headless(&self) -> bool {
        self.cluster_ip.as_deref() == Some("None")
            && self.service_type.as_deref().unwrap_or("ClusterIP") == "ClusterIP"
    }

    /// Why the Service is not headless, for messages.
    pub fn describe_addressing(&self) -> String {
        match (self.service_type.as_deref(), self.cluster_ip.as_deref()) {
            (Some(t @ ("ExternalName" | "NodePort" | "LoadBalancer")), _) => {
                format!("it is of type {t}")
            }
            (_, Some(ip)) if ip != "None" => format!("it has clusterIP {ip}"),
            _ => "it lacks clusterIP: None and gets a virtual IP".to_string(),
        }
    }

    /// What the Service's own name resolves to when it is not headless, for messages.
    pub fn resolves_to(&self) -> &'static str {
        match self.service_type.as_deref() {
            Some("ExternalName") => "the external name it points at",
            _ => "one virtual IP",
        }
    }

    pub fn object_ref(&self) -> ObjectRef {
        ObjectRef::new(Kind::Service, &self.namespace, &self.name)
    }
}

/// What a StatefulSet loses with a governing Service that is not headless, for messages: the
/// DNS specification defines per-pod names only for headless Services; CoreDNS happens to
/// answer them for a ClusterIP Service too, kube-dns and others do not.
pub const PER_POD_NAMES_NEED_HEADLESS: &str = "are defined only for headless Services (CoreDNS answers them anyway, other cluster DNS servers need not)";

/// What the rules need to know of a StatefulSet, in the inventory and as a request subject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatefulSetView {
    /// Interned.
    pub namespace: Arc<str>,
    pub name: Box<str>,
    /// Shared with the inventory's index of governed StatefulSets.
    pub service_name: Option<Arc<str>>,
    /// `spec.replicas`, defaulted to 1 as the API server does.
    pub replicas: i64,
    /// `spec.selector.matchLabels`: the labels that make a pod this StatefulSet's.
    pub selector: LabelSet,
    pub template_labels: LabelSet,
    pub ordinals_start: i64,
    /// `OrderedReady` (the default) or `Parallel`; interned.
    pub pod_management_policy: Arc<str>,
    /// `RollingUpdate` (the default) or `OnDelete`; interned.
    pub update_strategy: Arc<str>,
    pub partition: Option<i64>,
    /// The owners and applications it belongs to (ownerReferences, Helm, Argo CD, Flux labels).
    pub ownership: Ownership,
}

impl StatefulSetView {
    pub fn from_object(obj: &DynamicObject, default_namespace: &str) -> Result<Self, FieldError> {
        Self::from_parts(
            &obj.metadata,
            &checked(obj.data.get("spec")),
            default_namespace,
        )
    }

    /// The view of a StatefulSet with this metadata and spec (an object's `spec`, decoded).
    pub fn from_parts(
        meta: &ObjectMeta,
        spec: &Checked<StatefulSetSpec>,
        default_namespace: &str,
    ) -> Result<Self, FieldError> {
        let (name, namespace) = name_and_namespace(meta, default_namespace);
        // Read in this order, so that of several wrong fields the same one is reported first.
        let service_name = spec
            .field("spec", |s| &s.service_name)?
            .str("spec.serviceName")?
            .map(Arc::from);
        let replicas = spec
            .field("spec", |s| &s.replicas)?
            .int32("spec.replicas")?
            .unwrap_or(1);
        let selector = label_set(
            spec.field("spec", |s| &s.selector)?
                .field("spec.selector", |s| &s.match_labels)?,
            "spec.selector.matchLabels",
        )?;
        let template_labels = label_set(
            spec.field("spec", |s| &s.template)?
                .field("spec.template", |t| &t.metadata)?
                .field("spec.template.metadata", |m| &m.labels)?,
            "spec.template.metadata.labels",
        )?;
        let ordinals_start = spec
            .field("spec", |s| &s.ordinals)?
            .field("spec.ordinals", |o| &o.start)?
            .int32("spec.ordinals.start")?
            .unwrap_or(0);
        let pod_management_policy = spec
            .field("spec", |s| &s.pod_management_policy)?
            .str("spec.podManagementPolicy")?
            .unwrap_or("OrderedReady");
        let strategy = spec.field("spec", |s| &s.update_strategy.value)?;
        let update_strategy = strategy
            .field("spec.updateStrategy", |u| &u.kind)?
            .str("spec.updateStrategy.type")?
            .unwrap_or("RollingUpdate");
        let partition = strategy
            .field("spec.updateStrategy", |u| &u.rolling_update)?
            .field("spec.updateStrategy.rollingUpdate", |r| &r.partition)?
            .int32("spec.updateStrategy.rollingUpdate.partition")?;
        Ok(StatefulSetView {
            namespace,
            name,
            service_name,
            replicas,
            selector,
            template_labels,
            ordinals_start,
            pod_management_policy: intern(pod_management_policy),
            update_strategy: intern(update_strategy),
            partition,
            ownership: Ownership::from_meta(meta),
        })
    }

    /// The Service name this StatefulSet relies on, when set and non-empty.
    pub fn governing_service(&self) -> Option<&str> {
        self.service_name.as_deref().filter(|s| !s.is_empty())
    }

    pub fn object_ref(&self) -> ObjectRef {
        ObjectRef::new(Kind::StatefulSet, &self.namespace, &self.name)
    }
}

/// A StatefulSet or a Service as its validating rules read it: how `check` and `audit` hand
/// the engine the views they already built for their inventory.
#[derive(Debug, Clone, Copy)]
pub enum Viewed<'a> {
    StatefulSet {
        view: &'a StatefulSetView,
        /// `spec` as the rules read it beside the view.
        spec: &'a Checked<StatefulSetSpec<'a>>,
    },
    Service(&'a ServiceView),
}

impl Viewed<'_> {
    pub fn object_ref(&self) -> ObjectRef {
        match self {
            Viewed::StatefulSet { view, .. } => view.object_ref(),
            Viewed::Service(view) => view.object_ref(),
        }
    }
}

/// What the force-delete rule needs to know of a Node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeView {
    pub name: Box<str>,
    pub out_of_service: bool,
}

impl NodeView {
    pub fn from_object(obj: &DynamicObject) -> Result<Self, FieldError> {
        Self::from_parts(&obj.metadata, &checked(obj.data.get("spec")))
    }

    /// The view of a Node with this metadata and spec (an object's `spec`, decoded).
    pub fn from_parts(meta: &ObjectMeta, spec: &Checked<NodeViewSpec>) -> Result<Self, FieldError> {
        let mut out_of_service = false;
        let taints = "spec.taints";
        for (i, item) in spec
            .field("spec", |s| &s.taints)?
            .items(taints)?
            .iter()
            .enumerate()
        {
            let Some(taint) = item.item(taints, i)? else {
                continue;
            };
            let key = taint.key.str("key").map_err(|e| e.within(taints, i))?;
            out_of_service |= key == Some(OUT_OF_SERVICE_TAINT);
        }
        Ok(NodeView {
            name: meta.name.as_deref().unwrap_or_default().into(),
            out_of_service,
        })
    }
}

/// Label the StatefulSet controller puts on every pod it creates, with the pod's name.
pub const STATEFULSET_POD_NAME_LABEL: &str = "statefulset.kubernetes.io/pod-name";

/// What `sts-guard audit` needs to know of a live StatefulSet pod (pods are read only there:
/// the webhook never lists them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodView {
    pub namespace: String,
    pub name: String,
    pub labels: Labels,
    /// The StatefulSet that controls the pod (ownerReference with `controller: true`).
    pub statefulset: Option<String>,
    /// `spec.nodeName`, when scheduled.
    pub node_name: Option<String>,
    /// `metadata.deletionTimestamp`: set by a graceful delete to the end of its grace period.
    pub deletion_timestamp: Option<k8s_openapi::jiff::Timestamp>,
}

impl PodView {
    pub fn object_ref(&self) -> ObjectRef {
        ObjectRef::new(Kind::Pod, &self.namespace, &self.name)
    }
}

/// The StatefulSet that controls a pod, from its ownerReferences.
pub fn controlling_statefulset(meta: &ObjectMeta) -> Option<&str> {
    meta.owner_references.as_ref()?.iter().find_map(|o| {
        (Kind::from_manifest(&o.api_version, &o.kind) == Some(Kind::StatefulSet)
            && o.controller == Some(true))
        .then_some(o.name.as_str())
    })
}

/// Reads an annotation as a boolean flag set to exactly "true".
pub fn annotation_is_true(meta: &ObjectMeta, key: &str) -> bool {
    meta.annotations
        .as_ref()
        .and_then(|a| a.get(key))
        .is_some_and(|v| v == "true")
}

/// Labels from pairs, for tests.
#[cfg(test)]
pub(crate) fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    #[test]
    fn selector_is_a_subset_test() {
        let pod = labels(&[("app", "web"), ("tier", "db")]);
        assert!(selector_matches(&labels(&[("app", "web")]), &pod));
        assert!(!selector_matches(&labels(&[("app", "api")]), &pod));
        assert!(!selector_matches(&labels(&[("zone", "a")]), &pod));
    }

    #[test]
    fn label_sets_are_sorted_deduplicated_and_share_their_strings() {
        let set = LabelSet::from_pairs([("b", "2"), ("a", "1"), ("b", "3")]);
        assert_eq!(set.iter().collect::<Vec<_>>(), vec![("a", "1"), ("b", "3")]);
        assert_eq!(set.get("b"), Some("3"));
        assert_eq!(set.get("c"), None);
        let other = LabelSet::from(&labels(&[("a", "1")]));
        assert!(Arc::ptr_eq(&set.0[0].0, &other.0[0].0), "keys are interned");
        assert!(
            Arc::ptr_eq(&set.0[0].1, &other.0[0].1),
            "values are interned"
        );
        assert!(selector_matches(&other, &set) && !selector_matches(&set, &other));
        assert!(selector_matches(&other, &labels(&[("a", "1"), ("z", "9")])));
        assert_eq!(format_labels(&set), "a=1,b=3");
        assert_eq!(set.to_labels(), labels(&[("a", "1"), ("b", "3")]));
    }

    #[test]
    fn of_a_key_given_many_times_the_last_value_is_kept() {
        let set = LabelSet::from_pairs([("k", "1"), ("a", "0"), ("k", "2"), ("k", "3")]);
        assert_eq!(set.iter().collect::<Vec<_>>(), vec![("a", "0"), ("k", "3")]);
    }

    #[test]
    fn label_sets_decode_and_encode_as_maps_of_strings() {
        let set: LabelSet = serde_json::from_value(json!({"z": "1", "a": "2"})).unwrap();
        assert_eq!(set.iter().collect::<Vec<_>>(), vec![("a", "2"), ("z", "1")]);
        assert_eq!(
            serde_json::to_value(&set).unwrap(),
            json!({"a": "2", "z": "1"})
        );
        assert!(serde_json::from_value::<LabelSet>(json!({"a": 1})).is_err());
        let obj = DynamicObject {
            types: None,
            metadata: ObjectMeta::default(),
            data: json!({"spec": {"selector": {"app": 5}}}),
        };
        let err = ServiceView::from_object(&obj, "default").unwrap_err();
        assert_eq!(
            err.to_string(),
            "spec.selector.app: expected a string, found number 5"
        );
    }

    #[test]
    fn interned_strings_no_view_holds_are_swept() {
        let kept = intern("sts-guard-test-kept");
        for i in 0..5000 {
            drop(intern(&format!("sts-guard-test-transient-{i}")));
        }
        let table = INTERNER.get().unwrap().lock().unwrap();
        assert!(table.set.len() < 4096, "{} strings held", table.set.len());
        assert!(table.set.contains("sts-guard-test-kept"));
        drop(table);
        assert!(Arc::ptr_eq(&kept, &intern("sts-guard-test-kept")));
    }

    #[test]
    fn ownership_names_owners_releases_and_applications() {
        let meta: ObjectMeta = serde_json::from_value(json!({
            "name": "web", "namespace": "shop",
            "labels": {"app.kubernetes.io/instance": "web", "app.kubernetes.io/managed-by": "Helm",
                       "kustomize.toolkit.fluxcd.io/name": "apps", "helm.toolkit.fluxcd.io/name": "db",
                       "helm.toolkit.fluxcd.io/namespace": "flux-system", "app": "web"},
            "annotations": {"meta.helm.sh/release-name": "web", "meta.helm.sh/release-namespace": "shop",
                            "argocd.argoproj.io/tracking-id": "store:apps/StatefulSet:shop/web"},
            "ownerReferences": [{"apiVersion": "db.example.com/v1", "kind": "Cluster", "name": "main", "uid": "u-1"}]
        }))
        .unwrap();
        let ownership = Ownership::from_meta(&meta);
        let described: Vec<String> = ownership.owners().iter().map(ToString::to_string).collect();
        assert_eq!(
            described,
            [
                "owner Cluster \"main\"",
                "Helm release \"web\" (namespace shop)",
                "Argo CD application \"store\"",
                // Without its namespace label, the Kustomization is taken to be in the object's.
                "Flux Kustomization shop/apps",
                "Flux HelmRelease flux-system/db",
                "app.kubernetes.io/instance \"web\" (managed by Helm)",
            ]
        );
        // One owner in common is enough; none, or a different one of the same kind, is not.
        let helm_only: ObjectMeta = serde_json::from_value(json!({"namespace": "shop",
            "annotations": {"meta.helm.sh/release-name": "web"}}))
        .unwrap();
        let shared = Ownership::from_meta(&helm_only);
        assert_eq!(
            shared
                .shared_with(&ownership)
                .map(ToString::to_string)
                .as_deref(),
            Some("Helm release \"web\" (namespace shop)")
        );
        let other: ObjectMeta = serde_json::from_value(json!({"namespace": "shop",
            "ownerReferences": [{"apiVersion": "db.example.com/v1", "kind": "Cluster", "name": "main", "uid": "u-2"}],
            "labels": {"app.kubernetes.io/instance": "web"}})).unwrap();
        assert_eq!(Ownership::from_meta(&other).shared_with(&ownership), None);
        assert!(Ownership::from_meta(&ObjectMeta::default()).is_empty());
        assert_eq!(
            Ownership::default().shared_with(&Ownership::default()),
            None
        );
    }

    #[test]
    fn headless_means_cluster_ip_none() {
        let mut svc = ServiceView {
            namespace: "d".into(),
            name: "s".into(),
            cluster_ip: Some("None".into()),
            service_type: None,
            selector: LabelSet::new(),
        };
        assert!(svc.is_headless());
        svc.service_type = Some("NodePort".into());
        assert!(!svc.is_headless());
        svc.service_type = None;
        svc.cluster_ip = Some("10.0.0.1".into());
        assert!(!svc.is_headless());
        assert_eq!(svc.describe_addressing(), "it has clusterIP 10.0.0.1");
    }

    #[test]
    fn a_wrong_type_on_the_way_to_a_field_is_named() {
        let obj = DynamicObject {
            types: None,
            metadata: ObjectMeta::default(),
            data: json!({"spec": 5}),
        };
        let err = StatefulSetView::from_object(&obj, "default").unwrap_err();
        assert_eq!(err.to_string(), "spec: expected a map, found number 5");
    }

    #[test]
    fn int32_fields_refuse_numbers_the_api_cannot_store() {
        let obj = DynamicObject {
            types: None,
            metadata: ObjectMeta::default(),
            data: json!({"spec": {"replicas": i64::MAX}}),
        };
        let err = StatefulSetView::from_object(&obj, "default").unwrap_err();
        assert_eq!(
            err.to_string(),
            "spec.replicas: expected an integer that fits in 32 bits, found 9223372036854775807"
        );
    }

    #[test]
    fn a_huge_wrong_value_is_quoted_short() {
        let huge = "x".repeat(7 << 20);
        let obj = DynamicObject {
            types: None,
            metadata: ObjectMeta::default(),
            data: json!({"spec": {"replicas": huge}}),
        };
        let err = StatefulSetView::from_object(&obj, "default").unwrap_err();
        assert_eq!(err.path, "spec.replicas");
        assert!(err.to_string().len() < 200, "{}", err.to_string().len());
    }

    #[test]
    fn of_several_wrong_fields_the_first_a_view_reads_is_reported() {
        let obj = DynamicObject {
            types: None,
            metadata: ObjectMeta::default(),
            data: json!({"spec": {"template": 5, "updateStrategy": [], "replicas": "two"}}),
        };
        let err = StatefulSetView::from_object(&obj, "default").unwrap_err();
        assert_eq!(err.path, "spec.replicas");
    }

    #[test]
    fn a_taint_of_the_wrong_type_is_named_by_its_index() {
        let node = |taints: Value| DynamicObject {
            types: None,
            metadata: ObjectMeta::default(),
            data: json!({"spec": {"taints": taints}}),
        };
        let error = |taints| {
            NodeView::from_object(&node(taints))
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            error(json!([{"key": "a"}, 5])),
            "spec.taints[1]: expected a map, found number 5"
        );
        assert_eq!(
            error(json!([{"key": 1}])),
            "spec.taints[0].key: expected a string, found number 1"
        );
        assert_eq!(
            error(json!("x")),
            "spec.taints: expected a list, found string \"x\""
        );
        let shut_down = node(json!([null, {"key": OUT_OF_SERVICE_TAINT}]));
        assert!(NodeView::from_object(&shut_down).unwrap().out_of_service);
    }

    #[test]
    fn wrong_field_type_names_the_path() {
        let obj = DynamicObject {
            types: None,
            metadata: ObjectMeta::default(),
            data: json!({"spec": {"replicas": "two"}}),
        };
        let err = StatefulSetView::from_object(&obj, "default").unwrap_err();
        assert_eq!(err.path, "spec.replicas");
        assert_eq!(
            err.to_string(),
            "spec.replicas: expected an integer, found string \"two\""
        );
    }
}
