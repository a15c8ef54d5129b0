"""A client adapter for OpenAI-compatible streaming completions (server-sent events): vLLM, TGI, vendors' servers.

Options (``backends[].options``)::

    url: http://127.0.0.1:8000/v1    # base URL of the API (required); POST {url}/completions, GET {url}/models
    model: null                      # the "model" field sent; default: the first model {url}/models lists
    concurrency: 16                  # requests in flight at once, each on its own connection and thread
    timeout_s: 60                    # per read on the connection
    precision: unknown               # what the server computes in, as its operator states it (a client cannot
                                     # read it back); a record claiming another precision is INVALID
    api_key_env: null                # name of an environment variable holding a bearer token (never recorded)

Each request is ``POST {url}/completions`` with the prompt as token ids, ``max_tokens`` and ``min_tokens`` both
the drawn output length, ``ignore_eos: true`` and ``temperature: 0`` (greedy, exactly that many tokens: the
generative scenario's rules), ``stream: true``, and ``logprobs: 0`` with ``return_tokens_as_token_ids: true``
(vLLM's extension) so that the stream names each token's id (``"token_id:123"``) for the token-agreement check.
A stream without ids still counts tokens (one per non-empty text chunk), but cannot pass token agreement.
Times are taken as each event is parsed on the client: network and serialisation are inside, as a user of the
service sees them. Only the standard library is used (``http.client``): no extra to install.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator, Mapping
from http.client import HTTPConnection, HTTPException, HTTPSConnection
from typing import Any, Literal
from urllib.parse import urlsplit

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from benchkit.backends.base import BackendInfo, parse_options
from benchkit.backends.generative import StreamGenerator
from benchkit.errors import BackendError


class OpenAIOptions(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    url: str = Field(pattern=r"^https?://", description="Base URL of the API, e.g. http://127.0.0.1:8000/v1.")
    model: str | None = None
    concurrency: int = Field(16, ge=1, le=4096)
    timeout_s: float = Field(60.0, gt=0)
    precision: Literal["fp32", "fp16", "bf16", "int8", "mixed", "unknown"] = "unknown"
    api_key_env: str | None = None


class OpenAIStream(StreamGenerator):
    """Streams completions from an OpenAI-compatible server, one connection per thread."""

    name = "openai"

    def __init__(self, options: Mapping[str, Any]) -> None:
        super().__init__(options)
        self.opts = parse_options(OpenAIOptions, options)
        parts = urlsplit(self.opts.url.rstrip("/"))
        self._https = parts.scheme == "https"
        self._host, self._port = parts.hostname or "", parts.port
        self._base = parts.path
        self.concurrency = self.opts.concurrency
        self._local = threading.local()
        self._headers = {"Content-Type": "application/json", "Accept": "text/event-stream"}
        if self.opts.api_key_env:
            key = os.environ.get(self.opts.api_key_env)
            if not key:
                raise BackendError(f"api_key_env: environment variable {self.opts.api_key_env} is not set")
            self._headers["Authorization"] = f"Bearer {key}"
        self._model: str | None = self.opts.model
        self._server = ""

    def _conn(self) -> HTTPConnection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            cls = HTTPSConnection if self._https else HTTPConnection
            conn = self._local.conn = cls(self._host, self._port, timeout=self.opts.timeout_s)
        return conn

    def _drop(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    def load(self, graphs: Any) -> None:
        """Ask the server which models it serves (untimed): it must be up, and serve ``model`` if one is named."""
        try:
            conn = self._conn()
            conn.request("GET", f"{self._base}/models", headers=self._headers)
            resp = conn.getresponse()
            body = resp.read()
            self._server = resp.getheader("Server") or ""
        except (OSError, HTTPException) as e:
            self._drop()
            raise BackendError(f"openai: cannot reach {self.opts.url}/models: {e}") from None
        if resp.status != 200:
            raise BackendError(f"openai: {self.opts.url}/models answered {resp.status}: {body[:200]!r}")
        try:
            served = [m["id"] for m in json.loads(body)["data"]]
        except (ValueError, KeyError, TypeError):
            raise BackendError(f"openai: {self.opts.url}/models is not an OpenAI model list: {body[:200]!r}") \
                from None
        if self._model is None:
            if not served:
                raise BackendError(f"openai: {self.opts.url} serves no model")
            self._model = served[0]
        elif self._model not in served:
            raise BackendError(f"model: {self._model!r} is not served at {self.opts.url} (it serves "
                               f"{', '.join(served) or 'nothing'})")

    def stream(self, prompt: np.ndarray, max_tokens: int) -> Iterator[int]:
        body = json.dumps({
            "model": self._model, "prompt": [int(t) for t in prompt], "max_tokens": int(max_tokens),
            "min_tokens": int(max_tokens), "ignore_eos": True, "temperature": 0, "stream": True, "logprobs": 0,
            "return_tokens_as_token_ids": True,
        })
        conn = self._conn()
        try:
            conn.request("POST", f"{self._base}/completions", body, self._headers)
            resp = conn.getresponse()
            if resp.status != 200:
                raise BackendError(f"openai: {self.opts.url}/completions answered {resp.status}: "
                                   f"{resp.read()[:300]!r}")
            readline = resp.readline
            while True:
                line = readline()
                if not line:
                    break
                if not line.startswith(b"data:"):
                    continue  # blank separators, comments, event names
                payload = line[5:].strip()
                if payload == b"[DONE]":
                    break
                yield from _tokens(json.loads(payload))
            resp.read()  # the rest (the chunked terminator), so the connection can be reused
        except (OSError, HTTPException, ValueError) as e:
            self._drop()
            raise BackendError(f"openai: stream from {self.opts.url}/completions failed: {e}") from None
        except BaseException:
            self._drop()  # an abandoned stream leaves the connection mid-response
            raise

    def info(self) -> BackendInfo:
        resolved = self.opts.model_dump()
        resolved["model"] = self._model
        return BackendInfo(
            name=self.name, version=self._server or "unknown (no Server header)",
            device=f"remote: {self.opts.url}", precision=self.opts.precision, options=resolved,
            adapter=f"{type(self).__module__}:{type(self).__qualname__}")

    def close(self) -> None:
        self._drop()


def _tokens(event: dict[str, Any]) -> Iterator[int]:
    """Token ids of one completion chunk: from ``logprobs.tokens`` ("token_id:N"), else -1 per non-empty text."""
    for choice in event.get("choices") or ():
        logprobs = choice.get("logprobs") or {}
        names = logprobs.get("tokens")
        if names:
            for name in names:
                yield int(name[9:]) if isinstance(name, str) and name.startswith("token_id:") else -1
        elif choice.get("text"):
            yield -1


__all__ = ["OpenAIStream", "OpenAIOptions"]
