// gRPC-Go peers over TLS for test_tls_go.py, built by the test with Debian's golang-go and
// golang-google-grpc-dev (GOPATH mode, no downloads), around grpc-go's own health service:
//
//	go_grpc_peer server ADDR:PORT CERT KEY LOG
//	    Serves grpc.health.v1.Health over TLS, with the service "podtap.up" SERVING (Check of
//	    any other service: NOT_FOUND); appends one JSON line per finished RPC to LOG
//	    ({"method", "code"}). Prints "listening" once it accepts connections.
//	go_grpc_peer client ADDR:PORT SERVICE...
//	    Calls Check once per SERVICE, in order, over one connection; prints "Check <code>"
//	    (the numeric gRPC status code) per call.
package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
)

func server(addr, cert, key, logPath string) error {
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	creds, err := credentials.NewServerTLSFromFile(cert, key)
	if err != nil {
		return err
	}
	var mu sync.Mutex
	record := func(method string, err error) {
		line, _ := json.Marshal(map[string]interface{}{
			"method": method, "code": int(status.Code(err))})
		mu.Lock()
		logFile.Write(append(line, '\n'))
		mu.Unlock()
	}
	unary := func(ctx context.Context, req interface{}, info *grpc.UnaryServerInfo,
		handler grpc.UnaryHandler) (interface{}, error) {
		resp, err := handler(ctx, req)
		record(info.FullMethod, err)
		return resp, err
	}
	s := grpc.NewServer(grpc.Creds(creds), grpc.UnaryInterceptor(unary))
	hs := health.NewServer()
	hs.SetServingStatus("podtap.up", healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(s, hs)
	listener, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	fmt.Println("listening")
	return s.Serve(listener)
}

func client(addr string, services []string) error {
	creds := credentials.NewTLS(&tls.Config{InsecureSkipVerify: true})
	conn, err := grpc.Dial(addr, grpc.WithTransportCredentials(creds), grpc.WithBlock())
	if err != nil {
		return err
	}
	defer conn.Close()
	health := healthpb.NewHealthClient(conn)
	for _, service := range services {
		_, err := health.Check(context.Background(), &healthpb.HealthCheckRequest{Service: service})
		fmt.Printf("Check %d\n", int(status.Code(err)))
	}
	return nil
}

func main() {
	args := os.Args[1:]
	var err error
	switch {
	case len(args) == 5 && args[0] == "server":
		err = server(args[1], args[2], args[3], args[4])
	case len(args) >= 2 && args[0] == "client":
		err = client(args[1], args[2:])
	default:
		err = fmt.Errorf("usage: go_grpc_peer server ADDR CERT KEY LOG | client ADDR SERVICE...")
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
