#!/usr/bin/env bash
# Every command in README.md and docs/*.md runs, so the docs cannot rot.
# Run by tests/all.sh (after cargo test: it runs cargo itself).
#
# The rules, for whoever writes docs:
# - Commands go in ```sh blocks. Each block runs as one `sh -e` script from
#   the repository's top directory, with `imprint` on PATH (the debug
#   build), TMPDIR and HOME in a scratch directory, and Terraform's update
#   check off. It must exit 0, or the code its first lines announce with
#   `# exit: N` (for a block that shows a failure).
# - A block that cannot run here (it needs a VM, a real instance, root on a
#   real machine, or it is this very suite) starts with
#   `# not run: REASON`; the reason is required and is printed.
# - ```bash, ```shell and ```console blocks are refused: they would look
#   like tested commands without being run. Output goes in ```text (or a
#   block without a language).
# - A block must not change the source tree (checked with git status), so
#   commands write under "$TMPDIR" or a `mktemp -d` directory.
# - Relative links ([text](path)) must point to files that exist.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"

work=$(mktemp -d "${TMPDIR:-/tmp}/imprint-docs-test.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/bin" "$work/tmp" "$work/home" "$work/blocks"

cargo build --quiet
ln -s "$top/target/debug/imprint" "$work/bin/imprint"

docs=(README.md docs/*.md)
# cargo and rustup keep working with HOME moved to the scratch directory.
rustup_home=${RUSTUP_HOME:-$HOME/.rustup}
cargo_home=${CARGO_HOME:-$HOME/.cargo}
failures=0
fail() { echo "FAIL: $*" >&2; failures=$((failures + 1)); }

# --- relative links -----------------------------------------------------------
for f in "${docs[@]}"; do
	dir=$(dirname "$f")
	# [text](target) with a relative target; anchors and URLs skipped.
	{ grep -o '\](\([^)#: ]*\)[)#]' "$f" || true; } | sed 's/^](//; s/[)#]$//' | sort -u | while read -r target; do
		[ -n "$target" ] || continue
		[ -e "$dir/$target" ] || echo "$f: link to $target: no such file"
	done
done >"$work/links"
if [ -s "$work/links" ]; then
	while read -r l; do fail "$l"; done <"$work/links"
fi

# --- extract the blocks -----------------------------------------------------------
# Each ```sh block becomes blocks/N.sh; blocks/N.where holds FILE:LINE.
for f in "${docs[@]}"; do
	awk -v f="$f" -v out="$work/blocks" '
		BEGIN { n = 0 }
		/^```/ {
			if (inblock) { inblock = 0; if (take) close(file); next }
			inblock = 1; lang = substr($0, 4); sub(/[ \t].*/, "", lang); take = 0
			if (lang == "bash" || lang == "shell" || lang == "console" || lang == "shell-session") {
				printf "%s:%d: ```%s block: use ```sh (run by tests/docs.sh) or ```text for output\n", f, NR, lang > (out "/refused")
			}
			if (lang == "sh") {
				take = 1
				name = f; gsub(/[\/.]/, "_", name)
				file = sprintf("%s/%s-%05d.sh", out, name, NR)
				print f ":" (NR + 1) > (file ".where"); close(file ".where")
				printf "" > file
			}
			next
		}
		inblock && take { print > file }
	' "$f"
done
if [ -s "$work/blocks/refused" ]; then
	while read -r l; do fail "$l"; done <"$work/blocks/refused"
fi

# --- run them -------------------------------------------------------------------
before=$(git status --porcelain --untracked-files=all)
ran=0 skipped=0
for block in "$work"/blocks/*.sh; do
	[ -e "$block" ] || continue
	where=$(cat "$block.where")
	first=$(head -n 1 "$block")
	case "$first" in
	"# not run:"*)
		reason=${first#"# not run:"}
		reason=${reason# }
		if [ -z "$reason" ]; then
			fail "$where: '# not run:' needs a reason"
		else
			echo "skip: $where ($reason)"
			skipped=$((skipped + 1))
		fi
		continue
		;;
	"# not run"*) fail "$where: write '# not run: REASON' exactly"; continue ;;
	esac
	want=0
	w=$(sed -n '1,3s/^# exit: \([0-9][0-9]*\)$/\1/p' "$block" | head -n 1)
	[ -z "$w" ] || want=$w
	rc=0
	env -i PATH="$work/bin:$PATH" HOME="$work/home" TMPDIR="$work/tmp" LANG=C.UTF-8 \
		RUSTUP_HOME="$rustup_home" CARGO_HOME="$cargo_home" \
		IMPRINT="$top/target/debug/imprint" CHECKPOINT_DISABLE=1 \
		timeout 600 sh -e "$block" >"$work/out" 2>&1 || rc=$?
	if [ "$rc" != "$want" ]; then
		fail "$where: exited $rc, expected $want; the block:"
		sed 's/^/    | /' "$block" >&2
		echo "  its output (last 30 lines):" >&2
		tail -n 30 "$work/out" | sed 's/^/    > /' >&2
	else
		echo "ok: $where (exit $rc)"
	fi
	ran=$((ran + 1))
	after=$(git status --porcelain --untracked-files=all)
	if [ "$after" != "$before" ]; then
		fail "$where: the block changed the source tree:"
		diff <(echo "$before") <(echo "$after") >&2 || true
		before=$after
	fi
done

echo "docs: $ran block(s) run, $skipped not run (with reasons), $failures failure(s)"
[ "$failures" = 0 ]
