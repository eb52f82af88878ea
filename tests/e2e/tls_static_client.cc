// An HTTP/1.1 client over TLS with OpenSSL linked into its executable (Debian's libssl.a and
// libcrypto.a): no libssl.so in its mappings, SSL_read/SSL_write only in its own .symtab. The
// e2e tests (test_tls_embedded.py) and the finder's unit test use it.
//
//   podtap-tls-static-client HOST PORT AUTHORITY PATH...
//   podtap-tls-static-client --hold      maps the file until stdin closes, doing nothing else
//
// One TCP connection, the TLS socket BIO on it (SSL_set_fd), one keep-alive GET per PATH in
// order, each response read whole (Content-Length, or none for 204 and 304) before the next
// request. Prints "GET STATUS" per response on stdout: the client's own record. Exits non-zero
// on any error.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

namespace {

int Fail(const char* what) {
  std::fprintf(stderr, "tls-static-client: %s\n", what);
  ERR_print_errors_fp(stderr);
  return 1;
}

// Reads plaintext until `buf` holds at least `want` bytes (SSL_read_ex: the _ex form is
// probed too). False at the end of the stream or on an error.
bool ReadAtLeast(SSL* ssl, std::string* buf, size_t want) {
  char chunk[16384];
  while (buf->size() < want) {
    size_t got = 0;
    if (SSL_read_ex(ssl, chunk, sizeof(chunk), &got) != 1) return false;
    buf->append(chunk, got);
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc == 2 && std::strcmp(argv[1], "--hold") == 0) {
    char c;
    while (read(0, &c, 1) > 0) {
    }
    return 0;
  }
  if (argc < 5) return Fail("usage: podtap-tls-static-client HOST PORT AUTHORITY PATH...");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(std::atoi(argv[2])));
  if (inet_pton(AF_INET, argv[1], &addr.sin_addr) != 1) return Fail("bad IPv4 address");
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0 || connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    return Fail("connect");
  }
  SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
  if (ctx == nullptr) return Fail("SSL_CTX_new");
  SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, nullptr);  // the test's self-signed certificate
  SSL* ssl = SSL_new(ctx);
  if (ssl == nullptr || SSL_set_fd(ssl, fd) != 1) return Fail("SSL_set_fd");
  if (SSL_connect(ssl) != 1) return Fail("SSL_connect");
  std::string buf;
  for (int i = 4; i < argc; i++) {
    const std::string req = std::string("GET ") + argv[i] + " HTTP/1.1\r\nHost: " + argv[3] +
                            "\r\nUser-Agent: podtap-tls-static-client\r\n\r\n";
    if (SSL_write(ssl, req.data(), static_cast<int>(req.size())) != static_cast<int>(req.size())) {
      return Fail("SSL_write");
    }
    size_t end;
    while ((end = buf.find("\r\n\r\n")) == std::string::npos) {
      if (!ReadAtLeast(ssl, &buf, buf.size() + 1)) return Fail("response headers");
    }
    if (buf.compare(0, 9, "HTTP/1.1 ") != 0 || end < 12) return Fail("not an HTTP/1.1 response");
    const std::string status = buf.substr(9, 3);
    std::string head = buf.substr(0, end + 2);
    for (char& c : head) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (head.find("\r\ntransfer-encoding:") != std::string::npos) return Fail("chunked response");
    size_t body = 0;
    const size_t cl = head.find("\r\ncontent-length:");
    if (cl != std::string::npos) body = std::strtoul(head.c_str() + cl + 17, nullptr, 10);
    if (!ReadAtLeast(ssl, &buf, end + 4 + body)) return Fail("response body");
    buf.erase(0, end + 4 + body);
    std::printf("GET %s\n", status.c_str());
  }
  std::fflush(stdout);
  SSL_shutdown(ssl);
  SSL_free(ssl);
  SSL_CTX_free(ctx);
  close(fd);
  return 0;
}
