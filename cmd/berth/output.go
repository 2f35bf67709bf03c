package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	units "github.com/docker/go-units"
	"github.com/spf13/cobra"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"sigs.k8s.io/yaml"
)

// truncatedIDLen is how much of an ID tables show, as crictl does.
const truncatedIDLen = 13

// Output formats.
const (
	formatTable = "table"
	formatJSON  = "json"
	formatYAML  = "yaml"
)

// addOutputFlag registers -o/--output with the formats a command accepts;
// the first is the default.
func addOutputFlag(cmd *cobra.Command, out *string, formats ...string) {
	cmd.Flags().StringVarP(out, "output", "o", formats[0], "output format, one of: "+strings.Join(formats, "|"))
	_ = cmd.RegisterFlagCompletionFunc("output", cobra.FixedCompletions(formats, cobra.ShellCompDirectiveNoFileComp))
	prev := cmd.PreRunE
	cmd.PreRunE = func(c *cobra.Command, args []string) error {
		if !slices.Contains(formats, *out) {
			return fmt.Errorf("unsupported output format %q: want one of %s", *out, strings.Join(formats, ", "))
		}
		if prev != nil {
			return prev(c, args)
		}
		return nil
	}
}

// protoJSON renders a CRI message as crictl does: camelCase field names,
// unset fields left out, two-space indentation.
func protoJSON(m proto.Message) ([]byte, error) {
	b, err := protojson.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("encode %s: %w", m.ProtoReflect().Descriptor().Name(), err)
	}
	// protojson's own whitespace is deliberately unstable; indent it here.
	var buf bytes.Buffer
	if err := json.Indent(&buf, b, "", "  "); err != nil {
		return nil, fmt.Errorf("indent JSON: %w", err)
	}
	return buf.Bytes(), nil
}

func compact(b []byte) []byte {
	var buf bytes.Buffer
	if err := json.Compact(&buf, b); err != nil {
		return b
	}
	return buf.Bytes()
}

// printProto writes a CRI message as JSON or YAML.
func printProto(w io.Writer, format string, m proto.Message) error {
	b, err := protoJSON(m)
	if err != nil {
		return err
	}
	return printJSONBytes(w, format, b)
}

// printJSONBytes writes a JSON document as it is, or converted to YAML.
func printJSONBytes(w io.Writer, format string, b []byte) error {
	if format == formatYAML {
		y, err := yaml.JSONToYAML(b)
		if err != nil {
			return fmt.Errorf("convert to YAML: %w", err)
		}
		_, err = w.Write(y)
		return err
	}
	_, err := fmt.Fprintf(w, "%s\n", b)
	return err
}

// printStatusInfo writes what inspect, inspectp, inspecti and info print:
// the status object, extra fields, and each verbose info entry decoded when
// it is JSON.
func printStatusInfo(w io.Writer, format string, status proto.Message, info map[string]string, extra map[string]json.RawMessage) error {
	doc := map[string]json.RawMessage{}
	b, err := protoRaw(status)
	if err != nil {
		return err
	}
	doc["status"] = b
	for k, v := range extra {
		doc[k] = v
	}
	for k, v := range info {
		if json.Valid([]byte(v)) {
			doc[k] = json.RawMessage(v)
			continue
		}
		s, err := json.Marshal(v)
		if err != nil {
			return fmt.Errorf("encode info %s: %w", k, err)
		}
		doc[k] = s
	}
	out, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return fmt.Errorf("encode status: %w", err)
	}
	return printJSONBytes(w, format, out)
}

// printStatuses prints each reference's status as printStatusInfo does,
// stopping at the first failure: the body of inspect, inspectp, inspecti.
func printStatuses(w io.Writer, format string, refs []string, status func(ref string) (proto.Message, map[string]string, error)) error {
	for _, ref := range refs {
		st, info, err := status(ref)
		if err != nil {
			return err
		}
		if err := printStatusInfo(w, format, st, info, nil); err != nil {
			return err
		}
	}
	return nil
}

// protoRaw is a message's compact JSON.
func protoRaw(m proto.Message) (json.RawMessage, error) {
	b, err := protojson.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("encode %s: %w", m.ProtoReflect().Descriptor().Name(), err)
	}
	return compact(b), nil
}

// protoField is one field of a message's JSON form ("null" when unset).
func protoField(m proto.Message, field string) (json.RawMessage, error) {
	b, err := protoRaw(m)
	if err != nil {
		return nil, err
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(b, &fields); err != nil {
		return nil, fmt.Errorf("decode %s: %w", m.ProtoReflect().Descriptor().Name(), err)
	}
	if v, ok := fields[field]; ok {
		return v, nil
	}
	return json.RawMessage("null"), nil
}

// newTable returns an aligned column writer; Flush it at the end.
func newTable(w io.Writer) *tabwriter.Writer {
	return tabwriter.NewWriter(w, 0, 4, 3, ' ', 0)
}

// shortID cuts an ID (or an image ID without its "sha256:") for a table.
func shortID(id string, noTrunc bool) string {
	id = strings.TrimPrefix(id, "sha256:")
	if noTrunc || len(id) <= truncatedIDLen {
		return id
	}
	return id[:truncatedIDLen]
}

// ago renders a CRI timestamp (nanoseconds since the epoch) relative to now.
func ago(nanos int64, now time.Time) string {
	if nanos == 0 {
		return "<unknown>"
	}
	return units.HumanDuration(now.Sub(time.Unix(0, nanos))) + " ago"
}

// humanSize prints bytes the way crictl does (kB, MB, GB).
func humanSize(n uint64) string {
	return units.HumanSizeWithPrecision(float64(n), 3)
}

// containerState is crictl's name of a container state.
func containerState(s runtimeapi.ContainerState) string {
	switch s {
	case runtimeapi.ContainerState_CONTAINER_CREATED:
		return "Created"
	case runtimeapi.ContainerState_CONTAINER_RUNNING:
		return "Running"
	case runtimeapi.ContainerState_CONTAINER_EXITED:
		return "Exited"
	default:
		return "Unknown"
	}
}

// podState is crictl's name of a pod sandbox state.
func podState(s runtimeapi.PodSandboxState) string {
	if s == runtimeapi.PodSandboxState_SANDBOX_READY {
		return "Ready"
	}
	return "NotReady"
}

// parseLabels turns key=value selectors into a map.
func parseLabels(sel []string) (map[string]string, error) {
	if len(sel) == 0 {
		return nil, nil
	}
	m := make(map[string]string, len(sel))
	for _, l := range sel {
		k, v, ok := strings.Cut(l, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("--label %q: want key=value", l)
		}
		m[k] = v
	}
	return m, nil
}

// printList writes what ps, pods and images list: IDs only with -q, the
// whole response as JSON or YAML, or else the table.
func printList[T identified](w io.Writer, quiet bool, format string, items []T, resp proto.Message, table func() error) error {
	switch {
	case quiet:
		for _, id := range ids(items) {
			fmt.Fprintln(w, id)
		}
		return nil
	case format != formatTable:
		return printProto(w, format, resp)
	}
	return table()
}
