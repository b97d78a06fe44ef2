//! imprint's entry point: parse arguments, set up logging, call one
//! function, exit with its code. (Invoked as `imprint-generator` or
//! `cloud-init`, the binary is that tool instead: see `app::by_name`.)

use clap::Parser;

// dlmalloc instead of the C library's malloc: musl's (the shipped static
// binary's) maps and unmaps pages on nearly every size-class change, ~110
// mmap/munmap pairs on the demo and twice glibc's time on 1000 files;
// dlmalloc keeps freed memory for reuse within the run (docs/benchmarks.md,
// "Third round").
#[global_allocator]
static ALLOC: dlmalloc::GlobalDlmalloc = dlmalloc::GlobalDlmalloc;

fn main() {
    imprint::report::start_clock();
    if let Some(code) = imprint::app::by_name() {
        std::process::exit(code);
    }
    // `imprint run` (the unit's command) without clap: its parser is the
    // costliest code a boot runs before the first stage (src/argv.rs).
    let parsed = imprint::argv::run().map_or_else(imprint::cli::Cli::try_parse, Ok);
    let cli = match parsed {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            // --help and --version go to stdout and succeed; every usage
            // error is sysexits' 64, not clap's default 2 (SPEC §2).
            std::process::exit(if e.use_stderr() {
                imprint::ExitCode::Usage.code()
            } else {
                0
            });
        }
    };
    imprint::logging::init(cli.verbose);
    std::process::exit(imprint::app::main(cli).code());
}
