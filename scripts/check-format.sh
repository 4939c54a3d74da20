#!/usr/bin/env bash
# Checks (or, with --fix, applies) the house format: `swift format` with .swift-format.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = "--fix" ]; then
    swift format format --in-place --recursive Package.swift Sources Tests
else
    swift format lint --strict --recursive Package.swift Sources Tests
fi
