//! The command line (clap derive): the one flag table that drives `--help`,
//! the man page and shell completions.
