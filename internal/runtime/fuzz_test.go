package runtime

import (
	"context"
	"errors"
	"io"
	"os"
	"testing"
	"time"

	"github.com/berth-cri/berth/internal/errdefs"
)

// FuzzReadSync feeds conmon's sync pipe decoder arbitrary bytes, as a
// conmon (or a runtime writing through it) gone wrong might send. It
// must never panic or hang: it returns a message, io.EOF, or an error
// saying it could not read one; and the message decides nothing alone
// (a pid of 0 or less is a failed create, see Pending.Start).
func FuzzReadSync(f *testing.F) {
	f.Add([]byte(`{"pid": 1234}`))
	f.Add([]byte(`{"pid": -1, "message": "runc create failed: unable to start container process: exec: \"nope\": executable file not found in $PATH"}`))
	f.Add([]byte(`{"pid": 99999999999999999999}`))
	f.Add([]byte(`{"pid": "12"}`))
	f.Add([]byte(`{"pid": 1`))
	f.Add([]byte(``))
	f.Add([]byte("\x00\xff{\"pid\":1}"))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		go func() {
			w.Write(data)
			w.Close()
		}()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		msg, err := readSync(ctx, r)
		if err != nil {
			if errors.Is(err, errdefs.ErrDeadlineExceeded) || ctx.Err() != nil {
				t.Fatalf("decoder hung on %q: %v", data, err)
			}
			if !errors.Is(err, io.EOF) && msg != nil {
				t.Fatalf("error %v with a message", err)
			}
			return
		}
		if msg == nil {
			t.Fatal("no error and no message")
		}
		_ = runtimeMessage(msg.Message)
	})
}
