use std::process::ExitCode;

// The checker and the webhook build and drop many small JSON trees; mimalloc handles that
// churn far better than the system allocator (bench/webhook.sh: about 1.8x the requests per
// second). Its v2 line keeps much less memory resident than v3 for the watch caches
// (benches/inventory_memory.rs: 40 MiB against 66 MiB). `serve` tunes it (`allocator`).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    sts_guard::cli::run()
}
