//! Errors and exit codes.
//!
//! Each stage has its own error type that says what, where and why; this
//! module gathers them into one [`Error`] whose root cause decides the exit
//! code (sysexits, SPEC §2). Exit codes are a tested contract.

use std::fmt;

/// Process exit codes (sysexits.h), SPEC §2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitCode {
    /// 0: done.
    Ok = 0,
    /// 1: `verify` found drift; `status` says the last run failed.
    Drift = 1,
    /// 64: bad command line.
    Usage = 64,
    /// 65: invalid user-data, manifest or template; nothing written.
    DataErr = 65,
    /// 69: datasource unavailable or unidentified; nothing written.
    Unavailable = 69,
    /// 70: an internal error (a bug).
    Software = 70,
    /// 73: a file could not be written; everything rolled back.
    CantCreate = 73,
    /// 75: files applied but a unit failed, or another run holds the lock.
    TempFail = 75,
    /// 77: already sealed; nothing done.
    Sealed = 77,
}

impl ExitCode {
    pub fn code(self) -> i32 {
        self as i32
    }
}

/// The one error type the pipeline returns; each variant wraps a stage's error.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Manifest(#[from] crate::manifest::ManifestError),
    #[error(transparent)]
    Identify(#[from] crate::identify::IdentifyError),
    #[error(transparent)]
    Fetch(#[from] crate::fetch::FetchError),
    #[error(transparent)]
    Decode(#[from] crate::decode::DecodeError),
    #[error(transparent)]
    Merge(#[from] crate::merge::MergeError),
    #[error(transparent)]
    Validate(#[from] crate::validate::ValidateError),
    #[error(transparent)]
    Render(#[from] crate::render::RenderError),
    #[error(transparent)]
    Plan(#[from] crate::plan::PlanError),
    #[error(transparent)]
    Apply(#[from] crate::apply::ApplyError),
    #[error(transparent)]
    Units(#[from] crate::systemd::UnitError),
    #[error(transparent)]
    HostKeys(#[from] crate::hostkeys::HostKeyError),
    #[error(transparent)]
    State(#[from] crate::state::StateError),
    /// The instance is sealed: nothing to do (exit 77).
    #[error("{0}")]
    Sealed(Sealed),
    /// `verify` found drift (exit 1); the report has already been printed.
    #[error("drift found in {0} file(s)")]
    Drift(usize),
}

/// Why a run stopped at the seal.
#[derive(Debug)]
pub struct Sealed {
    pub instance_id: String,
    /// Set when the user-data differs from what was sealed.
    pub user_data_changed: bool,
    /// Set when this machine's instance-id could not be read offline and
    /// the seal was trusted without comparing (SPEC §5): a clone of an
    /// image captured without `imprint clean` lands here too.
    pub trusted: Option<Trusted>,
}

/// A seal trusted because the instance-id is not knowable offline.
#[derive(Debug)]
pub struct Trusted {
    /// The identified datasource, whose instance-id has no offline source
    /// here (GCE, the OpenStack metadata service, EC2 without Nitro's DMI
    /// id, ...).
    pub datasource: crate::identify::Datasource,
    /// When the seal was written (RFC 3339), as it says.
    pub sealed_at: String,
    /// Why the instance-id could not be read: `None` when the platform has
    /// no offline source of it; else what is missing (a NoCloud seed that
    /// was there at the first boot and is not now, an OpenStack config
    /// drive that could not be read).
    pub gone: Option<String>,
    /// A NoCloud seed device that is there but could not be read (a failed
    /// mount, an I/O error, a damaged image); `gone` then says why. Logged
    /// as a warning: the seed is broken, not merely detached.
    pub unreadable: Option<String>,
}

impl fmt::Display for Sealed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(Trusted {
            gone: Some(gone),
            sealed_at,
            datasource: crate::identify::Datasource::OpenStack,
            ..
        }) = &self.trusted
        {
            return write!(
                f,
                "sealed for instance {id} (configured {sealed_at}); the seal stands: the config \
                 drive could not be read ({gone}), so imprint could not compare this machine's \
                 instance-id with the seal, and did nothing. If this machine is a new instance \
                 (booted from a snapshot of instance {id}), run `imprint run --force` on it now",
                id = self.instance_id,
            );
        }
        if let Some(Trusted {
            gone: Some(gone),
            sealed_at,
            unreadable: Some(device),
            ..
        }) = &self.trusted
        {
            return write!(
                f,
                "sealed for instance {id} (configured {sealed_at}); the seal stands: the NoCloud \
                 seed device {device} is there but could not be read ({gone}), so imprint could \
                 not compare this machine's instance-id with the seal, and did nothing. Check \
                 the device (`imprint fetch` reads it again and says what is wrong; a damaged \
                 seed image is made again, with cloud-localds or genisoimage, not repaired); if \
                 this machine is a new instance, give it a readable seed and run \
                 `imprint run --force` (or `imprint run --force --user-data FILE`)",
                id = self.instance_id,
            );
        }
        if let Some(Trusted {
            gone: Some(gone),
            sealed_at,
            ..
        }) = &self.trusted
        {
            return write!(
                f,
                "sealed for instance {id} (configured {sealed_at}); the seal stands: {gone}, so \
                 this boot has no user-data to compare or apply (as when a seed is detached \
                 after the first boot) and imprint did nothing. To configure this machine again, attach \
                 a seed with a new instance-id, or run `imprint run --force --user-data FILE`",
                id = self.instance_id,
            );
        }
        if let Some(t) = &self.trusted {
            return write!(
                f,
                "sealed for instance {id} (configured {at}); the seal was trusted, not checked: \
                 the instance-id of this {ds} machine cannot be read offline, so imprint did not \
                 fetch it to compare, and did nothing. If this machine is a clone of an image \
                 captured from instance {id} without `imprint clean`, it has not been configured: \
                 run `imprint run --force` on it now, and `imprint clean` before capturing an \
                 image (docs/lockout.md)",
                id = self.instance_id,
                at = t.sealed_at,
                ds = t.datasource,
            );
        }
        if self.user_data_changed {
            write!(
                f,
                "user-data changed since instance {} was configured; not re-applied \
                 (an immutable server is replaced, not reconfigured; use --force to override)",
                self.instance_id
            )
        } else {
            write!(
                f,
                "instance {} is already configured (sealed); nothing to do (use --force to override)",
                self.instance_id
            )
        }
    }
}

impl Error {
    /// The exit code of this error, from its root cause (SPEC §2).
    pub fn exit_code(&self) -> ExitCode {
        match self {
            Error::Usage(_) => ExitCode::Usage,
            Error::Manifest(_)
            | Error::Decode(_)
            | Error::Merge(_)
            | Error::Validate(_)
            | Error::Render(_) => ExitCode::DataErr,
            Error::Plan(e) => e.exit_code(),
            // Oversized user-data is invalid user-data (65), not an
            // unavailable datasource: retrying will not help.
            Error::Fetch(
                crate::fetch::FetchError::TooLarge { .. }
                | crate::fetch::FetchError::UserData { .. },
            ) => ExitCode::DataErr,
            // A mistake in imprint's own flags is usage (64); a datasource
            // that nothing names or that does not answer is 69.
            Error::Identify(e) => e.exit_code(),
            Error::Fetch(_) => ExitCode::Unavailable,
            Error::Apply(_) => ExitCode::CantCreate,
            Error::Units(_) => ExitCode::TempFail,
            Error::HostKeys(e) => e.exit_code(),
            Error::State(e) => e.exit_code(),
            Error::Sealed(_) => ExitCode::Sealed,
            Error::Drift(_) => ExitCode::Drift,
        }
    }
}
