//! Environment-variable handling shared by the workspace's clap binaries
//! (`volt-mock-server`, and `volt-bench` through a `#[path]` include).

/// CI systems often set a variable to the empty string when its source (a
/// secret, a matrix value) is missing: an empty one counts as unset.
pub fn ignore_empty_env(cmd: clap::Command) -> clap::Command {
    cmd.mut_args(|arg| {
        let empty = arg
            .get_env()
            .is_some_and(|name| std::env::var_os(name).is_some_and(|v| v.is_empty()));
        if empty {
            arg.env(None::<&'static str>)
        } else {
            arg
        }
    })
}
