"""A local HTTP file server on 127.0.0.1 for download tests: answers Range requests (206 / 416) and
injects faults per route (connection cut after N bytes, Range ignored, stalls, error statuses,
redirects); it logs every request's path and Range header."""
import http.server
import socket
import threading
from dataclasses import dataclass


@dataclass
class Route:
    """What the server answers for one path.

    body: the file; cut_after: send at most this many bytes per response, then close the connection
    (Content-Length still promises the rest), for the first `cuts` responses; ignore_range: answer
    200 with the whole body whatever the Range; stall: sleep this many seconds before the first
    `stalls` responses; fail: answer `status` (e.g. 503) to the first `fail` requests; status: the
    answer to every request when `fail` is 0 and status is not 200 (e.g. 404); location: redirect.
    """
    body: bytes = b""
    cut_after: int = None
    cuts: int = 1 << 30
    ignore_range: bool = False
    stall: float = 0.0
    stalls: int = 1
    fail: int = 0
    status: int = 200
    location: str = None
    served: int = 0


class FileServer:
    """`with FileServer() as server:` serves `server.routes` at `server.url + path`;
    `server.requests` lists (path, Range header or None) in arrival order."""

    def __init__(self):
        self.routes = {}
        self.requests = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                server.requests.append((self.path, self.headers.get("Range")))
                route = server.routes.get(self.path)
                if route is None:
                    return self.answer(404)
                route.served += 1
                if route.location is not None:
                    return self.answer(302, {"Location": route.location})
                if route.served <= route.fail or (route.status != 200 and not route.fail):
                    return self.answer(route.status)
                if route.stall and route.served <= route.stalls:
                    threading.Event().wait(route.stall)  # not time.sleep, which tests may patch
                self.send_body(route)

            def answer(self, status, headers=(), body=b""):
                self.send_response(status)
                for key, value in dict(headers).items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def send_body(self, route):
                size = len(route.body)
                wanted = self.headers.get("Range")
                start = 0
                if wanted and not route.ignore_range:
                    start = int(wanted.removeprefix("bytes=").split("-")[0])
                    if start >= size:
                        return self.answer(416, {"Content-Range": f"bytes */{size}"})
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{size - 1}/{size}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(size - start))
                self.end_headers()
                data = route.body[start:]
                if route.cut_after is not None and route.served <= route.cuts:
                    self.wfile.write(data[:route.cut_after])
                    self.wfile.flush()
                    self.connection.shutdown(socket.SHUT_RDWR)
                    self.close_connection = True
                    return
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def __enter__(self):
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()
