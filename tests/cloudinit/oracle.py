#!/usr/bin/python3
"""The differential oracle: cloud-init's own user-data processor.

Runs Debian's cloud-init (cloudinit.user_data.UserDataProcessor, the code
that turns raw user-data into the parts its handlers see) over one
user-data file and prints, as JSON, every part it produced:

    {"parts": [{"content_type": ..., "filename": ..., "document": ...}]}

`document` is the part's YAML as cloud-init's own loader reads it
(util.load_yaml: a mapping, else null) for text/cloud-config parts, and
null for the others. tests/userdata_cloudinit.rs compares this with
`imprint fetch --json`.

--base64 decodes the file first: a payload that is base64 as a whole
(Terraform's base64_encode = true) is decoded by the platform (EC2's
user_data_base64, Azure's custom_data, ...) before cloud-init sees it,
while imprint decodes it itself.

Usage: oracle.py [--base64] FILE
"""

import base64
import datetime
import json
import sys
import tempfile

from cloudinit import helpers, user_data, util


def plain(value):
    """JSON-safe: dates and bytes as the strings imprint holds (!!binary:
    its text when it is UTF-8, else the base64 it was written as)."""
    if isinstance(value, (datetime.date, datetime.datetime)):
        return value.isoformat()
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return base64.b64encode(value).decode("ascii")
    raise TypeError(f"unexpected {type(value).__name__} in a document")


def main(argv):
    args = argv[1:]
    b64 = False
    if args and args[0] == "--base64":
        b64 = True
        args = args[1:]
    if len(args) != 1:
        sys.stderr.write(__doc__)
        return 64
    with open(args[0], "rb") as f:
        raw = f.read()
    if b64:
        raw = base64.b64decode(b"".join(raw.split()), validate=True)
    with tempfile.TemporaryDirectory() as tmp:
        paths = helpers.Paths({"cloud_dir": tmp, "run_dir": tmp})
        msg = user_data.UserDataProcessor(paths).process(raw)
    parts = []
    for part in msg.walk():
        if user_data.is_skippable(part):
            continue
        ctype = part.get_content_type()
        document = None
        if ctype == "text/cloud-config":
            payload = util.fully_decoded_payload(part)
            document = util.load_yaml(payload)
        parts.append(
            {
                "content_type": ctype,
                "filename": part.get_filename(),
                "document": document,
            }
        )
    json.dump({"parts": parts}, sys.stdout, default=plain, indent=1, sort_keys=True)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
