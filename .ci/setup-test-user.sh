#!/usr/bin/env bash
# Creates the unprivileged account the interop tests log in as (password and
# keyboard-interactive auth need a real account with a known password).
# Idempotent: safe to run on every CI run. Must run as root.
# The name and password must match `testUser` in test/support/peers.ts.
set -euo pipefail

TEST_USER_NAME="effectssh"
TEST_USER_PASSWORD="effect-ssh-test-pw"
TEST_USER_HOME="/home/${TEST_USER_NAME}"

if [ "$(id -u)" -ne 0 ]; then
  echo "setup-test-user: must run as root" >&2
  exit 1
fi

if ! id -u "$TEST_USER_NAME" >/dev/null 2>&1; then
  useradd --create-home --home-dir "$TEST_USER_HOME" --shell /bin/sh "$TEST_USER_NAME"
fi
# Re-applied every time so a drifted account (other shell, locked password) is repaired.
if [ "$(getent passwd "$TEST_USER_NAME" | cut -d: -f7)" != "/bin/sh" ]; then
  usermod --shell /bin/sh "$TEST_USER_NAME"
fi
mkdir -p "$TEST_USER_HOME"
chown "$TEST_USER_NAME:" "$TEST_USER_HOME"
chmod 755 "$TEST_USER_HOME"
echo "${TEST_USER_NAME}:${TEST_USER_PASSWORD}" | chpasswd
echo "setup-test-user: ${TEST_USER_NAME} ready (home ${TEST_USER_HOME})"
