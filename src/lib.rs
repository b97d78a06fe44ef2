//! imprint: configure an immutable server once, at its first boot, then lock
//! itself out.
//!
//! The run is a one-way pipeline, one module per stage, each a function from a
//! typed input to a typed output (see `pipeline::run`):
//!
//! ```text
//! identify -> fetch -> decode -> merge -> validate -> render -> plan -> apply -> seal -> report
//! ```
//!
//! Only `identify`/`fetch` (and the "what is on disk now" half of `plan`) read
//! the system; only `apply` and `seal` change it. Every path goes through a
//! [`root::Root`], so tests, demos and image builds run against `--root DIR`.

pub mod app;
pub mod argv;
pub mod cli;
pub mod error;
pub mod model;
pub mod root;
pub mod secret;
pub mod yaml;

pub mod manifest;

pub mod apply;
pub mod blockdev;
pub mod decode;
pub mod escape;
pub mod fetch;
pub mod identify;
pub mod merge;
pub mod plan;
pub mod render;
pub mod report;
pub mod seal;
pub mod validate;

pub mod generator;
pub mod helpers;
pub mod hostkeys;
pub mod logging;
pub mod pipeline;
pub mod shim;
pub mod state;
pub mod systemd;
pub mod template;
pub mod unitfile;

pub use error::{Error, ExitCode};
