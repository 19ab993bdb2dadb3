#!/usr/bin/env bash
# The import boundary: only internal/api (and its console) may import Fiber (or fasthttp).
set -euo pipefail
bad=$(go list -f '{{.ImportPath}}: {{join .Imports " "}}' ./... \
  | grep -E 'github.com/(gofiber/fiber|valyala/fasthttp)' \
  | grep -v -E '^github.com/postgate/postgate/internal/api(/console)?:' || true)
if [ -n "$bad" ]; then
  echo "only internal/api may import Fiber; these packages do:" >&2
  echo "$bad" | cut -d: -f1 >&2
  exit 1
fi
echo "import boundary ok"
