"""A small web server: answers every GET with a line of text.

Under pyvm2 with `listen`, it serves the socket the daemon holds (LISTEN_FDS, from fd 3) instead
of binding its own, and says READY=1 on NOTIFY_SOCKET once it serves, so `pyvm2 reload web`
fails no request. On SIGINT or SIGTERM it stops accepting and finishes what it serves. Binding for itself, with
WEB_REUSE_PORT=1 several copies share the port (SO_REUSEPORT).
"""

import os
import signal
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Hello(BaseHTTPRequestHandler):
    def do_GET(self):
        body = f"hello from pid {os.getpid()}\n".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, fmt, *args):
        if os.environ.get("WEB_LOG_REQUESTS", "1") != "0":
            print(f"{self.address_string()} {fmt % args}")


class Server(ThreadingHTTPServer):
    daemon_threads = False  # server_close() waits for the requests in progress

    def server_bind(self):
        if os.environ.get("WEB_REUSE_PORT") == "1":
            self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        super().server_bind()


def held_socket():
    """The first socket handed over by the manager (systemd's protocol), or None."""
    if os.environ.get("LISTEN_PID") != str(os.getpid()) or int(os.environ.get("LISTEN_FDS", "0")) < 1:
        return None
    return socket.socket(fileno=3)


def notify(message):
    """sd_notify: one datagram to NOTIFY_SOCKET, if the manager gave one."""
    path = os.environ.get("NOTIFY_SOCKET")
    if not path:
        return
    if path.startswith("@"):
        path = "\0" + path[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.sendto(message.encode(), path)


sock = held_socket()
if sock is not None:
    server = Server(sock.getsockname(), Hello, bind_and_activate=False)
    server.socket = sock
    print(f"serving the held socket {sock.getsockname()}")
else:
    port = int(os.environ.get("PORT", "8800"))
    server = Server(("127.0.0.1", port), Hello)
    print(f"listening on http://127.0.0.1:{port}")


def stop(_sig, _frame):
    notify("STOPPING=1")
    threading.Thread(target=server.shutdown).start()


signal.signal(signal.SIGINT, stop)
signal.signal(signal.SIGTERM, stop)
notify("READY=1\nSTATUS=serving")
server.serve_forever(poll_interval=0.1)
server.server_close()
