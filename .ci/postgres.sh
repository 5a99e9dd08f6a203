#!/bin/sh
# Make PostgreSQL available for the store tests (tests/test_store_*.py).
#
# The tests start their own throwaway cluster (initdb + pg_ctl in a temp dir,
# 127.0.0.1 on a free port, trust auth, removed afterwards; see tests/pg.py), so
# all CI needs is the server binaries. Nothing is started here, no password is
# created and nothing secret is exported.
#
# Usage:  sh .ci/postgres.sh && python -m pytest tests/test_store_contract.py tests/test_store_postgres.py
# To use an existing server instead, set TEST_DATABASE_URL=postgresql://user:pass@host:port/db
# (the user needs the CREATE privilege on that database; each test uses a fresh schema).
set -eu

find_bin() {
    for dir in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -t/ -k5 -V -r); do
        if [ -x "$dir/initdb" ] && [ -x "$dir/pg_ctl" ]; then echo "$dir"; return 0; fi
    done
    if command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1; then
        dirname "$(command -v initdb)"; return 0
    fi
    return 1
}

if ! bin=$(find_bin); then
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "PostgreSQL is not installed and apt-get is not available:" >&2
        echo "install the PostgreSQL server binaries (initdb, pg_ctl) and set TEST_PG_BIN." >&2
        exit 1
    fi
    sudo=""
    if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
    echo "Installing PostgreSQL (Debian/Ubuntu package 'postgresql')..."
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq postgresql >/dev/null
    bin=$(find_bin) || { echo "postgresql installed, but initdb/pg_ctl not found" >&2; exit 1; }
fi

echo "PostgreSQL server binaries: $bin ($("$bin/postgres" --version))"
if [ "$(id -u)" -eq 0 ] && ! id postgres >/dev/null 2>&1 && ! id nobody >/dev/null 2>&1; then
    echo "Running as root: the tests need a 'postgres' or 'nobody' user to run PostgreSQL as." >&2
    exit 1
fi
echo "The store tests start their own throwaway cluster from these binaries."
echo "(Optional) export TEST_PG_BIN=$bin"
