//! The `clawden-agent` binary: everything lives in the library.

fn main() -> std::process::ExitCode {
    clawden_agent::server::main()
}
