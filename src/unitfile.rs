//! The `Key=value` entries of a unit file or drop-in, read as systemd reads
//! them (systemd.syntax(7)): `#` and `;` comment lines skipped, a line
//! ending in `\` continued on the next, whitespace around the key, the `=`
//! and the value ignored (`EnvironmentFile = /x` is `EnvironmentFile=/x`).
//! The generator reads `[Unit]` ordering with it, render the `[Service]`
//! `EnvironmentFile=` paths.

/// Call `f(section, key, value)` for every entry of `text`, in order;
/// `section` is the name between the brackets of the last section header
/// (`Unit`, `Service`, ...), empty before the first.
pub fn for_each_entry(text: &str, mut f: impl FnMut(&str, &str, &str)) {
    let mut section = String::new();
    let mut logical = String::new();
    for raw in text.lines() {
        let line = raw.trim();
        if logical.is_empty() && (line.starts_with('#') || line.starts_with(';')) {
            continue;
        }
        if let Some(cont) = line.strip_suffix('\\') {
            logical.push_str(cont);
            logical.push(' ');
            continue;
        }
        let joined;
        let l = if logical.is_empty() {
            line
        } else {
            logical.push_str(line);
            joined = std::mem::take(&mut logical);
            joined.trim()
        };
        if let Some(name) = l.strip_prefix('[') {
            section.clear();
            section.push_str(name.strip_suffix(']').unwrap_or(name).trim());
            continue;
        }
        if let Some((k, v)) = l.split_once('=') {
            f(&section, k.trim(), v.trim());
        }
    }
}

/// Where system unit files and drop-ins live, in systemd's order of
/// precedence.
pub const UNIT_DIRS: &[&str] = &[
    "/etc/systemd/system",
    "/run/systemd/system",
    "/usr/local/lib/systemd/system",
    "/usr/lib/systemd/system",
    "/lib/systemd/system",
];

/// The texts systemd reads for the system unit `unit` under `root`, in the
/// order it applies them: the unit file (of the first unit directory that
/// has one; `None` when none has), then its drop-ins (`UNIT.d/*.conf` of
/// every unit directory, the first directory's of each name, sorted by
/// name), each with its path in the root. Read inside the root
/// ([`crate::root::Root::confined`]); unreadable files, and files over
/// 1 MiB, are skipped. Type-wide drop-ins (`service.d/`) and aliases are
/// not looked at.
pub fn unit_texts(root: &crate::root::Root, unit: &str) -> (Option<String>, Vec<(String, String)>) {
    use std::io::Read as _;
    use std::path::Path;
    let Some(open) = root.confined() else {
        return (None, Vec::new());
    };
    let read = |rel: &Path| -> Option<String> {
        let (f, _) = open.regular(rel).ok().filter(|&(_, n)| n <= 1 << 20)?;
        let mut text = String::new();
        f.take(1 << 20).read_to_string(&mut text).ok()?;
        Some(text)
    };
    let mut main = None;
    let mut dropins: std::collections::BTreeMap<String, std::path::PathBuf> = Default::default();
    let mut seen = Vec::new();
    for dir in UNIT_DIRS {
        let dir = Path::new(dir.trim_start_matches('/'));
        // Each directory once: with a merged /usr, /lib/systemd/system is
        // /usr/lib/systemd/system.
        match open.list(dir) {
            Some((id, _)) if seen.contains(&id) => continue,
            Some((id, _)) => seen.push(id),
            None => continue,
        }
        if main.is_none() {
            main = read(&dir.join(unit));
        }
        let d = dir.join(format!("{unit}.d"));
        for name in open.list(&d).map(|(_, names)| names).unwrap_or_default() {
            if name.ends_with(".conf") {
                dropins.entry(name.clone()).or_insert_with(|| d.join(name));
            }
        }
    }
    let dropins = dropins
        .values()
        .filter_map(|p| Some((format!("/{}", p.display()), read(p)?)))
        .collect();
    (main, dropins)
}

/// A duration as a `Timeout*Sec=` value: `120s`, `1500ms`.
pub fn format_span(d: std::time::Duration) -> String {
    if d.subsec_nanos() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

/// A systemd time span (systemd.time(7)): `90`, `90s`, `2min`, `1h 30min`,
/// `500ms`. `Some(None)`: no limit (`infinity`, or `0`, which a
/// `Timeout*Sec=` takes as none); `None`: not a time span.
pub fn timespan(v: &str) -> Option<Option<std::time::Duration>> {
    let v = v.trim();
    if v == "infinity" {
        return Some(None);
    }
    let mut total = 0f64;
    let mut rest = v;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let n: f64 = rest[..num_len].parse().ok()?;
        rest = rest[num_len..].trim_start();
        let unit_len = rest
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "" | "s" | "sec" | "second" | "seconds" => 1.0,
            "ms" | "msec" => 1e-3,
            "us" | "usec" => 1e-6,
            "m" | "min" | "minute" | "minutes" => 60.0,
            "h" | "hr" | "hour" | "hours" => 3600.0,
            "d" | "day" | "days" => 86400.0,
            "w" | "week" | "weeks" => 604800.0,
            _ => return None,
        };
        total += n * scale;
        rest = rest[unit_len..].trim_start();
    }
    if v.is_empty() {
        return None;
    }
    Some((total > 0.0).then(|| std::time::Duration::from_secs_f64(total)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(text: &str) -> Vec<(String, String, String)> {
        let mut out = Vec::new();
        for_each_entry(text, |s, k, v| out.push((s.into(), k.into(), v.into())));
        out
    }

    #[test]
    fn time_spans() {
        use std::time::Duration;
        for (v, want) in [
            ("120", Some(Some(Duration::from_secs(120)))),
            ("120s", Some(Some(Duration::from_secs(120)))),
            ("2min", Some(Some(Duration::from_secs(120)))),
            ("1h 30min", Some(Some(Duration::from_secs(5400)))),
            ("1min30s", Some(Some(Duration::from_secs(90)))),
            ("500ms", Some(Some(Duration::from_millis(500)))),
            ("1.5s", Some(Some(Duration::from_millis(1500)))),
            ("infinity", Some(None)),
            ("0", Some(None)),
            ("", None),
            ("5 parsecs", None),
            ("x", None),
        ] {
            assert_eq!(timespan(v), want, "{v:?}");
        }
    }

    #[test]
    fn reads_as_systemd_does() {
        let got = entries(
            "Top=1\n[Unit]\n# After=commented.service\n; Before=also.service\n\
             After = a.service \\\n  b.service\nDescription=x = y\n\n\
             [Service]\n  EnvironmentFile =  -/etc/default/app  \nno equals sign\n",
        );
        let want = [
            ("", "Top", "1"),
            ("Unit", "After", "a.service  b.service"),
            ("Unit", "Description", "x = y"),
            ("Service", "EnvironmentFile", "-/etc/default/app"),
        ];
        let want: Vec<(String, String, String)> = want
            .iter()
            .map(|(s, k, v)| (s.to_string(), k.to_string(), v.to_string()))
            .collect();
        assert_eq!(got, want);
    }
}
