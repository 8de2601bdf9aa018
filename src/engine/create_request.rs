//! The request kube-apiserver would send to create an object: how `check` and `audit` put
//! objects that are not under review through [`evaluate`](super::evaluate).

use crate::vocabulary::Kind;
use k8s_openapi::api::authentication::v1::UserInfo;
use kube_core::admission::{AdmissionRequest, Operation};
use kube_core::{DynamicObject, GroupVersionKind, GroupVersionResource, TypeMeta};

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
