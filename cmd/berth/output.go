package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"text/template"
	"time"

	units "github.com/docker/go-units"
	"github.com/spf13/cobra"
	"golang.org/x/text/cases"
	"golang.org/x/text/language"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"sigs.k8s.io/yaml"
)

// truncatedIDLen is how much of an ID tables show, as crictl does.
const truncatedIDLen = 13

// Output formats.
const (
	formatTable      = "table"
	formatJSON       = "json"
	formatYAML       = "yaml"
	formatGoTemplate = "go-template"
)

// outputFormat is what -o/--output and --template ask for.
type outputFormat struct {
	format   string
	template string
}

func (o outputFormat) table() bool { return o.format == formatTable }

// addOutputFlag registers -o/--output with the formats a command accepts
// (the first is the default) plus go-template, and --template for it.
func addOutputFlag(cmd *cobra.Command, out *outputFormat, formats ...string) {
	formats = append(formats, formatGoTemplate)
	cmd.Flags().StringVarP(&out.format, "output", "o", formats[0], "output format, one of: "+strings.Join(formats, "|"))
	cmd.Flags().StringVar(&out.template, "template", "", "with -o go-template, the Go template to render the JSON output with, e.g. '{{.status.state}}'")
	_ = cmd.RegisterFlagCompletionFunc("output", cobra.FixedCompletions(formats, cobra.ShellCompDirectiveNoFileComp))
	prev := cmd.PreRunE
	cmd.PreRunE = func(c *cobra.Command, args []string) error {
		if !slices.Contains(formats, out.format) {
			return fmt.Errorf("unsupported output format %q: want one of %s", out.format, strings.Join(formats, ", "))
		}
		if out.format == formatGoTemplate {
			if out.template == "" {
				return errors.New("-o go-template needs --template")
			}
			if _, err := parseTemplate(out.template); err != nil {
				return err
			}
		}
		if prev != nil {
			return prev(c, args)
		}
		return nil
	}
}

// protoMarshal is crictl's JSON form of CRI messages: camelCase names,
// enums by name, and every scalar, list and map field present even when
// zero, so that scripts find exitCode 0 rather than nothing.
var protoMarshal = protojson.MarshalOptions{EmitDefaultValues: true}

// protoJSON renders a CRI message as crictl does, indented two spaces.
func protoJSON(m proto.Message) ([]byte, error) {
	b, err := protoMarshal.Marshal(m)
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

// printProto writes a CRI message as JSON, YAML or through a template.
func printProto(w io.Writer, out outputFormat, m proto.Message) error {
	b, err := protoJSON(m)
	if err != nil {
		return err
	}
	return printJSONBytes(w, out, b)
}

// printJSONBytes writes a JSON document as it is, converted to YAML, or
// rendered by the --template.
func printJSONBytes(w io.Writer, out outputFormat, b []byte) error {
	switch out.format {
	case formatYAML:
		y, err := yaml.JSONToYAML(b)
		if err != nil {
			return fmt.Errorf("convert to YAML: %w", err)
		}
		_, err = w.Write(y)
		return err
	case formatGoTemplate:
		return executeTemplate(w, out.template, b)
	}
	_, err := fmt.Fprintf(w, "%s\n", b)
	return err
}

// parseTemplate parses a --template with the functions crictl offers
// (json, title, lower, upper); a key the data lacks is an error.
func parseTemplate(text string) (*template.Template, error) {
	titleCase, lowerCase, upperCase := cases.Title(language.Und, cases.NoLower), cases.Lower(language.Und), cases.Upper(language.Und)
	funcs := template.FuncMap{
		// As crictl's: the encoder's trailing newline included.
		"json": func(v any) (string, error) {
			var b bytes.Buffer
			err := json.NewEncoder(&b).Encode(v)
			return b.String(), err
		},
		"title": titleCase.String,
		"lower": lowerCase.String,
		"upper": upperCase.String,
	}
	t, err := template.New("output").Funcs(funcs).Option("missingkey=error").Parse(text)
	if err != nil {
		return nil, fmt.Errorf("--template: %w", err)
	}
	return t, nil
}

// executeTemplate renders a template over a JSON document (numbers kept
// as written) and ends it with a newline.
func executeTemplate(w io.Writer, text string, doc []byte) error {
	t, err := parseTemplate(text)
	if err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(doc))
	dec.UseNumber()
	var data any
	if err := dec.Decode(&data); err != nil {
		return fmt.Errorf("decode output for --template: %w", err)
	}
	var buf bytes.Buffer
	if err := t.Execute(&buf, data); err != nil {
		return fmt.Errorf("--template: %w", err)
	}
	buf.WriteByte('\n')
	_, err = w.Write(buf.Bytes())
	return err
}

// protoRaw is a message's compact JSON.
func protoRaw(m proto.Message) (json.RawMessage, error) {
	b, err := protoMarshal.Marshal(m)
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
func printList[T identified](w io.Writer, quiet bool, out outputFormat, items []T, resp proto.Message, table func() error) error {
	switch {
	case quiet:
		for _, id := range ids(items) {
			fmt.Fprintln(w, id)
		}
		return nil
	case !out.table():
		return printProto(w, out, resp)
	}
	return table()
}
