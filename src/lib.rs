//! sts-guard keeps StatefulSets honest.
//!
//! ```text
//!   AdmissionReview ──► server (axum + rustls) ─┐
//!   sts-guard review ───────────────────────────┼──► engine::evaluate(request, inventory, config)
//!   sts-guard check ──► manifest ─► check ──────┤           │            │
//!   sts-guard audit ──► paged lists ─► audit ───┘     rules::*  rules::mutate::*
//!                       (+ rules::live on pods)  (pure functions over the Inventory trait)
//!   Inventory: StaticInventory (files, audit's lists) | cluster watch caches
//! ```
//!
//! A StatefulSet's `spec.serviceName` names its *governing* Service, which must exist, be
//! headless and select the pods; the rules keep that true from both sides, refuse unsafe
//! force deletion of StatefulSet pods, and mutations give pods their identity as env vars.

pub mod admission;
pub mod audit;
pub mod check;
pub mod cli;
pub mod config;
pub mod engine;
pub mod inventory;
pub mod log_writer;
pub mod manifest;
pub mod model;
pub mod report;
pub mod request;
pub mod rules;
pub mod server;
pub mod yaml;
