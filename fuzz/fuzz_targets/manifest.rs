//! Any text as the manifest: the run's reader (src/manifest.rs, with the
//! YAML composer and the error locator) and the generator's must not panic
//! or hang, and they must agree: whatever the run takes, the generator takes
//! too, and it orders exactly the units the run would restart, reload or
//! enable (the property test in tests/generator.rs, on any input).
#![no_main]

use imprint::manifest::Manifest;
use libfuzzer_sys::fuzz_target;
use std::collections::BTreeSet;
use std::path::Path;

fn units_of(m: &Manifest) -> BTreeSet<String> {
    let mut out: BTreeSet<String> = m
        .files
        .iter()
        .flat_map(|f| f.restart.iter().chain(&f.reload))
        .chain(&m.enable)
        .cloned()
        .collect();
    if !m.ssh_host_keys.is_empty() {
        out.extend(["ssh.service".to_string(), "sshd.service".to_string()]);
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let run = imprint::manifest::parse(Path::new("/m.yaml"), text, Path::new("/nonexistent"));
    let gen = imprint::generator::wanted(Some(text), "");
    if let Ok(m) = &run {
        let w = gen.unwrap_or_else(|e| panic!("the run takes what the generator refuses: {e}"));
        let got: BTreeSet<String> = w.units.iter().cloned().collect();
        assert_eq!(got, units_of(m));
    }
});
