"""Bridge from a real Dovecot into the daemon: the Lua script, config setup, a test harness."""
