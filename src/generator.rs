//! The systemd generator (SPEC §5): reads the manifest at boot and orders
//! every unit it names `After=imprint.service`, without ever creating an
//! ordering cycle. Invoked as `imprint generator NORMAL EARLY LATE` or
//! through a link named `imprint-generator` in
//! `/usr/lib/systemd/system-generators/`.
//!
//! Why: on a first boot the units imprint configures should start once, with
//! their final config, instead of starting with the image's defaults and
//! being restarted. systemd runs generators before it loads units, on every
//! boot and every `daemon-reload`, so the ordering is in place before any
//! job is queued.
//!
//! What it writes, into the `NORMAL` directory (a tmpfs systemd empties
//! before each run):
//! - `UNIT.d/50-imprint.conf` with `[Unit] After=imprint.service` for every
//!   unit the manifest names (`restart:`, `reload:`, `units.enable`, and the
//!   ssh unit when `ssh_host_keys` is set), except units imprint itself runs
//!   after: those imprint.service is ordered after, directly or through any
//!   chain of `After=`/`Before=` in the unit files on disk (drop-ins and
//!   aliases followed, the implicit `After=sysinit.target` of default
//!   dependencies included). Adding `After=` to one of those would be an
//!   ordering cycle, which systemd breaks by dropping a job at random.
//!   Mount, swap, device, slice and scope units never get one (their
//!   ordering is mostly implicit).
//! - `imprint.service.d/50-imprint-network.conf` with
//!   `Wants=`/`After=network-online.target` when the datasource is a network
//!   one: named on the kernel command line (`imprint.datasource=`, `ds=`), or
//!   else anywhere in the manifest's `datasource.order`. If that ordering
//!   itself would close a cycle (a unit before `network-online.target` that
//!   keeps default dependencies, as in cloud-init #7052), only `Wants=` is
//!   written and the cycle is reported.
//!
//! A generator runs before logging exists and must never fail the boot:
//! problems go to `/dev/kmsg` (stderr under `--root`), and the exit code is
//! always 0. With no manifest and nothing on the command line it reads two
//! paths and writes nothing. The manifest is read leniently (only the keys
//! above), so a manifest that `imprint run` would reject for another reason
//! still orders its units.

use crate::identify::{self, Datasource};
use crate::manifest::is_unit_name;
use crate::root::{self, Root};
use crate::systemd::IMPRINT_UNIT;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::io::Write;
use std::path::{Path, PathBuf};

/// The drop-in file name written for each ordered unit.
pub const DROPIN: &str = "50-imprint.conf";
/// The drop-in file name written for imprint.service itself.
pub const NETWORK_DROPIN: &str = "50-imprint-network.conf";

/// Unit directories in systemd's order of precedence. Generator output
/// directories are not among them: they are being written while
/// generators run.
pub use crate::unitfile::UNIT_DIRS;

/// Unit types that never get a drop-in.
const NO_DROPIN_TYPES: &[&str] = &["mount", "automount", "swap", "device", "slice", "scope"];

/// What the generator needs from the manifest and the kernel command line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Wanted {
    /// Units to order after imprint, in manifest order, unique.
    pub units: Vec<String>,
    /// Whether imprint needs the network (a network datasource).
    pub network: bool,
    /// The network datasources named, when `network` comes from names
    /// only (empty for a NoCloud seed over HTTP): [`run`] drops the
    /// network when each of them is OpenStack and its config drive is here.
    pub network_sources: Vec<Datasource>,
}

/// The keys the generator reads, taken from the manifest as a plain value
/// tree ([`crate::yaml::parse_value`], the run's reader), for four keys.
/// The rules are the run's (src/manifest.rs): a key that is absent or
/// null is empty; a key that is there must have its shape (a mapping, a
/// list), else the manifest is invalid; other keys are ignored.
#[derive(Debug, Default)]
struct RawGen {
    order: Vec<String>,
    /// `restart:` and `reload:` of every file, then `units.enable`.
    units: Vec<String>,
    ssh_host_keys: bool,
}

impl RawGen {
    fn from_value(v: &serde_json::Value) -> Result<Self, String> {
        use serde_json::Value;
        let top = match v {
            Value::Object(m) => m,
            Value::Null => return Ok(Self::default()),
            _ => return Err("the manifest is not a mapping".into()),
        };
        // A mapping under `key` of `m`, or none.
        fn map<'a>(
            m: &'a serde_json::Map<String, Value>,
            key: &str,
            at: &str,
        ) -> Result<Option<&'a serde_json::Map<String, Value>>, String> {
            match m.get(key) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::Object(o)) => Ok(Some(o)),
                Some(_) => Err(format!("{at}{key}: expected a mapping")),
            }
        }
        // The strings of the list under `key` of `m` (other scalars are no
        // unit names: left out).
        fn list(
            m: &serde_json::Map<String, Value>,
            key: &str,
            at: &str,
            out: &mut Vec<String>,
        ) -> Result<bool, String> {
            match m.get(key) {
                None | Some(Value::Null) => Ok(false),
                Some(Value::Array(a)) => {
                    for x in a {
                        match x {
                            Value::String(s) => out.push(s.clone()),
                            Value::Array(_) | Value::Object(_) | Value::Null => {
                                return Err(format!("{at}{key}: expected a list of strings"))
                            }
                            _ => {}
                        }
                    }
                    Ok(!a.is_empty())
                }
                Some(_) => Err(format!("{at}{key}: expected a list")),
            }
        }
        let mut raw = Self::default();
        if let Some(ds) = map(top, "datasource", "")? {
            list(ds, "order", "datasource.", &mut raw.order)?;
        }
        match top.get("files") {
            None | Some(Value::Null) => {}
            Some(Value::Array(files)) => {
                for (i, f) in files.iter().enumerate() {
                    let f = match f {
                        Value::Object(f) => f,
                        Value::Null => continue,
                        _ => return Err(format!("files[{i}]: expected a mapping")),
                    };
                    let at = format!("files[{i}].");
                    list(f, "restart", &at, &mut raw.units)?;
                    list(f, "reload", &at, &mut raw.units)?;
                }
            }
            Some(_) => return Err("files: expected a list".into()),
        }
        if let Some(u) = map(top, "units", "")? {
            list(u, "enable", "units.", &mut raw.units)?;
        }
        raw.ssh_host_keys = list(top, "ssh_host_keys", "", &mut Vec::new())?;
        Ok(raw)
    }
}

/// The units and datasource the manifest text names (`None`: no manifest),
/// with the kernel command line. Names that are not unit names are left
/// out (`imprint run` reports them).
pub fn wanted(manifest: Option<&str>, cmdline: &str) -> Result<Wanted, crate::yaml::YamlError> {
    let raw = match manifest {
        Some(t) if !t.trim().is_empty() => RawGen::from_value(&crate::yaml::parse_value(t)?.value)
            .map_err(|message| crate::yaml::YamlError {
                line: 0,
                column: 0,
                message,
            })?,
        _ => RawGen::default(),
    };
    let mut units: Vec<String> = Vec::new();
    for u in raw.units {
        if is_unit_name(&u) && !units.contains(&u) {
            units.push(u);
        }
    }
    if raw.ssh_host_keys {
        for u in ["ssh.service", "sshd.service"] {
            if !units.iter().any(|x| x == u) {
                units.push(u.to_string());
            }
        }
    }
    let network_sources: Vec<Datasource> = match cmdline_datasource(cmdline) {
        Some((_, Some(ds))) => vec![ds],
        Some((_, None)) => vec![],
        None => raw
            .order
            .iter()
            .filter_map(|n| Datasource::parse(n).filter(|d| d.is_network()))
            .collect(),
    };
    let network = match cmdline_datasource(cmdline) {
        Some((net, _)) => net,
        None => !network_sources.is_empty(),
    };
    Ok(Wanted {
        units,
        network,
        network_sources,
    })
}

/// OpenStack read from its config drive (`/var/lib/cloud/seed/config_drive`,
/// or a device labelled `config-2`: the by-label link, else the label scan)
/// needs no network, as the run decides ([`identify::fetches_locally`]):
/// when every network datasource named is OpenStack and the drive is here,
/// imprint is not ordered after `network-online.target`, which a boot
/// without a network would make it wait for in vain.
fn drive_instead_of_network(root: &Root, wanted: &Wanted) -> bool {
    wanted.network
        && !wanted.network_sources.is_empty()
        && wanted
            .network_sources
            .iter()
            .all(|d| *d == Datasource::OpenStack)
        && (identify::config_drive_dir_present(&root.join(identify::CONFIG_DRIVE_SEED_DIR))
            || identify::find_label(root, identify::CONFIG_DRIVE_LABELS, &mut Vec::new()).is_some())
}

/// Whether the kernel command line names a network datasource
/// (`Some((false, _))`: it names a local one; `None`: it names none), and
/// which one when its name is why (not a NoCloud seed over HTTP).
fn cmdline_datasource(cmdline: &str) -> Option<(bool, Option<Datasource>)> {
    let named = |name: &str| {
        let ds = Datasource::parse(name).filter(|d| d.is_network());
        (ds.is_some(), ds)
    };
    let mut found = None;
    for w in cmdline.split_whitespace() {
        if let Some(name) = w.strip_prefix("imprint.datasource=") {
            return Some(named(name));
        }
        if let Some(v) = w.strip_prefix("ds=") {
            let mut fields = v.split(';');
            let name = fields.next().unwrap_or_default();
            let remote_seed = fields.any(|f| {
                let s = f
                    .strip_prefix("s=")
                    .or_else(|| f.strip_prefix("seedfrom="))
                    .unwrap_or_default();
                s.starts_with("http://") || s.starts_with("https://") || s.starts_with("ftp://")
            });
            found = Some(if remote_seed {
                (true, None)
            } else {
                named(name)
            });
        }
    }
    found
}

// ---------------------------------------------------------------- unit files

/// One unit's ordering, from its unit file and drop-ins.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnitDeps {
    pub after: Vec<String>,
    pub before: Vec<String>,
    /// `Wants=`, `Requires=`, `Requisite=`, `BindsTo=`.
    pub pulls: Vec<String>,
    pub default_dependencies: bool,
}

/// The ordering of every unit on disk.
#[derive(Debug, Clone, Default)]
pub struct Units {
    pub deps: BTreeMap<String, UnitDeps>,
    /// Alias name -> canonical name (symlinks in unit directories).
    pub aliases: BTreeMap<String, String>,
    /// X -> units with `Before=X`.
    before_rev: BTreeMap<String, Vec<String>>,
    /// How many files [`Units::read`] read (unit files and drop-ins).
    pub files_read: usize,
}

/// Merge the `[Unit]` ordering of one unit file (or drop-in) into `deps`.
/// Empty assignments (which reset a list) are ignored: keeping more edges
/// only makes the generator more careful.
pub fn parse_unit(text: &str, deps: &mut UnitDeps) {
    crate::unitfile::for_each_entry(text, |section, k, v| {
        if section != "Unit" {
            return;
        }
        let names = || {
            v.split_whitespace()
                .filter(|n| !n.contains('%'))
                .map(str::to_string)
        };
        match k {
            "After" => deps.after.extend(names()),
            "Before" => deps.before.extend(names()),
            "Wants" | "Requires" | "Requisite" | "BindsTo" => deps.pulls.extend(names()),
            "DefaultDependencies" => {
                deps.default_dependencies = !matches!(
                    v.to_ascii_lowercase().as_str(),
                    "no" | "false" | "0" | "off"
                )
            }
            _ => {}
        }
    });
}

fn unit_type(name: &str) -> &str {
    name.rsplit_once('.').map(|(_, t)| t).unwrap_or_default()
}

/// `foo@bar.service` -> `foo@.service`.
fn template_of(name: &str) -> Option<String> {
    let (prefix, rest) = name.split_once('@')?;
    let (_, ty) = rest.rsplit_once('.')?;
    (!rest.starts_with('.')).then(|| format!("{prefix}@.{ty}"))
}

impl UnitDeps {
    /// The implicit dependencies systemd adds for default dependencies
    /// (systemd.service(5), .socket(5), .timer(5), .path(5)).
    fn add_implicit(&mut self, name: &str) {
        if !self.default_dependencies {
            return;
        }
        match unit_type(name) {
            "service" => self
                .after
                .extend(["sysinit.target".into(), "basic.target".into()]),
            "socket" | "timer" | "path" => self.after.push("sysinit.target".into()),
            _ => {}
        }
    }
}

impl Units {
    /// Build from `(name, texts)` pairs: a unit file followed by its
    /// drop-ins, in order (tests and [`Units::read`]).
    pub fn from_texts<'a>(units: impl IntoIterator<Item = (&'a str, Vec<&'a str>)>) -> Units {
        let mut u = Units::default();
        for (name, texts) in units {
            let mut d = UnitDeps {
                default_dependencies: true,
                ..UnitDeps::default()
            };
            for t in texts {
                parse_unit(t, &mut d);
            }
            d.add_implicit(name);
            u.deps.insert(name.to_string(), d);
        }
        u.index();
        u
    }

    /// Read every unit file and drop-in under the root's unit directories.
    /// Unreadable files are skipped: this runs at boot and must not fail.
    pub fn read(root: &Root) -> Units {
        Catalog::scan(root).read(None)
    }

    /// Build the reverse `Before=` index.
    fn index(&mut self) {
        let mut rev: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (n, d) in &self.deps {
            for b in &d.before {
                rev.entry(self.canonical(b).to_string())
                    .or_default()
                    .push(n.clone());
            }
        }
        self.before_rev = rev;
    }

    /// The canonical name of `name` (aliases resolved).
    pub fn canonical<'a>(&'a self, name: &'a str) -> &'a str {
        canonical(&self.aliases, name)
    }

    fn get(&self, name: &str) -> Option<&UnitDeps> {
        let n = self.canonical(name);
        self.deps
            .get(n)
            .or_else(|| template_of(n).and_then(|t| self.deps.get(&t)))
    }

    /// Every unit `start` is ordered after, transitively (`After=` of each,
    /// and `Before=` pointing at each), with `extra_after` added to
    /// `start`'s own `After=`.
    pub fn predecessors(&self, start: &str, extra_after: &[String]) -> BTreeSet<String> {
        let start = self.canonical(start).to_string();
        let mut seen = BTreeSet::new();
        let mut queue = VecDeque::from([start.clone()]);
        while let Some(u) = queue.pop_front() {
            let mut next: Vec<String> = Vec::new();
            if let Some(d) = self.get(&u) {
                next.extend(d.after.iter().map(|a| self.canonical(a).to_string()));
            }
            if u == start {
                next.extend(extra_after.iter().map(|a| self.canonical(a).to_string()));
            }
            if let Some(v) = self.before_rev.get(&u) {
                next.extend(v.iter().cloned());
            }
            for n in next {
                if seen.insert(n.clone()) {
                    queue.push_back(n);
                }
            }
        }
        seen
    }
}

/// `name`, or the unit it is an alias of.
fn canonical<'a>(aliases: &'a BTreeMap<String, String>, name: &'a str) -> &'a str {
    aliases.get(name).map(String::as_str).unwrap_or(name)
}

/// Where every unit's files are (the unit directories listed, nothing read
/// yet): [`Catalog::read`] reads all of them or only the units asked for.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    /// Unit name -> main file (first directory wins); masked units map to None.
    main: BTreeMap<String, Option<PathBuf>>,
    /// Unit name -> drop-in file name -> path (first directory wins).
    dropins: BTreeMap<String, BTreeMap<String, PathBuf>>,
    /// Alias name -> canonical name (symlinks in unit directories).
    aliases: BTreeMap<String, String>,
}

impl Catalog {
    /// List the root's unit directories. Unreadable entries are skipped:
    /// this runs at boot and must not fail.
    pub fn scan(root: &Root) -> Catalog {
        let mut main: BTreeMap<String, Option<PathBuf>> = BTreeMap::new();
        let mut dropins: BTreeMap<String, BTreeMap<String, PathBuf>> = BTreeMap::new();
        let mut aliases = BTreeMap::new();
        let mut seen_dirs = BTreeSet::new();
        for d in UNIT_DIRS {
            let dir = root.join(d);
            let Ok(canon) = dir.canonicalize() else {
                continue;
            };
            if !seen_dirs.insert(canon) {
                continue; // /lib -> /usr/lib on merged-usr systems
            }
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                let path = e.path();
                let Ok(ft) = e.file_type() else { continue };
                if let Some(unit) = name.strip_suffix(".d") {
                    if !is_unit_name(unit) {
                        continue;
                    }
                    let Ok(confs) = std::fs::read_dir(&path) else {
                        continue;
                    };
                    let slot = dropins.entry(unit.to_string()).or_default();
                    for c in confs.flatten() {
                        let cn = c.file_name().to_string_lossy().into_owned();
                        if cn.ends_with(".conf") {
                            slot.entry(cn).or_insert_with(|| c.path());
                        }
                    }
                    continue;
                }
                if !is_unit_name(&name) {
                    continue;
                }
                if main.contains_key(&name) {
                    continue;
                }
                if ft.is_symlink() {
                    let Ok(target) = std::fs::read_link(&path) else {
                        continue;
                    };
                    if target == Path::new("/dev/null") {
                        main.insert(name, None);
                        continue;
                    }
                    let target_name = target
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default();
                    if target_name != name && !target_name.is_empty() {
                        aliases.insert(name, target_name);
                        continue;
                    }
                    let resolved = if target.is_absolute() {
                        root.join(&target)
                    } else {
                        dir.join(&target)
                    };
                    main.insert(name, Some(resolved));
                } else if ft.is_file() {
                    main.insert(name, Some(path));
                }
            }
        }
        // systemd reads drop-ins under every name of a unit (alias.d/ too).
        for (alias, target) in &aliases {
            if let Some(confs) = dropins.get(alias).cloned() {
                let slot = dropins.entry(target.clone()).or_default();
                for (n, p) in confs {
                    slot.entry(n).or_insert(p);
                }
            }
        }
        Catalog {
            main,
            dropins,
            aliases,
        }
    }

    /// How many unit files (main files, masked ones included) it lists.
    pub fn len(&self) -> usize {
        self.main.len()
    }

    /// Whether it lists no unit file.
    pub fn is_empty(&self) -> bool {
        self.main.is_empty()
    }

    /// The canonical name of `name` (aliases resolved).
    fn canonical<'a>(&'a self, name: &'a str) -> &'a str {
        canonical(&self.aliases, name)
    }

    /// Read the files of every unit (`only: None`), or of the units named
    /// in `only` (canonical names; a template instance's template is read
    /// with it).
    pub fn read(&self, only: Option<&BTreeSet<String>>) -> Units {
        let mut units = Units {
            aliases: self.aliases.clone(),
            ..Units::default()
        };
        // Each unit's files in the order systemd reads them (the main file,
        // then drop-ins by name, the template's among them), all read at
        // once below, then parsed in that order.
        let mut order: Vec<(&String, usize)> = Vec::new();
        let mut paths: Vec<&Path> = Vec::new();
        for (name, file) in &self.main {
            let Some(file) = file else { continue };
            if only.is_some_and(|o| !o.contains(name)) {
                continue;
            }
            let mut confs: BTreeMap<&String, &PathBuf> = BTreeMap::new();
            if let Some(t) = template_of(name) {
                confs.extend(self.dropins.get(&t).into_iter().flatten());
            }
            confs.extend(self.dropins.get(name).into_iter().flatten());
            paths.push(file);
            paths.extend(confs.values().map(|p| p.as_path()));
            order.push((name, 1 + confs.len()));
        }
        units.files_read = paths.len();
        let mut texts = read_all(&paths).into_iter();
        for (name, n) in order {
            let mut d = UnitDeps {
                default_dependencies: true,
                ..UnitDeps::default()
            };
            for t in texts.by_ref().take(n).flatten() {
                parse_unit(&t, &mut d);
            }
            d.add_implicit(name);
            units.deps.insert(name.clone(), d);
        }
        units.index();
        units
    }
}

// ----------------------------------------------------------------- the plan

/// What the generator will write, and what it left alone and why.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Dropins {
    /// `(path relative to the output directory, content)`.
    pub files: Vec<(PathBuf, String)>,
    /// `(unit, why it gets no drop-in)`.
    pub skipped: Vec<(String, String)>,
    /// Problems worth a line in the kernel log.
    pub warnings: Vec<String>,
    /// Where [`run`]'s time went, for the debug line (empty from
    /// [`plan_dropins`]).
    pub cost: String,
    /// How many unit files and drop-ins [`run`] read (0 from
    /// [`plan_dropins`]).
    pub files_read: usize,
}

/// Decide the drop-ins (pure).
pub fn plan_dropins(wanted: &Wanted, units: &Units) -> Dropins {
    let mut out = Dropins::default();
    let me = IMPRINT_UNIT;
    let mut extra_after: Vec<String> = Vec::new();
    if wanted.network {
        let with_net = units.predecessors(me, &["network-online.target".to_string()]);
        let mut content = String::from(
            "# Generated by imprint-generator: the manifest names a network datasource.\n\
             [Unit]\nWants=network-online.target\n",
        );
        let without = units.predecessors(me, &[]);
        if with_net.contains(me) && !without.contains(me) {
            let culprit = with_net
                .iter()
                .filter(|u| !without.contains(*u))
                .find(|u| {
                    units
                        .get(u)
                        .is_some_and(|d| d.after.iter().any(|a| a == "sysinit.target"))
                })
                .cloned()
                .unwrap_or_else(|| "a unit".into());
            out.warnings.push(format!(
                "not ordering {me} after network-online.target: that would be an ordering cycle \
                 ({culprit} comes before network-online.target but, keeping default dependencies, \
                 after sysinit.target, which {me} runs before); imprint retries the network \
                 within its datasource timeout"
            ));
        } else {
            content.push_str("After=network-online.target\n");
            extra_after.push("network-online.target".to_string());
        }
        out.files.push((
            PathBuf::from(format!("{me}.d")).join(NETWORK_DROPIN),
            content,
        ));
    }
    let preds = units.predecessors(me, &extra_after);
    if preds.contains(me) {
        out.warnings.push(format!(
            "{me} is already part of an ordering cycle in the unit files on disk; \
             check `systemd-analyze verify {me}`"
        ));
    }
    let pulled: BTreeSet<&str> = units
        .get(me)
        .map(|d| d.pulls.iter().map(|p| units.canonical(p)).collect())
        .unwrap_or_default();
    for u in &wanted.units {
        let c = units.canonical(u);
        let why = if c == me {
            Some("it is imprint.service itself".to_string())
        } else if NO_DROPIN_TYPES.contains(&unit_type(c)) {
            Some(format!("{} units are ordered implicitly", unit_type(c)))
        } else if preds.contains(c) {
            Some(format!("{me} is ordered after it"))
        } else if pulled.contains(c) {
            Some(format!("{me} pulls it in (Wants=/Requires=)"))
        } else {
            None
        };
        match why {
            Some(w) => out.skipped.push((u.clone(), w)),
            None => out.files.push((
                PathBuf::from(format!("{u}.d")).join(DROPIN),
                format!(
                    "# Generated by imprint-generator: imprint configures this unit at first\n\
                     # boot, so it starts after imprint, once, with its final config.\n\
                     [Unit]\nAfter={me}\n"
                ),
            )),
        }
    }
    out
}

/// Decide the drop-ins from the unit directories, reading as few unit
/// files as it can (pure but for those reads).
///
/// The whole graph is needed to know whether a unit comes before
/// imprint.service, because any unit file may say `Before=` of another. But
/// imprint.service is `Before=sysinit.target`, and a service, socket, timer
/// or path unit with default dependencies is `After=sysinit.target`: such a
/// unit can only come before imprint through an ordering cycle. So when
/// the datasource is a local one and every unit the manifest names is of
/// that kind (or needs no drop-in whatever the graph says), only
/// imprint.service's files and those units' own files are read (on the VM
/// image a handful instead of 202: docs/benchmarks.md). Otherwise, or when
/// one of those files says otherwise, every unit file is read. A named
/// unit with no file on disk is taken as not before imprint: a pred of
/// imprint only through some unit's `After=` of a unit that never loads.
/// In an image without an ordering cycle through imprint.service both give
/// the same drop-ins; with one, only the full read reports it.
pub fn plan(wanted: &Wanted, catalog: &Catalog) -> (Dropins, Units) {
    let me = IMPRINT_UNIT;
    if !wanted.network {
        let mut names = BTreeSet::from([me.to_string()]);
        for u in &wanted.units {
            let c = catalog.canonical(u);
            names.extend(template_of(c));
            names.insert(c.to_string());
        }
        let few = catalog.read(Some(&names));
        if none_can_precede(wanted, &few) {
            return (plan_dropins(wanted, &few), few);
        }
    }
    let all = catalog.read(None);
    (plan_dropins(wanted, &all), all)
}

/// Whether, without an ordering cycle, no unit `wanted` names that could
/// get a drop-in can come before imprint.service, judged from `few` (the
/// files of imprint.service and of those units): see [`plan`].
fn none_can_precede(wanted: &Wanted, few: &Units) -> bool {
    let me = IMPRINT_UNIT;
    let Some(mine) = few.get(me) else {
        return false;
    };
    if !mine
        .before
        .iter()
        .any(|b| few.canonical(b) == "sysinit.target")
    {
        return false;
    }
    wanted.units.iter().all(|u| {
        let c = few.canonical(u);
        if c == me || NO_DROPIN_TYPES.contains(&unit_type(c)) {
            return true;
        }
        if mine.after.iter().any(|a| few.canonical(a) == c) {
            return false;
        }
        // A unit with no file on disk orders nothing (sshd.service on
        // Debian, ssh.service on Fedora): its drop-in is never read.
        few.get(c).is_none_or(|d| {
            matches!(unit_type(c), "service" | "socket" | "timer" | "path")
                && d.default_dependencies
                && !d.before.iter().any(|b| few.canonical(b) == me)
        })
    })
}

// ------------------------------------------------------------------ running

/// Run the generator; writes drop-ins under `normal_dir`. Returns what was
/// decided (the caller logs skips and warnings).
pub fn run(root: &Root, normal_dir: &Path) -> std::io::Result<Dropins> {
    let t = std::time::Instant::now();
    // As the run reads it (`Root::read`: under --root, inside the root).
    let manifest = match root.read(root::MANIFEST).and_then(|b| {
        String::from_utf8(b).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
    }) {
        Ok(t) => Some(t),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e),
    };
    let cmdline = std::fs::read_to_string(root.join(root::CMDLINE)).unwrap_or_default();
    if manifest.is_none() && cmdline_datasource(&cmdline).is_none() {
        return Ok(Dropins::default());
    }
    let mut wanted = wanted(manifest.as_deref(), &cmdline).map_err(|e| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!(
                "invalid manifest {}: {e}",
                root.join(root::MANIFEST).display()
            ),
        )
    })?;
    if drive_instead_of_network(root, &wanted) {
        wanted.network = false;
    }
    if wanted.units.is_empty() && !wanted.network {
        return Ok(Dropins::default());
    }
    let t_manifest = t.elapsed();
    let catalog = Catalog::scan(root);
    let t_scan = t.elapsed();
    let (mut plan, units) = plan(&wanted, &catalog);
    let t_plan = t.elapsed();
    for (rel, content) in &plan.files {
        let path = normal_dir.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&path, content)?;
    }
    let us = |d: std::time::Duration| d.as_micros();
    plan.files_read = units.files_read;
    plan.cost = format!(
        "manifest {} us, scan of {} units {} us, {} files read and plan {} us, write {} us",
        us(t_manifest),
        catalog.len(),
        us(t_scan - t_manifest),
        units.files_read,
        us(t_plan - t_scan),
        us(t.elapsed() - t_plan)
    );
    Ok(plan)
}

/// The generator's entry point: never fails the boot. Returns the exit code
/// (0, or 64 when called without an output directory).
pub fn main(root: &Root, normal_dir: Option<&Path>) -> i32 {
    let Some(normal) = normal_dir else {
        eprintln!("usage: imprint-generator NORMAL-DIR [EARLY-DIR LATE-DIR]");
        return 64;
    };
    if root.is_host() && std::env::var_os("SYSTEMD_IN_INITRD").is_some_and(|v| v == "1") {
        return 0;
    }
    let t = std::time::Instant::now();
    match run(root, normal) {
        Ok(plan) => {
            for w in &plan.warnings {
                log(root, 4, w);
            }
            let ordered: Vec<String> = plan
                .files
                .iter()
                .filter_map(|(p, _)| p.parent()?.to_str()?.strip_suffix(".d").map(str::to_string))
                .filter(|u| u != IMPRINT_UNIT)
                .collect();
            if !plan.files.is_empty() || !plan.skipped.is_empty() {
                let skipped: Vec<String> = plan
                    .skipped
                    .iter()
                    .map(|(u, w)| format!("{u}: {w}"))
                    .collect();
                log(
                    root,
                    7,
                    &format!(
                        "ordered after {IMPRINT_UNIT}: [{}]; left alone: [{}] ({} us: {})",
                        ordered.join(" "),
                        skipped.join("; "),
                        t.elapsed().as_micros(),
                        plan.cost
                    ),
                );
            }
        }
        Err(e) => log(
            root,
            3,
            &format!("failed to order units after {IMPRINT_UNIT}: {e}"),
        ),
    }
    0
}

/// Read `paths` (`None`: unreadable), on [`READERS`] threads at once. At
/// a first boot nearly every unit file is a cold read, and one thread waits
/// on the disk for each in turn: 202 files took a median 0.94 s under
/// emulation on one thread (6 boots), 0.67 s on four (16 boots; a shared
/// host, so a sign more than a measure: docs/benchmarks.md). A thread that
/// cannot be started reads its share on this one.
fn read_all(paths: &[&Path]) -> Vec<Option<String>> {
    fn read(ps: &[&Path], os: &mut [Option<String>]) {
        for (p, o) in ps.iter().zip(os) {
            *o = std::fs::read_to_string(p).ok();
        }
    }
    let mut out: Vec<Option<String>> = vec![None; paths.len()];
    let share = paths.len().div_ceil(READERS).max(1);
    let mut failed = Vec::new();
    std::thread::scope(|s| {
        for (i, (ps, os)) in paths.chunks(share).zip(out.chunks_mut(share)).enumerate() {
            let spawned = std::thread::Builder::new()
                .stack_size(64 << 10)
                .spawn_scoped(s, move || read(ps, os));
            if spawned.is_err() {
                failed.push(i);
            }
        }
    });
    for i in failed {
        let part = i * share..((i + 1) * share).min(paths.len());
        read(&paths[part.clone()], &mut out[part]);
    }
    out
}

/// How many threads read unit files at once ([`read_all`]).
const READERS: usize = 4;

/// One line to the kernel log (the journal is not running yet), or stderr
/// when that cannot be opened or under `--root`.
fn log(root: &Root, priority: u8, msg: &str) {
    if root.is_host() {
        if let Ok(mut k) = std::fs::OpenOptions::new().write(true).open("/dev/kmsg") {
            if k.write_all(format!("<{priority}>imprint-generator: {msg}\n").as_bytes())
                .is_ok()
            {
                return;
            }
        }
    }
    let _ = writeln!(std::io::stderr(), "imprint-generator: {msg}");
}
