//! Block devices by file-system label without udev: the NoCloud seed
//! (`cidata`) or OpenStack config drive (`config-2`) for which
//! `/dev/disk/by-label` has no link (yet).
//!
//! Why: imprint's unit runs early (no default dependencies, before
//! sysinit.target, at `Nice=-10`), and nothing orders it after udev has
//! processed the block devices (`systemd-udev-trigger`, let alone the
//! deprecated `systemd-udev-settle`, which would cost every boot its wait).
//! The by-label links it sees are mostly those made in the initramfs, which
//! survive the switch to the real root; a system without an initramfs, or
//! whose initramfs does not run udev on the seed, has none when imprint
//! looks. So when no link names the label, identify scans
//! `/sys/class/block` and reads each candidate's label itself, as blkid
//! would, with no dependence on udev, blkid or util-linux:
//!
//! - candidates: CD-ROMs (`sr*`), virtio (`vd*`), Xen (`xvd*`) and
//!   SCSI/SATA/USB (`sd*`) disks, and their partitions: where hypervisors
//!   and clouds attach a seed or config drive. Not loop, ram, zram, dm, md,
//!   nvme or mmcblk devices.
//! - only those no larger than [`MAX_SIZE`] (from sysfs `size`, before
//!   anything is opened): a seed is small (`cloud-localds` makes a few
//!   hundred KiB, Proxmox a 4 MiB drive, Nova a 64 MiB vfat config drive);
//!   the root disk and its partitions are not even opened. An empty CD-ROM
//!   drive (size 0) is skipped too.
//! - the node read is `/dev/NAME` (the name devtmpfs gives it), opened
//!   non-blocking (a CD-ROM drive does not wait for its tray) and without
//!   following a symlink; a block device there must have the number sysfs
//!   lists (`dev`). A regular file there is read as an image: test roots and
//!   image builds use them.
//! - the label: ISO 9660 first (the volume descriptors, from byte 32768:
//!   [`iso9660::volume_label`], blkid's rule for Joliet included), then vfat
//!   (the boot sector, and the volume-label entry of the root directory:
//!   FAT12/16's first 16 KiB, FAT32's cluster chain as blkid follows it, at
//!   most [`MAX_FAT32_CLUSTERS`] clusters and [`MAX_FAT32_DIR`] bytes): a
//!   few sectors per device.
//!
//! Devices are read in name order; the first labelled as asked wins. All
//! paths are under the [`Root`]. Not found: a device whose driver (`sr_mod`,
//! `virtio_blk` as modules) nothing has loaded yet: devtmpfs makes the node
//! when the driver registers the device, and without udev's coldplug only
//! the initramfs or a built-in driver does that.

use crate::fetch::iso9660::{self, ReadAt};
use crate::root::Root;
use std::fs::File;
use std::io::{Seek, SeekFrom};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::PathBuf;

/// Where the kernel lists block devices (whole disks and partitions).
pub const SYS_BLOCK: &str = "sys/class/block";
/// Largest device whose label is read: 128 MiB, twice Nova's vfat config
/// drive, the largest seed-like device known.
pub const MAX_SIZE: u64 = 128 << 20;
/// Most of a FAT root directory read looking for its volume-label entry
/// (512 entries: all of a FAT12/16 root as `mkfs.vfat` makes it; the label
/// is the first entry `mkfs.vfat -n` and `fatlabel` write).
const MAX_FAT_DIR: u64 = 16 << 10;
/// Most clusters of a FAT32 root directory read looking for its
/// volume-label entry: blkid's limit (its loop stops at the 100th).
pub const MAX_FAT32_CLUSTERS: usize = 99;
/// Most bytes of a FAT32 root directory read in all (99 clusters of up to
/// 10 KiB, what `mkfs.vfat` makes for a seed-sized volume: 512 bytes).
pub const MAX_FAT32_DIR: u64 = 1 << 20;
/// What a vfat boot sector says when it has no label.
const NO_NAME: &[u8; 11] = b"NO NAME    ";

/// What the scan found of one block device.
#[derive(Debug, Clone)]
pub struct Device {
    /// The kernel's name (`sr0`, `vdb1`).
    pub name: String,
    /// The node read, a host path (`ROOT/dev/NAME`).
    pub path: PathBuf,
    pub state: State,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    /// A file system with these labels (vfat: the root directory's label,
    /// then the boot sector's, when they differ; cloud-init matches both,
    /// blkid's `LABEL` and `LABEL_FATBOOT`).
    Labelled {
        fs: &'static str,
        labels: Vec<String>,
    },
    /// Read: no ISO 9660 or vfat label.
    Unlabelled,
    /// Not read, and why.
    Skipped(String),
}

/// The result of one scan of `/sys/class/block`.
#[derive(Debug, Clone, Default)]
pub struct Scan {
    /// Whether `/sys/class/block` could be listed.
    pub present: bool,
    /// The candidates (seed-like kinds), in name order.
    pub devices: Vec<Device>,
}

impl Scan {
    /// Scan `/sys/class/block` under the root.
    pub fn read(root: &Root) -> Scan {
        let dir = root.join(SYS_BLOCK);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return Scan::default();
        };
        let mut names: Vec<String> = entries
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| seed_kind(n))
            .collect();
        names.sort();
        let devices = names
            .into_iter()
            .map(|name| {
                let path = root.join("dev").join(&name);
                let state = probe(root, &name, &path);
                tracing::debug!(device = %name, state = ?state, "read a block device's label");
                Device { name, path, state }
            })
            .collect();
        Scan {
            present: true,
            devices,
        }
    }

    /// The first device labelled with one of `labels` (exactly, as
    /// by-label links are named); an evidence item for `--explain` either
    /// way.
    pub fn find(&self, labels: &[&str], evidence: &mut Vec<String>) -> Option<PathBuf> {
        let wanted = labels.join(",");
        if !self.present {
            evidence.push(format!(
                "/{SYS_BLOCK}: absent, not scanned for {{{wanted}}}"
            ));
            return None;
        }
        for d in &self.devices {
            if let State::Labelled { fs, labels: have } = &d.state {
                if let Some(l) = have.iter().find(|l| labels.contains(&l.as_str())) {
                    evidence.push(format!(
                        "/{SYS_BLOCK}/{}: {fs} labelled {l}: {}",
                        d.name,
                        d.path.display()
                    ));
                    return Some(d.path.clone());
                }
            }
        }
        if self.devices.is_empty() {
            evidence.push(format!(
                "/{SYS_BLOCK}: no sr, vd, xvd or sd device for {{{wanted}}}"
            ));
            return None;
        }
        // One item (line) per device, indented under the finding.
        evidence.push(format!("/{SYS_BLOCK}: none labelled {{{wanted}}}:"));
        for d in &self.devices {
            evidence.push(match &d.state {
                State::Labelled { fs, labels } => {
                    format!("  {}: {fs} labelled {:?}", d.name, labels.join("/"))
                }
                State::Unlabelled => format!("  {}: no iso9660 or vfat label", d.name),
                State::Skipped(why) => format!("  {}: {why}", d.name),
            });
        }
        None
    }
}

/// Whether a block device's name is one a seed is attached as: `sr0`;
/// `vda`, `xvdb`, `sdc` and their partitions (`vdb1`).
fn seed_kind(name: &str) -> bool {
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if let Some(rest) = name.strip_prefix("sr") {
        return !rest.is_empty() && digits(rest);
    }
    let Some(rest) = ["xvd", "vd", "sd"]
        .iter()
        .find_map(|p| name.strip_prefix(p))
    else {
        return false;
    };
    let letters = rest.bytes().take_while(|b| b.is_ascii_lowercase()).count();
    letters > 0 && digits(&rest[letters..])
}

/// Read one device's label, or say why not.
fn probe(root: &Root, name: &str, path: &std::path::Path) -> State {
    let sys = root.join(SYS_BLOCK).join(name);
    let sectors = std::fs::read_to_string(sys.join("size"))
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok());
    let size = match sectors {
        None => return State::Skipped("no size in sysfs".into()),
        Some(0) => return State::Skipped("empty (no medium)".into()),
        Some(n) => n.saturating_mul(512),
    };
    if size > MAX_SIZE {
        return State::Skipped(format!(
            "{} MiB, larger than a seed (over {} MiB): not read",
            size >> 20,
            MAX_SIZE >> 20
        ));
    }
    // O_NONBLOCK: a CD-ROM opens without waiting for a medium; a FIFO
    // planted at the path does not hang. NOFOLLOW: devtmpfs nodes are not
    // symlinks.
    let flags = rustix::fs::OFlags::NONBLOCK | rustix::fs::OFlags::NOFOLLOW;
    let mut file = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(flags.bits() as i32)
        .open(path)
    {
        Ok(f) => f,
        Err(e) => return State::Skipped(format!("/dev/{name}: {e}")),
    };
    let Ok(md) = file.metadata() else {
        return State::Skipped(format!("/dev/{name}: no metadata"));
    };
    let ft = md.file_type();
    if ft.is_block_device() {
        let want = std::fs::read_to_string(sys.join("dev")).unwrap_or_default();
        let rdev = md.rdev();
        let have = format!("{}:{}", rustix::fs::major(rdev), rustix::fs::minor(rdev));
        if want.trim() != have {
            return State::Skipped(format!(
                "/dev/{name} is {have}, sysfs says {}: not read",
                want.trim()
            ));
        }
    } else if !ft.is_file() {
        return State::Skipped(format!("/dev/{name}: not a block device"));
    }
    let len = match file.seek(SeekFrom::End(0)) {
        Ok(n) => n,
        Err(e) => return State::Skipped(format!("/dev/{name}: {e}")),
    };
    labels(&file, len, &path.display().to_string())
}

/// The labels of an image or device `len` bytes long.
fn labels(src: &File, len: u64, device: &str) -> State {
    match iso9660::volume_label(src, len, device) {
        Ok(Some(label)) => {
            return State::Labelled {
                fs: "iso9660",
                labels: vec![label],
            }
        }
        Ok(None) => {}
        Err(e) => return State::Skipped(e.to_string()),
    }
    match vfat_labels(src, len) {
        Some(labels) if !labels.is_empty() => State::Labelled { fs: "vfat", labels },
        _ => State::Unlabelled,
    }
}

fn le16(b: &[u8], at: usize) -> u64 {
    u16::from_le_bytes([b[at], b[at + 1]]) as u64
}

fn le32(b: &[u8], at: usize) -> u64 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]) as u64
}

/// The labels of a FAT file system, as Linux's blkid reads them: the
/// volume-label entry of the root directory (what `mkfs.vfat -n`,
/// `fatlabel` and Windows write), then the boot sector's label (FAT12/16 at
/// 0x2B, FAT32 at 0x47; what `mkfs.vfat -n` also writes), 11 bytes, space
/// padded, `NO NAME` meaning none. `None` when `src` is not FAT (blkid's
/// magic and sanity checks of the boot sector). Reads the boot sector and at
/// most [`MAX_FAT_DIR`] of a FAT12/16 root directory; a FAT32 root
/// directory is a cluster chain, followed as blkid does (each cluster
/// searched up to its end marker, then the next from the FAT, while the
/// cluster number is within the FAT), for at most [`MAX_FAT32_CLUSTERS`]
/// clusters and [`MAX_FAT32_DIR`] bytes, stopping at a cluster seen before
/// (a loop) or one past the end of the device.
pub fn vfat_labels<R: ReadAt + ?Sized>(src: &R, len: u64) -> Option<Vec<String>> {
    let mut bs = [0u8; 512];
    if len < 512 {
        return None;
    }
    src.read_exact_at(&mut bs, 0).ok()?;
    let magic = matches!(bs[0], 0xeb | 0xe9)
        || bs[510..512] == [0x55, 0xaa]
        || bs[0x52..0x5a] == *b"FAT32   "
        || bs[0x36..0x3e].starts_with(b"FAT");
    if !magic || bs[0x36..0x3e] == *b"JFS     " || bs[0x36..0x3e] == *b"HPFS    " {
        return None;
    }
    let sector = le16(&bs, 0x0b);
    let cluster = bs[0x0d] as u64;
    let reserved = le16(&bs, 0x0e);
    let fats = bs[0x10] as u64;
    let dir_entries = le16(&bs, 0x11);
    let media = bs[0x15];
    let fat16_len = le16(&bs, 0x16);
    let fat32_len = le32(&bs, 0x24);
    if fats == 0
        || reserved == 0
        || !(media >= 0xf8 || media == 0xf0)
        || !cluster.is_power_of_two()
        || !sector.is_power_of_two()
        || !(512..=4096).contains(&sector)
    {
        return None;
    }
    let mut sectors = le16(&bs, 0x13);
    if sectors == 0 {
        sectors = le32(&bs, 0x20);
    }
    let fat_len = if fat16_len != 0 { fat16_len } else { fat32_len };
    let fat_size = fat_len * fats;
    let dir_size = (dir_entries * 32).div_ceil(sector);
    let clusters = sectors.checked_sub(reserved + fat_size + dir_size)? / cluster;
    let max = if fat16_len == 0 && fat32_len != 0 {
        0x0fff_fff6
    } else if clusters > 0xff4 {
        0xfff4
    } else {
        0xff4
    };
    if clusters > max {
        return None;
    }
    let mut out = Vec::new();
    let mut found = |name: &[u8]| {
        if name != NO_NAME {
            out.extend(label_text(name));
        }
    };
    let boot = if fat16_len != 0 {
        let dir_at = (reserved + fat_size) * sector;
        let dir_len = (dir_entries * 32)
            .min(MAX_FAT_DIR)
            .min(len.saturating_sub(dir_at))
            / 32
            * 32;
        let mut dir = vec![0u8; dir_len as usize];
        if dir_len > 0 && src.read_exact_at(&mut dir, dir_at).is_ok() {
            if let Some(name) = root_dir_label(&dir) {
                found(name);
            }
        }
        &bs[0x2b..0x36]
    } else if fat32_len != 0 {
        let geometry = Fat32 {
            sector,
            cluster,
            fat_at: reserved * sector,
            data_at: (reserved + fat_size) * sector,
            fat_entries: fat32_len * sector / 4,
        };
        if let Some(name) = fat32_root_label(src, len, &geometry, le32(&bs, 0x2c)) {
            found(&name);
        }
        &bs[0x47..0x52]
    } else {
        return None;
    };
    if boot != NO_NAME {
        if let Some(l) = label_text(boot) {
            if !out.contains(&l) {
                out.push(l);
            }
        }
    }
    Some(out)
}

/// Where a FAT32 file system keeps its FAT and its clusters (bytes).
struct Fat32 {
    sector: u64,
    /// Sectors per cluster.
    cluster: u64,
    fat_at: u64,
    data_at: u64,
    /// Entries the first FAT has room for.
    fat_entries: u64,
}

/// The volume-label entry's name in the FAT32 root directory starting at
/// cluster `first`: blkid's walk of the cluster chain (each cluster
/// searched on its own), bounded by [`MAX_FAT32_CLUSTERS`],
/// [`MAX_FAT32_DIR`], the device's end, and a cluster seen before.
fn fat32_root_label<R: ReadAt + ?Sized>(
    src: &R,
    len: u64,
    g: &Fat32,
    first: u64,
) -> Option<[u8; 11]> {
    let cluster_len = g.cluster.checked_mul(g.sector)?;
    if cluster_len == 0 || cluster_len > MAX_FAT32_DIR {
        return None;
    }
    let mut buf = vec![0u8; cluster_len as usize];
    let mut seen: Vec<u64> = Vec::new();
    let mut read = 0u64;
    let mut next = first;
    while next >= 2 && next < g.fat_entries && seen.len() < MAX_FAT32_CLUSTERS {
        if seen.contains(&next) {
            return None; // a loop: nothing new to read
        }
        seen.push(next);
        let at = (next - 2)
            .checked_mul(cluster_len)
            .and_then(|o| o.checked_add(g.data_at))?;
        if at.checked_add(cluster_len)? <= len {
            read += cluster_len;
            if read > MAX_FAT32_DIR {
                return None;
            }
            src.read_exact_at(&mut buf, at).ok()?;
            if let Some(name) = root_dir_label(&buf) {
                return name.try_into().ok();
            }
        }
        let mut entry = [0u8; 4];
        let fat_at = g.fat_at.checked_add(next.checked_mul(4)?)?;
        if fat_at.checked_add(4)? > len {
            return None;
        }
        src.read_exact_at(&mut entry, fat_at).ok()?;
        next = le32(&entry, 0) & 0x0fff_ffff;
    }
    None
}

/// The volume-label entry's name in a FAT directory, as blkid finds it:
/// entries up to the first free-from-here-on one (name starting with 0),
/// skipping deleted entries, long-name entries and entries with a cluster.
fn root_dir_label(dir: &[u8]) -> Option<&[u8]> {
    for e in dir.chunks_exact(32) {
        match e[0] {
            0x00 => return None,
            0xe5 => continue,
            _ => {}
        }
        let attr = e[11];
        let cluster = le16(e, 20) | le16(e, 26);
        if cluster != 0 || attr & 0x3f == 0x0f {
            continue;
        }
        if attr & (0x08 | 0x10) == 0x08 {
            return Some(&e[..11]);
        }
    }
    None
}

/// An 11-byte FAT label as text: cut at a NUL, trailing spaces dropped;
/// `None` when nothing is left.
fn label_text(raw: &[u8]) -> Option<String> {
    let end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
    let s = String::from_utf8_lossy(&raw[..end]).trim_end().to_string();
    (!s.is_empty()).then_some(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_kinds() {
        for yes in [
            "sr0", "sr12", "vda", "vdb1", "xvdb", "xvda2", "sda", "sdaa3",
        ] {
            assert!(seed_kind(yes), "{yes}");
        }
        for no in [
            "sr",
            "loop0",
            "ram0",
            "zram0",
            "dm-0",
            "md0",
            "nvme0n1",
            "nvme0n1p1",
            "mmcblk0",
            "vd",
            "sdA",
            "vda1x",
            "srx",
        ] {
            assert!(!seed_kind(no), "{no}");
        }
    }

    /// A FAT12 boot sector as `mkfs.vfat` writes one for a 1 MiB image.
    fn fat12(boot_label: &[u8; 11], dir_label: Option<&[u8; 11]>) -> Vec<u8> {
        let mut img = vec![0u8; 1 << 20];
        img[0..3].copy_from_slice(&[0xeb, 0x3c, 0x90]);
        img[3..11].copy_from_slice(b"mkfs.fat");
        img[0x0b..0x0d].copy_from_slice(&512u16.to_le_bytes());
        img[0x0d] = 4;
        img[0x0e..0x10].copy_from_slice(&4u16.to_le_bytes());
        img[0x10] = 2;
        img[0x11..0x13].copy_from_slice(&512u16.to_le_bytes());
        img[0x13..0x15].copy_from_slice(&2048u16.to_le_bytes());
        img[0x15] = 0xf8;
        img[0x16..0x18].copy_from_slice(&2u16.to_le_bytes());
        img[0x26] = 0x29;
        img[0x2b..0x36].copy_from_slice(boot_label);
        img[0x36..0x3e].copy_from_slice(b"FAT12   ");
        img[510] = 0x55;
        img[511] = 0xaa;
        let root = (4 + 2 * 2) * 512;
        // A deleted entry, a long-name entry, then the label.
        img[root] = 0xe5;
        img[root + 32 + 11] = 0x0f;
        img[root + 32] = b'A';
        if let Some(l) = dir_label {
            img[root + 64..root + 75].copy_from_slice(l);
            img[root + 64 + 11] = 0x08;
        }
        img
    }

    #[test]
    fn vfat_labels_as_blkid_reads_them() {
        let img = fat12(b"CIDATA     ", Some(b"CIDATA     "));
        assert_eq!(
            vfat_labels(&img, img.len() as u64),
            Some(vec!["CIDATA".into()])
        );
        // The root directory's label first, then the boot sector's.
        let img = fat12(b"NO NAME    ", Some(b"cidata     "));
        assert_eq!(
            vfat_labels(&img, img.len() as u64),
            Some(vec!["cidata".into()])
        );
        let img = fat12(b"config-2   ", Some(b"OTHER      "));
        assert_eq!(
            vfat_labels(&img, img.len() as u64),
            Some(vec!["OTHER".into(), "config-2".into()])
        );
        let img = fat12(b"NO NAME    ", None);
        assert_eq!(vfat_labels(&img, img.len() as u64), Some(vec![]));
        // Not FAT: no signature, or insane geometry.
        let mut img = fat12(b"CIDATA     ", None);
        img[0x10] = 0;
        assert_eq!(vfat_labels(&img, img.len() as u64), None);
        assert_eq!(vfat_labels(&vec![0u8; 4096], 4096), None);
        assert_eq!(vfat_labels(&vec![0u8; 100], 100), None);
    }
}
