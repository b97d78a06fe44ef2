//! A read-only, in-process reader of the files of an ISO 9660 seed image
//! (NoCloud `cidata` at its root, an OpenStack config drive `config-2`
//! under `openstack/latest/`), so that imprint need not mount it.
//!
//! Why: under emulation at boot, mounting the seed (the kernel loads and
//! runs isofs, then the unmount) cost 0.16-2.2 s of imprint's unit time
//! (docs/benchmarks.md §3), for reading three small files. Reading the
//! device directly is a handful of `pread`s.
//!
//! What it reads: the volume descriptors, the root directory, the
//! directories on the way to a file (a path like
//! `openstack/latest/meta_data.json`, at most [`MAX_DEPTH`] names deep),
//! and the file, by the names the Linux kernel's isofs shows for them
//! (cloud-init mounts the seed and opens `user-data` & co. by those names),
//! so imprint finds exactly what cloud-init would; each name of a path is
//! matched by the same rule:
//!
//! - Rock Ridge (`genisoimage -r`, `cloud-localds`) when the primary
//!   volume's root has an `ER` entry: `NM` names, exact match; an entry
//!   without `NM` falls back to the plain name below. Rock Ridge wins over
//!   Joliet, as in the kernel.
//! - else Joliet (`genisoimage -J`): the supplementary volume's UCS-2 names,
//!   `;1` and trailing dots dropped, matched case-insensitively (the
//!   kernel's default `check=relaxed` for Joliet);
//! - else the plain ISO 9660 name, lower-cased, `;1` (and a `.` before it)
//!   dropped, `;` made `.` (the kernel's `map=normal`): a level-1 image's
//!   `USER_DAT.;1` is `user_dat`, which is not `user-data`, for the kernel
//!   as for imprint.
//!
//! Associated files are skipped (kernel default), and so are Rock Ridge's
//! relocated directories (`RE`, in `rr_moved`), as the kernel hides them.
//! Multi-extent and interleaved files, directories, Rock Ridge symlinks and
//! special files are refused with an error naming the file; so are sizes
//! over the caller's cap, before anything is allocated. On the way to a
//! file, a name that is not a directory, a Rock Ridge symlink (not
//! followed, unlike the kernel's mount; no seed tool writes one) or a
//! directory that Rock Ridge relocated (`CL`: only deeper than
//! [`MAX_DEPTH`], where no path read goes) is an error naming it; a name
//! that is absent is an absent file. The directories of the last path read
//! are kept, so reading three files of one directory reads it once.
//!
//! What it declines (the caller then mounts the device): no `CD001` volume
//! descriptor (vfat, other file systems), no primary volume descriptor.
//! Everything it reads is bounds-checked against the device's size and the
//! structure it comes from: a damaged or hostile image is an error naming
//! the device and what is wrong, never a panic or a large allocation (each
//! directory is capped at [`MAX_DIR`], Rock Ridge continuation chains at
//! [`MAX_CONTINUATIONS`] and in all at [`MAX_CONTINUATIONS_TOTAL`], names at
//! 255 bytes, paths at [`MAX_DEPTH`] names).

use super::FetchError;
use std::cell::RefCell;
use std::fs::File;
use std::io::{Seek, SeekFrom};
use std::os::unix::fs::{FileExt, FileTypeExt, OpenOptionsExt};
use std::path::Path;

/// Volume descriptors sit in 2048-byte sectors from sector 16, whatever the
/// logical block size.
const SECTOR: u64 = 2048;
/// How many volume descriptors are looked at before giving up (the
/// kernel's limit too).
const MAX_DESCRIPTORS: u64 = 100;
/// Largest directory read (a seed's root, or a config drive's
/// `openstack/latest`, has a handful of entries in one 2 KiB block).
pub const MAX_DIR: u64 = 1 << 20;
/// Most names in a path read: ISO 9660 nests directories 8 levels deep,
/// the root being the first (deeper ones Rock Ridge relocates, `CL`), so
/// a file is at most 8 names down.
pub const MAX_DEPTH: usize = 8;
/// Longest chain of Rock Ridge continuation areas followed (the kernel's
/// limit, against loops).
pub const MAX_CONTINUATIONS: usize = 32;
/// Rock Ridge names are cut here, as the kernel does.
const MAX_NAME: usize = 253;
/// Continuation areas read for one seed in all (each is one block read).
pub const MAX_CONTINUATIONS_TOTAL: usize = 1024;

/// Random-access reads of the image: a device or file, or bytes in tests.
pub trait ReadAt {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()>;
}

impl ReadAt for File {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
        FileExt::read_exact_at(self, buf, offset)
    }
}

impl ReadAt for [u8] {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
        let start = usize::try_from(offset).unwrap_or(usize::MAX);
        match start
            .checked_add(buf.len())
            .and_then(|end| self.get(start..end))
        {
            Some(src) => {
                buf.copy_from_slice(src);
                Ok(())
            }
            None => Err(std::io::ErrorKind::UnexpectedEof.into()),
        }
    }
}

impl ReadAt for Vec<u8> {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
        self.as_slice().read_exact_at(buf, offset)
    }
}

/// Which names the kernel would show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Names {
    RockRidge,
    Joliet,
    Plain,
}

/// One entry of a directory, with the name the kernel shows.
#[derive(Debug, Clone)]
pub struct Entry {
    pub name: String,
    /// First block of the data (extended attribute record skipped).
    block: u64,
    pub size: u64,
    /// A directory, for the kernel (the ISO 9660 flag or Rock Ridge's mode).
    dir: bool,
    /// The ISO 9660 directory flag itself: whether its data is records.
    dir_flag: bool,
    /// A Rock Ridge child link (`CL`): a directory relocated elsewhere.
    child_link: bool,
    multi_extent: bool,
    interleaved: bool,
    /// From Rock Ridge: a symlink, or a `PX` mode that is not a regular
    /// file (or directory).
    symlink: bool,
    special: bool,
}

/// The outcome of [`Seed::open`].
pub enum Opened<R> {
    Seed(Seed<R>),
    /// Not something this reader reads (the reason, for a debug line): the
    /// caller mounts the device instead.
    Declined(String),
}

/// An ISO 9660 image's root directory, ready for reading files.
pub struct Seed<R> {
    src: R,
    len: u64,
    block_size: u64,
    device: String,
    pub names: Names,
    pub volume_id: String,
    /// The root directory's entries.
    pub entries: Vec<Entry>,
    /// Bytes to skip in each record's system use area (Rock Ridge's `SP`).
    skip: usize,
    continuations: std::cell::Cell<usize>,
    /// The directory last walked to (its path, its entries).
    last_dir: RefCell<Option<(String, Vec<Entry>)>>,
}

/// Open `path` (a block device or an image file) and read its root.
pub fn open(path: &Path) -> Result<Opened<File>, FetchError> {
    let device = path.display().to_string();
    let read_err = |source: std::io::Error| FetchError::Read {
        what: format!("the seed device {device}"),
        source,
    };
    // O_NONBLOCK: a FIFO planted at the path must not hang the open.
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
        .open(path)
        .map_err(read_err)?;
    let ft = file.metadata().map_err(read_err)?.file_type();
    if !(ft.is_block_device() || ft.is_file()) {
        return Err(FetchError::Invalid {
            what: format!("the seed device {device}"),
            message: "not a block device or an image file".into(),
        });
    }
    // A block device's size is only known by seeking to its end.
    let len = file.seek(SeekFrom::End(0)).map_err(read_err)?;
    Seed::parse(file, len, &device)
}

fn both_u32(b: &[u8], at: usize) -> u64 {
    // The little-endian half of a both-endian field (as the kernel reads).
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]) as u64
}

/// A directory record's fixed fields; `rec` is the whole record.
struct Record<'a> {
    rec: &'a [u8],
    name: &'a [u8],
    /// Offset of the system use area in `rec`.
    su: usize,
}

impl<'a> Record<'a> {
    /// Check a record's lengths; `None` when they do not fit.
    fn parse(rec: &'a [u8]) -> Option<Record<'a>> {
        let len = *rec.first()? as usize;
        if len < 34 || len > rec.len() {
            return None;
        }
        let rec = &rec[..len];
        let name_len = rec[32] as usize;
        if name_len == 0 || 33 + name_len > len {
            return None;
        }
        let su = (33 + name_len + 1) & !1;
        Some(Record {
            rec,
            name: &rec[33..33 + name_len],
            su: su.min(len),
        })
    }
    fn block(&self) -> u64 {
        both_u32(self.rec, 2) + self.rec[1] as u64
    }
    fn size(&self) -> u64 {
        both_u32(self.rec, 10)
    }
    fn flags(&self) -> u8 {
        self.rec[25]
    }
    fn system_use(&self) -> &'a [u8] {
        &self.rec[self.su..]
    }
}

/// What the Rock Ridge entries of one record say.
#[derive(Default)]
struct Rock {
    name: Option<Vec<u8>>,
    truncated: bool,
    has_er: bool,
    /// `SP`'s byte count to skip in every other record's system use area.
    sp_skip: Option<usize>,
    symlink: bool,
    mode: Option<u32>,
    relocated: bool,
    child_link: bool,
}

impl<R: ReadAt> Seed<R> {
    fn corrupt(&self, message: String) -> FetchError {
        corrupt(&self.device, message)
    }

    /// Read the volume descriptors and the root directory of `src`, `len`
    /// bytes long; `device` names it in messages.
    pub fn parse(src: R, len: u64, device: &str) -> Result<Opened<R>, FetchError> {
        let Descriptors {
            primary: pvd,
            joliet,
        } = match descriptors(&src, len, device)? {
            Ok(d) => d,
            Err(why) => return Ok(Opened::Declined(why)),
        };
        let block_size = u16::from_le_bytes([pvd[128], pvd[129]]) as u64;
        if !matches!(block_size, 512 | 1024 | 2048) {
            return Err(corrupt(
                device,
                format!("logical block size {block_size} (expected 512, 1024 or 2048)"),
            ));
        }
        let volume_id = String::from_utf8_lossy(&pvd[40..72]).trim_end().to_string();
        let mut seed = Seed {
            src,
            len,
            block_size,
            device: device.to_string(),
            names: Names::Plain,
            volume_id,
            entries: Vec::new(),
            skip: 0,
            continuations: std::cell::Cell::new(0),
            last_dir: RefCell::new(None),
        };
        let root_of = |vd: &[u8]| vd[156..190].to_vec();
        let primary_root = root_of(&pvd);
        let dir = seed.read_dir(&primary_root, "primary")?;
        // Rock Ridge: an ER entry in the root's "." record (as the kernel
        // decides); SP gives the bytes to skip in every other record.
        let dot = Record::parse(&dir)
            .ok_or_else(|| seed.corrupt("the root directory's first record is malformed".into()))?;
        let rock = seed.rock(dot.system_use())?;
        let (names, dir, skip) = if rock.has_er {
            (Names::RockRidge, dir, rock.sp_skip.unwrap_or(0))
        } else if let Some(svd) = &joliet {
            let dir = seed.read_dir(&root_of(svd), "Joliet")?;
            (Names::Joliet, dir, 0)
        } else {
            (Names::Plain, dir, 0)
        };
        seed.names = names;
        seed.skip = skip;
        seed.entries = seed.entries_of(&dir, "the root directory")?;
        Ok(Opened::Seed(seed))
    }

    /// Read a directory, given its record (from a volume descriptor).
    fn read_dir(&self, root: &[u8], which: &str) -> Result<Vec<u8>, FetchError> {
        let rec = Record::parse(root).ok_or_else(|| {
            self.corrupt(format!(
                "the {which} volume's root directory record is malformed"
            ))
        })?;
        if rec.flags() & 2 == 0 {
            return Err(self.corrupt(format!("the {which} volume's root is not a directory")));
        }
        let size = rec.size();
        if size > MAX_DIR {
            return Err(self.corrupt(format!(
                "the {which} volume's root directory is {size} bytes, more than imprint \
                 reads ({MAX_DIR}); a seed's root holds a few files"
            )));
        }
        if size < 34 {
            return Err(self.corrupt(format!(
                "the {which} volume's root directory is {size} bytes, too small for its \".\" entry"
            )));
        }
        self.read_extent(rec.block(), size, &format!("the {which} root directory"))
    }

    /// Read `size` bytes at `block`, checked against the device's size.
    fn read_extent(&self, block: u64, size: u64, what: &str) -> Result<Vec<u8>, FetchError> {
        let at = block.checked_mul(self.block_size);
        match at.and_then(|a| a.checked_add(size)) {
            Some(end) if end <= self.len => {}
            _ => {
                return Err(self.corrupt(format!(
                    "{what} (block {block}, {size} bytes) lies past the end of the device \
                     ({} bytes): a truncated or damaged image",
                    self.len
                )))
            }
        }
        let mut buf = vec![0u8; size as usize];
        self.src
            .read_exact_at(&mut buf, at.unwrap_or(0))
            .map_err(|source| FetchError::Read {
                what: format!("{what} on {}", self.device),
                source,
            })?;
        Ok(buf)
    }

    /// The entries of a directory's data (skipping "." and ".."); `which`
    /// names the directory in messages.
    fn entries_of(&self, dir: &[u8], which: &str) -> Result<Vec<Entry>, FetchError> {
        let skip = self.skip;
        let bs = self.block_size as usize;
        let mut out = Vec::new();
        let mut pos = 0usize;
        while pos < dir.len() {
            let len = dir[pos] as usize;
            if len == 0 {
                // The rest of this block is padding.
                pos = (pos / bs + 1) * bs;
                continue;
            }
            let rec = Record::parse(&dir[pos..]).ok_or_else(|| {
                self.corrupt(format!(
                    "{which}'s record at byte {pos} is malformed \
                     (length {len}, name length {})",
                    dir.get(pos + 32).copied().unwrap_or(0)
                ))
            })?;
            pos += len;
            if rec.name.len() == 1 && rec.name[0] <= 1 {
                continue; // "." and ".."
            }
            let flags = rec.flags();
            if flags & 4 != 0 {
                continue; // associated file: hidden by the kernel
            }
            let mut name = None;
            let mut rock = Rock::default();
            if self.names == Names::RockRidge {
                let su = rec.system_use();
                rock = self.rock(su.get(skip..).unwrap_or(&[]))?;
                if rock.relocated {
                    continue; // shown where it was relocated from
                }
                // No NM, or an empty one: the plain name (as the kernel).
                name = rock
                    .name
                    .as_ref()
                    .filter(|n| !n.is_empty())
                    .map(|n| String::from_utf8_lossy(n).into_owned());
            }
            let name = match name {
                Some(n) => n,
                None if self.names == Names::Joliet => joliet_name(rec.name),
                None => plain_name(rec.name),
            };
            let dir_flag = flags & 2 != 0;
            let mode_type = rock.mode.map(|m| m & 0o170000);
            out.push(Entry {
                name,
                block: rec.block(),
                size: rec.size(),
                dir: dir_flag || mode_type == Some(0o040000) || rock.child_link,
                dir_flag,
                child_link: rock.child_link,
                multi_extent: flags & 0x80 != 0,
                interleaved: rec.rec[26] != 0 || rec.rec[27] != 0,
                symlink: rock.symlink || mode_type == Some(0o120000),
                special: matches!(mode_type, Some(t) if t != 0o100000 && t != 0o040000 && t != 0o120000),
            });
        }
        Ok(out)
    }

    /// Parse the SUSP / Rock Ridge entries of a system use area, following
    /// continuation areas (`CE`).
    fn rock(&self, area: &[u8]) -> Result<Rock, FetchError> {
        let mut rock = Rock::default();
        let mut area = area.to_vec();
        let mut hops = 0;
        loop {
            let mut next = None;
            let mut p = 0usize;
            let mut stop = false;
            while p + 4 <= area.len() {
                let sig = [area[p], area[p + 1]];
                let len = area[p + 2] as usize;
                if len < 4 || p + len > area.len() {
                    break; // garbage: stop here, as the kernel does
                }
                let e = &area[p..p + len];
                match &sig {
                    b"SP" if len >= 7 && e[4] == 0xbe && e[5] == 0xef => {
                        rock.sp_skip = Some(e[6] as usize)
                    }
                    b"ER" => rock.has_er = true,
                    b"CE" if len >= 28 => {
                        next = Some((both_u32(e, 4), both_u32(e, 12), both_u32(e, 20)))
                    }
                    // Flags other than "continued" ("." / ".." / host
                    // name): the kernel skips the entry.
                    b"NM" if len >= 5 && e[4] & !1 == 0 && !rock.truncated => {
                        let name = rock.name.get_or_insert_with(Vec::new);
                        if name.len() + (len - 5) > MAX_NAME {
                            rock.truncated = true;
                        } else {
                            name.extend_from_slice(&e[5..]);
                        }
                    }
                    b"PX" if len >= 12 => rock.mode = Some(both_u32(e, 4) as u32),
                    b"SL" => rock.symlink = true,
                    b"RE" => rock.relocated = true,
                    b"CL" => rock.child_link = true,
                    b"ST" => stop = true,
                    _ => {}
                }
                if stop {
                    break;
                }
                p += len;
            }
            let Some((block, offset, size)) = next else {
                break;
            };
            if stop {
                break;
            }
            hops += 1;
            self.continuations.set(self.continuations.get() + 1);
            if self.continuations.get() > MAX_CONTINUATIONS_TOTAL {
                return Err(self.corrupt(format!(
                    "more than {MAX_CONTINUATIONS_TOTAL} Rock Ridge continuation areas in \
                     the directories read"
                )));
            }
            if hops > MAX_CONTINUATIONS {
                return Err(self.corrupt(format!(
                    "more than {MAX_CONTINUATIONS} Rock Ridge continuation areas in a row \
                     (a loop?)"
                )));
            }
            if offset + size > self.block_size {
                return Err(self.corrupt(format!(
                    "a Rock Ridge continuation area (block {block}, offset {offset}, \
                     {size} bytes) crosses its block"
                )));
            }
            let blk = self.read_extent(block, self.block_size, "a Rock Ridge continuation area")?;
            area = blk[offset as usize..(offset + size) as usize].to_vec();
        }
        Ok(rock)
    }

    /// Read the file at `path` (a name at the root, or names joined by
    /// `/`, as `openstack/latest/meta_data.json`), at most `limit` bytes;
    /// `Ok(None)` when there is none (nor a directory on the way). `what`
    /// names it in messages.
    pub fn read(&self, path: &str, limit: u64, what: &str) -> Result<Option<Vec<u8>>, FetchError> {
        let what = format!("{what} ({path} on the ISO 9660 seed {})", self.device);
        let Some(e) = self.lookup_path(path, &what)? else {
            return Ok(None);
        };
        let refuse = |message: &str| FetchError::Invalid {
            what: what.clone(),
            message: message.to_string(),
        };
        if e.dir {
            return Err(refuse("a directory, not a regular file"));
        }
        if e.symlink {
            return Err(refuse(
                "a symbolic link; links on a seed are not followed: put the file itself there",
            ));
        }
        if e.special {
            return Err(refuse("not a regular file (Rock Ridge mode)"));
        }
        if e.multi_extent {
            return Err(refuse(
                "a multi-extent file (several directory records), which imprint does not \
                 read; rebuild the seed with cloud-localds or genisoimage",
            ));
        }
        if e.interleaved {
            return Err(refuse(
                "an interleaved file, which imprint does not read; rebuild the seed with \
                 cloud-localds or genisoimage",
            ));
        }
        if e.size > limit {
            return Err(FetchError::TooLarge {
                what,
                size: e.size,
                limit,
            });
        }
        if e.size == 0 {
            return Ok(Some(Vec::new()));
        }
        self.read_extent(e.block, e.size, &format!("{path} on the seed"))
            .map(Some)
    }

    /// The first entry the kernel would open for `name` at the root.
    pub fn lookup(&self, name: &str) -> Option<&Entry> {
        self.find(&self.entries, name)
    }

    /// The first entry of `entries` the kernel would open for `name`.
    fn find<'e>(&self, entries: &'e [Entry], name: &str) -> Option<&'e Entry> {
        entries.iter().find(|e| match self.names {
            Names::Joliet => e
                .name
                .trim_end_matches('.')
                .eq_ignore_ascii_case(name.trim_end_matches('.')),
            _ => e.name == name,
        })
    }

    /// The entries of the directory at `path` (`""` or `"/"`: the root),
    /// as the kernel lists them; `Ok(None)` when there is no such
    /// directory.
    pub fn list(&self, path: &str) -> Result<Option<Vec<Entry>>, FetchError> {
        let path = path.trim_matches('/');
        if path.is_empty() {
            return Ok(Some(self.entries.clone()));
        }
        let what = format!("{path} on the ISO 9660 seed {}", self.device);
        let names = split_path(path, &what)?;
        self.in_dir(&names, &what, |entries| entries.to_vec())
    }

    /// The entry at `path`, walking its directories; `Ok(None)` when a name
    /// on the way is absent.
    fn lookup_path(&self, path: &str, what: &str) -> Result<Option<Entry>, FetchError> {
        let names = split_path(path, what)?;
        let Some((last, dirs)) = names.split_last() else {
            return Ok(None);
        };
        Ok(self
            .in_dir(dirs, what, |entries| self.find(entries, last).cloned())?
            .flatten())
    }

    /// Call `f` with the entries of the directory that `dirs` names, from
    /// the root; `Ok(None)` when one of them is absent. The directory last
    /// walked to is kept for the next call.
    fn in_dir<T>(
        &self,
        dirs: &[&str],
        what: &str,
        f: impl FnOnce(&[Entry]) -> T,
    ) -> Result<Option<T>, FetchError> {
        if dirs.is_empty() {
            return Ok(Some(f(&self.entries)));
        }
        let key = dirs.join("/");
        if let Some((k, entries)) = &*self.last_dir.borrow() {
            if *k == key {
                return Ok(Some(f(entries)));
            }
        }
        let mut entries: Option<Vec<Entry>> = None;
        for (i, name) in dirs.iter().enumerate() {
            let here = entries.as_deref().unwrap_or(&self.entries);
            let Some(e) = self.find(here, name) else {
                return Ok(None);
            };
            let sub = self.descend(e, &dirs[..=i].join("/"), what)?;
            entries = Some(sub);
        }
        let entries = entries.unwrap_or_default();
        let out = f(&entries);
        *self.last_dir.borrow_mut() = Some((key, entries));
        Ok(Some(out))
    }

    /// Read the directory `e` (at `at`, a path from the root) on the way to
    /// what `what` names.
    fn descend(&self, e: &Entry, at: &str, what: &str) -> Result<Vec<Entry>, FetchError> {
        let refuse = |message: String| FetchError::Invalid {
            what: what.to_string(),
            message,
        };
        if e.symlink {
            return Err(refuse(format!(
                "{at} is a symbolic link; links on a seed are not followed: put the \
                 directory itself there"
            )));
        }
        if e.child_link {
            return Err(refuse(format!(
                "{at} is a directory relocated by Rock Ridge (CL), which imprint does not \
                 follow; no path it reads is that deep"
            )));
        }
        if !e.dir || !e.dir_flag || e.special {
            return Err(refuse(format!("{at} is not a directory")));
        }
        if e.multi_extent || e.interleaved {
            return Err(refuse(format!(
                "{at} is a multi-extent or interleaved directory, which imprint does not read"
            )));
        }
        let which = format!("the directory {at}");
        if e.size > MAX_DIR {
            return Err(self.corrupt(format!(
                "{which} is {} bytes, more than imprint reads ({MAX_DIR}); a seed's \
                 directories hold a few files",
                e.size
            )));
        }
        if e.size < 34 {
            return Err(self.corrupt(format!(
                "{which} is {} bytes, too small for its \".\" entry",
                e.size
            )));
        }
        let data = self.read_extent(e.block, e.size, &which)?;
        self.entries_of(&data, &which)
    }
}

/// The names of a path read (`a/b/c`): at most [`MAX_DEPTH`], none empty,
/// `.` or `..`.
fn split_path<'p>(path: &'p str, what: &str) -> Result<Vec<&'p str>, FetchError> {
    let names: Vec<&str> = path.split('/').collect();
    let bad = |message: String| FetchError::Invalid {
        what: what.to_string(),
        message,
    };
    if names.len() > MAX_DEPTH {
        return Err(bad(format!(
            "a path {} names deep; imprint reads at most {MAX_DEPTH} (as deep as ISO 9660 \
             nests directories)",
            names.len()
        )));
    }
    if names
        .iter()
        .any(|n| n.is_empty() || *n == "." || *n == "..")
    {
        return Err(bad(
            "not a relative path of names (an empty name, \".\" or \"..\")".into(),
        ));
    }
    Ok(names)
}

/// The volume descriptors imprint uses: the primary one, and the first
/// Joliet supplementary one.
struct Descriptors {
    primary: Vec<u8>,
    joliet: Option<Vec<u8>>,
}

/// Walk the volume descriptors from sector 16 (at most [`MAX_DESCRIPTORS`]
/// of them, to the terminator). `Ok(Err(why))` when `src` is not ISO 9660
/// (no `CD001` at byte 32768) or has no primary volume descriptor.
fn descriptors<R: ReadAt + ?Sized>(
    src: &R,
    len: u64,
    device: &str,
) -> Result<Result<Descriptors, String>, FetchError> {
    let mut vd = vec![0u8; SECTOR as usize];
    let mut primary: Option<Vec<u8>> = None;
    let mut joliet: Option<Vec<u8>> = None;
    for n in 16..16 + MAX_DESCRIPTORS {
        let at = n * SECTOR;
        if at + SECTOR > len {
            if n == 16 {
                return Ok(Err(format!(
                    "{len} bytes, too small for an ISO 9660 file system"
                )));
            }
            break;
        }
        src.read_exact_at(&mut vd, at)
            .map_err(|source| FetchError::Read {
                what: format!("the volume descriptor at byte {at} of {device}"),
                source,
            })?;
        if &vd[1..6] != b"CD001" {
            if n == 16 {
                return Ok(Err(
                    "no ISO 9660 volume descriptor (CD001) at byte 32768".into()
                ));
            }
            break;
        }
        match vd[0] {
            255 => break,
            1 if primary.is_none() => primary = Some(vd.clone()),
            2 if joliet.is_none()
                && vd[88] == b'%'
                && vd[89] == b'/'
                && matches!(vd[90], b'@' | b'C' | b'E') =>
            {
                joliet = Some(vd.clone())
            }
            _ => {}
        }
    }
    Ok(match primary {
        Some(primary) => Ok(Descriptors { primary, joliet }),
        None => Err("ISO 9660 volume descriptors but no primary one".into()),
    })
}

/// The file-system label of an ISO 9660 image as Linux's blkid reports it
/// (its `LABEL`, which udev's `/dev/disk/by-label` links are named after):
/// the primary volume descriptor's volume identifier, cut at a NUL and
/// trailing spaces dropped; but when a Joliet descriptor's identifier
/// (UCS-2, 16 characters) differs from the first 16 characters of that, the
/// Joliet one. `Ok(None)` when `src` is not ISO 9660 or has no label. Reads
/// only the volume descriptors (from byte 32768, usually three sectors).
pub fn volume_label<R: ReadAt + ?Sized>(
    src: &R,
    len: u64,
    device: &str,
) -> Result<Option<String>, FetchError> {
    let Ok(d) = descriptors(src, len, device)? else {
        return Ok(None);
    };
    let pvd_id = &d.primary[40..72];
    let label = match &d.joliet {
        Some(svd) if !ascii_eq_ucs2(pvd_id, &svd[40..72]) => {
            let units: Vec<u16> = svd[40..72]
                .chunks_exact(2)
                .map(|c| u16::from_be_bytes([c[0], c[1]]))
                .take_while(|&u| u != 0)
                .collect();
            String::from_utf16_lossy(&units)
        }
        _ => {
            let end = pvd_id.iter().position(|&b| b == 0).unwrap_or(pvd_id.len());
            String::from_utf8_lossy(&pvd_id[..end]).into_owned()
        }
    };
    let label = label.trim_end().to_string();
    Ok((!label.is_empty()).then_some(label))
}

/// Whether the UCS-2 big-endian `ucs2` spells the start of `ascii`.
fn ascii_eq_ucs2(ascii: &[u8], ucs2: &[u8]) -> bool {
    ucs2.chunks_exact(2)
        .zip(ascii)
        .all(|(u, &a)| u[0] == 0 && u[1] == a)
}

fn corrupt(device: &str, message: String) -> FetchError {
    FetchError::Invalid {
        what: format!("the ISO 9660 seed {device}"),
        message,
    }
}

/// A Joliet name (UCS-2 big-endian) as the kernel shows it.
fn joliet_name(raw: &[u8]) -> String {
    let units = raw
        .chunks_exact(2)
        .map(|c| u16::from_be_bytes([c[0], c[1]]));
    let mut s: String = char::decode_utf16(units)
        .map(|c| c.unwrap_or(char::REPLACEMENT_CHARACTER))
        .collect();
    if s.len() > 2 && s.ends_with(";1") {
        s.truncate(s.len() - 2);
    }
    while s.len() >= 2 && s.ends_with('.') {
        s.pop();
    }
    s
}

/// A plain ISO 9660 name as the kernel shows it (`map=normal`).
fn plain_name(raw: &[u8]) -> String {
    let len = raw.len();
    let mut out = Vec::with_capacity(len);
    for (i, &c) in raw.iter().enumerate() {
        if c == 0 {
            break;
        }
        if c == b'.' && i + 3 == len && raw[i + 1] == b';' && raw[i + 2] == b'1' {
            break;
        }
        if c == b';' && i + 2 == len && raw[i + 1] == b'1' {
            break;
        }
        out.push(match c.to_ascii_lowercase() {
            b';' | b'/' => b'.',
            c => c,
        });
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_names_as_the_kernel_maps_them() {
        assert_eq!(plain_name(b"USER_DAT.;1"), "user_dat");
        assert_eq!(plain_name(b"META_DAT;1"), "meta_dat");
        assert_eq!(plain_name(b"USER-DATA.;1"), "user-data");
        assert_eq!(plain_name(b"A;2"), "a.2");
        assert_eq!(plain_name(b"AB\0CD"), "ab");
        assert_eq!(plain_name(b"X/Y"), "x.y");
    }

    #[test]
    fn joliet_names_as_the_kernel_maps_them() {
        let enc = |s: &str| -> Vec<u8> { s.encode_utf16().flat_map(|u| u.to_be_bytes()).collect() };
        assert_eq!(joliet_name(&enc("user-data;1")), "user-data");
        assert_eq!(joliet_name(&enc("meta-data.;1")), "meta-data");
        assert_eq!(joliet_name(&enc("x..")), "x");
        assert_eq!(joliet_name(&enc("é;1")), "é");
        // A lone surrogate and an odd byte do not panic.
        assert_eq!(joliet_name(&[0xd8, 0x00, 0x41]), "\u{fffd}");
    }

    #[test]
    fn not_iso_is_declined() {
        let img = vec![0u8; 64 * 1024];
        assert!(matches!(
            Seed::parse(img, 64 * 1024, "/dev/x").unwrap(),
            Opened::Declined(m) if m.contains("CD001")
        ));
        let img = vec![0u8; 1000];
        assert!(matches!(
            Seed::parse(img, 1000, "/dev/x").unwrap(),
            Opened::Declined(m) if m.contains("too small")
        ));
    }
}
