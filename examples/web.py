"""A small web server: answers every GET with a line of text."""

import os
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
        print(f"{self.address_string()} {fmt % args}")


port = int(os.environ.get("PORT", "8800"))
print(f"listening on http://127.0.0.1:{port}")
ThreadingHTTPServer(("127.0.0.1", port), Hello).serve_forever()
