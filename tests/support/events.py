"""Lambda events for tests and benchmarks: real shapes loaded from JSON, re-aimed by one helper.

``tests/functional/events/`` holds the project's shapes (HTTP API v2, REST v1, ALB, function URL),
``../shared/events/`` AWS's own samples, ``lambda/events/`` the samples ``make lambda-invoke``
sends. Standard library only, so a cold-start probe can import it.
"""

from __future__ import annotations

import base64
import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

from tests.support.lambda_context import FakeLambdaContext
from tests.support.paths import PROJECT_EVENTS_DIR, SAMPLE_EVENTS_DIR, SHARED_EVENTS_DIR

# The four front doors (HTTP API v2, REST v1, ALB, function URL): the project's shapes, and AWS's
# own samples of the same four where ../shared/events is present.
PROJECT_EVENTS: Final = (
    "apigw-http-v2-prod-stage.json",
    "apigw-rest-v1-prod-stage.json",
    "alb-target.json",
    "lambda-function-url.json",
)
SHARED_EVENTS: Final = (
    "apiGatewayProxyV2Event.json",
    "apiGatewayProxyEvent.json",
    "albEvent.json",
    "lambdaFunctionUrlEvent.json",
)


def load_event(directory: Path, name: str) -> dict[str, Any]:
    event: dict[str, Any] = json.loads((directory / name).read_text(encoding="utf-8"))
    return event


def load_project_event(name: str) -> dict[str, Any]:
    return load_event(PROJECT_EVENTS_DIR, name)


def load_shared_event(name: str) -> dict[str, Any]:
    return load_event(SHARED_EVENTS_DIR, name)


def load_sample_event(name: str) -> dict[str, Any]:
    return load_event(SAMPLE_EVENTS_DIR, name)


def shape_event(
    event: dict[str, Any],
    method: str,
    path: str,
    *,
    body: Any = None,
    headers: dict[str, str] | None = None,
    base64_body: bool = False,
) -> dict[str, Any]:
    """Point a real event shape at ``method path`` with a JSON ``body`` (the shape's own keys)."""
    shaped = copy.deepcopy(event)
    text = None if body is None else (body if isinstance(body, str) else json.dumps(body))
    if text is not None and base64_body:
        shaped["body"] = base64.b64encode(text.encode()).decode()
    else:
        shaped["body"] = text
    shaped["isBase64Encoded"] = bool(base64_body and text is not None)
    new_headers = {"content-type": "application/json"} if headers is None else dict(headers)
    context = shaped.setdefault("requestContext", {})
    if shaped.get("version") == "2.0":  # HTTP API v2 and function URLs
        shaped["rawPath"] = path
        shaped["rawQueryString"] = ""
        shaped.pop("cookies", None)
        context.setdefault("http", {})
        context["http"]["method"] = method
        context["http"]["path"] = path
        shaped["headers"] = new_headers
    else:  # REST v1 and ALB
        shaped["httpMethod"] = method
        shaped["path"] = path
        shaped["queryStringParameters"] = None
        shaped["multiValueQueryStringParameters"] = None
        shaped["headers"] = new_headers
        if "multiValueHeaders" in shaped:
            shaped["multiValueHeaders"] = {key: [value] for key, value in new_headers.items()}
        if "httpMethod" in context:
            context["httpMethod"] = method
    return shaped


def response_json(response: dict[str, Any]) -> Any:
    body = response.get("body") or ""
    if response.get("isBase64Encoded"):
        body = base64.b64decode(body).decode()
    return json.loads(body)


def response_header(response: dict[str, Any], name: str) -> str | None:
    headers = {key.lower(): value for key, value in (response.get("headers") or {}).items()}
    value = headers.get(name.lower())
    if value is None:
        multi = {
            key.lower(): values for key, values in (response.get("multiValueHeaders") or {}).items()
        }
        values = multi.get(name.lower())
        value = values[0] if values else None
    return value


def http_api_event(path: str, body: dict[str, Any]) -> dict[str, Any]:
    """A minimal API Gateway HTTP API (payload 2.0) ``POST path`` event with a JSON ``body``."""
    return {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": "",
        "headers": {
            "content-type": "application/json",
            "host": "bench.execute-api.eu-west-1.amazonaws.com",
            "x-forwarded-proto": "https",
            "x-forwarded-port": "443",
        },
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "bench",
            "domainName": "bench.execute-api.eu-west-1.amazonaws.com",
            "http": {
                "method": "POST",
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": "203.0.113.10",
                "userAgent": "bench",
            },
            "requestId": "bench",
            "routeKey": "$default",
            "stage": "$default",
        },
        "body": json.dumps(body),
        "isBase64Encoded": False,
    }


def invoke(handler: Callable[[Any, Any], dict[str, Any]], event: Any) -> dict[str, Any]:
    """``handler(event, context)`` as the Lambda runtime calls it, with the fake context."""
    return handler(event, FakeLambdaContext())
