//! `sts-guard check`: manifests in, a report out, and an exit status CI can act on.

use super::{
    EXIT_UNREADABLE, InputLimitArgs, OutputFormat, load_config, namespace_name, print_verdict,
};
use crate::check::check_objects;
use crate::inventory::load_paths;
use crate::report;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args, Debug)]
pub struct CheckArgs {
    /// Files, directories (recursive: .yaml, .yml, .json) or - for stdin.
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<String>,
    /// Namespace of objects that do not name one.
    #[arg(short, long, default_value = "default", env = "STS_GUARD_NAMESPACE", value_parser = namespace_name)]
    pub namespace: String,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
    /// Config file (rule actions, excluded namespaces, ...).
    #[arg(long, env = "STS_GUARD_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub limits: InputLimitArgs,
}

pub fn run(args: &CheckArgs) -> ExitCode {
    let config = match load_config(args.config.as_ref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("sts-guard check: {e}");
            return ExitCode::from(EXIT_UNREADABLE);
        }
    };
    let loaded = load_paths(&args.paths, &args.limits.limits(), &args.namespace);
    let (objects, inventory) = match loaded {
        Ok(loaded) => loaded,
        Err(errors) => {
            for e in &errors {
                eprintln!("sts-guard check: {e}");
            }
            eprintln!(
                "sts-guard check: {} input error(s); nothing was checked.",
                errors.len()
            );
            return ExitCode::from(EXIT_UNREADABLE);
        }
    };
    let report = check_objects(objects, &inventory, &config);
    let rendered = match args.output {
        OutputFormat::Text => report::text(&report),
        OutputFormat::Json => format!("{:#}\n", report::json(&report)),
        OutputFormat::Sarif => format!("{:#}\n", report::sarif(&report)),
    };
    print_verdict("check", &rendered, report.denied())
}
