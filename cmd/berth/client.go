package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// client is a connection to berthd's CRI socket.
type client struct {
	conn    *grpc.ClientConn
	runtime runtimeapi.RuntimeServiceClient
	images  runtimeapi.ImageServiceClient
	timeout time.Duration
}

// connect dials the endpoint given by --runtime-endpoint.
func (g *globals) connect() (*client, error) {
	timeout, err := time.ParseDuration(g.timeout)
	if err != nil {
		return nil, fmt.Errorf("--timeout: %w", err)
	}
	target := g.endpoint
	if !strings.HasPrefix(target, "unix://") {
		target = "unix://" + target
	}
	conn, err := grpc.NewClient(target, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", g.endpoint, err)
	}
	return &client{
		conn:    conn,
		runtime: runtimeapi.NewRuntimeServiceClient(conn),
		images:  runtimeapi.NewImageServiceClient(conn),
		timeout: timeout,
	}, nil
}

// ctx returns a context bounded by --timeout for one call.
func (c *client) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), c.timeout)
}

func (c *client) Close() error { return c.conn.Close() }
