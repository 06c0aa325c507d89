#!/bin/sh
# The scale test's child: a first line, a marker file ($1), then sleep. Tiny, so 1000 of them
# measure the manager rather than 1000 interpreter start-ups.
echo "up sleep pid=$$"
: > "$1"
exec sleep 1000000
