package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// inspect, inspectp, inspecti and info print documents shaped as crictl's,
// so that scripts written against crictl (jq .status.exitCode, .info.pid)
// work unchanged: {"status": {...}, <each verbose info key>: ...}, keys
// sorted, every field of the status present, one document for one object
// and an array of them for several.

// statusDoc is one object's document.
type statusDoc map[string]any

// newStatusDoc puts a status object and the runtime's verbose info into a
// document. An info value that is a JSON object is embedded as one; any
// other value is a string, quotes trimmed, as crictl does.
func newStatusDoc(status map[string]any, info map[string]string) statusDoc {
	doc := statusDoc{"status": status}
	for k, v := range info {
		doc[k] = infoValue(v)
	}
	return doc
}

func infoValue(v string) any {
	if strings.HasPrefix(v, "{") {
		var obj map[string]any
		if err := decodeJSON([]byte(v), &obj); err == nil {
			return obj
		}
	}
	return strings.Trim(v, `"`)
}

// decodeJSON decodes keeping numbers as written (int64s stay exact).
func decodeJSON(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	return dec.Decode(v)
}

// protoObject is a message in crictl's JSON form as a generic object.
func protoObject(m proto.Message) (map[string]any, error) {
	b, err := protoMarshal.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("encode %s: %w", m.ProtoReflect().Descriptor().Name(), err)
	}
	obj := map[string]any{}
	if err := decodeJSON(b, &obj); err != nil {
		return nil, fmt.Errorf("decode %s: %w", m.ProtoReflect().Descriptor().Name(), err)
	}
	return obj, nil
}

// everyField adds null for each field of m that its JSON form left out
// (unset messages): crictl lists every field of container and pod statuses.
func everyField(obj map[string]any, m proto.Message) {
	fields := m.ProtoReflect().Descriptor().Fields()
	for i := range fields.Len() {
		if name := fields.Get(i).JSONName(); obj[name] == nil {
			obj[name] = nil
		}
	}
}

// rfc3339 renders CRI nanoseconds as crictl does: local time, RFC 3339
// with nanoseconds; the zero time.Time for a time that does not apply.
func rfc3339(t time.Time) string { return t.Format(time.RFC3339Nano) }

// containerStatusObject is a container status as crictl inspect shows
// it: createdAt always as a time; startedAt once the container was
// started and finishedAt once it exited, else the zero time.
func containerStatusObject(cs *runtimeapi.ContainerStatus) (map[string]any, error) {
	obj, err := protoObject(cs)
	if err != nil {
		return nil, err
	}
	everyField(obj, cs)
	var started, finished time.Time
	if cs.State != runtimeapi.ContainerState_CONTAINER_CREATED {
		started = time.Unix(0, cs.StartedAt)
	}
	if cs.State == runtimeapi.ContainerState_CONTAINER_EXITED ||
		(cs.State == runtimeapi.ContainerState_CONTAINER_UNKNOWN && cs.FinishedAt > 0) {
		finished = time.Unix(0, cs.FinishedAt)
	}
	obj["createdAt"] = rfc3339(time.Unix(0, cs.CreatedAt))
	obj["startedAt"] = rfc3339(started)
	obj["finishedAt"] = rfc3339(finished)
	return obj, nil
}

// podStatusObject is a pod status as crictl inspectp shows it.
func podStatusObject(ps *runtimeapi.PodSandboxStatus) (map[string]any, error) {
	obj, err := protoObject(ps)
	if err != nil {
		return nil, err
	}
	everyField(obj, ps)
	obj["createdAt"] = rfc3339(time.Unix(0, ps.CreatedAt))
	return obj, nil
}

// printStatusDocs prints one document, or an array of several, as JSON
// (keys sorted, two-space indent), YAML or through the --template.
func printStatusDocs(w io.Writer, out outputFormat, docs []statusDoc) error {
	var v any = docs
	if len(docs) == 1 {
		v = docs[0]
	}
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode status: %w", err)
	}
	var buf bytes.Buffer
	if err := json.Indent(&buf, b, "", "  "); err != nil {
		return fmt.Errorf("indent status: %w", err)
	}
	return printJSONBytes(w, out, buf.Bytes())
}

// printStatuses fetches every reference's document first, so a failure
// prints nothing, then prints them: the body of inspect, inspectp and
// inspecti.
func printStatuses(w io.Writer, out outputFormat, refs []string, fetch func(ref string) (statusDoc, error)) error {
	docs := make([]statusDoc, 0, len(refs))
	for _, ref := range refs {
		doc, err := fetch(ref)
		if err != nil {
			return err
		}
		docs = append(docs, doc)
	}
	return printStatusDocs(w, out, docs)
}
