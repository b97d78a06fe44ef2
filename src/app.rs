//! Commands: turn parsed arguments into pipeline inputs, print what the
//! pipeline produced, map the result to an exit code. No stage logic here.

use crate::cli::{Cli, Command, InputArgs, RootArgs, SourceArgs};
use crate::error::{Error, ExitCode};
use crate::identify::{Request, UserDataArg};
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
    }
}

/// Run one command; print its output; return its exit code.
pub fn main(cli: Cli) -> ExitCode {
    match dispatch(cli) {
        Ok(code) => code,
        Err(f) => {
            let (e, secrets) = *f;
            let msg = secrets.mask(&e.to_string());
            match &e {
                Error::Sealed(_) => {
                    tracing::info!(message_id = crate::logging::MSG_ALREADY_SEALED, "{msg}")
                }
                _ => tracing::error!(message_id = crate::logging::MSG_FAILED, "{msg}"),
            }
            e.exit_code()
        }
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
            let (mut recorder, mut systemctl);
            let mgr: &mut dyn ServiceManager = if a.input.root.root.is_some() || a.no_restart {
                recorder = Recorder;
                &mut recorder
            } else {
                systemctl = Systemctl::new();
                &mut systemctl
            };
            let r = pipeline::run(&inputs, Until::Run, mgr, &mut out);
            if !matches!(r, Err(Error::Sealed(_))) {
                let report = pipeline::report(&out, &r, started);
                if let Err(e) = crate::report::write(&inputs.root, &report) {
                    tracing::warn!("failed to write the report: {e}");
                }
                crate::logging::run_report(&report);
                for u in &out.units {
                    let _ = writeln!(so, "{} {}: {}", u.action, u.unit, u.result);
                }
            }
            r.map(|()| ExitCode::Ok)
                .map_err(|e| Box::new((e, out.secrets)))
        }
        Command::Plan(a) => stop_at(&inputs_of(&a, true, true), Until::Plan, &mut so),
        Command::Render(a) => stop_at(&inputs_of(&a, true, true), Until::Render, &mut so),
        Command::Validate(a) => stop_at(&inputs_of(&a, true, true), Until::Validate, &mut so),
        Command::Fetch(a) => stop_at(&inputs_of(&a, true, true), Until::Fetch, &mut so),
        Command::Generator(a) => match crate::generator::main(&root_of(&a.root), Some(&a.normal)) {
            0 => Ok(ExitCode::Ok),
            _ => Ok(ExitCode::Usage),
        },
        Command::Identify(_) | Command::Status(_) | Command::Verify(_) | Command::Clean(_) => {
            Err(fail(Error::Usage("not implemented yet".into())))
        }
    }
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
            .map(|r| {
                r.files
                    .iter()
                    .map(|f| {
                        format!(
                            "==> {} ({}) <==\n{}\n",
                            f.path,
                            f.mode,
                            out.secrets.mask(&String::from_utf8_lossy(&f.content))
                        )
                    })
                    .collect()
            })
            .unwrap_or_default(),
        Until::Validate => "user-data is valid\n".to_string(),
        Until::Fetch => out
            .parts
            .iter()
            .map(|p| {
                format!(
                    "--- part {} ({}, {}) ---\n{}\n",
                    p.number,
                    p.kind,
                    p.content_type,
                    out.secrets.mask(&String::from_utf8_lossy(&p.body))
                )
            })
            .collect(),
        Until::Run => String::new(),
    };
    let _ = so.write_all(text.as_bytes());
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
