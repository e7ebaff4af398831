"""Worker classes: sync and eventlet."""
