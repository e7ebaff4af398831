"""Logging classes for the INI files of the integration tests."""

from __future__ import annotations

import logging

from tests.integration.hookmod import in_signal_handler, record


class AlwaysInterpolating(logging.Formatter):
    """Like the common colour formatters: always applies `msg % args`, even without args."""

    def format(self, record: logging.LogRecord) -> str:
        record.message = record.msg % record.args
        return f"{record.name} {record.message}"


class ReopenRecorder(logging.FileHandler):
    """A file handler that records, in the hook log, where it was reopened from (USR1)."""

    def setStream(self, stream):
        record("reopen", "in-signal-handler" if in_signal_handler() else "outside-handler")
        return super().setStream(stream)
