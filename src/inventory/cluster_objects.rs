//! The objects read from a cluster, each decoded into only what it is read for. Services,
//! StatefulSets and Nodes (watched by the cluster inventory, listed by `audit`) decode through
//! the request path's shaped decoder ([`crate::request`]) straight into the views the rules
//! read: everything else in a watched object (managedFields, annotations, the pod template's
//! containers, a Node's status and image list) is skipped by the JSON decoder without being
//! allocated, which keeps both the cache and the transient memory of a 10,000-object list
//! small. `sts-guard audit`'s pods, whole StatefulSets, claims and ControllerRevisions have
//! shapes of their own below.

use crate::model::{
    Labels, NodeView, PodView, ServiceView, StatefulSetView, controlling_statefulset,
};
use crate::request;
use crate::vocabulary::Kind;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
use k8s_openapi::{ClusterResourceScope, NamespaceResourceScope};
use kube::Resource;
use serde::{Deserialize, Deserializer};
use std::borrow::Cow;

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

/// `kube::Resource` for a type of this file with a `metadata` field: the API coordinates the
/// watches and lists ask for it by.
macro_rules! impl_resource {
    ($ty:ident, $scope:ty, $kind:expr, $group:expr, $version:expr, $plural:expr) => {
        impl Resource for $ty {
            type DynamicType = ();
            type Scope = $scope;
            fn kind(_: &()) -> Cow<'_, str> {
                Cow::Borrowed($kind)
            }
            fn group(_: &()) -> Cow<'_, str> {
                Cow::Borrowed($group)
            }
            fn version(_: &()) -> Cow<'_, str> {
                Cow::Borrowed($version)
            }
            fn plural(_: &()) -> Cow<'_, str> {
                Cow::Borrowed($plural)
            }
            fn meta(&self) -> &ObjectMeta {
                &self.metadata
            }
            fn meta_mut(&mut self) -> &mut ObjectMeta {
                &mut self.metadata
            }
        }
    };
}

macro_rules! resource_with_spec {
    ($ty:ident, $spec:ty, $kind:literal, $group:literal, $version:literal, $plural:literal, $scope:ty) => {
        resource_with_spec!(
            $ty,
            $spec,
            $kind,
            $group,
            $version,
            $plural,
            $scope,
            "identity_meta"
        );
    };
    ($ty:ident, $spec:ty, $kind:literal, $group:literal, $version:literal, $plural:literal, $scope:ty, $meta:literal) => {
        #[derive(Debug, Clone, Deserialize)]
        pub struct $ty {
            #[serde(deserialize_with = $meta, default)]
            pub metadata: ObjectMeta,
            #[serde(default, deserialize_with = "null_as_default")]
            pub spec: $spec,
        }

        impl_resource!($ty, $scope, $kind, $group, $version, $plural);
    };
}

/// A watched object decoded through the request path's decoder: the shape keeps what its view
/// reads and the metadata the watcher resumes from, and the view is built by the same
/// `from_object` as for an object under review.
macro_rules! watched_view {
    ($ty:ident, $view:ty, $shape:expr, $kind:expr, $scope:ty, |$obj:ident| $build:expr) => {
        #[derive(Debug, Clone)]
        pub struct $ty {
            pub metadata: ObjectMeta,
            pub view: $view,
        }

        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let value = request::decode_object(d, $shape)?;
                let $obj = watched_object(value, $kind).map_err(serde::de::Error::custom)?;
                let view = $build.map_err(serde::de::Error::custom)?;
                Ok($ty {
                    metadata: $obj.metadata,
                    view,
                })
            }
        }

        impl_resource!(
            $ty,
            $scope,
            $kind.name(),
            $kind.group(),
            $kind.version(),
            $kind.plural()
        );

        impl From<$ty> for $view {
            fn from(watched: $ty) -> Self {
                watched.view
            }
        }
    };
}

/// The object as the views read it. List items come without apiVersion and kind: they are
/// the list's, which the type knows.
fn watched_object(
    value: serde_json::Value,
    kind: Kind,
) -> Result<kube_core::DynamicObject, String> {
    let mut value = value;
    if let Some(map) = value.as_object_mut() {
        map.entry("apiVersion").or_insert(kind.api_version().into());
        map.entry("kind").or_insert(kind.name().into());
    }
    crate::request::into_object(value)
}

watched_view!(
    WatchedService,
    ServiceView,
    request::WATCHED_SERVICE,
    Kind::Service,
    NamespaceResourceScope,
    |object| ServiceView::from_object(&object, "")
);
watched_view!(
    WatchedStatefulSet,
    StatefulSetView,
    request::WATCHED_STATEFULSET,
    Kind::StatefulSet,
    NamespaceResourceScope,
    |object| StatefulSetView::from_object(&object, "")
);
watched_view!(
    WatchedNode,
    NodeView,
    request::WATCHED_NODE,
    Kind::Node,
    ClusterResourceScope,
    |object| NodeView::from_object(&object)
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
resource_with_spec!(
    AuditPod,
    PodSpec,
    "Pod",
    "",
    "v1",
    "pods",
    NamespaceResourceScope,
    "pod_meta"
);

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
#[derive(Debug, Clone, Deserialize)]
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

impl_resource!(
    AuditStatefulSet,
    NamespaceResourceScope,
    Kind::StatefulSet.name(),
    Kind::StatefulSet.group(),
    Kind::StatefulSet.version(),
    Kind::StatefulSet.plural()
);

impl AuditStatefulSet {
    /// The names of `spec.volumeClaimTemplates`.
    pub fn claim_templates(&self) -> Vec<String> {
        self.spec["volumeClaimTemplates"]
            .as_array()
            .map(|templates| {
                templates
                    .iter()
                    .filter_map(|t| t["metadata"]["name"].as_str())
                    .filter(|name| !name.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The object as a request would carry it, for [`evaluate`](crate::engine::evaluate).
    pub fn into_dynamic(self) -> kube_core::DynamicObject {
        kube_core::DynamicObject {
            types: Some(kube_core::TypeMeta {
                api_version: "apps/v1".into(),
                kind: "StatefulSet".into(),
            }),
            metadata: self.metadata,
            data: serde_json::json!({ "spec": self.spec }),
        }
    }
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
#[derive(Debug, Clone, Deserialize)]
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
#[derive(Debug, Clone, Deserialize)]
pub struct AuditRevision {
    #[serde(deserialize_with = "dated_meta", default)]
    pub metadata: ObjectMeta,
}

impl_resource!(
    AuditClaim,
    NamespaceResourceScope,
    "PersistentVolumeClaim",
    "",
    "v1",
    "persistentvolumeclaims"
);
impl_resource!(
    AuditRevision,
    NamespaceResourceScope,
    "ControllerRevision",
    "apps",
    "v1",
    "controllerrevisions"
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::OUT_OF_SERVICE_TAINT;
    use serde_json::json;

    #[test]
    fn watched_decoding_matches_the_full_views() {
        let svc = json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "s", "namespace": "d", "resourceVersion": "7", "managedFields": [{"manager": "x"}],
                         "annotations": {"a": "b"}},
            "spec": {"clusterIP": "None", "selector": {"app": "x"}, "ports": [{"port": 80}]}});
        let watched: WatchedService = serde_json::from_value(svc.clone()).unwrap();
        assert_eq!(watched.metadata.resource_version.as_deref(), Some("7"));
        let full =
            ServiceView::from_object(&crate::request::into_object(svc).unwrap(), "d").unwrap();
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
            StatefulSetView::from_object(&crate::request::into_object(sts).unwrap(), "d").unwrap();
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
        assert_eq!(sts.claim_templates(), ["data", "logs"]);
        assert_eq!(sts.status.current_revision.as_deref(), Some("w-1"));
        assert_eq!(sts.status.update_revision.as_deref(), Some("w-2"));
        let bare: AuditStatefulSet =
            serde_json::from_value(json!({"metadata": {"name": "w"}, "status": null})).unwrap();
        assert!(bare.claim_templates().is_empty() && bare.status.update_revision.is_none());

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
