package runtime

import specs "github.com/opencontainers/runtime-spec/specs-go"

// ExecTarget is what exec and attach need to know about one container.
type ExecTarget struct {
	// ID is the container's id in the OCI runtime.
	ID string
	// Running is true while the container's init process runs.
	Running bool
	// Runtime is the container's OCI runtime (its handler's).
	Runtime OCI
	// Bundle is the OCI bundle directory; its config.json gives the
	// process that exec copies (user, env, cwd, capabilities, ...) unless
	// Process is set.
	Bundle  string
	Process *specs.Process
	// AttachSocket is conmon's attach socket (normally
	// <attach dir>/<id>/attach) and ControlFIFO its ctl FIFO
	// (<bundle>/ctl).
	AttachSocket string
	ControlFIFO  string
	// TTY, Stdin and StdinOnce are the container's CRI settings.
	TTY       bool
	Stdin     bool
	StdinOnce bool
}
