#!/usr/bin/env bash
# Reproduce the vendored renderer of the API reference page (make vendor-redoc):
# internal/api/docsui/redoc.standalone.js and its license files, from the npm
# package redoc at the pinned version, checked against the package's published
# integrity. To upgrade, change both pins (npm view redoc@X dist.integrity),
# run this, and look at /admin/v1/docs before committing.
set -euo pipefail

REDOC_VERSION=2.5.4
REDOC_INTEGRITY=sha512-M6jWhG1qoBnH6TFmzJnstyCZ87HmOY/UzDm78mHiYihEdlV/YcS9ogOo1NlElnJMeLsyxHFe2yFc4sNjHTrABQ==

cd "$(dirname "$0")/.."
dest=internal/api/docsui
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

(cd "$tmp" && npm pack --silent "redoc@$REDOC_VERSION" >/dev/null)
tgz="$tmp/redoc-$REDOC_VERSION.tgz"
got="sha512-$(openssl dgst -sha512 -binary "$tgz" | base64 | tr -d '\n')"
if [ "$got" != "$REDOC_INTEGRITY" ]; then
  echo "redoc@$REDOC_VERSION: integrity $got, want $REDOC_INTEGRITY" >&2
  exit 1
fi
tar -xzf "$tgz" -C "$tmp" package/LICENSE package/bundles/redoc.standalone.js package/bundles/redoc.standalone.js.LICENSE.txt

{
  echo "/* redoc $REDOC_VERSION, bundles/redoc.standalone.js of the npm package, vendored by scripts/vendor-redoc.sh: do not edit. */"
  cat "$tmp/package/bundles/redoc.standalone.js"
} >"$dest/redoc.standalone.js"
cp "$tmp/package/bundles/redoc.standalone.js.LICENSE.txt" "$dest/redoc.standalone.js.LICENSE.txt"
cp "$tmp/package/LICENSE" "$dest/LICENSE-redoc.txt"
echo "vendored redoc $REDOC_VERSION into $dest"
