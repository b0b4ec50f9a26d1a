//! Command-line helpers shared by the workspace's clap binaries
//! (`volt-mock-server` and `volt-bench`): every flag also comes from an
//! environment variable, and CI systems often set one to the empty string
//! when its source (a secret, a matrix value) is missing, so an empty
//! variable counts as unset.

use clap::{ArgMatches, CommandFactory, FromArgMatches};

/// Drops the environment variable of every argument whose variable is set
/// but empty, so clap treats the argument as not given.
///
/// ```
/// use clap::{Arg, Command};
/// std::env::set_var("VOLT_DOC_EMPTY", "");
/// let cmd = Command::new("x").arg(Arg::new("a").long("a").env("VOLT_DOC_EMPTY"));
/// let cmd = volt_mock_server::cli::ignore_empty_env(cmd);
/// let matches = cmd.try_get_matches_from(["x"]).unwrap();
/// assert!(matches.get_one::<String>("a").is_none());
/// ```
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

/// Parses this process's command line and environment into `C` (empty
/// variables unset, see [`ignore_empty_env`]), with the raw matches for
/// asking where a value came from. On a usage error, `--help` or
/// `--version` it prints clap's message and exits (2 on errors).
///
/// ```no_run
/// use clap::Parser;
/// #[derive(Parser)]
/// struct Cli {
///     #[arg(long, env = "MY_PORT", default_value_t = 80)]
///     port: u16,
/// }
/// let (cli, _matches) = volt_mock_server::cli::parse::<Cli>();
/// println!("{}", cli.port);
/// ```
pub fn parse<C: CommandFactory + FromArgMatches>() -> (C, ArgMatches) {
    let matches = ignore_empty_env(C::command()).get_matches();
    let cli = C::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    (cli, matches)
}
