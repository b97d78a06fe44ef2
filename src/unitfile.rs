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

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(text: &str) -> Vec<(String, String, String)> {
        let mut out = Vec::new();
        for_each_entry(text, |s, k, v| out.push((s.into(), k.into(), v.into())));
        out
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
