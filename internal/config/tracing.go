package config

import (
	"net"
	"strconv"
)

// Tracing is the [berth.tracing] table: OpenTelemetry spans exported over
// OTLP/gRPC, with CRI-O's key names. Off by default.
type Tracing struct {
	Enable   bool   `toml:"enable_tracing" comment:"Export OpenTelemetry spans of CRI requests and their slow steps over OTLP/gRPC."`
	Endpoint string `toml:"tracing_endpoint" comment:"host:port of the OTLP/gRPC collector (plain text, no TLS)."`
	// SamplingRatePerMillion applies to traces berth starts; a request
	// whose caller (the kubelet) sampled its trace is always traced.
	SamplingRatePerMillion int `toml:"tracing_sampling_rate_per_million" comment:"Traces started by berth that are sampled, per million; requests carrying a sampled trace context are always traced."`
}

// defaultTracing is the table's built-in value: off, and the collector's
// usual local port if it is turned on.
func defaultTracing() Tracing {
	return Tracing{Endpoint: "127.0.0.1:4317"}
}

// validateTracing reports the table's bad values through bad.
func validateTracing(t Tracing, bad func(key, format string, args ...any)) {
	if _, port, err := net.SplitHostPort(t.Endpoint); err != nil {
		bad("berth.tracing.tracing_endpoint", "%q is not host:port", t.Endpoint)
	} else if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		bad("berth.tracing.tracing_endpoint", "%q has no valid port", t.Endpoint)
	}
	if r := t.SamplingRatePerMillion; r < 0 || r > 1_000_000 {
		bad("berth.tracing.tracing_sampling_rate_per_million", "%d is not between 0 and 1000000", r)
	}
}
