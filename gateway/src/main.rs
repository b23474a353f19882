//! `gateway`: a shim over [`gateway::cli::main`].

fn main() -> std::process::ExitCode {
    gateway::cli::main()
}
