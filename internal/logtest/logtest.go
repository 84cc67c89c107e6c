// Package logtest captures what a test's loggers and child processes write.
// Its Buffer is the one sink every test package shares: it is internal (no
// part of the module's API) and imports nothing of the module, so any test
// and any <pkg>test helper can use it without an import cycle.
package logtest

import (
	"bytes"
	"strings"
	"sync"
)

// Buffer is an io.Writer safe for concurrent writes and reads, such as the
// writes of a slog handler on a server's goroutines and the reads of the
// test. Its zero value is ready to use; it must not be copied after first
// use.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p.
func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

// String returns everything written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// Lines returns the lines written so far, without their line ends (none
// when nothing was written).
func (b *Buffer) Lines() []string {
	s := strings.TrimSuffix(b.String(), "\n")
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}
