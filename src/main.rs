use std::process::ExitCode;

// The checker and the webhook build and drop many small JSON trees; mimalloc handles that
// churn far better than the system allocator (see benches/check_throughput.rs).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    sts_guard::cli::run()
}
