//! The `sts-guard` command line (clap). Each subcommand is a thin shell over the library.

use crate::check::{check_objects, load_objects};
use crate::config::Config;
use crate::manifest::read_paths;
use crate::report;
use clap::{Parser, Subcommand, ValueEnum};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser, Debug)]
#[command(
    name = "sts-guard",
    version,
    about = "Keeps StatefulSets honest: an admission webhook and an offline checker."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Check manifests against the validating rules (for CI). Exit 0: no denial; 1: denials;
    /// 2: unreadable input or config.
    Check(CheckArgs),
}

#[derive(clap::Args, Debug)]
pub struct CheckArgs {
    /// Files, directories (recursive: .yaml, .yml, .json) or - for stdin.
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<String>,
    /// Namespace of objects that do not name one.
    #[arg(short, long, default_value = "default", env = "STS_GUARD_NAMESPACE")]
    pub namespace: String,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
    /// Config file (rule actions, excluded namespaces, ...).
    #[arg(long, env = "STS_GUARD_CONFIG")]
    pub config: Option<PathBuf>,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputFormat {
    Text,
    Json,
    Sarif,
}

/// Exit status of `check`.
pub const EXIT_DENIED: u8 = 1;
pub const EXIT_UNREADABLE: u8 = 2;

pub fn run() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check(args) => run_check(&args),
    }
}

fn load_config(path: Option<&PathBuf>) -> Result<Config, String> {
    match path {
        Some(path) => Config::load(path).map_err(|e| format!("invalid config: {e}")),
        None => Ok(Config::default()),
    }
}

fn run_check(args: &CheckArgs) -> ExitCode {
    let config = match load_config(args.config.as_ref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("sts-guard check: {e}");
            return ExitCode::from(EXIT_UNREADABLE);
        }
    };
    let (manifests, mut errors) = read_paths(&args.paths);
    let loaded = if errors.is_empty() {
        load_objects(manifests, &args.namespace)
            .map_err(|e| errors.extend(e))
            .ok()
    } else {
        None
    };
    let Some((objects, inventory)) = loaded else {
        for e in &errors {
            eprintln!("sts-guard check: {e}");
        }
        eprintln!(
            "sts-guard check: {} input error(s); nothing was checked.",
            errors.len()
        );
        return ExitCode::from(EXIT_UNREADABLE);
    };
    let report = check_objects(objects, &inventory, &config);
    let rendered = match args.output {
        OutputFormat::Text => report::text(&report),
        OutputFormat::Json => format!("{:#}\n", report::json(&report)),
        OutputFormat::Sarif => format!("{:#}\n", report::sarif(&report)),
    };
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = stdout
        .write_all(rendered.as_bytes())
        .and_then(|_| stdout.flush())
    {
        // A closed pipe (`| head`) is not a policy verdict; report it and fail loudly.
        eprintln!("sts-guard check: cannot write output: {e}");
        return ExitCode::from(EXIT_UNREADABLE);
    }
    if report.denied() > 0 {
        ExitCode::from(EXIT_DENIED)
    } else {
        ExitCode::SUCCESS
    }
}
