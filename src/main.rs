fn main() -> std::process::ExitCode {
    // The one-shot reaper of direct calls (exec'd by clawden itself, never by a user).
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some(clawden::exec::reaper::SUBCOMMAND) {
        clawden::exec::reaper::main(&args[2..]);
    }
    clawden::cli::run()
}
