//! `gateway`: a shim over [`gateway::cli::main`].

/// mimalloc: glibc's allocator was ~13% of the proxy's CPU under load
/// (`perf record` during `deploy/bench/proxies`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    gateway::cli::main()
}
