#!/usr/bin/env bash
# promtool on deploy/prometheus: the scrape config and the alert rules parse, and the alert unit
# tests (tests/deploy/prometheus_alerts_test.yml) pass. promtool exits non-zero on any failure.
# Usage: prometheus_rules_test.sh SOURCE_DIR
set -euo pipefail
src=$1
promtool check config "$src/deploy/prometheus/prometheus.yml"
promtool check rules "$src/deploy/prometheus/alerts.yml"
promtool test rules "$src/tests/deploy/prometheus_alerts_test.yml"
