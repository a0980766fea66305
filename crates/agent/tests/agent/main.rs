//! Real-process tests of `clawden-agent`: a real agent in a new pid namespace, as a non-root
//! user, driven through the real client from outside the namespace (so the peer check is the
//! real one). No mocks.
//!
//! This binary is also the agent under test (`serve`, same code as the static binary) and the
//! helper processes some tests need (`probe-connect`, `probe-exec`); hence `harness = false`.

mod detached;
mod exec;
mod files;
mod harness;
mod peer;

use std::process::ExitCode;

const TESTS: &[harness::Test] = &[
    (
        "exec::exit_codes_and_signals_come_from_waitpid",
        exec::exit_codes_and_signals_come_from_waitpid,
    ),
    (
        "exec::forged_markers_and_frames_cannot_change_the_status",
        exec::forged_markers_and_frames_cannot_change_the_status,
    ),
    (
        "exec::leftover_process_of_an_earlier_call_cannot_touch_the_next",
        exec::leftover_process_of_an_earlier_call_cannot_touch_the_next,
    ),
    (
        "exec::timeout_kills_setsid_env_i_double_forked_and_nohup_children",
        exec::timeout_kills_setsid_env_i_double_forked_and_nohup_children,
    ),
    (
        "exec::background_sleep_returns_promptly_and_is_killed",
        exec::background_sleep_returns_promptly_and_is_killed,
    ),
    (
        "exec::output_flood_on_both_streams_is_bounded_and_counted",
        exec::output_flood_on_both_streams_is_bounded_and_counted,
    ),
    (
        "exec::endless_output_under_a_timeout_does_not_deadlock",
        exec::endless_output_under_a_timeout_does_not_deadlock,
    ),
    (
        "exec::stdin_is_streamed_and_closed_by_default",
        exec::stdin_is_streamed_and_closed_by_default,
    ),
    (
        "exec::env_is_exact_and_cwd_is_resolved_in_the_container",
        exec::env_is_exact_and_cwd_is_resolved_in_the_container,
    ),
    (
        "exec::exec_failure_ends_as_start_failed",
        exec::exec_failure_ends_as_start_failed,
    ),
    (
        "exec::many_calls_on_one_connection",
        exec::many_calls_on_one_connection,
    ),
    (
        "exec::the_sandbox_cannot_steer_or_free_itself_from_its_reaper",
        exec::the_sandbox_cannot_steer_or_free_itself_from_its_reaper,
    ),
    (
        "detached::dropped_connection_kills_the_tree_within_2s",
        detached::dropped_connection_kills_the_tree_within_2s,
    ),
    (
        "detached::detached_call_survives_is_listed_and_reattached",
        detached::detached_call_survives_is_listed_and_reattached,
    ),
    (
        "detached::canceller_ends_a_blocked_exec_and_its_tree",
        detached::canceller_ends_a_blocked_exec_and_its_tree,
    ),
    (
        "detached::finished_detached_calls_are_bounded",
        detached::finished_detached_calls_are_bounded,
    ),
    (
        "detached::kill_and_signal_a_detached_call",
        detached::kill_and_signal_a_detached_call,
    ),
    (
        "peer::client_inside_the_pid_namespace_is_refused",
        peer::client_inside_the_pid_namespace_is_refused,
    ),
    (
        "peer::malformed_conversations_are_closed_and_the_agent_survives",
        peer::malformed_conversations_are_closed_and_the_agent_survives,
    ),
    (
        "peer::wrong_uid_outside_is_refused",
        peer::wrong_uid_outside_is_refused,
    ),
    (
        "files::root_only_file_is_not_readable",
        files::root_only_file_is_not_readable,
    ),
    (
        "files::write_into_root_owned_0555_dir_is_refused",
        files::write_into_root_owned_0555_dir_is_refused,
    ),
    (
        "files::symlinks_to_root_and_proc_fd_are_refused_everywhere",
        files::symlinks_to_root_and_proc_fd_are_refused_everywhere,
    ),
    (
        "files::fifo_read_is_refused_without_blocking",
        files::fifo_read_is_refused_without_blocking,
    ),
    (
        "files::failed_write_leaves_no_half_written_file",
        files::failed_write_leaves_no_half_written_file,
    ),
    (
        "files::write_over_a_final_symlink_replaces_the_link",
        files::write_over_a_final_symlink_replaces_the_link,
    ),
    (
        "files::single_file_mount_can_be_read",
        files::single_file_mount_can_be_read,
    ),
    (
        "files::read_write_stat_list_mkdir_remove_rename",
        files::read_write_stat_list_mkdir_remove_rename,
    ),
];

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("serve") => clawden_agent::server::main(),
        Some("probe-connect") => peer::probe_connect(&args[2..]),
        Some("probe-exec") => detached::probe_exec(&args[2..]),
        _ => harness::run(TESTS, &args[1..]),
    }
}
