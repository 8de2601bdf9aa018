//! The config file (README, "Config file"): every field optional, unknown fields and bad
//! values are errors that name the field path. Rule actions are checked against the rule table
//! ([`crate::vocabulary::RULES`]); the rules' own settings are the parameter structs the rules
//! define, embedded here.

use crate::rules::live::AuditThresholds;
use crate::rules::mutate::{IdentityEnv, PartitionDefaults};
use crate::rules::pod::ForceDelete;
use crate::vocabulary::{Action, RuleId};
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{source_name}: {path}: {message}")]
pub struct ConfigError {
    /// The file (or `<embedded>`).
    pub source_name: String,
    /// Field path, e.g. `rules.sts-service-exists`; `.` for the document itself.
    pub path: String,
    pub message: String,
}

/// What to do when the inventory cannot answer a lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnLookupError {
    /// Admit, with a warning naming the lookup (the default: an unreachable API server must
    /// not stop every StatefulSet change in the cluster).
    Allow,
    Deny,
}

/// What a webhook decision that would deny does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Denials deny (the default: sts-guard exists to reject).
    #[default]
    Enforce,
    /// Every denial is admitted with a warning and counted
    /// (`sts_guard_rule_violations_total{action="monitor"}`): a first install on a live
    /// cluster shows what it would refuse. `check` and `audit` report denials either way.
    Monitor,
}

/// The validated configuration the engine reads.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    actions: HashMap<RuleId, Action>,
    disabled_mutations: HashSet<RuleId>,
    pub excluded_namespaces: HashSet<String>,
    /// `pod-identity-env`: `identityEnv.names` and `clusterDomain`.
    pub identity_env: IdentityEnv,
    /// `sts-partition-default`: `partition.canary`.
    pub partition: PartitionDefaults,
    /// `pod-force-delete`: `forceDelete`.
    pub force_delete: ForceDelete,
    pub on_lookup_error: OnLookupError,
    /// What the webhook does with a denial.
    pub mode: Mode,
    /// The audit-only rules' thresholds: `audit`.
    pub audit: AuditThresholds,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            actions: HashMap::new(),
            disabled_mutations: HashSet::new(),
            excluded_namespaces: HashSet::from(["kube-system".to_string()]),
            identity_env: IdentityEnv::default(),
            partition: PartitionDefaults::default(),
            force_delete: ForceDelete::default(),
            on_lookup_error: OnLookupError::Allow,
            mode: Mode::Enforce,
            audit: AuditThresholds::default(),
        }
    }
}

impl Config {
    /// The configured action of a validating rule (its default when config says nothing).
    pub fn action(&self, rule: RuleId) -> Action {
        self.actions
            .get(&rule)
            .copied()
            .or(rule.default_action())
            .unwrap_or(Action::Off)
    }

    /// Whether a mutating rule is on.
    pub fn mutation_enabled(&self, rule: RuleId) -> bool {
        !self.disabled_mutations.contains(&rule)
    }

    pub fn is_excluded(&self, namespace: &str) -> bool {
        self.excluded_namespaces.contains(namespace)
    }

    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let name = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|e| ConfigError {
            source_name: name.clone(),
            path: ".".into(),
            message: format!("cannot read: {e}"),
        })?;
        let text = String::from_utf8(bytes).map_err(|e| ConfigError {
            source_name: name.clone(),
            path: ".".into(),
            message: format!("not UTF-8 (byte {})", e.utf8_error().valid_up_to()),
        })?;
        Config::parse(&text, &name)
    }

    /// Parses config text; `source_name` is used in errors.
    pub fn parse(text: &str, source_name: &str) -> Result<Config, ConfigError> {
        let err = |path: String, message: String| ConfigError {
            source_name: source_name.to_string(),
            path,
            message,
        };
        let docs = crate::yaml::parse_stream(text).map_err(|e| err(".".into(), e.to_string()))?;
        let value = match docs.len() {
            0 => serde_json::Value::Object(Default::default()),
            1 => docs.into_iter().next().map(|d| d.value).unwrap_or_default(),
            n => {
                return Err(err(
                    ".".into(),
                    format!("expected one YAML document, found {n}"),
                ));
            }
        };
        let raw: RawConfig = serde_path_to_error::deserialize(value).map_err(|e| {
            let path = e.path().to_string();
            err(path, e.into_inner().to_string())
        })?;
        raw.validate().map_err(|(path, message)| err(path, message))
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawConfig {
    /// Values are strings; YAML 1.1 reads a bare `off`/`on` as a boolean, taken as "off"/"on".
    #[serde(default)]
    rules: BTreeMap<String, serde_json::Value>,
    excluded_namespaces: Option<Vec<String>>,
    cluster_domain: Option<String>,
    identity_env: Option<RawIdentityEnv>,
    partition: Option<RawPartition>,
    force_delete: Option<RawForceDelete>,
    on_lookup_error: Option<OnLookupError>,
    mode: Option<Mode>,
    audit: Option<RawAudit>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawAudit {
    /// Values as written: a bare `15` is a number in YAML, and is refused as having no unit.
    rollout_stalled_after: Option<serde_json::Value>,
    claim_pending_after: Option<serde_json::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawIdentityEnv {
    enabled: Option<bool>,
    /// Variable key (`POD_NAME`, ...) to the name to use instead.
    #[serde(default)]
    names: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPartition {
    #[serde(default)]
    canary: BTreeMap<String, i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawForceDelete {
    allowed_users: Option<Vec<String>>,
    allowed_groups: Option<Vec<String>>,
}

/// A namespace name is a DNS label: a subdomain of one label.
pub fn valid_namespace_name(s: &str) -> bool {
    valid_dns_subdomain(s) && !s.contains('.')
}

fn valid_dns_subdomain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// An environment variable name Kubernetes accepts (C_IDENTIFIER-like, as the API validates).
fn valid_env_name(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with(|c: char| c.is_ascii_digit())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

/// A field path and what is wrong there.
type Invalid = (String, String);

impl RawConfig {
    fn validate(self) -> Result<Config, Invalid> {
        let mut config = Config::default();
        for (id, value) in self.rules {
            set_rule(&mut config, &id, value)?;
        }
        if let Some(namespaces) = self.excluded_namespaces {
            config.excluded_namespaces = excluded_namespaces(namespaces)?;
        }
        if let Some(domain) = self.cluster_domain {
            if !valid_dns_subdomain(&domain) {
                return Err((
                    "clusterDomain".into(),
                    format!(
                        "{domain:?} is not a valid DNS domain (lowercase labels separated by dots)"
                    ),
                ));
            }
            config.identity_env.cluster_domain = domain;
        }
        if let Some(identity) = self.identity_env {
            if identity.enabled == Some(false) {
                config.disabled_mutations.insert(RuleId::PodIdentityEnv);
            }
            rename_identity_variables(&mut config.identity_env, identity.names)?;
        }
        if let Some(partition) = self.partition {
            for (ns, n) in partition.canary {
                if n < 1 {
                    return Err((
                        format!("partition.canary.{ns}"),
                        format!("canary size must be at least 1, got {n}"),
                    ));
                }
                config.partition.canary.insert(ns, n);
            }
        }
        if let Some(fd) = self.force_delete {
            if let Some(users) = fd.allowed_users {
                config.force_delete.allowed_users = users;
            }
            if let Some(groups) = fd.allowed_groups {
                config.force_delete.allowed_groups = groups;
            }
        }
        if let Some(on_error) = self.on_lookup_error {
            config.on_lookup_error = on_error;
        }
        if let Some(mode) = self.mode {
            config.mode = mode;
        }
        if let Some(audit) = self.audit {
            if let Some(value) = audit.rollout_stalled_after {
                config.audit.rollout_stalled_after =
                    duration(&value).map_err(|e| ("audit.rolloutStalledAfter".to_string(), e))?;
            }
            if let Some(value) = audit.claim_pending_after {
                config.audit.claim_pending_after =
                    duration(&value).map_err(|e| ("audit.claimPendingAfter".to_string(), e))?;
            }
        }
        Ok(config)
    }
}

/// A duration as Go and Prometheus write them, in hours, minutes and seconds: `90s`, `15m`,
/// `1h30m`.
fn duration(value: &serde_json::Value) -> Result<std::time::Duration, String> {
    let invalid = || format!("{value} is not a duration: write it like 90s, 15m or 1h30m");
    let Some(text) = value.as_str() else {
        return Err(invalid());
    };
    let mut seconds: u64 = 0;
    let mut number = String::new();
    for c in text.chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let unit = match c {
            'h' => 3600,
            'm' => 60,
            's' => 1,
            _ => return Err(invalid()),
        };
        let n: u64 = number.parse().map_err(|_| invalid())?;
        seconds = n
            .checked_mul(unit)
            .and_then(|s| s.checked_add(seconds))
            .ok_or_else(invalid)?;
        number.clear();
    }
    if !number.is_empty() || text.is_empty() {
        return Err(invalid());
    }
    Ok(std::time::Duration::from_secs(seconds))
}

/// `rules.<id>: <value>`, checked against the rule's row of the rule table.
fn set_rule(config: &mut Config, id: &str, raw: serde_json::Value) -> Result<(), Invalid> {
    let path = format!("rules.{id}");
    let value = match raw {
        serde_json::Value::String(s) => s,
        serde_json::Value::Bool(false) => "off".to_string(),
        serde_json::Value::Bool(true) => "on".to_string(),
        other => return Err((path, format!("invalid value {other}; expected a string"))),
    };
    let rule = RuleId::parse(id).ok_or_else(|| {
        let known: Vec<&str> = RuleId::ALL.iter().map(|r| r.as_str()).collect();
        (
            path.clone(),
            format!("unknown rule id; known ids: {}", known.join(", ")),
        )
    })?;
    let allowed = rule.allowed_actions();
    if !allowed.contains(&value.as_str()) {
        return Err((
            path,
            format!(
                "invalid value {value:?}; expected one of: {}",
                allowed.join(", ")
            ),
        ));
    }
    match value.as_str() {
        "deny" => {
            config.actions.insert(rule, Action::Deny);
        }
        "warn" => {
            config.actions.insert(rule, Action::Warn);
        }
        "off" if rule.is_mutating() => {
            config.disabled_mutations.insert(rule);
        }
        "off" => {
            config.actions.insert(rule, Action::Off);
        }
        _ => {} // "on" for a mutating rule: the default
    }
    Ok(())
}

fn excluded_namespaces(namespaces: Vec<String>) -> Result<HashSet<String>, Invalid> {
    for (i, ns) in namespaces.iter().enumerate() {
        if !valid_namespace_name(ns) {
            return Err((
                format!("excludedNamespaces[{i}]"),
                format!("{ns:?} is not a valid namespace name"),
            ));
        }
    }
    Ok(namespaces.into_iter().collect())
}

/// `identityEnv.names`: each key is a variable's default name, its value the name to use.
fn rename_identity_variables(
    identity: &mut IdentityEnv,
    renames: BTreeMap<String, String>,
) -> Result<(), Invalid> {
    let mut slots = identity.names.by_key_mut();
    for (key, name) in renames {
        let Some((_, slot)) = slots.iter_mut().find(|(k, _)| *k == key) else {
            let known: Vec<&str> = slots.iter().map(|(k, _)| *k).collect();
            return Err((
                format!("identityEnv.names.{key}"),
                format!(
                    "unknown field `{key}`, expected one of {}",
                    known.join(", ")
                ),
            ));
        };
        if !valid_env_name(&name) {
            return Err((
                format!("identityEnv.names.{key}"),
                format!("{name:?} is not a valid environment variable name"),
            ));
        }
        **slot = name;
    }
    let unique: HashSet<&str> = slots.iter().map(|(_, name)| name.as_str()).collect();
    if unique.len() != slots.len() {
        return Err((
            "identityEnv.names".into(),
            "two variables share one name".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, "test.yaml")
    }

    #[test]
    fn empty_config_gives_the_defaults() {
        let c = parse("").unwrap();
        assert_eq!(c, Config::default());
        assert_eq!(c.action(RuleId::StsServiceExists), Action::Deny);
        assert_eq!(c.action(RuleId::StsSharedClaim), Action::Warn);
        assert!(c.is_excluded("kube-system"));
        assert!(c.mutation_enabled(RuleId::PodIdentityEnv));
    }

    #[test]
    fn full_config_is_read() {
        let c = parse(
            "rules:\n  sts-service-exists: warn\n  pod-identity-env: off\nexcludedNamespaces: [a, b]\n\
             clusterDomain: corp.example\nidentityEnv:\n  names:\n    POD_ORDINAL: ORDINAL\n\
             partition:\n  canary:\n    prod: 2\nforceDelete:\n  allowedGroups: [sre]\nonLookupError: deny\n",
        )
        .unwrap();
        assert_eq!(c.action(RuleId::StsServiceExists), Action::Warn);
        assert!(!c.mutation_enabled(RuleId::PodIdentityEnv));
        assert!(c.is_excluded("a") && !c.is_excluded("kube-system"));
        assert_eq!(c.identity_env.cluster_domain, "corp.example");
        assert_eq!(c.identity_env.names.pod_ordinal, "ORDINAL");
        assert_eq!(c.partition.canary["prod"], 2);
        assert_eq!(c.force_delete.allowed_groups, vec!["sre"]);
        assert_eq!(c.on_lookup_error, OnLookupError::Deny);
    }

    #[test]
    fn audit_thresholds_are_durations() {
        let c = parse("audit:\n  rolloutStalledAfter: 1h30m\n  claimPendingAfter: 45s\n").unwrap();
        assert_eq!(c.audit.rollout_stalled_after.as_secs(), 5400);
        assert_eq!(c.audit.claim_pending_after.as_secs(), 45);
        let c = parse("audit:\n  claimPendingAfter: 0s\n").unwrap();
        assert_eq!(c.audit.claim_pending_after.as_secs(), 0);
        assert_eq!(c.audit.rollout_stalled_after.as_secs(), 3600, "the default");
    }

    #[test]
    fn errors_name_the_field_path() {
        let cases = [
            ("bogus: 1", "bogus", "unknown field"),
            (
                "rules:\n  no-such-rule: deny",
                "rules.no-such-rule",
                "unknown rule id",
            ),
            (
                "rules:\n  sts-service-exists: block",
                "rules.sts-service-exists",
                "expected one of: deny, warn, off",
            ),
            (
                "rules:\n  sts-partition-range: deny",
                "rules.sts-partition-range",
                "expected one of: warn, off",
            ),
            (
                "clusterDomain: Not_A_Domain",
                "clusterDomain",
                "not a valid DNS domain",
            ),
            (
                "identityEnv:\n  names:\n    POD_FQDN: 'a=b'",
                "identityEnv.names.POD_FQDN",
                "not a valid environment variable",
            ),
            (
                "identityEnv:\n  nmes: {}",
                "identityEnv.nmes",
                "unknown field `nmes`",
            ),
            (
                "rules:\n  sts-service-name: on",
                "rules.sts-service-name",
                "invalid value \"on\"",
            ),
            (
                "partition:\n  canary:\n    prod: 0",
                "partition.canary.prod",
                "at least 1",
            ),
            ("onLookupError: maybe", "onLookupError", "unknown variant"),
            (
                "forceDelete:\n  allowedUsers: admin",
                "forceDelete.allowedUsers",
                "expected a sequence",
            ),
            (
                "audit:\n  rolloutStalledAfter: 5 min",
                "audit.rolloutStalledAfter",
                "\"5 min\" is not a duration: write it like 90s, 15m or 1h30m",
            ),
            (
                "audit:\n  claimPendingAfter: 15",
                "audit.claimPendingAfter",
                "not a duration",
            ),
            ("audit:\n  stalled: 1h", "audit.stalled", "unknown field"),
            (
                "excludedNamespaces: [\"Bad NS\"]",
                "excludedNamespaces[0]",
                "not a valid namespace",
            ),
        ];
        for (text, path, message) in cases {
            let err = parse(text).unwrap_err();
            assert_eq!(err.path, path, "{text}: {err}");
            assert!(err.message.contains(message), "{text}: {err}");
            assert!(err.to_string().starts_with("test.yaml: "), "{err}");
        }
    }
}
