"""A stand-in for Azure Active Directory's token endpoint (`{authuri}/{tenant}/oauth2/token`,
the resource owner password grant) for the R client's tests: it checks the form the client
sends and answers with the access token it was given, which the o16n server accepts.

Usage: python3 aad-token-endpoint.py PORT_FILE ACCESS_TOKEN (GET /stop ends it).
"""

import json
import sys
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, HTTPServer

port_file, access_token = sys.argv[1], sys.argv[2]
EXPECTED = {"grant_type": "password", "client_id": "native-app", "resource": "web-app",
            "username": "admin", "password": "Admin-Pass-1"}


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        form = urllib.parse.parse_qs(self.rfile.read(int(self.headers["Content-Length"])).decode())
        form = {key: values[0] for key, values in form.items()}
        if self.path != "/contoso.example/oauth2/token" or form != EXPECTED:
            status, body = 400, {"error": "invalid_grant", "error_description": "unexpected request %s %s" % (self.path, form)}
        else:
            status, body = 200, {"token_type": "Bearer", "access_token": access_token, "expires_in": "3600"}
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        self.send_response(204 if self.path == "/stop" else 404)
        self.end_headers()
        if self.path == "/stop":
            threading.Thread(target=self.server.shutdown).start()

    def log_message(self, *args):
        pass


server = HTTPServer(("127.0.0.1", 0), Handler)
with open(port_file, "w") as out:
    out.write(str(server.server_address[1]))
server.serve_forever()
