#!/usr/bin/env bash
# The Debian packages the slow tests need: PostgreSQL (initdb/pg_ctl) and headless Chromium with its
# driver. Installs only what is missing (idempotent, quiet); needs root or sudo.
set -euo pipefail
missing=()
command -v pg_ctl > /dev/null || compgen -G "/usr/lib/postgresql/*/bin/pg_ctl" > /dev/null || missing+=(postgresql)
command -v chromium > /dev/null || missing+=(chromium)
command -v chromedriver > /dev/null || missing+=(chromium-driver)
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "installing ${missing[*]} (Debian packages the slow tests use)"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" > /dev/null
fi
