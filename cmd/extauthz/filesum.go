package main

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
)

// fileSum returns the SHA-256 of the file's content, or "" if it cannot be
// read (a ConfigMap mid-swap): callers then keep the last known sum.
func fileSum(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}
