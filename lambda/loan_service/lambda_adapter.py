"""The Lambda entry: Mangum for the HTTP translation, Powertools for logs and EMF metrics.

``Mangum(app, lifespan="off")``: Mangum would otherwise run the ASGI lifespan on EVERY invocation,
so nothing may live there (the model is loaded at import). The path handling for API Gateway
stages and custom-domain base paths lives in ``ExternalPathMiddleware``, not in Mangum's
``api_gateway_base_path``, so ``/docs`` learns its prefix through ``root_path``.

Per invocation: Powertools' ``inject_lambda_context`` adds the Lambda request id and
``cold_start`` to log records; then one EMF document is printed through Powertools' serializer
(plus Powertools' ``ColdStart`` document on the first invocation). Powertools' ``log_metrics``
decorator is not used: with ``add_metric`` it cost ~100 us per invocation here (env reads,
eager debug formatting, a warning per empty flush); ``bench/serving.py`` prints the handler next
to the bare Mangum adapter so the wrapper's cost stays visible.

Events that are not HTTP requests never reach Mangum (``classify_event``):

* a keep-warm ping (an EventBridge ``Scheduled Event``, or ``{"keep_warm": true}``) is answered
  with the model version and nothing else: no app call, no metrics, no log line;
* any other non-HTTP event (``{}``, ``null``, S3/SQS/SNS records, other EventBridge events) is
  refused with ONE structured log line and ``UnsupportedEventError``, so the invoker sees a failed
  invocation with a clear message (an SQS message goes back to its queue and on to its DLQ rather
  than being deleted as if served);
* an HTTP event that cannot be translated (no ``requestContext``, a body flagged base64 that is
  not base64, a missing field Mangum needs) is answered 400 in the API's JSON error shape.
"""

from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import Callable
from typing import Any, Final, Literal

from mangum import Mangum
from mangum.types import ASGI

from loan_service.errors import JSON_CONTENT_TYPE, REQUEST_ID_HEADER, error_body
from loan_service.lambda_shutdown import install_shutdown_drain
from loan_service.middleware import mint_request_id, valid_request_id
from loan_service.service import PredictionService

LambdaHandler = Callable[[Any, Any], dict[str, Any]]
EventKind = Literal["http", "malformed_http", "keep_warm", "unsupported"]

KEEP_WARM_FLAG: Final = "keep_warm"
SCHEDULED_EVENT_SOURCE: Final = "aws.events"
SCHEDULED_EVENT_TYPE: Final = "Scheduled Event"
MALFORMED_EVENT_MESSAGE: Final = "The HTTP event could not be read: {problem}."
# Keys whose presence says "this was meant as an HTTP request" (API Gateway v1/v2, ALB, URLs).
_HTTP_MARKERS: Final = frozenset({"httpMethod", "rawPath", "routeKey", "requestContext"})
_RECORD_SOURCES: Final = {
    "aws:s3": "an S3 event",
    "aws:sqs": "an SQS event",
    "aws:sns": "an SNS event",
    "aws:dynamodb": "a DynamoDB stream event",
    "aws:kinesis": "a Kinesis event",
}

_log = logging.getLogger(__name__)


class UnsupportedEventError(RuntimeError):
    """The function was invoked with an event it does not serve (not an HTTP request)."""


def _is_keep_warm(event: dict[str, Any]) -> bool:
    if event.get(KEEP_WARM_FLAG) is True:
        return True
    return (
        event.get("source") == SCHEDULED_EVENT_SOURCE
        and event.get("detail-type") == SCHEDULED_EVENT_TYPE
    )


def classify_event(event: Any) -> EventKind:
    """What the handler does with ``event``; cheap (a few dict lookups), run on every call."""
    if not isinstance(event, dict):
        return "unsupported"
    if _is_keep_warm(event):
        return "keep_warm"
    context = event.get("requestContext")
    if isinstance(context, dict) and (
        "elb" in context or "resource" in event or "version" in event
    ):
        return "http"
    if _HTTP_MARKERS.intersection(event):
        return "malformed_http"
    return "unsupported"


def describe_event(event: Any) -> str:
    """A short, content-free name for a refused event (never its payload: it may hold data)."""
    if event is None:
        return "null"
    if not isinstance(event, dict):
        return type(event).__name__
    if not event:
        return "an empty object"
    records = event.get("Records")
    if isinstance(records, list) and records and isinstance(records[0], dict):
        return _describe_record(records[0])
    if "source" in event and "detail-type" in event:
        return "an EventBridge event"
    return "an object with keys " + ", ".join(sorted(str(key) for key in event)[:5])


def _describe_record(record: dict[str, Any]) -> str:
    if "cf" in record:
        return "a CloudFront (Lambda@Edge) event"
    source = record.get("eventSource") or record.get("EventSource") or ""
    return _RECORD_SOURCES.get(str(source), "a records event")


def _base64_problem(event: dict[str, Any]) -> str | None:
    """Mangum decodes with ``b64decode`` (non-strict: stray characters vanish); check strictly."""
    body = event.get("body")
    if not event.get("isBase64Encoded") or not body:
        return None
    if not isinstance(body, str):
        return "the body is not a string"
    try:
        base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError):
        return "the body is flagged base64 but is not valid base64"
    return None


def gateway_request_id(event: dict[str, Any]) -> str | None:
    """API Gateway's ``requestContext.requestId`` when it is a usable request id."""
    context = event.get("requestContext")
    if not isinstance(context, dict):
        return None
    offered = context.get("requestId")
    if isinstance(offered, str) and valid_request_id(offered.encode()):
        return offered
    return None


def malformed_response(event: dict[str, Any], problem: str) -> dict[str, Any]:
    """The API's 400 JSON, in a shape every front door accepts (ALB wants a description)."""
    request_id = gateway_request_id(event) or mint_request_id()
    message = MALFORMED_EVENT_MESSAGE.format(problem=problem)
    _log.warning(
        "refused a malformed HTTP event: %s",
        problem,
        extra={"request_id": request_id, "event_kind": "malformed_http"},
    )
    response: dict[str, Any] = {
        "statusCode": 400,
        "headers": {"content-type": JSON_CONTENT_TYPE, REQUEST_ID_HEADER: request_id},
        "body": error_body(400, message, request_id).decode(),
        "isBase64Encoded": False,
    }
    context = event.get("requestContext")
    if isinstance(context, dict) and "elb" in context:
        response["statusDescription"] = "400 Bad Request"
    return response


def build_lambda_handler(app: ASGI, service: PredictionService) -> LambdaHandler:
    asgi_adapter = Mangum(app, lifespan="off")
    observability = service.observability
    if observability.settings.on_lambda:
        install_shutdown_drain(service.prediction_log)  # only where the Runtime API is
    keep_warm_answer: Final = {"status": "warm", "model_version": service.model_version}

    @observability.logger.inject_lambda_context
    def handler(event: Any, context: Any) -> dict[str, Any]:
        kind = classify_event(event)
        if kind == "keep_warm":
            return dict(keep_warm_answer)
        if kind == "unsupported":
            description = describe_event(event)
            _log.warning(
                "refused an event this function does not serve: %s",
                description,
                extra={"event_kind": "unsupported"},
            )
            raise UnsupportedEventError(
                f"this function serves HTTP requests (API Gateway, ALB, function URL); "
                f"it was invoked with {description}"
            )
        if kind == "malformed_http":
            return malformed_response(event, "it has no requestContext")
        problem = _base64_problem(event)
        if problem is not None:
            return malformed_response(event, problem)
        try:
            response = asgi_adapter(event, context)
        except (KeyError, TypeError, ValueError, AttributeError, RuntimeError) as error:
            # Mangum reads the event before the app runs (the app's own errors are answered
            # inside it, by RequestContextMiddleware): this is a field the event lacks.
            return malformed_response(event, f"{type(error).__name__} while reading it")
        observability.emit_invocation_metrics(context)
        return response

    return handler
