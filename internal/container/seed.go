package container

import (
	"fmt"
	"path/filepath"
	"time"

	"github.com/berth-cri/berth/internal/store"
)

// SeedExited writes the records of exited containers into the state dir
// of a berthd that is not running, through the same record types and
// store berthd itself writes them with, so that its next start loads
// them like containers it ran. It exists for tests that need thousands
// of containers on one node (listing 5,000 of them), which running each
// one would take far too long to make. The containers' pods must exist;
// nothing else (bundle, writable layer, conmon) is made, which an exited
// container of a clean restart does not need for being listed.
func SeedExited(stateDir string, metas []*Meta, exitCode int32, finishedAt time.Time) error {
	records, err := store.Open(filepath.Join(stateDir, "containers"))
	if err != nil {
		return err
	}
	reason := ReasonError
	if exitCode == 0 {
		reason = ReasonCompleted
	}
	for _, meta := range metas {
		if meta.ID == "" || meta.PodID == "" {
			return fmt.Errorf("seed container %q of pod %q: id and pod id are required", meta.ID, meta.PodID)
		}
		meta.Version = recordVersion
		if _, err := records.Create(meta.ID); err != nil {
			return err
		}
		if err := records.Write(meta.ID, metaFile, meta); err != nil {
			return err
		}
		st := Status{Version: recordVersion, State: StateExited, StartedAt: meta.CreatedAt,
			FinishedAt: finishedAt, ExitCode: exitCode, Reason: reason}
		if err := records.WriteVolatile(meta.ID, statusFile, &st); err != nil {
			return err
		}
	}
	return nil
}
