//! The imscan binary: parse flags, call the library, map the outcome to an
//! exit code. All the work is in the library.
#![forbid(unsafe_code)]

use clap::Parser;

fn main() {
    let cli = imscan::cli::Cli::parse();
    let code = imscan::run::main(cli);
    std::process::exit(code.code());
}
