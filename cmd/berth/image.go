package main

import "github.com/spf13/cobra"

// imageCommands returns the image subcommands (filled by the image work).
func imageCommands(_ *globals) []*cobra.Command { return nil }
