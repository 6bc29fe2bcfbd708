"""The ``tracedllm`` command: ``demo``, ``replay FILE`` and ``check``; see `main` and ``--help``.

Exit status: `EXIT_OK`, `EXIT_STREAM_FAILED`, `EXIT_USAGE`, `EXIT_NOT_A_STREAM` (see `EPILOG`).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TextIO

from . import ChatCompletion, Client, Response, StreamError, TracedLLMError
from ._doctor import (
    check,
    otlp_target,
    quiet_exporter_logs,
    tcp_problem,
    terminal_width,
    wrap_row,
)
from ._engine import json_error
from ._loopback import LoopbackServer, Reply, sse_body
from ._request import OPTION_NAMES
from ._sse import SSEDecoder
from ._version import __version__
from .models import CustomToolCallItem, FunctionCallItem
from .testing import chat_chunks_of, events_of

if TYPE_CHECKING:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

EXIT_OK: Final = 0
EXIT_STREAM_FAILED: Final = 1
"""replay: the stream failed, was incomplete or truncated; demo --live: the request failed;
check: something it tried did not work."""
EXIT_USAGE: Final = 2
"""A usage error, an unreadable file or a missing dependency (as argparse's own usage errors)."""
EXIT_NOT_A_STREAM: Final = 3
"""replay: FILE is not a Responses or Chat Completions stream (no events, a request...)."""

DESCRIPTION = "Stream OpenAI Responses and Chat Completions calls, traced with OpenTelemetry."
EPILOG = """\
exit status:
  0  success; for replay, the stream completed
  1  replay: the stream failed, was incomplete or truncated;
     demo --live: the request failed; check: something it tried did not work
  2  usage error, unreadable file, or the OpenTelemetry SDK is missing
  3  replay: FILE is not a Responses or Chat Completions stream

environment:
  OTEL_EXPORTER_OTLP_ENDPOINT  also export spans over OTLP, e.g.
                               http://127.0.0.1:4317 (gRPC); or set
                               OTEL_EXPORTER_OTLP_TRACES_ENDPOINT
  OTEL_SERVICE_NAME            service.name of the spans (tracedllm-demo)
  OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT
                               true: record prompts and answers on spans
  OPENAI_API_KEY               for demo --live and check --base-url

Run 'tracedllm COMMAND --help' for the options of a command.
"""
DEMO_DESCRIPTION = """\
Stream a response and print the OpenTelemetry span it produced.

Offline by default: an embedded loopback server streams a canned answer, so
no API key and no network are needed (the answer is always the same, whatever
--prompt says). With --live, the request goes to the OpenAI API. Set
OTEL_EXPORTER_OTLP_ENDPOINT to also export the span to a collector.
"""
REPLAY_DESCRIPTION = """\
Serve a recorded Responses API stream (FILE, e.g. x.sse) from an embedded
loopback server, read it with the traced client, and print the final response,
its tool calls and the span.

When FILE has a sibling request (x.request.json beside x.sse), its parameters
are sent as the request body: the span is named after its model and gets its
gen_ai.request.* attributes.
"""
REPLAY_EPILOG = """\
exit status:
  0  the stream completed
  1  the stream failed, was incomplete or was truncated (the span is printed)
  2  FILE or --request cannot be read, or the OpenTelemetry SDK is missing
  3  FILE is not a Responses API stream: no server-sent events, a Chat
     Completions stream, or a request (.request.json)
"""
CHECK_DESCRIPTION = """\
Tell whether your tracing setup works, on one screen:

  - the global tracer and meter providers (none: spans are dropped);
  - where spans go: the OTLP endpoint and protocol from the environment, and
    whether a collector answers there (TCP connect, 0.5 s timeout);
  - whether content capture is on;
  - one traced request and its span: against --base-url if given (with
    $OPENAI_API_KEY if set, never printed), else an embedded loopback server.
    Without a global SDK provider, the span is then exported to the collector
    with the exporter the environment configures, and the result shown.

Exit status 0 when everything it tried worked, 1 otherwise.
"""

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
DEMO_PROMPT = "In two sentences: what is an OpenTelemetry span?"
_SHOWN_CHARS = 300  # of the text and of each tool call's arguments


class CommandError(Exception):
    """A user-facing error: printed without a traceback."""

    exit_code = EXIT_USAGE


class NotAStreamError(CommandError):
    """replay: the file is not a Responses API stream."""

    exit_code = EXIT_NOT_A_STREAM


def _providers(
    command: str,
) -> tuple[TracerProvider, MeterProvider | None, InMemorySpanExporter]:
    """A tracer provider that keeps spans in memory for printing, and exports them over OTLP
    too when ``OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT`` is set and a collector answers there."""
    try:
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

        from .otel import configure_tracing, configured_meter_provider
    except ImportError as exc:
        raise CommandError(
            f"{command} needs the OpenTelemetry SDK: pip install 'tracedllm[otlp]'"
        ) from exc
    target = otlp_target()
    export = target is not None
    if target is not None and (why := tcp_problem(target.endpoint)) is not None:
        _warn(f"no collector answers at {target.endpoint} ({why}); spans are not exported")
        quiet_exporter_logs()  # and no exporter is built: nothing to retry, nothing to wait for
        export = False
    service = os.environ.get("OTEL_SERVICE_NAME") or "tracedllm-demo"
    try:
        provider = configure_tracing(service, otlp=export, set_global=False)
    except (ImportError, ValueError) as exc:  # exporter not installed, unsupported protocol
        _warn(f"{exc}; spans are not exported")
        provider = configure_tracing(service, otlp=False, set_global=False)
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, configured_meter_provider(provider), exporter


def _warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


def _stream_text(client: Client, out: TextIO, *, chat: bool, prompt: str, model: str) -> None:
    if chat:
        messages = [{"role": "user", "content": prompt}]
        with client.chat.completions.stream(model=model, messages=messages) as chunks:
            for chunk in chunks:
                for choice in chunk.choices:
                    if choice.delta.content:
                        out.write(choice.delta.content)
                        out.flush()
    else:
        with client.responses.stream(model=model, input=prompt) as events:
            for event in events:
                if event.type == "response.output_text.delta":
                    out.write(event.delta)
                    out.flush()
    out.write("\n\n")


def render_span(span: ReadableSpan, width: int | None = None) -> str:
    """A readable table of one finished span: name, kind, status, duration, every attribute.

    Values are wrapped (between words) to ``width``, by default the terminal's width.
    """
    width = width or terminal_width()
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
    indent = max(len(key) for key, _ in rows) + 2
    lines = [
        line for key, value in rows for line in wrap_row(key, value, indent=indent, width=width)
    ]
    rule = "-" * min(max(len(line) for line in lines), width)
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


def demo(args: argparse.Namespace, out: TextIO) -> int:
    """Stream a response and print the span it produced."""
    if args.live and not os.environ.get("OPENAI_API_KEY"):
        raise CommandError("--live needs OPENAI_API_KEY in the environment")
    if args.prompt is not None and not args.live:
        print(
            "note: without --live the answer is canned; --prompt does not change it",
            file=sys.stderr,
        )
    prompt = DEMO_PROMPT if args.prompt is None else args.prompt
    provider, meter_provider, exporter = _providers("the demo")
    chat = args.api == "chat"
    try:
        if args.live:
            with Client(tracer_provider=provider, meter_provider=meter_provider) as client:
                _stream_text(client, out, chat=chat, prompt=prompt, model=args.model)
        else:
            words = [word + " " for word in DEMO_ANSWER.split(" ")]
            words[-1] = words[-1].rstrip()
            if chat:
                usage = {
                    "prompt_tokens": DEMO_USAGE["input_tokens"],
                    "completion_tokens": DEMO_USAGE["output_tokens"],
                    "total_tokens": DEMO_USAGE["total_tokens"],
                }
                chunks = chat_chunks_of(
                    text=words,
                    usage=usage,
                    model="gpt-4.1-mini-2025-04-14",
                    completion_id="chatcmpl-demo0001",
                    system_fingerprint="fp_demo0001",
                )
                body = sse_body(chunks, done=True)
            else:
                events = events_of(
                    text=words,
                    usage=DEMO_USAGE,
                    model="gpt-4.1-mini-2025-04-14",
                    response_id="resp_demo0001",
                    service_tier="default",
                )
                body = sse_body(events)
            reply = Reply(body=body, chunk_size=160, chunk_delay=args.delay)
            with (
                LoopbackServer(default=reply) as server,
                Client(
                    api_key="demo", base_url=server.base_url, tracer_provider=provider
                ) as client,
            ):
                _stream_text(client, out, chat=chat, prompt=prompt, model=args.model)
    finally:
        _print_spans(provider, exporter, out)
    return EXIT_OK


# --- replay -----------------------------------------------------------------------------------


def replay(args: argparse.Namespace, out: TextIO) -> int:
    """Serve a recorded stream over loopback; print its final response, tool calls and span."""
    path = Path(args.file)
    try:
        body = path.read_bytes()
    except OSError as exc:
        raise CommandError(f"cannot read {path}: {exc.strerror or exc}") from exc
    chat = _check_stream(path, body)
    request = _request_of(path, Path(args.request) if args.request else None)
    provider, _, exporter = _providers("replay")
    params: dict[str, Any] = (
        {"messages": [{"role": "user", "content": "(replay)"}]} if chat else {"input": "(replay)"}
    )
    model = args.model or "replay"
    if request is not None:
        request_path, data = request
        params = {
            key: value
            for key, value in data.items()
            if key not in OPTION_NAMES and key not in ("model", "stream")
        }
        model = args.model or data["model"]
        shown = ", ".join(sorted(params)) or "no other parameters"
        for line in wrap_row(
            "request", f"{request_path.name}: model {data['model']!r}, {shown}", indent=10
        ):
            print(line, file=out)
    status = EXIT_OK
    try:
        with (
            LoopbackServer(default=Reply(body=body)) as server,
            Client(api_key="replay", base_url=server.base_url, tracer_provider=provider) as client,
        ):
            final: Response | ChatCompletion | None
            try:
                if chat:
                    final = client.chat.completions.create(model=model, **params)
                else:
                    final = client.responses.create(model=model, **params)
            except StreamError as exc:
                status = EXIT_STREAM_FAILED
                for line in wrap_row(
                    "", f"stream ended with {type(exc).__name__}: {exc}", indent=0
                ):
                    print(line, file=out)
                final = exc.response
            if isinstance(final, ChatCompletion):
                _print_completion(final, out)
            elif final is not None:
                _print_response(final, out)
    finally:
        _print_spans(provider, exporter, out)
    return status


def _check_stream(path: Path, body: bytes) -> bool:
    """Whether ``body`` is a Chat Completions stream (else a Responses one); raise
    `NotAStreamError` saying what it is when it is neither."""
    whole = _json(body)
    if path.name.endswith(".request.json") or (
        isinstance(whole, dict) and isinstance(whole.get("model"), str) and "object" not in whole
    ):
        sibling = path.with_name(path.name.removesuffix(".json").removesuffix(".request") + ".sse")
        hint = f"; replay {sibling}" if sibling.is_file() else ""
        raise NotAStreamError(f"{path} is a request (.request.json), not a stream{hint}")
    if isinstance(whole, dict) and whole.get("object") in ("response", "chat.completion"):
        raise NotAStreamError(
            f"{path} is a {whole['object']} object (JSON), not a stream: record one with "
            "stream=True"
        )
    decoder = SSEDecoder()
    payloads = [*decoder.feed(body), *decoder.flush()]
    objects = [item for item in map(_json, payloads) if isinstance(item, dict)]
    if not objects:
        if json_error(body) is not None:
            return False  # an error object instead of events, as some gateways answer
        what = "the file is empty" if not body.strip() else "expected 'data: {...}' lines"
        raise NotAStreamError(f"no server-sent events in {path} ({what})")
    if any(_is_chat_chunk(item) for item in objects):
        return True
    if any(_is_responses_event(item) for item in objects):
        return False
    kinds = sorted({str(item.get("type") or item.get("object") or "untyped") for item in objects})
    shown = ", ".join(kinds[:5]) + (", ..." if len(kinds) > 5 else "")
    raise NotAStreamError(
        f"no Responses API events or Chat Completions chunks in {path} (events: {shown})"
    )


def _json(data: bytes) -> Any:
    try:
        return json.loads(data)
    except ValueError:  # UnicodeDecodeError included
        return None


def _is_chat_chunk(item: dict[str, Any]) -> bool:
    return item.get("object") == "chat.completion.chunk" or (
        "type" not in item and isinstance(item.get("choices"), list)
    )


def _is_responses_event(item: dict[str, Any]) -> bool:
    kind = item.get("type")
    if isinstance(kind, str) and (kind.startswith("response.") or kind == "error"):
        return True
    return item.get("object") == "error" or isinstance(item.get("error"), dict)


def _request_of(path: Path, given: Path | None) -> tuple[Path, dict[str, Any]] | None:
    """The request body to replay with: ``given``, else ``path``'s sibling ``.request.json``."""
    candidate = given or path.with_suffix(".request.json")
    try:
        raw = candidate.read_bytes()
    except OSError as exc:
        if given is not None:
            raise CommandError(f"cannot read {given}: {exc.strerror or exc}") from exc
        return None
    data = _json(raw)
    if not isinstance(data, dict) or not isinstance(data.get("model"), str) or not data["model"]:
        problem = f'{candidate} is not a JSON request body with a "model"'
        if given is not None:
            raise CommandError(problem)
        _warn(f"{problem}; replaying without it")
        return None
    return candidate, data


def _print_response(final: Response, out: TextIO) -> None:
    rows = [("response", f"{final.id}  model={final.model}  status={final.status}")]
    if final.usage is not None:
        rows.append(("usage", str(final.usage.model_dump(exclude_none=True))))
    rows.append(("output", str([item.type for item in final.output])))
    for item in final.output:
        if isinstance(item, FunctionCallItem):
            rows.append(
                ("tool call", f"{item.name}({_cut(item.arguments)})  call_id={item.call_id}")
            )
        elif isinstance(item, CustomToolCallItem):
            rows.append(("tool call", f"{item.name}({_cut(item.input)!r})  call_id={item.call_id}"))
    text = final.output_text
    rows.append(("text", f"{text[:_SHOWN_CHARS]!r}{' ...' if len(text) > _SHOWN_CHARS else ''}"))
    for label, value in rows:
        for line in wrap_row(label, value, indent=10):
            print(line, file=out)


def _print_completion(final: ChatCompletion, out: TextIO) -> None:
    rows = [("chat", f"{final.id}  model={final.model}")]
    if final.usage is not None:
        rows.append(("usage", str(final.usage.model_dump(exclude_none=True))))
    for choice in final.choices:
        message = choice.message
        rows.append(("choice", f"{choice.index}  finish_reason={choice.finish_reason}"))
        for call in message.tool_calls or ():
            function = call.function
            rows.append(("tool call", f"{function.name}({_cut(function.arguments)})  id={call.id}"))
        text = message.content or ""
        shown = f"{text[:_SHOWN_CHARS]!r}{' ...' if len(text) > _SHOWN_CHARS else ''}"
        rows.append(("text", shown))
    for label, value in rows:
        for line in wrap_row(label, value, indent=10):
            print(line, file=out)


def _cut(text: str) -> str:
    return text if len(text) <= _SHOWN_CHARS else text[:_SHOWN_CHARS] + " ..."


# --- main -------------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    raw = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(
        prog="tracedllm", description=DESCRIPTION, epilog=EPILOG, formatter_class=raw
    )
    parser.add_argument("--version", action="version", version=f"tracedllm {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    demo_parser = commands.add_parser(
        "demo",
        help="stream a response and print its span (offline: no key, no network)",
        description=DEMO_DESCRIPTION,
        formatter_class=raw,
    )
    demo_parser.add_argument(
        "--live", action="store_true", help="call the OpenAI API instead (needs OPENAI_API_KEY)"
    )
    demo_parser.add_argument(
        "--model",
        default="gpt-4.1-mini",
        help="the model to ask; it names the span (default: %(default)s)",
    )
    demo_parser.add_argument(
        "--prompt",
        help="what to ask, with --live (offline the answer is canned: the prompt only "
        "appears on the span, with content capture on)",
    )
    demo_parser.add_argument(
        "--api",
        choices=("responses", "chat"),
        default="responses",
        help="the API to call: the Responses API or Chat Completions (default: %(default)s)",
    )
    demo_parser.add_argument(
        "--delay",
        type=float,
        default=0.03,
        help="offline: seconds between streamed chunks (default: %(default)s)",
    )
    replay_parser = commands.add_parser(
        "replay",
        help="replay a recorded .sse stream offline and print its response and span",
        description=REPLAY_DESCRIPTION,
        epilog=REPLAY_EPILOG,
        formatter_class=raw,
    )
    replay_parser.add_argument("file", metavar="FILE", help="a recorded Responses API stream")
    replay_parser.add_argument(
        "--model", help="the model to request (default: the request's model, else 'replay')"
    )
    replay_parser.add_argument(
        "--request",
        metavar="JSON",
        help="the request body to send (default: FILE's sibling .request.json, if any)",
    )
    check_parser = commands.add_parser(
        "check",
        help="tell whether your tracing setup works",
        description=CHECK_DESCRIPTION,
        formatter_class=raw,
    )
    check_parser.add_argument(
        "--base-url",
        metavar="URL",
        help="send the test request to this Responses API server, e.g. "
        "https://api.openai.com/v1 (default: an embedded loopback server)",
    )
    check_parser.add_argument(
        "--model",
        default="gpt-4.1-mini",
        help="the model of the test request (default: %(default)s)",
    )
    return parser


@contextmanager
def _quiet_library_logs() -> Iterator[None]:
    """Keep the ``tracedllm`` logger's warnings (e.g. skipped events) off the terminal: the
    commands report what matters themselves, and the span counts skipped events."""
    logger = logging.getLogger("tracedllm")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    """Entry point of the ``tracedllm`` console script; returns the exit status."""
    out = out or sys.stdout
    args = _parser().parse_args(argv)
    try:
        with _quiet_library_logs():
            if args.command == "demo":
                return demo(args, out)
            if args.command == "replay":
                return replay(args, out)
            return check(args.base_url, args.model, out)
    except CommandError as exc:
        print(f"tracedllm: {exc}", file=sys.stderr)
        return exc.exit_code
    except TracedLLMError as exc:
        print(f"tracedllm: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_STREAM_FAILED
    except BrokenPipeError:  # e.g. `tracedllm replay x.sse | head`: not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except KeyboardInterrupt:
        return 130
