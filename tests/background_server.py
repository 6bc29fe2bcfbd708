"""A scripted OpenAI server for ONE background response, for the loopback server.

`BackgroundScript` is a reply source for :class:`tracedllm._loopback.LoopbackServer` (pass it as
``default=``, or use :meth:`BackgroundScript.serve`) that behaves like OpenAI's Responses API
for one background response (``background: true``), as described in ``../shared/SPEC.md`` §2.7:

* ``POST /v1/responses`` streams the events from the start;
* ``GET /v1/responses/{id}?stream=true&starting_after=K`` streams the events whose
  ``sequence_number`` is greater than ``K`` (all of them without ``starting_after``);
* ``GET /v1/responses/{id}`` answers the JSON Response (``queued`` / ``in_progress`` /
  ``completed`` / ``cancelled``);
* ``POST /v1/responses/{id}/cancel`` answers the JSON Response with status ``cancelled``
  (idempotent: every call answers the same);
* with ``expired`` set, both GETs and the cancel answer OpenAI's 404 for an unknown response.

Each stream (the POST, then every ``stream=true`` GET, in order) takes the next entry of
``cuts``: a :class:`Cut` ends that stream early after a number of *new* events, by a TCP reset,
by ending the body (EOF) or by ``data: [DONE]``; ``None`` (or no entry left) streams to the end.
On a resume the script can first re-send ``resend`` events the client already has
(``sequence_number <= K``), which a client must drop.

The script knows nothing of tracedllm's engine: it only frames events (``sse_body``) and answers
HTTP, so tests of the client's resume logic do not depend on that logic.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import parse_qs, urlsplit

from tracedllm._loopback import LoopbackServer, RecordedRequest, Reply, sse_body
from tracedllm.testing import events_of

__all__ = ["BackgroundScript", "Cut", "How", "background_events", "not_found_body"]

JSON_HEADERS = (("content-type", "application/json"),)
SSE_HEADERS = (("content-type", "text/event-stream"),)
How = Literal["reset", "eof", "done"]
"""How a `Cut` ends a stream."""
_RESPONSE_PATH = re.compile(r"^/v1/responses/(?P<id>[^/?]+)(?P<cancel>/cancel)?$")


@dataclass(frozen=True)
class Cut:
    """How one stream ends early.

    Attributes:
        after: how many new events (``sequence_number`` above the resume point) are sent first;
            re-sent duplicates come before them and are not counted.
        how: ``"reset"`` (TCP reset, ``Reply(cut_after=...)``), ``"eof"`` (the body just ends)
            or ``"done"`` (``data: [DONE]``, then the body ends).
    """

    after: int
    how: How = "reset"


def background_events(**kwargs: Any) -> list[dict[str, Any]]:
    """`tracedllm.testing.events_of` shaped like an OpenAI background stream.

    ``response.created`` says ``status: "queued"``, ``response.queued`` follows it (the order
    OpenAI sends, SPEC §2.4/§2.7), every response object says ``background: true``, and the
    sequence numbers are renumbered from 0. Keyword arguments go to ``events_of``.
    """
    events = events_of(**kwargs)
    for event in events:
        if isinstance(event.get("response"), dict):
            event["response"] = {**event["response"], "background": True}
    created = events[0]
    created["response"]["status"] = "queued"
    queued = {"type": "response.queued", "response": {**created["response"]}}
    events.insert(1, queued)
    for number, event in enumerate(events):
        event["sequence_number"] = number
    return events


def not_found_body(response_id: str) -> bytes:
    """OpenAI's 404 body for a response it does not have (expired, or never stored)."""
    error = {
        "message": f"Response with id '{response_id}' not found.",
        "type": "invalid_request_error",
        "param": None,
        "code": None,
    }
    return json.dumps({"error": error}).encode()


class BackgroundScript:
    """Plays one background response; call it with a request to get the `Reply`.

    Args:
        events: the events of the whole stream, in order (e.g. `background_events`); the first
            must be ``response.created`` (its response gives the id). An event without a
            ``sequence_number`` counts as its position in the list.
        cuts: one entry per stream served (the POST first, then each ``stream=true`` GET):
            a `Cut`, or ``None`` for a stream sent to its end. Streams past the list run to
            the end.
        resend: on a resume after ``K``, first re-send up to this many events with
            ``sequence_number <= K`` (duplicates).
        expired: answer 404 to every GET and cancel (the POST still streams); may be set
            later, e.g. once the POST was answered.
        poll_statuses: the statuses the JSON GETs answer, one per GET (the last repeats);
            empty: ``cancelled`` once cancelled, else ``completed`` once a stream was sent to
            its end, else ``in_progress``.
        stream_headers: extra headers of every streamed reply (e.g. ``retry-after``).
        resume_replies: one entry per resume (``stream=true`` GET), in order: a `Reply` to send
            instead of the stream (e.g. a 503), or ``None`` to stream; such a resume takes no
            entry of ``cuts``.

    Attributes:
        response_id: the id of the response (from ``response.created``).
        cancelled: whether a cancel was received.
    """

    def __init__(
        self,
        events: Sequence[dict[str, Any]],
        *,
        cuts: Sequence[Cut | None] = (),
        resend: int = 0,
        expired: bool = False,
        poll_statuses: Sequence[str] = (),
        stream_headers: Sequence[tuple[str, str]] = (),
        resume_replies: Sequence[Reply | None] = (),
    ) -> None:
        if not events or events[0].get("type") != "response.created":
            raise ValueError("a background stream starts with response.created")
        self.events = [dict(event) for event in events]
        self.cuts = list(cuts)
        self.resend = resend
        self.expired = expired
        self.poll_statuses = list(poll_statuses)
        self.stream_headers = tuple(stream_headers)
        self.resume_replies = list(resume_replies)
        self.response_id: str = self.events[0]["response"]["id"]
        self.cancelled = False
        self._lock = threading.Lock()
        self._requests: list[RecordedRequest] = []
        self._sent: list[list[int]] = []
        self._polls = 0
        self._resumes = 0
        self._finished = False

    # --- what the tests read ----------------------------------------------------------------

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request received, in order."""
        with self._lock:
            return list(self._requests)

    @property
    def resumes(self) -> list[RecordedRequest]:
        """The ``GET .../responses/{id}?stream=true...`` requests, in order."""
        return [r for r in self.requests if r.method == "GET" and _query(r).get("stream") == "true"]

    @property
    def sent(self) -> list[list[int]]:
        """The sequence numbers each stream sent (before its cut), one list per stream."""
        with self._lock:
            return [list(numbers) for numbers in self._sent]

    def sequence(self, event: dict[str, Any]) -> int:
        """The sequence number of one of the script's events (its position without one)."""
        number = event.get("sequence_number")
        return number if isinstance(number, int) else self.events.index(event)

    def response(self, status: str | None = None) -> dict[str, Any]:
        """The JSON Response for ``status``: the terminal event's response for a terminal
        status (if the stream has one), else the created response with that status."""
        terminal = self.events[-1].get("response")
        if isinstance(terminal, dict) and (status is None or terminal.get("status") == status):
            return dict(terminal)
        created: dict[str, Any] = self.events[0]["response"]
        return {**created, "status": status or created.get("status", "in_progress")}

    # --- serving --------------------------------------------------------------------------------

    @contextmanager
    def serve(self) -> Iterator[LoopbackServer]:
        """A started loopback server answering every request with this script."""
        with LoopbackServer(default=self) as server:
            yield server

    def __call__(self, request: RecordedRequest) -> Reply:
        with self._lock:
            self._requests.append(request)
        path = urlsplit(request.path).path
        if request.method == "POST" and path == "/v1/responses":
            return self._stream(-1)
        match = _RESPONSE_PATH.match(path)
        if match is None:
            return _json(404, {"error": {"message": f"no route for {path}", "type": "not_found"}})
        if match["id"] != self.response_id or self.expired:
            return Reply(404, not_found_body(match["id"]), JSON_HEADERS)
        if match["cancel"]:
            if request.method != "POST":
                return _json(405, {"error": {"message": "use POST", "type": "invalid_request"}})
            self.cancelled = True
            return _json(200, self.response("cancelled"))
        if request.method != "GET":
            return _json(405, {"error": {"message": "use GET", "type": "invalid_request"}})
        query = _query(request)
        if query.get("stream") == "true":
            with self._lock:
                index, self._resumes = self._resumes, self._resumes + 1
            if index < len(self.resume_replies) and (reply := self.resume_replies[index]):
                return reply
            return self._stream(int(query.get("starting_after", "-1")))
        return _json(200, self.response(self._poll_status()))

    def _poll_status(self) -> str:
        with self._lock:
            if self.poll_statuses:
                status = self.poll_statuses[min(self._polls, len(self.poll_statuses) - 1)]
                self._polls += 1
                return status
        if self.cancelled:
            return "cancelled"
        return "completed" if self._finished else "in_progress"

    def _stream(self, starting_after: int) -> Reply:
        with self._lock:
            index = len(self._sent)
            cut = self.cuts[index] if index < len(self.cuts) else None
            self._sent.append([])
        new = [e for e in self.events if self.sequence(e) > starting_after]
        old = [e for e in self.events if self.sequence(e) <= starting_after]
        duplicates = old[len(old) - self.resend :] if self.resend and starting_after >= 0 else []
        if cut is not None:
            new = new[: cut.after]
        sent = [*duplicates, *new]
        with self._lock:
            self._sent[index] = [self.sequence(e) for e in sent]
            if cut is None:
                self._finished = True
        headers = SSE_HEADERS + self.stream_headers
        if cut is None or cut.how == "eof":
            return Reply(body=sse_body(sent), headers=headers)
        if cut.how == "done":
            return Reply(body=sse_body(sent, done=True), headers=headers)
        body = sse_body(sent)
        # cut_after = the whole body: the server sends exactly these events, then resets
        rest = sse_body([e for e in self.events if self.sequence(e) > starting_after][cut.after :])
        return Reply(body=body + rest, headers=headers, cut_after=len(body))


def _query(request: RecordedRequest) -> dict[str, str]:
    return {k: v[-1] for k, v in parse_qs(urlsplit(request.path).query).items()}


def _json(status: int, body: Any) -> Reply:
    return Reply(status, json.dumps(body).encode(), JSON_HEADERS)
