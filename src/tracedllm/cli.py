"""The ``tracedllm`` command: ``demo`` (no key, no network) and ``replay FILE.sse``."""

from __future__ import annotations

import argparse
import os
import socket
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import httpx

from . import Client, Response, StreamError, TracedLLMError
from ._loopback import LoopbackServer, Reply, sse_body
from .testing import events_of

if TYPE_CHECKING:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

DEMO_ANSWER = (
    "OpenTelemetry gives every request a span: a named, timed unit of work with attributes. "
    "This answer streamed from a loopback server, and the span below was recorded as its "
    "events arrived -- response id, model, token usage and finish reason included."
)
DEMO_USAGE = {
    "input_tokens": 42,
    "input_tokens_details": {"cached_tokens": 16},
    "output_tokens": 48,
    "output_tokens_details": {"reasoning_tokens": 0},
    "total_tokens": 90,
}


class CommandError(Exception):
    """A user-facing error: printed without a traceback, exit status 2."""


def _providers() -> tuple[TracerProvider, MeterProvider | None, InMemorySpanExporter]:
    """A tracer provider that keeps spans in memory for printing, and exports them over OTLP
    too when ``OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT`` is set."""
    try:
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    except ImportError as exc:
        raise CommandError(
            "the demo needs the OpenTelemetry SDK: pip install 'tracedllm[otlp]'"
        ) from exc
    from .otel import configure_tracing, configured_meter_provider

    endpoint = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or os.environ.get(
        "OTEL_EXPORTER_OTLP_ENDPOINT"
    )
    if endpoint and not _reachable(endpoint):
        print(
            f"warning: no collector answers at {endpoint}; spans will not be exported",
            file=sys.stderr,
        )
    service = os.environ.get("OTEL_SERVICE_NAME") or "tracedllm-demo"
    provider = configure_tracing(service, otlp=bool(endpoint), set_global=False)
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, configured_meter_provider(provider), exporter


def _reachable(endpoint: str) -> bool:
    url = httpx.URL(endpoint if "://" in endpoint else f"http://{endpoint}")
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _stream_text(client: Client, out: TextIO, **params: Any) -> None:
    with client.responses.stream(**params) as stream:
        for event in stream:
            if event.type == "response.output_text.delta":
                out.write(event.delta)
                out.flush()
        out.write("\n\n")


def render_span(span: ReadableSpan) -> str:
    """A readable table of one finished span: name, kind, status, duration, every attribute."""
    duration = ((span.end_time or 0) - (span.start_time or 0)) / 1e6
    status = span.status.status_code.name
    if span.status.description:
        status += f" ({span.status.description})"
    rows = [
        ("span", span.name),
        ("kind", span.kind.name),
        ("status", status),
        ("duration", f"{duration:.1f} ms"),
        *((key, _value(value)) for key, value in sorted((span.attributes or {}).items())),
    ]
    width = max(len(key) for key, _ in rows)
    lines = [f"{key.ljust(width)}  {value}" for key, value in rows]
    rule = "-" * max(len(line) for line in lines)
    return "\n".join([rule, *lines, rule])


def _value(value: object) -> str:
    if isinstance(value, tuple):
        return "[" + ", ".join(repr(item) for item in value) + "]"
    return repr(value) if isinstance(value, str) else str(value)


def _print_spans(provider: TracerProvider, exporter: InMemorySpanExporter, out: TextIO) -> None:
    provider.force_flush()
    for span in exporter.get_finished_spans():
        print(render_span(span), file=out)
    provider.shutdown()


def demo(args: argparse.Namespace, out: TextIO) -> None:
    """Stream a response and print the span it produced."""
    provider, meter_provider, exporter = _providers()
    try:
        if args.live:
            if not os.environ.get("OPENAI_API_KEY"):
                raise CommandError("--live needs OPENAI_API_KEY in the environment")
            with Client(tracer_provider=provider, meter_provider=meter_provider) as client:
                _stream_text(client, out, model=args.model, input=args.prompt)
        else:
            words = [word + " " for word in DEMO_ANSWER.split(" ")]
            words[-1] = words[-1].rstrip()
            body = sse_body(
                events_of(
                    text=words,
                    usage=DEMO_USAGE,
                    model="gpt-4.1-mini-2025-04-14",
                    response_id="resp_demo0001",
                    service_tier="default",
                )
            )
            reply = Reply(body=body, chunk_size=160, chunk_delay=args.delay)
            with (
                LoopbackServer(default=reply) as server,
                Client(
                    api_key="demo", base_url=server.base_url, tracer_provider=provider
                ) as client,
            ):
                _stream_text(client, out, model=args.model, input=args.prompt)
    finally:
        _print_spans(provider, exporter, out)


def replay(args: argparse.Namespace, out: TextIO) -> None:
    """Serve a recorded stream over loopback and print its final response and span."""
    try:
        body = Path(args.file).read_bytes()
    except OSError as exc:
        raise CommandError(f"cannot read {args.file}: {exc.strerror or exc}") from exc
    provider, _, exporter = _providers()
    try:
        with (
            LoopbackServer(default=Reply(body=body)) as server,
            Client(api_key="replay", base_url=server.base_url, tracer_provider=provider) as client,
        ):
            final: Response | None
            try:
                final = client.responses.create(model=args.model, input="(replay)")
            except StreamError as exc:
                print(f"stream ended with {type(exc).__name__}: {exc}", file=out)
                final = exc.response
            if final is not None:
                _print_response(final, out)
    finally:
        _print_spans(provider, exporter, out)


def _print_response(final: Response, out: TextIO) -> None:
    print(f"response  {final.id}  model={final.model}  status={final.status}", file=out)
    if final.usage is not None:
        print(f"usage     {final.usage.model_dump(exclude_none=True)}", file=out)
    print(f"output    {[item.type for item in final.output]}", file=out)
    text = final.output_text
    print(f"text      {text[:300]!r}{' ...' if len(text) > 300 else ''}", file=out)


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    """Entry point of the ``tracedllm`` console script."""
    out = out or sys.stdout
    parser = argparse.ArgumentParser(prog="tracedllm", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    demo_parser = commands.add_parser("demo", help="stream a response and print its span")
    demo_parser.add_argument(
        "--live", action="store_true", help="call the real API (needs OPENAI_API_KEY)"
    )
    demo_parser.add_argument("--model", default="gpt-4.1-mini")
    demo_parser.add_argument("--prompt", default="In two sentences: what is an OpenTelemetry span?")
    demo_parser.add_argument("--delay", type=float, default=0.03, help="seconds between chunks")
    replay_parser = commands.add_parser("replay", help="replay a recorded .sse stream offline")
    replay_parser.add_argument("file")
    replay_parser.add_argument("--model", default="replay")
    args = parser.parse_args(argv)
    try:
        (demo if args.command == "demo" else replay)(args, out)
    except CommandError as exc:
        print(f"tracedllm: {exc}", file=sys.stderr)
        return 2
    except TracedLLMError as exc:
        print(f"tracedllm: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # e.g. `tracedllm replay x.sse | head`: not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    return 0
