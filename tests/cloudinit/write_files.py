#!/usr/bin/python3
"""The write_files oracle: Debian's cloud-init writing one user-data's
`write_files` into ROOT, with its own code at every step.

- cloudinit.user_data.UserDataProcessor turns the raw bytes into parts
  (gzip, MIME multipart, part types by header or first line);
- cloudinit.handlers.walk + walker_callback hand each part to
  cloudinit.handlers.cloud_config.CloudConfigPartHandler, which merges the
  cloud-config parts with cloud-init's merge rules (the default
  `dict(replace)+list()+str()`, or a part's `merge_how` / `Merge-Type`);
- cc_write_files.handle (the init stage: entries without `defer`) and then
  cc_write_files_deferred.handle (the final stage: `defer: true`) write
  the files, with the default owner Debian's distro class gives
  (root:root).

Every `path` is put under ROOT (cloud-init writes under `/`): the only
change to cloud-init's behaviour. The umask is 022, as systemd runs
cloud-init's units (UMask= defaults to 0022): the modes of the directories
cloud-init creates come from it.

What it leaves out: the datasource search, the module runner (a module
that raises here stops the run, as it ends that module at boot: files
written before stay), the merge with /etc/cloud/cloud.cfg (which holds no
write_files) and the other modules.

Exit 0: written. Exit 1: a cloud-init module raised (traceback on stderr,
the files written before it stay in ROOT). tests/userdata_write_files_cloudinit.rs
compares ROOT with what `imprint run --root` writes.

With several pairs, each case runs in a child process of its own and the
driver prints one line per case, `STATUS ROOT` (the traceback of a failed
case in ROOT.cloud-state/error); it exits 0.

Usage: write_files.py USER_DATA ROOT [USER_DATA ROOT ...]
"""

import logging
import os
import sys
import traceback
import types

from cloudinit import handlers, helpers, user_data
from cloudinit.config import cc_write_files, cc_write_files_deferred
from cloudinit.handlers.cloud_config import CloudConfigPartHandler
from cloudinit.settings import PER_INSTANCE


def cloud_config(raw, state):
    """The merged cloud-config, as cloud-init's part handler builds it."""
    paths = helpers.Paths({"cloud_dir": state, "run_dir": state})
    msg = user_data.UserDataProcessor(paths).process(raw)
    handler = CloudConfigPartHandler(paths)
    data = {
        "handlers": {t: handler for t in handler.list_types()},
        "data": None,
        "frequency": PER_INSTANCE,
        "handlerdir": state,
        "handlercount": 0,
        # Never import user-supplied Python (none in the corpus anyway).
        "excluded": ["text/part-handler"],
    }
    handler.handle_part(None, handlers.CONTENT_START, None, None, None, None)
    handlers.walk(msg, handlers.walker_callback, data)
    return handler.cloud_buf or {}


def write(ud_path, root):
    """One user-data into ROOT; the exit status (1: a module raised)."""
    os.umask(0o022)
    with open(ud_path, "rb") as f:
        raw = f.read()
    # cloud-init's own scratch space, outside ROOT (ROOT is compared).
    state = root.rstrip("/") + ".cloud-state"
    os.makedirs(state, exist_ok=True)
    cfg = cloud_config(raw, state)
    for entry in cfg.get("write_files") or []:
        if isinstance(entry, dict) and isinstance(entry.get("path"), str):
            entry["path"] = os.path.join(root, entry["path"].lstrip("/"))
    cloud = types.SimpleNamespace(
        distro=types.SimpleNamespace(default_owner="root:root")
    )
    log = logging.getLogger("write_files")
    try:
        cc_write_files.handle("write_files", cfg, cloud, log, [])
        cc_write_files_deferred.handle("write_files_deferred", cfg, cloud, log, [])
    except Exception:
        traceback.print_exc()
        return 1
    return 0


def main(argv):
    args = argv[1:]
    if len(args) < 2 or len(args) % 2:
        sys.stderr.write(__doc__)
        return 64
    if len(args) == 2:
        return write(args[0], args[1])
    # Several cases: each in a child of its own (a fresh cloud-init state,
    # one Python start for all); one line per case on stdout:
    # `STATUS ROOT`, the traceback in ROOT.cloud-state/error.
    for ud_path, root in zip(args[0::2], args[1::2]):
        sys.stdout.flush()
        pid = os.fork()
        if pid == 0:
            os.makedirs(root.rstrip("/") + ".cloud-state", exist_ok=True)
            with open(root.rstrip("/") + ".cloud-state/error", "w") as err:
                os.dup2(err.fileno(), 2)
            os._exit(write(ud_path, root))
        _, status = os.waitpid(pid, 0)
        print(os.waitstatus_to_exitcode(status), root)
    return 0

if __name__ == "__main__":
    sys.exit(main(sys.argv))
