fn main() -> std::process::ExitCode {
    wecom_outbox::cli::main()
}
