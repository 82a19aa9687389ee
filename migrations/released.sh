#!/bin/sh
# Prints migrations/released.sum for a release tag: the tag's migration
# files and their SHA-256 (docs/operations/upgrades.md). Run at a release:
#   sh migrations/released.sh v0.30.0 > migrations/released.sum
set -eu
tag=${1:?usage: sh migrations/released.sh TAG > migrations/released.sum}
git rev-parse --verify --quiet "$tag^{commit}" >/dev/null || {
	echo "released.sh: no tag $tag in this clone (git fetch --tags origin)" >&2
	exit 1
}
echo "# The migrations of the last release ($tag) and their SHA-256: released"
echo "# migrations are never edited, and every later one is expand-only unless it"
echo "# says why it may contract (migrations/expand_test.go, docs/operations/upgrades.md)."
echo "# Regenerate at a release: sh migrations/released.sh vX.Y.Z > migrations/released.sum"
echo "release $tag"
git ls-tree --name-only "$tag" migrations/ | grep '\.sql$' | while read -r f; do
	printf '%s  %s\n' "$(git show "$tag:$f" | sha256sum | cut -d' ' -f1)" "${f#migrations/}"
done
