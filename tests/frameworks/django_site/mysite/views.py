"""Views that report what Django saw of the request pasteserve handed it."""

import os

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt


@csrf_exempt
def echo(request: HttpRequest) -> JsonResponse:
    return JsonResponse({
        "pid": os.getpid(),
        "method": request.method,
        "path": request.path,
        "query": request.GET.dict(),
        "body": request.body.decode("utf-8"),
        "content_type": request.content_type,
    })


def guarded(request: HttpRequest) -> HttpResponse:
    # CSRF is enforced here: a POST without a token must be refused by Django's middleware.
    return HttpResponse("guarded")


def boom(request: HttpRequest) -> HttpResponse:
    raise RuntimeError("boom requested by the test")
