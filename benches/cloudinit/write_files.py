#!/usr/bin/python3
"""cloud-init's path for the comparison in docs/benchmarks.md: Debian's
cloud-init turning raw user-data into written files, as a whole process.

The same steps cloud-init takes at boot for `write_files`, with its own code:
cloudinit.user_data.UserDataProcessor (gzip, MIME multipart, part types),
util.load_yaml for each text/cloud-config part, util.mergemanydict to
combine them, and cc_write_files.write_files (decoding, permissions,
chownbyname, util.write_file), every path put under ROOT instead of `/`.

What it leaves out, to be fair to cloud-init: its datasource search, its
four systemd units, its module runner and its other modules. imprint's run
does more than this (manifest, templates, plan, journal, fsync of every file
and directory, seal, report).

cloud-init does not base64-decode user-data itself (the platform does:
EC2's user_data_base64, ...), so benches/compare.sh gives both tools the same
gzip-only bytes.

Usage: write_files.py USER_DATA ROOT
"""

import os
import sys

from cloudinit import helpers, user_data, util
from cloudinit.config import cc_write_files


def main(argv):
    if len(argv) != 3:
        sys.stderr.write(__doc__)
        return 64
    ud_path, root = argv[1], argv[2]
    with open(ud_path, "rb") as f:
        raw = f.read()
    state = os.path.join(root, "var", "lib", "cloud")
    os.makedirs(state, exist_ok=True)
    paths = helpers.Paths({"cloud_dir": state, "run_dir": state})
    msg = user_data.UserDataProcessor(paths).process(raw)
    docs = []
    for part in msg.walk():
        if user_data.is_skippable(part):
            continue
        if part.get_content_type() == "text/cloud-config":
            docs.append(util.load_yaml(util.fully_decoded_payload(part)) or {})
    cfg = util.mergemanydict(list(reversed(docs)))
    files = []
    for f in cfg.get("write_files", []):
        f = dict(f)
        f["path"] = os.path.join(root, f["path"].lstrip("/"))
        files.append(f)
    if not files:
        sys.stderr.write("no write_files in the user-data: nothing compared\n")
        return 65
    cc_write_files.write_files("write_files", files, "root:root")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
