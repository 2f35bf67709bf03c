package daemon

import (
	"strings"

	"github.com/berth-cri/berth/internal/container"
)

// containerStateCounts counts the containers of ctrs by CRI state
// ("running"), for berth_containers{state}; it runs at each scrape.
func containerStateCounts(ctrs *container.Manager) func() map[string]int {
	return func() map[string]int {
		counts := map[string]int{}
		for _, c := range ctrs.List(nil) {
			counts[strings.ToLower(strings.TrimPrefix(c.GetState().String(), "CONTAINER_"))]++
		}
		return counts
	}
}
