//! `sts-guard certs`: a CA and a serving certificate for bootstrapping.

use super::EXIT_UNREADABLE;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args, Debug)]
pub struct CertsArgs {
    /// DNS names (or IP addresses) for the serving certificate, e.g.
    /// sts-guard.sts-guard.svc.
    #[arg(long, required = true, num_args = 1..)]
    pub dns: Vec<String>,
    /// Directory to write ca.crt, ca.key, tls.crt and tls.key into.
    #[arg(long)]
    pub out: PathBuf,
    /// Overwrite existing files.
    #[arg(long)]
    pub force: bool,
    /// Validity of the serving certificate in days (the CA gets twice as long).
    #[arg(long, default_value_t = 365, value_parser = clap::value_parser!(u32).range(1..=3650))]
    pub days: u32,
}

pub fn run(args: &CertsArgs) -> ExitCode {
    let result = crate::server::certs::generate(&args.dns, args.days)
        .and_then(|certs| crate::server::certs::write_dir(&args.out, &certs, args.force));
    match result {
        Ok(()) => {
            println!(
                "wrote {0}/ca.crt, {0}/ca.key, {0}/tls.crt, {0}/tls.key (serving certificate for {1}, valid {2} days)",
                args.out.display(),
                args.dns.join(", "),
                args.days
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("sts-guard certs: {e}");
            ExitCode::from(EXIT_UNREADABLE)
        }
    }
}
