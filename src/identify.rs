//! Stage 1, identify: which datasource, without probing the network blindly
//! (SPEC §1.1).
//!
//! The number one complaint about cloud-init is boot time lost waiting for
//! metadata services that do not exist on this platform; the number two is
//! a datasource that was not detected, with no way to know why. So this
//! stage reads only local evidence, in a fixed order, and keeps every rule's
//! evidence for `imprint identify --explain`:
//!
//! 1. flags: `--user-data` (the `file` source) or `--datasource NAME`;
//! 2. the kernel command line: `imprint.datasource=NAME`, and cloud-init's
//!    `ds=NAME[;s=SEED]` (also `ci.ds=`, `ci.datasource=`);
//! 3. the manifest's `datasource.order`: one entry names the datasource;
//!    several are candidates, in order, each taken only on its local
//!    evidence (a seed or config drive, or DMI) - like cloud-init's
//!    `datasource_list`, and the list also restricts what may be chosen;
//! 4. a NoCloud seed that is present (cloud-init's `ds=nocloud[;s=SEED]` in
//!    the SMBIOS system serial, seed directories, a block device labelled
//!    `cidata`/`CIDATA`), or an OpenStack config drive (`config-2`). The
//!    serial sits here, below the command line and the manifest, because
//!    cloud-init treats it so: ds-identify reads it only when NoCloud is in
//!    `datasource_list`, as NoCloud's evidence next to the `cidata` label.
//!    Its seed (`s=`) is used whenever NoCloud is chosen without a seed of
//!    the kernel command line's;
//! 5. DMI (`/sys/class/dmi/id/*`): the platform's vendor strings.
//!
//! A network datasource is chosen only when one of these names it; with
//! nothing, identification fails (exit 69) and says what it looked at.
//! Everything is read under the [`Root`], so tests build a fake tree.

use crate::blockdev;
use crate::root::{self, Root};
use std::fmt;
use std::path::{Path, PathBuf};

/// The datasources imprint knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Datasource {
    File,
    NoCloud,
    Ec2,
    Gce,
    DigitalOcean,
    Azure,
    OpenStack,
}

impl Datasource {
    pub const ALL: &'static [Datasource] = &[
        Datasource::File,
        Datasource::NoCloud,
        Datasource::Ec2,
        Datasource::Gce,
        Datasource::DigitalOcean,
        Datasource::Azure,
        Datasource::OpenStack,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Datasource::File => "file",
            Datasource::NoCloud => "nocloud",
            Datasource::Ec2 => "ec2",
            Datasource::Gce => "gce",
            Datasource::DigitalOcean => "digitalocean",
            Datasource::Azure => "azure",
            Datasource::OpenStack => "openstack",
        }
    }

    /// Parse a name as written on the command line, kernel command line or
    /// manifest (case-insensitive; cloud-init's spellings accepted).
    pub fn parse(s: &str) -> Option<Datasource> {
        match s.trim().to_ascii_lowercase().as_str() {
            "file" => Some(Datasource::File),
            "nocloud" | "nocloud-net" | "nocloudnet" => Some(Datasource::NoCloud),
            "ec2" | "aws" => Some(Datasource::Ec2),
            "gce" | "google" => Some(Datasource::Gce),
            "digitalocean" | "do" => Some(Datasource::DigitalOcean),
            "azure" => Some(Datasource::Azure),
            "openstack" | "configdrive" | "config-drive" => Some(Datasource::OpenStack),
            _ => None,
        }
    }

    /// Whether fetching talks to a metadata service over the network.
    /// (OpenStack reads its config drive first, but may fall back to the
    /// network, so it counts as a network source.)
    pub fn is_network(self) -> bool {
        !matches!(self, Datasource::File | Datasource::NoCloud)
    }
}

impl fmt::Display for Datasource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Where `--user-data` points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserDataArg {
    Stdin,
    Path(PathBuf),
}

/// The datasource inputs of the command line.
#[derive(Debug, Clone, Default)]
pub struct Request {
    pub datasource: Option<String>,
    pub user_data: Option<UserDataArg>,
    pub instance_id: Option<String>,
    /// Base URL override for network sources (`--metadata-url`,
    /// `IMPRINT_METADATA_URL`).
    pub metadata_url: Option<String>,
}

/// One detection rule, its evidence, and what it concluded.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Rule {
    pub rule: String,
    pub evidence: String,
    /// `Some(name)` when this rule chose the datasource.
    pub verdict: Option<String>,
}

/// The chosen datasource and why.
#[derive(Debug, Clone)]
pub struct Identified {
    pub datasource: Datasource,
    /// For NoCloud: the seed named on the kernel command line
    /// (`ds=nocloud;s=file://DIR/`), if any.
    pub seed: Option<String>,
    /// For NoCloud / OpenStack: the labelled block device found
    /// (`/dev/disk/by-label/cidata`, `config-2`), as a host path.
    pub device: Option<PathBuf>,
    /// For NoCloud: `ds=nocloud;i=ID;h=HOST` of the SMBIOS serial and the
    /// kernel command line, over the seed's `meta-data` (read once, here:
    /// the seal's check and fetch use it).
    pub nocloud: NoCloudOverrides,
    pub rules: Vec<Rule>,
}

/// Where a datasource was named.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NamedBy {
    /// `--datasource NAME` (the command line: a mistake there is usage, 64).
    Flag,
    /// The kernel command line; the key as written (`imprint.datasource`,
    /// `ds`).
    Cmdline(&'static str),
    /// The manifest's `datasource.order` (checked when the manifest is
    /// loaded; here only for callers that pass an order of their own).
    Manifest,
}

impl fmt::Display for NamedBy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NamedBy::Flag => f.write_str("--datasource"),
            NamedBy::Cmdline(key) => write!(f, "the kernel command line's {key}= (/proc/cmdline)"),
            NamedBy::Manifest => f.write_str("the manifest's datasource.order"),
        }
    }
}

impl NamedBy {
    /// What to do about a datasource named here that cannot be used.
    fn fix(self) -> String {
        match self {
            NamedBy::Flag => format!("pass --datasource with one of: {KNOWN}, or --user-data FILE|- for the file datasource"),
            NamedBy::Cmdline(_) => format!(
                "correct it in the boot loader's configuration (one of: {KNOWN}), or override it with --datasource NAME"
            ),
            NamedBy::Manifest => format!("list only known datasources: {KNOWN}"),
        }
    }
}

/// The names [`Datasource::parse`] knows, for messages.
const KNOWN: &str = "file, nocloud, ec2, gce, digitalocean, azure, openstack";

#[derive(Debug, thiserror::Error)]
pub enum IdentifyError {
    #[error("unknown datasource {name:?} (from {from}); {fix}", fix = from.fix())]
    Unknown { name: String, from: NamedBy },
    #[error("--user-data reads the file datasource, but --datasource names {datasource}; drop one of them (--datasource {datasource} alone fetches from {datasource}; --user-data alone reads the file)")]
    Conflict { datasource: String },
    #[error("the file datasource needs --user-data FILE|- (it was named by {from}); {fix}", fix = match from {
        NamedBy::Flag => "pass --user-data FILE|-, or name another datasource with --datasource".to_string(),
        _ => "pass --user-data FILE|-, or name a datasource that this machine can read there".to_string(),
    })]
    FileWithoutUserData { from: NamedBy },
    #[error("--metadata-url (or IMPRINT_METADATA_URL) {url:?} {message}; pass a base URL like http://127.0.0.1:8080, or unset it to use the provider's own address")]
    MetadataUrl { url: String, message: String },
    #[error("no datasource identified: nothing names one and no NoCloud seed or known platform was found (run `imprint identify --explain` for the evidence; pass --datasource or --user-data)")]
    Nothing { rules: Vec<Rule> },
}

impl IdentifyError {
    /// The rules evaluated before the failure (empty for usage errors).
    pub fn rules(&self) -> &[Rule] {
        match self {
            IdentifyError::Nothing { rules } => rules,
            _ => &[],
        }
    }

    /// 64 for a mistake on imprint's own command line (its flags, and
    /// `IMPRINT_METADATA_URL`, which stands for `--metadata-url`); 69 for
    /// everything else: no usable datasource was identified (a bad name on
    /// the kernel command line included: it is the machine's boot
    /// configuration, not this invocation; docs/state.md, "Exit codes").
    pub fn exit_code(&self) -> crate::error::ExitCode {
        use crate::error::ExitCode;
        match self {
            IdentifyError::Unknown {
                from: NamedBy::Flag,
                ..
            }
            | IdentifyError::FileWithoutUserData {
                from: NamedBy::Flag,
            }
            | IdentifyError::Conflict { .. }
            | IdentifyError::MetadataUrl { .. } => ExitCode::Usage,
            IdentifyError::Unknown { .. }
            | IdentifyError::FileWithoutUserData { .. }
            | IdentifyError::Nothing { .. } => ExitCode::Unavailable,
        }
    }
}

/// NoCloud seed directories, in the order cloud-init reads them.
pub const SEED_DIRS: &[&str] = &[
    "var/lib/cloud/seed/nocloud",
    "var/lib/cloud/seed/nocloud-net",
];
/// Labels of a NoCloud seed device (`cloud-localds` writes `cidata`; vfat
/// labels are often upper case).
pub const NOCLOUD_LABELS: &[&str] = &["cidata", "CIDATA"];
/// Labels of an OpenStack config drive.
pub const CONFIG_DRIVE_LABELS: &[&str] = &["config-2", "CONFIG-2"];
/// A config drive's files copied to disk (cloud-init's seed directory for
/// its ConfigDrive source): read before a device, and offline.
pub const CONFIG_DRIVE_SEED_DIR: &str = "var/lib/cloud/seed/config_drive";
/// Where udev lists block devices by file-system label.
pub const BY_LABEL: &str = "dev/disk/by-label";
/// Present on UEFI machines (Azure Gen2).
pub const EFI_DIR: &str = "sys/firmware/efi";
/// Azure's fixed chassis asset tag.
pub const AZURE_ASSET_TAG: &str = "7783-7084-3265-9085-8269-3286-77";

/// The DMI strings imprint reads (`/sys/class/dmi/id/NAME`), trimmed;
/// `None` when absent or unreadable.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Dmi {
    pub sys_vendor: Option<String>,
    pub product_name: Option<String>,
    pub product_version: Option<String>,
    pub chassis_asset_tag: Option<String>,
    pub board_asset_tag: Option<String>,
    pub bios_vendor: Option<String>,
    pub bios_version: Option<String>,
    pub product_uuid: Option<String>,
    pub product_serial: Option<String>,
}

impl Dmi {
    /// One DMI string under the root (`None`: absent, unreadable or blank).
    fn read_one(root: &Root, name: &str) -> Option<String> {
        std::fs::read(root.join(root::DMI_DIR).join(name))
            .ok()
            .and_then(|b| {
                let s = String::from_utf8_lossy(&b).trim().to_string();
                (!s.is_empty()).then_some(s)
            })
    }

    /// Read the DMI strings under the root.
    pub fn read(root: &Root) -> Dmi {
        let get = |name: &str| Dmi::read_one(root, name);
        Dmi {
            sys_vendor: get("sys_vendor"),
            product_name: get("product_name"),
            product_version: get("product_version"),
            chassis_asset_tag: get("chassis_asset_tag"),
            board_asset_tag: get("board_asset_tag"),
            bios_vendor: get("bios_vendor"),
            bios_version: get("bios_version"),
            product_uuid: get("product_uuid"),
            product_serial: get("product_serial"),
        }
    }

    /// The fields used for detection, as `name="value"` (for --explain).
    /// Serials and uuids are ids: not shown (when GCE's serial prefix
    /// decides, the verdict says so, without the serial).
    fn evidence(&self) -> String {
        let fields = [
            ("sys_vendor", &self.sys_vendor),
            ("product_name", &self.product_name),
            ("product_version", &self.product_version),
            ("chassis_asset_tag", &self.chassis_asset_tag),
            ("board_asset_tag", &self.board_asset_tag),
            ("bios_vendor", &self.bios_vendor),
            ("bios_version", &self.bios_version),
        ];
        let shown: Vec<String> = fields
            .iter()
            .filter_map(|(n, v)| v.as_ref().map(|v| format!("{n}={v:?}")))
            .collect();
        if shown.is_empty() {
            format!("/{} has no readable vendor strings", root::DMI_DIR)
        } else {
            shown.join("; ")
        }
    }

    /// The platform these strings identify, and the matching string.
    pub fn platform(&self) -> Option<(Datasource, String)> {
        let eq = |v: &Option<String>, want: &str| v.as_deref() == Some(want);
        let has = |v: &Option<String>, want: &str| {
            v.as_deref()
                .is_some_and(|s| s.to_ascii_lowercase().contains(want))
        };
        // EC2: Nitro says so in sys_vendor; Xen instances in the versions.
        if eq(&self.sys_vendor, "Amazon EC2") {
            return Some((Datasource::Ec2, "sys_vendor is \"Amazon EC2\"".into()));
        }
        if eq(&self.bios_vendor, "Amazon EC2") {
            return Some((Datasource::Ec2, "bios_vendor is \"Amazon EC2\"".into()));
        }
        if has(&self.product_version, "amazon") || has(&self.bios_version, "amazon") {
            return Some((
                Datasource::Ec2,
                "an EC2 Xen version string (\"amazon\")".into(),
            ));
        }
        if eq(&self.product_name, "Google Compute Engine") {
            return Some((
                Datasource::Gce,
                "product_name is \"Google Compute Engine\"".into(),
            ));
        }
        // cloud-init's platform_reports_gce: product_name "Google" too, and
        // the serial, since product_name is not always set (LP: #1674861).
        if eq(&self.product_name, "Google") {
            return Some((Datasource::Gce, "product_name is \"Google\"".into()));
        }
        if eq(&self.sys_vendor, "Google") {
            return Some((Datasource::Gce, "sys_vendor is \"Google\"".into()));
        }
        if self
            .product_serial
            .as_deref()
            .is_some_and(|s| s.starts_with("GoogleCloud-"))
        {
            return Some((
                Datasource::Gce,
                "product_serial starts with \"GoogleCloud-\"".into(),
            ));
        }
        if eq(&self.sys_vendor, "DigitalOcean") {
            return Some((
                Datasource::DigitalOcean,
                "sys_vendor is \"DigitalOcean\"".into(),
            ));
        }
        if eq(&self.chassis_asset_tag, AZURE_ASSET_TAG) {
            return Some((
                Datasource::Azure,
                format!("chassis_asset_tag is Azure's {AZURE_ASSET_TAG:?}"),
            ));
        }
        for name in ["OpenStack Nova", "OpenStack Compute"] {
            if eq(&self.product_name, name) {
                return Some((Datasource::OpenStack, format!("product_name is {name:?}")));
            }
        }
        if eq(&self.sys_vendor, "OpenStack Foundation") {
            return Some((
                Datasource::OpenStack,
                "sys_vendor is \"OpenStack Foundation\"".into(),
            ));
        }
        for tag in ["OpenTelekomCloud", "SAP CCloud VM", "HUAWEICLOUD"] {
            if eq(&self.chassis_asset_tag, tag) {
                return Some((
                    Datasource::OpenStack,
                    format!("chassis_asset_tag is {tag:?} (an OpenStack cloud)"),
                ));
            }
        }
        None
    }
}

/// What the kernel command line says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cmdline {
    /// `imprint.datasource=NAME`.
    pub imprint: Option<String>,
    /// cloud-init's `ds=NAME[;k=v...]` (or `ci.ds=`, `ci.datasource=`): the
    /// name and the seed (`s=` / `seedfrom=`).
    pub ds: Option<String>,
    pub seed: Option<String>,
    /// NoCloud's `i=` / `instance-id=` in the `ds=` word: the instance-id,
    /// over the seed's `meta-data` (cloud-init's `parse_cmdline_data`).
    pub instance_id: Option<String>,
    /// NoCloud's `h=` / `local-hostname=` in the `ds=` word.
    pub hostname: Option<String>,
}

impl Cmdline {
    /// Parse a kernel command line. Words are separated by spaces; double
    /// quotes group (`"a b"`); the words after `--` belong to init.
    pub fn parse(text: &str) -> Cmdline {
        let mut out = Cmdline::default();
        for word in split_cmdline(text) {
            if word == "--" {
                break;
            }
            let Some((key, value)) = word.split_once('=') else {
                continue;
            };
            match key {
                "imprint.datasource" => out.imprint = Some(value.to_string()),
                "ds" | "ci.ds" | "ci.datasource" => {
                    // GRUB users write `ds=nocloud\;s=...`.
                    let value = value.replace("\\;", ";");
                    let mut fields = value.split(';');
                    out.ds = fields.next().map(str::to_string);
                    out.seed = None;
                    out.instance_id = None;
                    out.hostname = None;
                    // cloud-init's short keys and their long forms; a key
                    // given twice: the last wins, as in cloud-init. An
                    // empty value is none (an empty instance-id cannot key
                    // the seal).
                    for f in fields {
                        let Some((k, v)) = f.split_once('=') else {
                            continue;
                        };
                        match k {
                            "s" | "seedfrom" => out.seed = Some(v.to_string()),
                            _ => {}
                        }
                        let v = (!v.is_empty()).then(|| v.to_string());
                        match k {
                            "i" | "instance-id" => out.instance_id = v,
                            "h" | "local-hostname" => out.hostname = v,
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
        out
    }
}

fn split_cmdline(text: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut any = false;
    for c in text.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                any = true;
            }
            c if c.is_whitespace() && !quoted => {
                if any {
                    words.push(std::mem::take(&mut cur));
                    any = false;
                }
            }
            c => {
                cur.push(c);
                any = true;
            }
        }
    }
    if any {
        words.push(cur);
    }
    words
}

/// cloud-init's `ds=nocloud[;s=SEED]` in the SMBIOS system serial number
/// (`/sys/class/dmi/id/product_serial`; QEMU's `-smbios
/// type=1,serial=ds=nocloud;s=file:///seed/`), parsed as the kernel command
/// line is. `None` unless it names NoCloud: as in cloud-init, which reads
/// it only for NoCloud (`DataSourceNoCloud`, ds-identify's `dscheck_NoCloud`).
fn smbios_nocloud(dmi: &Dmi) -> Option<Cmdline> {
    let c = Cmdline::parse(dmi.product_serial.as_deref()?);
    (c.ds.as_deref().and_then(Datasource::parse) == Some(Datasource::NoCloud)).then_some(c)
}

/// What NoCloud's `ds=nocloud;i=ID;h=HOST` says over the seed's
/// `meta-data`, as cloud-init's `DataSourceNoCloud` reads it: the SMBIOS
/// serial's first, then the kernel command line's (when its `ds=` names
/// NoCloud), then the seed's own `meta-data` (cloud-init merges the serial's
/// keys, then the command line's, then the seed's, each keeping what an
/// earlier one set). Read for every NoCloud fetch, however NoCloud was
/// chosen, as cloud-init reads both whenever NoCloud runs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NoCloudOverrides {
    pub instance_id: Option<String>,
    pub hostname: Option<String>,
}

impl NoCloudOverrides {
    /// From the root's SMBIOS serial and `/proc/cmdline`: those two files
    /// only ([`identify`] reads them for NoCloud, into [`Identified`]).
    pub fn read(root: &Root) -> NoCloudOverrides {
        let cmdline = std::fs::read_to_string(root.join(root::CMDLINE))
            .ok()
            .map(|t| Cmdline::parse(&t))
            .filter(|c| c.ds.as_deref().and_then(Datasource::parse) == Some(Datasource::NoCloud));
        let serial = Dmi {
            product_serial: Dmi::read_one(root, "product_serial"),
            ..Dmi::default()
        };
        NoCloudOverrides::of(smbios_nocloud(&serial), cmdline)
    }

    /// The serial's values first, then the command line's (pure).
    pub fn of(serial: Option<Cmdline>, cmdline: Option<Cmdline>) -> NoCloudOverrides {
        let (s, c) = (serial.unwrap_or_default(), cmdline.unwrap_or_default());
        NoCloudOverrides {
            instance_id: s.instance_id.or(c.instance_id),
            hostname: s.hostname.or(c.hostname),
        }
    }
}

/// Local evidence of seeds and config drives, probed once.
#[derive(Debug, Clone, Default)]
struct Seeds {
    /// `ds=nocloud[;s=SEED]` in the SMBIOS serial number.
    serial: Option<Cmdline>,
    /// First seed directory holding `user-data` or `meta-data`.
    dir: Option<PathBuf>,
    /// A device labelled `cidata`/`CIDATA`.
    nocloud_device: Option<PathBuf>,
    /// A device labelled `config-2`.
    config_drive: Option<PathBuf>,
    /// The config drive's seed directory holds `meta_data.json`.
    config_drive_dir: bool,
    evidence: Vec<String>,
}

impl Seeds {
    /// Look for every seed; for the config drive only when `config_drive`
    /// says, given the NoCloud seeds found: its label scan reads block
    /// devices when no by-label link names it, ~5 ms of a first boot under
    /// emulation that a NoCloud seed, found first, makes useless.
    fn probe(root: &Root, dmi: &Dmi, config_drive: impl FnOnce(&Seeds) -> bool) -> Seeds {
        let mut s = Seeds {
            serial: smbios_nocloud(dmi),
            ..Seeds::default()
        };
        for d in SEED_DIRS {
            let p = root.join(d);
            if seed_dir_present(&p) {
                s.evidence.push(format!("/{d}: present"));
                if s.dir.is_none() {
                    s.dir = Some(p);
                }
            } else {
                s.evidence.push(format!("/{d}: absent"));
            }
        }
        let mut scan = None;
        s.nocloud_device = find_label_in(root, NOCLOUD_LABELS, &mut s.evidence, &mut scan);
        if config_drive(&s) {
            s.config_drive_dir = config_drive_dir_present(&root.join(CONFIG_DRIVE_SEED_DIR));
            s.evidence.push(format!(
                "/{CONFIG_DRIVE_SEED_DIR}: {}",
                if s.config_drive_dir {
                    "present"
                } else {
                    "absent"
                }
            ));
            s.config_drive = find_label_in(root, CONFIG_DRIVE_LABELS, &mut s.evidence, &mut scan);
        } else {
            s.evidence
                .push("config drive: not looked for (a NoCloud seed comes first)".into());
        }
        let serial = format!("/{}/product_serial", root::DMI_DIR);
        match (&s.serial, &dmi.product_serial) {
            (Some(c), _) => s.evidence.push(match &c.seed {
                Some(seed) => format!("{serial}: ds=nocloud with seed {seed}"),
                None => format!("{serial}: ds=nocloud"),
            }),
            // Not shown: a serial is an id, not evidence.
            (None, Some(_)) => s.evidence.push(format!("{serial}: no ds=nocloud")),
            (None, None) => s.evidence.push(format!("{serial}: absent")),
        }
        s
    }

    fn nocloud(&self) -> bool {
        self.serial.is_some() || self.dir.is_some() || self.nocloud_device.is_some()
    }

    /// The seed the SMBIOS serial names (`s=`), if any.
    fn serial_seed(&self) -> Option<String> {
        self.serial.as_ref().and_then(|c| c.seed.clone())
    }

    fn config_drive(&self) -> bool {
        self.config_drive_dir || self.config_drive.is_some()
    }
}

/// Whether `dir` is a config drive's seed directory: it holds
/// `openstack/latest/meta_data.json`.
pub fn config_drive_dir_present(dir: &Path) -> bool {
    dir.join(crate::fetch::openstack::META_DATA).is_file()
}

/// Whether fetching from `identified` stays on this machine: the `file`
/// and `nocloud` sources, and OpenStack with a config drive (its seed
/// directory, or a device labelled `config-2`), which is read instead of
/// the metadata service. Such a source is read at every boot, offline, to
/// compare its instance-id with the seal; the others are not asked once
/// sealed unless their id is known offline.
pub fn fetches_locally(root: &Root, identified: &Identified) -> bool {
    match identified.datasource {
        Datasource::OpenStack => {
            identified.device.is_some()
                || config_drive_dir_present(&root.join(CONFIG_DRIVE_SEED_DIR))
        }
        ds => !ds.is_network(),
    }
}

/// Whether `dir` is a NoCloud seed directory: it holds `user-data` or
/// `meta-data`.
pub fn seed_dir_present(dir: &Path) -> bool {
    dir.join("user-data").is_file() || dir.join("meta-data").is_file()
}

/// The host path of the first device with one of `labels`: as listed by
/// udev in `/dev/disk/by-label` under the root (a symlink, resolved against
/// the root), else as found by reading the labels of the seed-sized block
/// devices in `/sys/class/block` ([`crate::blockdev`]): imprint runs before
/// anything waits for udev, whose links may not be there yet.
pub fn find_label(root: &Root, labels: &[&str], evidence: &mut Vec<String>) -> Option<PathBuf> {
    find_label_in(root, labels, evidence, &mut None)
}

/// [`find_label`], scanning `/sys/class/block` at most once for several
/// calls (`scan` keeps it).
fn find_label_in(
    root: &Root,
    labels: &[&str],
    evidence: &mut Vec<String>,
    scan: &mut Option<blockdev::Scan>,
) -> Option<PathBuf> {
    let mut absent = Vec::new();
    for label in labels {
        let link = root.join(BY_LABEL).join(label);
        if std::fs::symlink_metadata(&link).is_err() {
            absent.push(*label);
            continue;
        }
        let dev = resolve_under(root, &link);
        evidence.push(format!("/{BY_LABEL}/{label}: {}", dev.display()));
        return Some(dev);
    }
    evidence.push(format!("/{BY_LABEL}/{{{}}}: absent", absent.join(",")));
    scan.get_or_insert_with(|| blockdev::Scan::read(root))
        .find(labels, evidence)
}

/// Resolve a by-label symlink inside the root (one level, as udev makes
/// them: `../../sr0`); an absolute target is taken inside the root.
fn resolve_under(root: &Root, link: &Path) -> PathBuf {
    match std::fs::read_link(link) {
        Ok(t) if t.is_absolute() => root.join(t),
        Ok(t) => {
            let joined = link.parent().unwrap_or(Path::new("/")).join(t);
            normalize(&joined)
        }
        Err(_) => link.to_path_buf(),
    }
}

fn normalize(p: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            c => out.push(c),
        }
    }
    out
}

/// Rules gathered while identifying.
struct Explain {
    rules: Vec<Rule>,
}

impl Explain {
    fn no(&mut self, rule: &str, evidence: impl Into<String>) {
        self.rules.push(Rule {
            rule: rule.into(),
            evidence: evidence.into(),
            verdict: None,
        });
    }

    fn yes(&mut self, rule: &str, evidence: impl Into<String>, ds: Datasource) {
        self.rules.push(Rule {
            rule: rule.into(),
            evidence: evidence.into(),
            verdict: Some(ds.name().into()),
        });
    }
}

impl Explain {
    /// Say so in the last rule's evidence when a NoCloud seed `seed` came
    /// from the SMBIOS serial, not from the command line `c`.
    fn serial_seed(&mut self, c: &Cmdline, seed: &Option<String>) {
        let from_cmdline = c.seed.is_some()
            && c.ds.as_deref().and_then(Datasource::parse) == Some(Datasource::NoCloud);
        if let (Some(seed), false, Some(rule)) = (seed, from_cmdline, self.rules.last_mut()) {
            rule.evidence.push_str(&format!(
                "; seed {seed} from /{}/product_serial",
                root::DMI_DIR
            ));
        }
    }
}

fn parse_named(name: &str, from: NamedBy) -> Result<Datasource, IdentifyError> {
    Datasource::parse(name).ok_or_else(|| IdentifyError::Unknown {
        name: name.to_string(),
        from,
    })
}

/// Identify the datasource. Reads only local files under the root (kernel
/// command line, seed directories, by-label links, DMI); never the network.
pub fn identify(
    root: &Root,
    request: &Request,
    manifest_order: &[String],
) -> Result<Identified, IdentifyError> {
    let mut identified = choose(root, request, manifest_order)?;
    if identified.datasource == Datasource::NoCloud {
        identified.nocloud = NoCloudOverrides::read(root);
    }
    Ok(identified)
}

/// [`identify`]'s rules, in order.
fn choose(
    root: &Root,
    request: &Request,
    manifest_order: &[String],
) -> Result<Identified, IdentifyError> {
    if let Some(url) = &request.metadata_url {
        crate::fetch::http::check_base_url(url).map_err(|message| IdentifyError::MetadataUrl {
            url: url.clone(),
            message,
        })?;
    }
    let mut ex = Explain { rules: Vec::new() };
    let done = |ds: Datasource, seed: Option<String>, device: Option<PathBuf>, ex: Explain| {
        Ok(Identified {
            datasource: ds,
            seed,
            device,
            nocloud: NoCloudOverrides::default(),
            rules: ex.rules,
        })
    };

    // 1. Flags.
    match (&request.datasource, &request.user_data) {
        (Some(name), ud) => {
            let ds = parse_named(name, NamedBy::Flag)?;
            if ud.is_some() && ds != Datasource::File {
                return Err(IdentifyError::Conflict {
                    datasource: ds.name().into(),
                });
            }
            if ds == Datasource::File && ud.is_none() {
                return Err(IdentifyError::FileWithoutUserData {
                    from: NamedBy::Flag,
                });
            }
            ex.yes("flags", format!("--datasource {name}"), ds);
            let device = device_for(root, ds);
            return done(ds, None, device, ex);
        }
        (None, Some(_)) => {
            ex.yes("flags", "--user-data given", Datasource::File);
            return done(Datasource::File, None, None, ex);
        }
        (None, None) => ex.no("flags", "no --datasource, no --user-data"),
    }

    // 2. Kernel command line. (The SMBIOS serial's `ds=nocloud;s=SEED` is
    // below it: local evidence of NoCloud, rule 4; but its seed serves a
    // NoCloud named here without one.)
    let dmi = Dmi::read(root);
    let serial_seed = smbios_nocloud(&dmi).and_then(|c| c.seed);
    let cmdline_path = root.join(root::CMDLINE);
    match std::fs::read_to_string(&cmdline_path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            ex.no("kernel command line", format!("/{}: absent", root::CMDLINE))
        }
        Err(e) => ex.no(
            "kernel command line",
            format!("/{}: unreadable ({e})", root::CMDLINE),
        ),
        Ok(text) => {
            let c = Cmdline::parse(&text);
            // For a NoCloud named here: the seed of `ds=nocloud;s=`, else
            // the SMBIOS serial's.
            let ds_seed = |c: &Cmdline| match (&c.ds, &c.seed) {
                (Some(ds), Some(s)) if Datasource::parse(ds) == Some(Datasource::NoCloud) => {
                    Some(s.clone())
                }
                _ => serial_seed.clone(),
            };
            if let Some(name) = &c.imprint {
                let ds = parse_named(name, NamedBy::Cmdline("imprint.datasource"))?;
                file_needs_user_data(ds, NamedBy::Cmdline("imprint.datasource"))?;
                ex.yes(
                    "kernel command line",
                    format!("imprint.datasource={name}"),
                    ds,
                );
                let seed = if ds == Datasource::NoCloud {
                    ds_seed(&c)
                } else {
                    None
                };
                ex.serial_seed(&c, &seed);
                return done(ds, seed, device_for(root, ds), ex);
            }
            if let Some(name) = &c.ds {
                let ds = parse_named(name, NamedBy::Cmdline("ds"))?;
                file_needs_user_data(ds, NamedBy::Cmdline("ds"))?;
                let ev = match &c.seed {
                    Some(s) => format!("ds={name} with seed {s}"),
                    None => format!("ds={name}"),
                };
                ex.yes("kernel command line", ev, ds);
                let seed = if ds == Datasource::NoCloud {
                    ds_seed(&c)
                } else {
                    None
                };
                ex.serial_seed(&c, &seed);
                return done(ds, seed, device_for(root, ds), ex);
            }
            ex.no(
                "kernel command line",
                format!("/{}: no imprint.datasource=, no ds=", root::CMDLINE),
            );
        }
    }

    // 3. The manifest's order.
    let order = manifest_order
        .iter()
        .map(|n| parse_named(n, NamedBy::Manifest))
        .collect::<Result<Vec<_>, _>>()?;
    let platform = dmi.platform();
    match order.as_slice() {
        [] => ex.no(
            "manifest datasource.order",
            "not set: every datasource may be detected",
        ),
        [only] => {
            file_needs_user_data(*only, NamedBy::Manifest)?;
            ex.yes(
                "manifest datasource.order",
                format!("names only {only}"),
                *only,
            );
            let seed = (*only == Datasource::NoCloud)
                .then_some(serial_seed)
                .flatten();
            return done(*only, seed, device_for(root, *only), ex);
        }
        many => {
            // The config drive matters when OpenStack is listed before
            // NoCloud, or NoCloud has no seed.
            let seeds = Seeds::probe(root, &dmi, |s| {
                let at = |d| many.iter().position(|x| *x == d);
                match (at(Datasource::OpenStack), at(Datasource::NoCloud)) {
                    (None, _) => false,
                    (Some(o), Some(n)) if n < o => !s.nocloud(),
                    _ => true,
                }
            });
            let mut tried = Vec::new();
            for ds in many {
                let local = match ds {
                    Datasource::File => None,
                    Datasource::NoCloud => seeds
                        .nocloud()
                        .then(|| format!("nocloud: seed present; {}", seeds.evidence.join("; "))),
                    Datasource::OpenStack if seeds.config_drive() => {
                        Some("openstack: config drive present".into())
                    }
                    other => platform
                        .as_ref()
                        .filter(|(p, _)| p == other)
                        .map(|(_, why)| format!("{other}: DMI {why}")),
                };
                match local {
                    Some(why) => {
                        ex.yes("manifest datasource.order", why, *ds);
                        let (seed, device) = match ds {
                            Datasource::NoCloud => {
                                (seeds.serial_seed(), seeds.nocloud_device.clone())
                            }
                            Datasource::OpenStack => (None, seeds.config_drive.clone()),
                            _ => (None, None),
                        };
                        return done(*ds, seed, device, ex);
                    }
                    None => tried.push(format!("{ds}: no local evidence")),
                }
            }
            if let Some((p, why)) = &platform {
                if !many.contains(p) {
                    tried.push(format!(
                        "DMI says {p} ({why}), which the order does not list"
                    ));
                }
            }
            ex.no(
                "manifest datasource.order",
                format!(
                    "{}; {}; {}",
                    tried.join("; "),
                    seeds.evidence.join("; "),
                    dmi.evidence()
                ),
            );
            return Err(IdentifyError::Nothing { rules: ex.rules });
        }
    }

    // 4. A seed or config drive that is present.
    let seeds = Seeds::probe(root, &dmi, |s| !s.nocloud());
    if seeds.nocloud() {
        ex.yes(
            "nocloud seed / config drive",
            seeds.evidence.join("; "),
            Datasource::NoCloud,
        );
        return done(
            Datasource::NoCloud,
            seeds.serial_seed(),
            seeds.nocloud_device,
            ex,
        );
    }
    if seeds.config_drive() {
        ex.yes(
            "nocloud seed / config drive",
            seeds.evidence.join("; "),
            Datasource::OpenStack,
        );
        return done(Datasource::OpenStack, None, seeds.config_drive, ex);
    }
    ex.no("nocloud seed / config drive", seeds.evidence.join("; "));

    // 5. DMI.
    match platform {
        Some((ds, why)) => {
            ex.yes("dmi", format!("{why}; {}", dmi.evidence()), ds);
            done(ds, None, None, ex)
        }
        None => {
            ex.no(
                "dmi",
                format!("{}; matches no known platform", dmi.evidence()),
            );
            Err(IdentifyError::Nothing { rules: ex.rules })
        }
    }
}

fn file_needs_user_data(ds: Datasource, from: NamedBy) -> Result<(), IdentifyError> {
    if ds == Datasource::File {
        return Err(IdentifyError::FileWithoutUserData { from });
    }
    Ok(())
}

/// The labelled device of a datasource named outright (not detected), so
/// fetch need not look again.
fn device_for(root: &Root, ds: Datasource) -> Option<PathBuf> {
    let mut ignore = Vec::new();
    match ds {
        Datasource::NoCloud => find_label(root, NOCLOUD_LABELS, &mut ignore),
        Datasource::OpenStack => find_label(root, CONFIG_DRIVE_LABELS, &mut ignore),
        _ => None,
    }
}

/// The rules as text for `imprint identify --explain`: each rule with its
/// verdict, then its evidence, one item (`; `-separated) per line.
/// `local`: the chosen source is read on this machine
/// ([`fetches_locally`]; an OpenStack config drive).
pub fn explain(rules: &[Rule], chosen: Option<Datasource>, local: bool) -> String {
    let mut out = String::new();
    let mut deciding = None;
    for (i, r) in rules.iter().enumerate() {
        let verdict = match &r.verdict {
            Some(v) => {
                deciding = Some(i + 1);
                format!("=> {v}")
            }
            None => "=> no match".to_string(),
        };
        out.push_str(&format!("{}. {} {verdict}\n", i + 1, r.rule));
        for item in r.evidence.split("; ") {
            out.push_str(&format!("   {item}\n"));
        }
    }
    match chosen {
        Some(ds) => {
            let rule = deciding.map(|n| format!("rule {n}")).unwrap_or_default();
            let how = if ds.is_network() && !local {
                format!("a network metadata service, named by {rule}")
            } else {
                format!("local, no network; {rule}")
            };
            out.push_str(&format!("datasource: {ds} ({how})\n"));
        }
        None => out.push_str(
            "datasource: none (nothing names one; no network was probed)\n\
             to fix: pass --datasource NAME or --user-data FILE,\n\
             \x20       or put imprint.datasource=NAME on the kernel command line,\n\
             \x20       or list the datasource in the manifest's datasource.order\n",
        ),
    }
    out
}

/// The instance-id when it can be known without the network, so a sealed
/// instance exits at once: `--instance-id`; NoCloud's `i=` in the SMBIOS
/// serial or on the kernel command line ([`NoCloudOverrides`]), else
/// `meta-data` (`instance-id`) from a seed directory; DMI on EC2 Nitro
/// (`board_asset_tag`, `i-...`), Azure (`product_uuid`, byte-swapped on
/// Gen1 to match IMDS `vmId`) and DigitalOcean (`product_serial`, the
/// droplet id); OpenStack `uuid` from a config drive's seed directory
/// (`/var/lib/cloud/seed/config_drive`). `None` elsewhere (GCE, the
/// OpenStack metadata service, a seed or config drive on a device: fetch
/// reads that, in-process when it is ISO 9660, mounted when vfat): then
/// the seal is trusted, or the local source is read ([`fetches_locally`])
/// and its id compared.
pub fn offline_instance_id(
    root: &Root,
    identified: &Identified,
    request: &Request,
) -> Option<String> {
    if let Some(id) = &request.instance_id {
        return Some(id.clone());
    }
    match identified.datasource {
        Datasource::File => None,
        Datasource::NoCloud => {
            if let Some(id) = identified.nocloud.instance_id.clone() {
                return Some(id);
            }
            let dir = match &identified.seed {
                Some(s) => Some(crate::fetch::nocloud::seed_path(root, s).ok()?),
                None => SEED_DIRS
                    .iter()
                    .map(|d| root.join(d))
                    .find(|d| seed_dir_present(d)),
            }?;
            let text = std::fs::read_to_string(dir.join("meta-data")).ok()?;
            crate::fetch::nocloud::parse_meta_data(&text)
                .ok()?
                .instance_id
        }
        Datasource::Ec2 => Dmi::read(root)
            .board_asset_tag
            .filter(|t| t.starts_with("i-") && t.len() > 2),
        Datasource::Azure => {
            let uuid = Dmi::read(root).product_uuid?;
            let gen1 = !root.join(EFI_DIR).exists();
            azure_vm_id(&uuid, gen1)
        }
        Datasource::DigitalOcean => Dmi::read(root)
            .product_serial
            .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())),
        Datasource::OpenStack => {
            // The config drive's seed directory. A `config-2` device is
            // read by fetch instead (once, in-process or mounted; still
            // local, and compared with the seal before any network: the
            // pipeline).
            let dir = root.join(CONFIG_DRIVE_SEED_DIR);
            let meta = std::fs::read(dir.join(crate::fetch::openstack::META_DATA)).ok()?;
            crate::fetch::openstack::parse_meta_data(&meta, "meta_data.json")
                .ok()
                .map(|(uuid, _)| uuid)
        }
        Datasource::Gce => None,
    }
}

/// Azure's `vmId` from the SMBIOS system uuid. Gen1 VMs have SMBIOS 2.3,
/// whose uuid Linux reads big-endian while Azure wrote the first three
/// fields little-endian: swap their bytes (as cloud-init and azure-init
/// do). Gen2 (UEFI) needs no swap. Lower case, as IMDS gives it.
pub fn azure_vm_id(uuid: &str, gen1: bool) -> Option<String> {
    let uuid = uuid.trim().to_ascii_lowercase();
    let parts: Vec<&str> = uuid.split('-').collect();
    let lens = [8, 4, 4, 4, 12];
    if parts.len() != 5
        || parts
            .iter()
            .zip(lens)
            .any(|(p, n)| p.len() != n || !p.bytes().all(|b| b.is_ascii_hexdigit()))
    {
        return None;
    }
    if !gen1 {
        return Some(uuid);
    }
    let swap = |p: &str| -> String {
        let bytes: Vec<&str> = (0..p.len()).step_by(2).map(|i| &p[i..i + 2]).collect();
        bytes.into_iter().rev().collect()
    };
    Some(format!(
        "{}-{}-{}-{}-{}",
        swap(parts[0]),
        swap(parts[1]),
        swap(parts[2]),
        parts[3],
        parts[4]
    ))
}

/// `imprint identify [--explain]`: print the datasource name (or, with
/// `--explain`, every rule, its evidence and the verdict). On failure the
/// explanation is printed anyway, so the operator sees why.
pub fn command(
    root: &Root,
    config: Option<&Path>,
    request: &Request,
    verbose_explain: bool,
    out: &mut dyn std::io::Write,
) -> Result<(), crate::error::Error> {
    let manifest = crate::manifest::load(root, config)?;
    let order = manifest
        .as_ref()
        .map(|m| m.datasource_order.clone())
        .unwrap_or_default();
    let text = match identify(root, request, &order) {
        Ok(id) if verbose_explain => {
            let local = fetches_locally(root, &id);
            let mut t = explain(&id.rules, Some(id.datasource), local);
            let offline = match offline_instance_id(root, &id, request) {
                Some(iid) => format!("offline instance-id: {iid}\n"),
                None => "offline instance-id: not knowable without fetching\n".to_string(),
            };
            t.push_str(&offline);
            t
        }
        Ok(id) => format!("{}\n", id.datasource),
        Err(e) => {
            if !e.rules().is_empty() {
                let _ = out.write_all(explain(e.rules(), None, false).as_bytes());
            }
            return Err(e.into());
        }
    };
    let _ = out.write_all(text.as_bytes());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cmdline_words() {
        let c = Cmdline::parse("ro quiet ds=nocloud;s=file:///seed/ console=ttyS0");
        assert_eq!(c.ds.as_deref(), Some("nocloud"));
        assert_eq!(c.seed.as_deref(), Some("file:///seed/"));
        let c = Cmdline::parse("a \"imprint.datasource=ec2\" -- imprint.datasource=gce");
        assert_eq!(c.imprint.as_deref(), Some("ec2"));
        let c = Cmdline::parse("ds=nocloud\\;seedfrom=/x/ ci.ds=foo");
        assert_eq!(c.ds.as_deref(), Some("foo"));
        assert_eq!(c.seed, None);
        let c = Cmdline::parse("ds=nocloud\\;seedfrom=/x/\n");
        assert_eq!(c.seed.as_deref(), Some("/x/"));
        assert_eq!(Cmdline::parse(""), Cmdline::default());
    }

    #[test]
    fn azure_gen1_swaps_first_three_fields() {
        // The vector from cloud-init's tests of byte_swap_system_uuid.
        assert_eq!(
            azure_vm_id("527C2691-029F-FE4C-B1F4-A4DA7EBAC2CF", true).unwrap(),
            "91267c52-9f02-4cfe-b1f4-a4da7ebac2cf"
        );
        assert_eq!(
            azure_vm_id("527c2691-029f-fe4c-b1f4-a4da7ebac2cf", false).unwrap(),
            "527c2691-029f-fe4c-b1f4-a4da7ebac2cf"
        );
        assert_eq!(azure_vm_id("not-a-uuid", true), None);
    }

    #[test]
    fn dmi_platforms() {
        let d = |f: fn(&mut Dmi)| {
            let mut x = Dmi::default();
            f(&mut x);
            x.platform().map(|(p, _)| p)
        };
        assert_eq!(
            d(|x| x.sys_vendor = Some("Amazon EC2".into())),
            Some(Datasource::Ec2)
        );
        assert_eq!(
            d(|x| x.bios_version = Some("4.11.amazon".into())),
            Some(Datasource::Ec2)
        );
        assert_eq!(
            d(|x| x.product_name = Some("Google Compute Engine".into())),
            Some(Datasource::Gce)
        );
        assert_eq!(
            d(|x| x.product_name = Some("Google".into())),
            Some(Datasource::Gce)
        );
        assert_eq!(
            d(|x| x.sys_vendor = Some("Google".into())),
            Some(Datasource::Gce)
        );
        // No product_name at all (LP: #1674861): the serial says it.
        assert_eq!(
            d(|x| x.product_serial = Some("GoogleCloud-0123456789ABCDEF".into())),
            Some(Datasource::Gce)
        );
        assert_eq!(d(|x| x.product_serial = Some("Google".into())), None);
        assert_eq!(d(|x| x.product_name = Some("Google Pixel".into())), None);
        assert_eq!(
            d(|x| x.sys_vendor = Some("DigitalOcean".into())),
            Some(Datasource::DigitalOcean)
        );
        assert_eq!(
            d(|x| x.chassis_asset_tag = Some(AZURE_ASSET_TAG.into())),
            Some(Datasource::Azure)
        );
        assert_eq!(
            d(|x| x.product_name = Some("OpenStack Nova".into())),
            Some(Datasource::OpenStack)
        );
        assert_eq!(d(|x| x.sys_vendor = Some("QEMU".into())), None);
    }
}
