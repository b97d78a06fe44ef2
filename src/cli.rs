//! The command line (SPEC §2), parsed into raw arguments. `app` turns them
//! into pipeline inputs.

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "imprint",
    version,
    about = "Configure an immutable server once, at first boot, then lock out",
    long_about = "imprint reads the instance's user-data, renders the files the image's \
manifest declares, restarts the units that depend on them, and seals the \
instance so later boots do nothing.",
    max_term_width = 80
)]
pub struct Cli {
    /// Log debug details
    #[arg(short, long, global = true)]
    pub verbose: bool,
    #[command(subcommand)]
    pub command: Command,
}

// `defer`: each subcommand's arguments are built only when that subcommand
// is parsed (or its help shown), not for every run: building all ten was 8%
// of a demo run's instructions (docs/benchmarks.md). Names, about texts and
// `hide` stay eager, so the top-level help and suggestions are unchanged.
#[derive(Debug, Subcommand)]
#[command(defer = true)]
pub enum Command {
    /// Configure this instance: fetch, render, write, restart, seal
    Run(RunArgs),
    /// Print the plan and a diff of every change; change nothing
    Plan(InputArgs),
    /// Print every rendered file; change nothing
    Render(InputArgs),
    /// Check user-data against the manifest; change nothing
    Validate(InputArgs),
    /// Print the decoded user-data parts, secrets masked
    Fetch(FetchArgs),
    /// Say which datasource applies, and why
    Identify(IdentifyArgs),
    /// Show the last run and the seal
    Status(StatusArgs),
    /// Compare files on disk with what was sealed (exit 1 on drift)
    Verify(VerifyArgs),
    /// Forget the seal, for baking an image (Packer's last step)
    Clean(CleanArgs),
    /// Make this instance's own SSH host keys, once (after run)
    ///
    /// The seal says which types this instance is to have (the manifest's
    /// ssh_host_keys); /var/lib/imprint/host-keys says whether they were made
    /// for it. Keys made for another instance, or baked into the image, are
    /// replaced; this instance's own keys are kept, and only missing types
    /// made. imprint-host-keys.service runs this at boot, after
    /// imprint.service and before sshd.
    HostKeys(HostKeysArgs),
    /// The systemd generator entry point
    #[command(hide = true)]
    Generator(GeneratorArgs),
}

// Where things are.
#[derive(Debug, Clone, Args)]
pub struct RootArgs {
    /// Treat DIR as the root for every path (tests, demos, image builds);
    /// units are then never restarted, only recorded
    #[arg(long, value_name = "DIR")]
    pub root: Option<PathBuf>,
}

// The inputs shared by run, plan, render, validate and fetch.
#[derive(Debug, Clone, Args)]
pub struct InputArgs {
    #[command(flatten)]
    pub root: RootArgs,
    /// The manifest (default: /etc/imprint/imprint.yaml under the root)
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub source: SourceArgs,
}

// Datasource inputs.
#[derive(Debug, Clone, Args)]
pub struct SourceArgs {
    /// Use this datasource (file, nocloud, ec2, gce, digitalocean, azure,
    /// openstack)
    #[arg(long, value_name = "NAME")]
    pub datasource: Option<String>,
    /// Read user-data from FILE, or standard input with -
    #[arg(long, value_name = "FILE|-")]
    pub user_data: Option<String>,
    /// The instance-id for --user-data (default: a hash of the user-data)
    #[arg(long, value_name = "ID")]
    pub instance_id: Option<String>,
    /// Base URL of the metadata service (tests point it at 127.0.0.1)
    #[arg(long, value_name = "URL", env = "IMPRINT_METADATA_URL")]
    pub metadata_url: Option<String>,
}

#[derive(Debug, Clone, Args)]
pub struct FetchArgs {
    #[command(flatten)]
    pub input: InputArgs,
    /// Print the parts and their parsed documents as JSON (for tests and
    /// debugging; the shape may change)
    #[arg(long, hide = true)]
    pub json: bool,
}

#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub input: InputArgs,
    /// Record restarts instead of doing them
    #[arg(long)]
    pub no_restart: bool,
    /// Run even if this instance is sealed
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Clone, Args)]
pub struct IdentifyArgs {
    #[command(flatten)]
    pub root: RootArgs,
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub source: SourceArgs,
    /// Print each detection rule, its evidence and the verdict
    #[arg(long)]
    pub explain: bool,
}

#[derive(Debug, Clone, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub root: RootArgs,
    /// Wait until no run is in progress
    #[arg(long)]
    pub wait: bool,
    /// Print JSON
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    pub root: RootArgs,
    /// Print JSON
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Args)]
pub struct CleanArgs {
    #[command(flatten)]
    pub root: RootArgs,
    /// Also empty /etc/machine-id, so clones get their own
    #[arg(long)]
    pub machine_id: bool,
    /// Also remove /etc/ssh/ssh_host_*key* (refused unless the manifest
    /// lists ssh_host_keys), so clones never share the build's keys
    #[arg(long)]
    pub host_keys: bool,
}

#[derive(Debug, Clone, Args)]
pub struct HostKeysArgs {
    #[command(flatten)]
    pub root: RootArgs,
}

#[derive(Debug, Clone, Args)]
pub struct GeneratorArgs {
    #[command(flatten)]
    pub root: RootArgs,
    /// systemd's normal generator directory
    pub normal: PathBuf,
    /// systemd's early generator directory
    pub early: Option<PathBuf>,
    /// systemd's late generator directory
    pub late: Option<PathBuf>,
}
