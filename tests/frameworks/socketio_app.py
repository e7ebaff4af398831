"""A Flask-SocketIO app as its docs deploy it (`gunicorn -k eventlet -w 1 module:app`), unchanged:
served by `pasteserve -k eventlet -w 1 tests.frameworks.socketio_app:app`.
"""

from __future__ import annotations

import os

from flask import Flask
from flask_socketio import SocketIO, emit

app = Flask(__name__)
socketio = SocketIO(app, async_mode="eventlet")


@app.get("/")
def index() -> str:
    return f"socketio app in {os.getpid()}"


@socketio.on("echo")
def echo(data):
    emit("echoed", data)          # an event back to the sender
    return {"pid": os.getpid(), "data": data}   # and the acknowledgement


def app_factory(global_conf, **local_conf):
    return app
