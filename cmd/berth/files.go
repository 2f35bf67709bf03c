package main

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"os"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"sigs.k8s.io/yaml"
)

// loadPodConfig reads a PodSandboxConfig from a JSON or YAML file ("-" is
// standard input). Field names may be snake_case, as in crictl's examples,
// or camelCase.
func loadPodConfig(path string) (*runtimeapi.PodSandboxConfig, error) {
	cfg := &runtimeapi.PodSandboxConfig{}
	if err := loadMessage(path, cfg); err != nil {
		return nil, err
	}
	if cfg.Metadata == nil || cfg.Metadata.Name == "" {
		return nil, fmt.Errorf("pod config %s: metadata.name is required", path)
	}
	return cfg, nil
}

// loadContainerConfig reads a ContainerConfig like loadPodConfig.
func loadContainerConfig(path string) (*runtimeapi.ContainerConfig, error) {
	cfg := &runtimeapi.ContainerConfig{}
	if err := loadMessage(path, cfg); err != nil {
		return nil, err
	}
	if cfg.Metadata == nil || cfg.Metadata.Name == "" {
		return nil, fmt.Errorf("container config %s: metadata.name is required", path)
	}
	if cfg.GetImage().GetImage() == "" {
		return nil, fmt.Errorf("container config %s: image.image is required", path)
	}
	return cfg, nil
}

// loadConfigs reads the container and pod configs create and run take.
func loadConfigs(ctrPath, podPath string) (*runtimeapi.ContainerConfig, *runtimeapi.PodSandboxConfig, error) {
	ctr, err := loadContainerConfig(ctrPath)
	if err != nil {
		return nil, nil, err
	}
	pod, err := loadPodConfig(podPath)
	if err != nil {
		return nil, nil, err
	}
	return ctr, pod, nil
}

func loadMessage(path string, m proto.Message) error {
	var data []byte
	var err error
	if path == "-" {
		data, err = io.ReadAll(os.Stdin)
	} else {
		data, err = os.ReadFile(path)
	}
	if err != nil {
		return fmt.Errorf("read config: %w", err)
	}
	js, err := yaml.YAMLToJSON(data)
	if err != nil {
		return fmt.Errorf("parse %s: %w", path, err)
	}
	if _, ok := m.(*runtimeapi.ContainerConfig); ok {
		if js, err = encodeEnvValues(js); err != nil {
			return fmt.Errorf("parse %s: %w", path, err)
		}
	}
	if err := protojson.Unmarshal(js, m); err != nil {
		return fmt.Errorf("parse %s as a CRI %s: %w", path, m.ProtoReflect().Descriptor().Name(), err)
	}
	return nil
}

// encodeEnvValues base64-encodes the values of "envs": the CRI declares
// KeyValue.value as bytes, which protojson reads as base64, while config
// files (crictl's among them) write plain strings.
func encodeEnvValues(js []byte) ([]byte, error) {
	var doc map[string]any
	if err := json.Unmarshal(js, &doc); err != nil {
		return nil, err
	}
	envs, _ := doc["envs"].([]any)
	for _, e := range envs {
		kv, ok := e.(map[string]any)
		if !ok {
			continue
		}
		switch v := kv["value"].(type) {
		case string:
			kv["value"] = base64.StdEncoding.EncodeToString([]byte(v))
		case float64, bool:
			kv["value"] = base64.StdEncoding.EncodeToString([]byte(fmt.Sprint(v)))
		}
	}
	return json.Marshal(doc)
}
