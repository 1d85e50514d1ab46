#!/usr/bin/env bash
# Idempotent system set-up for SupportTracker on Debian/Ubuntu with Rust installed.
# Installs what is missing: PostgreSQL >= 15 server binaries (package `postgresql`),
# pkg-config, cargo-nextest, and (when ST_NEED_BROWSER=1) the test tools: chromium +
# chromium-driver, python3-aiosmtpd (the SMTP server of the tests), hledger and beancount
# (the ledger export's checkers).
# Fast (well under 2 s) when everything is already there.
set -euo pipefail

MIN_PG=15
CARGO=${CARGO:-cargo}

say() { printf 'setup: %s\n' "$*" >&2; }

# Prints the bin dir of PostgreSQL >= MIN_PG server binaries, or fails.
pg_bin_dir() {
    local d v
    has_server() { [ -x "$1/initdb" ] && [ -x "$1/pg_ctl" ] && [ -x "$1/postgres" ]; }
    if [ -n "${ST_PG_BIN_DIR:-}" ]; then
        has_server "$ST_PG_BIN_DIR" && { echo "$ST_PG_BIN_DIR"; return 0; }
        return 1
    fi
    for v in $(ls /usr/lib/postgresql 2>/dev/null | grep -E '^[0-9]+$' | sort -rn); do
        [ "$v" -ge "$MIN_PG" ] || continue
        d=/usr/lib/postgresql/$v/bin
        has_server "$d" && { echo "$d"; return 0; }
    done
    if command -v pg_config >/dev/null 2>&1; then
        v=$(pg_config --version 2>/dev/null | awk '{print $2}' | grep -oE '^[0-9]+' || true)
        d=$(pg_config --bindir 2>/dev/null || true)
        if [ -n "$v" ] && [ "$v" -ge "$MIN_PG" ] && has_server "$d"; then
            echo "$d"
            return 0
        fi
    fi
    return 1
}

apt_pkgs=()
pg_bin_dir >/dev/null || apt_pkgs+=(postgresql)
command -v pkg-config >/dev/null 2>&1 || apt_pkgs+=(pkg-config)
if [ "${ST_NEED_BROWSER:-0}" = 1 ]; then
    { command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; } \
        || apt_pkgs+=(chromium)
    command -v chromedriver >/dev/null 2>&1 || apt_pkgs+=(chromium-driver)
    # The integration tests' SMTP server (tests/src/smtp.rs).
    /usr/bin/python3 -c 'import aiosmtpd' >/dev/null 2>&1 || apt_pkgs+=(python3-aiosmtpd)
    # The ledger export's checkers (tests/it/ledger_export.rs): hledger is required,
    # beancount's bean-check is used when this distribution packages it.
    command -v hledger >/dev/null 2>&1 || apt_pkgs+=(hledger)
    if ! command -v bean-check >/dev/null 2>&1 && command -v apt-cache >/dev/null 2>&1 \
        && [ -n "$(apt-cache policy beancount 2>/dev/null | awk '/Candidate:/ && $2 != "(none)" {print $2}')" ]; then
        apt_pkgs+=(beancount)
    fi
fi

# How to run privileged commands: directly as root, sudo without a password, or not at all.
if [ "$(id -u)" = 0 ]; then
    SUDO=()
    as_root=yes
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO=(sudo -n)
    as_root=yes
else
    SUDO=(sudo)
    as_root=no
fi

if [ ${#apt_pkgs[@]} -gt 0 ]; then
    if ! command -v apt-get >/dev/null 2>&1; then
        say "missing: ${apt_pkgs[*]} (and no apt-get here); install them with your package manager"
        exit 1
    fi
    if [ "$as_root" = no ]; then
        say "missing: ${apt_pkgs[*]}. Install them with:"
        printf '  sudo apt-get update && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y %s\n' \
            "${apt_pkgs[*]}" >&2
        exit 1
    fi
    say "installing ${apt_pkgs[*]}"
    "${SUDO[@]}" apt-get update
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y "${apt_pkgs[@]}"
fi

if ! pg_bin_dir >/dev/null; then
    say "PostgreSQL >= $MIN_PG server binaries are still missing (this distribution's"
    say "\`postgresql\` package is older?). Install PostgreSQL >= $MIN_PG (for example from"
    say "https://apt.postgresql.org) or set ST_PG_BIN_DIR to its bin directory."
    exit 1
fi

# PostgreSQL refuses to run as root: a root process runs the private cluster as `postgres`.
if [ "$(id -u)" = 0 ] && ! getent passwd postgres >/dev/null 2>&1; then
    say "creating the postgres system user"
    useradd --system --user-group --home-dir /var/lib/postgresql --shell /bin/bash postgres
fi

if ! "$CARGO" nextest --version >/dev/null 2>&1; then
    say "installing cargo-nextest (cargo install --locked cargo-nextest)"
    "$CARGO" install --locked cargo-nextest
fi
