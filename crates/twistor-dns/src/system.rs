//! `/etc/resolv.conf` and `/etc/hosts`.
