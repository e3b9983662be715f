# A metrics target for the TLS and auth tests: serves /metrics over HTTPS with the given
# cert/key, requiring either basic auth user:pass or a bearer token (given on the command
# line), and prints its port on stdout once listening.
import base64, http.server, ssl, sys

cert, key, user, password, token = sys.argv[1:6]
basic = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
bearer = "Bearer " + token

class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        auth = self.headers.get("Authorization", "")
        if auth not in (basic, bearer):
            self.send_response(401)
            self.end_headers()
            return
        body = b"auth_ok 1\n"
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *a):
        pass

srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(cert, key)
srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
print(srv.server_address[1], flush=True)
srv.serve_forever()
