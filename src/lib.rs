//! sts-guard keeps StatefulSets honest.
//!
//! A StatefulSet's `spec.serviceName` names its *governing* Service, which must exist, be
//! headless and select the pods; the rules keep that true from both sides, refuse unsafe
//! force deletion of StatefulSet pods, and mutations give pods their identity as env vars.
//!
//! # Layers
//!
//! Imports point only down this list; `cargo test --test layers` checks it (no cycle between
//! top-level modules, no import up the list, no module outside it).
//!
//! ```text
//!   cli/          one file per command (check, review, certs, serve, audit), each owning its
//!                 clap arguments
//!   ───────────────────────────────────────────────────────────────────────────────────────
//!   admission     AdmissionReview bytes ⇄ request and response      server/  HTTPS, limits,
//!   check         manifest files judged as CREATEs                  metrics  certificates
//!   audit         a live cluster read once                          report   what check and
//!   log_writer    the server's batched log lines                             audit found;
//!                                                                            text/JSON/SARIF
//!   ───────────────────────────────────────────────────────────────────────────────────────
//!   engine/       evaluate(request, inventory, config) → Decision: runs the rules for the
//!                 request's kind and operation, applies config (actions, grandfathering,
//!                 onLookupError); evaluate_created judges the views `check` and `audit`
//!                 built as they loaded objects, as CREATEs; evaluator.rs confirms cache
//!                 answers live (LiveLookup)
//!   config        the config file: rule actions and the rules' parameter structs
//!   rules/        validating rules (statefulset, service, pod, live) and mutating rules
//!                 (mutate): pure functions over views and the Inventory trait
//!   inventory/    answers lookups: StaticInventory (index.rs: files, audit's lists),
//!                 ClusterInventory (watch caches, and LiveLookup answers straight from the API
//!                 server); manifests.rs loads manifest files into an inventory
//!   model         typed views of objects (ServiceView, StatefulSetView, ...), each built from
//!                 a `shaped!` struct of its spec: what the decoders keep of it
//!   subject       the objects of a review as their handler reads them: metadata and typed
//!                 specs, decoded from the body's text in one pass; watched objects' metadata
//!   shape         Checked fields and the `shaped!` declaration of a struct of them
//!   manifest      files and stdin to objects with their positions, and each object as a
//!                 `DynamicObject` (into_object)
//!   request       an AdmissionReview's envelope and the plan (Handler, what it reads of each
//!                 object) into the Review the engine judges
//!   vocabulary    Kind, Endpoint, RuleId and the RULES table, Action, Finding, ObjectRef,
//!                 LookupError
//!   yaml          the YAML reader
//!   allocator     mimalloc's settings for a long-running server (set first by `serve`)
//!   mem_copy      memcpy and memmove for the static musl build (musl's are slow for short
//!                 copies)
//! ```
//!
//! # One request's path
//!
//! ```text
//!   POST /validate ─► server::handle (size, memory budget)
//!     ─► admission::decode: request::read_envelope, request::plan picks the Handler and what
//!          it reads of each object (once per request), objects decoded straight into those
//!          typed parts (subject.rs; no handler: answered from the envelope) ─► request::Review
//!     ─► Evaluator::decide_review (engine::evaluator), with the Handler planned
//!          StaticInventory: engine::evaluate_review
//!          ClusterInventory: engine::evaluate_review on the cache; lookups that would deny
//!                            are asked again through LiveLookup and evaluated once more
//!     ─► engine::evaluate_review: match on the Handler
//!          ─► e.g. rules::statefulset::check_statefulset (Findings)
//!          ─► apply_policy (config) ─► Decision
//!     ─► admission::encode (allowed, message, warnings, patch) ─► metrics, log
//! ```
//!
//! `sts-guard check` reaches the same rules through `engine::evaluate_created` from
//! `check::check_objects`, with the views (`model::Viewed`) built once as each manifest object
//! was loaded and indexed (`inventory::manifests`); `sts-guard audit` the same way, plus
//! `rules::live` on live pods; `sts-guard review` through `admission::review`.

pub mod admission;
pub mod allocator;
pub mod audit;
pub mod check;
pub mod cli;
pub mod config;
pub mod engine;
pub mod inventory;
pub mod log_writer;
pub mod manifest;
pub mod mem_copy;
pub mod model;
pub mod report;
pub mod request;
pub mod rules;
pub mod server;
pub mod shape;
pub mod subject;
pub mod vocabulary;
pub mod yaml;
