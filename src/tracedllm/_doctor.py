"""``tracedllm check``: whether a tracing setup works, on one screen; and the helpers it shares
with the other commands (where spans go, whether a collector answers, terminal-width text)."""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import shutil
import socket
import sys
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TextIO

import httpx
from opentelemetry import metrics, trace

from . import attributes as attr
from ._content import ENV_VAR as CAPTURE_ENV_VAR
from ._content import CaptureMode, capture_mode
from ._loopback import LoopbackServer, Reply, sse_body
from ._version import __version__
from .errors import TracedLLMError

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import ReadableSpan, TracerProvider

__all__ = [
    "OTLPTarget",
    "check",
    "otlp_target",
    "quiet_exporter_logs",
    "tcp_problem",
    "terminal_width",
    "wrap_row",
]

CONNECT_TIMEOUT = 0.5
"""Seconds a TCP connect to the collector may take before it counts as unreachable."""
EXPORT_TIMEOUT = 2.0
"""Seconds ``check`` lets its one export take (retries included), unless the environment sets
``OTEL_EXPORTER_OTLP_[TRACES_]TIMEOUT``."""
CHECK_PROMPT = "Reply with the word OK."
_ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
_EXPORTER_LOGGERS = ("opentelemetry.exporter", "opentelemetry.sdk")


# --- shared with the other commands -----------------------------------------------------------


def terminal_width() -> int:
    """The terminal's width in columns (``$COLUMNS`` first; 80 when not a terminal)."""
    return max(shutil.get_terminal_size().columns, 40)


def wrap_row(label: str, value: str, *, indent: int, width: int | None = None) -> list[str]:
    """``label`` padded to ``indent`` columns, then ``value`` wrapped to the terminal width.

    Words are never broken (an id longer than the line stays whole); continuation lines are
    indented under the value.
    """
    width = width or terminal_width()
    room = max(width - indent, 20)
    lines = textwrap.wrap(
        value, room, break_long_words=False, break_on_hyphens=False, replace_whitespace=True
    ) or [""]
    return [label.ljust(indent) + lines[0], *(" " * indent + line for line in lines[1:])]


@dataclass(frozen=True)
class OTLPTarget:
    """Where OTLP exporters send spans, according to the environment."""

    endpoint: str
    variable: str
    """The environment variable that set ``endpoint``."""


def otlp_target() -> OTLPTarget | None:
    """The OTLP traces endpoint from ``OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT``, if set."""
    for variable in _ENDPOINT_VARIABLES:
        value = os.environ.get(variable, "").strip()
        if value:
            return OTLPTarget(value, variable)
    return None


def tcp_problem(endpoint: str, timeout: float = CONNECT_TIMEOUT) -> str | None:
    """Why a TCP connection to ``endpoint``'s host and port fails; ``None`` if it succeeds."""
    try:
        url = httpx.URL(endpoint if "://" in endpoint else f"http://{endpoint}")
    except (httpx.InvalidURL, TypeError) as exc:
        return f"not a URL ({exc})"
    host = url.host
    if not host:
        return "the URL has no host"
    port = url.port or (443 if url.scheme == "https" else 80)
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except TimeoutError:
        return f"no answer from {address} within {timeout:g} s"
    except ConnectionRefusedError:
        return f"{address} refused the connection"
    except socket.gaierror as exc:
        return f"cannot resolve {host} ({exc.strerror})"
    except OSError as exc:
        return f"cannot connect to {address} ({exc.strerror or exc})"


def quiet_exporter_logs() -> None:
    """Silence the OpenTelemetry exporter and SDK loggers for the rest of the run."""
    for name in _EXPORTER_LOGGERS:
        logging.getLogger(name).setLevel(logging.CRITICAL + 1)


def traces_protocol() -> tuple[str, str | None]:
    """The OTLP protocol for traces as `tracedllm.otel.resolve_protocol` chooses it, and a
    problem (an unsupported value, no SDK) or ``None``."""
    try:
        from .otel import resolve_protocol
    except ImportError:
        return "unknown", "the OpenTelemetry SDK is not installed"
    try:
        return resolve_protocol(signal="traces"), None
    except ValueError as exc:
        return "unsupported", str(exc)


# --- check ------------------------------------------------------------------------------------

OK, FAIL, INFO = "ok", "FAIL", "--"


class Report:
    """The rows of the check, printed as they are found: status, label, text."""

    LABEL = 19

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.failures: list[str] = []
        self.width = terminal_width()

    def row(self, status: str, label: str, text: str) -> None:
        if status == FAIL:
            self.failures.append(label)
        prefix = f"{status:<6}{label}"
        for line in wrap_row(prefix, text, indent=6 + self.LABEL, width=self.width):
            print(line.rstrip(), file=self.out)
        self.out.flush()


def check(base_url: str | None, model: str, out: TextIO) -> int:
    """Run the checks, print them; 0 when everything tried worked, else 1."""
    report = Report(out)
    print(f"tracedllm {__version__} check (Python {sys.version.split()[0]})", file=out)
    sdk = _sdk_version()
    if sdk is None:
        report.row(FAIL, "OpenTelemetry SDK", "not installed: pip install 'tracedllm[otlp]'")
    else:
        report.row(OK, "OpenTelemetry SDK", sdk)
    global_provider = _check_providers(report)
    reachable = _check_endpoint(report)
    _check_capture(report)
    span = _check_request(
        report, base_url, model, global_provider if sdk else None, sdk is not None
    )
    if span is not None and global_provider is None and reachable:
        _check_export(report, span)
    if report.failures:
        count = len(report.failures)
        print(
            f"\n{count} problem{'s' if count > 1 else ''}: {', '.join(report.failures)}", file=out
        )
        return 1
    print("\neverything tried worked", file=out)
    return 0


def _sdk_version() -> str | None:
    try:
        from opentelemetry.sdk.version import __version__ as version
    except ImportError:
        return None
    return str(version)


def _check_providers(report: Report) -> TracerProvider | None:
    """Describe the global providers; returns the global tracer provider if it is the SDK's."""
    tracer_provider = trace.get_tracer_provider()
    sdk_provider: TracerProvider | None = None
    if isinstance(tracer_provider, trace.ProxyTracerProvider):
        report.row(
            INFO,
            "tracer provider",
            "none: spans are dropped (no global TracerProvider: call "
            "tracedllm.otel.configure_tracing(), run under opentelemetry-instrument, or pass "
            "tracer_provider= to the client)",
        )
    elif (sdk_provider := _as_sdk(tracer_provider)) is not None:
        text, processors = _describe_tracer_provider(sdk_provider)
        report.row(OK if processors else INFO, "tracer provider", text)
    else:
        dropped = "NoOp" in type(tracer_provider).__name__
        text = _type_name(tracer_provider) + (": spans are dropped" if dropped else "")
        report.row(INFO, "tracer provider", text)
    meter_provider = metrics.get_meter_provider()
    if type(meter_provider).__name__ == "_ProxyMeterProvider":
        report.row(INFO, "meter provider", "none: metrics are dropped")
    else:
        readers = getattr(meter_provider, "_metric_readers", None) or ()
        described = _type_name(meter_provider)
        if readers:
            described += ", " + ", ".join(_with_exporter(r, "_exporter") for r in readers)
        report.row(INFO, "meter provider", described)
    return sdk_provider


def _as_sdk(provider: object) -> TracerProvider | None:
    try:
        from opentelemetry.sdk.trace import TracerProvider
    except ImportError:
        return None
    return provider if isinstance(provider, TracerProvider) else None


def _describe_tracer_provider(provider: TracerProvider) -> tuple[str, int]:
    """A description of an SDK tracer provider, and how many span processors it has."""
    multi = getattr(provider, "_active_span_processor", None)
    processors = getattr(multi, "_span_processors", ()) or ()
    parts = [_with_exporter(processor, "span_exporter") for processor in processors]
    service = provider.resource.attributes.get("service.name")
    text = f"{_type_name(provider)}, service.name {service!r}, "
    text += ", ".join(parts) if parts else "no span processor: spans are dropped"
    return text, len(parts)


def _with_exporter(component: object, attribute: str) -> str:
    """``Processor(Exporter)`` for a span processor or metric reader (SDK internals, if any)."""
    exporter = getattr(component, attribute, None)
    exporter = getattr(exporter, "inner", exporter)  # tracedllm.otel's shutdown guard
    name = type(component).__name__
    return f"{name}({type(exporter).__name__})" if exporter is not None else name


def _type_name(thing: object) -> str:
    kind = type(thing)
    module = kind.__module__
    public = ".".join(part for part in module.split(".") if not part.startswith("_"))
    return f"{public}.{kind.__qualname__}" if public else kind.__qualname__


def _check_endpoint(report: Report) -> bool:
    """Where spans go; returns whether a collector answers there."""
    target = otlp_target()
    if target is None:
        report.row(
            INFO,
            "OTLP endpoint",
            "not set (OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT): "
            "nothing is exported",
        )
        return False
    protocol, problem = traces_protocol()
    report.row(
        FAIL if problem and protocol == "unsupported" else OK,
        "OTLP endpoint",
        f"{target.endpoint} (from {target.variable}), protocol {protocol}"
        + (f": {problem}" if problem else ""),
    )
    started = time.perf_counter()
    why = tcp_problem(target.endpoint)
    if why is not None:
        report.row(FAIL, "collector", f"not reachable: {why}")
        return False
    took = (time.perf_counter() - started) * 1e3
    report.row(OK, "collector", f"reachable (TCP connect in {took:.1f} ms)")
    return protocol in ("grpc", "http/protobuf")


def _check_capture(report: Report) -> None:
    raw = os.environ.get(CAPTURE_ENV_VAR)
    if raw is None or not raw.strip():
        report.row(INFO, "content capture", f"off ({CAPTURE_ENV_VAR} is not set)")
        return
    key = raw.strip().lower()
    if key not in {"true", "false", *(mode.value for mode in CaptureMode)}:
        names = ", ".join(["true", "false", *(mode.name for mode in CaptureMode)])
        report.row(
            FAIL,
            "content capture",
            f"off: {CAPTURE_ENV_VAR}={raw!r} is not a known value (use one of {names})",
        )
        return
    mode = capture_mode(None)
    where = {
        CaptureMode.NO_CONTENT: "off",
        CaptureMode.SPAN_ONLY: "on: prompts and answers are recorded as span attributes",
        CaptureMode.EVENT_ONLY: "on: prompts and answers are recorded as a span event",
        CaptureMode.SPAN_AND_EVENT: "on: prompts and answers go on the span and in an event",
    }[mode]
    report.row(INFO, "content capture", f"{where} ({CAPTURE_ENV_VAR}={raw!r})")


def _check_request(
    report: Report,
    base_url: str | None,
    model: str,
    global_provider: TracerProvider | None,
    sdk: bool,
) -> ReadableSpan | None:
    """One traced request; returns its span (``None`` without the SDK)."""
    from . import Client

    exporter: Any = None
    provider: Any = None
    if sdk:
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

        exporter = InMemorySpanExporter()
        # the global SDK provider when there is one: the span then takes the application's path
        provider = global_provider or TracerProvider(shutdown_on_exit=False)
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    with contextlib.ExitStack() as stack:
        if base_url is None:
            server = stack.enter_context(LoopbackServer(default=_canned_reply(model)))
            url, api_key = server.base_url, "check"
            report.row(INFO, "request", f"embedded loopback server {url} (no network), {model}")
        else:
            url, api_key = base_url, None  # the client reads $OPENAI_API_KEY
            key = "set (not shown)" if os.environ.get("OPENAI_API_KEY") else "not set"
            report.row(INFO, "request", f"{_shown(url)}, {model}, $OPENAI_API_KEY {key}")
        try:
            client = stack.enter_context(
                Client(
                    api_key=api_key,
                    base_url=url,
                    tracer_provider=provider,
                    max_retries=0,
                    timeout=httpx.Timeout(30.0, connect=5.0),
                    deadline=60.0,
                )
            )
        except ValueError as exc:
            report.row(FAIL, "response", f"invalid --base-url: {exc}")
            return None
        started = time.perf_counter()
        try:
            response = client.responses.create(
                model=model, input=CHECK_PROMPT, max_output_tokens=16
            )
        except TracedLLMError as exc:
            report.row(FAIL, "response", f"{type(exc).__name__}: {exc}")
        else:
            took = (time.perf_counter() - started) * 1e3
            text = " ".join(response.output_text.split())
            text = text if len(text) <= 60 else text[:57] + "..."
            report.row(OK, "response", f"{response.status} in {took:.0f} ms: {text!r}")
    if exporter is None:
        report.row(FAIL, "span", "not recorded: the OpenTelemetry SDK is not installed")
        return None
    spans = exporter.get_finished_spans()
    span: ReadableSpan | None = spans[-1] if spans else None
    if span is None:
        report.row(FAIL, "span", "no span was recorded")
    else:
        report.row(OK, "span", _summary(span))  # recorded: a failed request is reported above
    if global_provider is not None:
        flushed = global_provider.force_flush(5000)
        report.row(
            OK if flushed else FAIL,
            "export",
            "flushed through the global provider's span processors"
            if flushed
            else "the global provider's span processors did not flush within 5 s",
        )
    return span


def _shown(url: str) -> str:
    """A URL without credentials or query, for printing."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError):
        return "(an invalid URL)"
    return str(parsed.copy_with(username=None, password=None, query=None, fragment=None))


_SUMMARY_KEYS = (
    attr.GEN_AI_RESPONSE_ID,
    attr.GEN_AI_RESPONSE_MODEL,
    attr.GEN_AI_USAGE_INPUT_TOKENS,
    attr.GEN_AI_USAGE_OUTPUT_TOKENS,
    attr.GEN_AI_RESPONSE_FINISH_REASONS,
    attr.ERROR_TYPE,
    attr.SERVER_ADDRESS,
)


def _summary(span: ReadableSpan) -> str:
    duration = ((span.end_time or 0) - (span.start_time or 0)) / 1e6
    attributes = dict(span.attributes or {})
    status = span.status.status_code.name
    head = f"{span.name}, {span.kind.name}, status {status}, {duration:.1f} ms, "
    head += f"{len(attributes)} attributes:"
    shown = [f"{key}={_value(attributes[key])}" for key in _SUMMARY_KEYS if key in attributes]
    content = [
        key
        for key in (
            attr.GEN_AI_INPUT_MESSAGES,
            attr.GEN_AI_OUTPUT_MESSAGES,
            attr.GEN_AI_SYSTEM_INSTRUCTIONS,
        )
        if key in attributes
    ]
    if content:
        shown.append(f"content: {', '.join(content)}")
    return " ".join([head, *shown])


def _value(value: object) -> str:
    if isinstance(value, tuple):
        return "[" + ", ".join(repr(item) for item in value) + "]"
    return repr(value) if isinstance(value, str) else str(value)


def _canned_reply(model: str) -> Reply:
    from .testing import events_of

    events = events_of(
        text=["O", "K"],
        usage={"input_tokens": 12, "output_tokens": 2, "total_tokens": 14},
        model=model,
        response_id="resp_check0001",
    )
    return Reply(body=sse_body(events))


def _check_export(report: Report, span: ReadableSpan) -> None:
    """Export the check's span with the exporter the environment configures, and say how it went."""
    protocol, problem = traces_protocol()
    if problem is not None:
        return
    package = "grpc" if protocol == "grpc" else "http"
    try:
        module = importlib.import_module(
            f"opentelemetry.exporter.otlp.proto.{package}.trace_exporter"
        )
    except ImportError:
        report.row(
            FAIL,
            "export",
            f"the OTLP {protocol} exporter is not installed: pip install 'tracedllm[otlp]'",
        )
        return
    timeout = None
    if not any(
        os.environ.get(name, "").strip()
        for name in ("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "OTEL_EXPORTER_OTLP_TIMEOUT")
    ):
        timeout = EXPORT_TIMEOUT
    with _captured_logs() as messages:
        exporter = module.OTLPSpanExporter(timeout=timeout)
        try:
            result = exporter.export([span])
        except Exception as exc:  # an exporter that raises instead of returning FAILURE
            messages.append(f"{type(exc).__name__}: {exc}")
            result = None
        finally:
            exporter.shutdown()
    if result is not None and result.name == "SUCCESS":
        report.row(OK, "export", f"the collector accepted the span ({protocol})")
        return
    why = messages[-1] if messages else "the collector did not accept it"
    hint = (
        " (a gRPC endpoint is usually port 4317, OTLP/HTTP 4318 or a .../v1/traces URL; "
        "set OTEL_EXPORTER_OTLP_PROTOCOL if the guess is wrong)"
    )
    report.row(FAIL, "export", f"the span was not exported over {protocol}: {why}{hint}")


@contextlib.contextmanager
def _captured_logs() -> Iterator[list[str]]:
    """Collect (instead of print) what the exporter and SDK loggers say."""
    messages: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            messages.append(" ".join(record.getMessage().split())[:300])

    handler = Collect(logging.WARNING)
    saved = []
    for name in _EXPORTER_LOGGERS:
        logger = logging.getLogger(name)
        saved.append((logger, logger.propagate, logger.level))
        logger.addHandler(handler)
        logger.propagate = False
        logger.setLevel(logging.WARNING)
    try:
        yield messages
    finally:
        for logger, propagate, level in saved:
            logger.removeHandler(handler)
            logger.propagate = propagate
            logger.setLevel(level)
