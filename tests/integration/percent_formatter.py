"""A formatter like the common colour formatters: it always applies `msg % args`, even without args."""

from __future__ import annotations

import logging


class AlwaysInterpolating(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        # What such formatters do instead of record.getMessage(): no check for empty args.
        record.message = record.msg % record.args
        return f"{record.name} {record.message}"
