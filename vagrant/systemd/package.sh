# Shared by the 50-package-* scenarios, which run in order: install, the
# watcher, purge (each with the runner's time limit of its own).
VM=/usr/local/lib/memslice-vm
fail() { echo "FAIL: $*"; exit 1; }
now() { cut -d' ' -f1 /proc/uptime; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
note() { echo "$*" >> "$NOTES"; echo "$*"; }
show() { systemctl show -p "$1" --value memslice-heal-watch.service; }
