"""pasteserve: a pre-fork WSGI HTTP/1.1 server for PasteDeploy apps."""

__version__ = "0.1.0.dev0"
