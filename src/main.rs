fn main() -> std::process::ExitCode {
    clawden::cli::run()
}
