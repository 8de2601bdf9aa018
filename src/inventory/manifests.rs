//! Manifests loaded into an inventory: `check` judges the StatefulSets and Services among
//! them; `serve --manifests` and `review --manifests` answer lookups from them. The files given
//! together are one inventory (a Service in one file satisfies a StatefulSet in another).

use super::StaticInventory;
use crate::manifest::{InputLimits, LoadError, Manifest, SourcePos, into_object, read_paths_with};
use crate::model::{NodeView, ServiceView, StatefulSetSpec, StatefulSetView, Viewed};
use crate::shape::{Checked, checked_owned};
use crate::vocabulary::Kind;
use serde_json::Value;

/// An object read from input and interpreted.
pub struct LoadedObject {
    pub pos: SourcePos,
    /// The kind, when it is one sts-guard reads.
    pub known_kind: Option<Kind>,
    pub(crate) kind: String,
    pub(crate) name: String,
    pub namespace: String,
    /// A StatefulSet or Service as the rules judge it, viewed once as it is loaded and kept
    /// until it is checked.
    judged: Option<Kept>,
}

impl LoadedObject {
    pub fn kind(&self) -> &str {
        &self.kind
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `judge` applied to the object as the rules read it, when it is a StatefulSet or a
    /// Service.
    pub(crate) fn judged<R>(&self, judge: impl FnOnce(Viewed<'_>) -> R) -> Option<R> {
        Some(match self.judged.as_ref()? {
            Kept::StatefulSet { view, spec } => judge(Viewed::StatefulSet { view, spec }),
            Kept::Service(view) => judge(Viewed::Service(view)),
        })
    }
}

/// A StatefulSet or Service kept for checking: its view, and of a StatefulSet the typed spec
/// its view was built from, which the rules read beside it (decoded once, as the webhook
/// decodes a review's).
enum Kept {
    StatefulSet {
        view: StatefulSetView,
        spec: Box<Checked<StatefulSetSpec<'static>>>,
    },
    Service(ServiceView),
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
    let mut object = into_object(manifest.value).map_err(&at)?;
    let types = object.types.as_ref().expect("into_object sets types");
    let known_kind = Kind::from_manifest(&types.api_version, &types.kind);
    let kind = types.kind.clone();
    let name = object.metadata.name.clone().unwrap_or_default();
    // A StatefulSet's spec is decoded once, owned: its view and the rules read the one decode.
    let mut statefulset_spec = None;
    let indexed = match known_kind {
        Some(Kind::StatefulSet) => {
            let spec = statefulset_spec.insert(Box::new(checked_owned(
                object.data.get_mut("spec").map(Value::take),
            )));
            Some(
                StatefulSetView::from_parts(&object.metadata, spec, default_namespace)
                    .map(Indexed::StatefulSet),
            )
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
    let judged = match (&indexed, statefulset_spec) {
        (Some(Indexed::StatefulSet(view)), Some(spec)) if keep => Some(Kept::StatefulSet {
            view: view.clone(),
            spec,
        }),
        (Some(Indexed::Service(view)), _) if keep => Some(Kept::Service(view.clone())),
        _ => None,
    };
    let namespace = object.metadata.namespace.clone();
    let loaded_object = loaded(
        pos,
        known_kind,
        kind,
        name,
        namespace,
        default_namespace,
        judged,
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
    judged: Option<Kept>,
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
        judged,
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
