// Package secretfile owns how extauthz reads a secret from a file named in
// the configuration: HMAC secrets (jwt.providers[].hmac_secret_file), Redis
// passwords (redis.password_file), the introspection client secret
// (introspection.client_secret_file) and TLS private keys
// (listen.tls.key_file).
//
// Read accepts only a regular file (following symlinks, as Kubernetes secret
// volumes use them: key -> ..data/key), of at most MaxBytes, that neither its
// group nor others can write. It never blocks on a FIFO and never reads a
// device. A world-readable file is accepted: Kubernetes mounts secrets 0644
// unless the volume sets defaultMode, and refusing the default would break
// every first deployment (docs/SECURITY.md says why and recommends 0400).
//
// It owns nothing else: it does not trim, parse or cache the content, and it
// logs nothing. Like every leaf package it imports no project package.
package secretfile

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"syscall"
)

// MaxBytes is the largest secret file Read accepts (64 KiB): a password, an
// HMAC secret or a PEM private key is far smaller.
const MaxBytes = 64 << 10

// The refusals, matched with errors.Is.
var (
	ErrNotRegular = errors.New("not a regular file")
	ErrTooLarge   = errors.New("larger than 64 KiB")
	ErrWritable   = errors.New("writable by group or others")
)

// Read returns the content of the secret file at path. key is the config key
// that names the file (e.g. "api_keys.redis.password_file"); every error
// starts with it (unless key is empty: for a caller that prefixes the key
// itself), then names the path, and never contains the content.
func Read(key, path string) ([]byte, error) {
	b, err := read(path)
	if err == nil {
		return b, nil
	}
	var pe *fs.PathError
	if !errors.As(err, &pe) { // "stat PATH: …" names the path already
		err = fmt.Errorf("%s: %w", path, err)
	}
	if key != "" {
		err = fmt.Errorf("%s: %w", key, err)
	}
	return nil, err
}

func read(path string) ([]byte, error) {
	// Stat first (following symlinks): opening a FIFO would block, and
	// opening some devices has side effects.
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if err := check(fi); err != nil {
		return nil, err
	}
	// O_NONBLOCK: should the file have been replaced by a FIFO since the
	// Stat, the open does not hang; the Stat of the open file then refuses
	// it.
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err = f.Stat()
	if err != nil {
		return nil, err
	}
	if err := check(fi); err != nil {
		return nil, err
	}
	b, err := io.ReadAll(io.LimitReader(f, MaxBytes+1))
	if err != nil {
		return nil, err
	}
	if len(b) > MaxBytes {
		return nil, ErrTooLarge
	}
	return b, nil
}

func check(fi fs.FileInfo) error {
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%w (%s): point it at the file that holds the secret", ErrNotRegular, fileType(fi.Mode()))
	}
	if fi.Size() > MaxBytes {
		return fmt.Errorf("%w (%d bytes): is this the right file?", ErrTooLarge, fi.Size())
	}
	if fi.Mode().Perm()&0o022 != 0 {
		return fmt.Errorf("%w (mode %04o): anyone who can write it can change the secret; chmod go-w (0400 or 0600 is best)", ErrWritable, fi.Mode().Perm())
	}
	return nil
}

func fileType(m fs.FileMode) string {
	switch {
	case m.IsDir():
		return "a directory"
	case m&fs.ModeNamedPipe != 0:
		return "a FIFO"
	case m&fs.ModeSocket != 0:
		return "a socket"
	case m&fs.ModeDevice != 0:
		return "a device"
	default:
		return "mode " + m.String()
	}
}
