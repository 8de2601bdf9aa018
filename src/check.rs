//! `sts-guard check`: the validating rules run over manifest files, for CI.
//!
//! The files given together are one inventory, loaded by
//! [`inventory::load_paths`](crate::inventory::load_paths) (a Service in one file satisfies a
//! StatefulSet in another). Each StatefulSet and Service is judged as a CREATE by the rules the
//! webhook runs on one, from the views built as it was loaded; DELETE-only rules do not apply.

use crate::config::Config;
use crate::engine::{Decision, Skip, evaluate_created};
use crate::inventory::{LoadedObject, StaticInventory};
use crate::report::{CheckReport, ObjectResult, drop_reported_twins};

/// Checks every StatefulSet and Service among `objects` against `inventory`.
pub fn check_objects(
    objects: Vec<LoadedObject>,
    inventory: &StaticInventory,
    config: &Config,
) -> CheckReport {
    let mut results: Vec<ObjectResult> = objects
        .into_iter()
        .map(|o| {
            let judged = o.judged(|viewed| {
                evaluate_created(&viewed.object_ref(), Ok(viewed), inventory, config)
            });
            let (skipped, decision) = match judged {
                Some(decision) => {
                    let skipped = (decision.skipped == Some(Skip::ExcludedNamespace))
                        .then_some("excluded namespace");
                    (skipped, decision)
                }
                // Nodes, pods and kinds sts-guard does not read.
                None => (Some("not checked"), Decision::default()),
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
