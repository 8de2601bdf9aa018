//! Manifests loaded into an inventory: `check` judges the StatefulSets and Services among
//! them; `serve --manifests` and `review --manifests` answer lookups from them. The files given
//! together are one inventory (a Service in one file satisfies a StatefulSet in another).

use super::StaticInventory;
use crate::manifest::{InputLimits, LoadError, Manifest, SourcePos, read_paths_with, to_dynamic};
use crate::model::{NodeView, ServiceView, StatefulSetView};
use crate::vocabulary::Kind;
use kube_core::DynamicObject;

/// An object read from input and interpreted.
pub struct LoadedObject {
    pub pos: SourcePos,
    /// The kind, when it is one sts-guard reads.
    pub known_kind: Option<Kind>,
    pub(crate) kind: String,
    pub(crate) name: String,
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
    pub(crate) fn judged(&self) -> Option<DynamicObject> {
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
