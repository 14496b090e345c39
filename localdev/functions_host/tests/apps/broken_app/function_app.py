"""The worker refuses this app: the binding is named `req`, the parameter `request`."""

import azure.functions as func

app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)


@app.route(route="broken")
def broken(request: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse("never")
