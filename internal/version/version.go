// Package version holds berth's release version: berthd reports it as
// its RuntimeVersion and the berth CLI prints it for --version.
package version

// Version is berth's version; a release build sets it with
// -ldflags "-X github.com/berth-cri/berth/internal/version.Version=...".
var Version = "0.1.0-dev"
