// Go crypto/tls peers for test_tls_go.py, built by the test with Debian's golang-go (GOPATH
// mode, no downloads):
//
//	go_tls_peer server h1|h2 ADDR:PORT CERT KEY LOG
//	    A net/http TLS server (h1: HTTP/1.1 only, no ALPN h2; h2: HTTP/2 through ALPN). Answers
//	    GET /status/CODE with CODE and any other path with 200 and a 10-byte body; appends one
//	    JSON line per answered request to LOG ({"host", "status", "method", "conn": the client's
//	    address}). Prints "listening" once it accepts connections.
//	go_tls_peer client h1|h2|h1-wrapped ADDR:PORT PATH...
//	    Requests every PATH over one keep-alive connection (h1: HTTP/1.1, h2: HTTP/2 through
//	    ALPN; h1-wrapped: HTTP/1.1 over a tls.Conn whose net.Conn is a wrapper around the
//	    *net.TCPConn), reading each body whole; prints "GET <status>" per answer.
package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"sync"
)

var statusPath = regexp.MustCompile(`^/status/(\d{3})$`)

func server(proto, addr, cert, key, logPath string) error {
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	var mu sync.Mutex
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		status := http.StatusOK
		if m := statusPath.FindStringSubmatch(r.URL.Path); m != nil {
			status, _ = strconv.Atoi(m[1])
		}
		w.Header().Set("content-type", "text/plain")
		w.WriteHeader(status)
		if status != http.StatusNoContent {
			io.WriteString(w, "xxxxxxxxxx")
		}
		line, _ := json.Marshal(map[string]string{
			"host": r.Host, "status": strconv.Itoa(status), "method": r.Method,
			"conn": r.RemoteAddr})
		mu.Lock()
		logFile.Write(append(line, '\n'))
		mu.Unlock()
	})
	srv := &http.Server{Addr: addr, Handler: handler}
	if proto == "h1" {
		// An empty map turns the HTTP/2 upgrade off: ALPN offers http/1.1 only.
		srv.TLSNextProto = map[string]func(*http.Server, *tls.Conn, http.Handler){}
	}
	listener, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	fmt.Println("listening")
	return srv.ServeTLS(listener, cert, key)
}

// A net.Conn that is not a *net.TCPConn: its methods are the TCP connection's.
type wrapped struct {
	net.Conn
}

func client(proto, addr string, paths []string) error {
	config := &tls.Config{InsecureSkipVerify: true}
	transport := &http.Transport{TLSClientConfig: config, MaxConnsPerHost: 1}
	switch proto {
	case "h1":
		transport.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
	case "h2":
		transport.ForceAttemptHTTP2 = true
	case "h1-wrapped":
		transport.DialTLSContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
			tcp, err := (&net.Dialer{}).DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			conn := tls.Client(wrapped{tcp}, config)
			if err := conn.HandshakeContext(ctx); err != nil {
				tcp.Close()
				return nil, err
			}
			return conn, nil
		}
	default:
		return fmt.Errorf("unknown client protocol %s", proto)
	}
	c := &http.Client{Transport: transport}
	for _, path := range paths {
		resp, err := c.Get("https://" + addr + path)
		if err != nil {
			return err
		}
		if _, err := io.Copy(io.Discard, resp.Body); err != nil {
			return err
		}
		resp.Body.Close()
		if (proto == "h2") != (resp.ProtoMajor == 2) {
			return fmt.Errorf("%s answered over %s", path, resp.Proto)
		}
		fmt.Printf("GET %d\n", resp.StatusCode)
	}
	transport.CloseIdleConnections()
	return nil
}

func main() {
	args := os.Args[1:]
	var err error
	switch {
	case len(args) == 6 && args[0] == "server":
		err = server(args[1], args[2], args[3], args[4], args[5])
	case len(args) >= 3 && args[0] == "client":
		err = client(args[1], args[2], args[3:])
	default:
		err = fmt.Errorf("usage: go_tls_peer server h1|h2 ADDR CERT KEY LOG | client h1|h2|h1-wrapped ADDR PATH...")
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
