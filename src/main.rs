use std::process::ExitCode;

fn main() -> ExitCode {
    sts_guard::cli::run()
}
