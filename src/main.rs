//! imprint's entry point: parse arguments, set up logging, call one
//! function, exit with its code. (Invoked as `imprint-generator` or
//! `cloud-init`, the binary is that tool instead: see `app::by_name`.)

use clap::Parser;

fn main() {
    if let Some(code) = imprint::app::by_name() {
        std::process::exit(code);
    }
    let cli = imprint::cli::Cli::parse();
    imprint::logging::init(cli.verbose);
    std::process::exit(imprint::app::main(cli).code());
}
