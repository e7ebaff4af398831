"""Benchmark harness: pasteserve measured side by side with Gunicorn and waitress."""
