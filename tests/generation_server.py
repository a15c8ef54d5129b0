"""A small OpenAI-compatible completions server for tests: the tiny catalog generation model on ONNX Runtime.

Standard library only (``http.server.ThreadingHTTPServer``, HTTP/1.1 keep-alive, chunked server-sent events),
so the ``openai`` adapter's tests need nothing beyond benchkit's own dependencies. It implements what that
adapter sends, as vLLM does: ``GET /v1/models``; ``POST /v1/completions`` with ``prompt`` as token ids,
``max_tokens``, ``stream`` and vLLM's ``return_tokens_as_token_ids`` (each streamed chunk then names its token
as ``"token_id:N"`` in ``logprobs.tokens``). Each request runs on its own thread with its own cache (prefill,
then one decode step per token, through benchkit's ONNX Runtime generator); greedy; EOS is never a stop.

Bound to 127.0.0.1 only; :func:`serving` stops it when the block ends, also on failure.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np

from benchkit.backends.ort_generate import OrtGenerator


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # each event leaves at once (uvicorn sets TCP_NODELAY too)
    server_version = "benchkit-test-completions/1.0"
    server: Any

    def log_message(self, fmt: str, *args: Any) -> None:  # quiet: tests read records, not access logs
        pass

    def _json(self, status: int, obj: Any) -> None:
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        if self.path.rstrip("/") != "/v1/models":
            return self._json(404, {"error": {"message": f"no route {self.path}"}})
        self._json(200, {"object": "list", "data": [{"id": self.server.model_name, "object": "model",
                                                      "owned_by": "benchkit-tests"}]})

    def do_POST(self) -> None:
        if self.path.rstrip("/") != "/v1/completions":
            return self._json(404, {"error": {"message": f"no route {self.path}"}})
        try:
            req = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
            prompt = np.asarray(req["prompt"], dtype=np.int64)
            max_tokens = int(req["max_tokens"])
            if prompt.ndim != 1 or not prompt.size or max_tokens < 1 or req.get("model") != self.server.model_name:
                raise ValueError("prompt must be token ids, max_tokens >= 1, model the served one")
        except (ValueError, KeyError, TypeError) as e:
            return self._json(400, {"error": {"message": str(e)}})
        ids = req.get("return_tokens_as_token_ids", False)
        if not req.get("stream"):
            tokens = list(self.server.generate(prompt, max_tokens))
            return self._json(200, {"object": "text_completion", "model": self.server.model_name, "choices": [
                {"index": 0, "text": "".join(f"<{t}>" for t in tokens), "finish_reason": "length"}]})
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for k, tok in enumerate(self.server.generate(prompt, max_tokens)):
            choice = {"index": 0, "text": f"<{tok}>", "finish_reason": "length" if k == max_tokens - 1 else None,
                      "logprobs": {"tokens": [f"token_id:{tok}"] if ids else [f"<{tok}>"]}}
            self._chunk(b"data: " + json.dumps({"object": "text_completion", "model": self.server.model_name,
                                                 "choices": [choice]}).encode() + b"\n\n")
        self._chunk(b"data: [DONE]\n\n")
        self.wfile.write(b"0\r\n\r\n")

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()


class CompletionsServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, graphs: Any, model_name: str, delay_s: float = 0.0) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.model_name = model_name
        self.delay_s = delay_s
        self.gen = OrtGenerator({"intra_op_num_threads": 1})
        self.gen.load(graphs)

    def generate(self, prompt: np.ndarray, max_tokens: int) -> Iterator[int]:
        tokens, state = self.gen.prefill([prompt])
        try:
            for k in range(max_tokens):
                if k:
                    tokens = self.gen.decode(state, tokens)
                if self.delay_s:
                    time.sleep(self.delay_s)
                yield int(tokens[0])
        finally:
            self.gen.release(state)


@contextlib.contextmanager
def serving(graphs: Any, model_name: str = "gpt2-tiny-generate", delay_s: float = 0.0) -> Iterator[str]:
    """Serve ``graphs`` on 127.0.0.1 (a free port) for the block; yields the API's base URL."""
    server = CompletionsServer(graphs, model_name, delay_s)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()
        server.gen.close()
        thread.join(timeout=5)
