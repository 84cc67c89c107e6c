package jwks

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/time/rate"
)

// wycheproofFile finds the Wycheproof JWS vectors at
// ../shared/testdata/wycheproof/ from the project root (the directory of
// go.mod).
func wycheproofFile(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			break
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Skip("Wycheproof vectors not found: no go.mod above the test directory")
		}
		dir = parent
	}
	path := filepath.Join(dir, "..", "shared", "testdata", "wycheproof", "json_web_signature_test.json")
	if _, err := os.Stat(path); err != nil {
		t.Skipf("Wycheproof vectors not found at %s (they live outside the repository, next to it); skipping", path)
	}
	return path
}

type wycheproofFileJSON struct {
	TestGroups []struct {
		Comment string          `json:"comment"`
		Public  json.RawMessage `json:"public"`
		Private json.RawMessage `json:"private"`
		Tests   []struct {
			TcID    int             `json:"tcId"`
			Comment string          `json:"comment"`
			JWS     json.RawMessage `json:"jws"`
			Result  string          `json:"result"`
		} `json:"tests"`
	} `json:"testGroups"`
}

// staticProvider is a provider holding keys that never refreshes.
func staticProvider(keys []*key) *provider {
	p := &provider{
		name:    "wycheproof",
		algs:    map[string]bool{},
		limiter: rate.NewLimiter(0, 0),
		done:    make(chan struct{}),
		kick:    make(chan struct{}, 1),
	}
	for _, a := range supportedAlgorithms {
		p.algs[a] = true
	}
	if len(keys) > 0 {
		ks, _ := newKeySet(nil, keys)
		p.keys.Store(ks)
	}
	return p
}

// TestWycheproofJWS runs the compact-serialized Wycheproof JWS vectors
// through the signature layer (parseJWS and checkSignature; the vectors'
// payloads are not JWT claims). Invalid vectors must never verify. Valid
// vectors must verify, except where this package refuses them by policy:
// HMAC keys (never used with JWKS) and a token alg that differs from the
// alg the JWK is published for.
func TestWycheproofJWS(t *testing.T) {
	raw, err := os.ReadFile(wycheproofFile(t))
	if err != nil {
		t.Fatal(err)
	}
	var f wycheproofFileJSON
	if err := json.Unmarshal(raw, &f); err != nil {
		t.Fatal(err)
	}
	var verified, rejectedInvalid, refusedByPolicy, skipped int
	for _, g := range f.TestGroups {
		jwk := g.Public
		if jwk == nil {
			jwk = g.Private // symmetric keys have no public part
		}
		keys, _, keyErr := parseJWKS([]byte(`{"keys":[` + string(jwk) + `]}`))
		var jwkMeta struct {
			Alg string `json:"alg"`
		}
		_ = json.Unmarshal(jwk, &jwkMeta)
		p := staticProvider(keys)
		for _, tc := range g.Tests {
			var token string
			if err := json.Unmarshal(tc.JWS, &token); err != nil {
				skipped++ // JSON serialization: not a compact token
				continue
			}
			j, err := parseJWS(token)
			if err == nil {
				_, err = p.checkSignature(context.Background(), j)
			}
			switch tc.Result {
			case "invalid":
				if err == nil {
					t.Errorf("tcId %d (%s, %s): invalid vector verified", tc.TcID, g.Comment, tc.Comment)
				}
				rejectedInvalid++
			case "valid":
				if err == nil {
					verified++
					continue
				}
				policy := keyErr != nil || // HMAC or otherwise unusable key
					(errors.Is(err, ErrAlgorithm) && jwkMeta.Alg != "" && jwkMeta.Alg != j.alg)
				if !policy {
					t.Errorf("tcId %d (%s, %s): valid vector refused: %v", tc.TcID, g.Comment, tc.Comment, err)
				}
				t.Logf("tcId %d (%s, %s): refused by policy: %v (key: %v)", tc.TcID, g.Comment, tc.Comment, err, keyErr)
				refusedByPolicy++
			default:
				skipped++
			}
		}
	}
	t.Logf("wycheproof: %d valid verified, %d invalid rejected, %d valid refused by policy, %d skipped",
		verified, rejectedInvalid, refusedByPolicy, skipped)
	if verified == 0 || rejectedInvalid == 0 {
		t.Error("no vector exercised the signature layer")
	}
}
