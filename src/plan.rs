//! Stage 7, plan: compare each rendered file with what is on disk (content,
//! mode, owner); only changes are written, only units whose files changed
//! are restarted or reloaded (SPEC §1.7).
//!
//! [`read_disk`] is the one impure half (reads the targets and the root's
//! passwd/group); [`plan`] is pure.
//!
//! Owners: a file with no `owner` is root's (0:0), as cloud-init's
//! `write_files` default `root:root`. `user` alone means the user's login
//! group (as `chown user:` does; cloud-init would leave the group as it
//! was). Names are resolved against the *root's* `/etc/passwd` and
//! `/etc/group`, never the host's: under `--root` the image's users count.
//! `root` resolves to 0 even when the root has no passwd file.

use crate::error::ExitCode;
use crate::model::OwnerSpec;
use crate::render::{Rendered, RenderedFile, UNIT_DIRS};
use crate::root::Root;
use crate::secret::{self, Secrets, MASK};
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// A file as it is on disk now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Existing {
    pub content: Vec<u8>,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

/// What is on disk for every rendered path, and resolved owners.
#[derive(Debug, Clone, Default)]
pub struct Disk {
    /// Path -> existing file (absent: `None`).
    pub files: BTreeMap<String, Option<Existing>>,
    /// Owner spec text (`user[:group]`) -> (uid, gid).
    pub owners: BTreeMap<String, (u32, u32)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    Create,
    Content,
    Metadata,
}

/// One file to write.
#[derive(Debug, Clone, PartialEq)]
pub struct FileChange {
    pub file: RenderedFile,
    /// Final bytes (for `append`, existing + new).
    pub content: Vec<u8>,
    pub uid: u32,
    pub gid: u32,
    pub kind: ChangeKind,
    pub previous: Option<Existing>,
}

/// What apply will do.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    pub changes: Vec<FileChange>,
    /// Paths already as rendered.
    pub unchanged: Vec<String>,
    pub daemon_reload: bool,
    pub restart: Vec<String>,
    pub reload: Vec<String>,
    pub enable: Vec<String>,
    pub secrets: Secrets,
}

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("failed to read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("failed to resolve owner {owner:?} of {path}: {message}")]
    Owner {
        path: String,
        owner: String,
        message: String,
    },
}

impl PlanError {
    pub fn exit_code(&self) -> ExitCode {
        match self {
            PlanError::Read { .. } => ExitCode::CantCreate,
            PlanError::Owner { .. } => ExitCode::DataErr,
        }
    }
}

/// Read what is on disk for every rendered file (the impure half): each
/// target's content, mode and owner (not following a symlink: a target that
/// is a symlink or a directory is an error), and every owner named, resolved
/// against the root's `/etc/passwd` and `/etc/group`.
///
/// Reads go through a cap-std directory handle on the root, so a path whose
/// parent is a symlink leading outside the root fails here as in apply.
pub fn read_disk(root: &Root, rendered: &Rendered) -> Result<Disk, PlanError> {
    use cap_std::fs::MetadataExt as _;
    let rerr = |path: &str, source: std::io::Error| PlanError::Read {
        path: path.to_string(),
        source,
    };
    let dir = cap_std::fs::Dir::open_ambient_dir(root.dir(), cap_std::ambient_authority())
        .map_err(|e| rerr(&root.dir().display().to_string(), e))?;
    let mut disk = Disk::default();
    for f in &rendered.files {
        let rel = Root::rel(&f.path).ok_or_else(|| {
            rerr(
                &f.path,
                std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    "not a path inside the root",
                ),
            )
        })?;
        let existing =
            match dir.symlink_metadata(&rel) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                Err(e) => return Err(rerr(&f.path, e)),
                Ok(md) if md.file_type().is_symlink() => {
                    return Err(rerr(
                        &f.path,
                        std::io::Error::other(
                            "it is a symbolic link; imprint never writes through one: \
                         remove the link from the image or write its target's path",
                        ),
                    ))
                }
                Ok(md) if !md.is_file() => return Err(rerr(
                    &f.path,
                    std::io::Error::other(
                        "it is not a regular file (a directory?); remove it or choose another path",
                    ),
                )),
                Ok(md) => Some(Existing {
                    content: dir.read(&rel).map_err(|e| rerr(&f.path, e))?,
                    mode: md.mode() & 0o7777,
                    uid: md.uid(),
                    gid: md.gid(),
                }),
            };
        disk.files.insert(f.path.clone(), existing);
    }
    let mut db: Option<(Vec<Entry>, Vec<Entry>)> = None;
    for f in &rendered.files {
        let Some(o) = &f.owner else { continue };
        let key = o.to_string();
        if disk.owners.contains_key(&key) {
            continue;
        }
        let (users, groups) =
            db.get_or_insert_with(|| (read_db(&dir, "etc/passwd"), read_db(&dir, "etc/group")));
        let ids = resolve(o, users, groups).map_err(|message| PlanError::Owner {
            path: f.path.clone(),
            owner: key.clone(),
            message,
        })?;
        disk.owners.insert(key, ids);
    }
    Ok(disk)
}

/// One line of passwd or group: name, id, and (passwd) the login group.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    name: String,
    id: u32,
    gid: Option<u32>,
}

fn read_db(dir: &cap_std::fs::Dir, rel: &str) -> Vec<Entry> {
    dir.read_to_string(rel)
        .map(|t| parse_db(&t))
        .unwrap_or_default()
}

/// Parse `/etc/passwd` or `/etc/group` text (`name:x:id:gid-or-members:...`);
/// comments, blank and malformed lines (and NIS `+`/`-` lines) are skipped.
fn parse_db(text: &str) -> Vec<Entry> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.starts_with('+') && !l.starts_with('-'))
        .filter_map(|l| {
            let mut f = l.split(':');
            let name = f.next()?.trim();
            let _pw = f.next()?;
            let id = f.next()?.trim().parse().ok()?;
            let gid = f.next().and_then(|g| g.trim().parse().ok());
            (!name.is_empty()).then(|| Entry {
                name: name.to_string(),
                id,
                gid,
            })
        })
        .collect()
}

/// Resolve `user[:group]` to ids (pure, for tests).
fn resolve(o: &OwnerSpec, users: &[Entry], groups: &[Entry]) -> Result<(u32, u32), String> {
    let user = users.iter().find(|e| e.name == o.user);
    let uid = match (o.user.parse::<u32>(), user) {
        (Ok(n), _) => n,
        (Err(_), Some(e)) => e.id,
        (Err(_), None) if o.user == "root" => 0,
        (Err(_), None) => {
            return Err(format!(
                "no user {:?} in the root's /etc/passwd; create it in the image \
                 (useradd, or a systemd-sysusers file), or give a numeric uid",
                o.user
            ))
        }
    };
    let gid = match &o.group {
        None => match user {
            Some(e) => e.gid.unwrap_or(0),
            None if o.user == "root" => 0,
            None => {
                let by_id = users.iter().find(|e| e.id == uid).and_then(|e| e.gid);
                by_id.ok_or_else(|| {
                    format!(
                        "uid {uid} has no entry in the root's /etc/passwd to take its login \
                         group from; write the group too, as {uid}:GID"
                    )
                })?
            }
        },
        Some(g) => match (g.parse::<u32>(), groups.iter().find(|e| &e.name == g)) {
            (Ok(n), _) => n,
            (Err(_), Some(e)) => e.id,
            (Err(_), None) if g == "root" => 0,
            (Err(_), None) => {
                return Err(format!(
                    "no group {g:?} in the root's /etc/group; create it in the image \
                     (groupadd, or a systemd-sysusers file), or give a numeric gid"
                ))
            }
        },
    };
    Ok((uid, gid))
}

/// Whether a path is a unit file or a drop-in (a change needs
/// `daemon-reload`): a unit-named file directly in one of [`UNIT_DIRS`], or a
/// `*.conf` in a `*.d` directory there.
pub fn is_unit_path(path: &str) -> bool {
    let Some((dir, name)) = path.rsplit_once('/') else {
        return false;
    };
    if UNIT_DIRS.contains(&dir) && crate::manifest::is_unit_name(name) {
        return true;
    }
    if let Some((parent, dname)) = dir.rsplit_once('/') {
        return name.ends_with(".conf")
            && dname.len() > 2
            && dname.ends_with(".d")
            && UNIT_DIRS.contains(&parent);
    }
    false
}

/// Compare and decide (pure). Only files whose content, mode or owner differ
/// become changes; units are restarted or reloaded only for changed files
/// (in order, each once; a unit both restarted and reloaded is restarted).
pub fn plan(rendered: Rendered, disk: &Disk) -> Result<Plan, PlanError> {
    let mut plan = Plan {
        enable: rendered.enable.clone(),
        secrets: rendered.secrets.clone(),
        ..Plan::default()
    };
    for file in rendered.files {
        let (uid, gid) = match &file.owner {
            None => (0, 0),
            Some(o) => *disk
                .owners
                .get(&o.to_string())
                .ok_or_else(|| PlanError::Owner {
                    path: file.path.clone(),
                    owner: o.to_string(),
                    message: "not resolved (read_disk was not given this file)".into(),
                })?,
        };
        let previous = disk.files.get(&file.path).cloned().flatten();
        let content = match (&previous, file.append) {
            (Some(p), true) => {
                let mut c = p.content.clone();
                c.extend_from_slice(&file.content);
                c
            }
            _ => file.content.clone(),
        };
        let kind = match &previous {
            None => Some(ChangeKind::Create),
            Some(p) if p.content != content => Some(ChangeKind::Content),
            Some(p) if p.mode != file.mode.0 || p.uid != uid || p.gid != gid => {
                Some(ChangeKind::Metadata)
            }
            Some(_) => None,
        };
        let Some(kind) = kind else {
            plan.unchanged.push(file.path);
            continue;
        };
        // systemd reads a unit file's content, not its mode or owner: a
        // metadata-only change needs no daemon-reload (costly at boot).
        if is_unit_path(&file.path) && kind != ChangeKind::Metadata {
            plan.daemon_reload = true;
        }
        for u in &file.restart {
            if !plan.restart.contains(u) {
                plan.restart.push(u.clone());
            }
        }
        for u in &file.reload {
            if !plan.reload.contains(u) {
                plan.reload.push(u.clone());
            }
        }
        plan.changes.push(FileChange {
            file,
            content,
            uid,
            gid,
            kind,
            previous,
        });
    }
    let restart = plan.restart.clone();
    plan.reload.retain(|u| !restart.contains(u));
    Ok(plan)
}

/// Whether bytes are shown as text in a diff (UTF-8 without NUL).
fn text_of(bytes: &[u8]) -> Option<&str> {
    std::str::from_utf8(bytes)
        .ok()
        .filter(|t| !t.contains('\0'))
}

/// A line split from its end of line (`\n`, `\r\n` or `\r`, as
/// `similar` splits lines; empty on a last line without one).
fn split_eol(line: &str) -> (&str, &str) {
    let body = line
        .strip_suffix("\r\n")
        .or_else(|| line.strip_suffix('\n'))
        .or_else(|| line.strip_suffix('\r'))
        .unwrap_or(line);
    (body, &line[body.len()..])
}

/// Each line of `text` (`lines`: `text` split in order, ends of line kept),
/// every secret masked. Secrets are found in the whole text, so one that
/// spans lines (a PEM key) masks its part of each line; overlapping
/// occurrences are masked as one.
fn masked_lines(text: &str, lines: &[&str], secrets: &Secrets) -> Vec<String> {
    let mut found: Vec<(usize, usize)> = Vec::new();
    for s in secrets.iter() {
        let mut from = 0;
        while let Some(at) = text[from..].find(s) {
            let at = from + at;
            found.push((at, at + s.len()));
            from = at + s.chars().next().map_or(1, char::len_utf8);
        }
    }
    found.sort_unstable();
    let mut ranges: Vec<(usize, usize)> = Vec::new();
    for (a, b) in found {
        match ranges.last_mut() {
            Some(last) if a < last.1 => last.1 = last.1.max(b),
            _ => ranges.push((a, b)),
        }
    }
    let mut out = Vec::with_capacity(lines.len());
    let mut off = 0;
    for line in lines {
        let (body, eol) = split_eol(line);
        let end = off + body.len();
        let mut shown = String::with_capacity(line.len());
        let mut pos = off;
        for &(a, b) in ranges.iter().filter(|&&(a, b)| a < end && b > off) {
            shown.push_str(&text[pos..a.max(pos)]);
            shown.push_str(MASK);
            pos = b.min(end);
        }
        shown.push_str(&text[pos..end]);
        shown.push_str(eol);
        out.push(shown);
        off += line.len();
    }
    out
}

/// Where a shown part of an old line may stop: a separator between a key
/// and its value in the usual shapes (`k=v`, `k: v`, `k v`, `"k": "v",`,
/// `<k>v</k>`, `k = v` in INI, `user:v@host` in URLs).
fn is_separator(c: char) -> bool {
    c.is_whitespace() || "=:\"'<>[](){},;@&?|".contains(c)
}

/// What an old line (without its end of line) provably shares with one
/// masked line of the new rendering, as shown by the plan: the length of its
/// prefix that is also the new line's text before its first mask, and of its
/// suffix that is also the new line's text after its last mask. Both are cut
/// back to a separator (a prefix ends with one, a suffix starts with one), so
/// that a value is hidden whole rather than its first or last characters
/// shown, unless together they cover the whole old line.
fn shared_with(old: &str, new: &str) -> (usize, usize) {
    let head = new.find(MASK).map_or(new, |i| &new[..i]);
    let tail = new.rfind(MASK).map_or(new, |i| &new[i + MASK.len()..]);
    let p = old
        .char_indices()
        .zip(head.chars())
        .take_while(|((_, a), b)| a == b)
        .last()
        .map_or(0, |((i, c), _)| i + c.len_utf8());
    let rest = &old[p..];
    let s = rest
        .char_indices()
        .rev()
        .zip(tail.chars().rev())
        .take_while(|((_, a), b)| a == b)
        .last()
        .map_or(0, |((i, _), _)| rest.len() - i);
    if p + s == old.len() {
        return (p, s);
    }
    let p = old[..p]
        .char_indices()
        .rev()
        .find(|&(_, c)| is_separator(c))
        .map_or(0, |(i, c)| i + c.len_utf8());
    let end = &old[old.len() - s..];
    let s = end.find(is_separator).map_or(0, |i| end.len() - i);
    (p, s)
}

/// The word a line is paired by: its first word after leading blanks and
/// separators (`requirepass`, `DB_HOST`, `pw` of `  "pw": ...`, `pass` of
/// `<pass>...`).
fn pair_key(line: &str) -> &str {
    let t = line.trim_start_matches(is_separator);
    &t[..t.find(is_separator).unwrap_or(t.len())]
}

/// At most this many new lines of one key are tried for an old line (any
/// choice is safe: this only bounds the work on files with many lines of one
/// key).
const PAIR_TRIES: usize = 64;

/// An old line of a file whose old text may hold a secret, as shown: kept
/// when the plan shows the same text as a line of the new rendering
/// (`shown_in_new`), else only what it shares with
/// the best of `candidates` (new lines that replace it), the rest one
/// mask. `old` is already masked for the secrets known to the run.
fn hide_old_line<'a>(
    old: &str,
    shown_in_new: bool,
    candidates: impl Iterator<Item = &'a str>,
) -> String {
    let (body, eol) = split_eol(old);
    if shown_in_new {
        return old.to_string();
    }
    let (p, s) = candidates
        .map(|n| shared_with(body, split_eol(n).0))
        .max_by_key(|&(p, s)| (p + s, p))
        .unwrap_or((0, 0));
    if p + s == body.len() {
        return old.to_string();
    }
    format!("{}{MASK}{}{eol}", &body[..p], &body[body.len() - s..])
}

/// Whether a line names a secret: a word (letters, digits, `_`) ending like
/// a secret key (`password`, `secret`, `token`, `key`), or in `pass`,
/// `passwd`, `pwd`, `passphrase`, `auth`, `credential(s)` (`requirepass`,
/// `masterauth`).
fn names_a_secret(line: &str) -> bool {
    line.split(|c: char| !(c.is_alphanumeric() || c == '_'))
        .filter(|w| !w.is_empty())
        .any(|w| {
            let w = w.to_lowercase();
            secret::is_secret_key(&w)
                || [
                    "pass",
                    "passwd",
                    "pwd",
                    "passphrase",
                    "auth",
                    "credential",
                    "credentials",
                ]
                .iter()
                .any(|s| w.ends_with(s))
        })
}

/// How much of a file's texts its diff shows.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Reveal {
    /// Both texts, secrets masked.
    All,
    /// The new text, secrets masked; an old line only as far as
    /// [`hide_old_line`] allows (the old text may hold a secret:
    /// [`old_may_hold_secret`]).
    New,
    /// No line of either text, each one `********`: the content of a
    /// `write_files` entry that others will not be able to read. Holds why,
    /// for the `+++` line ([`hidden_why`]).
    Nothing(String),
}

/// Why a file's content is hidden from the plan: [`crate::render::hidden_why`]
/// (a `write_files` entry others will not be able to read).
fn hidden_why(c: &FileChange) -> Option<String> {
    crate::render::hidden_why(&c.file)
}

/// A unified diff of `old` to `new` (3 lines of context), secrets masked.
/// The diff is of the real texts, so a line whose secret changes shows as
/// changed; each line is then shown masked, or as `reveal` allows. With
/// [`Reveal::Nothing`] every line, context too, is one `********` (its end
/// of line kept), so the hunks still say how much changed, and the `+++`
/// line says why.
fn masked_diff(
    a: &str,
    b: &str,
    old: &str,
    new: &str,
    reveal: &Reveal,
    secrets: &Secrets,
) -> String {
    use similar::DiffOp;
    let diff = similar::TextDiff::from_lines(old, new);
    let (old_lines, new_lines) = (diff.old_slices(), diff.new_slices());
    let (old_shown, new_shown) = if let Reveal::Nothing(_) = reveal {
        let hide = |lines: &[&str]| -> Vec<String> {
            lines
                .iter()
                .map(|l| format!("{MASK}{}", split_eol(l).1))
                .collect()
        };
        (hide(old_lines), hide(new_lines))
    } else {
        (
            masked_lines(old, old_lines, secrets),
            masked_lines(new, new_lines, secrets),
        )
    };
    let private = *reveal == Reveal::New;
    // What the plan shows of the new text (not the raw lines: a raw line
    // may be masked there, as part of a secret that spans lines).
    let new_set: std::collections::HashSet<&str> = new_shown.iter().map(String::as_str).collect();
    let mut s = String::new();
    let line = |s: &mut String, tag: char, raw: &str, shown: &str| {
        s.push(tag);
        s.push_str(shown);
        if split_eol(raw).1.is_empty() {
            s.push_str("\n\\ No newline at end of file\n");
        }
    };
    for (k, group) in diff.grouped_ops(3).iter().enumerate() {
        if k == 0 {
            let _ = match reveal {
                Reveal::Nothing(why) => writeln!(s, "--- {a}\n+++ {b} ({why})"),
                _ => writeln!(s, "--- {a}\n+++ {b}"),
            };
        }
        let _ = writeln!(s, "{}", similar::udiff::UnifiedHunkHeader::new(group));
        for op in group {
            let (o, n) = (op.old_range(), op.new_range());
            if let DiffOp::Equal { .. } = op {
                for j in n {
                    line(&mut s, ' ', new_lines[j], &new_shown[j]);
                }
                continue;
            }
            // The new lines an old line is compared with: those of the
            // change with its key, and the few at its place in the change
            // (not all of them: a long file rewritten whole stays linear).
            let mut by_key: std::collections::HashMap<&str, Vec<usize>> = Default::default();
            if private {
                for j in n.clone() {
                    let bucket = by_key.entry(pair_key(&new_shown[j])).or_default();
                    if bucket.len() < PAIR_TRIES {
                        bucket.push(j);
                    }
                }
            }
            for i in o.clone() {
                let shown = if private {
                    let at = n.start + (i - o.start) * n.len() / o.len();
                    let near = at.saturating_sub(2).max(n.start)..(at + 3).min(n.end);
                    let keyed = by_key.get(pair_key(&old_shown[i])).into_iter().flatten();
                    hide_old_line(
                        &old_shown[i],
                        new_set.contains(old_shown[i].as_str()),
                        keyed.copied().chain(near).map(|j| new_shown[j].as_str()),
                    )
                } else {
                    old_shown[i].clone()
                };
                line(&mut s, '-', old_lines[i], &shown);
            }
            for j in n {
                line(&mut s, '+', new_lines[j], &new_shown[j]);
            }
        }
    }
    s
}

/// Whether a file's old text may hold a secret imprint does not know (one of
/// the image, or of a previous instance): when the new rendering holds one,
/// when the file was or will be unreadable by others (imprint writes files
/// holding secrets 0600), when it holds a secret of this run, or when a line
/// of it that goes away names a secret.
fn old_may_hold_secret(c: &FileChange, old: &str, new: &str, secrets: &Secrets) -> bool {
    let Some(p) = &c.previous else {
        return false;
    };
    if c.file.holds_secret
        || p.mode & 0o004 == 0
        || c.file.mode.0 & 0o004 == 0
        || secrets.contains_any(old.as_bytes())
    {
        return true;
    }
    let new_lines: std::collections::HashSet<&str> = new.lines().collect();
    old.lines()
        .any(|l| !new_lines.contains(l) && names_a_secret(l))
}

fn owner_text(uid: u32, gid: u32) -> String {
    format!("{uid}:{gid}")
}

/// `root:app (0:990)` when the owner was named, else `0:0`.
fn owner_named(c: &FileChange) -> String {
    match &c.file.owner {
        Some(o) if o.to_string() != owner_text(c.uid, c.gid) => {
            format!("{o} ({})", owner_text(c.uid, c.gid))
        }
        _ => owner_text(c.uid, c.gid),
    }
}

impl Plan {
    /// The plan as text: one line per change and a unified diff per file,
    /// secret values masked, the content of a `write_files` entry others
    /// will not be able to read hidden (`hidden_why`).
    pub fn display(&self) -> String {
        let mut s = String::new();
        if self.changes.is_empty() {
            let _ = writeln!(
                s,
                "no changes: {} file(s) already as rendered",
                self.unchanged.len()
            );
        }
        for c in &self.changes {
            let path = &c.file.path;
            let mode = c.file.mode;
            match (&c.previous, c.kind) {
                (None, _) | (_, ChangeKind::Create) => {
                    let _ = writeln!(
                        s,
                        "create   {path} (mode {mode}, owner {}, {} bytes)",
                        owner_named(c),
                        c.content.len()
                    );
                }
                (Some(p), kind) => {
                    let word = if kind == ChangeKind::Content {
                        "modify  "
                    } else {
                        "metadata"
                    };
                    let mut what = Vec::new();
                    if p.mode != mode.0 {
                        what.push(format!("mode {:04o} -> {mode}", p.mode));
                    }
                    if (p.uid, p.gid) != (c.uid, c.gid) {
                        what.push(format!(
                            "owner {} -> {}",
                            owner_text(p.uid, p.gid),
                            owner_named(c)
                        ));
                    }
                    if kind == ChangeKind::Content {
                        what.push(if c.file.append {
                            "content appended".to_string()
                        } else {
                            "content".to_string()
                        });
                    }
                    let _ = writeln!(s, "{word} {path} ({})", what.join(", "));
                }
            }
        }
        for p in &self.unchanged {
            let _ = writeln!(s, "unchanged {p}");
        }
        if self.daemon_reload {
            let _ = writeln!(s, "daemon-reload");
        }
        for u in &self.enable {
            let _ = writeln!(s, "enable   {u}");
        }
        for u in &self.restart {
            let _ = writeln!(s, "restart  {u} (if active)");
        }
        for u in &self.reload {
            let _ = writeln!(s, "reload   {u} (if active)");
        }
        for c in &self.changes {
            if c.kind == ChangeKind::Metadata {
                continue;
            }
            let old_bytes = c
                .previous
                .as_ref()
                .map(|p| p.content.as_slice())
                .unwrap_or(b"");
            let path = &c.file.path;
            match (text_of(old_bytes), text_of(&c.content)) {
                (Some(old), Some(new)) => {
                    let a = if c.previous.is_some() {
                        format!("a{path}")
                    } else {
                        "/dev/null".to_string()
                    };
                    let reveal = if let Some(why) = hidden_why(c) {
                        Reveal::Nothing(why)
                    } else if old_may_hold_secret(c, old, new, &self.secrets) {
                        Reveal::New
                    } else {
                        Reveal::All
                    };
                    s.push_str(&masked_diff(
                        &a,
                        &format!("b{path}"),
                        old,
                        new,
                        &reveal,
                        &self.secrets,
                    ));
                }
                _ => {
                    let _ = writeln!(
                        s,
                        "--- {path}: binary, {} bytes\n+++ {path}: binary, {} bytes",
                        old_bytes.len(),
                        c.content.len()
                    );
                }
            }
        }
        s
    }
}
