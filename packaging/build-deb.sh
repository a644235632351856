#!/usr/bin/env bash
# Build observer_VERSION_all.deb from the checkout this script is in, with Debian's tools.
#
#   bash packaging/build-deb.sh [DIR]    the package (and lintian's report) into DIR
#                                        (default: the current directory)
#
# Needs the build dependencies in packaging/deb/debian/control (packaging/dev-setup.sh
# installs them) and pip's access to PyPI for the two pure-Python wheels Debian 12 lacks
# (packaging/deb/vendored.txt pins them by hash). Fails if lintian reports an error.
# DEBFULLNAME and DEBEMAIL name who built it in the changelog.
set -euo pipefail

SOURCE=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUTPUT=$(mkdir -p "${1:-.}" && cd "${1:-.}" && pwd)

say() { printf 'observer build-deb: %s\n' "$*"; }
die() { printf 'observer build-deb: error: %s\n' "$*" >&2; exit 1; }

version=$(/usr/bin/python3 -c 'import sys, tomllib; print(tomllib.load(open(sys.argv[1], "rb"))["project"]["version"])' \
    "$SOURCE/pyproject.toml")
[[ $version =~ ^[0-9][0-9A-Za-z.+~-]*$ ]] || die "pyproject.toml's version '$version' is no Debian version"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
tree=$work/observer-$version
mkdir "$tree"
# Only what the package is made of, without caches.
tar -C "$SOURCE" --exclude=__pycache__ --exclude='*.pyc' -cf - pyproject.toml README.md observer \
    packaging/observer.service packaging/observer.toml | tar -C "$tree" -xf -
cp -r "$SOURCE/packaging/deb/debian" "$tree/debian"

say "fetching the wheels Debian lacks (packaging/deb/vendored.txt)"
/usr/bin/python3 -m pip download --quiet --disable-pip-version-check --no-cache-dir --no-deps \
    --only-binary=:all: --require-hashes -r "$SOURCE/packaging/deb/vendored.txt" -d "$tree/vendor" ||
    die "pip could not fetch them (above: why); PIP_INDEX_URL / PIP_FIND_LINKS point it elsewhere"

# The changelog names the version; its date is the last commit's, so that a build is reproducible.
date=$(git -C "$SOURCE" log -1 --format=%aD 2>/dev/null || date -R)
cat >"$tree/debian/changelog" <<CHANGELOG
observer ($version) unstable; urgency=medium

  * observer $version (packaging/build-deb.sh).

 -- ${DEBFULLNAME:-observer developers} <${DEBEMAIL:-observer@example.org}>  $date
CHANGELOG

say "building observer $version"
(cd "$tree" && dpkg-buildpackage -b -us -uc) >"$work/build.log" 2>&1 || {
    tail -40 "$work/build.log" >&2
    die "dpkg-buildpackage failed (above: the end of its log)"
}
deb=observer_${version}_all.deb
cp "$work/$deb" "$OUTPUT/"
say "lintian $deb"
lintian --fail-on error --info "$OUTPUT/$deb" | tee "$OUTPUT/$deb.lintian" ||
    die "lintian reports errors (above; also in $OUTPUT/$deb.lintian)"
say "built $OUTPUT/$deb"
