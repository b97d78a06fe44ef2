//! Commands: turn parsed arguments into pipeline inputs, print what the
//! pipeline produced, map the result to an exit code. No stage logic here.

use crate::cli::{Cli, Command, InputArgs, RootArgs, SourceArgs};
use crate::error::{Error, ExitCode};
use crate::identify::{Request, UserDataArg};
use crate::manifest::Manifest;
use crate::pipeline::{self, Inputs, Outcome, Until};
use crate::root::Root;
use crate::systemd::{Recorder, ServiceManager, Systemctl};
use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};

fn root_of(a: &RootArgs) -> Root {
    match &a.root {
        Some(d) => Root::at(d),
        None => Root::host(),
    }
}

fn request_of(s: &SourceArgs) -> Request {
    Request {
        datasource: s.datasource.clone(),
        user_data: s.user_data.as_deref().map(|u| {
            if u == "-" {
                UserDataArg::Stdin
            } else {
                UserDataArg::Path(u.into())
            }
        }),
        instance_id: s.instance_id.clone(),
        metadata_url: s.metadata_url.clone(),
    }
}

fn inputs_of(a: &InputArgs, no_restart: bool, force: bool) -> Inputs {
    Inputs {
        root: root_of(&a.root),
        config: a.config.clone(),
        request: request_of(&a.source),
        no_restart,
        force,
        read_devices: None,
    }
}

/// Run one command; print its output; return its exit code.
pub fn main(cli: Cli) -> ExitCode {
    match dispatch(cli) {
        Ok(code) => code,
        Err(f) => {
            let (e, secrets) = *f;
            log_failure(&e, &secrets);
            e.exit_code()
        }
    }
}

/// Log why a command failed, secrets masked.
fn log_failure(e: &Error, secrets: &crate::secret::Secrets) {
    let msg = secrets.mask(&e.to_string());
    match e {
        // Loud: the operator expected new user-data to take effect.
        // Loud too: a seed device that is there but unreadable is broken.
        Error::Sealed(s)
            if s.user_data_changed
                || s.trusted.as_ref().is_some_and(|t| t.unreadable.is_some()) =>
        {
            tracing::warn!(message_id = crate::logging::MSG_ALREADY_SEALED, "{msg}")
        }
        Error::Sealed(_) => {
            tracing::info!(message_id = crate::logging::MSG_ALREADY_SEALED, "{msg}")
        }
        _ => tracing::error!(message_id = crate::logging::MSG_FAILED, "{msg}"),
    }
}

type Failure = Box<(Error, crate::secret::Secrets)>;

fn fail(e: Error) -> Failure {
    Box::new((e, crate::secret::Secrets::new()))
}

fn dispatch(cli: Cli) -> Result<ExitCode, Failure> {
    let stdout = std::io::stdout();
    let mut so = stdout.lock();
    match cli.command {
        Command::Run(a) => {
            let inputs = inputs_of(&a.input, a.no_restart, a.force);
            let started = crate::report::now_rfc3339();
            let mut out = Outcome::default();
            // Under --root or --no-restart unit actions are only recorded.
            let mut mgr = manager(a.input.root.root.is_some() || a.no_restart);
            let r = pipeline::run(&inputs, Until::Run, mgr.as_mut(), &mut out);
            // Sealed: report.json keeps describing the run that configured
            // the instance. Locked: the report belongs to the run holding it.
            let locked = matches!(
                r,
                Err(Error::State(crate::state::StateError::Locked { .. }))
            );
            let record = !matches!(r, Err(Error::Sealed(_))) && !locked;
            let report = record.then(|| {
                let mut report = pipeline::report(&out, &r, started);
                report.boot_id = crate::report::boot_id(&inputs.root);
                crate::report::mask_report(&report, &out.secrets).0
            });
            // A failure on a sealed root that changed nothing is logged as
            // any other, but report.json stays that of the run that
            // configured the instance (docs/state.md).
            let kept = match &r {
                Err(_) if report.is_some() && !out.reached_apply() => seal_stands(&inputs, &out),
                _ => None,
            };
            if let Some(report) = &report {
                if kept.is_none() {
                    if let Err(e) = crate::report::write_checked(&inputs.root, report, &out.secrets)
                    {
                        tracing::warn!("failed to write the report: {e}");
                    }
                }
                crate::logging::run_report(report);
                // Under imprint.service stdout is the journal, which already
                // has one entry per unit action.
                if !crate::logging::stdout_is_journal() {
                    for u in &out.units {
                        let _ = writeln!(so, "{} {}: {}", u.action, u.unit, u.result);
                    }
                }
            }
            // The error first, then the one summary line that ends a run.
            let code = match &r {
                Ok(()) => ExitCode::Ok,
                Err(e) => {
                    log_failure(e, &out.secrets);
                    e.exit_code()
                }
            };
            if let Some(id) = &kept {
                tracing::info!(
                    "{} not replaced: instance {id} is sealed and this run failed before changing anything (`imprint status` shows the last run recorded)",
                    crate::state::dir(&inputs.root)
                        .join(crate::report::FILE)
                        .display()
                );
            }
            if let Some(report) = &report {
                crate::report::log_summary(report);
            }
            Ok(code)
        }
        Command::Plan(a) => stop_at(&inputs_of(&a, true, true), Until::Plan, &mut so),
        Command::Render(a) => stop_at(&inputs_of(&a, true, true), Until::Render, &mut so),
        Command::Validate(a) => stop_at(&inputs_of(&a, true, true), Until::Validate, &mut so),
        Command::Fetch(a) if a.json => fetch_json(&inputs_of(&a.input, true, true), &mut so),
        Command::Fetch(a) => stop_at(&inputs_of(&a.input, true, true), Until::Fetch, &mut so),
        Command::Status(a) => {
            let root = root_of(&a.root);
            let st = crate::report::status(&root, a.wait).map_err(|e| fail(e.into()))?;
            let text = if a.json { json_line(&st) } else { st.human() };
            let _ = so.write_all(text.as_bytes());
            Ok(st.exit_code())
        }
        Command::Verify(a) => {
            let root = root_of(&a.root);
            let v = crate::seal::verify(&root).map_err(|e| fail(e.into()))?;
            let text = if a.json {
                json_line(&v)
            } else {
                v.human(&root)
            };
            let _ = so.write_all(text.as_bytes());
            if !v.sealed {
                Ok(ExitCode::Drift)
            } else if v.drift.is_empty() {
                Ok(ExitCode::Ok)
            } else {
                Err(fail(Error::Drift(v.drift.len())))
            }
        }
        Command::Clean(a) => {
            let root = root_of(&a.root);
            for line in crate::state::clean(&root, a.machine_id, a.host_keys).map_err(fail)? {
                let _ = writeln!(so, "{line}");
            }
            Ok(ExitCode::Ok)
        }
        Command::HostKeys(a) => {
            let root = root_of(&a.root);
            host_keys(&root, a.root.root.is_some(), &mut so).map_err(fail)
        }
        Command::Identify(a) => {
            let root = root_of(&a.root);
            crate::identify::command(
                &root,
                a.config.as_deref(),
                &request_of(&a.source),
                a.explain,
                &mut so,
            )
            .map(|()| ExitCode::Ok)
            .map_err(fail)
        }
        Command::Generator(a) => match crate::generator::main(&root_of(&a.root), Some(&a.normal)) {
            0 => Ok(ExitCode::Ok),
            _ => Ok(ExitCode::Usage),
        },
    }
}

/// The sealed instance-id, when the root has a seal that a failed run
/// leaves standing: the run did not learn that it is another instance's
/// (a clone's failed first boot is recorded, as on an unsealed root).
fn seal_stands(inputs: &Inputs, out: &Outcome) -> Option<String> {
    let seal = crate::seal::read(&inputs.root).ok().flatten()?;
    let id = out.instance_id().or(inputs.request.instance_id.as_deref());
    match id {
        Some(id) if id != seal.instance_id => None,
        _ => Some(seal.instance_id),
    }
}

fn json_line(v: &impl serde::Serialize) -> String {
    let mut s = serde_json::to_string_pretty(v).unwrap_or_default();
    s.push('\n');
    s
}

fn stop_at(inputs: &Inputs, until: Until, so: &mut dyn Write) -> Result<ExitCode, Failure> {
    let mut out = Outcome::default();
    let r = pipeline::run(inputs, until, &mut Recorder, &mut out);
    if let Err(e) = r {
        return Err(Box::new((e, out.secrets)));
    }
    let text = match until {
        Until::Plan => out.plan.as_ref().map(|p| p.display()).unwrap_or_default(),
        Until::Render => out
            .rendered
            .as_ref()
            .map(|r| crate::render::display(r, &out.secrets))
            .unwrap_or_default(),
        Until::Validate => out
            .validated
            .as_ref()
            .map(|v| validated_text(v, out.parts.len(), out.rendered.as_ref(), &out.secrets))
            .unwrap_or_default(),
        Until::Fetch => {
            let manifest = out.manifest.clone().unwrap_or_else(Manifest::absent);
            let masks = crate::validate::part_masks(&out.parts, &manifest);
            out.parts
                .iter()
                .map(|p| {
                    let filename = p
                        .filename
                        .as_deref()
                        .map(|f| format!(", filename {f}"))
                        .unwrap_or_default();
                    let body = match std::str::from_utf8(&p.body) {
                        Ok(t) => masks.body(p, t),
                        Err(_) => format!("<{} bytes of binary data>", p.body.len()),
                    };
                    let nl = if body.ends_with('\n') || body.is_empty() {
                        ""
                    } else {
                        "\n"
                    };
                    format!(
                        "--- part {} ({}, {}{filename}) ---\n{body}{nl}",
                        p.number, p.kind, p.content_type
                    )
                })
                .collect()
        }
        Until::Run => String::new(),
    };
    let _ = so.write_all(text.as_bytes());
    Ok(ExitCode::Ok)
}

/// `validate`'s output: a one-line verdict, then each warning.
fn validated_text(
    v: &crate::validate::Validated,
    parts: usize,
    rendered: Option<&crate::render::Rendered>,
    secrets: &crate::secret::Secrets,
) -> String {
    let mut leaves = Vec::new();
    crate::merge::leaf_keys(&v.values, "", &mut leaves);
    let files = rendered.map_or(0, |r| r.files.len());
    let mut s = format!(
        "user-data is valid: {parts} part(s), {} value(s), {} write_files entr{}; {files} file(s) rendered\n",
        leaves.len(),
        v.write_files.len(),
        if v.write_files.len() == 1 { "y" } else { "ies" }
    );
    for n in &v.warnings {
        s.push_str(&secrets.mask(&format!(
            "warning: part {}: {}: {}\n",
            n.part, n.what, n.hint
        )));
    }
    s
}

/// `imprint fetch --json` (hidden): the parts and their parsed documents,
/// secrets masked, for tests (the cloud-init differential test) and
/// debugging.
fn fetch_json(inputs: &Inputs, so: &mut dyn Write) -> Result<ExitCode, Failure> {
    let mut out = Outcome::default();
    let r = pipeline::run(inputs, Until::Fetch, &mut Recorder, &mut out);
    if let Err(e) = r {
        return Err(Box::new((e, out.secrets)));
    }
    let manifest = out.manifest.clone().unwrap_or_else(Manifest::absent);
    let masks = crate::validate::part_masks(&out.parts, &manifest);
    let secrets = &masks.secrets;
    let parts: Vec<serde_json::Value> = out
        .parts
        .iter()
        .map(|p| {
            let (document, error) = match crate::merge::part_document(p) {
                Ok(Some(mut d)) => {
                    masks.document(p, &mut d);
                    (d, serde_json::Value::Null)
                }
                Ok(None) => (serde_json::Value::Null, serde_json::Value::Null),
                Err(e) => (serde_json::Value::Null, secrets.mask(&e.message).into()),
            };
            serde_json::json!({
                "number": p.number,
                "kind": p.kind,
                "content_type": p.content_type,
                "filename": p.filename,
                "size": p.body.len(),
                "body": std::str::from_utf8(&p.body)
                    .ok()
                    .map(|t| masks.body(p, t)),
                "document": document,
                "error": error,
            })
        })
        .collect();
    let text =
        serde_json::to_string_pretty(&serde_json::json!({ "parts": parts })).unwrap_or_default();
    let _ = writeln!(so, "{text}");
    Ok(ExitCode::Ok)
}

/// The binary answers to other names (argv[0]'s file name):
/// `imprint-generator` (the systemd generator link) and `cloud-init` (the
/// status shim). Returns the exit code, or `None` for imprint's own CLI.
/// Both accept a leading `--root DIR` (tests, image builds).
pub fn by_name() -> Option<i32> {
    let mut args = std::env::args_os();
    let argv0 = args.next()?;
    let name = Path::new(&argv0).file_name()?.to_str()?.to_string();
    if name != "imprint-generator" && name != "cloud-init" {
        return None;
    }
    let mut rest: Vec<OsString> = args.collect();
    let root = if rest.first().is_some_and(|a| a == "--root") && rest.len() >= 2 {
        let dir = PathBuf::from(rest.remove(1));
        rest.remove(0);
        Root::at(dir)
    } else {
        Root::host()
    };
    Some(if name == "imprint-generator" {
        crate::generator::main(&root, rest.first().map(Path::new))
    } else {
        let args: Vec<String> = rest
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        crate::shim::main(&root, &args)
    })
}

/// The service manager for a command's unit actions: PID 1, or (`recorded`:
/// under `--root` or `--no-restart`) a recorder that only notes them.
fn manager(recorded: bool) -> Box<dyn ServiceManager> {
    if recorded {
        Box::new(Recorder)
    } else {
        Box::new(Systemctl::new())
    }
}

/// `imprint host-keys`: the keys the seal calls for, then a restart of the
/// ssh unit if it is running (never under `--root`: only recorded).
fn host_keys(root: &Root, under_root: bool, so: &mut dyn Write) -> Result<ExitCode, Error> {
    use crate::hostkeys::Due;
    let done = crate::hostkeys::for_instance(root)?;
    let say = match &done.due {
        Due::NotConfigured => {
            "not configured yet (no seal): host keys left as they are".to_string()
        }
        Due::MadeByRun { instance_id } => format!(
            "host keys of {instance_id} were made by the run that sealed it (an older imprint): nothing to do"
        ),
        Due::Done { instance_id } => {
            format!("host keys were made for this instance ({instance_id}): nothing to do")
        }
        Due::Make {
            instance_id, types, ..
        } if types.is_empty() => {
            format!("no ssh_host_keys for {instance_id}: /etc/ssh left alone")
        }
        Due::Make {
            instance_id,
            configured: false,
            ..
        } => format!(
            "host keys made for {}, which this boot's run did not configure: the image's keys are not this instance's either way",
            if instance_id.is_empty() {
                "this instance (its run never learned the instance-id)".to_string()
            } else {
                instance_id.clone()
            }
        ),
        Due::Make { instance_id, .. } => format!("host keys made for {instance_id}"),
    };
    tracing::info!("{say}");
    if !crate::logging::stdout_is_journal() {
        let _ = writeln!(so, "{say}");
        for (t, path, fp) in &done.keys.generated {
            let _ = writeln!(so, "generated {t} {path} {fp}");
        }
        for path in &done.keys.removed {
            let _ = writeln!(so, "removed {path}");
        }
    }
    if !done.keys.restart.is_empty() {
        let acted = crate::systemd::act(
            manager(under_root).as_mut(),
            &crate::plan::Plan::default(),
            &done.keys.restart,
        )?;
        if !crate::logging::stdout_is_journal() {
            for u in &acted {
                let _ = writeln!(so, "{} {}: {}", u.action, u.unit, u.result);
            }
        }
    }
    Ok(ExitCode::Ok)
}
