"""The explore page's web server: the page and a small JSON API over explorer.Explorer.

  GET  /                 the page (static/index.html; static/ holds its script and style)
  GET  /api/runs         the runs the picker offers, and the one to open first
  GET  /api/model        ?run=NAME: code size, sliders (most active first), the 2-D map's codes
  POST /api/decode       {run, code, label?}: the decoded image
  POST /api/random       {run, seed, temperature, sampler, label?}: a random code and its image
  POST /api/blend        {run, a, b, t, method, label?}: the decoded blend of codes a and b
  GET  /api/test-image   ?run=NAME&index=N: a test image, its code and its reconstruction
  POST /api/encode       ?run=NAME, the image file as the body: its code and reconstruction

Images come back as PNG data URLs; every answer about a model says how long the model work
took in `ms` (also as a Server-Timing header), so the page and the benchmark can tell the
server's time from the browser's round trip. An error is {"error": one line} with status 400
(bad request), 404 (no such run), 413 (upload too large) or 500, and the server keeps serving.

The model runs in worker threads (run_in_threadpool), never on the event loop, so a slow
request (the first GMM fit, loading MNIST) leaves the others answered.
"""

import errno
import json
import socket
import threading
import time
from importlib import resources
from urllib.parse import unquote

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from ..errors import UsageError, VaeError
from . import explorer
from .explorer import data_url

MAX_UPLOAD_BYTES = 20 * 1024 * 1024  # a phone photo is 3-12 MB
MAX_JSON_BYTES = 64 * 1024           # a code of a few hundred numbers is a few kB
STATIC = resources.files("vae_cli.explore") / "static"


class ApiError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class Explorers:
    """The runs opened so far, by name, each loaded once, in a worker thread (loading reads the
    checkpoint and the test images); loading one run holds up no other."""

    def __init__(self):
        self._loaded: dict[str, explorer.Explorer] = {}
        self._loading: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()

    def get(self, name) -> explorer.Explorer:
        try:
            explorer.check_name(name)  # a bad name goes no further than this
        except UsageError as error:
            raise ApiError(404, str(error)) from None
        with self._lock:
            loading = self._loading.setdefault(name, threading.Lock())
        with loading:  # one load per run, even when the page asks twice at once
            if name not in self._loaded:
                self._loaded[name] = explorer.Explorer(name)
            return self._loaded[name]


def create_app(first_run: str | None = None) -> Starlette:
    """The application; `first_run` is the run the page opens with (default: the newest)."""
    explorers = Explorers()

    async def model_call(name, work):
        """work(explorer) in a worker thread, timed: (result, milliseconds)."""
        def timed():
            model = explorers.get(name)
            start = time.perf_counter()
            result = work(model)
            return result, (time.perf_counter() - start) * 1000
        return await run_in_threadpool(timed)

    async def runs_list(request: Request):
        found = await run_in_threadpool(explorer.names)
        names = [run["name"] for run in found]
        return JSONResponse({"runs": found, "first": first_run if first_run in names else (names or [None])[0]})

    async def model_info(request: Request):
        info, ms = await model_call(request.query_params.get("run"), lambda m: m.info())
        return _answer(info, ms)

    async def decode(request: Request):
        body = await _json(request)
        image, ms = await model_call(body.get("run"), lambda m: m.decode(body.get("code"), body.get("label")))
        return _answer({"image": data_url(image)}, ms)

    async def random_code(request: Request):
        body = await _json(request)
        (code, image), ms = await model_call(body.get("run"), lambda m: m.random_code(
            body.get("seed"), body.get("temperature", 1.0), body.get("sampler", "prior"), body.get("label")))
        return _answer({"code": code, "image": data_url(image)}, ms)

    async def blend(request: Request):
        body = await _json(request)
        image, ms = await model_call(body.get("run"), lambda m: m.blend(
            body.get("a"), body.get("b"), body.get("t"), body.get("method", "slerp"), body.get("label")))
        return _answer({"image": data_url(image)}, ms)

    async def test_image(request: Request):
        query = request.query_params
        index, label = _whole(query.get("index"), "index"), _whole(query.get("label"), "label")
        result, ms = await model_call(query.get("run"), lambda m: m.encode_test_image(index, label))
        return _answer(_images_as_urls(result), ms)

    async def encode(request: Request):
        query = request.query_params
        label = _whole(query.get("label"), "label")
        content = await _body(request, MAX_UPLOAD_BYTES, "the image file")
        # The page sends the file's own name (URL-encoded: a header holds only Latin-1) for messages.
        shown_name = unquote(request.headers.get("x-file-name") or "the uploaded file")[:200]
        result, ms = await model_call(query.get("run"), lambda m: m.encode_upload(content, shown_name, label))
        return _answer(_images_as_urls(result), ms)

    async def page(request: Request):
        return FileResponse(STATIC / "index.html")

    routes = [
        Route("/", page),
        Route("/api/runs", runs_list),
        Route("/api/model", model_info),
        Route("/api/decode", decode, methods=["POST"]),
        Route("/api/random", random_code, methods=["POST"]),
        Route("/api/blend", blend, methods=["POST"]),
        Route("/api/test-image", test_image),
        Route("/api/encode", encode, methods=["POST"]),
        Mount("/static", StaticFiles(directory=str(STATIC)), name="static"),
    ]
    return Starlette(routes=routes, exception_handlers={
        ApiError: lambda request, error: JSONResponse({"error": str(error)}, error.status),
        VaeError: lambda request, error: JSONResponse({"error": str(error)}, 400),
        # Anything else is a bug: one line for the page, the traceback in the terminal (uvicorn
        # logs it), and the server goes on serving.
        Exception: lambda request, error: JSONResponse(
            {"error": f"internal error ({type(error).__name__}: {error}); the traceback is in the terminal "
                      f"running vae explore"}, 500),
    })


def _answer(payload: dict, ms: float) -> JSONResponse:
    return JSONResponse({**payload, "ms": round(ms, 3)}, headers={"Server-Timing": f"model;dur={ms:.3f}"})


def _images_as_urls(result: dict) -> dict:
    return {**result, "input": data_url(result["input"]), "reconstruction": data_url(result["reconstruction"])}


def _whole(value: str | None, name: str) -> int | None:
    if value is None or value == "":
        return None
    try:
        return int(value)
    except ValueError:
        raise ApiError(400, f"{name} {value[:40]!r}: use a whole number") from None


async def _body(request: Request, limit: int, what: str) -> bytes:
    """The request's body, refused with 413 as soon as it is known to exceed `limit` bytes."""
    too_large = ApiError(413, f"{what} is larger than {limit // (1024 * 1024) or limit} "
                              f"{'MB' if limit >= 1024 * 1024 else 'bytes'}: send a smaller one")
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_large
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
    if size == 0:
        raise ApiError(400, f"{what} is empty")
    return b"".join(chunks)


async def _json(request: Request) -> dict:
    raw = await _body(request, MAX_JSON_BYTES, "the request")
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise ApiError(400, "the request is not JSON") from None
    if not isinstance(body, dict):
        raise ApiError(400, "the request is not a JSON object")
    return body


LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


def listen(host: str, port: int) -> socket.socket:
    """A socket bound to host:port (port 0: a free one), or a one-line error naming the fix."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror as error:
        raise UsageError(f"--host {host!r}: not an address of this machine ({error.strerror})") from None
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as error:
        sock.close()
        if error.errno == errno.EADDRINUSE:
            raise UsageError(f"port {port} on {host} is in use: choose another with --port") from None
        raise UsageError(f"cannot listen on {host}:{port} ({error.strerror}): choose another --host or --port") from None
    return sock


def address(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://{f'[{host}]' if ':' in host else host}:{port}/"


def serve(sock: socket.socket, first_run: str | None, on_started=lambda: None) -> None:
    """Serve the page on `sock` until Ctrl-C (or SIGTERM), then return.

    The model's own intra-op threads are set to one: a request decodes one image, which a
    second thread does not speed up, and on a busy machine idle spinning threads slow it."""
    import torch
    import uvicorn
    torch.set_num_threads(1)
    server = uvicorn.Server(uvicorn.Config(create_app(first_run), log_level="warning", access_log=False))

    def announce():
        while not server.started and not server.should_exit:
            time.sleep(0.05)
        if server.started:
            on_started()
    threading.Thread(target=announce, daemon=True).start()
    server.run(sockets=[sock])
