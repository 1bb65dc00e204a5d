#!/bin/sh
# Builds csv-sink.wasm. Uses componentize-py from $PATH when it is there, else installs the
# pinned release (requirements.txt) into .venv here first.
set -eu
cd "$(dirname "$0")"
if ! command -v componentize-py >/dev/null 2>&1; then
    if [ ! -x .venv/bin/componentize-py ]; then
        python3 -m venv .venv
        .venv/bin/pip install --quiet --disable-pip-version-check -r requirements.txt
    fi
    PATH="$PWD/.venv/bin:$PATH"
fi
componentize-py -d wit -w sink-plugin componentize app -o csv-sink.wasm
echo "built csv-sink.wasm; check it with: ratchet plugins test csv-sink.wasm"
