//! The objects read from a cluster, each decoded into only what it is read for. Services,
//! StatefulSets and Nodes (watched by the cluster inventory, listed by `audit`) decode as a
//! review's objects do ([`crate::subject`]), straight into the typed specs their views are
//! built from: everything else in a watched object (managedFields, annotations, the pod template's
//! containers, a Node's status and image list) is skipped by the JSON decoder without being
//! allocated, which keeps both the cache and the transient memory of a 10,000-object list
//! small. `sts-guard audit`'s pods, whole StatefulSets, claims and ControllerRevisions have
//! shapes of their own below.

use crate::model::{
    Labels, NodeView, NodeViewSpec, PodView, ServiceView, ServiceViewSpec, StatefulSetSpec,
    StatefulSetView, claim_template_names, controlling_statefulset,
};
use crate::shape::{Checked, checked};
use k8s_openapi::api::apps::v1::{ControllerRevision, StatefulSet};
use k8s_openapi::api::core::v1::{Node, PersistentVolumeClaim, Pod, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
use kube_derive::Resource;
use serde::{Deserialize, Deserializer};

/// Decodes only name, namespace, uid and resourceVersion of `metadata` (the watcher needs the
/// resourceVersion to resume).
fn identity_meta<'de, D: Deserializer<'de>>(d: D) -> Result<ObjectMeta, D::Error> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Meta {
        name: Option<String>,
        namespace: Option<String>,
        uid: Option<String>,
        resource_version: Option<String>,
    }
    let m = Meta::deserialize(d)?;
    Ok(ObjectMeta {
        name: m.name,
        namespace: m.namespace,
        uid: m.uid,
        resource_version: m.resource_version,
        ..ObjectMeta::default()
    })
}

fn null_as_default<'de, D: Deserializer<'de>, T: Default + Deserialize<'de>>(
    d: D,
) -> Result<T, D::Error> {
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// A pod-like object of this file: its `metadata` as `pod_meta` decodes it and its `spec`;
/// `kube::Resource` (the API coordinates the watches and lists ask for it by) is inherited
/// from the k8s-openapi type.
macro_rules! resource_with_spec {
    ($ty:ident, $spec:ty, $inherit:ident, $meta:literal) => {
        #[derive(Debug, Clone, Deserialize, Resource)]
        #[resource(inherit = $inherit)]
        pub struct $ty {
            #[serde(deserialize_with = $meta, default)]
            pub metadata: ObjectMeta,
            #[serde(default, deserialize_with = "null_as_default")]
            pub spec: $spec,
        }
    };
}

/// A watched object: its metadata as the watcher resumes from it and its view. Of the object
/// the decoder keeps the metadata `$meta` reads and the typed spec the view is built from, as
/// for an object under review ([`crate::subject`]); the rest is skipped without being
/// allocated.
macro_rules! watched_view {
    ($ty:ident, $view:ty, $spec:ident, $inherit:ident, $meta:literal, |$m:ident, $s:ident| $build:expr) => {
        #[derive(Debug, Clone, Resource)]
        #[resource(inherit = $inherit)]
        pub struct $ty {
            pub metadata: ObjectMeta,
            pub view: $view,
        }

        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                #[derive(Deserialize)]
                struct Parts<'a> {
                    #[serde(default, deserialize_with = $meta)]
                    metadata: ObjectMeta,
                    #[serde(default, borrow)]
                    spec: Checked<$spec<'a>>,
                }
                let Parts { metadata, spec } = Parts::deserialize(d)?;
                let view = {
                    let ($m, $s) = (&metadata, &spec);
                    $build.map_err(serde::de::Error::custom)?
                };
                Ok($ty { metadata, view })
            }
        }

        impl From<$ty> for $view {
            fn from(watched: $ty) -> Self {
                watched.view
            }
        }
    };
}

watched_view!(
    WatchedService,
    ServiceView,
    ServiceViewSpec,
    Service,
    "crate::subject::watched_metadata",
    |meta, spec| ServiceView::from_parts(meta, spec, "")
);
watched_view!(
    WatchedStatefulSet,
    StatefulSetView,
    StatefulSetSpec,
    StatefulSet,
    "crate::subject::watched_statefulset_metadata",
    |meta, spec| StatefulSetView::from_parts(meta, spec, "")
);
watched_view!(
    WatchedNode,
    NodeView,
    NodeViewSpec,
    Node,
    "crate::subject::watched_metadata",
    |meta, spec| NodeView::from_parts(meta, spec)
);

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodSpec {
    node_name: Option<String>,
}

fn pod_meta<'de, D: Deserializer<'de>>(d: D) -> Result<ObjectMeta, D::Error> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Owner {
        #[serde(default)]
        api_version: String,
        #[serde(default)]
        kind: String,
        #[serde(default)]
        name: String,
        controller: Option<bool>,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Meta {
        name: Option<String>,
        namespace: Option<String>,
        resource_version: Option<String>,
        #[serde(default, deserialize_with = "null_as_default")]
        labels: Labels,
        deletion_timestamp: Option<Time>,
        #[serde(default, deserialize_with = "null_as_default")]
        owner_references: Vec<Owner>,
    }
    let m = Meta::deserialize(d)?;
    // Only the controlling owner matters; the others are not kept.
    let owners: Vec<OwnerReference> = m
        .owner_references
        .into_iter()
        .filter(|o| o.controller == Some(true))
        .map(|o| OwnerReference {
            api_version: o.api_version,
            kind: o.kind,
            name: o.name,
            controller: o.controller,
            ..OwnerReference::default()
        })
        .collect();
    Ok(ObjectMeta {
        name: m.name,
        namespace: m.namespace,
        resource_version: m.resource_version,
        labels: (!m.labels.is_empty()).then_some(m.labels),
        deletion_timestamp: m.deletion_timestamp,
        owner_references: (!owners.is_empty()).then_some(owners),
        ..ObjectMeta::default()
    })
}

// A pod as `sts-guard audit` reads it: name, namespace, labels, deletionTimestamp and the
// controlling owner of `metadata`; `spec.nodeName`. Containers, volumes and status are skipped
// by the decoder.
resource_with_spec!(AuditPod, PodSpec, Pod, "pod_meta");

impl From<AuditPod> for PodView {
    fn from(p: AuditPod) -> Self {
        let statefulset = controlling_statefulset(&p.metadata).map(str::to_string);
        let m = p.metadata;
        PodView {
            namespace: m.namespace.unwrap_or_default(),
            name: m.name.unwrap_or_default(),
            labels: m.labels.unwrap_or_default(),
            statefulset,
            node_name: p.spec.node_name.filter(|n| !n.is_empty()),
            deletion_timestamp: m.deletion_timestamp.map(|t| t.0),
        }
    }
}

/// A StatefulSet as `sts-guard audit` checks it: name, namespace, uid and resourceVersion of
/// `metadata`, the whole `spec` (the storage rules read volumes and claim templates) and the rollout's revisions of `status`,
/// without the rest of `status` or `managedFields`.
#[derive(Debug, Clone, Deserialize, Resource)]
#[resource(inherit = StatefulSet)]
pub struct AuditStatefulSet {
    #[serde(deserialize_with = "identity_meta", default)]
    pub metadata: ObjectMeta,
    #[serde(default, deserialize_with = "null_as_default")]
    pub spec: serde_json::Value,
    #[serde(default, deserialize_with = "null_as_default")]
    pub status: RolloutStatus,
}

/// `status.currentRevision` and `status.updateRevision` of a StatefulSet.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RolloutStatus {
    pub current_revision: Option<String>,
    pub update_revision: Option<String>,
}

impl AuditStatefulSet {
    /// The spec as its view, the rules and audit's claim checks read it.
    pub fn spec(&self) -> Checked<StatefulSetSpec<'_>> {
        checked(Some(&self.spec))
    }
}

/// The names of a StatefulSet's claim templates as `sts-guard audit` checks their claims, read
/// as the storage rules read them: none when they cannot be read (the rules report that), empty
/// names left out.
pub fn audited_claim_templates(spec: &Checked<StatefulSetSpec>) -> Vec<String> {
    spec.field("spec", |s| &s.claim_templates)
        .and_then(claim_template_names)
        .map(|names| {
            names
                .into_iter()
                .filter(|name| !name.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// Name, namespace and creationTimestamp of `metadata`, for objects whose age a rule reads.
fn dated_meta<'de, D: Deserializer<'de>>(d: D) -> Result<ObjectMeta, D::Error> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Meta {
        name: Option<String>,
        namespace: Option<String>,
        resource_version: Option<String>,
        creation_timestamp: Option<Time>,
    }
    let m = Meta::deserialize(d)?;
    Ok(ObjectMeta {
        name: m.name,
        namespace: m.namespace,
        resource_version: m.resource_version,
        creation_timestamp: m.creation_timestamp,
        ..ObjectMeta::default()
    })
}

/// A PersistentVolumeClaim as `sts-guard audit` reads it: name, namespace, creationTimestamp
/// and `status.phase`; its spec (and anything else) is skipped by the decoder.
#[derive(Debug, Clone, Deserialize, Resource)]
#[resource(inherit = PersistentVolumeClaim)]
pub struct AuditClaim {
    #[serde(deserialize_with = "dated_meta", default)]
    pub metadata: ObjectMeta,
    #[serde(default, deserialize_with = "null_as_default")]
    pub status: ClaimStatus,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct ClaimStatus {
    pub phase: Option<String>,
}

/// A ControllerRevision as `sts-guard audit` reads it: name, namespace and creationTimestamp
/// (its `data`, a copy of the template, is skipped).
#[derive(Debug, Clone, Deserialize, Resource)]
#[resource(inherit = ControllerRevision)]
pub struct AuditRevision {
    #[serde(deserialize_with = "dated_meta", default)]
    pub metadata: ObjectMeta,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::OUT_OF_SERVICE_TAINT;
    use crate::vocabulary::Kind;
    use serde_json::json;

    /// The vocabulary's coordinates (const, for matching requests) are those the watched types
    /// inherit from k8s-openapi.
    #[test]
    fn the_kinds_coordinates_are_those_of_the_api_types() {
        fn coordinates<R: kube::Resource<DynamicType = ()>>() -> [String; 4] {
            [R::kind(&()), R::group(&()), R::version(&()), R::plural(&())].map(|c| c.into_owned())
        }
        for (kind, inherited) in [
            (Kind::Service, coordinates::<WatchedService>()),
            (Kind::StatefulSet, coordinates::<WatchedStatefulSet>()),
            (Kind::Node, coordinates::<WatchedNode>()),
            (Kind::Pod, coordinates::<AuditPod>()),
            (Kind::StatefulSet, coordinates::<AuditStatefulSet>()),
        ] {
            assert_eq!(
                [kind.name(), kind.group(), kind.version(), kind.plural()],
                inherited,
                "{kind:?}"
            );
            assert_eq!(
                kind.api_version(),
                if inherited[1].is_empty() {
                    inherited[2].clone()
                } else {
                    format!("{}/{}", inherited[1], inherited[2])
                }
            );
        }
    }

    #[test]
    fn watched_decoding_matches_the_full_views() {
        let svc = json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "s", "namespace": "d", "resourceVersion": "7", "managedFields": [{"manager": "x"}],
                         "annotations": {"a": "b"}},
            "spec": {"clusterIP": "None", "selector": {"app": "x"}, "ports": [{"port": 80}]}});
        let watched: WatchedService = serde_json::from_value(svc.clone()).unwrap();
        assert_eq!(watched.metadata.resource_version.as_deref(), Some("7"));
        let full =
            ServiceView::from_object(&crate::manifest::into_object(svc).unwrap(), "d").unwrap();
        assert_eq!(ServiceView::from(watched), full);

        let sts = json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "w", "namespace": "d",
                "labels": {"app.kubernetes.io/instance": "w", "app.kubernetes.io/managed-by": "Helm", "app": "x"},
                "annotations": {"meta.helm.sh/release-name": "w", "meta.helm.sh/release-namespace": "d",
                                "kubectl.kubernetes.io/last-applied-configuration": "{}"},
                "ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap", "name": "o", "uid": "u", "blockOwnerDeletion": true}]},
            "spec": {"serviceName": "s", "replicas": 2, "selector": {"matchLabels": {"app": "x"}}, "ordinals": {"start": 3}, "podManagementPolicy": "Parallel",
                     "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 1}},
                     "template": {"metadata": {"labels": {"app": "x"}}, "spec": {"containers": []}}}});
        let watched: WatchedStatefulSet = serde_json::from_value(sts.clone()).unwrap();
        let full =
            StatefulSetView::from_object(&crate::manifest::into_object(sts).unwrap(), "d").unwrap();
        assert_eq!(full.ownership.owners().len(), 3, "{:?}", full.ownership);
        assert_eq!(StatefulSetView::from(watched), full);

        let node = json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n"},
            "spec": {"taints": [{"key": OUT_OF_SERVICE_TAINT, "effect": "NoExecute"}]}, "status": {"images": []}});
        let watched: WatchedNode = serde_json::from_value(node).unwrap();
        assert!(NodeView::from(watched).out_of_service);
        let bare: WatchedStatefulSet =
            serde_json::from_value(json!({"metadata": {"name": "x"}, "spec": null})).unwrap();
        assert_eq!(StatefulSetView::from(bare).replicas, 1);
    }

    #[test]
    fn audit_shapes_keep_claim_templates_revisions_phases_and_ages() {
        let sts: AuditStatefulSet = serde_json::from_value(json!({"metadata": {"name": "w"},
            "spec": {"volumeClaimTemplates": [{"metadata": {"name": "data"}}, {"metadata": {"name": "logs"}}]},
            "status": {"currentRevision": "w-1", "updateRevision": "w-2", "replicas": 3}}))
        .unwrap();
        assert_eq!(audited_claim_templates(&sts.spec()), ["data", "logs"]);
        assert_eq!(sts.status.current_revision.as_deref(), Some("w-1"));
        assert_eq!(sts.status.update_revision.as_deref(), Some("w-2"));
        let bare: AuditStatefulSet =
            serde_json::from_value(json!({"metadata": {"name": "w"}, "status": null})).unwrap();
        assert!(
            audited_claim_templates(&bare.spec()).is_empty()
                && bare.status.update_revision.is_none()
        );
        // Read as the storage rules read them: a null entry and an empty name name nothing.
        let sparse: AuditStatefulSet = serde_json::from_value(json!({"metadata": {"name": "w"},
            "spec": {"volumeClaimTemplates": [null, {"metadata": {"name": ""}}, {"metadata": {"name": "data"}}]}}))
        .unwrap();
        assert_eq!(audited_claim_templates(&sparse.spec()), ["data"]);

        let claim: AuditClaim =
            serde_json::from_value(json!({"metadata": {"name": "data-w-0", "namespace": "d",
            "creationTimestamp": "2025-06-01T12:00:00Z", "managedFields": [{"manager": "x"}]},
            "spec": {"accessModes": ["ReadWriteOnce"]}, "status": {"phase": "Pending"}}))
            .unwrap();
        assert_eq!(claim.status.phase.as_deref(), Some("Pending"));
        assert_eq!(
            claim
                .metadata
                .creation_timestamp
                .map(|t| t.0.to_string())
                .as_deref(),
            Some("2025-06-01T12:00:00Z")
        );
        let revision: AuditRevision = serde_json::from_value(json!({"metadata": {"name": "w-2",
            "creationTimestamp": "2025-06-01T12:00:00Z"}, "data": {"spec": {}}, "revision": 2}))
        .unwrap();
        assert!(revision.metadata.creation_timestamp.is_some());
    }

    #[test]
    fn an_audit_pod_keeps_labels_deletion_and_its_controlling_statefulset() {
        let pod = json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "web-1", "namespace": "d", "labels": {"app": "web"},
                "deletionTimestamp": "2025-06-01T12:00:00Z", "managedFields": [{"manager": "x"}],
                "ownerReferences": [
                    {"apiVersion": "v1", "kind": "ConfigMap", "name": "not-controller", "uid": "1"},
                    {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "web", "uid": "2", "controller": true}]},
            "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "i"}]},
            "status": {"phase": "Running"}});
        let view = PodView::from(serde_json::from_value::<AuditPod>(pod).unwrap());
        assert_eq!(view.name, "web-1");
        assert_eq!(view.labels.get("app").map(String::as_str), Some("web"));
        assert_eq!(view.statefulset.as_deref(), Some("web"));
        assert_eq!(view.node_name.as_deref(), Some("n1"));
        assert_eq!(
            view.deletion_timestamp.map(|t| t.to_string()).as_deref(),
            Some("2025-06-01T12:00:00Z")
        );
        let bare: AuditPod = serde_json::from_value(json!({"metadata": {"name": "p"}})).unwrap();
        let view = PodView::from(bare);
        assert!(view.statefulset.is_none() && view.node_name.is_none() && view.labels.is_empty());
    }
}
