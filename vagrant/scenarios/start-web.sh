#!/bin/sh
# Starts the scenario's web service (busybox httpd, which daemonizes) in app/web.
mkdir -p /tmp/www
echo "shop is up" > /tmp/www/index.html
echo $$ > /sys/fs/cgroup/app/web/cgroup.procs
exec httpd -p 127.0.0.1:8080 -h /tmp/www
