#!/usr/bin/env bash
# Generate Python code, gRPC stubs and typed stubs (.pyi) from proto/ into services/.
# The generated files are committed; a test fails when they are stale.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-services}
python=${PYTHON:-.venv/bin/python}
export PATH="$(cd "$(dirname "$python")" && pwd):$PATH"  # protoc-gen-mypy
mapfile -t protos < <(cd proto && find civitas -name '*.proto' | sort)
"$python" -m grpc_tools.protoc -I proto \
  --python_out="$out" --grpc_python_out="$out" --mypy_out="$out" --mypy_grpc_out="$out" \
  "${protos[@]}"
for proto in "${protos[@]}"; do
  dir="$out/$(dirname "$proto")"
  while [ "$dir" != "$out" ] && [ "$dir" != "$out/civitas" ]; do
    [ -f "$dir/__init__.py" ] || : > "$dir/__init__.py"
    dir=$(dirname "$dir")
  done
done
