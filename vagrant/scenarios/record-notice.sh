#!/bin/sh
# The notify hook of the scenarios: keeps each notice, one JSON per line.
cat >> /tmp/notices
