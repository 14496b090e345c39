"""Reports the settings it saw at import time and at call time."""

import json
import os

import azure.functions as func

NAMES = ("FromFile", "EnvWins", "EmptyInEnv", "CliWins", "OnlyCli")
AT_IMPORT = {name: os.environ.get(name) for name in NAMES}

app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)


@app.route(route="settings")
def settings(req: func.HttpRequest) -> func.HttpResponse:
    now = {name: os.environ.get(name) for name in NAMES}
    return func.HttpResponse(json.dumps({"import": AT_IMPORT, "call": now}), mimetype="application/json")


@app.route(route="env")
def env(req: func.HttpRequest) -> func.HttpResponse:
    """The app settings named in ?names=A,B as the app sees them."""
    names = req.params.get("names", "").split(",")
    return func.HttpResponse(json.dumps({name: os.environ.get(name) for name in names}), mimetype="application/json")
