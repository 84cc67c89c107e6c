package apikeys

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"
)

// filePollInterval is how often the embedded store checks its file for
// changes made by another process (`extauthz keys create`).
const filePollInterval = time.Second

// memBackend is the embedded development store: a map, optionally persisted
// to a JSON file shared with other processes. Like Redis, it drops expired
// keys and old tombstones, here whenever it writes the file.
type memBackend struct {
	file string
	log  *slog.Logger

	mu     sync.RWMutex
	byHash map[[32]byte]*Record
	byID   map[string]*Record
	stamp  os.FileInfo // of the file as last read or written; nil if absent

	stop chan struct{}
	done chan struct{}
}

// keyFile is the JSON form of the embedded store's file.
type keyFile struct {
	Version int          `json:"version"`
	Keys    []fileRecord `json:"keys"`
}

type fileRecord struct {
	ID          string    `json:"id"`
	Hash        string    `json:"hash"` // hex SHA-256 of the key; the key itself is never written
	Owner       string    `json:"owner"`
	Issuer      string    `json:"issuer,omitempty"` // absent: the CLI namespace
	Groups      []string  `json:"groups,omitempty"`
	Roles       []string  `json:"roles,omitempty"`
	Description string    `json:"description,omitempty"`
	CreatedAt   time.Time `json:"created_at"`
	ExpiresAt   time.Time `json:"expires_at,omitzero"`
	RevokedAt   time.Time `json:"revoked_at,omitzero"`
	// RateLimit is {"requests":10,"per":"1m","burst":0}, absent for none.
	// It is decoded per record, so an error can name the record.
	RateLimit json.RawMessage `json:"rate_limit,omitempty"`
}

const keyFileVersion = 1

func newMemBackend(file string, log *slog.Logger) (*memBackend, error) {
	b := &memBackend{
		file:   file,
		log:    log,
		byHash: map[[32]byte]*Record{},
		byID:   map[string]*Record{},
	}
	if file == "" {
		return b, nil
	}
	b.mu.Lock()
	_, err := b.reloadLocked()
	b.mu.Unlock()
	if err != nil {
		return nil, err
	}
	b.stop, b.done = make(chan struct{}), make(chan struct{})
	go b.poll()
	return b, nil
}

// poll reloads the file when another process changed it.
func (b *memBackend) poll() {
	defer close(b.done)
	t := time.NewTicker(filePollInterval)
	defer t.Stop()
	for {
		select {
		case <-b.stop:
			return
		case <-t.C:
			b.maybeReload()
		}
	}
}

func (b *memBackend) maybeReload() {
	b.mu.Lock()
	changed, err := b.reloadLocked()
	n := len(b.byID)
	b.mu.Unlock()
	switch {
	case err != nil:
		b.log.LogAttrs(context.Background(), slog.LevelWarn, "cannot reload api keys file; keeping the keys loaded before",
			slog.String("file", b.file), slog.String("err", err.Error()))
	case changed:
		b.log.LogAttrs(context.Background(), slog.LevelInfo, "reloaded api keys file",
			slog.String("file", b.file), slog.Int("keys", n))
	}
}

// reloadLocked reads the file if it changed since it was last read or
// written. A missing file is an empty store.
func (b *memBackend) reloadLocked() (changed bool, err error) {
	if b.file == "" {
		return false, nil
	}
	fi, err := os.Stat(b.file)
	if errors.Is(err, fs.ErrNotExist) {
		if b.stamp == nil && len(b.byID) == 0 {
			return false, nil
		}
		b.byHash, b.byID, b.stamp = map[[32]byte]*Record{}, map[string]*Record{}, nil
		return true, nil
	}
	if err != nil {
		return false, fmt.Errorf("apikeys: api_keys.file: %w", err)
	}
	if b.stamp != nil && sameFile(b.stamp, fi) {
		return false, nil
	}
	data, err := os.ReadFile(b.file)
	if err != nil {
		return false, fmt.Errorf("apikeys: api_keys.file: %w", err)
	}
	byHash, byID, err := decodeKeyFile(data)
	if err != nil {
		return false, fmt.Errorf("apikeys: api_keys.file %s: %w", b.file, err)
	}
	b.byHash, b.byID, b.stamp = byHash, byID, fi
	return true, nil
}

func sameFile(a, b os.FileInfo) bool {
	return os.SameFile(a, b) && a.ModTime().Equal(b.ModTime()) && a.Size() == b.Size()
}

func decodeKeyFile(data []byte) (map[[32]byte]*Record, map[string]*Record, error) {
	var kf keyFile
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&kf); err != nil {
		return nil, nil, err
	}
	if kf.Version != keyFileVersion {
		return nil, nil, fmt.Errorf("version %d is not %d", kf.Version, keyFileVersion)
	}
	byHash := make(map[[32]byte]*Record, len(kf.Keys))
	byID := make(map[string]*Record, len(kf.Keys))
	for i, fr := range kf.Keys {
		sum, ok := decodeHexHash(fr.Hash)
		switch {
		case !ok || !validHexHash(fr.Hash):
			return nil, nil, fmt.Errorf("keys[%d].hash: must be 64 lower-case hex characters", i)
		case !ValidID(fr.ID):
			return nil, nil, fmt.Errorf("keys[%d].id: malformed", i)
		case fr.Owner == "":
			return nil, nil, fmt.Errorf("keys[%d].owner: missing", i)
		case byID[fr.ID] != nil || byHash[sum] != nil:
			return nil, nil, fmt.Errorf("keys[%d]: duplicate id or hash", i)
		}
		r := &Record{
			ID: fr.ID, Owner: fr.Owner, Issuer: fr.Issuer, Groups: fr.Groups, Roles: fr.Roles, Description: fr.Description,
			CreatedAt: fr.CreatedAt, ExpiresAt: fr.ExpiresAt, RevokedAt: fr.RevokedAt, Hash: fr.Hash,
		}
		if len(fr.RateLimit) > 0 {
			// A broken limit refuses the whole file, as any other broken
			// field does: the store keeps what it had loaded (or does not
			// start), and never serves the key without its limit.
			rl, err := parseRateLimit(fr.RateLimit)
			if err != nil {
				return nil, nil, fmt.Errorf("keys[%d].%w", i, err)
			}
			r.RateLimit = &rl
		}
		byHash[sum], byID[fr.ID] = r, r
	}
	return byHash, byID, nil
}

// saveLocked drops expired keys and old tombstones, then writes the file
// atomically (temporary file in the same directory, mode 0600, rename).
func (b *memBackend) saveLocked(now time.Time) error {
	b.purgeLocked(now)
	if b.file == "" {
		return nil
	}
	recs := make([]*Record, 0, len(b.byID))
	for _, r := range b.byID {
		recs = append(recs, r)
	}
	slices.SortFunc(recs, func(a, c *Record) int {
		if d := a.CreatedAt.Compare(c.CreatedAt); d != 0 {
			return d
		}
		return strings.Compare(a.ID, c.ID)
	})
	kf := keyFile{Version: keyFileVersion, Keys: make([]fileRecord, len(recs))}
	for i, r := range recs {
		kf.Keys[i] = fileRecord{
			ID: r.ID, Hash: r.Hash, Owner: r.Owner, Issuer: r.Issuer, Groups: r.Groups, Roles: r.Roles, Description: r.Description,
			CreatedAt: r.CreatedAt, ExpiresAt: r.ExpiresAt, RevokedAt: r.RevokedAt,
		}
		if r.RateLimit != nil {
			kf.Keys[i].RateLimit, _ = r.RateLimit.MarshalJSON() // never fails
		}
	}
	data, err := json.MarshalIndent(kf, "", "  ")
	if err != nil {
		return fmt.Errorf("apikeys: encode keys file: %w", err)
	}
	data = append(data, '\n')
	if err := writeFileAtomic(b.file, data); err != nil {
		return fmt.Errorf("apikeys: write keys file: %w", err)
	}
	fi, err := os.Stat(b.file)
	if err != nil {
		return fmt.Errorf("apikeys: write keys file: %w", err)
	}
	b.stamp = fi
	return nil
}

func writeFileAtomic(name string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(name), "."+filepath.Base(name)+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp) // fails harmlessly after the rename
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, name)
}

// purgeLocked forgets what Redis would have deleted by now: expired keys and
// tombstones older than TombstoneTTL.
func (b *memBackend) purgeLocked(now time.Time) {
	for id, r := range b.byID {
		gone := r.expired(now) || (!r.RevokedAt.IsZero() && !now.Before(r.tombstoneExpiry(r.RevokedAt)))
		if gone {
			delete(b.byID, id)
			if sum, ok := decodeHexHash(r.Hash); ok {
				delete(b.byHash, sum)
			}
		}
	}
}

func (b *memBackend) lookup(_ context.Context, sum [32]byte) (*Record, error) {
	b.mu.RLock()
	r := b.byHash[sum]
	b.mu.RUnlock()
	if r == nil && b.file != "" {
		// A key created a moment ago by `extauthz keys create` works at
		// once, without waiting for the next poll.
		b.maybeReload()
		b.mu.RLock()
		r = b.byHash[sum]
		b.mu.RUnlock()
	}
	if r == nil {
		return nil, ErrNotFound
	}
	return r, nil
}

func (b *memBackend) create(_ context.Context, rec *Record, maxLive int) error {
	sum, _ := decodeHexHash(rec.Hash)
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, err := b.reloadLocked(); err != nil {
		return err
	}
	if b.byID[rec.ID] != nil || b.byHash[sum] != nil {
		return errIDTaken
	}
	if maxLive > 0 {
		now, live := time.Now(), 0
		for _, r := range b.byID {
			if r.Owner == rec.Owner && r.Issuer == rec.Issuer && r.check(now) == nil {
				live++
			}
		}
		if live >= maxLive {
			return fmt.Errorf("apikeys: create: %w (%d)", ErrTooManyKeys, maxLive)
		}
	}
	b.byID[rec.ID], b.byHash[sum] = rec, rec
	if err := b.saveLocked(time.Now()); err != nil {
		delete(b.byID, rec.ID)
		delete(b.byHash, sum)
		return err
	}
	return nil
}

func (b *memBackend) get(_ context.Context, id string) (*Record, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, err := b.reloadLocked(); err != nil {
		return nil, err
	}
	if r := b.byID[id]; r != nil {
		return r, nil
	}
	return nil, ErrNotFound
}

func (b *memBackend) list(_ context.Context, issuer, owner string) ([]*Record, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, err := b.reloadLocked(); err != nil {
		return nil, err
	}
	var out []*Record
	for _, r := range b.byID {
		if owner == "" || (r.Owner == owner && r.Issuer == issuer) {
			out = append(out, r)
		}
	}
	return out, nil
}

func (b *memBackend) revoke(_ context.Context, rec *Record, t time.Time) error {
	sum, _ := decodeHexHash(rec.Hash)
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, err := b.reloadLocked(); err != nil {
		return err
	}
	cur := b.byID[rec.ID]
	if cur == nil {
		return ErrNotFound
	}
	if !cur.RevokedAt.IsZero() {
		return nil
	}
	// Records are shared with callers of Lookup: replace, never modify.
	next := cur.withRevoked(t)
	b.byID[rec.ID], b.byHash[sum] = next, next
	if err := b.saveLocked(time.Now()); err != nil {
		b.byID[rec.ID], b.byHash[sum] = cur, cur
		return err
	}
	return nil
}

func (b *memBackend) ping(context.Context) error { return nil }

func (b *memBackend) close() error {
	if b.stop != nil {
		close(b.stop)
		<-b.done
	}
	return nil
}
