//go:build race

package stats

// raceEnabled: the race detector shadows memory, so helpers use more.
const raceEnabled = true
