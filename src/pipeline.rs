//! The one function that chains the stages (`run`): straight-line code, one
//! `?` per stage. `fetch`/`validate`/`render`/`plan` stop early and change
//! nothing; `run` goes to the end, and always leaves a report.

use crate::apply::{self, Applied};
use crate::decode::{self, Part};
use crate::error::{Error, Sealed, Trusted};
use crate::fetch::{self, Fetched};
use crate::identify::{self, Datasource, Identified, Request};
use crate::manifest::{self, Manifest};
use crate::merge;
use crate::plan::{self, Plan};
use crate::render::{self, Rendered};
use crate::report::now_ms;
use crate::report::{Report, StageReport};
use crate::root::Root;
use crate::seal::{self, Seal};
use crate::secret::Secrets;
use crate::state;
use crate::systemd::{self, ServiceManager, UnitAction};
use crate::validate::{self, Validated};
use sha2::{Digest, Sha256};
use std::path::PathBuf;

/// Where the pipeline stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Until {
    Fetch,
    Validate,
    Render,
    Plan,
    Run,
}

/// The inputs of one invocation.
#[derive(Debug, Clone)]
pub struct Inputs {
    pub root: Root,
    pub config: Option<PathBuf>,
    pub request: Request,
    /// Record restarts instead of doing them (always so under `--root`).
    pub no_restart: bool,
    pub force: bool,
    /// Whether a labelled seed device may be read (fetch's
    /// `Options::allow_mount`): `None`, only when the root is the host
    /// (never under `--root`, which is all the command line gives). Tests
    /// set it to read an image file under a temporary root.
    pub read_devices: Option<bool>,
}

/// What the pipeline produced, as far as it went.
#[derive(Debug, Default)]
pub struct Outcome {
    pub manifest: Option<Manifest>,
    pub identified: Option<Identified>,
    pub fetched: Option<Fetched>,
    pub parts: Vec<Part>,
    pub validated: Option<Validated>,
    pub rendered: Option<Rendered>,
    pub plan: Option<Plan>,
    pub applied: Option<Applied>,
    pub units: Vec<UnitAction>,
    pub restored: Vec<String>,
    /// The instance-id read offline to compare with the seal (only on a
    /// sealed root, without `--force`).
    pub offline_instance_id: Option<String>,
    /// Apply began: files were written, or a write was attempted (and
    /// rolled back). Before that a run has changed nothing (but what
    /// `recover` rolled back: `restored`).
    pub apply_started: bool,
    pub timer: Timer,
    pub secrets: Secrets,
    /// The manifest's warnings, kept from the start (for the report of a
    /// run that fails before `manifest` is set).
    pub manifest_warnings: Vec<String>,
}

impl Outcome {
    /// Whether this run changed the disk, or tried to: apply began, or
    /// `recover` rolled back an interrupted run's writes.
    pub fn reached_apply(&self) -> bool {
        self.apply_started || !self.restored.is_empty()
    }

    /// The instance-id this run learned: fetched, else read offline.
    pub fn instance_id(&self) -> Option<&str> {
        self.fetched
            .as_ref()
            .map(|f| f.instance_id.as_str())
            .or(self.offline_instance_id.as_deref())
    }
}

/// Each stage's duration and outcome, for the log and the report.
#[derive(Debug, Default)]
pub struct Timer {
    pub stages: Vec<StageReport>,
    /// Secrets known so far, to mask error text.
    pub secrets: Secrets,
}

impl Timer {
    fn time<T, E: Into<Error>>(
        &mut self,
        stage: &str,
        f: impl FnOnce() -> Result<T, E>,
    ) -> Result<T, Error> {
        let start_ms = now_ms();
        let r = f().map_err(Into::into);
        self.record(stage, start_ms, now_ms() - start_ms, r.as_ref().err());
        r
    }

    /// A stage timed by the caller: begun at `start_ms` ([`now_ms`]),
    /// `duration_ms` long (less than the time since when it ran in parts);
    /// `error`: how it failed. (Not generic: one copy in the binary, whose
    /// size is budgeted.)
    fn record(&mut self, stage: &str, start_ms: f64, duration_ms: f64, error: Option<&Error>) {
        let outcome = match error {
            None => "ok".to_string(),
            Some(e) => self.secrets.mask(&e.to_string()),
        };
        tracing::debug!(stage, duration_ms, "stage done");
        self.stages.push(StageReport {
            stage: stage.to_string(),
            start_ms,
            duration_ms,
            outcome,
        });
    }
}

/// sha256 of bytes, lower-case hex (by table: a `format!` per byte was half
/// of this function's cost, called for every file, journal and seal).
pub fn sha256_hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(64);
    for b in Sha256::digest(bytes) {
        out.push(HEX[usize::from(b >> 4)] as char);
        out.push(HEX[usize::from(b & 0xf)] as char);
    }
    out
}

/// Run the pipeline up to `until`. `mgr` does the unit actions of `run`.
/// On error, `out` holds what was done so far (for the report).
pub fn run(
    inputs: &Inputs,
    until: Until,
    mgr: &mut dyn ServiceManager,
    out: &mut Outcome,
) -> Result<(), Error> {
    let root = &inputs.root;
    // The lock comes first: a run that does not hold it touches nothing.
    let _lock = if until == Until::Run {
        let t = now_ms();
        let lock = state::lock(root)?;
        out.timer.record("lock", t, now_ms() - t, None);
        Some(lock)
    } else {
        None
    };
    let manifest = out
        .timer
        .time("manifest", || {
            manifest::load(root, inputs.config.as_deref())
        })?
        .unwrap_or_else(Manifest::absent);
    for w in &manifest.warnings {
        tracing::warn!("manifest {}: {w}", manifest.path.display());
    }
    out.manifest_warnings = manifest.warnings.clone();
    if until == Until::Run {
        out.restored = out.timer.time("recover", || apply::recover(root))?;
    }
    let identified = out.timer.time("identify", || {
        identify::identify(root, &inputs.request, &manifest.datasource_order)
    })?;
    let sealed = if until == Until::Run && !inputs.force {
        let t = now_ms();
        let sealed = seal::read(root)?;
        out.timer.record("seal-check", t, now_ms() - t, None);
        sealed
    } else {
        None
    };
    // The state of every unit the manifest may act on is asked for now
    // (but of those the generator ordered after imprint: src/systemd.rs):
    // PID 1 is busy at boot, and its answer then takes up to a second.
    // (The report's step "ahead": the query sent.)
    if until == Until::Run && sealed.is_none() {
        let t = now_ms();
        mgr.prefetch(&units_of(&manifest));
        out.timer.record("ahead", t, now_ms() - t, None);
    }
    // Known offline: same id stops here, before any network. A local source
    // (file, NoCloud) is still read, offline, so that changed user-data can
    // be reported loudly below; if it cannot be read, the seal still wins.
    // An OpenStack config drive is such a local source too: its `uuid` is
    // compared with the seal, so that a new instance booted from a
    // snapshot of a configured one is configured.
    let mut sealed_offline = None;
    let local = identify::fetches_locally(root, &identified);
    if let Some(s) = &sealed {
        out.offline_instance_id = identify::offline_instance_id(root, &identified, &inputs.request);
        match out.offline_instance_id.clone() {
            Some(id) if id == s.instance_id && !local => {
                return Err(Error::Sealed(Sealed {
                    instance_id: id,
                    user_data_changed: false,
                    trusted: None,
                }))
            }
            Some(id) if id == s.instance_id => sealed_offline = Some(id),
            Some(_) => {}
            None if !local => {
                // Not knowable offline: trust the seal (SPEC §5), and say
                // so: a clone of an image captured without `imprint clean`
                // stops here too.
                return Err(Error::Sealed(Sealed {
                    instance_id: s.instance_id.clone(),
                    user_data_changed: false,
                    trusted: Some(Trusted {
                        datasource: identified.datasource,
                        sealed_at: s.time.clone(),
                        gone: None,
                        unreadable: None,
                    }),
                }));
            }
            None => {}
        }
    }
    // The image's own units name EnvironmentFile= paths, which default to
    // env quoting: when a file's escape depends on them (render's
    // `needs_environment_files`), they are read on a thread from here, beside
    // fetch, decode, merge and validate, so that render itself stays pure.
    let units_decide = until >= Until::Validate && render::needs_environment_files(&manifest);
    if units_decide && until < Until::Run && inputs.config.is_some() && root.is_host() {
        // `validate --config FILE` in CI, away from the image's tree: the
        // units read below are this machine's, not the image's.
        tracing::warn!(
            "the default quoting of some of the manifest's files (templates without escape: whose name does not end in .env) depends on the image's unit files (a path named by EnvironmentFile= is quoted as env), and without --root they were read from this machine's /etc/systemd/system and /usr/lib/systemd/system; pass --root with the image's tree, or set escape: on those files, for the verdict the instance will reach"
        );
    }
    let image_units = units_decide.then(|| {
        let root = root.clone();
        std::thread::Builder::new()
            .stack_size(128 << 10)
            .spawn(move || render::environment_files(&root))
    });
    let options = fetch::Options {
        timeout: manifest.datasource_timeout,
        allow_mount: inputs.read_devices,
        ..fetch::Options::default()
    };
    let fetched = out.timer.time("fetch", || {
        fetch::fetch(root, &identified, &inputs.request, &options)
    });
    // A NoCloud seed device that is there but cannot be read (a failed
    // mount, an I/O error, a damaged image), asked for by nothing but
    // detection or the kernel command line, on a sealed instance.
    let unreadable = match (&fetched, &sealed_offline, &sealed) {
        (Err(Error::Fetch(e)), None, Some(_))
            if identified.datasource == Datasource::NoCloud
                && inputs.request.datasource.is_none() =>
        {
            fetch::nocloud::unreadable_device(root, &identified, e)
        }
        // An OpenStack config drive device (not its seed directory) that
        // did not mount or whose files could not be read.
        (
            Err(Error::Fetch(
                fetch::FetchError::Mount { .. }
                | fetch::FetchError::Read { .. }
                | fetch::FetchError::Invalid { .. },
            )),
            None,
            Some(_),
        ) if identified.datasource == Datasource::OpenStack
            && !identify::config_drive_dir_present(&root.join(identify::CONFIG_DRIVE_SEED_DIR)) =>
        {
            identified.device.clone()
        }
        _ => None,
    };
    let fetched = match (fetched, sealed_offline, &sealed) {
        (Err(_), Some(id), _) => {
            return Err(Error::Sealed(Sealed {
                instance_id: id,
                user_data_changed: false,
                trusted: None,
            }))
        }
        // A sealed instance whose NoCloud seed is gone (an ISO detached
        // after the first boot): nothing says which instance this is and
        // there is no user-data to apply, so the seal stands (SPEC §5: not
        // knowable offline, trust the seal), rather than failing every boot
        // from then on with 69.
        (
            Err(Error::Fetch(fetch::FetchError::Unavailable {
                datasource: Datasource::NoCloud,
                message,
            })),
            None,
            Some(s),
        ) if inputs.request.datasource.is_none() => {
            return Err(Error::Sealed(Sealed {
                instance_id: s.instance_id.clone(),
                user_data_changed: false,
                trusted: Some(Trusted {
                    datasource: Datasource::NoCloud,
                    sealed_at: s.time.clone(),
                    gone: Some(message),
                    unreadable: None,
                }),
            }))
        }
        // The same for a seed device that is there but cannot be read: no
        // instance-id and no user-data to read either, so the seal stands
        // as it does when the seed is gone, with a warning that names the
        // device and the error (docs/lockout.md).
        // The same for a seed device that is there but cannot be read: no
        // instance-id and no user-data to read either, so the seal stands
        // as it does when the seed is gone, with a warning that names the
        // device and the error (docs/lockout.md): a NoCloud seed device, or
        // an OpenStack config drive that does not mount, whose directory or
        // file cannot be read, or whose meta_data.json does not parse. An
        // OpenStack config drive that cannot be read at all (a device under
        // --root, volume descriptors or a root directory the in-process
        // reader cannot read) lets the seal stand too, as it did when the
        // config drive was never read.
        (Err(Error::Fetch(e)), None, Some(s))
            if unreadable.is_some()
                || (identified.datasource == Datasource::OpenStack
                    && local
                    && matches!(e, fetch::FetchError::Unavailable { .. })) =>
        {
            return Err(Error::Sealed(Sealed {
                instance_id: s.instance_id.clone(),
                user_data_changed: false,
                trusted: Some(Trusted {
                    datasource: identified.datasource,
                    sealed_at: s.time.clone(),
                    gone: Some(e.to_string()),
                    unreadable: unreadable.map(|d| d.display().to_string()),
                }),
            }))
        }
        (r, _, _) => r?,
    };
    if let Some(s) = &sealed {
        if s.instance_id == fetched.instance_id {
            return Err(Error::Sealed(Sealed {
                instance_id: s.instance_id.clone(),
                user_data_changed: s.user_data_sha256 != sha256_hex(&fetched.user_data),
                trusted: None,
            }));
        }
    }
    out.identified = Some(identified);
    let parts = out.timer.time("decode", || {
        decode::decode(&fetched.user_data, &decode::Limits::default())
    });
    out.fetched = Some(fetched);
    out.parts = parts?;
    if until == Until::Fetch {
        out.manifest = Some(manifest);
        return Ok(());
    }
    let merged = out
        .timer
        .time("merge", || merge::merge(&out.parts, &manifest))?;
    let validated = out
        .timer
        .time("validate", || validate::validate(merged, &manifest))?;
    out.secrets.merge(&validated.secrets);
    out.timer.secrets.merge(&validated.secrets);
    // Said as soon as known, so a run that fails later says them too.
    // `validate` prints them with its verdict instead (stdout).
    if until > Until::Validate {
        crate::logging::user_data_warnings(&validated.warnings, &out.secrets);
    }
    // The report's step "image-units": the wait for that read (it is done
    // here, on this thread, if the thread could not be started).
    let t = now_ms();
    let env_files = match image_units {
        Some(Ok(read)) => read
            .join()
            .unwrap_or_else(|_| render::environment_files(root)),
        Some(Err(_)) => render::environment_files(root),
        None => Default::default(),
    };
    out.timer.record("image-units", t, now_ms() - t, None);
    let rendered = out.timer.time("render", || {
        render::render_with(&validated, &manifest, &env_files)
    })?;
    out.secrets.merge(&rendered.secrets);
    out.timer.secrets.merge(&rendered.secrets);
    out.validated = Some(validated);
    out.manifest = Some(manifest);
    // `validate` renders too (in memory, as `render` does): what the run
    // would reject at render time (a template's missing value, a value env
    // quoting cannot carry) is invalid user-data for this image as well.
    if until <= Until::Render {
        out.rendered = Some(rendered);
        return Ok(());
    }
    let disk = out
        .timer
        .time("read-disk", || plan::read_disk(root, &rendered))?;
    let plan = out.timer.time("plan", || plan::plan(rendered, &disk))?;
    if until == Until::Plan {
        out.plan = Some(plan);
        return Ok(());
    }
    out.apply_started = true;
    let mut applied = out
        .timer
        .time("apply", || apply::apply_pending(root, &plan))?;
    // The files are in place but not yet durable, and the journal stays:
    // `apply::finish` (through `seal::commit`) syncs them and their
    // directories in the same batch as the seal's temp file, after the unit actions, so a
    // run pays two rounds of syncs at its end instead of six. Every path
    // out of here goes through it.
    let pending = std::mem::take(&mut applied.pending);
    out.applied = Some(applied);
    let done = after_apply(root, plan, mgr, out);
    let seal = match done {
        Ok(seal) => seal,
        Err(e) => {
            // Applied, not sealed: the files are kept (exit 75 says so), so
            // they are made durable and the journal goes.
            if let Err(f) = apply::finish(root, &pending, None) {
                tracing::error!("{}", out.secrets.mask(&e.to_string()));
                return Err(f);
            }
            return Err(e);
        }
    };
    let seal = Seal {
        journal: pending.journal_id().map(String::from),
        ..seal
    };
    out.timer
        .time("seal", || seal::commit(root, &pending, &seal))?;
    Ok(())
}

/// The unit actions, then the seal to write (files written now or already
/// as rendered). Host keys are not the run's: imprint-host-keys.service
/// makes them after it, from the seal's `host_keys` (src/hostkeys.rs).
fn after_apply(
    root: &Root,
    plan: Plan,
    mgr: &mut dyn ServiceManager,
    out: &mut Outcome,
) -> Result<Seal, Error> {
    let units = out.timer.time("units", || systemd::act(mgr, &plan, &[]));
    out.plan = Some(plan);
    match units {
        Ok(u) => out.units = u,
        Err(e) => {
            if let Error::Units(u) = &e {
                out.units = u.done.clone();
            }
            return Err(e);
        }
    }
    let fetched = out.fetched.as_ref().expect("fetched above");
    Ok(Seal {
        instance_id: fetched.instance_id.clone(),
        user_data_sha256: sha256_hex(&fetched.user_data),
        time: crate::report::now_rfc3339(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        datasource: out
            .identified
            .as_ref()
            .map(|i| i.datasource.name().to_string())
            .unwrap_or_default(),
        // Every managed file, written now or already as rendered, so that
        // `verify` covers them all.
        files: seal::files_of(
            root,
            out.applied.as_ref().map(|a| &a.written[..]).unwrap_or(&[]),
            out.plan.as_ref().map(|p| &p.unchanged[..]).unwrap_or(&[]),
        ),
        units: out.units.clone(),
        journal: None,
        host_keys: Some(
            out.manifest
                .as_ref()
                .map(|m| m.ssh_host_keys.clone())
                .unwrap_or_default(),
        ),
    })
}

/// Every unit the manifest may act on (restart, reload, enable).
fn units_of(m: &Manifest) -> Vec<&str> {
    let mut out: Vec<&str> = Vec::new();
    let named = m
        .files
        .iter()
        .flat_map(|f| f.restart.iter().chain(&f.reload))
        .chain(&m.enable)
        .map(String::as_str);
    for u in named {
        if !out.contains(&u) {
            out.push(u);
        }
    }
    out
}

/// The report of a run (success or not), secrets masked.
pub fn report(out: &Outcome, result: &Result<(), Error>, started: String) -> Report {
    let code = match result {
        Ok(()) => 0,
        Err(e) => e.exit_code().code(),
    };
    Report {
        version: env!("CARGO_PKG_VERSION").to_string(),
        command: "run".into(),
        status: match result {
            Ok(()) => "done".into(),
            Err(Error::Units(_)) => "applied-unit-failed".into(),
            Err(Error::Sealed(_)) => "sealed".into(),
            Err(_) => "failed".into(),
        },
        exit_code: code,
        instance_id: out.fetched.as_ref().map(|f| f.instance_id.clone()),
        datasource: out.identified.as_ref().map(|i| i.datasource.name().into()),
        started,
        stages: out.timer.stages.clone(),
        files_written: out
            .applied
            .as_ref()
            .map(|a| a.written.iter().map(|w| w.path.clone()).collect())
            .unwrap_or_default(),
        files_unchanged: out
            .plan
            .as_ref()
            .map(|p| p.unchanged.clone())
            .unwrap_or_default(),
        units: out.units.clone(),
        warnings: out
            .manifest_warnings
            .iter()
            .cloned()
            .chain(
                out.validated
                    .as_ref()
                    .map(|v| {
                        v.warnings
                            .iter()
                            .map(|n| {
                                out.secrets
                                    .mask(&format!("part {}: {}: {}", n.part, n.what, n.hint))
                            })
                            .collect::<Vec<_>>()
                    })
                    .unwrap_or_default(),
            )
            .chain(out.applied.iter().flat_map(|a| a.warnings.clone()))
            .collect(),
        error: result
            .as_ref()
            .err()
            .map(|e| out.secrets.mask(&e.to_string())),
        main_monotonic_ms: crate::report::main_monotonic_ms(),
        report_ms: now_ms(),
        // The caller adds it (src/app.rs): building the report reads nothing.
        boot_id: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::systemd::{Recorder, UnitError};

    /// Every unit action fails: a unit that could not be restarted.
    struct Failing;
    impl ServiceManager for Failing {
        fn daemon_reload(&mut self) -> Result<UnitAction, UnitError> {
            Recorder.daemon_reload()
        }
        fn enable_start(&mut self, unit: &str) -> Result<UnitAction, UnitError> {
            self.restart(unit)
        }
        fn restart(&mut self, unit: &str) -> Result<UnitAction, UnitError> {
            Err(UnitError {
                unit: unit.into(),
                action: "restart".into(),
                message: "boom".into(),
                done: vec![],
            })
        }
        fn reload(&mut self, unit: &str) -> Result<UnitAction, UnitError> {
            self.restart(unit)
        }
    }

    fn copy(from: &std::path::Path, to: &std::path::Path) {
        std::fs::create_dir_all(to).unwrap();
        for e in std::fs::read_dir(from).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                copy(&e.path(), &to.join(e.file_name()));
            } else {
                std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
            }
        }
    }

    #[test]
    fn a_failed_unit_keeps_the_files_durably_and_drops_the_journal() {
        // Exit 75: applied, not sealed. The error path goes through
        // apply::finish without a seal, so nothing is left to roll back.
        let demo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/demo");
        let t = tempfile::tempdir().unwrap();
        copy(&demo.join("root"), t.path());
        let inputs = Inputs {
            root: Root::at(t.path()),
            config: None,
            request: Request {
                user_data: Some(identify::UserDataArg::Path(demo.join("user-data.b64"))),
                instance_id: Some("i-75".into()),
                ..Request::default()
            },
            no_restart: false,
            force: false,
            read_devices: None,
        };
        let mut out = Outcome::default();
        let e = run(&inputs, Until::Run, &mut Failing, &mut out).unwrap_err();
        assert_eq!(e.exit_code(), crate::ExitCode::TempFail, "{e}");
        let state = t.path().join(crate::root::STATE_DIR);
        assert!(!state.join("journal.json").exists(), "journal removed");
        assert!(!state.join(seal::FILE).exists(), "not sealed");
        assert!(t.path().join("etc/motd").exists(), "files kept");
        // The next boot finds nothing to roll back and nothing to write,
        // and seals.
        let mut out = Outcome::default();
        run(&inputs, Until::Run, &mut Recorder, &mut out).unwrap();
        assert!(out.restored.is_empty());
        assert!(out.applied.unwrap().written.is_empty());
        assert!(state.join(seal::FILE).exists());
    }

    #[test]
    fn sha256_hex_is_lower_case_hex() {
        assert_eq!(
            super::sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
