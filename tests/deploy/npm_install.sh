#!/bin/bash
# Installs the validation tooling of the deploy tests (package.json and
# package-lock.json beside this script) into DIR with `npm ci`; again only
# when the lock file changed. Usage: npm_install.sh DIR
set -eu
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
dir="$1"
mkdir -p "$dir"
if [ -d "$dir/node_modules" ] && cmp -s "$here/package-lock.json" "$dir/package-lock.json"; then
  echo "deploy test tooling already installed in $dir"
  exit 0
fi
cp "$here/package.json" "$here/package-lock.json" "$dir/"
cd "$dir"
npm ci --no-audit --no-fund
