package logtest

import (
	"fmt"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestBuffer_ConcurrentWrites: writers on many goroutines and a reader at
// the same time lose no line (run with -race: the zero value needs no
// set-up to be safe on first use).
func TestBuffer_ConcurrentWrites(t *testing.T) {
	var b Buffer
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range 50 {
				fmt.Fprintf(&b, "w%d-%d\n", i, j)
				_ = b.String()
			}
		}()
	}
	wg.Wait()
	if got := len(b.Lines()); got != 8*50 {
		t.Errorf("%d lines, want %d", got, 8*50)
	}
}

func TestBuffer_Lines(t *testing.T) {
	tests := []struct {
		name  string
		write string
		want  []string
	}{
		{"nothing written", "", nil},
		{"one line", "a\n", []string{"a"}},
		{"two lines, the last unfinished", "a\nb", []string{"a", "b"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b Buffer
			_, _ = b.Write([]byte(tt.write))
			if diff := cmp.Diff(tt.want, b.Lines()); diff != "" {
				t.Errorf("Lines() mismatch (-want +got):\n%s", diff)
			}
		})
	}
}
