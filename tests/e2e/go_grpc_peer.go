// gRPC-Go peers over TLS for test_tls_go.py, built by the test with Debian's golang-go and
// golang-google-grpc-dev (GOPATH mode, no downloads), around grpc-go's own health and
// reflection services:
//
//	go_grpc_peer server ADDR:PORT CERT KEY LOG
//	    Serves grpc.health.v1.Health over TLS, with the service "podtap.up" SERVING (Check of
//	    any other service: NOT_FOUND), and server reflection (a bidirectional stream); appends
//	    one JSON line per finished RPC to LOG ({"method", "code"}). Prints "listening" once it
//	    accepts connections.
//	go_grpc_peer client ADDR:PORT SERVICE|-reflect...
//	    Over one connection, in order: calls Check for each SERVICE, and for each -reflect opens
//	    a reflection stream, asks for the services, reads the answer and ends the stream; prints
//	    "Check <code>" or "Reflect <code>" (the numeric gRPC status code) per call.
package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1alpha"
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
	stream := func(srv interface{}, ss grpc.ServerStream, info *grpc.StreamServerInfo,
		handler grpc.StreamHandler) error {
		err := handler(srv, ss)
		record(info.FullMethod, err)
		return err
	}
	s := grpc.NewServer(grpc.Creds(creds), grpc.UnaryInterceptor(unary),
		grpc.StreamInterceptor(stream))
	hs := health.NewServer()
	hs.SetServingStatus("podtap.up", healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(s, hs)
	reflection.Register(s)
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
		if service == "-reflect" {
			fmt.Printf("Reflect %d\n", int(status.Code(reflect(conn))))
			continue
		}
		_, err := health.Check(context.Background(), &healthpb.HealthCheckRequest{Service: service})
		fmt.Printf("Check %d\n", int(status.Code(err)))
	}
	return nil
}

// One reflection stream: a ListServices request, its answer, the end of the stream.
func reflect(conn *grpc.ClientConn) error {
	stream, err := reflectionpb.NewServerReflectionClient(conn).ServerReflectionInfo(
		context.Background())
	if err != nil {
		return err
	}
	req := &reflectionpb.ServerReflectionRequest{
		MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{ListServices: "*"}}
	if err := stream.Send(req); err != nil {
		return err
	}
	if _, err := stream.Recv(); err != nil {
		return err
	}
	if err := stream.CloseSend(); err != nil {
		return err
	}
	if _, err := stream.Recv(); err != io.EOF {
		return err
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
