//! imprint's entry point: parse arguments, set up logging, call one
//! function, exit with its code.

use clap::Parser;

fn main() {
    let cli = imprint::cli::Cli::parse();
    imprint::logging::init(cli.verbose);
    std::process::exit(imprint::app::main(cli).code());
}
