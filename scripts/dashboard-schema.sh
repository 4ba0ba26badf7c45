#!/usr/bin/env bash
# Regenerates dashboards/schema/dashboard.schema.json: the JSON schema of a Grafana dashboard,
# made from the TypeScript types of the @grafana/schema npm package (the Dashboard type of
# dist/esm/raw/dashboard/x/dashboard_types.gen.d.ts) with ts-json-schema-generator.
# Needs node and npm; downloads are cached in $AMPEL_CACHE/npm.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
AMPEL_CACHE="${AMPEL_CACHE:-$HOME/.cache/ampel-monitor}"
# the Grafana version of the pinned grafana-foundation-sdk (constraints.txt), newest patch
GRAFANA_SCHEMA_VERSION="${GRAFANA_SCHEMA_VERSION:-11.6.16}"
# the newest release that runs on Node 18 and 20
GENERATOR_VERSION="${GENERATOR_VERSION:-2.4.0}"
OUT="$ROOT/dashboards/schema/dashboard.schema.json"

export npm_config_cache="$AMPEL_CACHE/npm"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$work"
npm pack --silent "@grafana/schema@$GRAFANA_SCHEMA_VERSION" >/dev/null
tar xzf grafana-schema-*.tgz
npx --yes "ts-json-schema-generator@$GENERATOR_VERSION" \
  --path package/dist/esm/raw/dashboard/x/dashboard_types.gen.d.ts \
  --type Dashboard --no-type-check --out "$work/dashboard.schema.json"
mv "$work/dashboard.schema.json" "$OUT"
echo "$OUT (@grafana/schema $GRAFANA_SCHEMA_VERSION, ts-json-schema-generator $GENERATOR_VERSION)"
