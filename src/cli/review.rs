//! `sts-guard review`: one AdmissionReview answered exactly as the server would.

use super::{EXIT_UNREADABLE, InputLimitArgs, load_config, load_inventory, namespace_name};
use crate::engine::Endpoint;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args, Debug)]
pub struct ReviewArgs {
    /// AdmissionReview JSON file, or - for stdin.
    #[arg(default_value = "-")]
    pub file: String,
    /// Which webhook endpoint to answer as.
    #[arg(long, value_enum, default_value_t = EndpointArg::Validate)]
    pub endpoint: EndpointArg,
    /// Manifest files or directories that form the inventory.
    #[arg(long, value_name = "DIR|FILE")]
    pub manifests: Vec<String>,
    #[command(flatten)]
    pub limits: InputLimitArgs,
    /// Namespace of manifest objects that do not name one.
    #[arg(long, default_value = "default", value_parser = namespace_name)]
    pub namespace: String,
    /// Config file.
    #[arg(long, env = "STS_GUARD_CONFIG")]
    pub config: Option<PathBuf>,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum EndpointArg {
    Validate,
    Mutate,
}

pub fn run(args: &ReviewArgs) -> ExitCode {
    let fail = |message: String| {
        eprintln!("sts-guard review: {message}");
        ExitCode::from(EXIT_UNREADABLE)
    };
    let config = match load_config(args.config.as_ref()) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    let inventory = match load_inventory(&args.manifests, &args.namespace, &args.limits.limits()) {
        Ok(inv) => inv,
        Err(e) => return fail(e),
    };
    let body = if args.file == "-" {
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut bytes).map(|_| bytes)
    } else {
        std::fs::read(&args.file)
    };
    let body = match body {
        Ok(b) => b,
        Err(e) => return fail(format!("{}: cannot read: {e}", args.file)),
    };
    let endpoint = match args.endpoint {
        EndpointArg::Validate => Endpoint::Validate,
        EndpointArg::Mutate => Endpoint::Mutate,
    };
    match crate::admission::review(&body, &inventory, &config, endpoint) {
        Ok(reviewed) => {
            let pretty: serde_json::Value =
                serde_json::from_slice(&reviewed.body).unwrap_or(serde_json::Value::Null);
            println!("{pretty:#}");
            ExitCode::SUCCESS
        }
        Err(bad) => fail(format!("{}: {bad}", args.file)),
    }
}
