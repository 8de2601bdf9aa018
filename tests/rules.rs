//! Every validating rule, both outcomes, through the shared entry point with AdmissionReview
//! JSON shaped as kube-apiserver sends it.

mod common;

use common::*;
use serde_json::json;
use std::sync::Arc;
use sts_guard::config::Config;
use sts_guard::engine::{Decision, Endpoint, NotDenied, Skip, evaluate};
use sts_guard::inventory::{Inventory, Lookup, LookupError, StaticInventory};
use sts_guard::model::{LabelSet, NodeView, ServiceView, StatefulSetView};
use sts_guard::rules::{Action, RuleId};

fn cfg() -> Config {
    Config::default()
}

/// An admin's UPDATE from `old` to `new`, validated with the default config.
fn validate_update(new: &Obj, old: &Obj, inv: &StaticInventory) -> Decision {
    decide(
        Endpoint::Validate,
        "UPDATE",
        Some(new),
        Some(old),
        inv,
        &cfg(),
    )
}

fn rules_of(d: &Decision) -> Vec<(RuleId, Action)> {
    d.violations.iter().map(|v| (v.rule, v.action)).collect()
}

/// Asserts the decision denies by exactly `rules`, and that each message names the object,
/// the rule id and a fix.
fn assert_denied(d: &Decision, object: &str, rules: &[RuleId]) {
    assert!(!d.allowed(), "expected a denial: {d:?}");
    let denied: Vec<RuleId> = d.denials().map(|v| v.rule).collect();
    assert_eq!(denied, rules, "{}", d.denial_message());
    for v in d.denials() {
        let msg = v.to_string();
        assert!(msg.starts_with(&format!("{}: {object}: ", v.rule)), "{msg}");
        assert!(!v.hint.is_empty() && msg.ends_with(&v.hint), "{msg}");
    }
}

fn validate_create(obj: &Obj, inv: &StaticInventory) -> Decision {
    decide(Endpoint::Validate, "CREATE", Some(obj), None, inv, &cfg())
}

#[test]
fn statefulset_with_headless_selecting_service_is_allowed() {
    let d = validate_create(&sts("web"), &inventory(&[svc("nginx")]));
    assert!(d.allowed() && d.violations.is_empty(), "{d:?}");
}

#[test]
fn missing_service_name_is_denied_and_a_governing_service_suggested() {
    let inv = inventory(&[svc("nginx")]);
    for obj in [
        sts("web").set("spec.serviceName", json!("")),
        sts("web").remove("spec.serviceName"),
    ] {
        let d = validate_create(&obj, &inv);
        assert_denied(&d, "StatefulSet default/web", &[RuleId::StsServiceName]);
        assert!(
            d.denial_message()
                .contains("did you mean serviceName: nginx?"),
            "{}",
            d.denial_message()
        );
    }
    let d = validate_create(&sts("web").remove("spec.serviceName"), &inventory(&[]));
    assert!(
        d.denial_message()
            .contains("Set spec.serviceName to a headless Service"),
        "{}",
        d.denial_message()
    );
}

#[test]
fn unknown_service_is_denied_with_the_spec_message() {
    let d = validate_create(
        &sts("web").set("spec.serviceName", json!("nginx-svc")),
        &inventory(&[svc("nginx")]),
    );
    assert_denied(&d, "StatefulSet default/web", &[RuleId::StsServiceExists]);
    assert_eq!(
        d.denial_message(),
        "sts-service-exists: StatefulSet default/web: spec.serviceName \"nginx-svc\" names no Service in \
         namespace default. The headless Service \"nginx\" selects this StatefulSet's pods — did you mean \
         serviceName: nginx? Create the governing Service before the StatefulSet."
    );
}

#[test]
fn did_you_mean_only_suggests_headless_services_that_select_the_pods() {
    let inv = inventory(&[
        svc("client").set("spec.clusterIP", json!("10.0.0.9")),
        svc("other").set("spec.selector", json!({"app": "other"})),
        svc("web-svc").set("metadata.namespace", json!("elsewhere")),
    ]);
    let d = validate_create(&sts("web").set("spec.serviceName", json!("missing")), &inv);
    assert_denied(&d, "StatefulSet default/web", &[RuleId::StsServiceExists]);
    assert!(
        !d.denial_message().contains("did you mean"),
        "{}",
        d.denial_message()
    );
    assert!(
        d.denial_message()
            .contains("Create a headless Service \"missing\"")
    );
}

/// grafana/helm-charts tempo-distributed, as rendered for release `tempo`: the ingester
/// StatefulSet says `serviceName: ingester`, which no Service has. Two headless Services select
/// its pods: `tempo-gossip-ring` selects every memberlist member of every component,
/// `tempo-ingester-discovery` exactly the ingester's pods (its selector is the StatefulSet's own
/// spec.selector). Both selectors have three pairs.
fn tempo_chart() -> (Obj, Vec<Obj>) {
    let selector = |component: Option<&str>, memberlist: bool| {
        let mut labels =
            json!({"app.kubernetes.io/name": "tempo", "app.kubernetes.io/instance": "tempo"});
        if let Some(c) = component {
            labels["app.kubernetes.io/component"] = json!(c);
        }
        if memberlist {
            labels["app.kubernetes.io/part-of"] = json!("memberlist");
        }
        labels
    };
    let mut pod_labels = selector(Some("ingester"), true);
    pod_labels["app.kubernetes.io/version"] = json!("2.6.0");
    let ingester = sts("tempo-ingester")
        .set("spec.serviceName", json!("ingester"))
        .set(
            "spec.selector.matchLabels",
            selector(Some("ingester"), false),
        )
        .set("spec.template.metadata.labels", pod_labels);
    let services = vec![
        svc("tempo-gossip-ring").set("spec.selector", selector(None, true)),
        svc("tempo-ingester-discovery").set("spec.selector", selector(Some("ingester"), false)),
        svc("tempo-ingester")
            .set("spec.clusterIP", json!("10.96.14.2"))
            .set("spec.selector", selector(Some("ingester"), false)),
        svc("tempo-distributor-discovery")
            .set("spec.selector", selector(Some("distributor"), false)),
    ];
    (ingester, services)
}

#[test]
fn did_you_mean_prefers_the_service_that_selects_exactly_this_statefulsets_pods() {
    let (ingester, services) = tempo_chart();
    let d = validate_create(&ingester, &inventory(&services));
    assert_denied(
        &d,
        "StatefulSet default/tempo-ingester",
        &[RuleId::StsServiceExists],
    );
    let message = d.denial_message();
    assert!(
        message.contains(
            "The headless Service \"tempo-ingester-discovery\" selects this StatefulSet's pods — \
             did you mean serviceName: tempo-ingester-discovery? (\"tempo-gossip-ring\" also selects \
             them, with a broader selector.)"
        ),
        "{message}"
    );
    // The same choice when serviceName is missing altogether.
    let d = validate_create(&ingester.remove("spec.serviceName"), &inventory(&services));
    assert!(
        d.denial_message()
            .contains("did you mean serviceName: tempo-ingester-discovery?"),
        "{}",
        d.denial_message()
    );
}

/// The chart's legacy labels (`enterprise.legacyLabels`): the gossip ring selects one pair,
/// `tempo-gossip-member: "true"`; the discovery Service two. More pairs is more specific.
#[test]
fn did_you_mean_prefers_the_selector_with_more_pairs() {
    let ingester = sts("tempo-ingester")
        .set("spec.serviceName", json!("ingester"))
        .remove("spec.selector")
        .set(
            "spec.template.metadata.labels",
            json!({"app": "tempo-ingester", "release": "tempo", "tempo-gossip-member": "true"}),
        );
    let inv = inventory(&[
        svc("tempo-gossip-ring").set("spec.selector", json!({"tempo-gossip-member": "true"})),
        svc("tempo-ingester-discovery").set(
            "spec.selector",
            json!({"app": "tempo-ingester", "release": "tempo"}),
        ),
    ]);
    let message = validate_create(&ingester, &inv).denial_message();
    assert!(
        message.contains("did you mean serviceName: tempo-ingester-discovery? (\"tempo-gossip-ring\" also selects them"),
        "{message}"
    );
}

/// Equally specific candidates: the name closest to the one written wins, and the message says
/// that several fit.
#[test]
fn did_you_mean_names_every_equally_specific_service_and_picks_the_closest_name() {
    let inv = inventory(&[svc("nginx"), svc("web-headless"), svc("nginx-headless")]);
    let message =
        validate_create(&sts("web").set("spec.serviceName", json!("ngnix")), &inv).denial_message();
    assert!(
        message.contains(
            "The headless Services \"nginx\", \"nginx-headless\" and \"web-headless\" select this \
             StatefulSet's pods equally specifically — did you mean serviceName: nginx? (the name \
             closest to \"ngnix\")"
        ),
        "{message}"
    );
    let message = validate_create(
        &sts("web").set("spec.serviceName", json!("web-headles")),
        &inv,
    )
    .denial_message();
    assert!(
        message.contains(
            "did you mean serviceName: web-headless? (the name closest to \"web-headles\")"
        ),
        "{message}"
    );
    // Equally close too: the first by name, and the message does not pretend otherwise.
    let inv = inventory(&[svc("b1"), svc("a1")]);
    let message =
        validate_create(&sts("web").set("spec.serviceName", json!("c1")), &inv).denial_message();
    assert!(
        message.contains("did you mean serviceName: a1? (first by name; none is closer to \"c1\")"),
        "{message}"
    );
}

#[test]
fn service_that_is_not_headless_is_denied() {
    let cases = [
        (
            svc("nginx").set("spec.clusterIP", json!("10.96.0.12")),
            "it has clusterIP 10.96.0.12",
        ),
        (
            svc("nginx").remove("spec.clusterIP"),
            "lacks clusterIP: None",
        ),
        (
            svc("nginx").set("spec.type", json!("NodePort")),
            "type NodePort",
        ),
        (
            svc("nginx").set("spec.type", json!("LoadBalancer")),
            "type LoadBalancer",
        ),
        (
            svc("nginx")
                .set("spec.type", json!("ExternalName"))
                .set("spec.externalName", json!("db.example.com")),
            "type ExternalName",
        ),
    ];
    for (service, why) in cases {
        let d = validate_create(&sts("web"), &inventory(&[service]));
        assert_denied(&d, "StatefulSet default/web", &[RuleId::StsServiceHeadless]);
        assert!(
            d.denial_message().contains(why),
            "{why}: {}",
            d.denial_message()
        );
    }
}

#[test]
fn service_that_does_not_select_the_pods_is_denied() {
    for service in [
        svc("nginx").set("spec.selector", json!({"app": "nginx", "tier": "db"})),
        svc("nginx").set("spec.selector", json!({"app": "other"})),
        svc("nginx").remove("spec.selector"),
        svc("nginx").set("spec.selector", json!({})),
    ] {
        let d = validate_create(&sts("web"), &inventory(std::slice::from_ref(&service)));
        assert_denied(
            &d,
            "StatefulSet default/web",
            &[RuleId::StsServiceSelectsPods],
        );
    }
    let subset = svc("nginx").set("spec.selector", json!({"app": "nginx"}));
    let more_labels = sts("web").set(
        "spec.template.metadata.labels",
        json!({"app": "nginx", "version": "2"}),
    );
    assert!(validate_create(&more_labels, &inventory(&[subset])).allowed());
}

#[test]
fn every_denying_rule_is_reported_not_only_the_first() {
    let broken = svc("nginx")
        .set("spec.clusterIP", json!("10.0.0.1"))
        .set("spec.selector", json!({"app": "x"}));
    let d = validate_create(&sts("web"), &inventory(&[broken]));
    assert_denied(
        &d,
        "StatefulSet default/web",
        &[RuleId::StsServiceHeadless, RuleId::StsServiceSelectsPods],
    );
    assert_eq!(d.denial_message().lines().count(), 2);
}

#[test]
fn partition_above_the_last_ordinal_warns_when_the_template_changes() {
    let inv = inventory(&[svc("nginx")]);
    let old = sts("web").set(
        "spec.updateStrategy",
        json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 5}}),
    );
    let new = old.clone().set(
        "spec.template.spec.containers",
        json!([{"name": "nginx", "image": "nginx:1.28", "readinessProbe": {"httpGet": {"port": 80}}}]),
    );
    let d = validate_update(&new, &old, &inv);
    assert!(d.allowed());
    assert_eq!(
        rules_of(&d),
        vec![(RuleId::StsPartitionRange, Action::Warn)]
    );
    assert!(
        d.warnings()[0]
            .starts_with("sts-partition-range: StatefulSet default/web: partition 5 is above")
    );

    // No template change, or a partition within range, or ordinals.start moving the range: no warning.
    let scale_only = old.clone().set("spec.replicas", json!(4));
    assert!(
        validate_update(&scale_only, &old, &inv)
            .violations
            .is_empty()
    );
    let in_range = new
        .clone()
        .set("spec.updateStrategy.rollingUpdate.partition", json!(3));
    assert!(validate_update(&in_range, &old, &inv).violations.is_empty());
    let shifted = new.clone().set("spec.ordinals", json!({"start": 3}));
    assert!(validate_update(&shifted, &old, &inv).violations.is_empty());
}

#[test]
fn shared_claim_warns_only_with_more_than_one_replica() {
    let inv = inventory(&[svc("nginx")]);
    let shared = sts("web").set(
        "spec.template.spec.volumes",
        json!([{"name": "cfg", "configMap": {"name": "c"}}, {"name": "data", "persistentVolumeClaim": {"claimName": "data"}}]),
    );
    let d = validate_create(&shared, &inv);
    assert!(d.allowed());
    assert_eq!(rules_of(&d), vec![(RuleId::StsSharedClaim, Action::Warn)]);
    assert_eq!(
        d.violations[0].field,
        "spec.template.spec.volumes[1].persistentVolumeClaim"
    );
    assert!(d.violations[0].hint.contains("volumeClaimTemplates"));
    assert!(
        validate_create(&shared.set("spec.replicas", json!(1)), &inv)
            .violations
            .is_empty()
    );
}

/// Kubernetes' cockroachdb e2e manifest (test/e2e/testing-manifests/statefulset/cockroachdb):
/// the pod template has a volume `datadir` with `claimName: datadir`, and a claim template of
/// the same name. The StatefulSet controller swaps that volume for each pod's own claim
/// (`datadir-cockroachdb-N`), so no claim is shared.
#[test]
fn volume_named_like_a_claim_template_is_per_pod_storage_not_a_shared_claim() {
    let inv = inventory(&[svc("nginx")]);
    let cockroach = sts("cockroachdb")
        .set(
            "spec.template.spec.volumes",
            json!([{"name": "datadir", "persistentVolumeClaim": {"claimName": "datadir"}}]),
        )
        .set(
            "spec.volumeClaimTemplates",
            json!([{
                "metadata": {"name": "datadir",
                             "annotations": {"volume.alpha.kubernetes.io/storage-class": "anything"}},
                "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}
            }]),
        );
    let d = validate_create(&cockroach, &inv);
    assert!(d.allowed() && d.violations.is_empty(), "{d:?}");

    // A second claim volume that no template replaces is still shared by every replica.
    let mixed = cockroach.clone().set(
        "spec.template.spec.volumes",
        json!([
            {"name": "datadir", "persistentVolumeClaim": {"claimName": "datadir"}},
            {"name": "backups", "persistentVolumeClaim": {"claimName": "datadir"}}
        ]),
    );
    let d = validate_create(&mixed, &inv);
    assert_eq!(rules_of(&d), vec![(RuleId::StsSharedClaim, Action::Warn)]);
    assert_eq!(
        d.violations[0].field,
        "spec.template.spec.volumes[1].persistentVolumeClaim"
    );

    // A malformed claim template is reported with its path, not skipped.
    let d = validate_create(
        &cockroach.set(
            "spec.volumeClaimTemplates",
            json!([{"metadata": {"name": 7}}]),
        ),
        &inv,
    );
    assert!(
        d.invalid
            .as_deref()
            .is_some_and(|m| m.contains("spec.volumeClaimTemplates[0].metadata.name")),
        "{d:?}"
    );
}

#[test]
fn pvc_retention_delete_warns() {
    let inv = inventory(&[svc("nginx")]);
    let policy = |deleted: &str, scaled: &str| {
        sts("web").set(
            "spec.persistentVolumeClaimRetentionPolicy",
            json!({"whenDeleted": deleted, "whenScaled": scaled}),
        )
    };
    let d = validate_create(&policy("Delete", "Delete"), &inv);
    assert_eq!(
        rules_of(&d),
        vec![(RuleId::StsPvcRetention, Action::Warn); 2]
    );
    assert!(d.allowed());
    assert!(
        validate_create(&policy("Retain", "Retain"), &inv)
            .violations
            .is_empty()
    );
}

#[test]
fn deleting_an_ordered_ready_statefulset_with_replicas_warns() {
    let inv = inventory(&[svc("nginx")]);
    let del = |o: Obj| decide(Endpoint::Validate, "DELETE", None, Some(&o), &inv, &cfg());
    let d = del(sts("web"));
    assert!(d.allowed());
    assert_eq!(rules_of(&d), vec![(RuleId::StsOrderedDelete, Action::Warn)]);
    assert!(
        d.violations[0]
            .hint
            .contains("kubectl scale statefulset web -n default --replicas=0")
    );
    assert!(
        del(sts("web").set("spec.podManagementPolicy", json!("Parallel")))
            .violations
            .is_empty()
    );
    assert!(
        del(sts("web").set("spec.replicas", json!(0)))
            .violations
            .is_empty()
    );
}

#[test]
fn a_zero_grace_pod_template_warns() {
    let inv = inventory(&[svc("nginx")]);
    let grace = "spec.template.spec.terminationGracePeriodSeconds";
    let d = validate_create(&sts("web").set(grace, json!(0)), &inv);
    assert!(d.allowed());
    assert_eq!(rules_of(&d), vec![(RuleId::StsZeroGrace, Action::Warn)]);
    let v = &d.violations[0];
    assert_eq!(v.field, grace);
    assert!(
        v.problem
            .contains("a plain kubectl delete pod included, removes them from the API at once"),
        "{v}"
    );
    assert!(v.hint.starts_with("Set it above 0"), "{v}");
    for quiet in [json!(30), json!(1)] {
        assert!(rules_of(&validate_create(&sts("web").set(grace, quiet), &inv)).is_empty());
    }
    assert!(rules_of(&validate_create(&sts("web"), &inv)).is_empty());
    let d = validate_create(&sts("web").set(grace, json!("0")), &inv);
    assert_eq!(
        d.denial_message(),
        "StatefulSet default/web: invalid object: spec.template.spec.terminationGracePeriodSeconds: expected an integer, found string \"0\""
    );
}

#[test]
fn ordered_start_without_readiness_warns() {
    let inv = inventory(&[svc("nginx")]);
    let containers = "spec.template.spec.containers";
    let bare = sts("web").set(
        containers,
        json!([{"name": "app", "image": "app:1"}, {"name": "log", "image": "log:1"}]),
    );
    let d = validate_create(&bare, &inv);
    assert_eq!(rules_of(&d), vec![(RuleId::StsReadyOrdering, Action::Warn)]);
    assert!(
        d.violations[0].problem.starts_with("podManagementPolicy OrderedReady starts web-1 only once the pod before it is Ready, but no container of the pod template has a readinessProbe"),
        "{}",
        d.violations[0]
    );
    let quiet: Vec<(&str, Obj)> = vec![
        ("the fixture's readinessProbe", sts("web")),
        ("a startupProbe", bare.clone().set(containers, json!([{"name": "app", "startupProbe": {"exec": {"command": ["true"]}}}]))),
        ("a sidecar's readinessProbe", bare.clone().set("spec.template.spec.initContainers",
            json!([{"name": "proxy", "restartPolicy": "Always", "readinessProbe": {"tcpSocket": {"port": 1}}}]))),
        ("Parallel", bare.clone().set("spec.podManagementPolicy", json!("Parallel"))),
        ("one replica", bare.clone().set("spec.replicas", json!(1))),
    ];
    for (case, obj) in quiet {
        assert!(rules_of(&validate_create(&obj, &inv)).is_empty(), "{case}");
    }
    // An init container that runs to completion does not make the pod's readiness.
    let init = bare.clone().set(
        "spec.template.spec.initContainers",
        json!([{"name": "setup", "readinessProbe": {"tcpSocket": {"port": 1}}}]),
    );
    assert_eq!(
        rules_of(&validate_create(&init, &inv)),
        vec![(RuleId::StsReadyOrdering, Action::Warn)]
    );
    // Ordinals start where spec.ordinals says.
    let d = validate_create(&bare.set("spec.ordinals", json!({"start": 5})), &inv);
    assert!(
        d.violations[0].problem.contains("starts web-6 only once"),
        "{}",
        d.violations[0]
    );
}

/// The staged rollout is a mutation, and mutations fail open: an update of a canary
/// StatefulSet that arrives at validation without its partition is refused.
#[test]
fn a_canary_template_change_without_its_staged_partition_is_denied() {
    let inv = inventory(&[svc("nginx")]);
    let old = sts("web")
        .set("metadata.annotations", json!({"sts-guard.io/canary": "1"}))
        .set(
            "spec.updateStrategy",
            json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}),
        );
    let new = old.clone().set(
        "spec.template.spec.containers",
        json!([{"name": "nginx", "image": "nginx:2", "readinessProbe": {"httpGet": {"port": 80}}}]),
    );
    let d = validate_update(&new, &old, &inv);
    assert_denied(&d, "StatefulSet default/web", &[RuleId::StsCanaryPartition]);
    let message = d.denial_message();
    assert!(
        message.contains(
            "a staged rollout to the 1 highest ordinals, but it arrives with partition 0"
        ),
        "{message}"
    );
    assert!(
        message.contains("2 for the staged rollout, 0 to update every pod"),
        "{message}"
    );
    // As the mutation leaves it: staged, so allowed.
    let staged = new
        .clone()
        .set("spec.updateStrategy.rollingUpdate.partition", json!(2));
    assert!(validate_update(&staged, &old, &inv).violations.is_empty());
    // No template change, OnDelete, no canary, the mutation switched off, a CREATE: nothing.
    let scaled = old.clone().set("spec.replicas", json!(4));
    assert!(validate_update(&scaled, &old, &inv).violations.is_empty());
    let on_delete = |o: Obj| o.set("spec.updateStrategy", json!({"type": "OnDelete"}));
    assert!(
        validate_update(&on_delete(new.clone()), &on_delete(old.clone()), &inv)
            .violations
            .is_empty()
    );
    let plain_old = old.clone().remove("metadata.annotations");
    let plain_new = new.clone().remove("metadata.annotations");
    assert!(
        validate_update(&plain_new, &plain_old, &inv)
            .violations
            .is_empty()
    );
    let off = Config::parse("rules:\n  sts-partition-default: off\n", "c").unwrap();
    assert!(
        decide(
            Endpoint::Validate,
            "UPDATE",
            Some(&new),
            Some(&old),
            &inv,
            &off
        )
        .violations
        .is_empty()
    );
    assert!(validate_create(&new, &inv).violations.is_empty());
    // The namespace's canary from config counts like the annotation.
    let by_namespace = Config::parse("partition:\n  canary:\n    default: 2\n", "c").unwrap();
    let d = decide(
        Endpoint::Validate,
        "UPDATE",
        Some(&plain_new),
        Some(&plain_old),
        &inv,
        &by_namespace,
    );
    assert_eq!(
        rules_of(&d),
        vec![(RuleId::StsCanaryPartition, Action::Deny)]
    );
}

#[test]
fn monitor_mode_is_the_webhook_s_check_and_audit_still_deny() {
    // `in_mode` is applied by the webhook and `review`; the engine's decision stays a denial,
    // which is what `check` and `audit` report.
    let monitor = Config::parse("mode: monitor\n", "c").unwrap();
    let inv = inventory(&[]);
    let d = decide(
        Endpoint::Validate,
        "CREATE",
        Some(&sts("web")),
        None,
        &inv,
        &monitor,
    );
    assert!(!d.allowed());
    let d = d.in_mode(monitor.mode);
    assert!(d.allowed());
    assert_eq!(d.violations[0].not_denied, Some(NotDenied::Monitor));
    let err = Config::parse("mode: audit\n", "c").unwrap_err();
    assert_eq!(err.path, "mode");
    assert!(
        err.message.contains("enforce") && err.message.contains("monitor"),
        "{err}"
    );
}

#[test]
fn update_of_a_statefulset_that_already_broke_a_rule_warns_instead_of_denying() {
    let inv = inventory(&[]);
    let old = sts("web");
    let scaled = sts("web").set("spec.replicas", json!(5));
    let d = validate_update(&scaled, &old, &inv);
    assert!(d.allowed(), "{}", d.denial_message());
    assert_eq!(rules_of(&d), vec![(RuleId::StsServiceExists, Action::Warn)]);
    assert_eq!(d.violations[0].not_denied, Some(NotDenied::AlreadyBroken));

    // A StatefulSet that was fine and is now pointed at a missing Service is denied.
    let inv = inventory(&[svc("nginx")]);
    let repointed = sts("web").set("spec.serviceName", json!("gone"));
    let d = validate_update(&repointed, &old, &inv);
    assert_denied(&d, "StatefulSet default/web", &[RuleId::StsServiceExists]);
}

#[test]
fn dry_run_requests_get_the_same_answer() {
    let obj = sts("web").set("spec.serviceName", json!("nope"));
    let inv = inventory(&[svc("nginx")]);
    let mut review = review_json("CREATE", Some(&obj), None, "admin", &[], json!(null));
    let wet = evaluate(&parse_request(&review), &inv, &cfg(), Endpoint::Validate);
    review["request"]["dryRun"] = json!(true);
    let dry = evaluate(&parse_request(&review), &inv, &cfg(), Endpoint::Validate);
    assert_eq!(wet.denial_message(), dry.denial_message());
    assert!(!dry.allowed());
}

#[test]
fn config_actions_turn_rules_into_warnings_or_off() {
    let inv = inventory(&[svc("nginx")]);
    let obj = sts("web").set("spec.serviceName", json!("nope"));
    let warn = Config::parse("rules:\n  sts-service-exists: warn\n", "c").unwrap();
    let d = decide(Endpoint::Validate, "CREATE", Some(&obj), None, &inv, &warn);
    assert!(d.allowed());
    assert_eq!(d.warnings().len(), 1);
    assert!(d.warnings()[0].starts_with("sts-service-exists: StatefulSet default/web: "));
    let off = Config::parse("rules:\n  sts-service-exists: off\n", "c").unwrap();
    let d = decide(Endpoint::Validate, "CREATE", Some(&obj), None, &inv, &off);
    assert!(d.allowed() && d.violations.is_empty());
    let deny_claims = Config::parse("rules:\n  sts-shared-claim: deny\n", "c").unwrap();
    let shared = sts("web").set(
        "spec.template.spec.volumes",
        json!([{"name": "d", "persistentVolumeClaim": {"claimName": "d"}}]),
    );
    let d = decide(
        Endpoint::Validate,
        "CREATE",
        Some(&shared),
        None,
        &inv,
        &deny_claims,
    );
    assert_denied(&d, "StatefulSet default/web", &[RuleId::StsSharedClaim]);
}

#[test]
fn governing_service_must_stay_headless_and_selecting() {
    let inv = inventory(&[sts("web"), svc("nginx")]);
    let update = |new: Obj| {
        decide(
            Endpoint::Validate,
            "UPDATE",
            Some(&new),
            Some(&svc("nginx")),
            &inv,
            &cfg(),
        )
    };
    let d = update(svc("nginx").set("spec.clusterIP", json!("10.0.0.3")));
    assert_denied(&d, "Service default/nginx", &[RuleId::SvcGoverningHeadless]);
    assert!(d.denial_message().contains("governs StatefulSet web"));
    let d = update(svc("nginx").set("spec.selector", json!({"app": "api"})));
    assert_denied(&d, "Service default/nginx", &[RuleId::SvcGoverningSelector]);
    assert!(d.denial_message().contains("web (pod labels app=nginx)"));
    let d = update(svc("nginx").remove("spec.selector"));
    assert_denied(&d, "Service default/nginx", &[RuleId::SvcGoverningSelector]);
    assert!(update(svc("nginx").set("metadata.labels", json!({"team": "a"}))).allowed());

    // CREATE of a broken Service that a StatefulSet already names is denied too.
    let d = decide(
        Endpoint::Validate,
        "CREATE",
        Some(&svc("nginx").set("spec.type", json!("NodePort"))),
        None,
        &inv,
        &cfg(),
    );
    assert_denied(&d, "Service default/nginx", &[RuleId::SvcGoverningHeadless]);

    // A Service no StatefulSet names may be anything.
    let client = svc("client").set("spec.clusterIP", json!("10.0.0.4"));
    assert!(
        decide(
            Endpoint::Validate,
            "CREATE",
            Some(&client),
            None,
            &inv,
            &cfg()
        )
        .allowed()
    );
}

#[test]
fn governing_service_that_was_already_broken_only_warns_on_update() {
    let inv = inventory(&[sts("web")]);
    let old = svc("nginx").set("spec.clusterIP", json!("10.0.0.3"));
    let new = old.clone().set("metadata.labels", json!({"x": "y"}));
    let d = validate_update(&new, &old, &inv);
    assert!(d.allowed());
    assert_eq!(
        rules_of(&d),
        vec![(RuleId::SvcGoverningHeadless, Action::Warn)]
    );
}

#[test]
fn deleting_a_governing_service_of_running_statefulsets_is_denied() {
    let inv = inventory(&[
        sts("web"),
        sts("web2").set("spec.replicas", json!(2)),
        svc("nginx"),
    ]);
    let d = decide(
        Endpoint::Validate,
        "DELETE",
        None,
        Some(&svc("nginx")),
        &inv,
        &cfg(),
    );
    assert_denied(&d, "Service default/nginx", &[RuleId::SvcGoverningDelete]);
    let msg = d.denial_message();
    assert!(
        msg.contains("default/web (3 replicas) and default/web2 (2 replicas)"),
        "{msg}"
    );
    assert!(
        msg.contains("Scale those StatefulSets to 0 or delete them first."),
        "{msg}"
    );

    let scaled_down = inventory(&[sts("web").set("spec.replicas", json!(0)), svc("nginx")]);
    assert!(
        decide(
            Endpoint::Validate,
            "DELETE",
            None,
            Some(&svc("nginx")),
            &scaled_down,
            &cfg()
        )
        .allowed()
    );
    assert!(
        decide(
            Endpoint::Validate,
            "DELETE",
            None,
            Some(&svc("other")),
            &inv,
            &cfg()
        )
        .allowed()
    );
}

fn force_delete(
    pod: &Obj,
    user: &str,
    groups: &[&str],
    grace: Option<i64>,
    inv: &StaticInventory,
    config: &Config,
) -> Decision {
    let mut options = json!({"kind": "DeleteOptions", "apiVersion": "meta.k8s.io/v1"});
    if let Some(g) = grace {
        options["gracePeriodSeconds"] = json!(g);
    }
    let review = review_json("DELETE", None, Some(pod), user, groups, options);
    evaluate(&parse_request(&review), inv, config, Endpoint::Validate)
}

#[test]
fn force_delete_of_a_statefulset_pod_is_denied_unless_safe() {
    let inv = inventory(&[node("node-a"), node("node-b"), node("gone-soon").set("spec.taints", json!([{"key": "node.kubernetes.io/out-of-service", "value": "nodeshutdown", "effect": "NoExecute"}]))]);
    let config = Config::parse("forceDelete:\n  allowedGroups: [sre]\n", "c").unwrap();
    let pod = sts_pod(1, "node-a");
    let admin = (
        "kubernetes-admin",
        vec!["system:masters", "system:authenticated"],
    );
    // (case, pod, user, groups, gracePeriodSeconds, allowed)
    type Case<'a> = (&'a str, Obj, &'a str, Vec<&'a str>, Option<i64>, bool);
    let cases: Vec<Case> = vec![
        ("admin force delete", pod.clone(), admin.0, admin.1.clone(), Some(0), false),
        ("kubelet of another node", pod.clone(), "system:node:node-b", vec!["system:nodes"], Some(0), false),
        ("kubelet of its own node", pod.clone(), "system:node:node-a", vec!["system:nodes"], Some(0), true),
        ("controller manager", pod.clone(), "system:kube-controller-manager", vec![], Some(0), true),
        ("pod gc", pod.clone(), "system:serviceaccount:kube-system:pod-garbage-collector", vec![], Some(0), true),
        ("node controller", pod.clone(), "system:serviceaccount:kube-system:node-controller", vec![], Some(0), true),
        ("allowed group", pod.clone(), "alice", vec!["sre"], Some(0), true),
        ("never scheduled", pod.clone().set("spec.nodeName", json!("")), admin.0, admin.1.clone(), Some(0), true),
        ("succeeded", pod.clone().set("status.phase", json!("Succeeded")), admin.0, admin.1.clone(), Some(0), true),
        ("failed", pod.clone().set("status.phase", json!("Failed")), admin.0, admin.1.clone(), Some(0), true),
        ("node gone", sts_pod(1, "node-z"), admin.0, admin.1.clone(), Some(0), true),
        ("node out of service", sts_pod(1, "gone-soon"), admin.0, admin.1.clone(), Some(0), true),
        ("break-glass annotation", pod.clone().set("metadata.annotations", json!({"sts-guard.io/allow-force-delete": "true"})), admin.0, admin.1.clone(), Some(0), true),
        ("annotation not true", pod.clone().set("metadata.annotations", json!({"sts-guard.io/allow-force-delete": "yes"})), admin.0, admin.1.clone(), Some(0), false),
        ("graceful", pod.clone(), admin.0, admin.1.clone(), Some(30), true),
        ("no grace period given", pod.clone(), admin.0, admin.1.clone(), None, true),
        ("not a StatefulSet pod", pod.clone().remove("metadata.ownerReferences"), admin.0, admin.1.clone(), Some(0), true),
        ("owner not controller", pod.clone().set("metadata.ownerReferences", json!([{"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "web", "uid": "x", "controller": false}])), admin.0, admin.1.clone(), Some(0), true),
    ];
    for (name, pod, user, groups, grace, allowed) in cases {
        let d = force_delete(&pod, user, &groups, grace, &inv, &config);
        assert_eq!(d.allowed(), allowed, "{name}: {}", d.denial_message());
        if !allowed {
            assert_denied(&d, "Pod default/web-1", &[RuleId::PodForceDelete]);
            let msg = d.denial_message();
            assert!(msg.contains("second web-1"), "{msg}");
            for way_out in [
                "gracefully",
                "out-of-service",
                "sts-guard.io/allow-force-delete=true",
                "forceDelete.allowedUsers",
            ] {
                assert!(
                    msg.contains(way_out),
                    "{name}: {way_out} missing from {msg}"
                );
            }
        }
    }
}

#[test]
fn excluded_namespaces_and_unhandled_kinds_pass_through() {
    let inv = inventory(&[]);
    let in_kube_system = sts("web").set("metadata.namespace", json!("kube-system"));
    let d = validate_create(&in_kube_system, &inv);
    assert!(d.allowed() && d.skipped == Some(Skip::ExcludedNamespace));
    let deployment = Obj(
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d", "namespace": "default"}, "spec": {}}),
    );
    let d = validate_create(&deployment, &inv);
    assert!(d.allowed() && d.skipped == Some(Skip::NotHandled));
    // Pod CREATE has no validating rule; StatefulSet DELETE has no mutating one.
    assert_eq!(
        validate_create(&sts_pod(0, "n"), &inv).skipped,
        Some(Skip::NotHandled)
    );
}

#[test]
fn malformed_object_is_denied_with_the_field_path() {
    let d = validate_create(
        &sts("web").set("spec.replicas", json!("two")),
        &inventory(&[svc("nginx")]),
    );
    assert!(!d.allowed());
    assert_eq!(
        d.denial_message(),
        "StatefulSet default/web: invalid object: spec.replicas: expected an integer, found string \"two\""
    );
}

/// An inventory whose API server is unreachable.
struct Unreachable;

impl Inventory for Unreachable {
    fn service(&self, ns: &str, name: &str) -> Lookup<Option<Arc<ServiceView>>> {
        Err(LookupError {
            what: format!("Service {ns}/{name}"),
            reason: "connection refused".into(),
        })
    }
    fn headless_services_selecting(
        &self,
        ns: &str,
        _labels: &LabelSet,
    ) -> Lookup<Vec<Arc<ServiceView>>> {
        Err(LookupError {
            what: format!("Services in {ns}"),
            reason: "connection refused".into(),
        })
    }
    fn statefulsets_governed_by(&self, ns: &str, svc: &str) -> Lookup<Vec<Arc<StatefulSetView>>> {
        Err(LookupError {
            what: format!("StatefulSets governed by {ns}/{svc}"),
            reason: "connection refused".into(),
        })
    }
    fn node(&self, name: &str) -> Lookup<Option<Arc<NodeView>>> {
        Err(LookupError {
            what: format!("Node {name}"),
            reason: "connection refused".into(),
        })
    }
    fn namespace_terminating(&self, name: &str) -> Lookup<bool> {
        Err(LookupError {
            what: format!("Namespace {name}"),
            reason: "connection refused".into(),
        })
    }
}

#[test]
fn lookup_errors_follow_on_lookup_error() {
    let review = review_json("CREATE", Some(&sts("web")), None, "admin", &[], json!(null));
    let req = parse_request(&review);
    let d = evaluate(&req, &Unreachable, &cfg(), Endpoint::Validate);
    assert!(d.allowed());
    assert_eq!(
        d.lookups_failed, 1,
        "counted for sts_guard_lookup_errors_total"
    );
    assert_eq!(
        d.warnings(),
        vec![
            "sts-service-exists: StatefulSet default/web: could not look up Service default/nginx: connection refused; rule not evaluated (onLookupError: allow)"
        ]
    );
    let deny = Config::parse("onLookupError: deny", "c").unwrap();
    let d = evaluate(&req, &Unreachable, &deny, Endpoint::Validate);
    assert!(!d.allowed());
    assert!(d.denial_message().contains("denied by onLookupError: deny"));

    let pod_delete = review_json(
        "DELETE",
        None,
        Some(&sts_pod(0, "node-a")),
        "admin",
        &[],
        json!({"gracePeriodSeconds": 0}),
    );
    let d = evaluate(
        &parse_request(&pod_delete),
        &Unreachable,
        &deny,
        Endpoint::Validate,
    );
    assert!(
        !d.allowed(),
        "a force delete whose node cannot be looked up is not waved through"
    );
}

/// A wrong type in what the rules read beside the view is named with its path (and the item's
/// index), and only where a rule reads it: ordered start reads containers only with more than
/// one replica, storage reads volumes only then too.
#[test]
fn wrong_types_in_the_pod_template_and_storage_are_named_where_rules_read_them() {
    let inv = inventory(&[svc("nginx")]);
    let invalid = |obj: Obj| validate_create(&obj, &inv).denial_message();
    let prefix = "StatefulSet default/web: invalid object: ";
    for (path, value, error) in [
        (
            "spec.template.spec.containers",
            json!(5),
            "spec.template.spec.containers: expected a list, found number 5",
        ),
        (
            "spec.template.spec.initContainers",
            json!([5]),
            "spec.template.spec.initContainers[0]: expected a map, found number 5",
        ),
        (
            "spec.template.spec.initContainers",
            json!([{"name": "a"}, {"restartPolicy": 1}]),
            "spec.template.spec.initContainers[1].restartPolicy: expected a string, found number 1",
        ),
        (
            "spec.template.spec.volumes",
            json!([{"name": "d", "persistentVolumeClaim": {"claimName": 7}}]),
            "spec.template.spec.volumes[0].persistentVolumeClaim.claimName: expected a string, found number 7",
        ),
        (
            "spec.template.spec.volumes",
            json!(["data"]),
            "spec.template.spec.volumes[0]: expected a map, found string \"data\"",
        ),
        (
            "spec.volumeClaimTemplates",
            json!([{"metadata": {"name": []}}]),
            "spec.volumeClaimTemplates[0].metadata.name: expected a string, found a list",
        ),
        (
            "spec.persistentVolumeClaimRetentionPolicy",
            json!({"whenScaled": 3}),
            "spec.persistentVolumeClaimRetentionPolicy.whenScaled: expected a string, found number 3",
        ),
        (
            "spec.persistentVolumeClaimRetentionPolicy",
            json!("Delete"),
            "spec.persistentVolumeClaimRetentionPolicy: expected a map, found string \"Delete\"",
        ),
    ] {
        assert_eq!(
            invalid(sts("web").set(path, value)),
            format!("{prefix}{error}"),
            "{path}"
        );
    }
    // One replica: neither ordered start nor shared storage applies, so neither is read.
    for (path, value) in [
        ("spec.template.spec.containers", json!(5)),
        ("spec.template.spec.volumes", json!(["data"])),
    ] {
        let one = sts("web").set("spec.replicas", json!(1)).set(path, value);
        assert!(validate_create(&one, &inv).allowed(), "{path}");
    }
    // A container of another type is one without probes, not an invalid object.
    let d = validate_create(
        &sts("web").set("spec.template.spec.containers", json!([5])),
        &inv,
    );
    let fired: Vec<RuleId> = rules_of(&d).into_iter().map(|(rule, _)| rule).collect();
    assert_eq!(fired, [RuleId::StsReadyOrdering], "{d:?}");
}
