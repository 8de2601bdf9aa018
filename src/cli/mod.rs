//! The `sts-guard` command line (clap): one file per subcommand, each owning its arguments and
//! a thin `run` over the library. What several commands share (config and inventory loading,
//! input limits, output formats, exit codes) is here.

pub mod audit;
pub mod certs;
pub mod check;
pub mod review;
pub mod serve;

use crate::config::Config;
use crate::inventory::load_inventory_paths;
use crate::manifest::InputLimits;
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
    Check(check::CheckArgs),
    /// Serve the admission webhook over TLS (POST /validate, /mutate; GET /healthz, /readyz,
    /// /metrics).
    Serve(Box<serve::ServeArgs>),
    /// Read a live cluster once and list the StatefulSets, Services and StatefulSet pods that
    /// break the rules. Exit 0: no denial; 1: denials; 2: the cluster could not be read.
    Audit(audit::AuditArgs),
    /// Evaluate one AdmissionReview exactly as the server would and print the response.
    Review(review::ReviewArgs),
    /// Write a CA and a serving certificate for bootstrapping.
    Certs(certs::CertsArgs),
}

/// `--namespace`: a name the API server accepts for a namespace.
pub(crate) fn namespace_name(s: &str) -> Result<String, String> {
    if crate::config::valid_namespace_name(s) {
        Ok(s.to_string())
    } else {
        Err(format!(
            "{s:?} is not a namespace name (a DNS label: at most 63 lowercase letters, digits and '-', starting and ending with a letter or digit)"
        ))
    }
}

pub(crate) fn positive_count(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(v) if v > 0 => Ok(v),
        _ => Err(format!("{s:?} is not a whole number above 0")),
    }
}

pub(crate) fn positive_seconds(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v > 0.0 && v.is_finite() && v < 1e9 => Ok(v),
        _ => Err(format!("{s:?} is not a positive number of seconds")),
    }
}

/// Bounds on manifest input (`check` paths, `--manifests`): more is an error naming the file.
#[derive(clap::Args, Debug, Clone, Copy)]
pub struct InputLimitArgs {
    /// Largest manifest file (or stdin) read, in bytes or with a Ki, Mi or Gi suffix.
    #[arg(long, value_name = "BYTES", default_value = "64Mi", value_parser = parse_size)]
    pub max_file_size: u64,
    /// Largest total of all manifest input read, in bytes or with a Ki, Mi or Gi suffix.
    #[arg(long, value_name = "BYTES", default_value = "256Mi", value_parser = parse_size)]
    pub max_total_size: u64,
}

impl InputLimitArgs {
    pub fn limits(&self) -> InputLimits {
        InputLimits {
            max_file_bytes: self.max_file_size,
            max_total_bytes: self.max_total_size,
        }
    }
}

/// A size in bytes: `1048576`, `1024Ki`, `64Mi`, `1Gi`.
fn parse_size(s: &str) -> Result<u64, String> {
    let (digits, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => s.split_at(i),
        None => (s, ""),
    };
    let shift = match unit {
        "" => 0,
        "Ki" => 10,
        "Mi" => 20,
        "Gi" => 30,
        _ => {
            return Err(format!(
                "{s:?}: expected bytes, or a number with Ki, Mi or Gi"
            ));
        }
    };
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(1 << shift))
        .filter(|&n| n > 0)
        .ok_or_else(|| format!("{s:?}: expected a positive size"))
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputFormat {
    Text,
    Json,
    Sarif,
}

/// Exit status of `check` and `audit`.
pub const EXIT_DENIED: u8 = 1;
pub const EXIT_UNREADABLE: u8 = 2;

/// Writes a report to stdout; the exit status says whether anything was denied.
pub(crate) fn print_verdict(command: &str, rendered: &str, denied: usize) -> ExitCode {
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = stdout
        .write_all(rendered.as_bytes())
        .and_then(|_| stdout.flush())
    {
        // A closed pipe (`| head`) is not a policy verdict; report it and fail loudly.
        eprintln!("sts-guard {command}: cannot write output: {e}");
        return ExitCode::from(EXIT_UNREADABLE);
    }
    if denied > 0 {
        ExitCode::from(EXIT_DENIED)
    } else {
        ExitCode::SUCCESS
    }
}

pub fn run() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check(args) => check::run(&args),
        Command::Serve(args) => serve::run(*args),
        Command::Audit(args) => audit::run(args),
        Command::Review(args) => review::run(&args),
        Command::Certs(args) => certs::run(&args),
    }
}

pub(crate) fn load_config(path: Option<&PathBuf>) -> Result<Config, String> {
    match path {
        Some(path) => Config::load(path).map_err(|e| format!("invalid config: {e}")),
        None => Ok(Config::default()),
    }
}

/// Builds the static inventory from manifest paths (empty when none are given).
pub(crate) fn load_inventory(
    paths: &[String],
    namespace: &str,
    limits: &InputLimits,
) -> Result<crate::inventory::StaticInventory, String> {
    if paths.is_empty() {
        return Ok(crate::inventory::StaticInventory::new());
    }
    load_inventory_paths(paths, limits, namespace).map_err(|errors| {
        let lines: Vec<String> = errors.iter().map(|e| format!("--manifests: {e}")).collect();
        lines.join("\n")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_limit_defaults_are_the_library_defaults() {
        let cli = Cli::try_parse_from(["sts-guard", "check", "-"]).unwrap();
        let Command::Check(args) = cli.command else {
            panic!("not check")
        };
        assert_eq!(args.limits.limits(), InputLimits::default());
        let cli = Cli::try_parse_from(["sts-guard", "serve", "--max-file-size", "1Ki"]).unwrap();
        let Command::Serve(args) = cli.command else {
            panic!("not serve")
        };
        assert_eq!(args.limits.max_file_size, 1024);
    }

    #[test]
    fn sizes_take_binary_suffixes() {
        assert_eq!(parse_size("17"), Ok(17));
        assert_eq!(parse_size("64Mi"), Ok(64 << 20));
        assert_eq!(parse_size("2Gi"), Ok(2 << 30));
        for bad in ["", "0", "1M", "1.5Mi", "-1", "99999999999999Gi"] {
            assert!(parse_size(bad).is_err(), "{bad:?}");
        }
    }
}
