fn main() -> std::process::ExitCode {
    tenant_admin::cli::main()
}
