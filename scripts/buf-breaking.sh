#!/usr/bin/env bash
# Checks the working tree's protos for breaking changes against a git ref.
#
# Usage: scripts/buf-breaking.sh <git-ref>     (e.g. main)
#
# `buf breaking --against '.git#branch=<ref>'` only sees tracked files, and
# buf/validate/validate.proto is printed into the git-ignored
# third_party/protovalidate, so that fails with "imported file does not exist".
# Instead we extract the ref's proto/ with `git archive` into a temp dir, lay it
# out like the workspace (current buf.yaml + printed validate.proto) and let buf
# compare the two directories. Exits with buf's code (100 on a breaking change);
# exits 0 with a message when the ref or its proto/ does not exist yet.
set -euo pipefail

ref="${1:?usage: scripts/buf-breaking.sh <git-ref>}"
root="$(git rev-parse --show-toplevel)"
cd "$root"

if ! git rev-parse --verify --quiet "${ref}^{commit}" >/dev/null; then
  echo "buf-breaking: git ref '${ref}' does not exist; nothing to compare against."
  exit 0
fi
if ! git cat-file -e "${ref}:proto" 2>/dev/null; then
  echo "buf-breaking: '${ref}' has no proto/ directory; nothing to compare against."
  exit 0
fi

# Prefer the project's pinned buf; fall back to one on PATH.
buf="${root}/node_modules/.bin/buf"
[ -x "$buf" ] || buf="buf"
print_validate=(node --import tsx "${root}/scripts/print-validate-proto.ts")

against="$(mktemp -d "${TMPDIR:-/tmp}/buf-breaking.XXXXXX")"
trap 'rm -rf "$against"' EXIT

git archive --format=tar "$ref" proto | tar -x -C "$against"
# The current buf.yaml gives both sides the same module layout.
cp buf.yaml "$against/"
"${print_validate[@]}" "$against/third_party/protovalidate"
"${print_validate[@]}" third_party/protovalidate

status=0
"$buf" breaking . --against "$against" || status=$?
if [ "$status" -eq 0 ]; then
  echo "buf-breaking: no breaking changes against '${ref}'."
fi
exit "$status"
