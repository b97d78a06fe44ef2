//! Units after apply (SPEC §1.8): `daemon-reload` only if a unit file or
//! drop-in changed; enable/start what the manifest asks; restart (or reload)
//! each affected unit that is already active; never block on a unit ordered
//! after imprint.
//!
//! Through the [`ServiceManager`] trait: [`Recorder`] under `--root` or
//! `--no-restart` ("would restart X"), `systemctl` on a real machine.

use crate::plan::Plan;

/// What was done (or would be) to one unit.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct UnitAction {
    pub unit: String,
    /// `daemon-reload`, `enable`, `start`, `restart`, `reload`, or
    /// `would-restart` etc. when only recorded.
    pub action: String,
    /// `done`, `queued`, `skipped (inactive)`, `recorded`, or the failure.
    pub result: String,
}

#[derive(Debug, thiserror::Error)]
#[error("unit {unit} failed to {action}: {message}")]
pub struct UnitError {
    pub unit: String,
    pub action: String,
    pub message: String,
    /// What was done before the failure (for the report).
    pub done: Vec<UnitAction>,
}

/// The operations imprint needs from the service manager.
pub trait ServiceManager {
    fn daemon_reload(&mut self) -> Result<UnitAction, UnitError>;
    fn enable_start(&mut self, unit: &str) -> Result<UnitAction, UnitError>;
    fn restart(&mut self, unit: &str) -> Result<UnitAction, UnitError>;
    fn reload(&mut self, unit: &str) -> Result<UnitAction, UnitError>;
}

/// Records what would be done; touches nothing (`--root`, `--no-restart`).
#[derive(Debug, Default)]
pub struct Recorder;

impl Recorder {
    fn record(unit: &str, action: &str) -> Result<UnitAction, UnitError> {
        Ok(UnitAction {
            unit: unit.to_string(),
            action: format!("would-{action}"),
            result: "recorded".into(),
        })
    }
}

impl ServiceManager for Recorder {
    fn daemon_reload(&mut self) -> Result<UnitAction, UnitError> {
        Recorder::record("", "daemon-reload")
    }
    fn enable_start(&mut self, unit: &str) -> Result<UnitAction, UnitError> {
        Recorder::record(unit, "enable-start")
    }
    fn restart(&mut self, unit: &str) -> Result<UnitAction, UnitError> {
        Recorder::record(unit, "restart")
    }
    fn reload(&mut self, unit: &str) -> Result<UnitAction, UnitError> {
        Recorder::record(unit, "reload")
    }
}

/// Apply the unit half of the plan.
pub fn act(mgr: &mut dyn ServiceManager, plan: &Plan) -> Result<Vec<UnitAction>, UnitError> {
    let mut done = Vec::new();
    let step = |r: Result<UnitAction, UnitError>, done: &mut Vec<UnitAction>| match r {
        Ok(a) => {
            done.push(a);
            Ok(())
        }
        Err(mut e) => {
            e.done = std::mem::take(done);
            Err(e)
        }
    };
    if plan.daemon_reload {
        step(mgr.daemon_reload(), &mut done)?;
    }
    for u in &plan.enable {
        step(mgr.enable_start(u), &mut done)?;
    }
    for u in &plan.restart {
        step(mgr.restart(u), &mut done)?;
    }
    for u in &plan.reload {
        step(mgr.reload(u), &mut done)?;
    }
    Ok(done)
}
