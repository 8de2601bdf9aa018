//! The cluster the inventory benches build in the in-test API server: Services, StatefulSets
//! and Nodes shaped like a multi-tenant cluster's (100 Services per namespace, every fifth
//! headless and governing a StatefulSet), and a StatefulSet CREATE review of one of them.
#![allow(dead_code)]

use serde_json::{Value, json};

#[derive(Debug, Clone, Copy)]
pub struct Size {
    pub services: usize,
    pub statefulsets: usize,
    pub nodes: usize,
}

impl Size {
    pub fn parse(s: &str) -> Size {
        let n: Vec<usize> = s
            .split('/')
            .map(|x| x.trim().parse().expect("S/T/N"))
            .collect();
        Size {
            services: n[0],
            statefulsets: n[1],
            nodes: n[2],
        }
    }
    pub fn label(&self) -> String {
        format!("{}/{}/{}", self.services, self.statefulsets, self.nodes)
    }
    pub fn objects(&self) -> usize {
        self.services + self.statefulsets + self.nodes
    }
    /// 100 Services per namespace, as in a multi-tenant cluster.
    pub fn namespaces(&self) -> usize {
        (self.services / 100).max(1)
    }
}

pub fn service(i: usize, namespaces: usize) -> Value {
    let ns = format!("ns-{}", i % namespaces);
    let headless = i.is_multiple_of(5);
    json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": format!("svc-{i}"), "namespace": ns, "uid": format!("00000000-0000-4000-8000-{i:012}"),
            "labels": {"app.kubernetes.io/name": format!("app-{i}"), "app.kubernetes.io/part-of": "bench", "team": "storage"},
            "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "x".repeat(600)},
            "creationTimestamp": "2026-01-01T00:00:00Z"},
        "spec": {"clusterIP": if headless { "None".to_string() } else { format!("10.96.{}.{}", i / 250, i % 250) },
            "clusterIPs": [if headless { "None".to_string() } else { format!("10.96.{}.{}", i / 250, i % 250) }],
            "type": "ClusterIP", "selector": {"app.kubernetes.io/name": format!("app-{i}")},
            "ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}],
            "sessionAffinity": "None", "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack", "internalTrafficPolicy": "Cluster"},
        "status": {"loadBalancer": {}}})
}

pub fn statefulset(i: usize, namespaces: usize) -> Value {
    let svc = i * 5; // a headless Service
    let ns = format!("ns-{}", svc % namespaces);
    json!({"apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": format!("sts-{i}"), "namespace": ns, "uid": format!("10000000-0000-4000-8000-{i:012}"),
            "labels": {"app.kubernetes.io/name": format!("app-{svc}")},
            "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "x".repeat(1500)}},
        "spec": {"serviceName": format!("svc-{svc}"), "replicas": 3,
            "selector": {"matchLabels": {"app.kubernetes.io/name": format!("app-{svc}")}},
            "template": {"metadata": {"labels": {"app.kubernetes.io/name": format!("app-{svc}"), "version": "1.2.3"}},
                "spec": {"containers": [{"name": "db", "image": "registry.example.com/db:1.2.3",
                    "ports": [{"containerPort": 5432, "name": "pg"}],
                    "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
                    "resources": {"requests": {"cpu": "500m", "memory": "1Gi"}},
                    "volumeMounts": [{"name": "data", "mountPath": "/var/lib/db"}]}]}},
            "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "10Gi"}}}}],
            "podManagementPolicy": "OrderedReady", "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}},
        "status": {"replicas": 3, "readyReplicas": 3, "currentRevision": "sts-abc", "updateRevision": "sts-abc"}})
}

pub fn node(i: usize) -> Value {
    let images: Vec<Value> = (0..20)
        .map(|j| json!({"names": [format!("registry.example.com/image-{j}@sha256:{:064}", j), format!("registry.example.com/image-{j}:v{j}")], "sizeBytes": 123456789 + j}))
        .collect();
    json!({"apiVersion": "v1", "kind": "Node",
        "metadata": {"name": format!("node-{i}"), "uid": format!("20000000-0000-4000-8000-{i:012}"),
            "labels": {"kubernetes.io/hostname": format!("node-{i}"), "topology.kubernetes.io/zone": format!("zone-{}", i % 3),
                "node.kubernetes.io/instance-type": "m5.xlarge", "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64"}},
        "spec": {"podCIDR": format!("10.244.{}.0/24", i % 250), "providerID": format!("aws:///eu-west-1a/i-{i:017}"),
            "taints": if i.is_multiple_of(100) { json!([{"key": "node.kubernetes.io/out-of-service", "value": "nodeshutdown", "effect": "NoExecute"}]) } else { json!([]) }},
        "status": {"capacity": {"cpu": "4", "memory": "16Gi", "pods": "110"}, "allocatable": {"cpu": "3900m", "memory": "15Gi", "pods": "110"},
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "kubelet is posting ready status",
                "lastHeartbeatTime": "2026-01-01T00:00:00Z", "lastTransitionTime": "2026-01-01T00:00:00Z"}],
            "addresses": [{"type": "InternalIP", "address": format!("10.0.{}.{}", i / 250, i % 250)}, {"type": "Hostname", "address": format!("node-{i}")}],
            "nodeInfo": {"kubeletVersion": "v1.32.4", "containerRuntimeVersion": "containerd://1.7.27", "osImage": "Ubuntu 24.04", "kernelVersion": "6.8.0",
                "operatingSystem": "linux", "architecture": "amd64", "machineID": "m", "systemUUID": "s", "bootID": "b", "kubeProxyVersion": ""},
            "images": images}})
}

/// The AdmissionReview of a CREATE of StatefulSet `i`.
pub fn review(i: usize, namespaces: usize) -> Value {
    let obj = statefulset(i, namespaces);
    json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
        "uid": "u", "kind": {"group": "apps", "version": "v1", "kind": "StatefulSet"},
        "resource": {"group": "apps", "version": "v1", "resource": "statefulsets"},
        "name": obj["metadata"]["name"], "namespace": obj["metadata"]["namespace"], "operation": "CREATE",
        "userInfo": {"username": "admin"}, "object": obj, "oldObject": null, "dryRun": false}})
}
